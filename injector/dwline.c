#include "dwline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dwsec.h"

struct ksi_ranges {
    uint64_t (*r)[2];
    size_t n, cap;
};

static int ksi_ranges_has(const struct ksi_ranges *g, uint64_t a)
{
    for (size_t i = 0; i < g->n; i++)
        if (a >= g->r[i][0] && a - g->r[i][0] < g->r[i][1])
            return 1;
    return 0;
}

/* Room for one more element of SIZE bytes in *V (N used, *CAP allocated). */
static int ksi_room(void **v, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 64;
    void *p = realloc(*v, c * size);
    if (!p)
        return -1;
    *v = p;
    *cap = c;
    return 0;
}

/* One address range of .debug_aranges, and its unit. */
struct ksi_tuple {
    uint64_t a, len, cu;
};

/* Every range of .debug_aranges, in file order, into *V. Returns 0, or -1
 * if malformed. */
static int ksi_aranges_load(struct ksi_sec *s, struct ksi_tuple **v, size_t *n)
{
    size_t cap = 0;
    for (size_t off = 0; off < s->size;) {
        size_t set = off;
        struct ksi_rd r = {s, off, s->size, 0};
        int ofs = ksi_unit(&r);
        if (!ofs)
            return -1;
        off = r.end;
        uint64_t ver = ksi_uint(&r, 2), info = ksi_uint(&r, ofs);
        uint64_t asz = ksi_uint(&r, 1), seg = ksi_uint(&r, 1);
        if (r.bad || ver != 2 || asz != 8 || seg != 0)
            return -1;
        r.pos = set + (((r.pos - set) + 15) & ~(size_t)15);   /* tuples align to 2*asz */
        for (;;) {
            uint64_t a = ksi_uint(&r, 8), len = ksi_uint(&r, 8);
            if (r.bad || (a == 0 && len == 0))
                break;
            if (ksi_room((void **)v, *n, &cap, sizeof **v) != 0)
                return -1;
            (*v)[(*n)++] = (struct ksi_tuple){a, len, info};
        }
    }
    return 0;
}

/* The unit holding ADDR (the first range in file order), and all its
 * ranges into G. Returns 0, 1 if no unit holds ADDR (libdw finds none
 * either), or -1. */
static int ksi_unit_ranges(const struct ksi_tuple *v, size_t n, uint64_t addr,
                           struct ksi_ranges *g)
{
    size_t i = 0;
    while (i < n && !(addr >= v[i].a && addr - v[i].a < v[i].len))
        i++;
    if (i == n)
        return 1;
    for (size_t k = 0; k < n; k++) {
        if (v[k].cu != v[i].cu)
            continue;
        if (ksi_room((void **)&g->r, g->n, &g->cap, sizeof g->r[0]) != 0)
            return -1;
        g->r[g->n][0] = v[k].a;
        g->r[g->n++][1] = v[k].len;
    }
    return 0;
}

/* A line program's header, as far as running it needs. */
struct ksi_lhdr {
    size_t end, prog, tables;   /* the unit's end, its opcodes, its dir/file tables */
    int ofs, ver;
    uint8_t min_inst, max_ops, line_range, opcode_base;
    int8_t line_base;
    uint8_t std_len[256];
};

static int ksi_lhdr_read(struct ksi_sec *s, size_t off, struct ksi_lhdr *h)
{
    struct ksi_rd r = {s, off, s->size, 0};
    memset(h, 0, sizeof *h);
    if (!(h->ofs = ksi_unit(&r)))
        return -1;
    h->end = r.end;
    h->ver = (int)ksi_uint(&r, 2);
    if (h->ver >= 5 && (ksi_uint(&r, 1) != 8 || ksi_uint(&r, 1) != 0))
        return -1;   /* address size 8, no segment selector */
    uint64_t hlen = ksi_uint(&r, (size_t)h->ofs);
    if (r.bad || h->ver < 2 || h->ver > 5 || hlen > h->end - r.pos)
        return -1;
    h->prog = r.pos + (size_t)hlen;
    h->min_inst = (uint8_t)ksi_uint(&r, 1);
    h->max_ops = h->ver >= 4 ? (uint8_t)ksi_uint(&r, 1) : 1;
    ksi_uint(&r, 1);   /* default_is_stmt: no part of the answer */
    h->line_base = (int8_t)ksi_uint(&r, 1);
    h->line_range = (uint8_t)ksi_uint(&r, 1);
    h->opcode_base = (uint8_t)ksi_uint(&r, 1);
    for (int i = 1; i < h->opcode_base; i++)
        h->std_len[i] = (uint8_t)ksi_uint(&r, 1);
    h->tables = r.pos;
    /* VLIW op indexes: libdw's business. */
    return r.bad || h->max_ops != 1 || h->line_range == 0 || h->opcode_base == 0 ? -1 : 0;
}

