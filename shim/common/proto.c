/* Line parser and writer of the control protocol (see proto.h). Used on both
 * sides, so it trusts nothing: every byte of a line comes from a peer. */
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ks_is_word_start(int c) { return c >= 'a' && c <= 'z'; }
static int ks_is_word(int c)
{
    return ks_is_word_start(c) || (c >= '0' && c <= '9') || c == '_' || c == '-';
}
static int ks_is_bare(int c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}
static int ks_hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies a value starting at line[*i] into buf[*o], unescaping. */
static int ks_parse_value(const char *line, size_t len, size_t *i, char *buf, size_t *o,
                          const char **err)
{
    size_t p = *i, w = *o;
    if (p < len && line[p] == '"') {
        p++;
        for (;;) {
            if (p >= len) { *err = "unterminated quoted value"; return -1; }
            unsigned char c = (unsigned char)line[p++];
            if (c == '"') break;
            if (c < 0x20 || c == 0x7f) { *err = "control character in value"; return -1; }
            if (c == '\\') {
                if (p >= len) { *err = "unterminated escape"; return -1; }
                unsigned char e = (unsigned char)line[p++];
                switch (e) {
                case '"': case '\\': c = e; break;
                case 'n': c = '\n'; break;
                case 't': c = '\t'; break;
                case 'r': c = '\r'; break;
                case 'x': {
                    int h = p + 1 < len ? ks_hex(line[p]) : -1;
                    int l = p + 1 < len ? ks_hex(line[p + 1]) : -1;
                    if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                        *err = "bad \\x escape"; return -1;
                    }
                    c = (unsigned char)(h * 16 + l);
                    p += 2;
                    break;
                }
                default: *err = "unknown escape"; return -1;
                }
            }
            buf[w++] = (char)c;
        }
        if (p < len && line[p] != ' ') { *err = "junk after quoted value"; return -1; }
    } else {
        while (p < len && line[p] != ' ') {
            if (!ks_is_bare((unsigned char)line[p])) {
                *err = "bad character in value (quote it)"; return -1;
            }
            buf[w++] = line[p++];
        }
    }
    buf[w++] = '\0';
    *i = p;
    *o = w;
    return 0;
}

int ks_proto_parse(const char *line, size_t len, struct ks_msg *m, const char **err)
{
    const char *dummy;
    if (!err) err = &dummy;
    m->verb = NULL;
    m->nfields = 0;
    if (len > KS_PROTO_MAX_LINE) { *err = "line too long"; return -1; }
    if (len && line[len - 1] == '\r') len--;   /* tolerate CRLF from telnet-like peers */
    size_t i = 0, o = 0;
    while (i < len && line[i] == ' ') i++;
    if (i >= len) { *err = "empty request"; return -1; }
    if (!ks_is_word_start((unsigned char)line[i])) { *err = "a line starts with a lowercase verb"; return -1; }
    m->verb = m->buf;
    while (i < len && ks_is_word((unsigned char)line[i])) m->buf[o++] = line[i++];
    m->buf[o++] = '\0';
    if (i < len && line[i] != ' ') { *err = "bad character in verb"; return -1; }
    for (;;) {
        while (i < len && line[i] == ' ') i++;
        if (i >= len) break;
        if (m->nfields == KS_PROTO_MAX_FIELDS) { *err = "too many fields"; return -1; }
        if (!ks_is_word_start((unsigned char)line[i])) { *err = "a field is key=value with a lowercase key"; return -1; }
        struct ks_field *f = &m->f[m->nfields];
        f->key = m->buf + o;
        while (i < len && (ks_is_word((unsigned char)line[i]) && line[i] != '-')) m->buf[o++] = line[i++];
        m->buf[o++] = '\0';
        if (i >= len || line[i] != '=') { *err = "a field is key=value"; return -1; }
        i++;
        f->val = m->buf + o;
        if (ks_parse_value(line, len, &i, m->buf, &o, err) != 0) return -1;
        /* The first byte before strcmp: a reply of 10,000 rows runs this
         * check 600,000 times (a tenth of the injector's time in a listing). */
        for (int k = 0; k < m->nfields; k++)
            if (m->f[k].key[0] == f->key[0] && strcmp(m->f[k].key, f->key) == 0) {
                *err = "duplicate key";
                return -1;
            }
        m->nfields++;
    }
    return 0;
}

const char *ks_msg_get(const struct ks_msg *m, const char *key)
{
    for (int k = 0; k < m->nfields; k++)
        if (strcmp(m->f[k].key, key) == 0)
            return m->f[k].val;
    return NULL;
}

int ks_val_i64(const char *v, int64_t min, int64_t max, int64_t *out)
{
    if (!v) return ENOENT;
    if (!*v) return EINVAL;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (errno || *end || x < min || x > max) return EINVAL;
    *out = x;
    return 0;
}

