/* Stands in for a Go c-shared library (smallstack's "lib" mode): it exports
 * Go's runtime marker, _cgo_topofstack (go_marker.c), and its constructor
 * installs a handler with SA_ONSTACK through sigaction, as Go's runtime
 * initialisation does (SIGURG: its preemption signal). It installs nothing
 * on the shim's numbers: a Go library leaves alone signals that have a
 * handler, and in a C program the shim's are SIG_DFL to it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void _cgo_topofstack(void) {}

static void on_urg(int s, siginfo_t *si, void *uc)
{
    (void)s;
    (void)si;
    (void)uc;
}

__attribute__((constructor)) static void gort_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_urg;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigfillset(&sa.sa_mask);
    /* Not a tail call: the caller seen is this library, as Go's
     * x_cgo_sigaction is. */
    if (sigaction(SIGURG, &sa, NULL) != 0) {
        perror("sigaction");
        exit(1);
    }
}
