/* Cancel mode: POSIX cancellation issued from inside the process (glibc's
 * SIGCANCEL handler ignores the signal unless the process sent it to itself
 * with tgkill, so an outside kill cannot cancel). The thread's cancel state
 * and type are learned from the interposed pthread_setcancelstate and
 * pthread_setcanceltype (interpose_cancel.c), so a request to a thread that
 * disabled cancellation is reported as such instead of waited on blindly.
 * See deliver.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "shim/core/ks.h"
#include "shim/common/procfs.h"
#include "shim/core/registry.h"

/* The user-space PC of the system call TID is blocked in, from
 * /proc/self/task/TID/syscall ("NR ARGS... SP PC"); 0 if it is running or
 * not in a system call. */
static uintptr_t ks_blocked_pc(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    if (ks_read_small_file(path, buf, sizeof buf) <= 0 || buf[0] < '0' || buf[0] > '9')
        return 0;
    char *last = strrchr(buf, ' ');
    return last ? (uintptr_t)strtoull(last + 1, NULL, 0) : 0;
}

int ks_cancel_request(struct ks_thread *t, char *why, size_t cap)
{
    ks_real_pthread_cancel_t *real_cancel = KS_REAL(pthread_cancel);
    if (!real_cancel) {
        snprintf(why, cap, "pthread_cancel is not available in this process");
        return ENOSYS;
    }
    /* With cancellation enabled, a thread blocked in a cancellation point
     * acts on the request right there (glibc makes the blocking call
     * asynchronously cancellable): remember where, for the graveyard. */
    uintptr_t site = 0;
    if (!__atomic_load_n(&t->cancel_disabled, __ATOMIC_RELAXED))
        site = ks_blocked_pc(t->tid);
    __atomic_store_n(&t->cancel_site, site, __ATOMIC_RELAXED);
    /* Marked before the cancel: T may be gone through its exit path (which
     * records what was asked of it) before pthread_cancel returns. */
    int was = __atomic_exchange_n(&t->cancel_requested, 1, __ATOMIC_ACQ_REL);
    /* T is linked (registry lock held), so its struct pthread is still
     * allocated: pthread_cancel on its handle is defined. */
    int rc = real_cancel(t->handle);
    if (rc) {
        __atomic_store_n(&t->cancel_requested, was, __ATOMIC_RELEASE);
        snprintf(why, cap, "pthread_cancel: %s", strerror(rc));
        return rc;
    }
    return 0;
}
