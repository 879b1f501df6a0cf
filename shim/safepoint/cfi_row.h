/* The CFI reader behind cfi_step.h (internal to it): finds a PC's FDE
 * through its module's .eh_frame_hdr and runs the CIE's and FDE's
 * instructions up to the PC, yielding the row of the CFA table there. */
#ifndef KS_CFI_ROW_H
#define KS_CFI_ROW_H

#include <stdint.h>

#include "cfi_step.h"
#include "dwarf_rd.h"   /* struct ks_rd, KS_CFI_SAFE: cfi_step.c reads expressions with it */

/* A register's rule. For the two expression kinds, val is the address of
 * the DWARF block (its uleb length first) in the CFI segment; for KS_R_REG
 * the source register. KS_R_UNKNOWN: a rule this reader does not follow
 * (a copy from a register it does not track). */
enum { KS_R_SAME = 0, KS_R_UNDEF, KS_R_OFFSET, KS_R_VAL_OFFSET, KS_R_REG, KS_R_EXPR,
       KS_R_VAL_EXPR, KS_R_UNKNOWN };
struct ks_rule {
    int64_t val;
    uint8_t how;
};
/* cfa: KS_R_REG (register in .val, plus cfa_off) or KS_R_EXPR. Registers
 * nothing mentions are KS_R_SAME (0). */
struct ks_row {
    struct ks_rule r[KS_CFI_NREG];
    struct ks_rule cfa;
    int64_t cfa_off;
};

struct ks_cfi_fde {
    uintptr_t start;   /* pc_begin */
    int signal;        /* the CIE's 'S': the caller's ip is exact */
    uintptr_t lo, hi;  /* the CFI segment */
};

/* The FDE covering PC into *OUT and, if ROW, the row at PC. Returns 0,
 * ENOENT (no module, no table, no FDE covers PC), or EINVAL (malformed, or
 * an instruction or encoding it does not know). */
int ks_cfi_row(const struct ks_cfi_env *env, uintptr_t pc, struct ks_row *row,
               struct ks_cfi_fde *out);

#endif
