/* What an aborted thread does in its own signal handlers: find the next safe
 * point, or say why it waits. Async-signal-safe only.
 *
 * The first decision runs in the KS_SIG_ACT handler:
 * - locks held (the count interpose_lock.c keeps) or a wait in the shim's
 *   cond wrapper: the unlock hook or the wrapper leaves by itself;
 * - application code, frame without landing pads: leave from the signal
 *   frame (nothing in that frame needs a call site);
 * - runtime code (libc...), or a callback of it: patch the return address of
 *   the first application frame below (abort_exit.c) and let it run;
 * - otherwise (a frame with landing pads, or no patch possible): set the
 *   trap flag. Each following instruction traps into ks_abort_on_trap, which
 *   makes the same decision, and also leaves at a call instruction of the
 *   application (redirected into ks_abort_entry, so the unwind starts at
 *   that call site) or right after a runtime call returned into it.
 * A stepping run is bounded: past it, a frame with landing pads and no call
 * is reported pending (--force leaves from its caller without its cleanups),
 * runtime code gets its return patched. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>

#include "abort_internal.h"
#include "shim/core/asfmt.h"
#include "shim/core/ks.h"
#include "shim/safepoint/safepoint.h"
#include "shim/unwind/unwind.h"
#include "shim/safepoint/x86_decode.h"
#include "shim/safepoint/x86_step.h"

/* One stepping run: an instruction costs about 10 us of the thread's time
 * (two kernel entries), so a run is bounded in time as well as count. A
 * frame with no call boundary is tried again at most every KS_RETRY_NS: a
 * pending abort slows the thread by at most a tenth. */
#define KS_STEP_BUDGET 100000
#define KS_STEP_BUDGET_NS (200ull * 1000 * 1000)
#define KS_RETRY_NS (2000ull * 1000 * 1000)
#define KS_RUNTIME_STEPS 2000

enum { KS_GO_ON = 0, KS_DONE = 1 };

static uintptr_t ks_pc(const ucontext_t *uc) { return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP]; }
static uintptr_t ks_sp(const ucontext_t *uc) { return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP]; }
static int ks_forced(struct ks_thread *t) { return __atomic_load_n(&t->abort.force, __ATOMIC_ACQUIRE); }

/* Stepping with SIGTRAP blocked is fatal: the kernel forces a blocked
 * synchronous signal to its default action, which kills the process. So a
 * run unblocks it in the context it returns to; ks_abort_step_done puts it
 * back at the end. */
static void ks_stop(ucontext_t *uc) { ks_abort_step_done(uc); }

/* The next instruction must not run under the trap flag: a system call that
 * may block SIGTRAP (glibc blocks every signal in a thread's exit path and
 * around clone) or that creates a thread or process, which would start with
 * the flag set and, in pthread_create's child, every signal blocked. */
static int ks_unsteppable(const ucontext_t *uc, const struct ks_pc_info *pi)
{
    uintptr_t pc = ks_pc(uc);
    if (pi->seg_hi < pc + 2 || pc < pi->seg_lo)
        return 0;
    const uint8_t *c = (const uint8_t *)pc;
    if (c[0] != 0x0f || c[1] != 0x05)
        return 0;
    greg_t nr = uc->uc_mcontext.gregs[REG_RAX];
    greg_t how = uc->uc_mcontext.gregs[REG_RDI];
    return (nr == SYS_rt_sigprocmask && how != SIG_UNBLOCK) || nr == SYS_clone ||
           nr == SYS_clone3 || nr == SYS_fork || nr == SYS_vfork;
}

static void ks_pending(struct ks_thread *t, int how, uintptr_t where, const char *a, const char *b)
{
    char msg[120];
    struct ks_sb sb;
    ks_sb_init(&sb, msg, sizeof msg);
    ks_sb_str(&sb, a);
    if (where) {
        ks_sb_ch(&sb, ' ');
        ks_sb_where(&sb, where);
    }
    ks_sb_str(&sb, b);
    ks_slot_set(t, KS_ABORT_PENDING, how, where, msg);
}

/* Code bytes at PC that are certainly mapped: up to the end of its segment. */
static size_t ks_code_avail(uintptr_t pc, const struct ks_pc_info *pi)
{
    if (pi->seg_hi <= pc)
        return 0;
    size_t n = pi->seg_hi - pc;
    return n < 15 ? n : 15;
}

/* Does PC's function have landing pads? Cached per function. Returns 1, 0,
 * or -1 if the function has no unwind information. */
