/* See cfi_row.h. Formats: the LSB's .eh_frame and .eh_frame_hdr (Linux
 * Standard Base Core, "Exception Frames") and DWARF 4 section 6.4 (call
 * frame information). Runs in signal handlers: no locks, no allocation,
 * every read bounded by the CFI segment the caller's find named. */
#include "cfi_row.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* A pointer in encoding ENC (DW_EH_PE_*): absptr, [us]data2/4/8, [us]leb;
 * absolute, pcrel, or datarel to DATAREL (0: not allowed here). Indirect,
 * textrel, funcrel and aligned set bad. */
static KS_CFI_SAFE uintptr_t ks_rd_enc(struct ks_rd *r, uint8_t enc, uintptr_t datarel)
{
    uintptr_t at = r->p;
    uint64_t v;
    if (ks_rd_enc_value(r, enc, &v) != 0) {
        r->bad = 1;
        return 0;
    }
    switch (enc & 0xf0) {
    case 0x00: break;
    case 0x10: v += at; break;
    case 0x30:
        if (!datarel)
            r->bad = 1;
        v += datarel;
        break;
    default: r->bad = 1; break;
    }
    return (uintptr_t)v;
}

struct ks_cie {
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra;
    uint8_t fde_enc;
    int has_z, signal;
    uintptr_t insn, end;
};

static KS_CFI_SAFE int ks_cie_parse(struct ks_rd r, uintptr_t at, struct ks_cie *cie)
{
    memset(cie, 0, sizeof *cie);
    r.p = at;
    uint32_t len = ks_rd_u32(&r);
    if (len == 0 || len == 0xffffffffu || ks_rd_u32(&r) != 0)
        return EINVAL;   /* a terminator, the 64-bit format, or not a CIE */
    cie->end = at + 4 + len;
    uint8_t version = ks_rd_u8(&r);
    char aug[8];
    size_t n = 0;
    for (;; n++) {
        if (n == sizeof aug)
            return EINVAL;
        aug[n] = (char)ks_rd_u8(&r);
        if (!aug[n] || r.bad)
            break;
    }
    if ((version != 1 && version != 3) || (n && aug[0] != 'z'))
        return EINVAL;   /* "eh" and friends: gcc before 3.0 */
    cie->code_align = ks_rd_uleb(&r);
    cie->data_align = ks_rd_sleb(&r);
    cie->ra = version == 1 ? ks_rd_u8(&r) : ks_rd_uleb(&r);
    if (n) {
        cie->has_z = 1;
        uint64_t alen = ks_rd_uleb(&r);
        uintptr_t aend = r.p + alen;
        for (size_t i = 1; i < n && !r.bad; i++) {
            if (aug[i] == 'R') {
                cie->fde_enc = ks_rd_u8(&r);
            } else if (aug[i] == 'P') {
                uint8_t penc = ks_rd_u8(&r);
                ks_rd_enc(&r, penc & 0x7f, 0);   /* skipped; indirect is fine */
            } else if (aug[i] == 'L') {
                ks_rd_u8(&r);
            } else if (aug[i] == 'S') {
                cie->signal = 1;
            } else {
                return EINVAL;
            }
        }
        r.p = aend;
    }
    cie->insn = r.p;
    if (r.bad || cie->ra != KS_CFI_RIP || cie->end > r.hi || cie->insn > cie->end)
        return EINVAL;
    return 0;
}

struct ks_fde {
    uintptr_t start;
    struct ks_cie cie;
    uintptr_t insn, end;
};

/* The FDE covering PC, through the module's .eh_frame_hdr table: as every
 * linker writes it, datarel sdata4 pairs sorted by initial location. */
