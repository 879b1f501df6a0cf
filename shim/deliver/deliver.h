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

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#include "shim/core/registry.h"

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

/* How an abort left, or what it waits for (ks_abort_report.how). */
enum ks_abort_how {
    KS_ABORT_HOW_NONE = 0,
    KS_ABORT_HOW_SIGNALLED,     /* request sent; the thread has not run yet */
    KS_ABORT_HOW_AT_UNLOCK,     /* waits for its lock count to drop to zero */
    KS_ABORT_HOW_COND_WAIT,     /* blocked in pthread_cond_*wait; woken to leave */
    KS_ABORT_HOW_LOCK_WAIT,     /* blocked acquiring a lock (deadlock?) */
    KS_ABORT_HOW_STEPPING,      /* single-stepping to a safe point */
    KS_ABORT_HOW_ARMED,         /* return address patched: leaves when a runtime call returns */
    KS_ABORT_HOW_NO_BOUNDARY,   /* no call boundary reached in a frame with cleanups */
    KS_ABORT_HOW_INSIDE_RUNTIME,/* inside libc (or the loader...) and not coming out */
    /* How it left (state FIRING): */
    KS_ABORT_HOW_FRAME,         /* from a frame without cleanups, at any instruction */
    KS_ABORT_HOW_CALL,          /* at a call instruction of the application */
    KS_ABORT_HOW_RETURN,        /* as a runtime call returned to the application */
    KS_ABORT_HOW_UNLOCK,        /* from the unlock that released its last lock */
    KS_ABORT_HOW_COND,          /* from pthread_cond_*wait, with its mutex re-acquired */
    KS_ABORT_HOW_FORCED,        /* --force: from where it was, see left[] */
    KS_ABORT_HOW_DISCARDED,     /* --force: one frame's cleanups skipped (where) */
};

/* Asks the abort of T. Caller holds the registry lock and T is linked.
 * FORCE: end it at once even where it is not safe (held locks, inside libc);
 * the graveyard then says what was left behind. Returns 0 if the request is
 * in flight (ks_abort_snapshot says how it goes), or an errno with WHY filled in
 * (refused before anything was done to the thread). */
int ks_abort_request(struct ks_thread *t, int force, char *why, size_t cap);

/* 0 if TID can take the abort's signal; else EPERM with WHY filled in: it
 * blocks KS_SIG_ACT (with the raw rt_sigprocmask system call: the shim's
 * sigmask hooks never let the program block it), and still does some 50 ms
 * later (glibc blocks every signal for a moment around clone and on a
 * thread's way out). Reads /proc: call it without the registry lock. */
int ks_abort_reachable(pid_t tid, char *why, size_t cap);

/* What ks_abort_request needs that is slow or takes other locks (the module
 * table, the SIGTRAP handler, whether the process is traced): call it
 * before taking the registry lock. Process-wide; cheap when nothing
 * changed. */
void ks_abort_prepare(void);
/* Runs one forced unwind in a throwaway thread, once per process: glibc
 * dlopens libgcc_s at its first cancellation or pthread_exit unwind; done
 * here, that never happens inside a thread being ended. Returns 0 or an
 * errno. Call without the registry lock. */
int ks_unwind_prime(void);

/* Calling ks_abort_request again while T->abort.state is KS_ABORT_PENDING
 * is the way to retry: it re-sends the signal (at most every 200 ms), wakes
 * a condition-variable wait again, and upgrades to FORCE. A waiting verb
 * should call it every few hundred milliseconds while the abort is pending.
 * Once the thread refused (KS_ABORT_REFUSED: the thread runs on untouched),
 * the next call returns ECANCELED with the reason in WHY and clears the
 * state, so the call after that is a new request. */

#define KS_ABORT_MAX_CLEANUP 8 /* frames with cleanups remembered per abort */
#define KS_ABORT_MAX_LEFT 4    /* locks left held remembered per abort */
#define KS_ABORT_REASON_MAX 120 /* an abort's reason, NUL included, wherever it is kept */

/* What an abort request did or waits for: a consistent copy, since the
 * target writes it without a lock, often in a signal handler. */
struct ks_abort_report {
    int state;                /* enum ks_abort_state */
    int force;
    int how;                  /* enum ks_abort_how */
    int steps;                /* instructions single-stepped (last run) */
    uintptr_t site;           /* FIRING: where it left (the application frame) */
    uintptr_t where;          /* the code REASON is about, 0 if none */
    int ncleanup;             /* frames whose cleanups run on the way out */
    uintptr_t cleanup[KS_ABORT_MAX_CLEANUP];
    int nleft;                /* locks it still held when it left (--force) */
    uintptr_t left[KS_ABORT_MAX_LEFT];
    char reason[KS_ABORT_REASON_MAX];   /* why it waits, why it was refused, what it left */
};

