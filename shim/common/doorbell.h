/* Reaching a process whose control server is not running yet (control.h: a
 * process starts serving when it needs to). Shared by the injector and the
 * tests: connect, and if nobody listens in a process that runs the shim,
 * ring its doorbell and connect again. */
#ifndef KS_DOORBELL_H
#define KS_DOORBELL_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The doorbell: the shim's dump signal (KILLSHIM_SIGNAL, default
 * SIGRTMAX-3) sent with sigqueue and this value. */
#define KS_DOORBELL_COOKIE 0x6b736462   /* "ksdb" */
/* The same signal from a thread of the process to itself: the end of a
 * redirect (redirect.h). Only the shim sends it. */
#define KS_RESUME_COOKIE 0x6b737273     /* "ksrs" */

/* Rings PID's doorbell if PID runs the shim with its signals installed (it
 * maps libkillshim.so, KILLSHIM_DISABLE is not set in its environment, and
 * it catches the signal). Returns 0 if rung, ENOENT (it does not run the
 * shim, or its control is disabled), EAGAIN (it maps the shim but does not
 * catch the signal: the shim's constructor has not run yet, as while an
 * attach loads it, or it found no signal to use), or the errno of what
 * failed (ESRCH, EACCES, EPERM...). Never sends a signal to a process that does not catch
 * it: a real-time signal's default action would end it. */
int ks_doorbell_ring(pid_t pid);

/* Connects a new SOCK_STREAM socket to PID's control socket, ringing the
 * doorbell while nobody listens, for up to TIMEOUT_MS. Returns the fd, or
 * -1 with errno: the connect's (ECONNREFUSED, ENOENT: nobody serves) or
 * the ring's (ENOENT: not a shim process; EPERM...). *RUNG (if not NULL)
 * tells whether the doorbell was rung. */
int ks_control_connect(pid_t pid, int timeout_ms, int *rung);

#ifdef __cplusplus
}
#endif
#endif
