/* See proof.h. */
#include "proof.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "access.h"
#include "procfs.h"

#define KS_SECRET_HEX 32

char *ks_maps_read(pid_t pid, size_t *len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int e = buf ? 0 : ENOMEM;
    while (!e) {
        if (cap - n < 4096) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                e = ENOMEM;
                break;
            }
            buf = b;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            e = errno;   /* refused (the kernel checks at read), or gone */
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (e) {
        free(buf);
        errno = e;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Finds generation GEN's page in the map MAPS (LEN bytes): its address and
 * the read secret in its name. Returns 0 or ENOENT. One memmem over the
 * whole text: at 10,000 threads the map has 20,000 lines (a stack and a
 * guard page each), and the page is mapped among the libraries, after
 * them; fgets and strstr per line were a third of the injector's time. */
static int ks_find_page(const char *maps, size_t len, uint64_t gen, uint64_t *addr, char *hex)
{
    char want[64];
    int wl = snprintf(want, sizeof want, "/memfd:killshim-proof-%" PRIu64 "-", gen);
    for (const char *at = maps, *end = maps + len;
         (at = memmem(at, (size_t)(end - at), want, (size_t)wl)) != NULL; at += wl) {
        const char *sec = at + wl;
        const char *line = at;
        while (line > maps && line[-1] != '\n')
            line--;
        if ((size_t)(end - sec) < KS_SECRET_HEX ||
            strspn(sec, "0123456789abcdef") < KS_SECRET_HEX ||
            sscanf(line, "%" SCNx64 "-", addr) != 1)
            continue;
        memcpy(hex, sec, KS_SECRET_HEX);
        hex[KS_SECRET_HEX] = '\0';
        return 0;
    }
    return ENOENT;
}

int ks_proof_make(pid_t pid, uint64_t gen, struct ks_proof *p)
{
    return ks_proof_make_maps(pid, gen, p, NULL, NULL);
}

int ks_proof_make_maps(pid_t pid, uint64_t gen, struct ks_proof *p, char **maps,
                       size_t *maps_len)
{
    char hex[KS_SECRET_HEX + 1];
    uint64_t addr = 0;
    size_t len = 0;
    memset(p, 0, sizeof *p);
    p->gen = gen;
    if (maps)
        *maps = NULL;
    pid = ks_live_task(pid);   /* a main thread that exited shows no maps */
    char *text = ks_maps_read(pid, &len);
    p->read_errno = text ? ks_find_page(text, len, gen, &addr, hex) : errno ? errno : EIO;
    if (maps && !p->read_errno) {
        *maps = text;
        *maps_len = len;
    } else {
        free(text);
    }
    if (p->read_errno) {
        p->attach_errno = p->read_errno;
        return 0;
    }
    p->level = KS_ACCESS_READ;
    snprintf(p->text, sizeof p->text, "%" PRIu64 "-%s", gen, hex);
    unsigned char sec[KS_SECRET_HEX / 2];
    struct iovec local = {sec, sizeof sec}, remote = {(void *)(uintptr_t)addr, sizeof sec};
    /* The system call, not glibc's wrapper: that one needs a symbol version
     * of its own in the shim, checked at every load (shim/core/ks.h). */
    ssize_t n = syscall(SYS_process_vm_readv, pid, &local, 1UL, &remote, 1UL, 0UL);
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
