/* The abort's report slots and the pool of blocks that hold them: the
 * bottom floor of the abort. The target writes its slot (abort_decide.c,
 * abort_exit.c), the control side and the graveyard read it; nothing here
 * calls back into either. See abort_internal.h for the block. */
#include <sched.h>
#include <string.h>

#include "abort_internal.h"
#include "shim/core/asfmt.h"
#include "shim/core/ks.h"

/* ---- The slot --------------------------------------------------------- */

void ks_slot_begin(struct ks_thread *t)
{
    struct ks_abort_info *a = t->abort.info;
    __atomic_store_n(&a->seq, a->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

void ks_slot_end(struct ks_thread *t)
{
    struct ks_abort_info *a = t->abort.info;
    __atomic_store_n(&a->seq, a->seq + 1, __ATOMIC_RELEASE);
}

void ks_slot_set(struct ks_thread *t, int state, int how, uintptr_t where, const char *reason)
{
    struct ks_abort_info *a = t->abort.info;
    ks_slot_begin(t);
    a->how = how;
    a->where = where;
    struct ks_sb b;
    ks_sb_init(&b, a->reason, sizeof a->reason);
    ks_sb_str(&b, reason);
    ks_slot_end(t);
    __atomic_store_n(&t->abort.state, state, __ATOMIC_RELEASE);
}

void ks_at_unlock_reason(char *buf, size_t cap, int held, const char *also)
{
    struct ks_sb b;
    ks_sb_init(&b, buf, cap);
    ks_sb_str(&b, "holds ");
    ks_sb_dec(&b, held);
    ks_sb_str(&b, held == 1 ? " lock" : " locks");
    if (also)
        ks_sb_str(&b, also);
    ks_sb_str(&b, "; will abort at unlock");
}

void ks_slot_at_unlock(struct ks_thread *t, int held, const char *also)
{
    char msg[KS_ABORT_REASON_MAX];
    ks_at_unlock_reason(msg, sizeof msg, held, also);
    ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_AT_UNLOCK, 0, msg);
}

/* Copies A's report into OUT, retrying while the target rewrites it (seq
 * odd, or changed under the copy). Gives up after many tries and keeps the
 * last copy: the fields are each whole, if not of one moment. */
static void ks_slot_copy(const struct ks_abort_info *a, struct ks_abort_report *out)
{
    for (int tries = 0; tries < 100000; tries++) {
        unsigned s = __atomic_load_n(&a->seq, __ATOMIC_ACQUIRE);
        if (!(s & 1)) {
            out->how = a->how;
            out->steps = __atomic_load_n(&a->steps, __ATOMIC_RELAXED);
            out->where = a->where;
            out->ncleanup = a->ncleanup;
            memcpy(out->cleanup, a->cleanup, sizeof out->cleanup);
            out->nleft = a->nleft;
            memcpy(out->left, a->left, sizeof out->left);
            memcpy(out->reason, a->reason, sizeof out->reason);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&a->seq, __ATOMIC_RELAXED) == s)
                break;
        }
        ks_sched_yield();
    }
}

void ks_abort_snapshot(const struct ks_thread *t, struct ks_abort_report *out)
{
    memset(out, 0, sizeof *out);
    const struct ks_abort_info *a = t->abort.info;
    if (!a)
        return;
    ks_slot_copy(a, out);
    out->reason[sizeof out->reason - 1] = 0;
    if (out->ncleanup < 0 || out->ncleanup > KS_ABORT_MAX_CLEANUP)
        out->ncleanup = 0;
    if (out->nleft < 0 || out->nleft > KS_ABORT_MAX_LEFT)
        out->nleft = 0;
    out->state = __atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE);
    out->force = __atomic_load_n(&t->abort.force, __ATOMIC_RELAXED);
    out->site = t->abort.site;
    /* Waiting for the unlock: say how many it holds now, not when it looked. */
    int held = __atomic_load_n(&t->locks_held, __ATOMIC_RELAXED);
    if (out->state == KS_ABORT_PENDING && out->how == KS_ABORT_HOW_AT_UNLOCK && held > 0)
        ks_at_unlock_reason(out->reason, sizeof out->reason, held, NULL);
}

const char *ks_abort_how_name(int how)
{
    static const char *const names[] = {
        "none", "signalled", "at-unlock", "cond-wait", "lock-wait", "stepping", "armed",
        "no-call-boundary", "inside-runtime", "frame", "call", "return", "unlock", "cond",
        "forced", "discarded"};
    return how >= 0 && how <= KS_ABORT_HOW_DISCARDED ? names[how] : "?";
}

/* ---- The pool of blocks ------------------------------------------------ */

#define KS_ABORT_POOL 128
/* The blocks (3.3 MB in all) are mapped at the first abort, not kept in
 * .bss: there they made the shim's .bss 4 MB, spread over three page-table
 * pages (its hot variables at both ends), which every fork of every process
 * under the shim copied and every exit freed, aborting or not (docs/bench.md:
 * fork). Mapped once, never unmapped (a block's address is kept by its
 * thread and by a fork child); a fork child inherits the mapping. */
KS_HOT_DATA static struct ks_lazy ks_pool_map =
    KS_LAZY(sizeof(struct ks_abort_info) * KS_ABORT_POOL, "the abort blocks");
KS_HOT_DATA static uint64_t ks_pool_used[KS_ABORT_POOL / 64];

/* A's place in the pool (which exists: A was taken from it). */
static inline size_t ks_pool_index(const struct ks_abort_info *a)
{
    return (size_t)(a - (const struct ks_abort_info *)ks_lazy_peek(&ks_pool_map));
}

struct ks_abort_info *ks_abort_info_take(void)
{
    struct ks_abort_info *pool = ks_lazy_get(&ks_pool_map);
    if (!pool)
        return NULL;
    for (int w = 0; w < KS_ABORT_POOL / 64; w++) {
        uint64_t u = __atomic_load_n(&ks_pool_used[w], __ATOMIC_RELAXED);
        while (~u) {
            int b = __builtin_ctzll(~u);
            if (__atomic_compare_exchange_n(&ks_pool_used[w], &u, u | (1ull << b), 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
                struct ks_abort_info *a = &pool[w * 64 + b];
                memset(a, 0, sizeof *a);
                return a;
            }
        }
    }
    return NULL;
}

KS_FORK_PATH void ks_abort_pool_after_fork(const struct ks_abort_info *keep)
{
    /* Written only if in use: every page the child writes is copied. */
    for (size_t i = 0; i < sizeof ks_pool_used / sizeof ks_pool_used[0]; i++)
        if (ks_pool_used[i])
            ks_pool_used[i] = 0;
    if (keep) {
        size_t i = ks_pool_index(keep);
        ks_pool_used[i / 64] |= 1ull << (i % 64);
    }
}

KS_THREAD_PATH void ks_abort_release(struct ks_thread *t)
{
    struct ks_abort_info *a = t->abort.info;
    if (!a)
        return;
    t->abort.info = NULL;
    size_t i = ks_pool_index(a);
    __atomic_fetch_and(&ks_pool_used[i / 64], ~(1ull << (i % 64)), __ATOMIC_RELEASE);
}
