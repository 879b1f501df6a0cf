/* See pyframes.h. Nothing here dereferences CPython's memory directly:
 * every byte is copied by ks_mem_copy into the caller's stack first. */
#include "pyframes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/core/registry.h"
#include "shim/unwind/unwind_mem.h"
#include "pyframes_dbg.h"

#define KS_PYF_LINETABLE_MAX 65536   /* bytes of a code object's location table */

static int ks_pyf_word(uintptr_t addr, uintptr_t *v)
{
    return ks_mem_copy(v, (const void *)addr, sizeof *v);
}

/* Before 3.11: each state's tid from the registry, by its pthread_t (the
 * state's thread_id). A state of a thread the registry does not know (or
 * one that ended, its state not yet freed) keeps tid 0: never found. */
static void ks_pyf_tids_by_handle(struct ks_pyf *s)
{
    ks_registry_lock();
    for (int i = 0; i < s->n; i++)
        for (struct ks_thread *t = ks_registry_first(); t; t = t->next)
            if ((uint64_t)t->handle == s->v[i].ident) {
                s->v[i].tid = t->tid;
                break;
            }
    ks_registry_unlock();
}

/* The main interpreter's thread states into S->v, newest first. */
static int ks_pyf_walk(struct ks_pyf *s, uintptr_t ts)
{
    const struct ks_pyl *l = s->l;
    int cap_v = 64;
    s->v = malloc((size_t)cap_v * sizeof *s->v);
    /* Another thread links a state at the head or unlinks one and frees it
     * meanwhile (under the GIL, not ours): a state whose interp is not the
     * interpreter's, or a walk longer than the bound, is torn. */
    for (int k = 0; s->v && ts && k < KS_PYF_THREADS_MAX; k++) {
        uintptr_t interp = 0, next = 0, tid = 0, ident = 0;
        if (ks_pyf_word(ts + (uintptr_t)l->ts_interp, &interp) || interp != s->interp ||
            ks_pyf_word(ts + (uintptr_t)l->ts_next, &next) ||
            (l->ts_native_id >= 0 && ks_pyf_word(ts + (uintptr_t)l->ts_native_id, &tid)) ||
            ks_pyf_word(ts + (uintptr_t)l->ts_ident, &ident)) {
            s->torn = 1;
            break;
        }
        if (s->n == cap_v) {
            void *g = realloc(s->v, (size_t)(cap_v *= 2) * sizeof *s->v);
            if (!g)
                break;
            s->v = g;
        }
        s->v[s->n].tid = (pid_t)tid;
        s->v[s->n].ident = ident;
        s->v[s->n++].ts = ts;
        ts = next;
    }
    if (!s->v)
        return ENOMEM;
    s->torn |= ts != 0 && s->n >= KS_PYF_THREADS_MAX;
    if (l->ts_native_id < 0)
        ks_pyf_tids_by_handle(s);
    return 0;
}

/* 3.13: the runtime's own offsets, at the start of _PyRuntime, must be the
 * row's (pyframes_dbg.h). Read at every snapshot: 600 bytes. */
static int ks_pyf_dbg(const struct ks_pyl *l, const void *runtime, char *why, size_t cap)
{
    struct ks_pydbg313 d;
    if (l->minor != 13)
        return 0;
    int copied = ks_mem_copy(&d, runtime, sizeof d) == 0;
    return ks_pyf_dbg_check(l, copied ? &d : NULL, why, cap);
}

