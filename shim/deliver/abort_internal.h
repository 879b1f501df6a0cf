/* Shared by the abort's files: deliver_abort.c (the control side and init),
 * abort_decide.c (what the thread does in its signal handlers), abort_exit.c
 * (the ways out) and abort_slot.c (the report slots and their pool, the
 * floor the others stand on). Not for other parts of the shim. */
#ifndef KS_ABORT_INTERNAL_H
#define KS_ABORT_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include "deliver.h"
#include "shim/safepoint/padcheck.h"
#include "shim/safepoint/prewalk.h"

_Static_assert(KS_WALK_CLEANUPS == KS_ABORT_MAX_CLEANUP,
               "a walk keeps as many cleanup frames as an abort reports");

/* Everything an abort request needs beyond the record's slot, from a static
 * pool (abort_slot.c): taken by the first request on a thread (under the
 * registry lock, before the first signal), given back after the thread
 * ended and was unlinked. A thread that is never asked costs nothing here. */
struct ks_abort_info {
    /* The report. The target writes it without a lock, often in a signal
     * handler: seq is odd while it does (ks_abort_snapshot retries). */
    unsigned seq;
    int how;                   /* enum ks_abort_how */
    uintptr_t where;
    int steps;
    int ncleanup;
    uintptr_t cleanup[KS_ABORT_MAX_CLEANUP];
    int nleft;
    uintptr_t left[KS_ABORT_MAX_LEFT];
    char reason[KS_ABORT_REASON_MAX];

    /* The control side's, under the registry lock. */
    int no_step;               /* the process is traced: no trap flag */
    uint64_t requested_ns;     /* first request (CLOCK_MONOTONIC) */
    uint64_t kicked_ns;        /* last signal sent */

    /* The target's search state: only the thread itself (its handlers and
     * wrappers) touches it, so it needs no lock. */
    int stepping;              /* the shim set TF and expects traps */
    int trap_was_blocked;      /* SIGTRAP was in the thread's mask when stepping began */
    uint64_t step_t0;          /* when the run began */
    int last_ret;              /* the instruction just stepped was a return */
    int prev_kind;             /* module kind of the previous PC */
    int runtime_steps;         /* steps in runtime code in this run */
    int arm_tried;             /* this run tried to patch already */
    uintptr_t fn_lo, fn_hi, fn_lsda;   /* proc info of the current function */
    int fn_valid;
    uintptr_t transient_sp;    /* the last walk met an obstacle at this SP */
    uint64_t retry_ns;         /* no new stepping run before this (NO_BOUNDARY) */
    int armed;                 /* a return address is patched (abort_tramp.S) */
    int armed_k;               /* with trampoline K */
    uintptr_t armed_slot;      /* the patched slot */
    struct ks_walk armed_walk; /* the walk made when arming */
    pthread_mutex_t *cond_mutex;   /* left from a cond wait holding this */
    /* A walk (ks_abort_walk) is under way: set by the thread around it. A
     * shim wrapper's walk (normal context) may be interrupted by the
     * abort's signal or a trap; their handlers then return at once, the
     * wrapper's walk deciding. Handlers block every signal: they never
     * interrupt each other. */
    int walking;
    /* The walks' landing pad check works here, not on the thread's stack
     * (some 25 KB: the thread may have 16 KiB in all). Last: the block's
     * hot fields above share their cache lines with nothing of it. */
    struct ks_pad_work pad_work;
};

/* The calling thread's block, NULL if it was never asked to abort. */
static inline struct ks_abort_info *ks_ai(void) { return ks_self()->abort.info; }

/* The walk (prewalk.h: ks_prewalk) of the calling thread's abort, in its
 * block's pad_work. */
static inline void ks_abort_walk(ucontext_t *ctx, int exact, int flags, struct ks_walk *w)
{
    struct ks_abort_info *a = ks_ai();
    if (a->walking) {
        /* Not reached: the handlers that could nest return first. */
        memset(w, 0, sizeof *w);
        w->verdict = KS_WALK_TRANSIENT;
        strcpy(w->reason, "the thread's own walk is under way; retried");
        return;
    }
    a->walking = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    ks_prewalk(ctx, exact, flags, w, &a->pad_work);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    a->walking = 0;
}

