/* One read of /proc/PID/maps, parsed into what the attach asks of it
 * (attach.c, attach_check.c, attach_sym.c) and what tells a connect that
 * the shim is there (client.c): one look at the file instead of one per
 * question. */
#ifndef KSI_MAPS_VIEW_H
#define KSI_MAPS_VIEW_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KSI_MAPS_RANGES 16

struct ksi_range { uint64_t lo, hi; };

struct ksi_maps {
    int err;           /* 0, or why the file could not be read (all else 0) */
    int shim;          /* a mapping names /libkillshim.so (a path, or the memfd
                          the attach names after the library) */
    int libc, musl;    /* libc.so.6 mapped; ld-musl-* mapped */
    /* The mappings of libc.so.6 and ld-linux-x86-64.so.2 (their internal
     * locks live there), the first KSI_MAPS_RANGES. */
    struct ksi_range lib[KSI_MAPS_RANGES];
    int nlib;
    /* libc's mapping at file offset 0 and its path; libc_hi 0 if none. */
    uint64_t libc_lo, libc_hi;
    char libc_file[4096];
};

/* Parses one line of the file into M (M zeroed before the first). */
void ksi_maps_line(struct ksi_maps *m, const char *line);
/* Reads and parses /proc/PID/maps. Returns 0, or an errno (M zeroed but
 * for M->err, the same errno). */
int ksi_maps_read(pid_t pid, struct ksi_maps *m);

#ifdef __cplusplus
}
#endif
#endif
