/* Just enough x86-64 decoding for the abort's single-stepping: is the next
 * instruction a near call (and how long is it, to know its return address),
 * or a near return; and for the landing pad scan (lpad.h), an instruction's
 * opcode and operand. Pure functions over bytes, unit-tested. */
#ifndef KS_X86_DECODE_H
#define KS_X86_DECODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Length of the near call at CODE (E8 rel32, or FF /2 with any ModRM form,
 * after legacy and REX prefixes), 0 if it is not one or AVAIL bytes do not
 * hold it. Operand-size-prefixed calls (16-bit on AMD) count as not calls. */
int ks_x86_call_len(const uint8_t *code, size_t avail);

/* 1 if CODE is a near return (C3, C2 imm16; rep/bnd/REX prefixes allowed). */
int ks_x86_is_ret(const uint8_t *code, size_t avail);

/* 1 if CODE[-2..-1] is a syscall instruction (0F 05). BEFORE bytes of CODE's
 * past are readable. */
int ks_x86_after_syscall(const uint8_t *code, size_t before);

/* One instruction, decoded as far as the landing pad scan (lpad.h) needs:
 * its prefixes, opcode and ModRM operand. */
struct ks_x86_insn {
    const uint8_t *b;               /* its bytes */
    int op;                         /* the opcode; 0f xx as 0x100 | xx */
    int rex, opsize, wide;          /* REX's low nibble, a 0x66 prefix, REX.W */
    int mod, reg, rm;               /* ModRM, with REX applied */
    int base;                       /* [base + disp] without index, else -1 */
    int32_t disp;
    int riprel;                     /* [rip + disp] */
};

/* Reads the prefixes (66 f0 f2 f3 2e 3e 64 65, one REX) and the opcode at IN->b,
 * AVAIL bytes. Returns the offset after the opcode, or -1. */
int ks_x86_opcode(struct ks_x86_insn *in, int avail);

/* Reads the ModRM operand (SIB, displacement) at IN->b[AT]. Returns the
 * offset after it (may exceed AVAIL only if the caller checks), or -1. */
int ks_x86_modrm(struct ks_x86_insn *in, int at, int avail);

#ifdef __cplusplus
}
#endif
#endif
