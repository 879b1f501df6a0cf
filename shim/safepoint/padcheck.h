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

/* What the landing pad of OUT (a verdict of ks_lsda_eval) does with OUT's
 * selector: enum ks_lp_result. KS_LP_CLEAN for verdicts that enter no pad
 * (NOTHING, TERMINATE...). */
int ks_pad_check(const struct ks_lsda_out *out);

#ifdef __cplusplus
}
#endif
#endif
