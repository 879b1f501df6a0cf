/* See attach.h: pointing already-bound GOT slots at the shim's hooks after a
 * late load.
 *
 * Why it is safe while the program runs: a slot is one aligned 8-byte word
 * that other threads only load (through the PLT or a GLOB_DAT load); a
 * store of the hook's address replaces the real function's atomically, and
 * a call that loaded the old value just runs libc's function once more, as
 * it would have. Slots in RELRO (read-only after relocation) are made
 * writable for the store and read-only again, page by page, as the loader
 * itself does for them. Runs on the attach's thread before the control
 * server starts, then (ks_got_patch_later) on the control thread when
 * objects were loaded since.
 *
 * An object being loaded right now is left alone: it is on the loader's
 * list (what dl_iterate_phdr shows) before its relocations are applied, and
 * a store there, or a RELRO page made read-only under the loader that is
 * still writing it, would be lost or fault. Its RELRO pages become
 * read-only when its relocation is done: an object whose RELRO is still
 * writable in /proc/self/maps is skipped and looked at again later. One
 * without RELRO is patched only in slots that already hold libc's function
 * or the object's own PLT (the loader does not write those again). The
 * walk runs inside dl_iterate_phdr's callback, under the loader's list
 * lock: an object cannot be unmapped (dlclose) while it is visited. */
#include "attach.h"

#include <elf.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "shim/common/procfs.h"

#include "elf_sym.h"
#include "ks.h"
#include "real.h"

struct ks_got_want {
    const char *name;
    void *real;      /* libc's (what the slot holds when bound) */
    void *hook;      /* the shim's exported function of that name */
};

/* The shim's own dependencies (loaded with it, after it, in the list),
 * noted by the walk of ks_got_patch_deps: that walk runs in the shim's
 * constructor, under the loader's lock of the shim's own dlopen, so no
 * object of the program's can be among them. Written once, before any
 * other walk. */
#define KS_GOT_DEPS_MAX 32
static uintptr_t ks_got_deps[KS_GOT_DEPS_MAX];
static int ks_got_ndeps = -1;   /* -1: not noted (too many, or not late) */

struct ks_got_walk {
    uintptr_t self;
    int deps;        /* patch the shim's dependencies, not the program */
    int defs;        /* also lead the definitions to the hooks (defs_patch.c) */
    int past_self;   /* visiting what was loaded after the shim */
    const char *maps;   /* /proc/self/maps, for the RELRO check (NULL: none) */
    int unready;     /* objects skipped because their relocation is not done */
    struct ks_got_want want[KS_FN_COUNT];
    int nwant;
    int changed;
    int ndefs;       /* definitions changed */
    uint64_t defs_ns;   /* time that took */
};

/* The RELRO range of an object, page-rounded as the loader protects it. */
static void ks_relro(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi)
{
    *lo = *hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            *lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)4095;
            *hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(uintptr_t)4095;
        }
    }
}

static void ks_got_store(uintptr_t slot, void *hook, uintptr_t relro_lo, uintptr_t relro_hi)
{
    int ro = slot >= relro_lo && slot < relro_hi;
    void *page = (void *)(slot & ~(uintptr_t)4095);
    if (ro && mprotect(page, 4096, PROT_READ | PROT_WRITE) != 0)
        return;
    __atomic_store_n((void **)slot, hook, __ATOMIC_RELEASE);
    if (ro)
        mprotect(page, 4096, PROT_READ);
}

/* Every GOT slot of a named symbol in an object's relocation tables
 * (DT_RELA and DT_JMPREL, as ks_elf_open found them): FN(ARG, symbol, its name, slot,
 * RELRO range) for each. */
typedef void ks_got_slot_fn(void *arg, const ElfW(Sym) *sym, const char *name, uintptr_t slot,
                            uintptr_t relro_lo, uintptr_t relro_hi);
static void ks_got_slots(const struct dl_phdr_info *info, const struct ks_elf_obj *o,
                         ks_got_slot_fn *fn, void *arg);

/* One slot for ks_got_visit: the shim's hook if the slot binds a function
 * the shim interposes to libc's, or is not bound yet (lazy: it still points
 * into the object's own PLT). */