/* Skips the operands of standard opcode OP (or of an extended op of LEN). */
static void ksi_skip_std(struct ksi_rd *r, const struct ksi_lhdr *h, unsigned op)
{
    if (op == 9) {   /* DW_LNS_fixed_advance_pc: a uhalf, not a LEB */
        ksi_uint(r, 2);
        return;
    }
    for (int i = 0; i < h->std_len[op]; i++)
        ksi_uleb(r);
}

/* The program's first DW_LNE_set_address. Returns 0, or -1 if it has none. */
static int ksi_first_address(struct ksi_sec *s, const struct ksi_lhdr *h, uint64_t *a)
{
    struct ksi_rd r = {s, h->prog, h->end, 0};
    while (!r.bad && r.pos < r.end) {
        unsigned op = (unsigned)ksi_uint(&r, 1);
        if (op == 0) {
            uint64_t len = ksi_uleb(&r);
            size_t at = r.pos;
            if (len == 9 && ksi_uint(&r, 1) == 2) {
                *a = ksi_uint(&r, 8);
                return r.bad ? -1 : 0;
            }
            r.pos = at;
            if (len > r.end - r.pos)
                return -1;
            r.pos += (size_t)len;
        } else if (op < h->opcode_base) {
            ksi_skip_std(&r, h, op);
        }
    }
    return -1;
}

struct ksi_strs {
    struct ksi_sec *line_str, *str;
};

/* The string of FORM at R (for a path), or NULL: an unknown form is one
 * libdw might read otherwise. *SKIPPED is set for a non-string form read. */
static const char *ksi_form(struct ksi_rd *r, const struct ksi_lhdr *h,
                            const struct ksi_strs *st, uint64_t form, uint64_t *num, int *ok)
{
    *ok = 1;
    switch (form) {
    case 0x08: {   /* DW_FORM_string */
        size_t at = r->pos;
        const uint8_t *c;
        while ((c = ksi_take(r, 1)) && *c)
            ;
        return r->bad ? (*ok = 0, NULL) : (const char *)r->s->data + at;
    }
    case 0x1f:     /* DW_FORM_line_strp */
    case 0x0e: {   /* DW_FORM_strp */
        uint64_t off = ksi_uint(r, (size_t)h->ofs);
        struct ksi_sec *s = form == 0x1f ? st->line_str : st->str;
        const char *p = s && !r->bad ? ksi_sec_str(s, off) : NULL;
        *ok = p != NULL;
        return p;
    }
    case 0x0f: *num = ksi_uleb(r); return NULL;        /* DW_FORM_udata */
    case 0x0b: *num = ksi_uint(r, 1); return NULL;     /* data1 */
    case 0x05: *num = ksi_uint(r, 2); return NULL;     /* data2 */
    case 0x06: *num = ksi_uint(r, 4); return NULL;     /* data4 */
    case 0x07: *num = ksi_uint(r, 8); return NULL;     /* data8 */
    case 0x1e: ksi_take(r, 16); return NULL;           /* data16 (MD5) */
    case 0x09: {                                       /* block */
        uint64_t n = ksi_uleb(r);
        if (n > r->end - r->pos)
            r->bad = 1;
        else
            r->pos += (size_t)n;
        return NULL;
    }
    default: *ok = 0; return NULL;
    }
}

/* Entry number WANT of a DWARF 5 directory or file table at R (which is
 * left past the table): its path and directory index. Returns 0, or -1. */
static int ksi_v5_entry(struct ksi_rd *r, const struct ksi_lhdr *h, const struct ksi_strs *st,
                        uint64_t want, const char **path, uint64_t *dir, uint64_t *count)
{
    uint64_t fmt[32][2];
    unsigned nfmt = (unsigned)ksi_uint(r, 1);
    if (nfmt > 32)
        return -1;
    for (unsigned i = 0; i < nfmt; i++) {
        fmt[i][0] = ksi_uleb(r);
        fmt[i][1] = ksi_uleb(r);
    }
    *count = ksi_uleb(r);
    if (nfmt == 0 && *count > 0)
        return -1;   /* else every entry takes a byte: COUNT is bounded by the data */
    *path = NULL;
    *dir = 0;
    for (uint64_t e = 0; e < *count && !r->bad; e++) {
        for (unsigned i = 0; i < nfmt; i++) {
            uint64_t num = 0;
            int ok;
            const char *p = ksi_form(r, h, st, fmt[i][1], &num, &ok);
            if (!ok)
                return -1;
            if (e == want && fmt[i][0] == 1)   /* DW_LNCT_path */
                *path = p;
            if (e == want && fmt[i][0] == 2)   /* DW_LNCT_directory_index */
                *dir = num;
        }
    }
    return r->bad ? -1 : 0;
}

