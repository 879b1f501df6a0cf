/* The cancels that wait (cancel_check.h): a small table under the registry
 * lock, so that no lock of its own needs resetting after fork. A full table
 * drops the entry asked least recently: that cancel lapses early, as if its
 * client had gone. */
#include <stdio.h>
#include <string.h>

#include "cancel_check.h"
#include "shim/core/ks.h"

#define KS_CANCEL_WAITS 32

struct ks_cwait {
    pid_t tid;                /* 0: free */
    uint64_t id;
    uint64_t seen_ns;         /* a client last asked after it */
    uint64_t tried_ns;        /* last tried */
    uintptr_t lock;
    char reason[240];
};

static struct ks_cwait ks_cwaits[KS_CANCEL_WAITS];

static struct ks_cwait *ks_cwait_find(pid_t tid, uint64_t id)
{
    for (int i = 0; i < KS_CANCEL_WAITS; i++)
        if (ks_cwaits[i].tid == tid && ks_cwaits[i].id == id && tid)
            return &ks_cwaits[i];
    return NULL;
}

void ks_cancel_wait_set(pid_t tid, uint64_t id, const char *reason, uintptr_t lock)
{
    uint64_t now = ks_now_ns();
    struct ks_cwait *w = ks_cwait_find(tid, id);
    for (int i = 0; !w && i < KS_CANCEL_WAITS; i++)
        if (!ks_cwaits[i].tid)
            w = &ks_cwaits[i];
    if (!w) {
        w = &ks_cwaits[0];
        for (int i = 1; i < KS_CANCEL_WAITS; i++)
            if (ks_cwaits[i].seen_ns < w->seen_ns)
                w = &ks_cwaits[i];
    }
    if (w->tid != tid || w->id != id) {
        w->tid = tid;
        w->id = id;
        w->tried_ns = now;
    }
    w->seen_ns = now;
    w->lock = lock;
    snprintf(w->reason, sizeof w->reason, "%s", reason);
}

void ks_cancel_wait_clear(pid_t tid, uint64_t id)
{
    struct ks_cwait *w = ks_cwait_find(tid, id);
    if (w)
        memset(w, 0, sizeof *w);
}

/* A wait nobody asked about for KS_CANCEL_LAPSE_MS lapses. */
static struct ks_cwait *ks_cwait_live(pid_t tid, uint64_t id, uint64_t now)
{
    struct ks_cwait *w = ks_cwait_find(tid, id);
    if (w && now - w->seen_ns > KS_CANCEL_LAPSE_MS * 1000000ull) {
        memset(w, 0, sizeof *w);
        return NULL;
    }
    return w;
}

int ks_cancel_wait_get(pid_t tid, uint64_t id, char *reason, size_t cap, uintptr_t *lock)
{
    const struct ks_cwait *w = ks_cwait_live(tid, id, ks_now_ns());
    if (!w)
        return 0;
    snprintf(reason, cap, "%s", w->reason);
    *lock = w->lock;
    return 1;
}

int ks_cancel_wait_due(pid_t tid, uint64_t id)
{
    uint64_t now = ks_now_ns();
    struct ks_cwait *w = ks_cwait_live(tid, id, now);
    if (!w)
        return 0;
    w->seen_ns = now;
    if (now - w->tried_ns < KS_CANCEL_RETRY_MS * 1000000ull)
        return 0;
    w->tried_ns = now;
    return 1;
}
