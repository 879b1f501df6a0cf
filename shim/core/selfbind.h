/* The shim's own imports, bound by the shim (selfbind.c).
 *
 * The shim links lazily (-z lazy, shim/BUILD): the loader binds none of its
 * ~110 imported functions at load, each is bound by the loader's lazy
 * resolver (_dl_runtime_resolve) on its first call. Binding them all at load
 * (-z now) was most of what the shim cost every exec'd process beyond an
 * empty library (docs/bench.md), and most processes (the children a build
 * or a shell execs) never serve.
 *
 * The lazy resolver must never run where the shim works on a thread that is
 * not its own: it saves the whole vector state on the stack (a signal
 * handler on a small stack), and a thread the abort single-steps would step
 * through the loader. So:
 * - ks_selfbind_init, in the constructor: has the loader bind what the
 *   doorbell's signal handler calls before control starts (the one handler
 *   that runs before), by calling each once there;
 * - ks_selfbind_all, the first step of control starting (control.c, from
 *   the doorbell's handler or a thread's first pthread_create): binds every
 *   import still unbound. Dumps, aborts and their handlers exist only once
 *   control runs: from then on no import of the shim is bound lazily.
 * Each slot is bound as the loader would: the first definition in load
 * order of the name at the reference's version (elf_sym.h). */
#ifndef KS_SELFBIND_H
#define KS_SELFBIND_H

#ifdef __cplusplus
extern "C" {
#endif

void ks_selfbind_init(void);
/* Not reentrant: called by one thread at a time (control's state machine
 * lets one thread start it); a no-op once it has bound everything. */
void ks_selfbind_all(void);
/* 1 once ks_selfbind_all has bound every slot. */
int ks_selfbind_done(void);

#ifdef __cplusplus
}
#endif
#endif
