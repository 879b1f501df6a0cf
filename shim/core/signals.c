/* See signals.h. */
#include "signals.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "elf_sym.h"
#include "ks.h"
#include "lock.h"
#include "registry.h"
#include "shim/common/doorbell.h"

#define KS_SIG_COOKIE 0x6b736873   /* "kshs" */

KS_HOT_DATA static int ks_signos[KS_SIG_COUNT];
KS_HOT_DATA static int ks_installed;
KS_HOT_DATA static ks_sig_fn *ks_handlers[KS_SIG_COUNT];
/* The action the program believes it installed on our numbers. Read in
 * signal context, so updated under a lock with our signals blocked. */
KS_HOT_DATA static struct sigaction ks_prog_act[KS_SIG_COUNT];
KS_LOCK_DEFINE(static, ks_act_mu);

/* libc's own sigaction (real.h: libc_sigaction) is what puts the shim's
 * handlers into the kernel. An interposer between us and libc must not wrap
 * them: ThreadSanitizer's defers an asynchronous signal to the thread's next
 * call into its runtime (a thread spinning in the program's code would never
 * take ours) and hands the handler a copy of the context (the abort's
 * redirect would be lost). */
KS_START_PATH int ks_sigaction_kernel(int signo, const struct sigaction *act, struct sigaction *old)
{
    ks_real_libc_sigaction_t *real = KS_REAL(libc_sigaction);
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(signo, act, old);
}

int ks_signo(enum ks_sig_kind k) { return ks_signos[k]; }

static int ks_kind_of(int signo)
{
    if (!__atomic_load_n(&ks_installed, __ATOMIC_ACQUIRE))
        return -1;
    for (int k = 0; k < KS_SIG_COUNT; k++)
        if (ks_signos[k] == signo)
            return k;
    return -1;
}

int ks_is_shim_signal(int signo) { return ks_kind_of(signo) >= 0; }

KS_START_PATH void ks_signals_set_handler(enum ks_sig_kind k, ks_sig_fn *fn)
{
    __atomic_store_n(&ks_handlers[k], fn, __ATOMIC_RELEASE);
}

/* A signal on our number that we did not send: do what the program asked. */
static void ks_chain(int k, int signo, siginfo_t *si, void *uc)
{
    struct sigaction a = ks_prog_act[k];
    if (a.sa_flags & SA_SIGINFO) {
        if (a.sa_sigaction)
            a.sa_sigaction(signo, si, uc);
        return;
    }
    if (a.sa_handler == SIG_IGN)
        return;
    if (a.sa_handler == SIG_DFL) {
        /* The default action of a real-time signal ends the process: do
         * exactly that, as the program would without the shim. */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        KS_REAL(libc_sigaction)(signo, &dfl, NULL);
        syscall(SYS_tgkill, ks_getpid(), ks_gettid(), signo);
        return;
    }
    a.sa_handler(signo);
}

KS_HOT_DATA static ks_doorbell_fn *ks_doorbell;

KS_START_PATH void ks_signals_set_doorbell(ks_doorbell_fn *fn) { __atomic_store_n(&ks_doorbell, fn, __ATOMIC_RELEASE); }

static void ks_sig_entry(int signo, siginfo_t *si, void *uc)
{
    int saved = errno;
    int k = ks_kind_of(signo);
    if (k >= 0) {
        ks_doorbell_fn *bell = __atomic_load_n(&ks_doorbell, __ATOMIC_ACQUIRE);
        if (k == KS_SIG_DUMP && si && si->si_code == SI_QUEUE &&
            (si->si_value.sival_int == KS_DOORBELL_COOKIE ||
             si->si_value.sival_int == KS_RESUME_COOKIE)) {
            if (bell)
                bell(si, (ucontext_t *)uc, &saved);
        } else if (si && si->si_code == SI_QUEUE && si->si_pid == ks_getpid() &&
            si->si_value.sival_int == KS_SIG_COOKIE) {
            ks_sig_fn *fn = __atomic_load_n(&ks_handlers[k], __ATOMIC_ACQUIRE);
            if (fn)
                fn(signo, si, (ucontext_t *)uc);
        } else {
            ks_chain(k, signo, si, uc);
        }
    }
    errno = saved;
}

KS_START_PATH static int ks_pick_signals(void)
{
    int base = SIGRTMAX - 3;
    const char *env = ks_env("KILLSHIM_SIGNAL");
    if (env && *env) {
        /* The whole value, as a number in range: "34junk" or 4294967330
         * (34 once truncated to int) is a mistake to report, not a 34. */
        char *end;
        errno = 0;
        long v = strtol(env, &end, 10);
        if (errno || end == env || *end || v < SIGRTMIN || v + 1 > SIGRTMAX)
            ks_warn("KILLSHIM_SIGNAL=%s is not a signal number in %d..%d; using %d", env,
                    SIGRTMIN, SIGRTMAX - 1, base);
        else
            base = (int)v;
    }
    ks_signos[KS_SIG_DUMP] = base;
    ks_signos[KS_SIG_ACT] = base + 1;
    return 0;
}

