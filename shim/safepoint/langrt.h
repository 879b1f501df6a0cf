/* Language runtimes that keep their own state for each of their threads:
 * CPython (the thread state, the GIL), a Java VM, Ruby (the GVL), Perl
 * (an interpreter per thread), Node.js (an isolate and an event loop), .NET,
 * Erlang's BEAM (schedulers running Erlang processes), Go (goroutines),
 * Mono (a managed thread, its finalizer thread), Guile (scm_i_thread),
 * Boehm's collector (its marker threads, the threads registered with it).
 * Ending such a thread natively (cancel, abort) unwinds through the
 * runtime's frames and leaves that state behind: the runtime's other
 * threads then wait for a lock or a handshake that never comes, or it
 * corrupts itself. The shim refuses that unless forced (cmd_end.c,
 * cancel_check.c, and the abort's own walk in prewalk.c).
 *
 * A module belongs to a runtime if its name says so (libpython3.11.so,
 * python3.11, libjvm.so...) or, on the control side, if it defines the
 * runtime's marker symbol (a static python binary under any name defines
 * PyEval_SaveThread for its extension modules). */
#ifndef KS_LANGRT_H
#define KS_LANGRT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The runtime a module named BASE (a basename) belongs to, by its name
 * alone: 0 if none, else an index for ks_langrt_name. Async-signal-safe. */
int ks_langrt_of_name(const char *base);

/* The runtime of the first of ADDRS[0..N) that lies in a runtime's module,
 * by name or marker symbol: 0 if none; else *AT (if not NULL) is that
 * address and MODULE its module's basename. Control side only (dladdr,
 * dlsym). */
int ks_langrt_scan(const uintptr_t *addrs, int n, uintptr_t *at, char *module, size_t cap);

/* "CPython", "a Java VM"... for RT > 0. */
const char *ks_langrt_name(int rt);

/* The refusal for thread TID, found running in runtime RT's module MODULE
 * (WHAT: "runs in" or "was started by"). */
void ks_langrt_refusal(int rt, const char *module, pid_t tid, const char *what, char *why,
                       size_t cap);

#ifdef __cplusplus
}
#endif
#endif
