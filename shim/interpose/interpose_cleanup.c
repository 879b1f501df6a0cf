/* pthread_cleanup_push interposition: in C built without -fexceptions,
 * pthread_cleanup_push registers its handler with __pthread_register_cancel
 * and pthread_cleanup_pop unregisters it (glibc's pthread.h); the handlers
 * registered now run if the thread is cancelled. The shim counts them per
 * thread (cleanup_depth), and each lock remembers the count it was taken at
 * (interpose_lock.c), so cancel mode can tell a lock that a handler
 * registered after it will release (the idiom: lock; push(unlock); wait)
 * from one that nothing would release (cancel_check.c).
 *
 * C++ (and C with -fexceptions) runs cleanups as destructors instead: the
 * cancel's stack walk sees those (prewalk.c). The unwind runs the handlers
 * without unregistering them; the thread ends, so the count does not
 * matter any more. A longjmp out of a push/pop pair (undefined in POSIX)
 * leaves the count too high, as it leaves glibc's own list. */
#include <pthread.h>

#include "shim/core/ks.h"
#include "shim/core/registry.h"
#include "shim/safepoint/safepoint.h"

/* Only the program's handlers count. A sanitizer's runtime registers its
 * own around the waits it intercepts (ThreadSanitizer's pthread_cond_wait),
 * and it releases nothing of the program's. CALLER: the hook's return
 * address; a module loaded since the table was built counts as the
 * program's. Registering is rare: the lookup is not on a hot path. */
static void ks_cleanup_add(int delta, void *caller)
{
    struct ks_thread *self = ks_self();
    struct ks_pc_info pi;
    int kind = ks_safepoint_lookup((uintptr_t)caller, &pi);
    if (self->shim_depth || (kind != KS_MOD_APP && kind != KS_MOD_NONE))
        return;
    int d = self->cleanup_depth + delta;
    /* Read by the control side under the registry lock: whole values. */
    __atomic_store_n(&self->cleanup_depth, d < 0 ? 0 : d, __ATOMIC_RELAXED);
}

KS_EXPORT void __pthread_register_cancel(__pthread_unwind_buf_t *buf)
{
    ks_real___pthread_register_cancel_t *real = KS_REAL(__pthread_register_cancel);
    if (real)
        real(buf);
    ks_cleanup_add(1, __builtin_return_address(0));
}

KS_EXPORT void __pthread_unregister_cancel(__pthread_unwind_buf_t *buf)
{
    ks_cleanup_add(-1, __builtin_return_address(0));
    ks_real___pthread_unregister_cancel_t *real = KS_REAL(__pthread_unregister_cancel);
    if (real)
        real(buf);
}

KS_EXPORT void __pthread_register_cancel_defer(__pthread_unwind_buf_t *buf)
{
    ks_real___pthread_register_cancel_defer_t *real = KS_REAL(__pthread_register_cancel_defer);
    if (real)
        real(buf);
    ks_cleanup_add(1, __builtin_return_address(0));
}

KS_EXPORT void __pthread_unregister_cancel_restore(__pthread_unwind_buf_t *buf)
{
    ks_cleanup_add(-1, __builtin_return_address(0));
    ks_real___pthread_unregister_cancel_restore_t *real = KS_REAL(__pthread_unregister_cancel_restore);
    if (real)
        real(buf);
}