/* 1 while the kernel runs ks_sig_entry for K on the alternate signal stack. */
KS_HOT_DATA static int ks_onstack[KS_SIG_COUNT];

/* Puts ks_sig_entry into the kernel for K, with every signal blocked (nothing
 * of the program's runs inside ours), and SA_ONSTACK when ONSTACK: the
 * program asked for it on this number, the sign of threads that run on
 * stacks too small for a signal frame. Go's runtime installs every handler
 * with SA_ONSTACK and runs goroutines on stacks of 2 KiB and up, with an
 * alternate stack of 32 KiB on each thread: a dump's frame and unwind (6.5
 * KiB) on a goroutine's stack wrote over its neighbour's, and the program
 * died ("fatal error: unknown caller pc"). */
KS_START_PATH static int ks_install_kernel(int k, int onstack, struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = ks_sig_entry;
    sa.sa_flags = SA_SIGINFO | (k == KS_SIG_DUMP ? SA_RESTART : 0) | (onstack ? SA_ONSTACK : 0);
    ks_sigfill(&sa.sa_mask);
    if (KS_REAL(libc_sigaction)(ks_signos[k], &sa, old) != 0)
        return -1;
    __atomic_store_n(&ks_onstack[k], onstack, __ATOMIC_RELAXED);
    return 0;
}

/* 1 once a Go runtime is in the process (ks_signals_onstack_if_go): the
 * shim's handlers then take SA_ONSTACK on every number, for good. */
KS_HOT_DATA static int ks_onstack_go;

/* SA_ONSTACK for both: ks_signals_program_action puts it into the kernel. */
static void ks_onstack_all(void)
{
    for (int k = 0; k < KS_SIG_COUNT; k++)
        ks_signals_program_action(ks_signos[k], NULL, NULL);
}

KS_START_PATH int ks_signals_install(void)
{
    if (!KS_REAL(sigaction) || !KS_REAL(libc_sigaction))
        return ENOSYS;
    ks_pick_signals();
    for (int k = 0; k < KS_SIG_COUNT; k++) {
        /* Keep what the program (or a library) had there, to chain to it. */
        if (ks_install_kernel(k, 0, &ks_prog_act[k]) != 0)
            return errno;
        if ((ks_prog_act[k].sa_flags & SA_ONSTACK) && ks_install_kernel(k, 1, NULL) != 0)
            return errno;
    }
    /* Sequentially consistent, as in ks_signals_onstack_if_go: one of the
     * two sees the other's store. Go's runtime in a library the program
     * links asks before this constructor runs. */
    __atomic_store_n(&ks_installed, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&ks_onstack_go, __ATOMIC_SEQ_CST))
        ks_onstack_all();
    return 0;
}

void ks_signals_onstack_if_go(uintptr_t caller)
{
    if (__atomic_load_n(&ks_onstack_go, __ATOMIC_RELAXED) ||
        !ks_elf_defined_beside(caller, "_cgo_topofstack"))
        return;
    __atomic_store_n(&ks_onstack_go, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&ks_installed, __ATOMIC_SEQ_CST))
        ks_onstack_all();
}

/* The kernel's struct for rt_sigaction. */
struct ks_kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

/* 1 if the kernel still runs ks_sig_entry for SIGNO. A raw rt_sigaction
 * syscall goes around the interposed sigaction and can replace it: then
 * our signal would reach the program's handler, or its SIG_DFL would end
 * the process. */
static int ks_kernel_handler_is_ours(int signo)
{
    struct ks_kernel_sigaction ka;
    if (syscall(SYS_rt_sigaction, signo, NULL, &ka, sizeof ka.mask) != 0)
        return 1;   /* cannot tell: the send decides */
    return ka.handler == (void *)ks_sig_entry;
}

