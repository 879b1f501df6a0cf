/* The abort's ways out. Every one ends in ks_abort_exit, which calls
 * pthread_exit(PTHREAD_CANCELED): glibc's forced unwind then runs the
 * cleanup handlers (pthread_cleanup_push) and C++ destructors of every frame,
 * up to the shim's thread trampoline, which records the end. What differs is
 * where the unwind starts, and each start is a place the unwinder handles
 * exactly:
 * - from a signal handler, when the interrupted frame has no landing pads
 *   (glibc's asynchronous cancellation leaves the same way);
 * - from ks_abort_entry, entered as if the application had called it at a
 *   call instruction (or right after a runtime call returned), so the frame
 *   is at a call site and its landing pads for that call run;
 * - from the shim's own lock and cond wrappers, in normal context.
 * Nothing irreversible happens before the walk (prewalk.h) said yes. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "abort_internal.h"
#include "abort_tramp.h"
#include "shim/unwind/asan_stack.h"
#include "shim/core/asfmt.h"
#include "shim/core/held.h"
#include "shim/core/signals.h"
#include "shim/core/ks.h"
#include "shim/safepoint/safepoint.h"
#include "shim/unwind/unwind.h"
#include "shim/safepoint/x86_step.h"

/* Bit K set: trampoline K (abort_tramp.h) is owned by a thread. */
KS_HOT_DATA static uint64_t ks_tramp_used;

static int ks_tramp_alloc(void)
{
    uint64_t u = __atomic_load_n(&ks_tramp_used, __ATOMIC_RELAXED);
    while (~u) {
        int k = __builtin_ctzll(~u);
        if (__atomic_compare_exchange_n(&ks_tramp_used, &u, u | (1ull << k), 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return k;
    }
    return -1;
}

static void ks_tramp_free(int k) { __atomic_fetch_and(&ks_tramp_used, ~(1ull << k), __ATOMIC_RELEASE); }

KS_FORK_PATH void ks_abort_tramp_after_fork(int keep)
{
    uint64_t used = keep >= 0 ? 1ull << keep : 0;
    if (ks_tramp_used != used)   /* a page the child does not write is not copied */
        ks_tramp_used = used;
}

void ks_abort_step_done(ucontext_t *uc)
{
    ks_step_off(uc);
    if (ks_ai()->stepping && ks_ai()->trap_was_blocked)
        ks_sigadd(&uc->uc_sigmask, SIGTRAP);
    ks_ai()->trap_was_blocked = 0;
    ks_ai()->stepping = 0;
}

/* Entered from ks_abort_entry on the stack of whatever frames the abort
 * left from, which under ASan may still be poisoned (asan_stack.h). */
__attribute__((noreturn)) KS_NO_ASAN void ks_abort_exit(void)
{
    ks_unpoison_below(ks_stack_lo());
    struct ks_thread *t = ks_self();
    t->end_how = KS_END_ABORTED;
    /* From here on the program's own cleanups run: their locks count. */
    t->shim_depth = 0;
    KS_REAL(pthread_exit)(PTHREAD_CANCELED);   /* resolved: ks_abort_init checked */
    __builtin_unreachable();
}

/* Marks the abort FIRING with what the walk found; remembers the locks it
 * still holds (only --force leaves with any). */
static void ks_abort_fired(struct ks_thread *t, int how, uintptr_t site, uintptr_t where,
                           const struct ks_walk *w)
{
    struct ks_abort_info *a = t->abort.info;
    ks_slot_begin(t);
    a->how = how;
    t->abort.site = site;
    a->where = where;
    a->steps = ks_ai()->steps;
    a->ncleanup = w ? w->ncleanup : 0;
    for (int i = 0; i < a->ncleanup; i++)
        a->cleanup[i] = w->cleanup[i];
    /* A cond wait leaves with its mutex held on purpose (ks_abort_on_exit). */
    int held = t->locks_held - (ks_ai()->cond_mutex != NULL);
    if (held < 0)
        held = 0;
    if (held > KS_HELD_MAX)
        held = KS_HELD_MAX;
    a->nleft = held < KS_ABORT_MAX_LEFT ? held : KS_ABORT_MAX_LEFT;
    for (int i = 0; i < a->nleft && i < KS_HELD_MAX; i++)
        a->left[i] = (uintptr_t)t->held[i];
    struct ks_sb b;
    ks_sb_init(&b, a->reason, sizeof a->reason);
    if (held) {
        ks_sb_str(&b, "left with ");
        ks_sb_dec(&b, held);
        ks_sb_str(&b, held == 1 ? " lock held" : " locks held");
    }
    ks_slot_end(t);
    __atomic_store_n(&t->abort.state, KS_ABORT_FIRING, __ATOMIC_RELEASE);
}

void ks_abort_leave_from_signal(struct ks_thread *t, ucontext_t *uc, const struct ks_walk *w,
                                int how)
{
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    ks_abort_step_done(uc);
    ks_abort_fired(t, how, w->exit_ip ? w->exit_ip : pc, pc, w);
    /* The handler's mask blocks every signal; the program's cleanups should
     * run with the thread's own mask. */
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &uc->uc_sigmask, NULL, _NSIG / 8);
    ks_abort_exit();
}

void ks_abort_redirect(struct ks_thread *t, ucontext_t *uc, uintptr_t ra, uintptr_t sp,
                       const struct ks_walk *w, int how, uintptr_t where)
{
    /* What the call would have pushed; at a return point it is still there. */
    *(uintptr_t *)(sp - sizeof(uintptr_t)) = ra;
    uc->uc_mcontext.gregs[REG_RSP] = (greg_t)(sp - sizeof(uintptr_t));
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)ks_abort_entry;
    ks_abort_step_done(uc);
    ks_abort_fired(t, how, ra, where, w);
}

