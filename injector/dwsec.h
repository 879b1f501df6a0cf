/* The .debug_* sections of one ELF file, read lazily: a compressed section
 * (SHF_COMPRESSED, zlib) is inflated at its first read, and only the
 * sections a lookup reads are (dwline.h says why that matters).
 * Little-endian ELF64 only. */
#ifndef KSI_DWSEC_H
#define KSI_DWSEC_H

#include <gelf.h>
#include <stddef.h>
#include <stdint.h>

/* DATA is SIZE bytes, HAVE of them valid (all, or none until the section
 * is inflated into BUF). An uncompressed section is its file data. */
struct ksi_sec {
    const uint8_t *data;
    size_t size, have;
    uint8_t *buf;         /* ours (compressed sections) */
    const uint8_t *zin;   /* the compressed bytes, until inflated */
    size_t zlen;
};

/* Finds section NAME of ELF. Returns 0, or -1 (absent, or a compression
 * other than zlib); nothing to close then. */
int ksi_sec_open(Elf *elf, const char *name, struct ksi_sec *s);
void ksi_sec_close(struct ksi_sec *s);
/* The NUL-terminated string at OFF, or NULL. */
const char *ksi_sec_str(struct ksi_sec *s, uint64_t off);

/* A reader over [pos, end) of a section; BAD sticks at the first overrun
 * (reads then return 0). */
struct ksi_rd {
    struct ksi_sec *s;
    size_t pos, end;
    int bad;
};

const uint8_t *ksi_take(struct ksi_rd *r, size_t n);
uint64_t ksi_uint(struct ksi_rd *r, size_t n);   /* little-endian, N <= 8 */
uint64_t ksi_uleb(struct ksi_rd *r);
int64_t ksi_sleb(struct ksi_rd *r);
/* A unit's initial length at R->pos: sets R->end to the unit's end and
 * returns the offset size (4 or 8), or 0. */
int ksi_unit(struct ksi_rd *r);

#endif
