/* See lsda.h. Mirrors libstdc++'s eh_personality.cc (GCC 12) for a forced
 * unwind: there the thrown type is abi::__forced_unwind, so a catch clause
 * matches only if it is catch (...) or catch (abi::__forced_unwind&), and an
 * exception specification acts only if it is empty. */
#include "lsda.h"

#define DW_EH_PE_omit 0xff
#define DW_EH_PE_indirect 0x80

struct ks_rd {
    const uint8_t *buf;
    size_t len, pos;
    uint64_t addr;
    int bad;
};

static uint8_t ks_rd_u8(struct ks_rd *r)
{
    if (r->pos >= r->len) {
        r->bad = 1;
        return 0;
    }
    return r->buf[r->pos++];
}

static uint64_t ks_rd_uleb(struct ks_rd *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        uint8_t b = ks_rd_u8(r);
        if (r->bad || shift > 63) {
            r->bad = 1;
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
}

static int64_t ks_rd_sleb(struct ks_rd *r)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;
    do {
        b = ks_rd_u8(r);
        if (r->bad || shift > 63) {
            r->bad = 1;
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    } while (b & 0x80);
    if (shift < 64 && (b & 0x40))
        v |= ~(uint64_t)0 << shift;
    return (int64_t)v;
}

static uint64_t ks_rd_fixed(struct ks_rd *r, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)ks_rd_u8(r) << (8 * i);
    return v;
}

/* Size of a fixed-size encoding, 0 for leb128, -1 if unknown. */
static int ks_enc_size(uint8_t enc)
{
    switch (enc & 0x0f) {
    case 0x00: return 8;          /* absptr */
    case 0x02: case 0x0a: return 2;
    case 0x03: case 0x0b: return 4;
    case 0x04: case 0x0c: return 8;
    case 0x01: case 0x09: return 0;
    default: return -1;
    }
}

/* Reads a value with encoding ENC. Application bits: 0 (absolute), pcrel,
 * funcrel (base FUNC); others set *UNSUP. A zero raw value stays zero (the
 * null pointer of a catch (...) entry). Returns the value before any
 * indirection; *INDIRECT says if the caller must dereference it. */
static uint64_t ks_rd_enc(struct ks_rd *r, uint8_t enc, uint64_t func, int *indirect, int *unsup)
{
    uint64_t at = r->addr + r->pos;
    uint64_t v;
    switch (enc & 0x0f) {
    case 0x00: v = ks_rd_fixed(r, 8); break;
    case 0x01: v = ks_rd_uleb(r); break;
    case 0x02: v = ks_rd_fixed(r, 2); break;
    case 0x03: v = ks_rd_fixed(r, 4); break;
    case 0x04: v = ks_rd_fixed(r, 8); break;
    case 0x09: v = (uint64_t)ks_rd_sleb(r); break;
    case 0x0a: v = (uint64_t)(int64_t)(int16_t)ks_rd_fixed(r, 2); break;
    case 0x0b: v = (uint64_t)(int64_t)(int32_t)ks_rd_fixed(r, 4); break;
    case 0x0c: v = ks_rd_fixed(r, 8); break;
    default: *unsup = 1; return 0;
    }
    if (indirect)
        *indirect = (enc & DW_EH_PE_indirect) != 0;
    if (v == 0)
        return 0;
    switch (enc & 0x70) {
    case 0x00: break;
    case 0x10: v += at; break;
    case 0x40: v += func; break;
    default: *unsup = 1; return 0;
    }
    return v;
}

struct ks_lsda_hdr {
    uint64_t lpstart;
    uint8_t ttype_enc;
    size_t ttype_pos;       /* offset of the TType base in the buffer; 0: none */
    uint8_t cs_enc;
    size_t cs_pos, cs_end;  /* the call-site table */
    size_t actions_pos;     /* the action table (== cs_end) */
};

