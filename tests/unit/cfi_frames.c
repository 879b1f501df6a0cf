/* See cfi_frames.h. Built twice (tests/unit/BUILD): at -O0 with
 * KS_FRAMES_OPT=o0 and at -O2 with KS_FRAMES_OPT=o2, which names the
 * functions. The empty asm after each call keeps it from becoming a tail
 * call (the frame must stay on the stack). */
#include "cfi_frames.h"

#define KS_CAT2(a, b) a##_##b
#define KS_CAT(a, b) KS_CAT2(a, b)
#define KS_CHAIN KS_CAT(ks_chain, KS_FRAMES_OPT)
#define KS_DRAP KS_CAT(ks_drap, KS_FRAMES_OPT)

__attribute__((noinline)) int KS_CHAIN(int depth, ks_leaf_fn leaf, void *arg)
{
    if (depth <= 0)
        leaf(arg);
    else
        KS_CHAIN(depth - 1, leaf, arg);
    __asm__ volatile("" ::: "memory");
    return depth;
}

__attribute__((noinline)) int KS_DRAP(int n, ks_leaf_fn leaf, void *arg)
{
    _Alignas(64) volatile char aligned[64];
    volatile char vla[n];
    aligned[0] = (char)n;
    vla[0] = aligned[0];
    leaf(arg);
    __asm__ volatile("" ::: "memory");
    return vla[0] + aligned[0];
}
