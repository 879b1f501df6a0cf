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

/* What the thread waited for before this lock call: a program signal
 * handler may lock while its thread is blocked on another mutex, and the
 * outer wait must still show when the handler returns. */
struct ks_prev_wait {
    int kind;
    void *obj;
};

static inline struct ks_prev_wait ks_lock_waiting(struct ks_thread *self, void *m)
{
    struct ks_prev_wait p = {__atomic_load_n(&self->wait_kind, __ATOMIC_RELAXED),
                             __atomic_load_n(&self->wait_obj, __ATOMIC_RELAXED)};
    __atomic_store_n(&self->wait_obj, m, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_kind, KS_WAIT_MUTEX, __ATOMIC_RELAXED);
    return p;
}

static inline void ks_lock_acquired(struct ks_thread *self, struct ks_prev_wait p, int rc)
{
    __atomic_store_n(&self->wait_kind, p.kind, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_obj, p.obj, __ATOMIC_RELAXED);
    if (rc == 0)
        self->locks_held++;
}

KS_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_lock))
        ks_resolve_all();
    struct ks_thread *self = ks_self();
    if (KS_UNLIKELY(self->shim_depth))
        return ks_real.pthread_mutex_lock(m);
    struct ks_prev_wait p = ks_lock_waiting(self, m);
    int rc = ks_real.pthread_mutex_lock(m);
    ks_lock_acquired(self, p, rc);
    return rc;
}

KS_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_timedlock))
        ks_resolve_all();
    struct ks_thread *self = ks_self();
    if (KS_UNLIKELY(self->shim_depth))
        return ks_real.pthread_mutex_timedlock(m, abstime);
    struct ks_prev_wait p = ks_lock_waiting(self, m);
    int rc = ks_real.pthread_mutex_timedlock(m, abstime);
    ks_lock_acquired(self, p, rc);
    return rc;
}

KS_EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_trylock))
        ks_resolve_all();
    int rc = ks_real.pthread_mutex_trylock(m);
    struct ks_thread *self = ks_self();
    if (rc == 0 && !self->shim_depth)
        self->locks_held++;
    return rc;
}

KS_EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (KS_UNLIKELY(!ks_real.pthread_mutex_unlock))
        ks_resolve_all();
    int rc = ks_real.pthread_mutex_unlock(m);
    if (rc == 0 && !ks_self()->shim_depth) {
        struct ks_thread *self = ks_self();
        /* A mutex locked before the shim loaded is unlocked without having
         * been counted: never go below zero. */
        if (self->locks_held > 0 && --self->locks_held == 0)
            ks_on_locks_released(self);
    }
    return rc;
}
