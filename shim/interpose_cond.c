/* pthread_cond_*wait interposition: a thread asleep in a condition variable
 * never returns from it on a signal (glibc waits again after EINTR), so an
 * abort could not reach it. The wrapper records the cond; an abort request
 * broadcasts it (a spurious wakeup for the other waiters, which POSIX
 * allows), and the wrapper, back from the real wait with the mutex
 * re-acquired, hands over to the abort (ks_on_cond_wait), which leaves from
 * here as cancellation would: cleanup handlers and destructors (a
 * std::unique_lock) release the mutex, and the shim releases it if they
 * did not.
 *
 * Invariant: while the control side holds the thread's wait_lock and sees
 * KS_WAIT_COND, wait_obj is a cond the thread is inside of, hence alive: the
 * thread clears it under the same lock before it returns. */
#include <pthread.h>

#include "ks.h"
#include "registry.h"

/* Called before and after the real wait (abort_exit.c). May not return. */
__attribute__((weak)) void ks_on_cond_wait(struct ks_thread *self, pthread_mutex_t *m)
{
    (void)self;
    (void)m;
}

static inline void ks_wait_lock(struct ks_thread *t)
{
    while (__atomic_exchange_n(&t->wait_lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
}

static inline void ks_wait_unlock(struct ks_thread *t) { __atomic_store_n(&t->wait_lock, 0, __ATOMIC_RELEASE); }

static struct ks_thread *ks_cond_enter(pthread_cond_t *c, pthread_mutex_t *m)
{
    struct ks_thread *self = ks_self();
    if (self->shim_depth)
        return NULL;
    ks_on_cond_wait(self, m);   /* an abort already asked leaves before sleeping */
    ks_wait_lock(self);
    self->wait_mutex = m;
    __atomic_store_n(&self->wait_obj, (void *)c, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_kind, KS_WAIT_COND, __ATOMIC_RELAXED);
    ks_wait_unlock(self);
    return self;
}

static int ks_cond_leave(struct ks_thread *self, pthread_mutex_t *m, int rc)
{
    if (!self)
        return rc;
    ks_wait_lock(self);
    __atomic_store_n(&self->wait_kind, KS_WAIT_NONE, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_obj, NULL, __ATOMIC_RELAXED);
    self->wait_mutex = NULL;
    ks_wait_unlock(self);
    ks_on_cond_wait(self, m);
    return rc;
}

KS_EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    KS_RESOLVE(pthread_cond_wait);
    struct ks_thread *self = ks_cond_enter(c, m);
    return ks_cond_leave(self, m, ks_real.pthread_cond_wait(c, m));
}

KS_EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *t)
{
    KS_RESOLVE(pthread_cond_timedwait);
    struct ks_thread *self = ks_cond_enter(c, m);
    return ks_cond_leave(self, m, ks_real.pthread_cond_timedwait(c, m, t));
}

KS_EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                                     const struct timespec *t)
{
    KS_RESOLVE(pthread_cond_clockwait);
    struct ks_thread *self = ks_cond_enter(c, m);
    return ks_cond_leave(self, m, ks_real.pthread_cond_clockwait(c, m, clk, t));
}
