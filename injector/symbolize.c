#include "symbolize.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deadline.h"
#include "dwline.h"
#include "findfiles.h"
#include "safefile.h"
#include "shim/common/proof.h"

/* libstdc++'s demangler: C++ frames read as the user wrote them. Loaded at
 * the first mangled name, not linked: libstdc++ (2 MB, with libm) cost
 * every run of the injector its loading, and most reports name no C++. */
typedef char *ksi_demangle_fn(const char *mangled, char *out, size_t *len, int *status);

static ksi_demangle_fn *ksi_demangler(void)
{
    static ksi_demangle_fn *fn;
    static int tried;
    if (!tried) {
        tried = 1;
        void *h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
        if (h)
            *(void **)&fn = dlsym(h, "__cxa_demangle");
    }
    return fn;
}

/* A module's debug file as dwline.h reads it, opened at its first line
 * lookup and kept (what was inflated serves the next frames). */
struct ksi_dwmod {
    Dwfl_Module *mod;
    int fd;
    Elf *elf;
    struct ksi_dwline *dl;   /* NULL: this module's lines are libdw's */
};

#define KSI_DWMODS 32

struct ksi_sym {
    Dwfl *dwfl;
    struct ksi_tf tf;   /* how the target's files are opened (safefile.h) */
    struct ksi_dwmod dw[KSI_DWMODS];
    int ndw;
};

/* Every file is opened through findfiles.c, never by elfutils' own
 * callbacks (they open whatever path the target names, FIFOs included). */
static const Dwfl_Callbacks ksi_callbacks = {
    .find_elf = ksi_ff_find_elf,
    .find_debuginfo = ksi_ff_find_debuginfo,
};

/* libdw opens files lazily, inside any call: each runs with the target's
 * file credentials (a no-op unless the injector is more privileged). */
static void ksi_enter(struct ksi_sym *s)
{
    ksi_phase("reading the symbols of process %d", (int)s->tf.pid);
    ksi_ff_use(&s->tf);
    ksi_tf_enter(&s->tf);
}

static void ksi_leave(struct ksi_sym *s) { ksi_tf_leave(&s->tf); }

/* Keeps, of the map text BUF (N bytes), only the lines that can name a
 * file (a '/' in them), moved to its start; returns their length. libdwfl
 * skips every other line (anonymous memory, stacks, the heap: a path not
 * starting with '/') but runs sscanf on each first, and a process of
 * 10,000 threads has 20,000 of them (a stack and its guard page each): 15
 * ms of a 90 ms listing. */
static size_t ksi_file_lines(char *buf, size_t n)
{
    size_t kept = 0;
    for (size_t at = 0; at < n;) {
        char *nl = memchr(buf + at, '\n', n - at);
        size_t ll = nl ? (size_t)(nl - (buf + at)) + 1 : n - at;
        if (memchr(buf + at, '/', ll)) {
            memmove(buf + kept, buf + at, ll);
            kept += ll;
        }
        at += ll;
    }
    return kept;
}

/* Reports PID's modules: all of them, or (FILES_ONLY) those of its files
 * alone, from the file lines of the map text MAPS (LEN bytes; read here,
 * as the target, if NULL), without the vdso (which libdwfl finds through
 * the auxiliary vector): a listing's start routines are never in it.
 * Returns 0 or -1. */
static int ksi_report(Dwfl *dwfl, pid_t pid, int files_only, char *maps, size_t len)
{
    if (!files_only)
        return dwfl_linux_proc_report(dwfl, pid);
    char *own = maps ? NULL : ks_maps_read(pid, &len);
    if (!maps && !own)
        return -1;
    char *text = maps ? maps : own;
    len = ksi_file_lines(text, len);
    FILE *f = len ? fmemopen(text, len, "r") : NULL;
    int rc = len && !f ? -1 : f ? dwfl_linux_proc_maps_report(dwfl, f) : 0;
    if (f)
        fclose(f);
    free(own);
    return rc != 0 ? -1 : 0;
}

static struct ksi_sym *ksi_sym_open_how(pid_t pid, int files_only, char *maps, size_t len)
{
    struct ksi_sym *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    ksi_tf_begin(&s->tf, pid);
    ksi_enter(s);
    s->dwfl = dwfl_begin(&ksi_callbacks);
    int rc = !s->dwfl || ksi_report(s->dwfl, pid, files_only, maps, len) != 0 ||
             dwfl_report_end(s->dwfl, NULL, NULL) != 0;
    ksi_leave(s);
    if (rc) {
        ksi_sym_close(s);
        return NULL;
    }
    return s;
}