static int ks_fn_has_lsda(uintptr_t pc)
{
    if (!ks_ai()->fn_valid || pc < ks_ai()->fn_lo || pc >= ks_ai()->fn_hi) {
        unw_proc_info_t pi;
        memset(&pi, 0, sizeof pi);
        if (ks_unw.get_proc_info_by_ip(ks_unw.as, pc, &pi, NULL) != 0 || pi.end_ip <= pi.start_ip) {
            ks_ai()->fn_valid = 0;
            return -1;
        }
        ks_ai()->fn_lo = pi.start_ip;
        ks_ai()->fn_hi = pi.end_ip;
        ks_ai()->fn_lsda = pi.lsda;
        ks_ai()->fn_valid = 1;
    }
    return ks_ai()->fn_lsda != 0;
}

/* Acts on a walk made for a way out. Returns KS_DONE if the walk refused
 * (the thread is left as it was), KS_GO_ON if the obstacle may pass. */
static int ks_walk_failed(struct ks_thread *t, ucontext_t *uc, const struct ks_walk *w)
{
    if (w->verdict == KS_WALK_REFUSED) {
        ks_stop(uc);
        ks_slot_set(t, KS_ABORT_REFUSED, t->abort.info->how, w->where, w->reason);
        return KS_DONE;
    }
    ks_ai()->transient_sp = w->transient_sp;
    if (w->obstacle == KS_OBST_RUNTIME && !ks_ai()->arm_tried) {
        /* A callback of a runtime function: leave when that returns. */
        ks_ai()->arm_tried = 1;
        int r = ks_abort_arm_return(t, uc);
        if (r != KS_ARM_STEP) {
            ks_stop(uc);
            return KS_DONE;
        }
    }
    return KS_GO_ON;
}

/* Blocked in a system call that the signal interrupted. */
static int ks_interrupted_syscall(const ucontext_t *uc, const struct ks_pc_info *pi)
{
    uintptr_t pc = ks_pc(uc);
    return uc->uc_mcontext.gregs[REG_RAX] == -EINTR && pc - 2 >= pi->seg_lo && pc <= pi->seg_hi &&
           ks_x86_after_syscall((const uint8_t *)pc, 2);
}

/* Locks and the wrappers' waits. Returns KS_DONE if they decide. */
static int ks_check_locks(struct ks_thread *t, ucontext_t *uc, int from_signal)
{
    int force = ks_forced(t);
    if (!force && t->locks_held > 0) {
        ks_stop(uc);
        ks_slot_at_unlock(t, t->locks_held, NULL);
        return KS_DONE;
    }
    int wk = __atomic_load_n(&t->wait_kind, __ATOMIC_RELAXED);
    void *obj = __atomic_load_n(&t->wait_obj, __ATOMIC_RELAXED);
    if (wk == KS_WAIT_COND) {
        /* The cond wrapper leaves by itself once woken (ks_on_cond_wait). */
        if (force && from_signal) {
            struct ks_walk w;
            ks_abort_walk(uc, 1, ks_walk_flags(t, KS_WALK_RUNTIME_TOP), &w);
            if (w.verdict == KS_WALK_OK)
                ks_abort_leave_from_signal(t, uc, &w, KS_ABORT_HOW_FORCED);
        }
        ks_stop(uc);
        ks_pending(t, KS_ABORT_HOW_COND_WAIT, 0, "waiting on a condition variable; woken to leave from pthread_cond_wait", "");
        return KS_DONE;
    }
    struct ks_pc_info pi;
    ks_safepoint_lookup(ks_pc(uc), &pi);
    /* In a lock wrapper but not asleep in it: it is about to hold the lock,
     * or to fail; stepping on finds out which. */
    if ((wk == KS_WAIT_MUTEX || wk == KS_WAIT_RWLOCK) && from_signal &&
        ks_interrupted_syscall(uc, &pi)) {
        if (force) {
            struct ks_walk w;
            ks_abort_walk(uc, 1, ks_walk_flags(t, KS_WALK_RUNTIME_TOP), &w);
            if (w.verdict == KS_WALK_OK)
                ks_abort_leave_from_signal(t, uc, &w, KS_ABORT_HOW_FORCED);
            ks_stop(uc);
            ks_slot_set(t, w.verdict == KS_WALK_REFUSED ? KS_ABORT_REFUSED : KS_ABORT_PENDING,
                        KS_ABORT_HOW_LOCK_WAIT, w.where, w.reason);
            return KS_DONE;
        }
        char msg[120];
        struct ks_sb b;
        ks_sb_init(&b, msg, sizeof msg);
        ks_sb_str(&b, wk == KS_WAIT_MUTEX ? "blocked acquiring mutex " : "blocked acquiring rwlock ");
        ks_sb_hex(&b, (uintptr_t)obj);
        if (wk == KS_WAIT_MUTEX && obj) {
            /* The thread is blocked on it: the mutex is alive. */
            int owner = ((pthread_mutex_t *)obj)->__data.__owner;
            if (owner > 0) {
                ks_sb_str(&b, " held by thread ");
                ks_sb_dec(&b, owner);
            }
        }
        ks_sb_str(&b, "; --force ends it");
        ks_stop(uc);
        ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_LOCK_WAIT, (uintptr_t)obj, msg);
        return KS_DONE;
    }
    return KS_GO_ON;
}

