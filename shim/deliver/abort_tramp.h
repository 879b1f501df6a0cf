/* The assembly of the abort (abort_entry.S, abort_tramp.S): what the C code
 * (abort_exit.c) and the tests (tests/unit/tramp_test.cc) call and read. */
#ifndef KS_ABORT_TRAMP_H
#define KS_ABORT_TRAMP_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* abort_entry.S: jumped to (never called) with [rsp] holding a return
 * address into the application, as right after a call instruction. */
extern char ks_abort_entry[];

/* abort_tramp.S: the trampolines, and where each keeps the address it
 * replaced. A slot K is owned by the thread whose bit is set in
 * abort_exit.c's ks_tramp_used. */
#define KS_TRAMP_N 64
#define KS_TRAMP_STRIDE 16
extern char ks_tramp_base[];
/* The address of ks_tramp_K: each is 16 bytes after the one before, behind
 * a nop (tramp_test checks it). Computed, not a table: a table of 64
 * pointers was 64 relocations in every process at load and 512 bytes of
 * RELRO. */
static inline uintptr_t ks_tramp_addr(int k)
{
    return (uintptr_t)ks_tramp_base + KS_TRAMP_STRIDE * (unsigned)k + 1;
}
extern uintptr_t ks_tramp_slots[KS_TRAMP_N];
extern uintptr_t ks_tramp_ips[KS_TRAMP_N];   /* the same minus 1, for unwinders */
/* The common part of the trampolines calls ks_abort_trampoline_fire(K)
 * (abort_exit.c; tramp_test has its own): nonzero to leave through
 * ks_abort_entry, 0 to return to the original address. */

#ifdef __cplusplus
}
#endif
#endif
