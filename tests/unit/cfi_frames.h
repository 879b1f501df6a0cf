/* Call chains for cfi_step_test, one source (cfi_frames.c) built at -O0 and
 * at -O2, the level in each function's name: each calls LEAF(ARG) DEPTH
 * frames down, or from a frame whose stack is realigned through a DRAP
 * register (gcc's form for a 64-byte aligned local next to a
 * variable-length array). */
#ifndef KS_TEST_CFI_FRAMES_H
#define KS_TEST_CFI_FRAMES_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*ks_leaf_fn)(void *arg);

int ks_chain_o0(int depth, ks_leaf_fn leaf, void *arg);
int ks_chain_o2(int depth, ks_leaf_fn leaf, void *arg);
int ks_drap_o0(int n, ks_leaf_fn leaf, void *arg);
int ks_drap_o2(int n, ks_leaf_fn leaf, void *arg);

#ifdef __cplusplus
}
#endif
#endif