static int ks_lsda_header(const struct ks_lsda_in *in, struct ks_rd *r, struct ks_lsda_hdr *h,
                          int *unsup)
{
    uint8_t lp_enc = ks_rd_u8(r);
    h->lpstart = in->func_start;
    if (lp_enc != DW_EH_PE_omit)
        h->lpstart = ks_rd_enc(r, lp_enc, in->func_start, NULL, unsup);
    h->ttype_enc = ks_rd_u8(r);
    h->ttype_pos = 0;
    if (h->ttype_enc != DW_EH_PE_omit) {
        uint64_t off = ks_rd_uleb(r);
        if (off > r->len - r->pos)
            r->bad = 1;
        else
            h->ttype_pos = r->pos + (size_t)off;
    }
    h->cs_enc = ks_rd_u8(r);
    uint64_t cs_len = ks_rd_uleb(r);
    if (r->bad || *unsup)
        return -1;
    if (cs_len > r->len - r->pos) {
        r->bad = 1;
        return -1;
    }
    h->cs_pos = r->pos;
    h->cs_end = r->pos + (size_t)cs_len;
    h->actions_pos = h->cs_end;
    return 0;
}

/* Finds IP's call-site entry. Returns 1 and fills *LP, *ACTION if found. */
static int ks_lsda_find(const struct ks_lsda_in *in, struct ks_rd *r, const struct ks_lsda_hdr *h,
                        uint64_t *lp, uint64_t *action, int *unsup)
{
    r->pos = h->cs_pos;
    while (r->pos < h->cs_end && !r->bad && !*unsup) {
        uint64_t start = ks_rd_enc(r, h->cs_enc & 0x0f, 0, NULL, unsup);
        uint64_t len = ks_rd_enc(r, h->cs_enc & 0x0f, 0, NULL, unsup);
        uint64_t pad = ks_rd_enc(r, h->cs_enc & 0x0f, 0, NULL, unsup);
        uint64_t act = ks_rd_uleb(r);
        if (r->bad || *unsup || r->pos > h->cs_end)
            break;
        if (in->ip < in->func_start + start)
            return 0;   /* sorted: passed it */
        if (in->ip < in->func_start + start + len) {
            *lp = pad ? h->lpstart + pad : 0;
            *action = act;
            return 1;
        }
    }
    if (r->pos > h->cs_end)
        r->bad = 1;
    return 0;
}

/* 1 if the exception specification at FILTER (< 0) is empty: throw(). */
static int ks_lsda_empty_spec(struct ks_rd *r, const struct ks_lsda_hdr *h, int64_t filter)
{
    /* libstdc++: e = TType - filter - 1 */
    uint64_t back = (uint64_t)(-(filter + 1));
    if (!h->ttype_pos || back > r->len - h->ttype_pos) {
        r->bad = 1;
        return 0;
    }
    r->pos = h->ttype_pos + (size_t)back;
    return ks_rd_uleb(r) == 0;
}

/* The catch clause's verdict for FILTER (> 0): catch-all, rethrows, or 0 if
 * abi::__forced_unwind does not match it. */
static int ks_lsda_catch(const struct ks_lsda_in *in, struct ks_rd *r,
                         const struct ks_lsda_hdr *h, int64_t filter, int *unsup)
{
    int sz = ks_enc_size(h->ttype_enc);
    if (!h->ttype_pos || sz <= 0) {
        *unsup = sz <= 0;
        r->bad = !*unsup;
        return 0;
    }
    uint64_t back = (uint64_t)filter * (uint64_t)sz;
    if ((uint64_t)filter > SIZE_MAX / 16 || back > h->ttype_pos) {
        r->bad = 1;
        return 0;
    }
    r->pos = h->ttype_pos - (size_t)back;
    int indirect = 0;
    uint64_t ptr = ks_rd_enc(r, h->ttype_enc, in->func_start, &indirect, unsup);
    if (r->bad || *unsup)
        return 0;
    if (ptr == 0)
        return KS_LSDA_CATCH_ALL;
    if (in->is_forced_unwind && in->is_forced_unwind(ptr, indirect, in->arg))
        return KS_LSDA_RETHROWS;
    return 0;
}

