/* Single-stepping a thread from its own signal handlers with the x86 trap
 * flag (EFLAGS.TF). A handler sets TF in the interrupted context; after
 * sigreturn the CPU runs one instruction and raises a debug trap, which the
 * kernel delivers as SIGTRAP (si_code TRAP_TRACE) to the same thread, with
 * the next context. The kernel clears TF for the handler itself and restores
 * it from the context on sigreturn.
 *
 * SIGTRAP is the program's signal: the shim's handler takes only trace traps
 * that its step callback claims, and hands every other one to the handler the
 * program had (or to the default action). A debugger (ptrace) sees SIGTRAPs
 * first: the abort does not step a traced process. */
#ifndef KS_X86_STEP_H
#define KS_X86_STEP_H

#include <signal.h>
#include <ucontext.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KS_EFLAGS_TF 0x100

/* Runs in the trapped thread's signal context. Returns 1 if the trap was the
 * shim's (it may change UC), 0 to pass it on. */
typedef int ks_step_fn(siginfo_t *si, ucontext_t *uc);

void ks_step_set_callback(ks_step_fn *fn);

/* Makes the shim's SIGTRAP handler the installed one, keeping the program's
 * current one to chain to. Not in signal context; call before each use (the
 * program may have installed its own since). Returns 0 or an errno. */
int ks_step_install(void);

static inline void ks_step_on(ucontext_t *uc) { uc->uc_mcontext.gregs[REG_EFL] |= KS_EFLAGS_TF; }
static inline void ks_step_off(ucontext_t *uc) { uc->uc_mcontext.gregs[REG_EFL] &= ~(greg_t)KS_EFLAGS_TF; }
static inline int ks_step_is_on(const ucontext_t *uc)
{
    return (uc->uc_mcontext.gregs[REG_EFL] & KS_EFLAGS_TF) != 0;
}

/* The pid of the tracer of this process, 0 if none, -1 if unknown. */
int ks_step_tracer(void);

#ifdef __cplusplus
}
#endif
#endif
