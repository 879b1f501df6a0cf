/* Making a thread that a signal interrupted in the middle of the program's
 * code call one function of the shim's, then go on exactly where it was, as
 * if nothing had happened: every register (the vector and x87 state
 * included), its signal mask and errno come back as they were.
 *
 * The doorbell (control.h) uses it to start serving in a single-threaded
 * process whose only thread computes without a system call: the signal
 * handler cannot start a thread itself (pthread_create is not
 * async-signal-safe), but the interrupted code can, if it is the program's
 * own and nothing below it is inside libc, the loader, the allocator or a
 * signal handler (ks_redirect_safe); or if it is returning from a system
 * call in one of libc's stubs that the program's own code called (a thread
 * that spends its time in the kernel takes signals there).
 *
 * How: the handler saves its context and points it at a trampoline on a
 * static stack of the shim's (the thread's own stack, its red zone
 * included, is never touched). The trampoline calls FN with every signal
 * blocked but the shim's dump signal, then sends that signal to its own
 * thread; that handler copies the saved context back into its own, and the
 * kernel's sigreturn restores it. One redirect at a time, process-wide. */
#ifndef KS_REDIRECT_H
#define KS_REDIRECT_H

#include <signal.h>
#include <ucontext.h>

#ifdef __cplusplus
extern "C" {
#endif

/* In signal context: 1 if the thread that took the signal, interrupted at
 * UC, may call into libc right there (see above). It reads the module
 * table: ks_redirect_table first. */
int ks_redirect_safe(ucontext_t *uc);

/* In signal context, before ks_redirect_safe: builds the module table if
 * none was built yet (a process's first ring), there in the handler, but
 * only where the thread was interrupted in the application's own code, or
 * in one of libc's system call stubs that the application's code called,
 * and no frame below is a signal frame or the loader's (a CFI walk, each
 * frame placed by glibc's lock-free _dl_find_object): anywhere else (the
 * loader, libc's other code, the vDSO, the shim, no object, a handler that
 * may have interrupted the loader) the thread could hold the loader's list
 * half changed, which the build walks (dl_iterate_phdr). Returns 0 once a
 * table exists, EAGAIN if not now (the injector rings again). */
int ks_redirect_table(ucontext_t *uc);

/* In signal context: saves UC (and ERR, the interrupted code's errno) and
 * points UC at the trampoline, which will call FN and then resume. Returns
 * 0, or EBUSY (another redirect is in flight) or E2BIG (a vector state
 * larger than the shim's buffer): UC is then untouched. */
int ks_redirect(ucontext_t *uc, void (*fn)(void), int err);

/* In signal context: if SI is the trampoline's resume signal for this
 * thread, restores the saved context into UC and the saved errno into *ERR
 * (what the signal entry restores on return), and returns 1; else 0. */
int ks_redirect_resume(const siginfo_t *si, ucontext_t *uc, int *err);

#ifdef __cplusplus
}
#endif
#endif
