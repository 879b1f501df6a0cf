/* The program's view of signals: sigaction and signal() on the shim's two
 * numbers read and set the action the program believes it installed (the
 * kernel keeps the shim's), and no mask the program sets blocks them
 * (signals.c holds the state and the rules; signals.h says why). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "shim/core/ks.h"
#include "shim/core/signals.h"

KS_EXPORT int sigaction(int signo, const struct sigaction *act, struct sigaction *old)
{
    /* Go's runtime installs its own handlers so (signals.h). */
    if (act && (act->sa_flags & SA_ONSTACK))
        ks_signals_onstack_if_go((uintptr_t)__builtin_return_address(0));
    if (ks_signals_program_action(signo, act, old))
        return 0;
    return KS_CALL_OR(sigaction, (errno = ENOSYS, -1), (signo, act, old));
}

static sighandler_t ks_signal_common(int signo, sighandler_t h, int flags)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (!(flags & SA_NODEFER))
        sigaddset(&sa.sa_mask, signo);
    if (sigaction(signo, &sa, &old) != 0)
        return SIG_ERR;
    return old.sa_handler;
}

/* glibc's signal() calls its internal sigaction, which would go around the
 * interposed one: the BSD and System V flavours are spelled out here. */
KS_EXPORT sighandler_t signal(int signo, sighandler_t h)
{
    return ks_signal_common(signo, h, SA_RESTART);
}

KS_EXPORT sighandler_t bsd_signal(int signo, sighandler_t h)
{
    return ks_signal_common(signo, h, SA_RESTART);
}

KS_EXPORT sighandler_t sysv_signal(int signo, sighandler_t h)
{
    return ks_signal_common(signo, h, SA_RESETHAND | SA_NODEFER);
}

KS_EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    uintptr_t caller = (uintptr_t)__builtin_return_address(0);
    if (ks_signals_from_pass(caller)) {
        int rc = ks_sigmask_pass(how, set, old);
        return rc ? (errno = rc, -1) : 0;
    }
    sigset_t copy;
    const sigset_t *s = ks_signals_unblockable(how, set, &copy);
    return KS_CALL_OR(sigprocmask, (errno = ENOSYS, -1), (how, s, old));
}

/* Called at start (ks_step_install): with the start path's code. */
KS_START_PATH KS_EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    uintptr_t caller = (uintptr_t)__builtin_return_address(0);
    if (ks_signals_from_pass(caller))
        return ks_sigmask_pass(how, set, old);
    sigset_t copy;
    const sigset_t *s = ks_signals_unblockable(how, set, &copy);
    return KS_CALL_OR(pthread_sigmask, ENOSYS, (how, s, old));
}