int ks_pyf_open(struct ks_pyf *s, char *why, size_t cap)
{
    memset(s, 0, sizeof *s);
    int rc = ks_py_addrs(&s->a, why, cap);
    if (rc)
        return rc;
    if (!(s->l = ks_pyl_for(s->a.minor))) {
        snprintf(why, cap, "CPython 3.%d: frame layout not verified for this version (only "
                 "3.9, 3.11 and 3.13 are), Python frames are not read", s->a.minor);
        return ENOTSUP;
    }
    const struct ks_pyl *l = s->l;
    uintptr_t rt = (uintptr_t)s->a.runtime, ts = 0;
    if ((rc = ks_pyf_dbg(l, s->a.runtime, why, cap)) != 0)
        return rc;
    int locked = 0;
    if (ks_pyf_word(rt + (uintptr_t)l->rt_interp_main, &s->interp) || !s->interp ||
        ks_pyf_word(s->interp + (uintptr_t)l->is_threads_head, &ts)) {
        snprintf(why, cap, "CPython has no main interpreter (not initialized, or finalized)");
        return ESHUTDOWN;
    }
    /* The GIL first, then the states: the holder then was alive. 3.12+:
     * the interpreter points to its GIL (its own, or the main one's). */
    s->gil = l->rt_gil >= 0 ? rt + (uintptr_t)l->rt_gil : 0;
    if (l->is_gil >= 0 && ks_pyf_word(s->interp + (uintptr_t)l->is_gil, &s->gil))
        s->gil = 0;
    if (s->gil) {
        ks_pyf_word(s->gil + (uintptr_t)l->gil_holder, &s->gil_holder);
        ks_mem_copy(&locked, (const void *)(s->gil + (uintptr_t)l->gil_locked), sizeof(int));
    }
    s->gil_locked = locked != 0;
    if (ks_pyf_walk(s, ts) != 0) {
        snprintf(why, cap, "out of memory");
        return ENOMEM;
    }
    return 0;
}

