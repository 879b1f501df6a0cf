/* Just enough x86-64 decoding for the abort's single-stepping: is the next
 * instruction a near call (and how long is it, to know its return address),
 * or a near return. Pure functions over bytes, unit-tested. */
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

#ifdef __cplusplus
}
#endif
#endif