void ks_abort_from_wrapper(struct ks_thread *t, int how)
{
    unw_context_t ctx;
    if (!ks_unw_ready() || ks_unw.getcontext(&ctx) != 0)
        return;
    t->shim_depth++;
    struct ks_walk w;
    int flags = KS_WALK_SKIP_SHIM_TOP;
    ks_abort_walk((ucontext_t *)&ctx, 0, ks_walk_flags(t, flags), &w);
    if (w.verdict == KS_WALK_OK) {
        ks_abort_fired(t, how, w.exit_ip, 0, &w);
        ks_abort_exit();
    }
    ks_slot_set(t, w.verdict == KS_WALK_REFUSED ? KS_ABORT_REFUSED : KS_ABORT_PENDING,
                t->abort.info->how, w.where, w.reason);
    t->shim_depth--;
    /* Not here, not yet (the unlock was in a destructor, say): search on
     * from here, as after a request; the handler runs before this returns. */
    if (w.verdict == KS_WALK_TRANSIENT && t->locks_held == 0) {
        __atomic_store_n(&t->abort.info->how, KS_ABORT_HOW_SIGNALLED, __ATOMIC_RELAXED);
        ks_signal_tid(ks_gettid(), KS_SIG_ACT);   /* handled before it returns */
    }
}

/* ---- Patching a return address ---------------------------------------- */

/* The registers of the frame under CUR, as a context to walk from. */
static void ks_ctx_from_cursor(ucontext_t *ctx, unw_cursor_t *cur)
{
    static const struct {
        int greg, unw;
    } map[] = {{REG_RIP, UNW_X86_64_RIP}, {REG_RSP, UNW_X86_64_RSP}, {REG_RBP, UNW_X86_64_RBP},
               {REG_RBX, UNW_X86_64_RBX}, {REG_R12, UNW_X86_64_R12}, {REG_R13, UNW_X86_64_R13},
               {REG_R14, UNW_X86_64_R14}, {REG_R15, UNW_X86_64_R15}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        unw_word_t v = 0;
        ks_unw.get_reg(cur, map[i].unw, &v);
        ctx->uc_mcontext.gregs[map[i].greg] = (greg_t)v;
    }
}

/* Steps CUR (started at UC) to the first application frame that has a
 * runtime frame below it: the caller of the runtime call the thread is in,
 * or, in a callback, the caller of the runtime function that called back.
 * Returns 0 and leaves CUR there, or -1 (no such frame, or a signal frame
 * first). */
static int ks_to_first_app_frame(unw_cursor_t *cur, ucontext_t *uc)
{
    if (ks_unw.init_local2(cur, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) != 0)
        return -1;
    int runtime_below = 0;
    for (int n = 0; n < 256; n++) {
        unw_word_t ip = 0;
        ks_unw.get_reg(cur, UNW_REG_IP, &ip);
        if (ks_unw.is_signal_frame(cur) > 0)
            return -1;
        struct ks_pc_info pi;
        int kind = ks_safepoint_lookup(n ? ip - 1 : ip, &pi);
        if (kind == KS_MOD_APP && runtime_below)
            return 0;
        if (kind != KS_MOD_APP)
            runtime_below = 1;
        if (ks_unw.step(cur) <= 0)
            return -1;
    }
    return -1;
}

