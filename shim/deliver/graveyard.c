/* See graveyard.h. */
#include "graveyard.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "deliver.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"

/* Taken through the real function: the shim's own locking is not the
 * program's (interpose_lock.c counts only the program's). */
KS_LOCK_DEFINE(static, ks_grave_mu);
/* A slot per grave, each on a cache line's start (graveyard.h; mmap's
 * pages are). Mapped before the first thread that may end exists
 * (ks_grave_prepare), not in .bss (ks.h: ks_lazy). */
struct ks_grave_slot {
    struct ks_grave g;
} __attribute__((aligned(64)));
KS_HOT_DATA static struct ks_lazy ks_graves_map =
    KS_LAZY(sizeof(struct ks_grave_slot) * KS_GRAVES, "the graves of ended threads");
static uint64_t ks_grave_next;   /* total buried; ring slot = next % KS_GRAVES */

KS_THREAD_PATH void ks_grave_prepare(void) { (void)ks_lazy_get(&ks_graves_map); }

static void ks_grave_lock(void) { ks_lock(&ks_grave_mu); }
static void ks_grave_unlock(void) { ks_unlock(&ks_grave_mu); }

KS_THREAD_PATH int ks_requested_bits(const struct ks_thread *t)
{
    int bits = 0;
    if (__atomic_load_n(&t->stop_requested, __ATOMIC_ACQUIRE))
        bits |= KS_REQ_FLAG;
    if (__atomic_load_n(&t->cancel_requested, __ATOMIC_ACQUIRE))
        bits |= KS_REQ_CANCEL;
    if (__atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_NONE)
        bits |= KS_REQ_ABORT;
    return bits;
}

/* The grave is written in its ring slot, under the lock, field by field:
 * building a whole zeroed struct and copying it in (296 bytes, twice) was
 * 167 instructions of every create+join. What is not written is past a
 * count (graveyard.h), and the readers copy whole graves under the lock. */
KS_THREAD_PATH void ks_grave_bury(const struct ks_thread *t, int how, uintptr_t site,
                                  uint64_t ended_ns)
{
    struct ks_abort_report ab;
    if (how == KS_END_ABORTED)
        ks_abort_snapshot(t, &ab);
    int requested = ks_requested_bits(t);
    int held = t->locks_held;
    struct ks_grave_slot *graves = ks_lazy_peek(&ks_graves_map);
    if (!graves)   /* not mapped (ks_grave_prepare warned): no grave kept */
        return;
    ks_grave_lock();
    struct ks_grave *g = &graves[ks_grave_next % KS_GRAVES].g;
    g->tid = t->tid;
    g->id = t->id;
    g->how = how;
    g->requested = requested;
    g->locks_held = held;
    g->role = t->role;
    g->site = site;
    g->start_routine = t->start_routine;
    g->created_ns = t->created_ns;
    g->ended_ns = ended_ns;
    /* Written on the thread's way out, after every cleanup of its own ran:
     * what it holds now stays locked. */
    g->nleft = 0;
    for (int i = 0; i < held && i < KS_HELD_MAX && i < KS_ABORT_MAX_LEFT; i++)
        g->left[g->nleft++] = (uintptr_t)t->held[i];
    if (how == KS_END_ABORTED) {
        g->abort_how = ab.how;
        g->ncleanup = ab.ncleanup;
        memcpy(g->cleanup, ab.cleanup, sizeof g->cleanup);
        _Static_assert(sizeof g->abort_note == sizeof ab.reason, "the note is the reason, whole");
        memcpy(g->abort_note, ab.reason, sizeof g->abort_note);   /* NUL-ended by the snapshot */
    }
    /* Not aborted: abort_how, the cleanups and the note are never read
     * (cmd_view.c reads them for an aborted grave only), and are left
     * unwritten: a grave then writes its first cache line only. */
    ks_grave_next++;
    /* The next ending's line, asked for now: it was last written
     * KS_GRAVES endings ago and is out of this CPU's caches by then, so a
     * grave written cold cost every create+join 0.6-1% (the same ring of 8
     * graves measured as fast as no grave at all, docs/bench.md). The next
     * ending comes about one create+join later: time for the line to
     * arrive, too little for it to leave again. A prefetch never faults and
     * changes nothing else. */
    __builtin_prefetch(&graves[ks_grave_next % KS_GRAVES].g, 1, 3);
    ks_grave_unlock();
}

int ks_grave_find(pid_t tid, uint64_t id, struct ks_grave *out)
{
    int rc = ENOENT;
    const struct ks_grave_slot *graves = ks_lazy_peek(&ks_graves_map);
    if (!graves)
        return rc;
    ks_grave_lock();
    uint64_t n = ks_grave_next < KS_GRAVES ? ks_grave_next : KS_GRAVES;
    for (uint64_t k = 1; k <= n; k++) {   /* newest first */
        const struct ks_grave *g = &graves[(ks_grave_next - k) % KS_GRAVES].g;
        if (g->tid == tid && (id == 0 || g->id == id)) {
            *out = *g;
            rc = 0;
            break;
        }
    }
    ks_grave_unlock();
    return rc;
}

const char *ks_end_how_name(int how)
{
    switch (how) {
    case KS_END_RETURNED: return "returned";
    case KS_END_EXITED: return "exited";
    case KS_END_CANCELLED: return "cancelled";
    case KS_END_ABORTED: return "aborted";
    default: return "alive";
    }
}
