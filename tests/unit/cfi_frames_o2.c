/* See cfi_frames.h. Built with -O2. The empty asm after each call keeps it from
 * becoming a tail call (the frame must stay on the stack). */
#include "cfi_frames.h"

__attribute__((noinline)) int ks_chain_o2(int depth, ks_leaf_fn leaf, void *arg)
{
    if (depth <= 0)
        leaf(arg);
    else
        ks_chain_o2(depth - 1, leaf, arg);
    __asm__ volatile("" ::: "memory");
    return depth;
}

__attribute__((noinline)) int ks_drap_o2(int n, ks_leaf_fn leaf, void *arg)
{
    _Alignas(64) volatile char aligned[64];
    volatile char vla[n];
    aligned[0] = (char)n;
    vla[0] = aligned[0];
    leaf(arg);
    __asm__ volatile("" ::: "memory");
    return vla[0] + aligned[0];
}