/* FILE's name as libdw gives it: absolute, or its directory + "/" + path.
 * Returns 0, or -1 (DWARF before 5: left to libdw, which knows the unit's
 * own directory). */
static int ksi_file_name(struct ksi_sec *s, const struct ksi_lhdr *h, const struct ksi_strs *st,
                         uint64_t file, char *out, size_t cap)
{
    if (h->ver < 5)
        return -1;
    struct ksi_rd r = {s, h->tables, h->prog, 0};
    const char *dpath, *fpath, *ignored;
    uint64_t ndirs, nfiles, didx, unused;
    if (ksi_v5_entry(&r, h, st, ~0ull, &ignored, &unused, &ndirs) != 0 ||
        ksi_v5_entry(&r, h, st, file, &fpath, &didx, &nfiles) != 0 || file >= nfiles ||
        !fpath || didx >= ndirs)
        return -1;
    if (fpath[0] == '/') {
        snprintf(out, cap, "%s", fpath);
        return 0;
    }
    r.pos = h->tables;
    if (ksi_v5_entry(&r, h, st, didx, &dpath, &unused, &ndirs) != 0)
        return -1;
    if (dpath)
        snprintf(out, cap, "%s/%s", dpath, fpath);
    else
        snprintf(out, cap, "%s", fpath);
    return 0;
}

/* The registers of the row libdw would pick for ADDR: rows sorted by
 * address, at one address end_sequence rows first, then file order; the
 * last row at or below ADDR, unless it ends a sequence. */
struct ksi_row {
    uint64_t addr, file;
    int64_t line;
    int end, set;
};

static void ksi_consider(struct ksi_row *best, const struct ksi_row *row, uint64_t addr)
{
    if (row->addr > addr)
        return;
    if (!best->set || row->addr > best->addr ||
        (row->addr == best->addr && (!row->end || best->end))) {
        *best = *row;
        best->set = 1;
    }
}

static int ksi_run(struct ksi_sec *s, const struct ksi_lhdr *h, uint64_t addr,
                   struct ksi_row *best)
{
    struct ksi_rd r = {s, h->prog, h->end, 0};
    struct ksi_row st = {.file = 1, .line = 1};
    memset(best, 0, sizeof *best);
    while (!r.bad && r.pos < r.end) {
        unsigned op = (unsigned)ksi_uint(&r, 1);
        if (op >= h->opcode_base) {
            unsigned adj = op - h->opcode_base;
            st.addr += (uint64_t)h->min_inst * (adj / h->line_range);
            st.line += h->line_base + (int)(adj % h->line_range);
            ksi_consider(best, &st, addr);
        } else if (op == 0) {
            uint64_t len = ksi_uleb(&r);
            size_t at = r.pos;
            unsigned sub = len ? (unsigned)ksi_uint(&r, 1) : 0;
            if (sub == 1) {   /* DW_LNE_end_sequence */
                st.end = 1;
                ksi_consider(best, &st, addr);
                st = (struct ksi_row){.file = 1, .line = 1};
            } else if (sub == 2 && len == 9) {
                st.addr = ksi_uint(&r, 8);
            } else if (sub == 3) {
                return -1;   /* DW_LNE_define_file: libdw's */
            }
            if (len > r.end - at)
                return -1;
            r.pos = at + (size_t)len;
        } else if (op == 1) {   /* copy */
            ksi_consider(best, &st, addr);
        } else if (op == 2) {   /* advance_pc */
            st.addr += (uint64_t)h->min_inst * ksi_uleb(&r);
        } else if (op == 3) {   /* advance_line */
            st.line += ksi_sleb(&r);
        } else if (op == 4) {   /* set_file */
            st.file = ksi_uleb(&r);
        } else if (op == 8) {   /* const_add_pc */
            st.addr += (uint64_t)h->min_inst * ((255u - h->opcode_base) / h->line_range);
        } else if (op == 9) {   /* fixed_advance_pc */
            st.addr += ksi_uint(&r, 2);
        } else {
            ksi_skip_std(&r, h, op);
        }
    }
    return r.bad ? -1 : 0;
}

