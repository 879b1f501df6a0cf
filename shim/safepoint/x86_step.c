/* See x86_step.h. */
#include "x86_step.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/common/procfs.h"
#include "shim/core/signals.h"

KS_HOT_DATA static ks_step_fn *ks_step_cb;
/* The program's SIGTRAP action as of the last install. Written by the control
 * side with SIGTRAP blocked in that thread; read in the handler. A program
 * that changes it while a step is in flight races with the shim: its own
 * handler then sees the shim's trace traps (documented). */
KS_HOT_DATA static struct sigaction ks_prev;
KS_LOCK_DEFINE(static, ks_install_mu);

KS_START_PATH void ks_step_set_callback(ks_step_fn *fn) { __atomic_store_n(&ks_step_cb, fn, __ATOMIC_RELEASE); }

static void ks_trap_default(int signo, siginfo_t *si, ucontext_t *uc)
{
    if (si->si_code == TRAP_TRACE) {
        /* A trace trap nobody asked for: the trap flag was inherited from a
         * thread the shim was stepping (fork, vfork, clone copy EFLAGS). */
        ks_step_off(uc);
        return;
    }
    /* A breakpoint the program does not handle: its default action. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    ks_sigaction_kernel(signo, &dfl, NULL);
    syscall(SYS_tgkill, ks_getpid(), ks_gettid(), signo);
}

static void ks_trap_entry(int signo, siginfo_t *si, void *ucv)
{
    int saved = errno;
    ucontext_t *uc = ucv;
    ks_step_fn *fn = __atomic_load_n(&ks_step_cb, __ATOMIC_ACQUIRE);
    if (!(si && si->si_code == TRAP_TRACE && fn && fn(si, uc))) {
        struct sigaction a = ks_prev;
        if ((a.sa_flags & SA_SIGINFO) && a.sa_sigaction)
            a.sa_sigaction(signo, si, ucv);
        else if (!(a.sa_flags & SA_SIGINFO) && a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN)
            a.sa_handler(signo);
        else
            ks_trap_default(signo, si, uc);
    }
    errno = saved;
}

int ks_step_install(void)
{
    int rc = 0;
    sigset_t all, old;
    ks_sigfill(&all);
    KS_REAL(pthread_sigmask)(SIG_BLOCK, &all, &old);   /* not the hook: resolved at init */
    ks_lock(&ks_install_mu);
    struct sigaction cur;
    if (ks_sigaction_kernel(SIGTRAP, NULL, &cur) != 0) {
        rc = errno;
    } else if (!((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == ks_trap_entry)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = ks_trap_entry;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        ks_sigfill(&sa.sa_mask);
        ks_prev = cur;
        if (ks_sigaction_kernel(SIGTRAP, &sa, NULL) != 0)
            rc = errno;
    }
    ks_unlock(&ks_install_mu);
    KS_REAL(pthread_sigmask)(SIG_SETMASK, &old, NULL);
    return rc;
}

int ks_step_tracer(void)
{
    char buf[4096];
    if (ks_read_small_file("/proc/self/status", buf, sizeof buf) <= 0)
        return -1;
    const char *p = strstr(buf, "\nTracerPid:");
    return p ? atoi(p + 11) : -1;
}