struct ks_got_visit_arg {
    struct ks_got_walk *w;
    const struct dl_phdr_info *info;
};

static void ks_got_want_slot(void *arg, const ElfW(Sym) *sym, const char *name, uintptr_t slot,
                             uintptr_t rlo, uintptr_t rhi)
{
    (void)sym;
    struct ks_got_visit_arg *v = arg;
    struct ks_got_walk *w = v->w;
    for (int f = 0; f < w->nwant; f++) {
        if (strcmp(name, w->want[f].name) != 0)
            continue;
        void *cur = __atomic_load_n((void **)slot, __ATOMIC_ACQUIRE);
        if (cur == w->want[f].real || ks_elf_info_contains(v->info, (uintptr_t)cur)) {
            ks_got_store(slot, w->want[f].hook, rlo, rhi);
            w->changed++;
        }
        return;
    }
}

/* The program's objects: those loaded before the shim. After it come the
 * shim's own dependencies, loaded with it (libunwind, libgcc_s...): the shim
 * calls them for itself, and their calls stay libc's but for what the shim
 * must see of them (ks_got_patch_deps). Never libc and the loader
 * themselves (their internal calls are not through the GOT). */
static int ks_got_is_dep(uintptr_t base)
{
    for (int i = 0; i < ks_got_ndeps; i++)
        if (ks_got_deps[i] == base)
            return 1;
    return 0;
}

/* The program's objects: those loaded before the shim, and those it loaded
 * after the shim's own dependencies. Those dependencies (libunwind,
 * libgcc_s...) the shim calls for itself: their calls stay libc's but for
 * what the shim must see of them (ks_got_patch_deps). Never libc and the
 * loader themselves (their internal calls are not through the GOT). */
static int ks_got_skip(const struct dl_phdr_info *info, struct ks_got_walk *w)
{
    if (ks_elf_info_contains(info, w->self)) {
        w->past_self = 1;
        return 1;
    }
    if (w->deps) {
        if (w->past_self && ks_got_ndeps >= 0 && ks_got_ndeps < KS_GOT_DEPS_MAX)
            ks_got_deps[ks_got_ndeps++] = info->dlpi_addr;
        else if (w->past_self)
            ks_got_ndeps = -1;   /* too many to tell apart: later objects stay unpatched */
        return !w->past_self;
    }
    if (!w->past_self)
        return 0;
    return ks_got_ndeps < 0 || ks_got_is_dep(info->dlpi_addr);
}

/* 1 if ADDR's page is mapped without write permission in MAPS. */
static int ks_maps_readonly(const char *maps, uintptr_t addr)
{
    for (const char *l = maps; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        unsigned long lo, hi;
        char perms[5];
        if (sscanf(l, "%lx-%lx %4s", &lo, &hi, perms) == 3 && addr >= lo && addr < hi)
            return perms[1] == '-';
    }
    return 0;
}

/* Relocation done (see the top of the file): its RELRO read-only already. */
static int ks_got_ready(const struct dl_phdr_info *info, struct ks_got_walk *w)
{
    uintptr_t lo, hi;
    ks_relro(info, &lo, &hi);
    if (lo == hi || !w->maps)
        return 1;
    if (ks_maps_readonly(w->maps, lo))
        return 1;
    w->unready++;
    return 0;
}

static int ks_got_never(const struct ks_elf_obj *o)
{
    static const char *const never[] = {"libc.so.6", "ld-linux-x86-64.so.2", "linux-vdso.so.1"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strcmp(o->soname, never[i]) == 0)
            return 1;
    return 0;
}

static void ks_got_slots(const struct dl_phdr_info *info, const struct ks_elf_obj *o,
                         ks_got_slot_fn *fn, void *arg)
{
    uintptr_t rlo, rhi;
    ks_relro(info, &rlo, &rhi);
    const ElfW(Rela) *tab[2] = {o->rela, o->jmprel};
    size_t len[2] = {o->nrela, o->njmprel};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < len[t]; i++) {
            unsigned type = ELF64_R_TYPE(tab[t][i].r_info);
            size_t sym = ELF64_R_SYM(tab[t][i].r_info);
            if ((type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) || !sym)
                continue;
            fn(arg, &o->symtab[sym], o->strtab + o->symtab[sym].st_name,
               info->dlpi_addr + tab[t][i].r_offset, rlo, rhi);
        }
}

