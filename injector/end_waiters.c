/* killshim-inject PID TID: the threads that wait, once the thread is gone,
 * for a lock it left held (the report names them). */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "end.h"

/* One "thread" line of the listing: a thread blocked on a lock it left. */
static int ksi_collect_waiter(const struct ks_msg *m, void *ctx)
{
    struct ksi_end_result *r = ctx;
    uint64_t lock = 0;
    int64_t tid = 0;
    if (strcmp(m->verb, "thread") != 0 || ks_msg_get_u64(m, "wait_mutex", &lock) != 0 ||
        ks_msg_get_i64(m, "tid", 1, INT32_MAX, &tid) != 0 || r->nwaiters >= 16)
        return 0;
    for (int i = 0; i < r->nleft; i++)
        if (r->left[i] == lock) {
            struct ksi_waiter *w = &r->waiters[r->nwaiters++];
            w->tid = (long)tid;
            w->lock = lock;
            ksi_copy(w->name, sizeof w->name, ks_msg_get(m, "name"));
        }
    return 0;
}

/* The threads that wait for a lock the thread left held, now: they block
 * until the process ends. (A mutex; the shim does not list rwlock waits.) */
void ksi_find_waiters(struct ksi_client *c, struct ksi_end_result *r)
{
    struct ks_msg final;
    if (ksi_request(c, "list", ksi_collect_waiter, r, &final) != KSI_EXIT_OK)
        r->nwaiters = 0;
}