struct ksi_sym *ksi_sym_open(pid_t pid) { return ksi_sym_open_how(pid, 0, NULL, 0); }

struct ksi_sym *ksi_sym_open_files(pid_t pid, char *maps, size_t len)
{
    return ksi_sym_open_how(pid, 1, maps, len);
}

void ksi_sym_close(struct ksi_sym *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->ndw; i++) {
        ksi_dwline_close(s->dw[i].dl);
        if (s->dw[i].elf)
            elf_end(s->dw[i].elf);
        if (s->dw[i].fd >= 0)
            close(s->dw[i].fd);
    }
    if (s->dwfl)
        dwfl_end(s->dwfl);
    ksi_tf_end(&s->tf);
    free(s);
}

/* Names, files and modules come from the target's files: a control
 * character (an escape sequence for the terminal) prints as '?'. */
static void ksi_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
    ksi_sanitize(dst);
}

/* libstdc++'s demangler works in time and stack that grow with the name;
 * longer names (none real) are shown mangled. */
#define KSI_DEMANGLE_MAX 4096

static char *ksi_demangle(const char *name, int *status)
{
    *status = -1;
    if (name[0] != '_' || name[1] != 'Z' || strnlen(name, KSI_DEMANGLE_MAX + 1) > KSI_DEMANGLE_MAX)
        return NULL;
    ksi_demangle_fn *fn = ksi_demangler();
    return fn ? fn(name, NULL, NULL, status) : NULL;   /* no libstdc++: shown mangled */
}

struct ksi_bss_ctx {
    Dwarf_Addr addr;
    Dwfl_Module *found;
};

/* The module whose loaded segments (PT_LOAD, bss included) hold ctx->addr. */
static int ksi_bss_module(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start,
                          void *arg)
{
    (void)userdata;
    (void)name;
    (void)start;
    struct ksi_bss_ctx *c = arg;
    GElf_Addr bias = 0;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    size_t n = 0;
    if (!elf || elf_getphdrnum(elf, &n) != 0)
        return DWARF_CB_OK;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD &&
            c->addr >= bias + ph.p_vaddr && c->addr < bias + ph.p_vaddr + ph.p_memsz) {
            c->found = mod;
            return DWARF_CB_ABORT;
        }
    }
    return DWARF_CB_OK;
}

static struct ksi_dwline *ksi_dwline_of(struct ksi_sym *s, Dwfl_Module *mod)
{
    for (int i = 0; i < s->ndw; i++)
        if (s->dw[i].mod == mod)
            return s->dw[i].dl;
    if (s->ndw == KSI_DWMODS)
        return NULL;
    struct ksi_dwmod *m = &s->dw[s->ndw++];
    m->mod = mod;
    m->fd = ksi_ff_open_debug(mod, &s->tf);
    m->elf = m->fd >= 0 ? elf_begin(m->fd, ELF_C_READ_MMAP, NULL) : NULL;
    m->dl = m->elf ? ksi_dwline_open(m->elf) : NULL;
    return m->dl;
}

/* file:line of ADDR into OUT: dwline.h first (if OUT->module_offset is the
 * object's own address: FAST), libdw for what it cannot tell (libdw then
 * inflates all of the module's DWARF). */
static void ksi_line_of(struct ksi_sym *s, Dwfl_Module *mod, uint64_t addr, int fast,
                        struct ksi_symbol *out)
{
    char file[sizeof out->file];
    int line = 0;
    struct ksi_dwline *dl = fast ? ksi_dwline_of(s, mod) : NULL;
    int rc = dl ? ksi_dwline_find(dl, out->module_offset, file, sizeof file, &line) : -1;
    if (rc == 0) {
        ksi_copy(out->file, sizeof out->file, file);
        out->line = line;
        return;
    }
    if (rc == 1)
        return;
    Dwfl_Line *l = dwfl_module_getsrc(mod, (Dwarf_Addr)addr);
    const char *name = l ? dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL) : NULL;
    if (name) {
        ksi_copy(out->file, sizeof out->file, name);
        out->line = line;
    }
}

