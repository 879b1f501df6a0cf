/* See lpad_state.h. */
#include "lpad_state.h"

#include <string.h>

static uint64_t ks_mask(int wide, uint64_t v) { return wide ? v : (uint32_t)v; }

static int ks_slot_find(const struct ks_lp_state *s, const struct ks_x86_insn *in)
{
    for (int i = 0; i < s->nslot; i++)
        if (s->slot_base[i] == in->base && s->slot_disp[i] == in->disp)
            return i;
    return -1;
}

/* A write of V (KNOWN) to the memory operand of IN. */
static void ks_slot_store(struct ks_lp_state *s, const struct ks_x86_insn *in, int known, uint64_t v)
{
    if (in->base != KS_RBP && in->base != KS_RSP)
        return;   /* not the frame: cannot alias a spilled selector we track */
    int i = ks_slot_find(s, in);
    if (!known) {
        if (i >= 0)
            s->slot_base[i] = -1;
        return;
    }
    if (i < 0) {
        i = s->nslot < KS_LP_SLOTS ? s->nslot++ : 0;
        s->slot_base[i] = (int8_t)in->base;
        s->slot_disp[i] = in->disp;
    }
    s->slot_val[i] = ks_mask(in->wide, v);
}

void ks_lps_set(struct ks_lp_state *s, int r, int known, uint64_t v, int wide)
{
    if (known) {
        s->known |= (uint16_t)(1u << r);
        s->val[r] = ks_mask(wide, v);
    } else {
        s->known &= (uint16_t)~(1u << r);
    }
    if (r == KS_RSP)
        s->nslot = 0;   /* rsp-relative slots moved: forget them all */
}

int ks_lps_get(const struct ks_lp_state *s, int r, uint64_t *v)
{
    if (!(s->known & (1u << r)))
        return 0;
    *v = s->val[r];
    return 1;
}

/* Reads operand rm of IN (register or tracked slot). */
static int ks_get_rm(const struct ks_lp_state *s, const struct ks_x86_insn *in, uint64_t *v)
{
    if (in->mod == 3)
        return ks_lps_get(s, in->rm, v);
    int i = ks_slot_find(s, in);
    if (i < 0 || in->base < 0)
        return 0;
    *v = s->slot_val[i];
    return 1;
}

uint64_t ks_lps_flags(struct ks_lp_state *s, int op, int ok, uint64_t a, uint64_t b, int wide)
{
    uint64_t r = 0;
    s->fop = KS_F_NONE;
    if (!ok)
        return 0;
    switch (op) {
    case 0: r = a + b; s->fop = KS_F_ADD; break;
    case 1: r = a | b; s->fop = KS_F_LOGIC; break;
    case 4: case 8: r = a & b; s->fop = KS_F_LOGIC; break;
    case 5: case 7: r = a - b; s->fop = KS_F_SUB; break;
    case 6: r = a ^ b; s->fop = KS_F_LOGIC; break;
    default: return 0;
    }
    s->fa = ks_mask(wide, a);
    s->fb = ks_mask(wide, b);
    s->fwide = (int8_t)wide;
    if (s->fop == KS_F_LOGIC)
        s->fa = ks_mask(wide, r);
    return ks_mask(wide, r);
}

int ks_lps_cond(const struct ks_lp_state *s, int cc)
{
    if (s->fop == KS_F_NONE || cc == 0xa || cc == 0xb)
        return -1;   /* parity is not tracked */
    int bits = s->fwide ? 64 : 32;
    uint64_t a = s->fa, b = s->fb, r;
    int cf = 0, of = 0;
    if (s->fop == KS_F_SUB) {
        r = ks_mask(s->fwide, a - b);
        cf = a < b;
        of = (int)((((a ^ b) & (a ^ r)) >> (bits - 1)) & 1);
    } else if (s->fop == KS_F_ADD) {
        r = ks_mask(s->fwide, a + b);
        cf = r < a;
        of = (int)(((~(a ^ b) & (a ^ r)) >> (bits - 1)) & 1);
    } else {
        r = a;
    }
    int zf = r == 0, sf = (int)((r >> (bits - 1)) & 1);
    int v;
    switch (cc >> 1) {
    case 0: v = of; break;
    case 1: v = cf; break;
    case 2: v = zf; break;
    case 3: v = cf || zf; break;
    case 4: v = sf; break;
    case 6: v = sf != of; break;
    default: v = zf || sf != of; break;
    }
    return (cc & 1) ? !v : v;
}

void ks_lps_after_call(struct ks_lp_state *s)
{
    s->known &= (uint16_t)((1u << 3) | (1u << 4) | (1u << 5) | (0xfu << 12));
    s->fop = KS_F_NONE;
}

