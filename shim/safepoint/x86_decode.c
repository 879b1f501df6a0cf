/* See x86_decode.h. */
#include "x86_decode.h"

#include <string.h>

/* Skips legacy prefixes and one REX. Returns the opcode's offset, or -1.
 * *OPSIZE: a 0x66 prefix was seen. */
static int ks_x86_skip_prefixes(const uint8_t *code, size_t avail, int *opsize)
{
    size_t i = 0;
    *opsize = 0;
    for (; i < avail && i < 14; i++) {
        uint8_t b = code[i];
        if (b == 0x66)
            *opsize = 1;
        else if (!(b == 0xf0 || b == 0xf2 || b == 0xf3 || b == 0x2e || b == 0x36 ||
                   b == 0x3e || b == 0x26 || b == 0x64 || b == 0x65 || b == 0x67))
            break;
    }
    if (i < avail && (code[i] & 0xf0) == 0x40)
        i++;   /* REX must come last, right before the opcode */
    return i < avail ? (int)i : -1;
}

/* Length of a ModRM operand (ModRM byte, SIB, displacement) at CODE. */
static int ks_x86_modrm_len(const uint8_t *code, size_t avail)
{
    if (avail < 1)
        return -1;
    uint8_t modrm = code[0];
    int mod = modrm >> 6, rm = modrm & 7;
    int n = 1;
    if (mod == 3)
        return n;
    if (rm == 4) {   /* SIB follows, whatever REX.B says */
        if (avail < 2)
            return -1;
        if (mod == 0 && (code[1] & 7) == 5)
            n += 4;   /* no base: disp32 */
        n += 1;
    } else if (mod == 0 && rm == 5) {
        n += 4;   /* RIP-relative disp32 */
    }
    if (mod == 1)
        n += 1;
    else if (mod == 2)
        n += 4;
    return (size_t)n <= avail ? n : -1;
}

int ks_x86_call_len(const uint8_t *code, size_t avail)
{
    int opsize;
    int i = ks_x86_skip_prefixes(code, avail, &opsize);
    if (i < 0 || opsize)
        return 0;
    if (code[i] == 0xe8)
        return (size_t)i + 5 <= avail ? i + 5 : 0;
    if (code[i] == 0xff && (size_t)i + 1 < avail && ((code[i + 1] >> 3) & 7) == 2) {
        int m = ks_x86_modrm_len(code + i + 1, avail - (size_t)i - 1);
        return m < 0 ? 0 : i + 1 + m;
    }
    return 0;
}

int ks_x86_is_ret(const uint8_t *code, size_t avail)
{
    int opsize;
    int i = ks_x86_skip_prefixes(code, avail, &opsize);
    if (i < 0 || opsize)
        return 0;
    return code[i] == 0xc3 || (code[i] == 0xc2 && (size_t)i + 3 <= avail);
}

int ks_x86_after_syscall(const uint8_t *code, size_t before)
{
    return before >= 2 && code[-2] == 0x0f && code[-1] == 0x05;
}

int ks_x86_modrm(struct ks_x86_insn *in, int at, int avail)
{
    if (at >= avail)
        return -1;
    uint8_t m = in->b[at++];
    in->mod = m >> 6;
    in->reg = ((m >> 3) & 7) | (in->rex & 4 ? 8 : 0);
    in->rm = (m & 7) | (in->rex & 1 ? 8 : 0);
    in->base = -1;
    in->disp = 0;
    in->riprel = 0;
    if (in->mod == 3)
        return at;
    int simple = 1;
    if ((m & 7) == 4) {
        if (at >= avail)
            return -1;
        uint8_t sib = in->b[at++];
        simple = ((sib >> 3) & 7) == 4 && !(in->rex & 2);   /* no index */
        in->rm = (sib & 7) | (in->rex & 1 ? 8 : 0);
        if (in->mod == 0 && (sib & 7) == 5) {
            simple = 0;
            at += 4;
        }
    } else if (in->mod == 0 && (m & 7) == 5) {
        in->riprel = 1;
        simple = 0;
        if (at + 4 > avail)
            return -1;
        memcpy(&in->disp, in->b + at, 4);
        return at + 4;
    }
    int dl = in->mod == 1 ? 1 : in->mod == 2 ? 4 : 0;
    if (at + dl > avail)
        return -1;
    if (dl == 1)
        in->disp = (int8_t)in->b[at];
    else if (dl == 4)
        memcpy(&in->disp, in->b + at, 4);
    if (simple)
        in->base = in->rm;
    return at + dl;
}


int ks_x86_opcode(struct ks_x86_insn *in, int avail)
{
    int i = 0;
    in->rex = 0;
    in->opsize = 0;
    for (; i < avail && i < 8; i++) {
        uint8_t b = in->b[i];
        if (b == 0x66)
            in->opsize = 1;
        else if (!(b == 0xf0 || b == 0xf2 || b == 0xf3 || b == 0x2e || b == 0x3e || b == 0x64 ||
                   b == 0x65))
            break;
    }
    if (i < avail && (in->b[i] & 0xf0) == 0x40)
        in->rex = in->b[i++] & 0xf;
    if (i >= avail)
        return -1;
    in->op = in->b[i++];
    if (in->op == 0x0f) {
        if (i >= avail)
            return -1;
        in->op = 0x100 | in->b[i++];
    }
    in->wide = (in->rex & 8) != 0;
    return i;
}
