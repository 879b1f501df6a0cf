/* Lock interposition: counts the pthread mutexes and rwlocks each thread
 * holds, and remembers the first few (an abort never fires while the count is
 * above zero, and --force reports which it left locked), and records what a
 * thread is blocked on (for the wait-for graph). The hot path adds a few TLS
 * stores and one increment to the real call. A default mutex's uncontended
 * lock and unlock are done here, inline, the way glibc does them
 * (core/mutex_fast.h): no call to glibc at all then, and no wait record
 * (the thread never waited).
 *
 * Only locks taken through the dynamic symbols are seen: libc's internal
 * locks are not, which is right, since an abort never fires inside libc.
 * Locks the shim takes for itself while it runs on a program thread
 * (shim_depth: libunwind's during a stack dump or an abort's walk) are not
 * the program's: the hooks pass straight through. */
#include <errno.h>
#include <pthread.h>

#include "shim/deliver/deliver.h"
#include "shim/core/held.h"
#include "shim/core/ks.h"
#include "shim/core/mutex_fast.h"
#include "shim/core/registry.h"

/* ks_on_locks_released (deliver.h) is called by the owner thread when its
 * count drops to zero while an abort is pending on it. The state check is
 * made here, inline, because this runs on every outermost unlock and the
 * call alone cost 1.4 ns of an 11 ns lock+unlock pair (docs/bench.md); the
 * hook re-checks it with the rest. */

/* Out of line, and reached by a tail call: the unlock hooks' fast path then
 * needs no frame of its own. Returns 0 (the unlock's result). */
static __attribute__((noinline, cold)) int ks_last_lock_released(struct ks_thread *self)
{
    ks_on_locks_released(self);
    return 0;
}

/* ks_held_remove when OBJ is not the newest lock remembered (or more are
 * held than remembered): the search, out of line, reached by a tail call. */
static __attribute__((noinline)) int ks_held_remove_any(struct ks_thread *self, void *obj)
{
    int n = self->locks_held;
    ks_lock_mark mark;
    if (ks_held_take(self, obj, &mark) == 0 && n == 1 &&
        KS_UNLIKELY(__atomic_load_n(&self->abort.state, __ATOMIC_ACQUIRE) == KS_ABORT_PENDING))
        return ks_last_lock_released(self);
    return 0;
}

/* Takes OBJ out of SELF's count after its real unlock returned 0; returns 0. */
static inline int ks_held_remove(struct ks_thread *self, void *obj)
{
    int n = ks_held_pop(self, obj);
    if (KS_UNLIKELY(n == 0))
        return ks_held_remove_any(self, obj);
    if (n == 1 &&
        KS_UNLIKELY(__atomic_load_n(&self->abort.state, __ATOMIC_ACQUIRE) == KS_ABORT_PENDING))
        return ks_last_lock_released(self);
    return 0;
}

/* What the thread waited for before this lock call: a program signal
 * handler may lock while its thread is blocked on another mutex, and the
 * outer wait must still show when the handler returns. */
struct ks_wait {
    struct ks_thread *self;
    int kind;
    void *obj;
};

static inline struct ks_wait ks_wait_begin(int kind, void *obj)
{
    struct ks_thread *self = ks_self();
    struct ks_wait w = {self, KS_WAIT_NONE, NULL};
    if (KS_UNLIKELY(self->shim_depth))
        return w;
    w.kind = __atomic_load_n(&self->wait_kind, __ATOMIC_RELAXED);
    w.obj = __atomic_load_n(&self->wait_obj, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_obj, obj, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_kind, kind, __ATOMIC_RELAXED);
    return w;
}

static inline int ks_acquired(struct ks_wait w, void *obj, void *ra, int rc)
{
    struct ks_thread *self = w.self;
    if (KS_UNLIKELY(self->shim_depth))
        return rc;
    __atomic_store_n(&self->wait_kind, w.kind, __ATOMIC_RELAXED);
    __atomic_store_n(&self->wait_obj, w.obj, __ATOMIC_RELAXED);
    if (rc == 0)
        ks_held_add(self, obj, ra);
    return rc;
}

static inline int ks_tried(void *obj, void *ra, int rc)
{
    struct ks_thread *self = ks_self();
    if (KS_LIKELY(rc == 0) && KS_LIKELY(!self->shim_depth))
        ks_held_add(self, obj, ra);
    return rc;
}