/* Fills OUT for T (all zero if no abort was asked). Caller holds the
 * registry lock and T is linked, or T is the calling thread. */
void ks_abort_snapshot(const struct ks_thread *t, struct ks_abort_report *out);

/* A short name for HOW ("frame", "call", "at-unlock"...). */
const char *ks_abort_how_name(int how);

/* At load (ks_init, before the signals are installed): fills the module
 * table, which the doorbell's safety walk needs before control runs, and
 * installs the SIGTRAP handler. Returns 0 or an errno: the abort mode is
 * then unavailable. */
int ks_abort_init(void);
/* When control starts, before the first request (ks_init_serving), after
 * ks_unw_load: the rest of what the abort needs (libunwind loaded, libgcc_s,
 * the personality and forced-unwind lookups). Returns 0 or an errno, as
 * above. */
int ks_abort_init_serving(void);
/* On T's way out, after it is unlinked: gives its abort block back. */
void ks_abort_release(struct ks_thread *t);
/* In the child of fork: no abort asked in the parent applies. */
void ks_abort_after_fork_child(void);

/* ---- The ACT signal (deliver.c) ----------------------------------------
 * KS_SIG_ACT has one handler, the dispatcher in deliver.c: a flag or cancel
 * wake needs nothing but the interrupted system call, so the dispatcher only
 * hands the signal on when T->abort.state is not KS_ABORT_NONE. */
void ks_deliver_init(void);   /* registers the dispatcher; before ks_signals_install */

/* The abort's part of the dispatcher (abort_decide.c), in T's own signal
 * context: async-signal-safe only. */
void ks_abort_on_signal(struct ks_thread *t, siginfo_t *si, ucontext_t *uc);

/* ---- The abort's hooks in the interposition (abort_exit.c) --------------
 * Each runs in the thread itself, from the hook named. */
/* interpose_lock.c: SELF's count of held locks dropped to zero while an
 * abort is pending on it (the hook checks the state inline, since it runs on
 * every outermost unlock; this re-checks it). May not return. */
void ks_on_locks_released(struct ks_thread *self);
/* interpose_cond.c: before and after the real wait on a cond with mutex M.
 * May not return. */
void ks_on_cond_wait(struct ks_thread *self, pthread_mutex_t *m);
/* interpose_thread.c: SELF is ending; the abort's last word (releases a
 * cond's mutex it left from on purpose) before its grave is written. */
void ks_abort_on_exit(struct ks_thread *self);

/* ---- Flag mode (deliver_flag.c) ----------------------------------------- */

/* Where the static TLS block of the module mapping INSIDE lies, as an
 * offset from a thread's pointer (the same in every thread) and its size,
 * for "tls" (a client writing a thread-local stop variable). Call without
 * the registry lock (dl_iterate_phdr takes the loader's). Returns 0 or an
 * errno with WHY filled in. */
int ks_tls_block_offset(uint64_t inside, intptr_t *from_tp, size_t *size, char *why, size_t cap);
/* Sets T's stop flag, signals its eventfd and wakes T once from a blocking
 * call. Caller holds the registry lock and T is linked. The program's own
 * stop variable, if any, the client has written already (through the
 * kernel); the shim writes none. Returns 0. */
int ks_flag_request(struct ks_thread *t, char *why, size_t cap);
/* On T's way out, after it is unlinked: closes its eventfd. */
void ks_flag_release(struct ks_thread *t);

/* ---- Cancel mode (deliver_cancel.c) -------------------------------------
 * pthread_cancel issued from inside the process (glibc ignores SIGCANCEL
 * from outside). The thread's cancel state is known from the interposed
 * pthread_setcancelstate and pthread_setcanceltype. Caller holds the
 * registry lock and T is linked, and has checked that the unwind is safe
 * from T's stack (cancel_check.h). Returns 0 or an errno with WHY filled in. */
int ks_cancel_request(struct ks_thread *t, char *why, size_t cap);

/* Why T, asked to end, is still alive: "" if nothing was asked. Caller holds
 * the registry lock. */
void ks_pending_reason(const struct ks_thread *t, char *buf, size_t cap);
/* The same from AB, a snapshot of T's abort taken by the caller: a reply
 * that shows both the reason and the abort's fields then shows one moment
 * of a target that rewrites its report as it goes. */
void ks_pending_reason_of(const struct ks_thread *t, const struct ks_abort_report *ab,
                          char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
