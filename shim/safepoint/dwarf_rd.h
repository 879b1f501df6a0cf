/* A bounded reader of DWARF bytes, shared by the CFI reader (cfi_row.c and
 * the expressions of cfi_step.c) and the LSDA parser (lsda.c): fixed-size
 * little-endian values, LEB128, and the value formats of the DW_EH_PE
 * pointer encodings. Each caller applies an encoding's base itself (pcrel,
 * datarel, funcrel): which ones it allows differs by table.
 *
 * Every read is checked against [lo, hi) before it is made: one that would
 * cross hi reads no byte past it and sets bad, and every later read yields
 * 0, so a caller may read a whole record and test bad once (what a read cut
 * short yields: 0 for LEB128, the bytes before hi for a fixed size). Runs
 * in signal handlers: no locks, no allocation, no libc. */
#ifndef KS_DWARF_RD_H
#define KS_DWARF_RD_H

#include <stdint.h>

/* Not instrumented: it runs in handlers that may interrupt a sanitizer's
 * runtime, and cfi_step.c's stack reads land in ASan's redzones (probed
 * readable first, as libunwind's accessor does, unwind_mem.c). */
#ifndef KS_CFI_SAFE   /* tools/fuzz.sh defines it empty: ASan then sees every read */
#define KS_CFI_SAFE __attribute__((no_sanitize("address", "undefined", "thread")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A cursor at P over the bytes [LO, HI) of this process. */
struct ks_rd {
    uintptr_t p, lo, hi;
    int bad;
};

uint8_t ks_rd_u8(struct ks_rd *r);
uint16_t ks_rd_u16(struct ks_rd *r);
uint32_t ks_rd_u32(struct ks_rd *r);
uint64_t ks_rd_u64(struct ks_rd *r);

/* LEB128 of at most 10 bytes (the most a 64-bit value needs; bits past the
 * 64th are dropped). A longer one sets bad. */
uint64_t ks_rd_uleb(struct ks_rd *r);
int64_t ks_rd_sleb(struct ks_rd *r);

/* A value in the format of the DW_EH_PE encoding ENC (its low four bits:
 * absptr, udata2/4/8, sdata2/4/8 sign-extended, uleb128, sleb128) into *V.
 * Returns 0, or -1 for a format it does not know (nothing read, *V 0). */
int ks_rd_enc_value(struct ks_rd *r, uint8_t enc, uint64_t *v);

#ifdef __cplusplus
}
#endif
#endif