int ks_abort_arm_return(struct ks_thread *t, ucontext_t *uc)
{
    unw_cursor_t cur;
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    char msg[120];
    struct ks_sb b;
    ks_sb_init(&b, msg, sizeof msg);
    struct ks_pc_info pcinfo;
    int kind = ks_safepoint_lookup(pc, &pcinfo), in_app = kind == KS_MOD_APP;
    if (kind == KS_MOD_LOADER) {
        /* No stack walk inside the loader: see ks_search. */
        ks_sb_str(&b, "inside the dynamic loader at ");
        ks_sb_where(&b, pc);
        ks_sb_str(&b, "; retried");
        ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_INSIDE_RUNTIME, pc, msg);
        return KS_ARM_WAIT;
    }
    if (ks_to_first_app_frame(&cur, uc) != 0) {
        if (in_app)
            return KS_ARM_STEP;   /* not a callback: nothing to patch */
        ks_sb_str(&b, "inside ");
        ks_sb_where(&b, pc);
        ks_sb_str(&b, " with no application frame to return to");
        ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_INSIDE_RUNTIME, pc, msg);
        return KS_ARM_WAIT;
    }
    ucontext_t ctx = *uc;
    ks_ctx_from_cursor(&ctx, &cur);
    uintptr_t ip = (uintptr_t)ctx.uc_mcontext.gregs[REG_RIP];
    uintptr_t slot = (uintptr_t)ctx.uc_mcontext.gregs[REG_RSP] - sizeof(uintptr_t);
    /* The callee's return address sits just below the caller's stack
     * pointer (the callee's CFA - 8); anything else is not a frame we
     * understand. */
    if (slot <= (uintptr_t)uc->uc_mcontext.gregs[REG_RSP] || *(uintptr_t *)slot != ip)
        return KS_ARM_STEP;
    struct ks_walk *w = &ks_ai()->armed_walk;
    ks_abort_walk(&ctx, 0, ks_walk_flags(t, 0), w);
    if (w->verdict == KS_WALK_REFUSED) {
        ks_slot_set(t, KS_ABORT_REFUSED, KS_ABORT_HOW_INSIDE_RUNTIME, w->where, w->reason);
        return KS_ARM_REFUSED;
    }
    if (w->verdict != KS_WALK_OK)
        return KS_ARM_STEP;
    int k = ks_tramp_alloc();
    if (k < 0)
        return KS_ARM_STEP;
    ks_tramp_slots[k] = ip;
    ks_tramp_ips[k] = ip - 1;
    ks_ai()->armed = 1;
    ks_ai()->armed_k = k;
    ks_ai()->armed_slot = slot;
    /* The slot is written last: from here on the return leaves. */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    *(volatile uintptr_t *)slot = ks_tramp_addr(k);
    ks_sb_str(&b, "inside ");
    ks_sb_where(&b, pc);
    ks_sb_str(&b, "; leaves when it returns to ");
    ks_sb_where(&b, ip);
    ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_ARMED, pc, msg);
    return KS_ARMED;
}

void ks_abort_disarm(int restore)
{
    if (!ks_ai()->armed)
        return;
    int k = ks_ai()->armed_k;
    if (restore && *(volatile uintptr_t *)ks_ai()->armed_slot == ks_tramp_addr(k))
        *(volatile uintptr_t *)ks_ai()->armed_slot = ks_tramp_slots[k];
    ks_ai()->armed = 0;
    ks_tramp_free(k);
}

int ks_abort_armed_stale(const ucontext_t *uc)
{
    if (!ks_ai()->armed)
        return 0;
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    if (sp <= ks_ai()->armed_slot &&
        *(volatile uintptr_t *)ks_ai()->armed_slot == ks_tramp_addr(ks_ai()->armed_k))
        return 0;
    ks_abort_disarm(0);
    return 1;
}

/* Called by ks_tramp_common when the patched call returned, the original
 * address back in its slot. Returns 1 to leave (into ks_abort_entry), 0 to
 * carry on. Normal context; must not touch floating-point registers (the
 * common part saves only the general return registers and xmm0/xmm1). */
__attribute__((target("general-regs-only"))) int ks_abort_trampoline_fire(long k)
{
    struct ks_thread *t = ks_self();
    uintptr_t ra = ks_tramp_slots[k];
    if (ks_ai()->armed && ks_ai()->armed_k == k)
        ks_ai()->armed = 0;
    ks_tramp_free((int)k);
    if (__atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_PENDING)
        return 0;
    if (t->locks_held > 0 && !__atomic_load_n(&t->abort.force, __ATOMIC_ACQUIRE)) {
        ks_slot_set(t, KS_ABORT_PENDING, KS_ABORT_HOW_AT_UNLOCK, ra,
                    "took a lock inside a callback; will abort at unlock");
        return 0;
    }
    ks_abort_fired(t, KS_ABORT_HOW_RETURN, ra, 0, &ks_ai()->armed_walk);
    return 1;
}

