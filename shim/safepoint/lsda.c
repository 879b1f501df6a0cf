/* See lsda.h. Mirrors libstdc++'s eh_personality.cc (GCC 12) for a forced
 * unwind: there the thrown type is abi::__forced_unwind, so a catch clause
 * matches only if it is catch (...) or catch (abi::__forced_unwind&), and an
 * exception specification acts only if it is empty. */
#include "lsda.h"

#include "dwarf_rd.h"

#define DW_EH_PE_omit 0xff
#define DW_EH_PE_indirect 0x80

/* Offsets into the LSDA: the reader's cursor as an offset from its start. */
static size_t ks_pos(const struct ks_rd *r)
{
    return r->p - r->lo;
}

static void ks_seek(struct ks_rd *r, size_t pos)
{
    r->p = r->lo + pos;
}

static size_t ks_len(const struct ks_rd *r)
{
    return r->hi - r->lo;
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

/* Reads a value with encoding ENC. Application bits: 0 (absolute), pcrel
 * (from IN's address of the value), funcrel (base IN's func_start); others
 * set *UNSUP, as does a format it does not know. A zero raw value stays zero
 * (the null pointer of a catch (...) entry). Returns the value before any
 * indirection; *INDIRECT says if the caller must dereference it. */
static uint64_t ks_rd_enc(struct ks_rd *r, const struct ks_lsda_in *in, uint8_t enc, int *indirect,
                          int *unsup)
{
    uint64_t at = in->addr + ks_pos(r);
    uint64_t v;
    if (ks_rd_enc_value(r, enc, &v) != 0) {
        *unsup = 1;
        return 0;
    }
    if (indirect)
        *indirect = (enc & DW_EH_PE_indirect) != 0;
    if (v == 0)
        return 0;
    switch (enc & 0x70) {
    case 0x00: break;
    case 0x10: v += at; break;
    case 0x40: v += in->func_start; break;
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
        h->lpstart = ks_rd_enc(r, in, lp_enc, NULL, unsup);
    h->ttype_enc = ks_rd_u8(r);
    h->ttype_pos = 0;
    if (h->ttype_enc != DW_EH_PE_omit) {
        uint64_t off = ks_rd_uleb(r);
        if (off > r->hi - r->p)
            r->bad = 1;
        else
            h->ttype_pos = ks_pos(r) + (size_t)off;
    }
    h->cs_enc = ks_rd_u8(r);
    uint64_t cs_len = ks_rd_uleb(r);
    if (r->bad || *unsup)
        return -1;
    if (cs_len > r->hi - r->p) {
        r->bad = 1;
        return -1;
    }
    h->cs_pos = ks_pos(r);
    h->cs_end = h->cs_pos + (size_t)cs_len;
    h->actions_pos = h->cs_end;
    return 0;
}

/* Finds IP's call-site entry. Returns 1 and fills *LP, *ACTION if found. */
static int ks_lsda_find(const struct ks_lsda_in *in, struct ks_rd *r, const struct ks_lsda_hdr *h,
                        uint64_t *lp, uint64_t *action, int *unsup)
{
    ks_seek(r, h->cs_pos);
    while (ks_pos(r) < h->cs_end && !r->bad && !*unsup) {
        uint64_t start = ks_rd_enc(r, in, h->cs_enc & 0x0f, NULL, unsup);
        uint64_t len = ks_rd_enc(r, in, h->cs_enc & 0x0f, NULL, unsup);
        uint64_t pad = ks_rd_enc(r, in, h->cs_enc & 0x0f, NULL, unsup);
        uint64_t act = ks_rd_uleb(r);
        if (r->bad || *unsup || ks_pos(r) > h->cs_end)
            break;
        if (in->ip < in->func_start + start)
            return 0;   /* sorted: passed it */
        if (in->ip < in->func_start + start + len) {
            *lp = pad ? h->lpstart + pad : 0;
            *action = act;
            return 1;
        }
    }
    if (ks_pos(r) > h->cs_end)
        r->bad = 1;
    return 0;
}

/* 1 if the exception specification at FILTER (< 0) is empty: throw(). */
static int ks_lsda_empty_spec(struct ks_rd *r, const struct ks_lsda_hdr *h, int64_t filter)
{
    /* libstdc++: e = TType - filter - 1 */
    uint64_t back = (uint64_t)(-(filter + 1));
    if (!h->ttype_pos || back > ks_len(r) - h->ttype_pos) {
        r->bad = 1;
        return 0;
    }
    ks_seek(r, h->ttype_pos + (size_t)back);
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
    ks_seek(r, h->ttype_pos - (size_t)back);
    int indirect = 0;
    uint64_t ptr = ks_rd_enc(r, in, h->ttype_enc, &indirect, unsup);
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
                           const struct ks_lsda_hdr *h, uint64_t action, int *unsup,
                           int64_t *selector)
{
    int saw_cleanup = 0;
    size_t at = h->actions_pos + (size_t)(action - 1);
    if (action - 1 > ks_len(r) - h->actions_pos)
        return KS_LSDA_MALFORMED;
    for (int guard = 0; guard < 256; guard++) {
        ks_seek(r, at);
        int64_t filter = ks_rd_sleb(r);
        size_t disp_pos = ks_pos(r);
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
            if (v) {
                *selector = filter;
                return v;
            }
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
        if (disp > (int64_t)ks_len(r) || disp < -(int64_t)ks_len(r))
            return KS_LSDA_MALFORMED;
        int64_t next = (int64_t)disp_pos + disp;
        if (next < (int64_t)h->actions_pos || (uint64_t)next >= ks_len(r))
            return KS_LSDA_MALFORMED;
        at = (size_t)next;
    }
    return KS_LSDA_MALFORMED;   /* a cycle */
}

int ks_lsda_eval(const struct ks_lsda_in *in, struct ks_lsda_out *out)
{
    uintptr_t lo = (uintptr_t)in->buf;
    struct ks_rd r = {.p = lo, .lo = lo, .hi = lo + in->len, .bad = 0};
    struct ks_lsda_hdr h;
    int unsup = 0;
    out->landing_pad = 0;
    out->nothrow_site = 0;
    out->selector = 0;
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
        out->nothrow_site = !in->c_personality && h.cs_end > h.cs_pos;
        return out->verdict;
    }
    out->landing_pad = lp;
    if (lp == 0)
        out->verdict = KS_LSDA_NOTHING;
    else if (action == 0 || in->c_personality)
        out->verdict = KS_LSDA_CLEANUP;
    else
        out->verdict = ks_lsda_actions(in, &r, &h, action, &unsup, &out->selector);
    return out->verdict;
}

const char *ks_lsda_verdict_name(int v)
{
    static const char *const names[] = {"nothing", "cleanup", "rethrows", "catch-all",
                                        "terminate", "unsupported", "malformed"};
    return v >= 0 && v <= KS_LSDA_MALFORMED ? names[v] : "?";
}
