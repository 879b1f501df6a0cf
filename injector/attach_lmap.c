/* The target's objects in the loader's search order (attach.h): the
 * program's r_debug (its DT_DEBUG entry, which the loader fills) heads the
 * link_map chain: the program, its preloads, then its needed libraries
 * breadth first, then what it dlopened. Everything is read from the
 * target's memory through /proc/PID/mem, and each object's file, a path the
 * target chose, through safefile.h (regular files only, inside the target's
 * root, with its credentials: docs/security.md). */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "attach.h"
#include "safefile.h"

#define KSI_LMAP_MAX 1024

/* The address of the program's r_debug, or 0. */
static uint64_t ksi_r_debug(pid_t pid)
{
    char path[64];
    Elf64_auxv_t av[64];
    snprintf(path, sizeof path, "/proc/%d/auxv", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, av, sizeof av);
    if (fd >= 0)
        close(fd);
    uint64_t phdr = 0, phnum = 0;
    for (ssize_t i = 0; i < n / (ssize_t)sizeof av[0] && av[i].a_type != AT_NULL; i++) {
        if (av[i].a_type == AT_PHDR) phdr = av[i].a_un.a_val;
        if (av[i].a_type == AT_PHNUM) phnum = av[i].a_un.a_val;
    }
    Elf64_Phdr ph[64];
    if (!phdr || !phnum || phnum > 64 || ksi_mem_read(pid, phdr, ph, phnum * sizeof ph[0]) != 0)
        return 0;
    uint64_t bias = 0, dyn = 0;
    for (uint64_t i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_PHDR)
            bias = phdr - ph[i].p_vaddr;
    for (uint64_t i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_DYNAMIC)
            dyn = bias + ph[i].p_vaddr;
    for (int i = 0; dyn && i < 256; i++) {
        Elf64_Dyn d;
        if (ksi_mem_read(pid, dyn + (uint64_t)i * sizeof d, &d, sizeof d) != 0 || d.d_tag == DT_NULL)
            return 0;
        if (d.d_tag == DT_DEBUG)
            return d.d_un.d_ptr;
    }
    return 0;
}

static int ksi_open_object(struct ksi_tf *tf, pid_t pid, int first, const char *name)
{
    char path[64];
    if (first) {   /* the kernel's own link to the program's file */
        snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
        return open(path, O_RDONLY | O_CLOEXEC);
    }
    if (name[0] != '/')
        return -1;   /* the vDSO (no file), or a name we cannot place */
    return ksi_tf_open(tf, name, KSI_IN_TARGET, "a library of the target (--attach)", 1);
}

/* The chain from LM: each object's .dynsym, until everything is found. */
static void ksi_lmap_walk(struct ksi_tf *tf, pid_t pid, uint64_t lm, struct ksi_libc *out)
{
    for (int i = 0; lm && i < KSI_LMAP_MAX; i++) {
        struct link_map m;
        char name[4096] = "";
        if (ksi_mem_read(pid, lm, &m, sizeof m) != 0)
            return;
        uint64_t at = (uint64_t)(uintptr_t)m.l_name;
        /* Most names fit in 256 bytes; one that ends near the end of a
         * mapping is read byte by byte. */
        if (at && ksi_mem_read(pid, at, name, 256) != 0)
            for (size_t k = 0; k < sizeof name - 1; k++)
                if (ksi_mem_read(pid, at + k, &name[k], 1) != 0 || !name[k])
                    break;
        name[sizeof name - 1] = 0;
        int fd = ksi_open_object(tf, pid, i == 0, name);
        if (fd >= 0) {
            ksi_attach_scan_file(fd, m.l_addr, out);
            close(fd);
        }
        if (out->pthread_create && out->pthread_detach && out->dlopen && out->dlsym &&
            out->dlerror && out->close)
            return;
        lm = (uint64_t)(uintptr_t)m.l_next;
    }
}

void ksi_attach_link_map(pid_t pid, struct ksi_libc *out)
{
    uint64_t r = ksi_r_debug(pid), lm = 0;
    if (!r || ksi_mem_read(pid, r + offsetof(struct r_debug, r_map), &lm, sizeof lm) != 0)
        return;
    struct ksi_tf tf;
    ksi_tf_begin(&tf, pid);
    ksi_tf_enter(&tf);
    ksi_lmap_walk(&tf, pid, lm, out);
    ksi_tf_leave(&tf);
    ksi_tf_end(&tf);
}
