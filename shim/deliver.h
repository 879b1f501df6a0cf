/* Ending a thread: the contract between the verbs that request it
 * (cmd_end.c), the modes (deliver_flag.c, deliver_cancel.c,
 * deliver_abort.c) and the exit path (interpose_thread.c).
 *
 * Every request is made by the control side with the registry lock held and
 * the target's record linked (so the target is alive and its tid is its own).
 * The target acts on it in its own context; when it ends, its cleanup
 * records how (the "graveyard"), so a client that asks after the thread is
 * gone still learns how and where it left. */
#ifndef KS_DELIVER_H
#define KS_DELIVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a thread ended. */
enum ks_end_how {
    KS_END_ALIVE = 0,
    KS_END_RETURNED,     /* its start routine returned */
    KS_END_EXITED,       /* pthread_exit */
    KS_END_CANCELLED,    /* pthread_cancel acted */
    KS_END_ABORTED,      /* the shim's abort fired */
};

/* State of an abort request, kept in the target's record (t->abort). */
enum ks_abort_state {
    KS_ABORT_NONE = 0,
    KS_ABORT_PENDING,    /* waiting for a safe point; reason says which */
    KS_ABORT_REFUSED,    /* cannot be made safe; reason says why */
    KS_ABORT_FIRING,     /* unwinding now */
};

/* Asks the abort of T. Caller holds the registry lock and T is linked.
 * FORCE: end it at once even where it is not safe (held locks, inside libc);
 * the graveyard then says what was left behind. Returns 0 if the request is
 * in flight (T->abort says how it goes), or an errno with WHY filled in
 * (refused before anything was done to the thread). */
int ks_abort_request(struct ks_thread *t, int force, char *why, size_t cap)
    __attribute__((weak));
/* Weak with default visibility on purpose: a hidden weak reference that
 * stays undefined is resolved by ld.so to the library's load address, not
 * to NULL, and the "is it built in?" test would pass. Once deliver_abort.c
 * defines these (hidden, like every ks_ symbol), the references bind
 * locally at link time. */

/* ---- The ACT signal (deliver.c) ----------------------------------------
 * KS_SIG_ACT has one handler, the dispatcher in deliver.c: a flag or cancel
 * wake needs nothing but the interrupted system call, so the dispatcher only
 * hands the signal on when T->abort.state is not KS_ABORT_NONE. */
void ks_deliver_init(void);   /* registers the dispatcher; before ks_signals_install */

/* The abort's part of the dispatcher (deliver_abort.c), in T's own signal
 * context: async-signal-safe only. Weak, like ks_abort_request: a build
 * without the abort mode answers mode=abort with "unsupported". */
void ks_abort_on_signal(struct ks_thread *t, siginfo_t *si, ucontext_t *uc)
    __attribute__((weak));

/* ---- Flag mode (deliver_flag.c) ----------------------------------------- */

/* The program's own stop variable (--flag-symbol), as the injector found it:
 * a plain address, or an offset in a module's thread-local block. */
struct ks_flag_var {
    int set;                  /* 0: no variable, only the shim's own flag */
    int is_tls;
    uint64_t addr;            /* absolute address; for TLS, offset in the block */
    uint64_t module_base;     /* TLS only: an address inside the module */
    int size;                 /* 1, 2, 4 or 8 */
    uint64_t value;
    char name[128];           /* for messages */
    /* Filled by ks_flag_prepare (TLS): the block's offset from the thread
     * pointer, the same in every thread for static TLS. */
    intptr_t tls_from_tp;
};

/* Resolves what can be resolved without the registry lock (the TLS block's
 * offset; dl_iterate_phdr takes the loader's lock). Returns 0 or an errno
 * with WHY filled in. */
int ks_flag_prepare(struct ks_flag_var *v, char *why, size_t cap);
/* Sets T's stop flag, signals its eventfd, writes V (if set) and wakes T
 * once from a blocking call. Caller holds the registry lock and T is
 * linked. V is written first: if that fails (bad address, read-only memory)
 * nothing is done and an errno is returned with WHY filled in. */
int ks_flag_request(struct ks_thread *t, const struct ks_flag_var *v, char *why, size_t cap);
/* On T's way out, after it is unlinked: closes its eventfd. */
void ks_flag_release(struct ks_thread *t);

/* ---- Cancel mode (deliver_cancel.c) -------------------------------------
 * pthread_cancel issued from inside the process (glibc ignores SIGCANCEL
 * from outside). The thread's cancel state is known from the interposed
 * pthread_setcancelstate and pthread_setcanceltype. Caller holds the
 * registry lock and T is linked. Returns 0 or an errno with WHY filled in. */
int ks_cancel_request(struct ks_thread *t, char *why, size_t cap);

/* Why T, asked to end, is still alive: "" if nothing was asked. Caller holds
 * the registry lock. */
void ks_pending_reason(const struct ks_thread *t, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
