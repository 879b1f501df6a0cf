/* Under ASan (--config=asan) only: stale stack poison.
 *
 * A frame that never returns normally leaves the redzones of its locals
 * poisoned: a forced unwind (cancellation, pthread_exit) skips the epilogues
 * of every frame it unwinds, and an abort that discards a frame (--force
 * with no call boundary) leaves from that frame's caller. Code that later
 * runs on that part of the stack (the shim's cleanup, the unwinder, ASan's
 * own __asan_handle_no_return, whose sigaltstack interceptor checks a local
 * of its own) trips over the poison. The code that runs there is left
 * uninstrumented (KS_NO_ASAN) and clears the stack below itself first. In
 * other builds these are no-ops. */
#ifndef KS_ASAN_STACK_H
#define KS_ASAN_STACK_H

#include <pthread.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>

#define KS_NO_ASAN __attribute__((no_sanitize_address, noinline))

/* Unpoisons [STACK_LO, the caller's frame). Not in signal context. */
static KS_NO_ASAN void ks_unpoison_below(void *stack_lo)
{
    char *here = __builtin_frame_address(0);
    if (stack_lo && (char *)stack_lo < here)
        __asan_unpoison_memory_region(stack_lo, (size_t)(here - (char *)stack_lo));
}

/* The lowest address of the calling thread's stack, or NULL. Not in signal
 * context (pthread_getattr_np allocates). What the interceptors check lives
 * in TLS, not on a stack that may still be poisoned. */
static inline void *ks_stack_lo(void)
{
    static __thread struct {
        pthread_attr_t a;
        void *lo;
        size_t size;
    } s;
    s.lo = NULL;
    if (pthread_getattr_np(pthread_self(), &s.a) == 0) {
        pthread_attr_getstack(&s.a, &s.lo, &s.size);
        pthread_attr_destroy(&s.a);
    }
    return s.lo;
}
#else
#define KS_NO_ASAN
static inline void ks_unpoison_below(void *stack_lo) { (void)stack_lo; }
static inline void *ks_stack_lo(void) { return (void *)0; }
#endif

#endif
