#include "dwsec.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

int ksi_sec_open(Elf *elf, const char *want, struct ksi_sec *s)
{
    memset(s, 0, sizeof *s);
    size_t shstrndx;
    if (elf_getshdrstrndx(elf, &shstrndx) != 0)
        return -1;
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        const char *name;
        if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(elf, shstrndx, sh.sh_name)) ||
            strcmp(name, want) != 0)
            continue;
        /* elf_rawdata: the bytes as in the file (elf_getdata would inflate). */
        Elf_Data *d = sh.sh_type == SHT_PROGBITS ? elf_rawdata(scn, NULL) : NULL;
        if (!d || !d->d_buf)
            return -1;
        if (!(sh.sh_flags & SHF_COMPRESSED)) {
            s->data = d->d_buf;
            s->size = s->have = d->d_size;
            return 0;
        }
        GElf_Chdr ch;
        if (gelf_getclass(elf) != ELFCLASS64 || d->d_size < sizeof(Elf64_Chdr))
            return -1;
        memcpy(&ch, d->d_buf, sizeof ch);   /* Elf64_Chdr and GElf_Chdr are one type */
        if (ch.ch_type != ELFCOMPRESS_ZLIB || ch.ch_size > (1ull << 30) ||
            !(s->buf = malloc(ch.ch_size ? ch.ch_size : 1)))
            return -1;
        s->data = s->buf;
        s->size = ch.ch_size;
        s->zin = (const uint8_t *)d->d_buf + sizeof ch;
        s->zlen = d->d_size - sizeof ch;
        return 0;
    }
    return -1;
}

void ksi_sec_close(struct ksi_sec *s) { free(s->buf); }

/* Makes bytes [0, END) valid. Returns 0, or -1 past the end or on bad data.
 * A compressed section is inflated whole, at its first use: libdeflate does
 * that in half zlib's time here (libc's .debug_line, 1.3 MB: 4.5 ms against
 * 10 ms), less than zlib takes to stream the 70-85% of it a lookup reaches. */
static int ksi_sec_need(struct ksi_sec *s, size_t end)
{
    if (end <= s->have)
        return 0;
    if (end > s->size || !s->zin)
        return -1;
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    size_t got = 0;
    int rc = d ? (int)libdeflate_zlib_decompress(d, s->zin, s->zlen, s->buf, s->size, &got) : -1;
    libdeflate_free_decompressor(d);
    s->zin = NULL;   /* one try */
    if (rc != LIBDEFLATE_SUCCESS || got != s->size)
        return -1;
    s->have = s->size;
    return 0;
}

const char *ksi_sec_str(struct ksi_sec *s, uint64_t off)
{
    if (off >= s->size || ksi_sec_need(s, s->size) != 0)
        return NULL;
    return memchr(s->data + off, 0, s->size - off) ? (const char *)s->data + off : NULL;
}

const uint8_t *ksi_take(struct ksi_rd *r, size_t n)
{
    if (r->bad || r->pos > r->end || n > r->end - r->pos || ksi_sec_need(r->s, r->pos + n) != 0) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->s->data + r->pos;
    r->pos += n;
    return p;
}

uint64_t ksi_uint(struct ksi_rd *r, size_t n)   /* little-endian, n <= 8 */
{
    const uint8_t *p = ksi_take(r, n);
    uint64_t v = 0;
    for (size_t i = 0; p && i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint64_t ksi_uleb(struct ksi_rd *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        const uint8_t *p = ksi_take(r, 1);
        if (!p)
            return 0;
        if (shift < 64)
            v |= (uint64_t)(*p & 0x7f) << shift;
        if (!(*p & 0x80))
            return v;
    }
}

int64_t ksi_sleb(struct ksi_rd *r)
{
    uint64_t v = 0;
    unsigned shift = 0;
    const uint8_t *p;
    do {
        if (!(p = ksi_take(r, 1)))
            return 0;
        if (shift < 64)
            v |= (uint64_t)(*p & 0x7f) << shift;
        shift += 7;
    } while (*p & 0x80);
    if (shift < 64 && (*p & 0x40))
        v |= ~0ull << shift;
    return (int64_t)v;
}

int ksi_unit(struct ksi_rd *r)
{
    uint64_t len = ksi_uint(r, 4);
    int ofs = 4;
    if (len == 0xffffffffu) {
        len = ksi_uint(r, 8);
        ofs = 8;
    } else if (len >= 0xfffffff0u) {
        return 0;
    }
    if (r->bad || len > r->s->size - r->pos)
        return 0;
    r->end = r->pos + (size_t)len;
    return ofs;
}