int ks_val_u64(const char *v, uint64_t *out)
{
    if (!v) return ENOENT;
    if (!*v || *v == '-' || *v == '+' || *v == ' ') return EINVAL;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 0);
    if (errno || *end) return EINVAL;
    *out = x;
    return 0;
}

int ks_msg_get_i64(const struct ks_msg *m, const char *key, int64_t min, int64_t max,
                   int64_t *out)
{
    return ks_val_i64(ks_msg_get(m, key), min, max, out);
}

int ks_msg_get_u64(const struct ks_msg *m, const char *key, uint64_t *out)
{
    return ks_val_u64(ks_msg_get(m, key), out);
}

/* ---- Writer ------------------------------------------------------------ */

void ks_out_init(struct ks_out *o) { memset(o, 0, sizeof *o); }
void ks_out_free(struct ks_out *o) { free(o->buf); ks_out_init(o); }

void ks_out_raw(struct ks_out *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + n + 1) cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) { o->oom = 1; return; }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

void ks_out_word(struct ks_out *o, const char *word) { ks_out_raw(o, word, strlen(word)); }

/* " KEY=VAL", VAL bare: in one piece where it fits (the usual field; a
 * listing writes about ten a thread), else in parts. */
static void ks_out_bare(struct ks_out *o, const char *key, size_t kl, const char *val, size_t vl)
{
    char buf[128];
    if (kl + vl + 2 <= sizeof buf) {
        buf[0] = ' ';
        memcpy(buf + 1, key, kl);
        buf[1 + kl] = '=';
        memcpy(buf + 2 + kl, val, vl);
        ks_out_raw(o, buf, kl + vl + 2);
        return;
    }
    ks_out_raw(o, " ", 1);
    ks_out_raw(o, key, kl);
    ks_out_raw(o, "=", 1);
    ks_out_raw(o, val, vl);
}

void ks_out_str(struct ks_out *o, const char *key, const char *val)
{
    size_t kl = strlen(key), vl = 0;
    int bare = *val != '\0';
    for (const char *p = val; *p && bare; p++, vl++)
        bare = ks_is_bare((unsigned char)*p);
    if (bare) {
        ks_out_bare(o, key, kl, val, vl);
        return;
    }
    ks_out_raw(o, " ", 1);
    ks_out_raw(o, key, kl);
    ks_out_raw(o, "=", 1);
    ks_out_raw(o, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
        char esc[5];
        switch (*p) {
        case '"': ks_out_raw(o, "\\\"", 2); break;
        case '\\': ks_out_raw(o, "\\\\", 2); break;
        case '\n': ks_out_raw(o, "\\n", 2); break;
        case '\t': ks_out_raw(o, "\\t", 2); break;
        case '\r': ks_out_raw(o, "\\r", 2); break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                snprintf(esc, sizeof esc, "\\x%02x", *p);
                ks_out_raw(o, esc, 4);
            } else {
                ks_out_raw(o, (const char *)p, 1);
            }
        }
    }
    ks_out_raw(o, "\"", 1);
}

void ks_out_fmt(struct ks_out *o, const char *key, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ks_out_str(o, key, buf);
}

/* Numbers are always bare: written straight, without vsnprintf (a listing
 * writes several per thread). */
static void ks_out_num(struct ks_out *o, const char *key, uint64_t v, unsigned base, int neg)
{
    char buf[24];
    char *p = buf + sizeof buf;
    do {
        *--p = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (base == 16) {
        *--p = 'x';
        *--p = '0';
    }
    if (neg)
        *--p = '-';
    ks_out_bare(o, key, strlen(key), p, (size_t)(buf + sizeof buf - p));
}

void ks_out_i64(struct ks_out *o, const char *key, int64_t v)
{
    ks_out_num(o, key, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, 10, v < 0);
}
void ks_out_hex(struct ks_out *o, const char *key, uint64_t v) { ks_out_num(o, key, v, 16, 0); }
void ks_out_eol(struct ks_out *o) { ks_out_raw(o, "\n", 1); }

void ks_out_part(struct ks_out *o)
{
    if (!o->sink || o->oom || o->len < KS_OUT_PART)
        return;
    if (o->sink(o->sink_arg, o->buf, o->len) != 0) {
        o->lost = 1;
        o->oom = 1;
        return;
    }
    o->len = 0;
    o->buf[0] = '\0';
}
void ks_out_ok(struct ks_out *o) { ks_out_word(o, "ok"); ks_out_eol(o); }

void ks_out_err(struct ks_out *o, const char *code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ks_out_word(o, "err");
    ks_out_str(o, "code", code);
    ks_out_str(o, "msg", buf);
    ks_out_eol(o);
}
