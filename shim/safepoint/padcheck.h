/* What a forced unwind (the abort's pthread_exit, cancellation) does in one
 * frame: its LSDA (lsda.h) and, when the LSDA sends it into a landing pad,
 * what that pad's code does (lpad.h says why the LSDA cannot always tell: a
 * noexcept function that holds a try block calls std::terminate there).
 * Runs lpad.c's scan over the process's own code, naming call targets by
 * address (std::terminate and friends, looked up at init), by the
 * relocation of the GOT slot a PLT stub jumps through (gotsym.h: bound or
 * not), or, for clang's hidden __clang_call_terminate, by its first
 * instructions; a rethrow in the pad is followed into the LSDA of its call.
 * Async-signal-safe. */
#ifndef KS_PADCHECK_H
#define KS_PADCHECK_H

#include <stdint.h>

#include "lpad.h"
#include "lsda.h"
#include "shim/unwind/unwind.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Looks up what it compares against (libgcc's C personality in LIBGCC, the
 * type abi::__forced_unwind, std::terminate...). At init, not in signal
 * context. */
void ks_padcheck_init(void *libgcc);

/* How deep a rethrow (or _Unwind_Resume) in a pad is followed into the
 * pad of its own call site; each level scans with its own ks_lp_work. Two:
 * the documented idiom, catch (abi::__forced_unwind&) { throw; } with a
 * destructor around it, rethrows into a cleanup that resumes (depth 1),
 * whose _Unwind_Resume is asked about once more (abort_test's rethrow). */
#define KS_PAD_DEPTH 2

/* Everything ks_frame_verdict (and ks_prewalk, for its cursor) works in
 * beyond a few hundred bytes of stack, some 25 KB: owned by the caller and used by one verdict at a
 * time. The abort's walk runs on the target thread's own stack, in a
 * signal handler, and that stack may be PTHREAD_STACK_MIN (16 KiB) with
 * the program's frames on it: the abort keeps one in the thread's abort
 * block (shim/deliver/abort_internal.h). */
struct ks_pad_work {
    struct ks_lp_work scan[KS_PAD_DEPTH + 1];   /* one a nesting level */
    struct ks_lsda_out out[KS_PAD_DEPTH];       /* a rethrow's call site's answer */
    unw_proc_info_t pi[KS_PAD_DEPTH];           /* its procedure, if looked up */
    unw_proc_info_t other;   /* the last procedure looked up (GCC's F.cold for F) */
    int have_other;
    unw_cursor_t cursor;     /* ks_prewalk's cursor (prewalk.c), 1 KB */
};

/* The verdict for frame PI at LOOKUP (the exact pc, or return address - 1):
 * KS_LSDA_*, or -1 if the table lies outside every module. OUT: the
 * evaluator's whole answer. *PAD: what its landing pad does (enum
 * ks_lp_result): KS_LP_TERMINATES turned the verdict into
 * KS_LSDA_TERMINATE; KS_LP_UNKNOWN, the scan could not follow it. WORK:
 * see above; its contents need no initialising. */
int ks_frame_verdict(const unw_proc_info_t *pi, uintptr_t lookup, struct ks_lsda_out *out,
                     int *pad, struct ks_pad_work *work);

#ifdef __cplusplus
}
#endif
#endif