static KS_CFI_SAFE int ks_fde_find(const struct ks_cfi_module *m, uintptr_t pc, struct ks_fde *f)
{
    struct ks_rd r = {m->eh_hdr, m->hdr_lo, m->hdr_hi, 0};
    if (!m->eh_hdr || ks_rd_u8(&r) != 1)
        return ENOENT;
    uint8_t ptr_enc = ks_rd_u8(&r), count_enc = ks_rd_u8(&r), table_enc = ks_rd_u8(&r);
    ks_rd_enc(&r, ptr_enc, m->eh_hdr);
    uint64_t count = ks_rd_enc(&r, count_enc, m->eh_hdr);
    if (r.bad || table_enc != 0x3b || count == 0 || count > (m->hdr_hi - r.p) / 8)
        return ENOENT;
    const uintptr_t table = r.p;
    uint64_t lo = 0, hi = count;   /* the last entry whose location <= PC */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        int32_t loc;
        __builtin_memcpy(&loc, (const void *)(table + mid * 8), 4);
        if (m->eh_hdr + (intptr_t)loc <= pc)
            lo = mid;
        else
            hi = mid;
    }
    int32_t off;
    __builtin_memcpy(&off, (const void *)(table + lo * 8 + 4), 4);
    uintptr_t at = m->eh_hdr + (intptr_t)off;
    r.p = at;
    uint32_t len = ks_rd_u32(&r);
    uintptr_t cie_field = r.p;
    uint32_t cie_off = ks_rd_u32(&r);
    if (r.bad || len == 0 || len == 0xffffffffu || cie_off == 0 || cie_off > cie_field)
        return EINVAL;
    f->end = at + 4 + len;
    if (f->end > m->hdr_hi || ks_cie_parse(r, cie_field - cie_off, &f->cie) != 0)
        return EINVAL;
    f->start = ks_rd_enc(&r, f->cie.fde_enc, 0);
    uintptr_t range = ks_rd_enc(&r, f->cie.fde_enc & 0x0f, 0);
    if (f->cie.has_z)
        r.p += ks_rd_uleb(&r);   /* the LSDA pointer: not ours */
    f->insn = r.p;
    if (r.bad || f->insn > f->end)
        return EINVAL;
    return pc >= f->start && pc - f->start < range ? 0 : ENOENT;
}

#define KS_CFI_STATES 4   /* remember_state nesting; gcc and clang use 1 */

struct ks_prog {
    struct ks_rd r;
    const struct ks_cie *cie;
    uintptr_t loc, target;
    struct ks_row row, init, saved[KS_CFI_STATES];
    int depth;
};

static KS_CFI_SAFE void ks_set(struct ks_prog *p, uint64_t reg, uint8_t how, int64_t val)
{
    if (reg < KS_CFI_NREG)
        p->row.r[reg] = (struct ks_rule){val, how};
    /* Higher columns (vector registers) are no register this walk needs. */
}

/* A factored offset: X times the CIE's data alignment, wrapping (malformed
 * CFI yields a wrong offset, whose read is then checked, never overflow). */
static KS_CFI_SAFE int64_t ks_factor(uint64_t x, int64_t align)
{
    return (int64_t)(x * (uint64_t)align);
}

/* Skips a DWARF block (uleb length, bytes), returns its address. */
static KS_CFI_SAFE int64_t ks_block(struct ks_rd *r)
{
    uintptr_t at = r->p;
    uint64_t len = ks_rd_uleb(r);
    if (len > r->hi - r->p)
        r->bad = 1;
    else
        r->p += len;
    return (int64_t)at;
}

/* A register-rule instruction OP. Returns 1 if OP was one, 0 if not. */
static KS_CFI_SAFE int ks_insn_rule(struct ks_prog *p, uint8_t op)
{
    struct ks_rd *r = &p->r;
    int64_t da = p->cie->data_align;
    uint64_t reg = (op & 0xc0) ? op & 0x3fu : 0, src;
    if ((op & 0xc0) == 0x80) {
        ks_set(p, reg, KS_R_OFFSET, ks_factor(ks_rd_uleb(r), da));
        return 1;
    }
    if ((op & 0xc0) == 0xc0 || op == 0x06) {                 /* restore(_extended) */
        reg = op == 0x06 ? ks_rd_uleb(r) : reg;
        if (reg < KS_CFI_NREG)
            p->row.r[reg] = p->init.r[reg];
        return 1;
    }
    switch (op) {
    case 0x05: case 0x07: case 0x08: case 0x09: case 0x10: case 0x11:
    case 0x14: case 0x15: case 0x16: case 0x2f: reg = ks_rd_uleb(r); break;
    default: return 0;
    }
    switch (op) {
    case 0x05: ks_set(p, reg, KS_R_OFFSET, ks_factor(ks_rd_uleb(r), da)); break;
    case 0x07: ks_set(p, reg, KS_R_UNDEF, 0); break;
    case 0x08: ks_set(p, reg, KS_R_SAME, 0); break;
    case 0x09:
        src = ks_rd_uleb(r);
        ks_set(p, reg, src < KS_CFI_NREG ? KS_R_REG : KS_R_UNKNOWN, (int64_t)src);
        break;
    case 0x10: ks_set(p, reg, KS_R_EXPR, ks_block(r)); break;
    case 0x11: ks_set(p, reg, KS_R_OFFSET, ks_factor((uint64_t)ks_rd_sleb(r), da)); break;
    case 0x14: ks_set(p, reg, KS_R_VAL_OFFSET, ks_factor(ks_rd_uleb(r), da)); break;
    case 0x15: ks_set(p, reg, KS_R_VAL_OFFSET, ks_factor((uint64_t)ks_rd_sleb(r), da)); break;
    case 0x16: ks_set(p, reg, KS_R_VAL_EXPR, ks_block(r)); break;
    case 0x2f: ks_set(p, reg, KS_R_OFFSET, ks_factor(0 - ks_rd_uleb(r), da)); break;
    }
    return 1;
}

