/* Does the landing pad a forced unwind would enter call std::terminate?
 * (lpad.h says why the LSDA cannot tell.) Runs lpad.c's scan over the
 * process's own code, naming call targets by address (std::terminate and
 * friends, looked up at init), by the relocation of the GOT slot a PLT stub
 * jumps through (gotsym.h: bound or not), or, for clang's hidden
 * __clang_call_terminate, by its first instructions. Async-signal-safe. */
#ifndef KS_PADCHECK_H
#define KS_PADCHECK_H

#include "lsda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Looks up the addresses it compares against (dlsym). At init, not in
 * signal context. */
void ks_padcheck_init(void);

/* 1 if OUT (a verdict of ks_lsda_eval: CLEANUP, RETHROWS or CATCH_ALL with
 * a landing pad) enters a pad that, with OUT's selector, calls
 * std::terminate; 0 otherwise, and when the scan cannot follow the pad's
 * code (lpad.h's KS_LP_UNKNOWN: the frame is judged by its LSDA alone). */
int ks_pad_terminates(const struct ks_lsda_out *out);

#ifdef __cplusplus
}
#endif
#endif