static inline int ks_released(void *obj, int rc)
{
    struct ks_thread *self = ks_self();
    if (KS_LIKELY(rc == 0) && KS_LIKELY(!self->shim_depth))
        return ks_held_remove(self, obj);
    return rc;
}

/* ---- Mutexes ---------------------------------------------------------- */

/* The slow paths of the three mutex hooks that have a fast one, out of
 * line: the fast path then needs no saved register and no frame. RA is the
 * hook's return address. */
static __attribute__((noinline)) int ks_mutex_lock_slow(pthread_mutex_t *m, void *ra)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_MUTEX, m);
    return ks_acquired(w, m, ra, KS_CALL_OR(pthread_mutex_lock, EAGAIN, (m)));
}

static __attribute__((noinline)) int ks_mutex_trylock_slow(pthread_mutex_t *m, void *ra)
{
    if (__atomic_load_n(&ks_mutex_fast_try_off, __ATOMIC_RELAXED) == KS_MUTEX_TRY_UNPROBED)
        ks_mutex_fast_try_probe();   /* this call is glibc's either way */
    return ks_tried(m, ra, KS_CALL_OR(pthread_mutex_trylock, EAGAIN, (m)));
}

static __attribute__((noinline)) int ks_mutex_unlock_slow(pthread_mutex_t *m, int fast)
{
    if (fast == KS_MUTEX_RELEASED_WAKE) {
        ks_mutex_wake(&m->__data.__lock);
        return ks_released(m, 0);
    }
    return ks_released(m, KS_CALL_OR(pthread_mutex_unlock, EAGAIN, (m)));
}

KS_EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    if (KS_LIKELY(ks_mutex_fast_lock(m)))
        return ks_tried(m, __builtin_return_address(0), 0);
    return ks_mutex_lock_slow(m, __builtin_return_address(0));
}

KS_EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abstime)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_MUTEX, m);
    return ks_acquired(w, m, __builtin_return_address(0), KS_CALL_OR(pthread_mutex_timedlock, EAGAIN, (m, abstime)));
}

KS_EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clk, const struct timespec *abstime)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_MUTEX, m);
    return ks_acquired(w, m, __builtin_return_address(0), KS_CALL_OR(pthread_mutex_clocklock, EAGAIN, (m, clk, abstime)));
}

KS_EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    if (ks_mutex_fast_trylock(m))
        return ks_tried(m, __builtin_return_address(0), 0);
    return ks_mutex_trylock_slow(m, __builtin_return_address(0));
}

KS_EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    int fast = ks_mutex_fast_unlock(m);
    if (KS_LIKELY(fast == KS_MUTEX_RELEASED))
        return ks_released(m, 0);
    return ks_mutex_unlock_slow(m, fast);
}

/* ---- Read-write locks (each read lock counts: they nest) ------------- */

KS_EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_RWLOCK, l);
    return ks_acquired(w, l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_rdlock, EAGAIN, (l)));
}

KS_EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_RWLOCK, l);
    return ks_acquired(w, l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_wrlock, EAGAIN, (l)));
}

KS_EXPORT int pthread_rwlock_timedrdlock(pthread_rwlock_t *l, const struct timespec *t)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_RWLOCK, l);
    return ks_acquired(w, l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_timedrdlock, EAGAIN, (l, t)));
}

KS_EXPORT int pthread_rwlock_timedwrlock(pthread_rwlock_t *l, const struct timespec *t)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_RWLOCK, l);
    return ks_acquired(w, l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_timedwrlock, EAGAIN, (l, t)));
}

KS_EXPORT int pthread_rwlock_clockrdlock(pthread_rwlock_t *l, clockid_t c, const struct timespec *t)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_RWLOCK, l);
    return ks_acquired(w, l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_clockrdlock, EAGAIN, (l, c, t)));
}

KS_EXPORT int pthread_rwlock_clockwrlock(pthread_rwlock_t *l, clockid_t c, const struct timespec *t)
{
    struct ks_wait w = ks_wait_begin(KS_WAIT_RWLOCK, l);
    return ks_acquired(w, l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_clockwrlock, EAGAIN, (l, c, t)));
}

KS_EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    return ks_tried(l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_tryrdlock, EAGAIN, (l)));
}

KS_EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    return ks_tried(l, __builtin_return_address(0), KS_CALL_OR(pthread_rwlock_trywrlock, EAGAIN, (l)));
}

KS_EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    return ks_released(l, KS_CALL_OR(pthread_rwlock_unlock, EAGAIN, (l)));
}