static int ks_got_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_got_walk *w = arg;
    struct ks_elf_obj o;
    if (ks_got_skip(info, w) ||
        ks_elf_open(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) != 0 ||
        ks_got_never(&o) || !ks_got_ready(info, w))
        return 0;
    struct ks_got_visit_arg v = {w, info};
    ks_got_slots(info, &o, ks_got_want_slot, &v);
    return 0;
}

/* The shim's own object, for its hooks' addresses: a plain reference to
 * pthread_create here would bind, through the global scope, to libc's. */
static int ks_got_find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_elf_obj *self = arg;
    if (!ks_elf_info_contains(info, (uintptr_t)&ks_got_find_self))
        return 0;
    return ks_elf_open(self, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) == 0;
}

/* Patches, as W says, the slots of the functions ONLY names (NULL: every
 * function the shim interposes). */
static int ks_got_patch(struct ks_got_walk *w, const char *only)
{
    struct ks_elf_obj self;
    if (dl_iterate_phdr(ks_got_find_self, &self) == 0)
        return 0;
    w->self = (uintptr_t)&ks_got_patch;
    ks_real_resolve_all();
    for (int f = 0; f < KS_FN_COUNT; f++) {
        const char *name = ks_real_symbol(f);
        if (only && strcmp(name, only) != 0)
            continue;
        void *real = __atomic_load_n(&ks_real_fn[f], __ATOMIC_ACQUIRE);
        const ElfW(Sym) *s = ks_elf_find(&self, name, ks_elf_gnu_hash(name), NULL);
        if (ks_real_where_of(f) != KS_NEXT || !real || !s)
            continue;
        w->want[w->nwant++] = (struct ks_got_want){name, real, ks_elf_addr(&self, s)};
    }
    /* The definitions first: an object another thread is loading right now
     * binds to the hooks if its relocation comes after this. */
    uint64_t t0 = ks_now_ns();
    for (int f = 0; w->defs && f < w->nwant; f++)
        w->ndefs += ks_defs_patch(w->want[f].name, w->want[f].real, w->want[f].hook);
    w->defs_ns = ks_now_ns() - t0;
    dl_iterate_phdr(ks_got_visit, w);
    return w->changed;
}

/* /proc/self/maps whole, malloc'd; NULL if unreadable. */
static char *ks_maps_read(void)
{
    for (size_t cap = 64 << 10; cap <= (8u << 20); cap *= 4) {
        char *buf = malloc(cap);
        if (!buf)
            return NULL;
        ssize_t n = ks_read_small_file("/proc/self/maps", buf, cap);
        if (n >= 0 && (size_t)n + 1 < cap)
            return buf;
        free(buf);
        if (n < 0)
            return NULL;
    }
    return NULL;
}

/* The loader's counts of objects loaded and unloaded: they change with
 * every dlopen and dlclose that maps or unmaps one. */
static int ks_got_counts(struct dl_phdr_info *info, size_t size, void *arg)
{
    unsigned long long *c = arg;
    if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs)
        return 1;
    c[0] = info->dlpi_adds;
    c[1] = info->dlpi_subs;
    return 1;
}

/* The counts the last complete walk saw. */
static unsigned long long ks_got_seen[2];
static int ks_got_busy;

/* One walk over the program's objects; notes the counts if none was
 * skipped. Only one at a time (the control server may serve several
 * clients): a second caller returns at once. */
