/* See dwarf_rd.h. Formats: DWARF 4 section 7.6 (LEB128) and the LSB's
 * DW_EH_PE encodings (Linux Standard Base Core, "DWARF Exception Header
 * Encoding"). x86-64 only: fixed-size values are read in the host's order,
 * which is DWARF's little-endian one there. */
#include "dwarf_rd.h"

#include <stddef.h>

/* N bytes into DST. One that would cross HI yields the bytes before it,
 * zero-extended, and sets bad: the LSDA parser's verdict on a table cut
 * short inside a pointer has always depended on them (a value with an
 * encoding it does not know is "unsupported" only if not 0). Inlined into
 * each fixed-size read so that every copy has a constant size: no call to
 * memcpy (an ASan or TSan interceptor) from a signal handler. */
static inline __attribute__((always_inline)) KS_CFI_SAFE void ks_rd_take(struct ks_rd *r,
                                                                        void *dst, size_t n)
{
    if (!r->bad && r->p >= r->lo && r->p <= r->hi && n <= r->hi - r->p) {
        __builtin_memcpy(dst, (const void *)r->p, n);
        r->p += n;
        return;
    }
    size_t have = !r->bad && r->p >= r->lo && r->p <= r->hi ? r->hi - r->p : 0;
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = i < have ? ((const uint8_t *)r->p)[i] : 0;
    r->bad = 1;
}

#define KS_RD_FIXED(name, type)                                                                    \
    KS_CFI_SAFE type name(struct ks_rd *r)                                                         \
    {                                                                                              \
        type v;                                                                                    \
        ks_rd_take(r, &v, sizeof v);                                                               \
        return v;                                                                                  \
    }
KS_RD_FIXED(ks_rd_u8, uint8_t)
KS_RD_FIXED(ks_rd_u16, uint16_t)
KS_RD_FIXED(ks_rd_u32, uint32_t)
KS_RD_FIXED(ks_rd_u64, uint64_t)

/* The LEB128 at R: its low 64 bits into *V and the shift past its last
 * byte. Returns that last byte (its 0x40 is an sleb's sign), 0 if bad. */
static KS_CFI_SAFE uint8_t ks_rd_leb(struct ks_rd *r, uint64_t *v, unsigned *shift)
{
    *v = 0;
    for (*shift = 0; *shift < 70; *shift += 7) {
        uint8_t b = ks_rd_u8(r);
        if (r->bad)
            break;
        *v |= (uint64_t)(b & 0x7f) << *shift;   /* the 10th byte: its lowest bit */
        if (!(b & 0x80)) {
            *shift += 7;
            return b;
        }
    }
    r->bad = 1;   /* cut short, or longer than any 64-bit value needs */
    *v = 0;
    return 0;
}

KS_CFI_SAFE uint64_t ks_rd_uleb(struct ks_rd *r)
{
    uint64_t v;
    unsigned shift;
    ks_rd_leb(r, &v, &shift);
    return v;
}

KS_CFI_SAFE int64_t ks_rd_sleb(struct ks_rd *r)
{
    uint64_t v;
    unsigned shift;
    uint8_t last = ks_rd_leb(r, &v, &shift);
    if (shift < 64 && (last & 0x40))
        v |= ~(uint64_t)0 << shift;
    return (int64_t)v;
}

KS_CFI_SAFE int ks_rd_enc_value(struct ks_rd *r, uint8_t enc, uint64_t *v)
{
    switch (enc & 0x0f) {
    case 0x00: *v = ks_rd_u64(r); return 0;                                 /* absptr */
    case 0x01: *v = ks_rd_uleb(r); return 0;
    case 0x02: *v = ks_rd_u16(r); return 0;
    case 0x03: *v = ks_rd_u32(r); return 0;
    case 0x04: *v = ks_rd_u64(r); return 0;
    case 0x09: *v = (uint64_t)ks_rd_sleb(r); return 0;
    case 0x0a: *v = (uint64_t)(int64_t)(int16_t)ks_rd_u16(r); return 0;
    case 0x0b: *v = (uint64_t)(int64_t)(int32_t)ks_rd_u32(r); return 0;
    case 0x0c: *v = ks_rd_u64(r); return 0;
    default: *v = 0; return -1;
    }
}
