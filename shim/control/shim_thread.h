/* The shim's own threads (the control server's), and how they stay out of
 * the program's way.
 *
 * - Started detached, with every signal blocked (glibc keeps its internal
 *   SIGCANCEL and SIGSETXID deliverable), registered as KS_ROLE_SHIM: the
 *   program's signals are always taken by one of its own threads, or stay
 *   pending for its sigwait/signalfd, or take their default action.
 * - Not counted as the program's: glibc ends the process with exit(0) when
 *   its count of threads drops to zero (the last thread returns, or a main
 *   that called pthread_exit was the last). The shim takes its threads out
 *   of that count (glibc's __nptl_nthreads, exported for libthread_db), so
 *   the process ends exactly when it would without the shim, atexit
 *   handlers included. */
#ifndef KS_SHIM_THREAD_H
#define KS_SHIM_THREAD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* glibc's thread count is found before the first shim thread starts (not
 * at init: a process that never serves does not pay the dlopen and dlsym,
 * about 7,000 instructions). Without it (another libc, a future glibc) the
 * shim's threads count as the program's: warned with KILLSHIM_DEBUG, and a
 * process whose last thread ends only ends once the shim's threads have
 * (see ks_server_step_aside). */

/* Starts a shim thread running FN(ARG) on a STACK-byte stack (0: default).
 * Returns 0 or an errno. */
int ks_spawn_shim_thread(const char *name, void *(*fn)(void *), void *arg, size_t stack);

/* Shim threads started and not yet back from FN. A thread that is back may
 * still be a task for a moment (its exit path runs in glibc and the kernel). */
int ks_shim_threads_alive(void);

/* In the fork child: none of the parent's shim threads exist here. */
void ks_shim_threads_after_fork(void);

#ifdef __cplusplus
}
#endif
#endif