static int ks_got_walk_program(int defs)
{
    if (__atomic_exchange_n(&ks_got_busy, 1, __ATOMIC_ACQUIRE))
        return 0;
    unsigned long long c[2] = {0, 0};
    dl_iterate_phdr(ks_got_counts, c);
    char *maps = ks_maps_read();
    struct ks_got_walk w = {.deps = 0, .defs = defs, .maps = maps};
    int n = ks_got_patch(&w, NULL);
    if (defs)
        ks_debug("attached: %d definitions lead later loads to the shim's hooks (%llu us)",
                 w.ndefs, (unsigned long long)(w.defs_ns / 1000));
    free(maps);
    /* Skipped one: counts no load gives (adds starts at the program's own
     * objects), so that the next check walks again. */
    __atomic_store_n(&ks_got_seen[0], w.unready ? 0 : c[0], __ATOMIC_RELAXED);
    __atomic_store_n(&ks_got_seen[1], w.unready ? 0 : c[1], __ATOMIC_RELAXED);
    __atomic_store_n(&ks_got_busy, 0, __ATOMIC_RELEASE);
    return n;
}

int ks_got_patch_all(void) { return ks_got_walk_program(1); }

int ks_got_patch_later(void)
{
    if (!__atomic_load_n(&ks_loaded_late, __ATOMIC_ACQUIRE))
        return 0;
    unsigned long long c[2] = {0, 0};
    dl_iterate_phdr(ks_got_counts, c);
    if (c[0] == __atomic_load_n(&ks_got_seen[0], __ATOMIC_RELAXED) &&
        c[1] == __atomic_load_n(&ks_got_seen[1], __ATOMIC_RELAXED))
        return 0;
    int n = ks_got_walk_program(0);
    if (n)
        ks_debug("objects loaded since the attach: %d more GOT slots lead to the shim's hooks", n);
    return n;
}

int ks_got_patch_deps(void)
{
    ks_got_ndeps = 0;
    struct ks_got_walk w = {.deps = 1};
    return ks_got_patch(&w, "pipe2");
}

/* ks_got_rebind's walk: the one object whose load bias is BASE. Its slots
 * are only noted inside dl_iterate_phdr's callback, and TO is asked after
 * the walk: the callback runs under the loader's list lock, and TO may call
 * dlsym, which takes the loader's load lock. A dlopen in another thread
 * takes the two the other way round: a Python starting up (its imports)
 * and the shim's accept thread rebinding libunwind deadlocked, each in a
 * futex on one of the two locks, 2 runs in 9 of the Python tests. */
#define KS_REBIND_MAX 256
struct ks_got_rebind {
    uintptr_t base;
    int n;
    struct {
        const char *name;   /* in the object's string table: it stays loaded */
        uintptr_t slot, relro_lo, relro_hi;
    } s[KS_REBIND_MAX];
};

static void ks_got_rebind_slot(void *arg, const ElfW(Sym) *sym, const char *name, uintptr_t slot,
                               uintptr_t rlo, uintptr_t rhi)
{
    struct ks_got_rebind *rb = arg;
    if (sym->st_shndx != SHN_UNDEF || rb->n == KS_REBIND_MAX)
        return;
    rb->s[rb->n].name = name;
    rb->s[rb->n].slot = slot;
    rb->s[rb->n].relro_lo = rlo;
    rb->s[rb->n].relro_hi = rhi;
    rb->n++;
}

static int ks_got_rebind_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_got_rebind *rb = arg;
    struct ks_elf_obj o;
    if (info->dlpi_addr != rb->base ||
        ks_elf_open(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) != 0)
        return 0;
    ks_got_slots(info, &o, ks_got_rebind_slot, rb);
    return 1;
}

int ks_got_rebind(uintptr_t base, void *(*to)(const char *name, void *arg), void *arg)
{
    struct ks_got_rebind *rb = calloc(1, sizeof *rb);
    if (!rb)
        return 0;
    rb->base = base;
    dl_iterate_phdr(ks_got_rebind_visit, rb);
    int changed = 0;
    for (int i = 0; i < rb->n; i++) {
        void *fn = to(rb->s[i].name, arg);
        if (fn && __atomic_load_n((void **)rb->s[i].slot, __ATOMIC_ACQUIRE) != fn) {
            ks_got_store(rb->s[i].slot, fn, rb->s[i].relro_lo, rb->s[i].relro_hi);
            changed++;
        }
    }
    free(rb);
    return changed;
}
