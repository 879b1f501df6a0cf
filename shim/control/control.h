/* When the control server runs (server.h says how it serves).
 *
 * - A process started under the shim (exec'd with it preloaded) serves from
 *   its load on, so it is always reachable.
 * - A fork child starts no thread at fork: most children exec at once, and a
 *   thread started for nothing doubled the cost of a fork and exit
 *   (docs/bench.md). It is LAZY and starts serving when it needs to: when it
 *   creates a thread of its own (it is multi-threaded from then on anyway),
 *   or when an injector rings its doorbell (the shim's dump signal carrying
 *   KS_DOORBELL_COOKIE, sockaddr.h) and finds it waiting in a system call,
 *   the one state in which starting a thread from a signal handler is safe
 *   (see ks_control_doorbell). A child that computes without any system call
 *   since its fork answers once it makes one.
 * - Around the calls the kernel allows only to a lone thread (unshare of a
 *   user namespace, setns into a user or mount namespace; interpose_ns.c)
 *   the shim steps aside: its threads leave, the call runs, the accept
 *   thread comes back. Clients wait in the socket's backlog meanwhile. */
#ifndef KS_CONTROL_H
#define KS_CONTROL_H

#include <ucontext.h>

#include "shim/core/ks.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ks_control_state {
    KS_CTL_OFF = 0,     /* no control: disabled, failed, or before init */
    KS_CTL_LAZY,        /* fork child: starts at its first need */
    KS_CTL_STARTING,    /* one thread is starting it */
    KS_CTL_RUNNING,     /* the accept thread serves */
    KS_CTL_ASIDE,       /* stepped aside: no shim thread runs */
};

/* At load (ks_init): LAZY, and what the doorbell needs is found. PREPARE
 * runs on the accept thread before it serves (ks_server_init). */
void ks_control_init(void (*prepare)(void));
/* A LAZY process starts serving (no-op in any other state). */
void ks_control_start_lazy(void);
/* The same from pthread_create, before the real one: also waits (a bounded
 * time) until the accept thread has loaded what serving needs, so that
 * the program's first thread stack is mapped after those libraries
 * (control.c says why). */
void ks_control_start_for_create(void);
extern int ks_control_state_v __attribute__((visibility("hidden")));
/* Called where a LAZY process needs control (pthread_create). One load when
 * it does not. */
static inline void ks_control_need(void)
{
    if (KS_UNLIKELY(__atomic_load_n(&ks_control_state_v, __ATOMIC_ACQUIRE) == KS_CTL_LAZY))
        ks_control_start_for_create();
}
int ks_control_state(void);

/* In the fork child, after the server dropped the parent's sockets. */
void ks_control_after_fork_child(void);

/* If the shim's threads are all that runs besides the caller, makes them
 * leave and waits until they are back from their work (their tasks may
 * linger a moment in the kernel; the caller retries what it needed a lone
 * thread for). Returns 1 if it stepped aside, then call
 * ks_control_step_back; 0 if there was nothing to do, or other threads of
 * the program run (the call fails with or without the shim). */
int ks_control_step_aside(void);
void ks_control_step_back(void);

/* The doorbell, in the signal context of whichever thread took it
 * (signals.c, ks_doorbell_fn): starts a LAZY process's control right there
 * if that thread waits in a system call, or through a redirect
 * (redirect.h) if it runs the program's own code (see control.c for why
 * each is safe); otherwise does nothing (the injector rings again). */
#include <signal.h>
void ks_control_doorbell(siginfo_t *si, ucontext_t *uc, int *err);

#ifdef __cplusplus
}
#endif
#endif
