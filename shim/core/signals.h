/* The shim's two signals, and living with the program's own use of them.
 *
 * KS_SIG_DUMP (default SIGRTMAX-3, 61) asks a thread to capture its stack;
 * installed with SA_RESTART. KS_SIG_ACT (default SIGRTMAX-2, 62) asks a
 * thread to act on a request in its record (wake, abort); installed without
 * SA_RESTART, so a blocking call returns EINTR and the thread can move.
 * KILLSHIM_SIGNAL=N moves them to N and N+1 (within SIGRTMIN..SIGRTMAX).
 * glibc's own SIGCANCEL and SIGSETXID (32, 33) are never touched.
 *
 * Our signals carry SI_QUEUE, our pid and a cookie; anything else arriving on
 * the same numbers is the program's and goes to the handler the program
 * installed (sigaction and signal are interposed: the program sees and sets
 * its own action, the kernel keeps ours). Masks the program sets never block
 * our signals (as glibc does for SIGCANCEL). */
#ifndef KS_SIGNALS_H
#define KS_SIGNALS_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <ucontext.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ks_sig_kind { KS_SIG_DUMP = 0, KS_SIG_ACT = 1, KS_SIG_COUNT = 2 };

/* Runs inside the target thread, in signal context: async-signal-safe only. */
typedef void ks_sig_fn(int signo, siginfo_t *si, ucontext_t *uc);

/* Registers the doorbell (control.h): runs in signal context when KS_SIG_DUMP
 * arrives with KS_DOORBELL_COOKIE or KS_RESUME_COOKIE (doorbell.h), from
 * any sender the kernel let signal this process. *ERR: the errno the
 * signal's return restores (the interrupted code's). */
typedef void ks_doorbell_fn(siginfo_t *si, ucontext_t *uc, int *err);
void ks_signals_set_doorbell(ks_doorbell_fn *fn);

/* Registers the handler for K (stack.c for DUMP, deliver*.c for ACT). Call
 * before ks_signals_install or at any time after; NULL ignores K. */
void ks_signals_set_handler(enum ks_sig_kind k, ks_sig_fn *fn);
/* Installs the kernel handlers. Returns 0 or an errno (reported by caller). */
int ks_signals_install(void);
/* libc's sigaction, around any interposer: the kernel-facing install of the
 * shim's own handlers (also SIGTRAP's, x86_step.c). */
int ks_sigaction_kernel(int signo, const struct sigaction *act, struct sigaction *old);
/* The signal number of K. */
int ks_signo(enum ks_sig_kind k);
/* 1 if SIGNO is one of the shim's (after install). */
int ks_is_shim_signal(int signo);

/* Sends K to TID if, under the registry lock, TID is linked with ID (0: any).
 * Returns 0, ESRCH (gone or recycled), or the errno of the send. */
int ks_signal_thread(pid_t tid, uint64_t id, enum ks_sig_kind k);
/* Same, for a caller that holds the registry lock and found T linked (so T's
 * tid is its own): takes no lock itself. Returns 0, ENOTSUP if the program took the signal over
 * with a raw rt_sigaction (nothing is sent; warned once), or the errno of
 * the send. */
struct ks_thread;
int ks_signal_linked(const struct ks_thread *t, enum ks_sig_kind k);

/* Sends K to TID of this process without looking at the registry: the
 * caller holds the registry lock with TID linked, or has reasoned why a
 * recycled tid receiving K is harmless (cmd_stack.c, unregistered threads).
 * Returns 0 or the errno of the send. */
int ks_signal_tid(pid_t tid, enum ks_sig_kind k);

/* sigprocmask/pthread_sigmask called from code in [LO, HI) may block the
 * shim's signals like any other: libunwind blocks every signal around its
 * internal locks, and a dump handler that then unwound on that thread would
 * wait for a lock its own thread holds. Such a thread reports "signals
 * blocked" instead. Set once at init. */
void ks_signals_pass_mask_from(uintptr_t lo, uintptr_t hi);

/* For the program's sigaction (interpose_signal.c): if SIGNO is one of the
 * shim's, stores in *OLD (if not NULL) the action the program believes it
 * installed there and makes ACT (if not NULL) that action, and returns 1;
 * the kernel keeps the shim's handler, which chains to it. Otherwise
 * returns 0 and touches nothing. */
int ks_signals_program_action(int signo, const struct sigaction *act, struct sigaction *old);

/* For the program's sigaction when it asks for SA_ONSTACK (CALLER: its
 * return address): if CALLER's object is a Go runtime (it defines
 * _cgo_topofstack), the shim's handlers take SA_ONSTACK from now on, on
 * both numbers. Go runs goroutines on stacks of 2 KiB and gives each of its
 * threads an alternate stack of 32 KiB; as a c-shared library it installs
 * no handler on the shim's numbers (those that have one it leaves alone),
 * so the per-number rule of ks_signals_program_action never applies, and a
 * dump on a goroutine's stack killed the program ("fatal error: fault").
 * Not for any SA_ONSTACK: Rust's runtime asks for it on SIGSEGV with
 * alternate stacks of 8 KiB, too small to unwind on. */
void ks_signals_onstack_if_go(uintptr_t caller);

/* 1 if CALLER (a hook's return address) is in the code of
 * ks_signals_pass_mask_from: libunwind, masking around its locks, mostly
 * inside the shim's own signal handlers. Its calls go straight to the kernel
 * (ks_sigmask_raw), not through whatever interposes sigprocmask after the
 * shim: a sanitizer's interceptor would be re-entered from a handler that
 * bypasses the sanitizer (ThreadSanitizer's reads libunwind's mask, written
 * once by the thread that loaded libunwind, and reports a race). */
int ks_signals_from_pass(uintptr_t caller);

/* rt_sigprocmask as glibc's pthread_sigmask makes it: SET without glibc's
 * two internal signals (cancellation, setxid) when blocking or setting.
 * Returns 0 or an errno. Async-signal-safe. */
int ks_sigmask_raw(int how, const sigset_t *set, sigset_t *old);

/* The pass range's masking (libunwind blocks every signal around each
 * dl_iterate_phdr: two rt_sigprocmask calls a frame, 6 to 8 a thread of a
 * dump, a fifth of the connection thread's time in a dump of 1,000 threads).
 * Between ks_sigmask_batch_begin and _end the calling thread blocks every
 * signal it can (the mask, M, is read back from the kernel), and a call that
 * would leave M as it is (blocking, setting M or the full set, asking) is
 * answered without a system call, exactly as the kernel would answer it;
 * any other call goes to the kernel and ends the batch's shortcut. Outside
 * a batch it is ks_sigmask_raw. Async-signal-safe. */
int ks_sigmask_pass(int how, const sigset_t *set, sigset_t *old);
/* Blocks every signal on the calling thread, keeping the mask it had in
 * *SAVED, and starts the shortcut; _end ends it and restores *SAVED. Not
 * nested; not from a signal handler. */
void ks_sigmask_batch_begin(sigset_t *saved);
void ks_sigmask_batch_end(const sigset_t *saved);

/* For the program's sigprocmask and pthread_sigmask: SET, or COPY holding
 * SET without the shim's signals if SET would block them (calls from the
 * pass range do not come here: ks_signals_from_pass). */
const sigset_t *ks_signals_unblockable(int how, const sigset_t *set, sigset_t *copy);

#ifdef __cplusplus
}
#endif
#endif
