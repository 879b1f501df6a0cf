/* The doorbell's safety walk as it was before shim/safepoint/cfi_step.c
 * (commit 63c8c30's ks_redirect_safe): the same rules, stepped by libunwind
 * through the shim's binding (shim/unwind/unwind.h, ks_unw_load first).
 * The reference the new walk is compared with (redirect_walk_test) and
 * timed against (tools/bench/walk.c). */
#ifndef KS_TEST_UNW_WALK_H
#define KS_TEST_UNW_WALK_H

#include <ucontext.h>

#ifdef __cplusplus
extern "C" {
#endif

int ks_unw_walk_safe(ucontext_t *uc);

#ifdef __cplusplus
}
#endif
#endif
