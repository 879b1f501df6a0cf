/* pthread_cond_*wait interposition, for two things.
 *
 * The held-lock count. The real call releases the mutex while the thread
 * waits and re-acquires it before it returns, inside libc where the lock
 * hooks do not see it. The wrapper takes the mutex out of the thread's
 * count for the wait and puts it back when the real call returns, so a
 * listing never shows a waiting thread holding the lock it released; and
 * puts it back too when the thread unwinds out of the wait (cancellation,
 * an abort forced there), since glibc re-acquires the mutex before the
 * unwind runs any cleanup (interpose_lock.c: ks_lock_uncount). Between the
 * count and the real release (and the re-acquisition and the recount) the
 * thread runs a few instructions of its own: never blocked there.
 *
 * The abort. A thread asleep in a condition variable never returns from it
 * on a signal (glibc waits again after EINTR), so an abort could not reach
 * it. The wrapper records the cond; an abort request broadcasts it (a
 * spurious wakeup for the other waiters, which POSIX allows), and the
 * wrapper, back from the real wait with the mutex re-acquired, hands over
 * to the abort (ks_on_cond_wait), which leaves from here as cancellation
 * would: cleanup handlers and destructors (a std::unique_lock) release the
 * mutex, and the shim releases it if they did not.
 *
 * Invariant: while the control side holds the thread's wait_lock and sees
 * KS_WAIT_COND, wait_obj is a cond the thread is inside of, hence alive: the
 * thread clears it under the same lock before it returns or unwinds. */
#include <errno.h>
#include <pthread.h>

#include "shim/deliver/deliver.h"
#include "shim/core/held.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"

/* One wait, in the wrapper's frame. */
struct ks_cond_wait {
    struct ks_thread *self;   /* NULL: not tracked (the shim's own code), or done */
    pthread_mutex_t *m;
    int counted;              /* M was counted held and is out of the count */
    ks_lock_mark mark;        /* its mark, to put back */
};

static void ks_cond_enter(struct ks_cond_wait *w, pthread_cond_t *c)
{
    struct ks_thread *self = ks_self();
    if (self->shim_depth)
        return;
    ks_on_cond_wait(self, w->m);   /* an abort already asked leaves before sleeping */
    ks_wait_lock(self);
    w->counted = ks_lock_uncount(self, w->m, &w->mark);
    self->wait_mutex = w->m;
    self->wait_mutex_mark = w->counted ? w->mark : ks_mark(0, KS_CDEPTH_UNKNOWN);
    __atomic_store_n(&self->wait_obj, (void *)c, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_kind, KS_WAIT_COND, __ATOMIC_RELAXED);
    ks_wait_unlock(self);
    w->self = self;
}

/* The wait is over (returned, or unwinding with the mutex re-acquired). */
static void ks_cond_done(struct ks_cond_wait *w)
{
    struct ks_thread *self = w->self;
    if (!self)
        return;
    w->self = NULL;
    ks_wait_lock(self);
    __atomic_store_n(&self->wait_kind, KS_WAIT_NONE, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_obj, NULL, __ATOMIC_RELAXED);
    self->wait_mutex = NULL;
    if (w->counted)
        ks_lock_recount(self, w->m, w->mark);
    ks_wait_unlock(self);
}

static int ks_cond_leave(struct ks_cond_wait *w, int rc)
{
    struct ks_thread *self = w->self;
    if (!self)
        return rc;
    ks_cond_done(w);
    ks_on_cond_wait(self, w->m);
    return rc;
}

#define KS_COND_WAIT(call)                                                        \
    struct ks_cond_wait w __attribute__((cleanup(ks_cond_done))) = {.m = m};        \
    ks_cond_enter(&w, c);                                                         \
    return ks_cond_leave(&w, (call))

KS_EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    KS_COND_WAIT(KS_CALL_OR(pthread_cond_wait, EINVAL, (c, m)));
}

KS_EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *t)
{
    KS_COND_WAIT(KS_CALL_OR(pthread_cond_timedwait, EINVAL, (c, m, t)));
}

KS_EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                                     const struct timespec *t)
{
    KS_COND_WAIT(KS_CALL_OR(pthread_cond_clockwait, EINVAL, (c, m, clk, t)));
}
