/* See maps_view.h. */
#include "maps_view.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void ksi_maps_line(struct ksi_maps *m, const char *line)
{
    m->shim |= strstr(line, "/libkillshim.so") != NULL;
    m->musl |= strstr(line, "ld-musl-") != NULL;
    int libc = strstr(line, "/libc.so.6") != NULL;
    m->libc |= libc;
    if (!libc && !strstr(line, "/ld-linux-x86-64.so.2"))
        return;
    unsigned long long lo, hi, off;
    int pos = 0;
    if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %n", &lo, &hi, &off, &pos) < 3 || !pos)
        return;
    if (m->nlib < KSI_MAPS_RANGES)
        m->lib[m->nlib++] = (struct ksi_range){lo, hi};
    const char *name = line + pos, *base = strrchr(name, '/');
    size_t len = strcspn(name, "\n");
    if (off == 0 && !m->libc_hi && base && strncmp(base, "/libc.so.6", 10) == 0 &&
        base + 10 == name + len && len < sizeof m->libc_file) {
        m->libc_lo = lo, m->libc_hi = hi;
        memcpy(m->libc_file, name, len);
        m->libc_file[len] = '\0';
    }
}

int ksi_maps_read(pid_t pid, struct ksi_maps *m)
{
    char path[64], line[4200];
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return m->err = errno;
    while (fgets(line, sizeof line, f))
        ksi_maps_line(m, line);
    fclose(f);
    return 0;
}