/* One instruction. Returns 1 to go on, 0 when the row for TARGET is done,
 * -1 on what it refuses. */
static KS_CFI_SAFE int ks_insn(struct ks_prog *p)
{
    struct ks_rd *r = &p->r;
    uint8_t op = ks_rd_u8(r);
    uint64_t delta = 0;
    int64_t da = p->cie->data_align;
    if (ks_insn_rule(p, op))
        return 1;
    switch (op & 0xc0 ? 0x40 : op) {
    case 0x40: delta = op & 0x3f; break;                            /* advance_loc */
    case 0x00: return 1;                                            /* nop */
    case 0x01: p->loc = ks_rd_enc(r, p->cie->fde_enc, 0); return p->loc <= p->target;
    case 0x02: delta = ks_rd_u8(r); break;
    case 0x03: delta = ks_rd_u16(r); break;
    case 0x04: delta = ks_rd_u32(r); break;
    case 0x0a:                                                      /* remember_state */
        if (p->depth == KS_CFI_STATES)
            return -1;
        p->saved[p->depth++] = p->row;
        return 1;
    case 0x0b:                                                      /* restore_state */
        /* The CFA rule comes back too: gcc's epilogues rely on it, as
         * libgcc's and libunwind's readers do. */
        if (p->depth == 0)
            return -1;
        p->row = p->saved[--p->depth];
        return 1;
    case 0x0c: p->row.cfa = (struct ks_rule){(int64_t)ks_rd_uleb(r), KS_R_REG};
               p->row.cfa_off = (int64_t)ks_rd_uleb(r); return 1;
    case 0x0d: p->row.cfa = (struct ks_rule){(int64_t)ks_rd_uleb(r), KS_R_REG}; return 1;
    case 0x0e: p->row.cfa_off = (int64_t)ks_rd_uleb(r); return 1;
    case 0x0f: p->row.cfa = (struct ks_rule){ks_block(r), KS_R_EXPR}; return 1;
    case 0x12: p->row.cfa = (struct ks_rule){(int64_t)ks_rd_uleb(r), KS_R_REG};
               p->row.cfa_off = ks_factor((uint64_t)ks_rd_sleb(r), da); return 1;
    case 0x13: p->row.cfa_off = ks_factor((uint64_t)ks_rd_sleb(r), da); return 1;
    case 0x2e: ks_rd_uleb(r); return 1;                             /* GNU_args_size */
    default: return -1;
    }
    if (p->cie->code_align && delta > (p->target - p->loc) / p->cie->code_align)
        return 0;   /* the next row starts past TARGET */
    p->loc += delta * p->cie->code_align;
    return 1;
}

static KS_CFI_SAFE int ks_run(struct ks_prog *p, uintptr_t from, uintptr_t to)
{
    p->r.p = from;
    p->r.hi = to;
    while (p->r.p < to) {
        int rc = ks_insn(p);
        if (p->r.bad || rc < 0)
            return -1;
        if (rc == 0)
            break;
    }
    return 0;
}

int ks_cfi_row(const struct ks_cfi_env *env, uintptr_t pc, struct ks_row *row,
               struct ks_cfi_fde *out)
{
    struct ks_cfi_module m;
    struct ks_fde f;
    if (env->find(pc, &m) != 0)
        return ENOENT;
    int rc = ks_fde_find(&m, pc, &f);
    if (rc)
        return rc;
    out->start = f.start;
    out->signal = f.cie.signal;
    out->lo = m.hdr_lo;
    out->hi = m.hdr_hi;
    if (!row)
        return 0;
    struct ks_prog p;   /* saved[] is written before it is read (depth) */
    memset(&p.row, 0, sizeof p.row);
    memset(&p.init, 0, sizeof p.init);
    p.depth = 0;
    p.loc = 0;
    p.r = (struct ks_rd){0, m.hdr_lo, m.hdr_hi, 0};
    p.cie = &f.cie;
    p.target = UINTPTR_MAX;   /* a CIE's initial instructions hold no advance */
    if (ks_run(&p, f.cie.insn, f.cie.end) != 0)
        return EINVAL;
    p.init = p.row;
    p.depth = 0;
    p.loc = f.start;
    p.target = pc;
    if (ks_run(&p, f.insn, f.end) != 0)
        return EINVAL;
    *row = p.row;
    return 0;
}
