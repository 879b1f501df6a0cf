/* See proof.h. */
#include "proof.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "access.h"
#include "procfs.h"

#define KS_SECRET_HEX 32

/* Finds generation GEN's page in PID's maps: its address and the read
 * secret in its name. Returns 0 or an errno (ENOENT: no such page). */
static int ks_find_page(pid_t pid, uint64_t gen, uint64_t *addr, char *hex)
{
    char path[64], line[1024], want[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    snprintf(want, sizeof want, "/memfd:killshim-proof-%" PRIu64 "-", gen);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno;
    int rc = ENOENT;
    while (rc == ENOENT && fgets(line, sizeof line, f)) {
        const char *at = strstr(line, want);
        if (!at)
            continue;
        at += strlen(want);
        if (strspn(at, "0123456789abcdef") < KS_SECRET_HEX ||
            sscanf(line, "%" SCNx64 "-", addr) != 1)
            continue;
        memcpy(hex, at, KS_SECRET_HEX);
        hex[KS_SECRET_HEX] = '\0';
        rc = 0;
    }
    /* A read refused by the kernel shows as an error on the first read,
     * not on open (maps checks at open; some kernels at read). */
    if (rc == ENOENT && ferror(f))
        rc = errno ? errno : EIO;
    fclose(f);
    return rc;
}

int ks_proof_make(pid_t pid, uint64_t gen, struct ks_proof *p)
{
    char hex[KS_SECRET_HEX + 1];
    uint64_t addr = 0;
    memset(p, 0, sizeof *p);
    p->gen = gen;
    pid = ks_live_task(pid);   /* a main thread that exited shows no maps */
    p->read_errno = ks_find_page(pid, gen, &addr, hex);
    if (p->read_errno) {
        p->attach_errno = p->read_errno;
        return 0;
    }
    p->level = KS_ACCESS_READ;
    snprintf(p->text, sizeof p->text, "%" PRIu64 "-%s", gen, hex);
    unsigned char sec[KS_SECRET_HEX / 2];
    struct iovec local = {sec, sizeof sec}, remote = {(void *)(uintptr_t)addr, sizeof sec};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n != (ssize_t)sizeof sec) {
        p->attach_errno = n < 0 ? errno : EIO;
        return p->level;
    }
    for (size_t i = 0; i < sizeof sec; i++)
        snprintf(hex + 2 * i, 3, "%02x", sec[i]);
    snprintf(p->text, sizeof p->text, "%" PRIu64 "-%s", gen, hex);
    p->level = KS_ACCESS_ATTACH;
    return p->level;
}