static int ksi_sym_lookup_in(struct ksi_sym *s, uint64_t addr, int want_line,
                             struct ksi_symbol *out)
{
    memset(out, 0, sizeof *out);
    Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, (Dwarf_Addr)addr);
    if (!mod) {
        /* /proc/PID/maps shows a module's bss past its last file page as an
         * anonymous mapping: a lock in .bss is found through the segments. */
        struct ksi_bss_ctx c = {.addr = (Dwarf_Addr)addr, .found = NULL};
        dwfl_getmodules(s->dwfl, ksi_bss_module, &c, 0);
        mod = c.found;
    }
    if (!mod)
        return -1;
    Dwarf_Addr start = 0, bias = 0;
    const char *mname = dwfl_module_info(mod, NULL, &start, NULL, NULL, NULL, NULL, NULL);
    const char *base = mname ? strrchr(mname, '/') : NULL;
    ksi_copy(out->module, sizeof out->module, base ? base + 1 : mname);
    /* A stripped object has no symbol for most addresses: module+offset
     * still names the place, for addr2line -e MODULE OFFSET. */
    int has_elf = dwfl_module_getelf(mod, &bias) != NULL;
    out->module_offset = addr - (has_elf ? bias : start);
    GElf_Off off = 0;
    GElf_Sym sym;
    const char *name = dwfl_module_addrinfo(mod, (GElf_Addr)addr, &off, &sym, NULL, NULL, NULL);
    if (want_line)
        ksi_line_of(s, mod, addr, has_elf, out);
    if (!name)
        return -1;
    int status = -1;
    char *dem = ksi_demangle(name, &status);
    ksi_copy(out->name, sizeof out->name, status == 0 && dem ? dem : name);
    free(dem);
    out->offset = off;
    return 0;
}

int ksi_sym_lookup(struct ksi_sym *s, uint64_t addr, int want_line, struct ksi_symbol *out)
{
    ksi_enter(s);
    int rc = ksi_sym_lookup_in(s, addr, want_line, out);
    ksi_leave(s);
    return rc;
}

struct ksi_find_ctx {
    const char *name;
    struct ksi_symdef *out;
    int found;
};

/* A C++ variable is found by the name the user wrote (app::running), not
 * only by its mangled one. */
static int ksi_demangled_is(const char *mangled, const char *name)
{
    if (!strstr(name, "::"))
        return 0;
    int status = -1;
    char *dem = ksi_demangle(mangled, &status);
    int same = status == 0 && dem && strcmp(dem, name) == 0;
    free(dem);
    return same;
}

static int ksi_find_in_module(Dwfl_Module *mod, void **ud, const char *mname, Dwarf_Addr start,
                              void *arg)
{
    (void)ud;
    struct ksi_find_ctx *f = arg;
    int n = dwfl_module_getsymtab(mod);
    for (int i = 1; i < n; i++) {
        GElf_Sym sym;
        GElf_Addr addr;
        const char *nm = dwfl_module_getsym_info(mod, i, &sym, &addr, NULL, NULL, NULL);
        if (!nm || sym.st_shndx == SHN_UNDEF)
            continue;
        int type = GELF_ST_TYPE(sym.st_info);
        if (type != STT_OBJECT && type != STT_TLS)
            continue;
        if (strcmp(nm, f->name) != 0 && !ksi_demangled_is(nm, f->name))
            continue;
        f->out->is_tls = type == STT_TLS;
        f->out->addr = f->out->is_tls ? sym.st_value : addr;
        f->out->size = sym.st_size;
        f->out->module_base = start;
        const char *path = NULL;
        dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &path, NULL);
        ksi_copy(f->out->module_path, sizeof f->out->module_path, path ? path : mname);
        f->found = 1;
        return DWARF_CB_ABORT;
    }
    return DWARF_CB_OK;
}

int ksi_sym_find(struct ksi_sym *s, const char *name, struct ksi_symdef *out)
{
    struct ksi_find_ctx f = {name, out, 0};
    memset(out, 0, sizeof *out);
    ksi_enter(s);
    dwfl_getmodules(s->dwfl, ksi_find_in_module, &f, 0);
    ksi_leave(s);
    return f.found ? 0 : -1;
}

void ksi_sanitize(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            p[0] = p[1] = '?';   /* U+0080..U+009F, the C1 controls in UTF-8 */
            p++;
        }
    }
}