/* The decision at the current PC of UC. FROM_SIGNAL: in the KS_SIG_ACT
 * handler (else a trap while stepping). Returns KS_DONE when the thread
 * left, was redirected, or waits for something other than stepping. */
static int ks_decide(struct ks_thread *t, ucontext_t *uc, int from_signal)
{
    if (ks_check_locks(t, uc, from_signal) == KS_DONE)
        return KS_DONE;
    uintptr_t pc = ks_pc(uc), sp = ks_sp(uc);
    struct ks_pc_info pi;
    int kind = ks_safepoint_lookup(pc, &pi);
    struct ks_walk w;
    if (kind != KS_MOD_APP) {
        if (ks_forced(t) && from_signal && ks_ai()->stepping && ks_interrupted_syscall(uc, &pi)) {
            /* --force, and it went back to sleep in the runtime after the
             * last signal: leave from the system call, through the runtime. */
            ks_abort_walk(uc, 1, ks_walk_flags(t, KS_WALK_RUNTIME_TOP), &w);
            if (w.verdict == KS_WALK_OK)
                ks_abort_leave_from_signal(t, uc, &w, KS_ABORT_HOW_FORCED);
        }
        return KS_GO_ON;
    }
    if (!from_signal && ks_ai()->last_ret && ks_mod_is_runtime(ks_ai()->prev_kind)) {
        /* A runtime call just returned here: [sp - 8] still holds PC. */
        ks_abort_walk(uc, 0, ks_walk_flags(t, 0), &w);
        if (w.verdict == KS_WALK_OK) {
            ks_abort_redirect(t, uc, pc, sp, &w, KS_ABORT_HOW_RETURN, 0);
            return KS_DONE;
        }
        int r = ks_walk_failed(t, uc, &w);
        if (w.obstacle == KS_OBST_NOTHROW_CALL && w.transient_sp == sp)
            ks_ai()->transient_sp = 0;   /* it returned from that call already */
        return r;
    }
    if (ks_ai()->transient_sp && sp < ks_ai()->transient_sp)
        return KS_GO_ON;   /* still deeper than the runtime frame in the way */
    ks_ai()->transient_sp = 0;
    int lsda = ks_fn_has_lsda(pc);
    if (lsda < 0)
        return KS_GO_ON;   /* no unwind info here: keep going */
    if (lsda == 0) {
        ks_abort_walk(uc, 1, ks_walk_flags(t, 0), &w);
        if (w.verdict == KS_WALK_OK)
            ks_abort_leave_from_signal(t, uc, &w, ks_forced(t) && t->locks_held ? KS_ABORT_HOW_FORCED
                                                                               : KS_ABORT_HOW_FRAME);
        return ks_walk_failed(t, uc, &w);
    }
    int clen = ks_x86_call_len((const uint8_t *)pc, ks_code_avail(pc, &pi));
    if (clen > 0) {
        ucontext_t ctx = *uc;
        ctx.uc_mcontext.gregs[REG_RIP] = (greg_t)(pc + (uintptr_t)clen);
        ks_abort_walk(&ctx, 0, ks_walk_flags(t, 0), &w);
        if (w.verdict == KS_WALK_OK) {
            ks_abort_redirect(t, uc, pc + (uintptr_t)clen, sp, &w, KS_ABORT_HOW_CALL, pc);
            return KS_DONE;
        }
        return ks_walk_failed(t, uc, &w);
    }
    return KS_GO_ON;
}

