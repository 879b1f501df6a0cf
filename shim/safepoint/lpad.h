/* Does a landing pad call std::terminate for a forced unwind?
 *
 * The LSDA cannot always say. GCC compiles a noexcept function that holds a
 * try block (void F() noexcept { try { Loop(); } catch (const E&) {} }) with
 * an action chain "catch E, then cleanup" at the call: the cleanup stands
 * for the noexcept region around the try. __gxx_personality_v0, for a forced
 * unwind, matches no catch clause but abi::__forced_unwind, sees the cleanup
 * and enters the landing pad with selector 0; the pad's code dispatches on
 * the selector (cmp $1,%rdx / sub $1,%rax; jne) and, since nothing matched,
 * calls std::terminate. Clang writes a catch (...) clause instead and calls
 * __clang_call_terminate. Only the pad's code tells such a "cleanup" from
 * one that runs destructors and resumes.
 *
 * ks_lp_scan follows the pad's code the way the CPU would with the selector
 * the personality will pass (in %rdx, x86-64's second EH data register):
 * a small interpreter of the moves, compares and branches compilers emit for
 * that dispatch, which decides a branch when it knows the registers it
 * tests and follows both sides otherwise. A pure function over bytes read
 * through the caller's callback; async-signal-safe; unit-tested on pads GCC
 * and clang generated (tests/unit/lpad_test.cc). */
#ifndef KS_LPAD_H
#define KS_LPAD_H

#include <stddef.h>
#include <stdint.h>

#include "lpad_state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a call or jump target is. */
enum ks_lp_target {
    KS_LP_OTHER = 0,      /* a function that returns (a destructor...) */
    KS_LP_TERMINATE,      /* std::terminate, __cxa_call_terminate, __clang_call_terminate */
    KS_LP_NORETURN,       /* __stack_chk_fail...: the path ends */
    KS_LP_UNWINDS,        /* __cxa_rethrow, _Unwind_Resume, __cxa_throw: the unwind
                             goes on from this call, in this frame (env->unwinds) */
};

struct ks_lp_env {
    /* Copies up to N bytes of code at ADDR into BUF; returns how many were
     * readable (0: none). */
    size_t (*read)(uintptr_t addr, uint8_t *buf, size_t n, void *arg);
    /* What a call or jump to ADDR is (enum ks_lp_target). SLOT: ADDR is a
     * pointer slot the instruction goes through (call *x(%rip), -fno-plt). */
    int (*target)(uintptr_t addr, int slot, void *arg);
    /* The unwind goes on from the call that returns to RET: what the
     * frame's LSDA does there (enum ks_lp_result). */
    int (*unwinds)(uintptr_t ret, void *arg);
    void *arg;
};

enum ks_lp_result {
    KS_LP_CLEAN = 0,      /* every path returns, resumes or throws */
    KS_LP_TERMINATES,     /* a path calls std::terminate */
    KS_LP_UNKNOWN,        /* an instruction it cannot follow, or out of budget */
};

#define KS_LP_PENDING 32    /* branches whose other side is still to follow */
#define KS_LP_VISITED 64    /* branch targets already followed */

/* A scan's working state, some 8 KB: given by the caller, never on the
 * stack of the scan (the abort's runs in a signal handler on the target
 * thread's own stack, as small as PTHREAD_STACK_MIN: padcheck.h). Only
 * lpad.c reads its fields. */
struct ks_lp_work {
    const struct ks_lp_env *env;
    struct ks_lp_state pend[KS_LP_PENDING];
    struct ks_lp_state cur;   /* the path being followed */
    int npend;
    uintptr_t visited[KS_LP_VISITED];
    int nvisited;
    int budget;
    int unknown;
};

/* Follows the landing pad at PAD entered with SELECTOR (0 for a cleanup,
 * the catch clause's filter for a handler), in WORK (overwritten; not in
 * use by a scan still running: a nested scan, from ENV->unwinds, needs
 * its own). */
int ks_lp_scan(const struct ks_lp_env *env, uintptr_t pad, int64_t selector,
               struct ks_lp_work *work);

#ifdef __cplusplus
}
#endif
#endif