/* ---- The pool and the slot (abort_slot.c) ----------------------------- */
/* A zeroed block from the pool, or NULL if every one is in use (or the pool,
 * mapped at the first take, cannot be mapped). Taken by
 * the control side under the registry lock; given back by
 * ks_abort_release. */
struct ks_abort_info *ks_abort_info_take(void);
/* In a fork child: every block free again but KEEP (the forking thread's,
 * or NULL). */
void ks_abort_pool_after_fork(const struct ks_abort_info *keep);
/* Writing the slot (the target, without a lock): */
void ks_slot_begin(struct ks_thread *t);
void ks_slot_end(struct ks_thread *t);
/* Sets a pending or refused state with REASON (already formatted). */
void ks_slot_set(struct ks_thread *t, int state, int how, uintptr_t where, const char *reason);
/* "holds HELD lock(s)[ALSO]; will abort at unlock" into BUF (the one
 * wording, wherever the count is reported); async-signal-safe. */
void ks_at_unlock_reason(char *buf, size_t cap, int held, const char *also);
/* Pending at-unlock with that reason. */
void ks_slot_at_unlock(struct ks_thread *t, int held, const char *also);

/* ---- Ways out (abort_exit.c) ------------------------------------------ */
/* Ends a stepping run in UC: trap flag off, SIGTRAP blocked again if it was. */
void ks_abort_step_done(ucontext_t *uc);
__attribute__((noreturn)) void ks_abort_exit(void);
/* From a signal handler: unwinds from the interrupted context. */
__attribute__((noreturn)) void ks_abort_leave_from_signal(struct ks_thread *t, ucontext_t *uc,
                                                          const struct ks_walk *w, int how);
/* Makes UC return into ks_abort_entry as if the application had called it
 * from return address RA with stack pointer SP (before the call's push). */
void ks_abort_redirect(struct ks_thread *t, ucontext_t *uc, uintptr_t ra, uintptr_t sp,
                       const struct ks_walk *w, int how, uintptr_t where);
/* From the shim's own wrappers, in normal context. Returns if it cannot. */
void ks_abort_from_wrapper(struct ks_thread *t, int how);
/* Patches the return address of the first application frame with runtime
 * frames below it (UC is inside runtime code, or in a callback from it),
 * after a walk from that frame said yes. Returns one of: */
enum { KS_ARMED = 0, KS_ARM_STEP, KS_ARM_WAIT, KS_ARM_REFUSED };
/* (KS_ARM_STEP: not possible now, stepping may get further; KS_ARM_WAIT and
 * KS_ARM_REFUSED: the slot says why.) */
int ks_abort_arm_return(struct ks_thread *t, ucontext_t *uc);
/* Undoes the patch (RESTORE: put the original address back). */
void ks_abort_disarm(int restore);
/* In a fork child: frees every trampoline but KEEP (-1: none). */
void ks_abort_tramp_after_fork(int keep);
/* 1 if the patched frame is gone without returning (longjmp, an exception):
 * the patch is then dropped. UC: the thread's current context. */
int ks_abort_armed_stale(const ucontext_t *uc);
/* --force in a frame with cleanups and no call boundary: leave from its
 * caller's call site, without this frame's cleanups. Returns -1 if not. */
int ks_abort_discard_frame(struct ks_thread *t, ucontext_t *uc);

/* ---- The thread's decisions (abort_decide.c) -------------------------- */
int ks_abort_on_trap(siginfo_t *si, ucontext_t *uc);

/* FLAGS for a walk of T's abort: --force may unwind a language runtime's
 * frames (langrt.h); without it they refuse. */
static inline int ks_walk_flags(const struct ks_thread *t, int flags)
{
    return flags | (__atomic_load_n(&t->abort.force, __ATOMIC_ACQUIRE) ? KS_WALK_LANGRT_OK : 0);
}

static inline void ks_spin_lock(int *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
}
static inline void ks_spin_unlock(int *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

#endif