int ks_signal_tid(pid_t tid, enum ks_sig_kind k)
{
    if (!ks_kernel_handler_is_ours(ks_signos[k])) {
        static int warned;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            ks_warn("the program replaced the shim's handler of signal %d with a raw "
                    "rt_sigaction call; the shim no longer sends it (KILLSHIM_SIGNAL moves "
                    "the shim's signals)", ks_signos[k]);
        return ENOTSUP;
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = ks_signos[k];
    si.si_code = SI_QUEUE;
    si.si_pid = ks_getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = KS_SIG_COOKIE;
    if (syscall(SYS_rt_tgsigqueueinfo, ks_getpid(), tid, ks_signos[k], &si) != 0)
        return errno;
    return 0;
}

int ks_signal_linked(const struct ks_thread *t, enum ks_sig_kind k)
{
    return ks_signal_tid(t->tid, k);
}

static int ks_signal_with(struct ks_thread *t, void *k)
{
    return ks_signal_tid(t->tid, *(enum ks_sig_kind *)k);
}

int ks_signal_thread(pid_t tid, uint64_t id, enum ks_sig_kind k)
{
    return ks_registry_with_linked(tid, id, ks_signal_with, &k);
}

KS_HOT_DATA static uintptr_t ks_pass_lo, ks_pass_hi;

void ks_signals_pass_mask_from(uintptr_t lo, uintptr_t hi)
{
    ks_pass_lo = lo;
    __atomic_store_n(&ks_pass_hi, hi, __ATOMIC_RELEASE);
}

/* ---- What the program sees (its hooks: interpose_signal.c) ----------- */

int ks_signals_program_action(int signo, const struct sigaction *act, struct sigaction *old)
{
    int k = ks_kind_of(signo);
    if (k < 0)
        return 0;
    sigset_t all, prev;
    ks_sigfill(&all);
    KS_REAL(pthread_sigmask)(SIG_BLOCK, &all, &prev);
    ks_lock(&ks_act_mu);
    if (old)
        *old = ks_prog_act[k];
    if (act)
        ks_prog_act[k] = *act;
    /* The program's SA_ONSTACK is the kernel's too (ks_install_kernel), and
     * always once Go is in (ks_onstack_all). */
    int want = (ks_prog_act[k].sa_flags & SA_ONSTACK) || __atomic_load_n(&ks_onstack_go, __ATOMIC_RELAXED);
    if (want != __atomic_load_n(&ks_onstack[k], __ATOMIC_RELAXED))
        ks_install_kernel(k, want, NULL);
    ks_unlock(&ks_act_mu);
    KS_REAL(pthread_sigmask)(SIG_SETMASK, &prev, NULL);
    return 1;
}

KS_START_PATH int ks_signals_from_pass(uintptr_t caller)
{
    return caller >= ks_pass_lo && caller < __atomic_load_n(&ks_pass_hi, __ATOMIC_ACQUIRE);
}

int ks_sigmask_raw(int how, const sigset_t *set, sigset_t *old)
{
    sigset_t copy;
    if (set && how != SIG_UNBLOCK) {
        copy = *set;
        ks_sigdel_internal(&copy);
        set = &copy;
    }
    long rc = syscall(SYS_rt_sigprocmask, how, set, old, _NSIG / 8);
    return rc == 0 ? 0 : errno;
}

/* M of ks_sigmask_batch_begin: what the kernel keeps of "block all" (every
 * signal but SIGKILL, SIGSTOP and glibc's two). The same for every thread;
 * written by each batch with the value the kernel gave. */
static uint64_t ks_batch_mask;

static uint64_t ks_set64(const sigset_t *s)
{
    uint64_t v;
    __builtin_memcpy(&v, s, sizeof v);   /* the kernel's set: the first 8 bytes */
    return v;
}

/* The mask the kernel would leave after HOW with SET from M, as
 * ks_sigmask_raw asks it (glibc's two never blocked). */
static uint64_t ks_mask_after(int how, uint64_t m, uint64_t s)
{
    const uint64_t never = 1ull << (SIGKILL - 1) | 1ull << (SIGSTOP - 1) | 1ull << 31 | 1ull << 32;
    switch (how) {
    case SIG_BLOCK: return (m | s) & ~never;
    case SIG_UNBLOCK: return m & ~s;
    case SIG_SETMASK: return s & ~never;
    default: return ~m;   /* EINVAL: never "unchanged" */
    }
}

int ks_sigmask_pass(int how, const sigset_t *set, sigset_t *old)
{
    struct ks_thread *me = ks_self();
    if (!me->sig_batch)
        return ks_sigmask_raw(how, set, old);
    uint64_t m = __atomic_load_n(&ks_batch_mask, __ATOMIC_RELAXED);
    if (set && ks_mask_after(how, m, ks_set64(set)) != m) {
        me->sig_batch = 0;   /* the mask changes: no longer M */
        return ks_sigmask_raw(how, set, old);
    }
    if (old)
        __builtin_memcpy(old, &m, sizeof m);   /* as the kernel: 8 bytes written */
    return 0;
}

void ks_sigmask_batch_begin(sigset_t *saved)
{
    sigset_t all, now;
    ks_sigfill(&all);
    ks_sigempty(&now);
    ks_sigmask_raw(SIG_BLOCK, &all, saved);
    if (ks_sigmask_raw(SIG_BLOCK, NULL, &now) != 0)
        return;
    __atomic_store_n(&ks_batch_mask, ks_set64(&now), __ATOMIC_RELAXED);
    ks_self()->sig_batch = 1;
}

void ks_sigmask_batch_end(const sigset_t *saved)
{
    ks_self()->sig_batch = 0;
    ks_sigmask_raw(SIG_SETMASK, saved, NULL);
}

KS_START_PATH const sigset_t *ks_signals_unblockable(int how, const sigset_t *set, sigset_t *copy)
{
    if (!set || how == SIG_UNBLOCK || !__atomic_load_n(&ks_installed, __ATOMIC_ACQUIRE))
        return set;
    *copy = *set;
    for (int k = 0; k < KS_SIG_COUNT; k++)
        ks_sigdel(copy, ks_signos[k]);
    return copy;
}
