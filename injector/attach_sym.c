/* The target's memory and its libc's functions, for an attach (attach.h).
 *
 * libc's file is read through /proc/PID/map_files (the very file mapped,
 * whatever the target's mount namespace or a rename since), falling back to
 * its path in the target's root where map_files is closed to us (it needs
 * CAP_SYS_ADMIN), with safefile.h's rules. Symbols come from its dynamic
 * symbol table with libelf: the default version of each
 * (pthread_create@@GLIBC_2.34, not the compatibility one), as the loader
 * would bind it. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "attach.h"
#include "injector.h"
#include "safefile.h"

static int ksi_mem_io(pid_t pid, uint64_t addr, void *buf, size_t len, int write_)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
    int fd = open(path, (write_ ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write_ ? pwrite(fd, buf, len, (off_t)addr) : pread(fd, buf, len, (off_t)addr);
    int err = errno;
    close(fd);
    if (n != (ssize_t)len) {
        errno = n < 0 ? err : EIO;
        return -1;
    }
    return 0;
}

int ksi_mem_write(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
    return ksi_mem_io(pid, addr, (void *)buf, len, 1);
}

int ksi_mem_read(pid_t pid, uint64_t addr, void *buf, size_t len)
{
    return ksi_mem_io(pid, addr, buf, len, 0);
}

static int ksi_open_libc(pid_t pid, uint64_t lo, uint64_t hi, const char *file)
{
    char path[4200];
    snprintf(path, sizeof path, "/proc/%d/map_files/%llx-%llx", (int)pid,
             (unsigned long long)lo, (unsigned long long)hi);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    /* A path from the target's maps: safefile.h's rules (regular files,
     * its root, its credentials). */
    struct ksi_tf tf;
    ksi_tf_begin(&tf, pid);
    ksi_tf_enter(&tf);
    fd = ksi_tf_open(&tf, file, KSI_IN_TARGET, "the target's libc (--attach)", 0);
    ksi_tf_leave(&tf);
    ksi_tf_end(&tf);
    return fd;
}

/* The first PT_LOAD's page: the load bias is the mapping's start minus it. */
static int ksi_first_load(Elf *elf, uint64_t *vaddr)
{
    size_t n;
    if (elf_getphdrnum(elf, &n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD) {
            *vaddr = ph.p_vaddr & ~(uint64_t)0xfff;
            return 0;
        }
    }
    return -1;
}

/* Fills the entries of OUT from .dynsym: default versions only (the
 * hidden bit of .gnu.version marks the others). */
static void ksi_scan_dynsym(Elf *elf, uint64_t bias, struct ksi_libc *out)
{
    Elf_Scn *scn = NULL, *dynsym = NULL, *versym = NULL;
    GElf_Shdr sh, symsh = {0};
    while ((scn = elf_nextscn(elf, scn)) != NULL)
        if (gelf_getshdr(scn, &sh)) {
            if (sh.sh_type == SHT_DYNSYM)
                dynsym = scn, symsh = sh;
            else if (sh.sh_type == SHT_GNU_versym)
                versym = scn;
        }
    Elf_Data *d = dynsym ? elf_getdata(dynsym, NULL) : NULL;
    Elf_Data *v = versym ? elf_getdata(versym, NULL) : NULL;
    if (!d || !symsh.sh_entsize)
        return;
    struct { const char *name; uint64_t *slot; } want[] = {
        {"pthread_create", &out->pthread_create}, {"pthread_detach", &out->pthread_detach},
        {"dlopen", &out->dlopen}, {"close", &out->close},
        {"dlsym", &out->dlsym}, {"dlerror", &out->dlerror},
    };
    size_t n = symsh.sh_size / symsh.sh_entsize;
    for (size_t i = 0; i < n; i++) {
        GElf_Sym s;
        GElf_Versym ver = 0;
        if (!gelf_getsym(d, (int)i, &s) || s.st_shndx == SHN_UNDEF || !s.st_value)
            continue;
        if (v && gelf_getversym(v, (int)i, &ver) && (ver & 0x8000))
            continue;
        const char *name = elf_strptr(elf, symsh.sh_link, s.st_name);
        for (size_t w = 0; name && w < sizeof want / sizeof want[0]; w++)
            if (!*want[w].slot && strcmp(name, want[w].name) == 0)
                *want[w].slot = bias + s.st_value;   /* the first definition wins */
    }
}

void ksi_attach_scan_file(int fd, uint64_t bias, struct ksi_libc *out)
{
    elf_version(EV_CURRENT);
    Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
    if (elf)
        ksi_scan_dynsym(elf, bias, out);
    if (elf)
        elf_end(elf);
}

int ksi_attach_libc(pid_t pid, const struct ksi_maps *m, struct ksi_libc *out,
                    struct ksi_attach_err *e)
{
    uint64_t lo = m->libc_lo, hi = m->libc_hi, first;
    const char *file = m->libc_file;
    memset(out, 0, sizeof *out);
    e->code = KSI_EXIT_ERROR;
    /* The loader's order first: an interposer of pthread_create or dlopen
     * (a sanitizer's runtime: a thread created behind its back crashes in
     * it) is what the program itself calls. libc's fills what is left. */
    ksi_attach_link_map(pid, out);
    if (!hi) {
        snprintf(e->msg, sizeof e->msg, "libc.so.6 is not mapped in %d", (int)pid);
        return -1;
    }
    int fd = ksi_open_libc(pid, lo, hi, file);
    if (fd < 0) {
        snprintf(e->msg, sizeof e->msg, "cannot open the target's %.300s: %s", file, strerror(errno));
        return -1;
    }
    elf_version(EV_CURRENT);
    Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
    if (elf && ksi_first_load(elf, &first) == 0)
        ksi_scan_dynsym(elf, lo - first, out);
    if (elf)
        elf_end(elf);
    close(fd);
    if (!out->pthread_create || !out->pthread_detach || !out->dlopen || !out->dlsym ||
        !out->dlerror || !out->close) {
        snprintf(e->msg, sizeof e->msg, "the target's %.300s lacks pthread_create, pthread_detach, "
                 "dlopen, dlsym, dlerror or close (a glibc older than 2.34?)", file);
        return -1;
    }
    return 0;
}
