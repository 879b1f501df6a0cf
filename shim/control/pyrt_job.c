/* See pyrt_job.h. The caller and the worker share the job by reference
 * count; the worker's results are published by the release store of done
 * (a futex word the caller waits on), and step decides, by one
 * compare-and-swap, whether the worker ran the job under the GIL or the
 * caller gave up first: never both, so "nothing was done" is true. */
#include "pyrt_job.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/core/ks.h"
#include "shim_thread.h"

void ks_py_put(struct ks_py_job *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(j);
}

/* Workers given up on by their caller and not through yet: counted up by
 * the caller before its compare-and-swap (down again if the worker won),
 * down by the worker once through, so it never goes below zero. */
static int ks_py_nabandoned;

int ks_py_abandoned(void) { return __atomic_load_n(&ks_py_nabandoned, __ATOMIC_ACQUIRE); }

/* Also a cleanup handler: CPython ends a thread that takes the GIL while
 * the interpreter finalizes (pthread_exit in take_gil). */
static void ks_py_finish(void *arg)
{
    struct ks_py_job *j = arg;
    /* Through without running it (finalizing): 3, so that a caller that
     * gives up only now does not count a worker that is gone. */
    int waiting = 0;
    if (!__atomic_compare_exchange_n(&j->step, &waiting, 3, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE) && waiting == 2)
        __atomic_sub_fetch(&ks_py_nabandoned, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    ks_futex_wake(&j->done, 1);
    ks_py_put(j);
}

static void *ks_py_worker(void *arg)
{
    struct ks_py_job *j = arg;
    pthread_cleanup_push(ks_py_finish, arg);
    j->work(j);
    pthread_cleanup_pop(1);
    return NULL;
}

/* Waits until J is done or the deadline DL (CLOCK_MONOTONIC ns) passes. */
static int ks_py_wait(struct ks_py_job *j, uint64_t dl) { return ks_futex_wait_set(&j->done, dl); }

#define KS_PY_RUN_MS 5000   /* once started under the GIL: Python code may yield it */

/* Runs J in a worker within TIMEOUT_MS. Returns 0 (J's rc and res hold the
 * answer) or an errno with WHY filled in. */
int ks_py_call(struct ks_py_job *j, void (*work)(struct ks_py_job *j), int timeout_ms,
               char *why, size_t cap)
{
    j->work = work;
    j->refs = 2;
    int rc = ks_spawn_shim_thread("killshim-py", ks_py_worker, j, 0);
    if (rc) {
        j->refs = 1;   /* no worker: the caller's put frees it */
        snprintf(why, cap, "cannot start a thread to call CPython: %s", strerror(rc));
        return rc;
    }
    ks_debug("python: a worker asks CPython (job %d)", j->op);
    int waiting = 0;
    uint64_t t0 = ks_now_ns();
    if (!ks_py_wait(j, t0 + (uint64_t)timeout_ms * 1000000u)) {
        __atomic_add_fetch(&ks_py_nabandoned, 1, __ATOMIC_ACQ_REL);
        if (__atomic_compare_exchange_n(&j->step, &waiting, 2, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            snprintf(why, cap, "the GIL was not free within %d ms (a thread holds it in a C "
                     "call that does not release it); nothing was done", timeout_ms);
            return EBUSY;
        }
        __atomic_sub_fetch(&ks_py_nabandoned, 1, __ATOMIC_ACQ_REL);
    }
    /* Started under the GIL: it finishes, unless Python code it ran gave
     * the GIL away to a thread that keeps it. */
    if (!ks_py_wait(j, ks_now_ns() + (uint64_t)KS_PY_RUN_MS * 1000000u)) {
        snprintf(why, cap, "the call into CPython started but did not finish within %d ms",
                 KS_PY_RUN_MS);
        return EBUSY;
    }
    if (j->rc)
        snprintf(why, cap, "%s", j->why);
    return j->rc;
}

