/* Async-signal-safe string building for messages written in signal context
 * (snprintf is not async-signal-safe). Truncates silently; always NUL-ends. */
#ifndef KS_ASFMT_H
#define KS_ASFMT_H

#include <stddef.h>
#include <stdint.h>

struct ks_sb {
    char *buf;
    size_t cap, len;
};

static inline void ks_sb_init(struct ks_sb *b, char *buf, size_t cap)
{
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    if (cap)
        buf[0] = 0;
}

static inline void ks_sb_ch(struct ks_sb *b, char c)
{
    if (b->len + 1 < b->cap) {
        b->buf[b->len++] = c;
        b->buf[b->len] = 0;
    }
}

static inline void ks_sb_str(struct ks_sb *b, const char *s)
{
    while (s && *s)
        ks_sb_ch(b, *s++);
}

static inline void ks_sb_hex(struct ks_sb *b, uint64_t v)
{
    char tmp[17];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    ks_sb_str(b, "0x");
    while (n)
        ks_sb_ch(b, tmp[--n]);
}

static inline void ks_sb_dec(struct ks_sb *b, int64_t v)
{
    char tmp[21];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        ks_sb_ch(b, '-');
    while (n)
        ks_sb_ch(b, tmp[--n]);
}

#endif