/* ---- --force in a frame with landing pads ------------------------------- */

int ks_abort_discard_frame(struct ks_thread *t, ucontext_t *uc)
{
    unw_cursor_t cur;
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    if (ks_unw.init_local2(&cur, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) != 0 ||
        ks_unw.step(&cur) <= 0)
        return -1;
    ucontext_t ctx = *uc;
    ks_ctx_from_cursor(&ctx, &cur);
    struct ks_walk w;
    ks_abort_walk(&ctx, 0, ks_walk_flags(t, 0), &w);
    if (w.verdict != KS_WALK_OK) {
        ks_slot_set(t, w.verdict == KS_WALK_REFUSED ? KS_ABORT_REFUSED : KS_ABORT_PENDING,
                    KS_ABORT_HOW_NO_BOUNDARY, w.where, w.reason);
        return -1;
    }
    /* The caller's callee-saved registers, as the discarded frame would have
     * restored them on return. */
    static const int keep[] = {REG_RBP, REG_RBX, REG_R12, REG_R13, REG_R14, REG_R15};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        uc->uc_mcontext.gregs[keep[i]] = ctx.uc_mcontext.gregs[keep[i]];
    ks_abort_redirect(t, uc, (uintptr_t)ctx.uc_mcontext.gregs[REG_RIP],
                      (uintptr_t)ctx.uc_mcontext.gregs[REG_RSP], &w, KS_ABORT_HOW_DISCARDED, pc);
    return 0;
}

/* ---- Hooks of the lock and cond wrappers -------------------------------- */

void ks_on_locks_released(struct ks_thread *self)
{
    if (self->shim_depth || __atomic_load_n(&self->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_PENDING ||
        !self->abort.info ||
        __atomic_load_n(&self->abort.info->how, __ATOMIC_RELAXED) != KS_ABORT_HOW_AT_UNLOCK)
        return;
    ks_abort_from_wrapper(self, KS_ABORT_HOW_UNLOCK);
}

static int ks_holds(const struct ks_thread *t, const void *obj)
{
    int n = t->locks_held < KS_HELD_MAX ? t->locks_held : KS_HELD_MAX;
    for (int i = 0; i < n; i++)
        if (t->held[i] == obj)
            return 1;
    return 0;
}

/* Before and after the real pthread_cond_*wait: an abort leaves from here
 * with the mutex held, as cancellation does, if it is the only lock held. */
void ks_on_cond_wait(struct ks_thread *self, pthread_mutex_t *m)
{
    if (self->shim_depth || __atomic_load_n(&self->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_PENDING ||
        !self->abort.info)
        return;
    int force = __atomic_load_n(&self->abort.force, __ATOMIC_ACQUIRE);
    if (!force && self->locks_held > 1) {
        ks_slot_at_unlock(self, self->locks_held, " besides waiting on a condition");
        return;
    }
    ks_ai()->cond_mutex = ks_holds(self, m) ? m : NULL;
    ks_abort_from_wrapper(self, KS_ABORT_HOW_COND);
    ks_ai()->cond_mutex = NULL;
}

/* At the end of an aborted thread, after every cleanup ran: if it left from
 * a cond wait and the cleanups did not unlock that mutex, unlock it. The data
 * it guards is as consistent as at any return from pthread_cond_wait. */
KS_THREAD_PATH void ks_abort_on_exit(struct ks_thread *self)
{
    if (!self->abort.info)
        return;
    /* A patch whose frame went away without returning holds a trampoline. */
    ks_abort_disarm(0);
    pthread_mutex_t *m = ks_ai()->cond_mutex;
    if (self->end_how != KS_END_ABORTED || !m)
        return;
    ks_ai()->cond_mutex = NULL;
    ks_lock_mark mark;
    if (ks_holds(self, m) && KS_REAL(pthread_mutex_unlock)(m) == 0) {
        ks_lock_uncount(self, m, &mark);
        ks_slot_begin(self);
        struct ks_sb b;
        ks_sb_init(&b, self->abort.info->reason, sizeof self->abort.info->reason);
        ks_sb_str(&b, "its cleanups left the condition's mutex locked; the shim unlocked it");
        self->abort.info->where = (uintptr_t)m;
        ks_slot_end(self);
    }
}