static void ks_start_stepping(struct ks_thread *t, ucontext_t *uc)
{
    uintptr_t pc = ks_pc(uc);
    struct ks_pc_info pi;
    int kind = ks_safepoint_lookup(pc, &pi);
    if (t->abort.info->no_step) {
        /* A debugger would get the traps. */
        ks_pending(t, kind == KS_MOD_APP ? KS_ABORT_HOW_NO_BOUNDARY : KS_ABORT_HOW_INSIDE_RUNTIME, pc,
                   "the process is traced, so the thread is not single-stepped; it is in", "");
        return;
    }
    if (ks_unsteppable(uc, &pi)) {
        ks_pending(t, KS_ABORT_HOW_INSIDE_RUNTIME, pc, "about to block signals or clone in", "; retried later");
        return;
    }
    ks_ai()->trap_was_blocked = sigismember(&uc->uc_sigmask, SIGTRAP) == 1;
    ks_sigdel(&uc->uc_sigmask, SIGTRAP);
    ks_ai()->stepping = 1;
    /* steps is also read by the control thread's snapshot (relaxed: a count). */
    __atomic_store_n(&ks_ai()->steps, 0, __ATOMIC_RELAXED);
    ks_ai()->runtime_steps = 0;
    ks_ai()->arm_tried = 0;
    ks_ai()->step_t0 = ks_now_ns();
    ks_ai()->prev_kind = kind;
    ks_ai()->last_ret = ks_x86_is_ret((const uint8_t *)pc, ks_code_avail(pc, &pi));
    ks_step_on(uc);
    ks_pending(t, KS_ABORT_HOW_STEPPING, pc,
               kind == KS_MOD_APP ? "stepping to a call boundary in" : "stepping out of", "");
}

/* Not at a safe point: patch the return into the application if the thread
 * is in runtime code, else (or if that is not possible) step. */
static void ks_search(struct ks_thread *t, ucontext_t *uc)
{
    struct ks_pc_info pi;
    int kind = ks_safepoint_lookup(ks_pc(uc), &pi);
    ks_ai()->transient_sp = 0;
    if (kind == KS_MOD_LOADER) {
        /* Maybe inside dlopen: a stack walk would enter the loader's lists
         * while this thread may be changing them. Retried at the next look. */
        ks_pending(t, KS_ABORT_HOW_INSIDE_RUNTIME, ks_pc(uc), "inside the dynamic loader at",
                   "; retried");
        return;
    }
    if (!ks_ai()->arm_tried) {
        /* In runtime code, or in a callback of it: leave when it returns. */
        ks_ai()->arm_tried = 1;
        if (ks_abort_arm_return(t, uc) != KS_ARM_STEP)
            return;
    } else if (kind != KS_MOD_APP) {
        return;
    }
    if (kind == KS_MOD_APP &&
        __atomic_load_n(&t->abort.info->how, __ATOMIC_RELAXED) == KS_ABORT_HOW_NO_BOUNDARY &&
        ks_now_ns() < ks_ai()->retry_ns && !ks_forced(t))
        return;   /* tried recently: see KS_RETRY_NS */
    ks_start_stepping(t, uc);
}

/* Armed, and asked again. Returns KS_DONE if the patch stands. */
static int ks_armed_again(struct ks_thread *t, ucontext_t *uc)
{
    if (ks_abort_armed_stale(uc))
        return KS_GO_ON;
    struct ks_pc_info pi;
    uintptr_t pc = ks_pc(uc);
    if (ks_safepoint_lookup(pc, &pi) != KS_MOD_APP && ks_interrupted_syscall(uc, &pi)) {
        if (ks_forced(t)) {
            /* --force, and the runtime call still blocks: leave from it. */
            struct ks_walk w;
            ks_abort_walk(uc, 1, ks_walk_flags(t, KS_WALK_RUNTIME_TOP), &w);
            if (w.verdict == KS_WALK_OK) {
                ks_abort_disarm(1);
                ks_abort_leave_from_signal(t, uc, &w, KS_ABORT_HOW_FORCED);
            }
        }
        ks_pending(t, KS_ABORT_HOW_ARMED, pc, "blocked inside", "; leaves when it returns");
    }
    return KS_DONE;
}

void ks_abort_on_signal(struct ks_thread *t, siginfo_t *si, ucontext_t *uc)
{
    (void)si;
    if (!t || !t->linked || t->tid != ks_gettid() || !t->abort.info ||
        __atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_PENDING ||
        ks_ai()->walking)
        return;   /* walking: a wrapper's walk decides, and signals again if not now */
    t->shim_depth++;
    if (ks_ai()->stepping && !ks_step_is_on(uc))
        ks_ai()->stepping = 0;   /* lost: a handler of the program jumped out */
    if (!ks_ai()->stepping)
        ks_ai()->arm_tried = 0;
    if (ks_ai()->armed && ks_armed_again(t, uc) == KS_DONE) {
        /* the patched return leaves */
    } else if (ks_decide(t, uc, 1) == KS_GO_ON) {
        if (!ks_ai()->stepping) {
            ks_search(t, uc);
        } else {
            struct ks_pc_info pi;
            uintptr_t pc = ks_pc(uc);
            if (ks_safepoint_lookup(pc, &pi) != KS_MOD_APP && ks_interrupted_syscall(uc, &pi))
                ks_pending(t, KS_ABORT_HOW_INSIDE_RUNTIME, pc, "blocked inside", "; leaves when it returns");
        }
    }
    t->shim_depth--;
}