void ks_lps_alu(struct ks_lp_state *s, const struct ks_x86_insn *in, int op, int dir,
                int have_imm, int64_t imm)
{
    uint64_t a = 0, b = 0;
    int oka, okb;
    if (have_imm) {
        oka = ks_get_rm(s, in, &a);
        okb = 1;
        b = (uint64_t)imm;
    } else if (dir) {   /* op reg, r/m */
        oka = ks_lps_get(s, in->reg, &a);
        okb = ks_get_rm(s, in, &b);
    } else {
        oka = ks_get_rm(s, in, &a);
        okb = ks_lps_get(s, in->reg, &b);
    }
    int xor_self = op == 6 && !have_imm && in->mod == 3 && in->reg == in->rm;
    if (xor_self) {
        oka = okb = 1;
        a = b = 0;
    }
    uint64_t r = ks_lps_flags(s, op, oka && okb, a, b, in->wide);
    if (op == 7 || op == 8)
        return;   /* cmp, test: flags only */
    int ok = oka && okb && s->fop != KS_F_NONE;
    if (have_imm || !dir) {
        if (in->mod == 3)
            ks_lps_set(s, in->rm, ok, r, in->wide);
        else
            ks_slot_store(s, in, ok, r);
    } else {
        ks_lps_set(s, in->reg, ok, r, in->wide);
    }
}

void ks_lps_mov(struct ks_lp_state *s, const struct ks_x86_insn *in, int64_t imm)
{
    uint64_t v = 0;
    int ok;
    switch (in->op) {
    case 0x89:
        ok = ks_lps_get(s, in->reg, &v);
        if (in->mod == 3)
            ks_lps_set(s, in->rm, ok, v, in->wide);
        else
            ks_slot_store(s, in, ok, v);
        break;
    case 0x8b:
        ok = ks_get_rm(s, in, &v);
        ks_lps_set(s, in->reg, ok, v, in->wide);
        break;
    case 0xc7:
        if (in->mod == 3)
            ks_lps_set(s, in->rm, 1, (uint64_t)imm, in->wide);
        else
            ks_slot_store(s, in, 1, (uint64_t)imm);
        break;
    default:   /* lea */
        ks_lps_set(s, in->reg, 0, 0, 1);
        break;
    }
}

int ks_lps_opaque(int op, int reg, int opsize)
{
    int imm = opsize ? 2 : 4;
    if (op < 0x40 && (op & 7) <= 3)
        return 0;   /* 8-bit ALU forms, adc, sbb */
    if ((op >= 0x140 && op <= 0x14f) || (op >= 0x190 && op <= 0x19f))
        return 0;   /* cmovcc, setcc */
    if ((op >= 0x110 && op <= 0x117) || (op >= 0x128 && op <= 0x12f) ||
        (op >= 0x150 && op <= 0x16f) || op == 0x17e || op == 0x17f || op >= 0x1d0)
        return 0;   /* SSE moves, arithmetic, conversions */
    if ((op >= 0x170 && op <= 0x173) || op == 0x1c2 || op == 0x1c6)
        return 1;   /* pshufd, the shifts by an immediate, cmpps, shufps */
    switch (op) {
    case 0x63: case 0x84: case 0x86: case 0x87: case 0x88: case 0x8a:
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: case 0xfe:
    case 0x1af: case 0x1b1: case 0x1b6: case 0x1b7: case 0x1be: case 0x1bf: case 0x1c1:
        return 0;
    case 0x6b: case 0x80: case 0xc0: case 0xc1: case 0xc6:
        return 1;
    case 0x69:
        return imm;
    case 0x81: case 0xc7:
        return opsize ? 2 : -1;   /* 16-bit: not followed */
    case 0xf6:
        return (reg & 7) <= 1 ? 1 : 0;
    case 0xf7:
        return (reg & 7) <= 1 ? imm : 0;
    default:
        return -1;
    }
}

void ks_lps_clobber(struct ks_lp_state *s, const struct ks_x86_insn *in)
{
    ks_lps_set(s, in->reg, 0, 0, 1);
    if (in->mod == 3)
        ks_lps_set(s, in->rm, 0, 0, 1);
    else
        ks_slot_store(s, in, 0, 0);
    if (((in->op == 0xf6 || in->op == 0xf7) && (in->reg & 7) >= 4) || in->op == 0x1b1) {
        ks_lps_set(s, 0, 0, 0, 1);
        ks_lps_set(s, 2, 0, 0, 1);
    }
    s->fop = KS_F_NONE;
}
