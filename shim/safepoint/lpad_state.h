/* The landing pad scan's knowledge of the machine (lpad.c): which registers
 * and frame slots hold a known value, and the operands of the last
 * flag-setting instruction, which decide a conditional branch. What each
 * instruction it interprets does to that knowledge; anything it does not
 * follow becomes unknown. Internal to lpad.c (lpad.h includes it for the
 * size of struct ks_lp_work). */
#ifndef KS_LPAD_STATE_H
#define KS_LPAD_STATE_H

#include <stdint.h>

#include "x86_decode.h"

#define KS_LP_SLOTS 4       /* stack slots remembered (clang -O0 spills the selector) */

enum { KS_RSP = 4, KS_RBP = 5 };
enum { KS_F_NONE, KS_F_SUB, KS_F_ADD, KS_F_LOGIC };

struct ks_lp_state {
    uintptr_t pc;
    uint16_t known;                 /* bit r: val[r] holds register r */
    uint64_t val[16];
    int8_t fop, fwide;              /* the last flag-setting operation */
    uint64_t fa, fb;
    int nslot;
    int8_t slot_base[KS_LP_SLOTS];
    int32_t slot_disp[KS_LP_SLOTS];
    uint64_t slot_val[KS_LP_SLOTS];
};


/* Register R (0 rax ... 15 r15) is now V (KNOWN) of WIDE (64-bit) or 32-bit
 * width (zero-extended); or unknown. Writing rsp forgets its slots. */
void ks_lps_set(struct ks_lp_state *s, int r, int known, uint64_t v, int wide);

/* 1 and *V if register R is known. */
int ks_lps_get(const struct ks_lp_state *s, int r, uint64_t *v);

/* Applies the ALU operation OP (the /digit of 0x81/0x83: 0 add, 1 or, 4 and,
 * 5 sub, 6 xor, 7 cmp; 8: test) to A and B if OK, and records the flags
 * (unknown if not OK or OP is another); returns the result. */
uint64_t ks_lps_flags(struct ks_lp_state *s, int op, int ok, uint64_t a, uint64_t b, int wide);

/* Condition CC (the low nibble of Jcc) under S's flags: 1, 0, or -1. */
int ks_lps_cond(const struct ks_lp_state *s, int cc);

/* A call: the SysV ABI's caller-saved registers and the flags are unknown. */
void ks_lps_after_call(struct ks_lp_state *s);

/* ALU operation OP on IN's operands: 0x01-0x3b (op r/m,r; DIR: op r,r/m),
 * 0x81/0x83 (op r/m,imm: HAVE_IMM), 0x85 (test: OP 8). */
void ks_lps_alu(struct ks_lp_state *s, const struct ks_x86_insn *in, int op, int dir,
                int have_imm, int64_t imm);

/* Moves: 0x89, 0x8b, 0xc7 (IMM), 0x8d (lea: the result is unknown). */
void ks_lps_mov(struct ks_lp_state *s, const struct ks_x86_insn *in, int64_t imm);

/* ModRM instructions the scan steps over without following their values
 * (ks_lps_clobber says what becomes unknown). Returns the immediate's size,
 * -1 if OP is not one of them. */
int ks_lps_opaque(int op, int reg, int opsize);

/* What such an instruction writes (its operands; rdx:rax for mul and div,
 * rax for cmpxchg) becomes unknown, and so do the flags. */
void ks_lps_clobber(struct ks_lp_state *s, const struct ks_x86_insn *in);

#endif
