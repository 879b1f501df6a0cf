/* Mutex interposition: counts the pthread mutexes each thread holds (an abort
 * never fires while the count is above zero) and records which mutex a thread
 * is blocked on (for the wait-for graph). The hot path adds two TLS stores
 * and one increment to the real call.
 *
 * Only locks taken through the dynamic symbol are seen: libc's internal
 * locks are not, which is right, since an abort never fires inside libc. */
#include <pthread.h>

#include "ks.h"
#include "registry.h"

/* Hook for the abort path (deliver_abort.c): called by the owner thread when
 * its count drops to zero. A weak default keeps this file independent. */
__attribute__((weak)) void ks_on_locks_released(struct ks_thread *self) { (void)self; }

static inline void ks_lock_acquired(struct ks_thread *self, int rc)
{
    __atomic_store_n(&self->wait_kind, KS_WAIT_NONE, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_obj, NULL, __ATOMIC_RELAXED);
    if (rc == 0)
        self->locks_held++;
}

KS_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_lock))
        ks_resolve_all();
    struct ks_thread *self = ks_self();
    __atomic_store_n(&self->wait_obj, (void *)m, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_kind, KS_WAIT_MUTEX, __ATOMIC_RELAXED);
    int rc = ks_real.pthread_mutex_lock(m);
    ks_lock_acquired(self, rc);
    return rc;
}

KS_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_timedlock))
        ks_resolve_all();
    struct ks_thread *self = ks_self();
    __atomic_store_n(&self->wait_obj, (void *)m, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_kind, KS_WAIT_MUTEX, __ATOMIC_RELAXED);
    int rc = ks_real.pthread_mutex_timedlock(m, abstime);
    ks_lock_acquired(self, rc);
    return rc;
}

KS_EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_trylock))
        ks_resolve_all();
    int rc = ks_real.pthread_mutex_trylock(m);
    if (rc == 0)
        ks_self()->locks_held++;
    return rc;
}

KS_EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_unlock))
        ks_resolve_all();
    int rc = ks_real.pthread_mutex_unlock(m);
    if (rc == 0) {
        struct ks_thread *self = ks_self();
        /* A mutex locked before the shim loaded is unlocked without having
         * been counted: never go below zero. */
        if (self->locks_held > 0 && --self->locks_held == 0)
            ks_on_locks_released(self);
    }
    return rc;
}