/* A line program: where it starts, and its first DW_LNE_set_address. */
struct ksi_prog {
    size_t off;
    uint64_t first;
    int has_first;
};

/* The line programs' headers met so far, in file order; read on only as
 * far as a lookup needs (the first of libc's reaches 70-85% of them). */
struct ksi_progs {
    struct ksi_prog *v;
    size_t n, cap;
    size_t next;   /* the offset of the first header not read yet */
};

/* Reads the next header into the index. Returns 1 (one more), 0 (no
 * more), or -1. */
static int ksi_progs_more(struct ksi_sec *ln, struct ksi_progs *ps)
{
    struct ksi_lhdr h;
    if (ps->next >= ln->size)
        return 0;
    if (ksi_lhdr_read(ln, ps->next, &h) != 0 ||
        ksi_room((void **)&ps->v, ps->n, &ps->cap, sizeof *ps->v) != 0)
        return -1;
    struct ksi_prog *p = &ps->v[ps->n++];
    p->off = ps->next;
    p->has_first = ksi_first_address(ln, &h, &p->first) == 0;
    ps->next = h.end;
    return 1;
}

/* The line program of the unit whose ranges are G (the first whose first
 * address lies in them), run for ADDR. Returns 0 (found), 1 (no row for
 * ADDR), or -1 (not a program this reader runs as libdw would). */
static int ksi_line_lookup(struct ksi_sec *ln, const struct ksi_strs *st, struct ksi_progs *ps,
                           const struct ksi_ranges *g, uint64_t addr, char *file, size_t cap,
                           int *line)
{
    for (size_t i = 0;; i++) {
        int more = i < ps->n ? 1 : ksi_progs_more(ln, ps);
        if (more <= 0)
            return -1;
        const struct ksi_prog *pv = ps->v;
        struct ksi_lhdr h;
        if (!pv[i].has_first || !ksi_ranges_has(g, pv[i].first))
            continue;
        struct ksi_row best;
        if (ksi_lhdr_read(ln, pv[i].off, &h) != 0 || ksi_run(ln, &h, addr, &best) != 0)
            return -1;
        if (!best.set || best.end)
            return 1;   /* the unit's rows say nothing of ADDR */
        if (best.line < 0 || best.line > INT32_MAX ||
            ksi_file_name(ln, &h, st, best.file, file, cap) != 0)
            return -1;
        *line = (int)best.line;
        return 0;
    }
}

/* The sections, and the indexes lookups build and keep for the next (STATE,
 * of the ranges: 0 not read yet, 1 read, -1 unreadable). */
struct ksi_dwline {
    struct ksi_sec ar, ln, lstr, str;
    struct ksi_strs strs;
    struct ksi_tuple *tu;
    size_t ntu;
    struct ksi_progs pg;
    int state;
};

struct ksi_dwline *ksi_dwline_open(Elf *elf)
{
    struct ksi_dwline *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (ksi_sec_open(elf, ".debug_aranges", &d->ar) != 0) {
        free(d);
        return NULL;
    }
    if (ksi_sec_open(elf, ".debug_line", &d->ln) != 0) {
        ksi_sec_close(&d->ar);
        free(d);
        return NULL;
    }
    if (ksi_sec_open(elf, ".debug_line_str", &d->lstr) == 0)
        d->strs.line_str = &d->lstr;
    if (ksi_sec_open(elf, ".debug_str", &d->str) == 0)
        d->strs.str = &d->str;
    return d;
}

void ksi_dwline_close(struct ksi_dwline *d)
{
    if (!d)
        return;
    if (d->strs.str)
        ksi_sec_close(&d->str);
    if (d->strs.line_str)
        ksi_sec_close(&d->lstr);
    ksi_sec_close(&d->ln);
    ksi_sec_close(&d->ar);
    free(d->tu);
    free(d->pg.v);
    free(d);
}

int ksi_dwline_find(struct ksi_dwline *d, uint64_t addr, char *file, size_t cap, int *line)
{
    if (d->state == 0)
        d->state = ksi_aranges_load(&d->ar, &d->tu, &d->ntu) == 0 ? 1 : -1;
    if (d->state < 0)
        return -1;
    struct ksi_ranges g = {0};
    int rc = ksi_unit_ranges(d->tu, d->ntu, addr, &g);
    if (rc == 0)
        rc = ksi_line_lookup(&d->ln, &d->strs, &d->pg, &g, addr, file, cap, line);
    free(g.r);
    return rc;
}