void ks_pyf_close(struct ks_pyf *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

int ks_pyf_find(const struct ks_pyf *s, pid_t tid)
{
    for (int i = 0; s->v && i < s->n; i++)
        if (s->v[i].tid == tid)
            return i;
    return -1;
}

const char *ks_pyf_gil(const struct ks_pyf *s, int i, int wait_kind, const void *wait_obj)
{
    uintptr_t o = (uintptr_t)wait_obj;
    /* take_gil sets locked, then last_holder; drop_gil keeps last_holder
     * and clears locked: both together name the holder, but for the
     * instant between the two stores. */
    if (s->gil_locked && s->gil_holder == s->v[i].ts)
        return "held";
    if (s->gil && ((wait_kind == KS_WAIT_COND && o == s->gil + (uintptr_t)s->l->gil_cond) ||
                   (wait_kind == KS_WAIT_MUTEX && o == s->gil + (uintptr_t)s->l->gil_mutex)))
        return "waits";
    return "released";
}

/* ---- Strings and lines -------------------------------------------------- */

/* Code point C as UTF-8 at D (room for 4). Returns the bytes written. */
static size_t ks_pyf_utf8(char *d, uint32_t c)
{
    if (c < 0x80) {
        d[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        d[0] = (char)(0xc0 | (c >> 6));
        d[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        d[0] = (char)(0xe0 | (c >> 12));
        d[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        d[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | ((c >> 18) & 7));
    d[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    d[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* The str at ADDR, as UTF-8 into BUF (cut to fit). Returns 0, or EFAULT if
 * it is not a compact str (torn, or a legacy string: never a code
 * object's name or file). */
static int ks_pyf_str(const struct ks_pyf *s, uintptr_t addr, char *buf, size_t cap)
{
    const struct ks_pyl *l = s->l;
    unsigned char h[128];
    uintptr_t type = 0;
    buf[0] = '\0';
    if (!addr || (size_t)l->str_compact_data > sizeof h ||
        ks_mem_copy(h, (const void *)addr, (size_t)l->str_compact_data) ||
        (memcpy(&type, h + 8, sizeof type), type != (uintptr_t)s->a.unicode_type))
        return EFAULT;
    int64_t len;
    uint32_t state;
    memcpy(&len, h + l->str_length, sizeof len);
    memcpy(&state, h + l->str_state, sizeof state);
    unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
    if (!compact || len < 0 || !(kind == 1 || kind == 2 || kind == 4))
        return EFAULT;
    unsigned char data[1024];
    size_t take = (size_t)len < cap - 1 ? (size_t)len : cap - 1;
    if (take * kind > sizeof data)
        take = sizeof data / kind;
    uintptr_t at = addr + (uintptr_t)(ascii ? l->str_ascii_data : l->str_compact_data);
    if (ks_mem_copy(data, (const void *)at, take * kind))
        return EFAULT;
    size_t o = 0;
    for (size_t i = 0; i < take && o + 4 < cap; i++) {
        uint32_t c = 0;
        uint16_t c2;
        if (kind == 1) {
            c = data[i];
        } else if (kind == 2) {
            memcpy(&c2, data + 2 * i, 2);
            c = c2;
        } else {
            memcpy(&c, data + 4 * i, 4);
        }
        o += ks_pyf_utf8(buf + o, c > 0x10ffff ? '?' : c);
    }
    buf[o] = '\0';
    return 0;
}

/* CPython 3.11+'s location table (Objects/locations.md): entries of a first
 * byte (bit 7 set, code in bits 3-6, code units - 1 in bits 0-2) and
 * varints of 6-bit chunks (bit 6: more follow). Bounded by END. */
static unsigned ks_pyf_varint(const unsigned char **p, const unsigned char *end)
{
    unsigned v = 0, shift = 0, b;
    do {
        if (*p >= end || shift > 24)
            return v;
        b = *(*p)++;
        v |= (b & 63u) << shift;
        shift += 6;
    } while (b & 64);
    return v;
}

/* The line of code unit LASTI, as PyCode_Addr2Line computes it. */
static int ks_pyf_line(const unsigned char *t, size_t n, int first, long lasti)
{
    const unsigned char *p = t, *end = t + n;
    int line = first;
    long unit = 0;
    while (p < end) {
        unsigned char b = *p++;
        int code = (b >> 3) & 15, delta = 0;
        if (code == 14 || code == 13) {
            unsigned v = ks_pyf_varint(&p, end);
            delta = (v & 1) ? -(int)(v >> 1) : (int)(v >> 1);
        } else if (code >= 10 && code <= 12) {
            delta = code - 10;
        }
        line += delta;
        unit += (b & 7) + 1;
        if (lasti < unit)
            return code == 15 ? -1 : line;
        while (p < end && !(*p & 128))
            p++;
    }
    return -1;
}

/* CPython 3.9's co_lnotab: pairs of (byte offset increment, signed line
 * increment); the line of byte offset LASTI, as 3.9's PyCode_Addr2Line. */
static int ks_pyf_lnotab_line(const unsigned char *t, size_t n, int first, long lasti)
{
    int line = first;
    long addr = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        addr += t[i];
        if (addr > lasti)
            break;
        line += (signed char)t[i + 1];
    }
    return line;
}

/* The line of code unit (3.11+) or byte offset (co_lnotab) LASTI of a code
 * object whose line table is the bytes object at LT and first line FIRST
 * (FIRST if the table is unreadable). */
static int ks_pyf_code_line(const struct ks_pyf *s, uintptr_t lt, int first, long lasti)
{
    const struct ks_pyl *l = s->l;
    unsigned char h[64];
    uintptr_t type = 0;
    int64_t n = 0;
    if (!lt || (size_t)l->bytes_data > sizeof h ||
        ks_mem_copy(h, (const void *)lt, (size_t)l->bytes_data))
        return first;
    memcpy(&type, h + 8, sizeof type);
    memcpy(&n, h + l->bytes_size, sizeof n);
    if (type != (uintptr_t)s->a.bytes_type || n <= 0 || n > KS_PYF_LINETABLE_MAX)
        return first;
    int line = first;
    unsigned char *t = malloc((size_t)n);
    if (t && !ks_mem_copy(t, (const void *)(lt + (uintptr_t)l->bytes_data), (size_t)n))
        line = l->co_lnotab ? ks_pyf_lnotab_line(t, (size_t)n, first, lasti)
                            : ks_pyf_line(t, (size_t)n, first, lasti);
    free(t);
    return line;
}

/* ---- Frames ------------------------------------------------------------- */

#define KS_PYF_SKIP (-1)   /* a frame without code (3.12+: an entry frame) */

/* Where frame FB (its code object CODE) is: a code unit index (3.11+), or
 * a byte offset into co_code (before 3.11: f_lasti). Negative: the frame
 * is being set up, before its first instruction. */
static long ks_pyf_lasti(const struct ks_pyl *l, const unsigned char *fb, uintptr_t code)
{
    if (l->fr_lasti >= 0) {
        int lasti;
        memcpy(&lasti, fb + l->fr_lasti, sizeof lasti);
        return lasti;
    }
    /* prev_instr (3.11) / instr_ptr (3.13) point at the instruction being
     * run (3.11: or before the first); code units are 2 bytes. */
    uintptr_t instr;
    memcpy(&instr, fb + l->fr_instr, sizeof instr);
    return ((long)instr - (long)(code + (uintptr_t)l->co_code)) / 2;
}

/* The frame at FR into F; *PREV the one it was called from. Returns 0,
 * KS_PYF_SKIP (*PREV set), or EFAULT (torn: not a frame of a live code
 * object). */
static int ks_pyf_frame(const struct ks_pyf *s, uintptr_t fr, struct ks_pyf_frame *f,
                        uintptr_t *prev)
{
    const struct ks_pyl *l = s->l;
    unsigned char fb[128], cb[256];
    uintptr_t code, type, file, name, lt;
    if ((size_t)l->fr_size > sizeof fb || (size_t)l->co_size > sizeof cb ||
        ks_mem_copy(fb, (const void *)fr, (size_t)l->fr_size))
        return EFAULT;
    memcpy(&code, fb + l->fr_code, sizeof code);
    memcpy(prev, fb + l->fr_previous, sizeof *prev);
    if (l->fr_owner >= 0 && (signed char)fb[l->fr_owner] == l->fr_owner_cstack)
        return KS_PYF_SKIP;
    if (!code || ks_mem_copy(cb, (const void *)code, (size_t)l->co_size))
        return EFAULT;
    memcpy(&type, cb + 8, sizeof type);
    if (type != (uintptr_t)s->a.code_type)
        return EFAULT;
    int first;
    memcpy(&first, cb + l->co_firstlineno, sizeof first);
    memcpy(&file, cb + l->co_filename, sizeof file);
    memcpy(&name, cb + l->co_name, sizeof name);
    memcpy(&lt, cb + l->co_linetable, sizeof lt);
    if (ks_pyf_str(s, file, f->file, sizeof f->file) ||
        ks_pyf_str(s, name, f->func, sizeof f->func))
        return EFAULT;
    long lasti = ks_pyf_lasti(l, fb, code);
    f->line = lasti >= 0 ? ks_pyf_code_line(s, lt, first, lasti) : first;
    return 0;
}

static uintptr_t ks_pyf_top(const struct ks_pyf *s, uintptr_t ts)
{
    uintptr_t at = ts, fr = 0;
    if (s->l->ts_cframe >= 0 && ks_pyf_word(ts + (uintptr_t)s->l->ts_cframe, &at))
        return 0;
    if (!at || ks_pyf_word(at + (uintptr_t)s->l->ts_frame, &fr))
        return 0;
    return fr;
}

int ks_pyf_frames(const struct ks_pyf *s, int i, struct ks_pyf_frame *f, int cap, int *torn,
                  int *moved)
{
    uintptr_t top = ks_pyf_top(s, s->v[i].ts), fr = top;
    int n = 0;
    *torn = *moved = 0;
    /* A cycle (a torn previous pointer) ends at the bound. An entry frame
     * (3.12+) sits under each Python frame a C function called at most. */
    for (int steps = 0; fr && n < cap && steps < 2 * cap; steps++) {
        uintptr_t prev = 0;
        int rc = ks_pyf_frame(s, fr, &f[n], &prev);
        if (rc != 0 && rc != KS_PYF_SKIP) {
            *torn = 1;
            break;
        }
        n += rc == 0;
        fr = prev;
    }
    *moved = ks_pyf_top(s, s->v[i].ts) != top;
    return n;
}