/* Out of budget inside a call a walk said to return from first (transient_sp):
 * no frame in it is a way out, --force's neither. 1 if the slot says so. */
static int ks_pending_inside_call(struct ks_thread *t, ucontext_t *uc)
{
    if (!ks_ai()->transient_sp || ks_sp(uc) >= ks_ai()->transient_sp)
        return 0;
    struct ks_walk w;
    ks_abort_walk(uc, 1, ks_walk_flags(t, 0), &w);
    if (w.verdict != KS_WALK_TRANSIENT)
        return 0;
    ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_NO_BOUNDARY, w.where, w.reason);
    return 1;
}

/* The budget ran out. */
static void ks_out_of_budget(struct ks_thread *t, ucontext_t *uc)
{
    uintptr_t pc = ks_pc(uc);
    struct ks_pc_info pi;
    int kind = ks_safepoint_lookup(pc, &pi);
    ks_stop(uc);
    if (kind != KS_MOD_APP) {
        if (ks_abort_arm_return(t, uc) == KS_ARM_STEP)
            ks_pending(t, KS_ABORT_HOW_INSIDE_RUNTIME, pc, "still inside", " after the stepping budget");
        return;
    }
    ks_ai()->retry_ns = ks_now_ns() + KS_RETRY_NS;
    if (ks_pending_inside_call(t, uc))
        return;
    if (ks_forced(t) && ks_abort_discard_frame(t, uc) == 0)
        return;
    char msg[120];
    struct ks_sb b;
    ks_sb_init(&b, msg, sizeof msg);
    ks_sb_str(&b, "no call boundary reached in ");
    ks_sb_where(&b, pc);
    ks_sb_str(&b, " after ");
    ks_sb_dec(&b, ks_ai()->steps);
    ks_sb_str(&b, " instructions; --force exits without its destructors");
    ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_NO_BOUNDARY, pc, msg);
}

int ks_abort_on_trap(siginfo_t *si, ucontext_t *uc)
{
    (void)si;
    if (!ks_ai() || !ks_ai()->stepping)
        return 0;
    if (ks_ai()->walking)
        return 1;   /* inside a wrapper's walk, which decides */
    struct ks_thread *t = ks_self();
    if (t->tid != ks_gettid()) {
        /* A child of fork or vfork inherited the trap flag and this memory. */
        ks_step_off(uc);
        return 1;
    }
    t->shim_depth++;
    __atomic_store_n(&ks_ai()->steps, ks_ai()->steps + 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_PENDING) {
        ks_stop(uc);
    } else if (ks_decide(t, uc, 0) == KS_GO_ON) {
        struct ks_pc_info npi;
        ks_safepoint_lookup(ks_pc(uc), &npi);
        if (ks_unsteppable(uc, &npi) || ks_ai()->steps >= KS_STEP_BUDGET ||
            ((ks_ai()->steps & 1023) == 0 && ks_now_ns() - ks_ai()->step_t0 > KS_STEP_BUDGET_NS)) {
            ks_out_of_budget(t, uc);
        } else if (npi.kind != KS_MOD_APP && ++ks_ai()->runtime_steps > KS_RUNTIME_STEPS &&
                   !ks_ai()->arm_tried) {
            /* Long in runtime code (a rep string instruction traps once per
             * element): patch its return instead, if that works from here. */
            ks_ai()->arm_tried = 1;
            int r = ks_abort_arm_return(t, uc);
            if (r != KS_ARM_STEP)
                ks_stop(uc);
        }
        if (ks_ai()->stepping) {
            uintptr_t pc = ks_pc(uc);
            struct ks_pc_info pi;
            ks_ai()->prev_kind = ks_safepoint_lookup(pc, &pi);
            ks_ai()->last_ret = ks_x86_is_ret((const uint8_t *)pc, ks_code_avail(pc, &pi));
        }
    }
    t->shim_depth--;
    return 1;
}
