/* See findfiles.h. */
#include "findfiles.h"

#include <elfutils/libdwelf.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KSI_DEBUG_ROOT "/usr/lib/debug"
#define KSI_BUILD_ID_MAX 64   /* bytes; real ones are 20 */

static struct ksi_tf *ksi_ff_tf;

void ksi_ff_use(struct ksi_tf *t) { ksi_ff_tf = t; }

static const char *ksi_base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A .gnu_debuglink name is a file name: no directory part, nothing that
 * walks out of the directories it is looked for in. */
static int ksi_plain_name(const char *s)
{
    size_t n = strnlen(s, 256);
    if (n == 0 || n == 256 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (const char *p = s; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

int ksi_ff_find_elf(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr base,
                    char **file_name, Elf **elfp)
{
    struct ksi_tf *t = ksi_ff_tf;
    /* The vDSO: the kernel's image, read from the process's memory. */
    if (strncmp(name, "[vdso", 5) == 0)
        return dwfl_linux_proc_find_elf(mod, userdata, name, base, file_name, elfp);
    if (!t || name[0] != '/')
        return -1;
    size_t n = strlen(name);
    if (n > 10 && strcmp(name + n - 10, " (deleted)") == 0) {
        /* elfutils would parse the image from the process's memory: bytes
         * the process chose, and sizes it chose. */
        ksi_tf_skipped(name, "an object the process maps", "deleted since it was mapped");
        return -1;
    }
    int fd = ksi_tf_open(t, name, KSI_IN_TARGET, "an object the process maps", 0);
    if (fd < 0)
        return -1;
    /* The path names what is there now: the target may have cut or
     * rewritten the file since it mapped it. */
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    size_t nph = 0;
    int whole = elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &nph) == 0 && nph > 0;
    elf_end(elf);
    if (!whole || !(*file_name = strdup(name))) {
        if (!whole)
            ksi_tf_skipped(name, "an object the process maps", "not a whole ELF file (changed since "
                           "it was mapped?)");
        close(fd);
        return -1;
    }
    return fd;
}

/* The .gnu_debugaltlink of ELF: its file name (copied into NAME) and
 * build-id (into ID). Returns the build-id's length, 0 if none, -1 if the
 * file names no dwz file. */
static int ksi_altlink(Elf *elf, char *name, size_t cap, unsigned char *id)
{
    size_t shstrndx;
    if (elf_getshdrstrndx(elf, &shstrndx) != 0)
        return -1;
    for (Elf_Scn *scn = elf_nextscn(elf, NULL); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        const char *sn = gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
        if (!sn || strcmp(sn, ".gnu_debugaltlink") != 0)
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        const char *b = d ? d->d_buf : NULL;
        const char *nul = b ? memchr(b, '\0', d->d_size) : NULL;
        if (!nul || (size_t)(nul - b) >= cap)
            return -1;
        memcpy(name, b, (size_t)(nul - b) + 1);
        size_t idlen = d->d_size - (size_t)(nul - b) - 1;
        if (idlen > KSI_BUILD_ID_MAX)
            idlen = 0;
        memcpy(id, nul + 1, idlen);
        return (int)idlen;
    }
    return -1;
}

/* Where a debug or dwz file this file built the path of was looked for: the
 * injector's debug directory is its own, the rest is the target's. */
static enum ksi_view ksi_view_of(const char *path)
{
    return strncmp(path, KSI_DEBUG_ROOT "/", sizeof KSI_DEBUG_ROOT) == 0 ? KSI_IN_OURS
                                                                        : KSI_IN_TARGET;
}

static void ksi_id_path(char *out, size_t cap, const unsigned char *id, int len)
{
    int o = snprintf(out, cap, KSI_DEBUG_ROOT "/.build-id/%02x/", id[0]);
    for (int i = 1; i < len && o > 0 && (size_t)o + 3 < cap; i++)
        o += snprintf(out + o, cap - (size_t)o, "%02x", id[i]);
    if (o > 0 && (size_t)o + 7 < cap)
        snprintf(out + o, cap - (size_t)o, ".debug");
}

/* NAME relative to the directory of FROM (or NAME itself if absolute). */
static void ksi_beside(char *out, size_t cap, const char *from, const char *name)
{
    if (name[0] == '/')
        snprintf(out, cap, "%s", name);
    else
        snprintf(out, cap, "%.*s/%s", (int)(ksi_base(from) - from), from, name);
}

/* Opens the dwz file DEBUG (at PATH) names: by its build-id, then by name. */
static int ksi_open_alt(struct ksi_tf *t, const char *path, const char *altname,
                        const unsigned char *id, int idlen, char *opened, size_t cap)
{
    char what[320];
    snprintf(what, sizeof what, "the dwz file %s names", ksi_base(path));
    int fd = -1;
    if (idlen > 0) {
        ksi_id_path(opened, cap, id, idlen);
        fd = ksi_tf_open(t, opened, KSI_IN_OURS, what, 1);
    }
    if (fd < 0) {
        ksi_beside(opened, cap, path, altname);
        fd = ksi_tf_open(t, opened, ksi_view_of(path), what, 0);
    }
    return fd;
}

/* The dwz file ALTNAME that FROM (a debug file, or an object with its own
 * DWARF) names: found as ksi_debug_usable found it, by the build-id FROM
 * records for it first. */
static int ksi_find_alt(struct ksi_tf *t, const char *from, const char *altname, char **name)
{
    char path[600], rec[512];
    unsigned char id[KSI_BUILD_ID_MAX];
    int idlen = 0;
    int ffd = ksi_tf_open(t, from, ksi_view_of(from), "debug info", 1);
    Elf *elf = ffd >= 0 ? elf_begin(ffd, ELF_C_READ_MMAP, NULL) : NULL;
    if (elf) {
        int n = ksi_altlink(elf, rec, sizeof rec, id);
        if (n > 0 && strcmp(rec, altname) == 0)
            idlen = n;
    }
    elf_end(elf);
    if (ffd >= 0)
        close(ffd);
    int fd = ksi_open_alt(t, from, altname, id, idlen, path, sizeof path);
    if (fd >= 0 && !(*name = strdup(path))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Is FD at PATH a debug file the object can use: its build-id (if the
 * object has one), and a dwz file that opens safely if it names one? */
static int ksi_debug_usable(struct ksi_tf *t, int fd, const char *path, const unsigned char *id,
                            int idlen)
{
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    if (!elf || elf_kind(elf) != ELF_K_ELF) {
        ksi_tf_skipped(path, "debug info", "not an ELF file");
        elf_end(elf);
        return 0;
    }
    const void *have = NULL;
    ssize_t hl = dwelf_elf_gnu_build_id(elf, &have);
    int ok = idlen <= 0 || (hl == idlen && memcmp(have, id, (size_t)idlen) == 0);
    char altname[512], opened[600];
    unsigned char altid[KSI_BUILD_ID_MAX];
    int altlen = ok ? ksi_altlink(elf, altname, sizeof altname, altid) : -1;
    elf_end(elf);
    if (!ok) {
        ksi_tf_skipped(path, "debug info",
                       hl > 0 ? "another build's (its build-id is not the object's)"
                              : "no build-id in it, truncated or damaged");
        return 0;
    }
    if (altlen >= 0) {
        int afd = ksi_open_alt(t, path, altname, altid, altlen, opened, sizeof opened);
        if (afd < 0) {
            ksi_tf_skipped(path, "debug info", "the dwz file it needs could not be opened safely");
            return 0;
        }
        close(afd);
    }
    return 1;
}

static int ksi_try_debug(struct ksi_tf *t, const char *path, const char *what,
                         const unsigned char *id, int idlen, char **name)
{
    int fd = ksi_tf_open(t, path, ksi_view_of(path), what, 1);
    if (fd < 0)
        return -1;
    if (!ksi_debug_usable(t, fd, path, id, idlen) || !(*name = strdup(path))) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Is this call for a dwz file? libdwfl then passes its name as DEBUGLINK,
 * which is not the object's own .gnu_debuglink. */
static int ksi_ff_is_alt(Dwfl_Module *mod, const char *debuglink)
{
    if (!debuglink)
        return 0;
    GElf_Addr bias;
    GElf_Word crc;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    const char *own = elf ? dwelf_elf_gnu_debuglink(elf, &crc) : NULL;
    return !own || strcmp(own, debuglink) != 0;
}

int ksi_ff_find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
                          GElf_Addr base, const char *file_name, const char *debuglink,
                          GElf_Word crc, char **debuginfo_file_name)
{
    (void)userdata, (void)modname, (void)base, (void)crc;
    struct ksi_tf *t = ksi_ff_tf;
    char path[600], what[320];
    if (!t || !file_name)
        return -1;
    if (ksi_ff_is_alt(mod, debuglink))
        return ksi_find_alt(t, file_name, debuglink, debuginfo_file_name);
    snprintf(what, sizeof what, "debug info of %s", ksi_base(file_name));
    const unsigned char *id = NULL;
    GElf_Addr vaddr;
    int idlen = dwfl_module_build_id(mod, &id, &vaddr);
    if (idlen > KSI_BUILD_ID_MAX)
        idlen = 0;
    if (idlen > 0) {
        ksi_id_path(path, sizeof path, id, idlen);
        int fd = ksi_try_debug(t, path, what, id, idlen, debuginfo_file_name);
        if (fd >= 0)
            return fd;
    }
    if (!debuglink)
        return -1;
    if (!ksi_plain_name(debuglink)) {
        ksi_tf_skipped(file_name, what, "its .gnu_debuglink is not a plain file name");
        return -1;
    }
    int dl = (int)(ksi_base(file_name) - file_name);   /* the directory, with its '/' */
    static const char *const fmt[] = {"%.*s%s", "%.*s.debug/%s", KSI_DEBUG_ROOT "%.*s%s"};
    for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
        snprintf(path, sizeof path, fmt[i], dl, file_name, debuglink);
        int fd = ksi_try_debug(t, path, what, id, idlen, debuginfo_file_name);
        if (fd >= 0)
            return fd;
    }
    return -1;
}

int ksi_ff_open_debug(Dwfl_Module *mod, struct ksi_tf *t)
{
    const char *debug = NULL, *main_file = NULL;
    dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &main_file, &debug);
    if (!debug || !main_file || strcmp(debug, main_file) == 0)
        return -1;
    const unsigned char *id = NULL;
    GElf_Addr vaddr;
    int idlen = dwfl_module_build_id(mod, &id, &vaddr);
    if (idlen > KSI_BUILD_ID_MAX)
        idlen = 0;
    char what[320];
    snprintf(what, sizeof what, "debug info of %s", ksi_base(main_file));
    int fd = ksi_tf_open(t, debug, ksi_view_of(debug), what, 1);
    if (fd >= 0 && !ksi_debug_usable(t, fd, debug, id, idlen)) {
        close(fd);
        fd = -1;
    }
    return fd;
}