/* Walks the action chain at ACTION (1-based offset into the action table). */
static int ks_lsda_actions(const struct ks_lsda_in *in, struct ks_rd *r,
                           const struct ks_lsda_hdr *h, uint64_t action, int *unsup)
{
    int saw_cleanup = 0;
    size_t at = h->actions_pos + (size_t)(action - 1);
    if (action - 1 > r->len - h->actions_pos)
        return KS_LSDA_MALFORMED;
    for (int guard = 0; guard < 256; guard++) {
        r->pos = at;
        int64_t filter = ks_rd_sleb(r);
        size_t disp_pos = r->pos;
        int64_t disp = ks_rd_sleb(r);
        if (r->bad)
            return KS_LSDA_MALFORMED;
        if (filter == 0) {
            saw_cleanup = 1;
        } else if (filter > 0) {
            int v = ks_lsda_catch(in, r, h, filter, unsup);
            if (*unsup)
                return KS_LSDA_UNSUPPORTED;
            if (r->bad)
                return KS_LSDA_MALFORMED;
            if (v)
                return v;
        } else {
            int empty = ks_lsda_empty_spec(r, h, filter);
            if (r->bad)
                return KS_LSDA_MALFORMED;
            if (empty)
                return KS_LSDA_TERMINATE;   /* std::unexpected, then terminate */
        }
        if (disp == 0)
            return saw_cleanup ? KS_LSDA_CLEANUP : KS_LSDA_NOTHING;
        /* Bounded before the sum: a hostile displacement must not overflow
         * it (found by tests/fuzz/lsda_fuzz.c). */
        if (disp > (int64_t)r->len || disp < -(int64_t)r->len)
            return KS_LSDA_MALFORMED;
        int64_t next = (int64_t)disp_pos + disp;
        if (next < (int64_t)h->actions_pos || (uint64_t)next >= r->len)
            return KS_LSDA_MALFORMED;
        at = (size_t)next;
    }
    return KS_LSDA_MALFORMED;   /* a cycle */
}

int ks_lsda_eval(const struct ks_lsda_in *in, struct ks_lsda_out *out)
{
    struct ks_rd r = {.buf = in->buf, .len = in->len, .pos = 0, .addr = in->addr, .bad = 0};
    struct ks_lsda_hdr h;
    int unsup = 0;
    out->landing_pad = 0;
    out->verdict = KS_LSDA_MALFORMED;
    if (!in->buf || ks_lsda_header(in, &r, &h, &unsup) != 0) {
        out->verdict = unsup ? KS_LSDA_UNSUPPORTED : KS_LSDA_MALFORMED;
        return out->verdict;
    }
    uint64_t lp = 0, action = 0;
    int found = ks_lsda_find(in, &r, &h, &lp, &action, &unsup);
    if (unsup || r.bad) {
        out->verdict = unsup ? KS_LSDA_UNSUPPORTED : KS_LSDA_MALFORMED;
        return out->verdict;
    }
    if (!found) {
        out->verdict = in->c_personality ? KS_LSDA_NOTHING : KS_LSDA_TERMINATE;
        return out->verdict;
    }
    out->landing_pad = lp;
    if (lp == 0)
        out->verdict = KS_LSDA_NOTHING;
    else if (action == 0 || in->c_personality)
        out->verdict = KS_LSDA_CLEANUP;
    else
        out->verdict = ks_lsda_actions(in, &r, &h, action, &unsup);
    return out->verdict;
}

const char *ks_lsda_verdict_name(int v)
{
    static const char *const names[] = {"nothing", "cleanup", "rethrows", "catch-all",
                                        "terminate", "unsupported", "malformed"};
    return v >= 0 && v <= KS_LSDA_MALFORMED ? names[v] : "?";
}
