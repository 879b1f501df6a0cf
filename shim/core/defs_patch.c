/* See attach.h: leading the definitions later lookups find to the hooks.
 *
 * Why: an object dlopened after the attach is relocated by looking each of
 * its imports up in the global scope; the first object there that defines
 * pthread_create (libc, or a sanitizer's runtime ahead of it) answers with
 * its dynamic symbol's value plus its load bias. Under a preload the shim
 * is that first object. Loaded late it comes after libc, and the loader's
 * scope lists are its own to change. So the answer is changed instead: the
 * st_value of that definition becomes hook - bias (modulo 2^64, as the
 * loader adds them back). Every later lookup of the name (the relocation of
 * an object being loaded, a lazy binding, dlsym) then gives the hook. A
 * dlopen relocates all the objects it loads before it runs any of their
 * constructors, so a thread a constructor starts goes through the hook too,
 * which patching after the dlopen (got_patch.c) cannot give.
 *
 * Safety:
 * - One aligned 8-byte store per definition (st_value is at offset 8 of a
 *   24-byte, 8-aligned entry): a lookup racing it reads the old value (libc's
 *   function, as before the attach) or the new one, never a mix.
 * - The table lies in a read-only segment of the object: its pages are made
 *   writable for the store (the private file mapping takes a copy of the one
 *   written) and read-only again (ks_defs_pages). In an object linked without separate code pages (gold,
 *   or ld -z noseparate-code: Bazel's own builds) that segment is also
 *   executable, and keeps its execute permission throughout: a thread
 *   running code on the page runs the copy, whose instructions are the
 *   same bytes. Where a policy refuses writable code (SELinux execmod, PaX),
 *   mprotect fails and the definition is left alone; the GOT walk before
 *   each request (got_patch.c) still catches what loads later.
 * - Only a definition whose address is the function the hook calls is
 *   changed: never an indirect function (its value is its resolver), never
 *   an absolute one, never a compatibility version of other behaviour
 *   (pthread_cond_wait@GLIBC_2.2.5 is another function).
 * - The shim is loaded with RTLD_NODELETE (injector/attach_stub.S): the
 *   hooks stay mapped as long as the tables name them.
 * - The walk runs inside dl_iterate_phdr's callback (the loader's list
 *   lock): no dlsym, no allocation there.
 *
 * What it changes for the rest of the program: dlsym(RTLD_DEFAULT or a
 * handle, "pthread_create") gives the hook (as under a preload), and dladdr
 * of an address inside one of these libc functions finds no name for it
 * (the entry no longer covers it). The shim's own lookups that want libc's
 * function (libunwind's rebinding) ask ks_defs_original. */
#include "attach.h"

#include <elf.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>

#include "elf_sym.h"
#include "ks.h"
#include "real.h"

/* What was changed: for ks_defs_original. Written on the attach's thread
 * before the control server starts; the count is published last. */
#define KS_DEFS_MAX (2 * KS_FN_COUNT)
static struct {
    const char *name;
    void *orig, *hook;
} ks_defs[KS_DEFS_MAX];
static int ks_ndefs;

struct ks_defs_walk {
    const char *name;
    uintptr_t real, hook;
    const struct dl_phdr_info *info;
    const struct ks_elf_obj *o;
};

/* The segment of INFO's object that holds ADDR, or NULL. */
static const ElfW(Phdr) *ks_defs_seg(const struct dl_phdr_info *info, uintptr_t addr,
                                     unsigned type)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == type && addr >= lo && addr - lo < ph->p_memsz)
            return ph;
    }
    return NULL;
}

/* The pages whose protection changes for a store at AT in SEG: all of the
 * segment's, changed and put back as one (a page at a time split libc's
 * first mapping in eight: the copied pages could not merge back with the
 * others), but a first or last page another segment reaches into (none in
 * the usual layouts); AT's page alone if that is one of them. */
static void ks_defs_pages(const struct dl_phdr_info *info, const ElfW(Phdr) *seg, uintptr_t at,
                          uintptr_t *lo, uintptr_t *hi)
{
    const uintptr_t pg = 4096;
    *lo = (info->dlpi_addr + seg->p_vaddr) & ~(pg - 1);
    *hi = (info->dlpi_addr + seg->p_vaddr + seg->p_memsz + pg - 1) & ~(pg - 1);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph == seg || ph->p_type != PT_LOAD || ph->p_memsz == 0)
            continue;
        uintptr_t a = (info->dlpi_addr + ph->p_vaddr) & ~(pg - 1);
        uintptr_t b = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + pg - 1) & ~(pg - 1);
        if (a < *lo + pg && b > *lo)
            *lo += pg;
        if (a < *hi && b > *hi - pg)
            *hi -= pg;
    }
    if (at < *lo || at >= *hi) {
        *lo = at & ~(pg - 1);
        *hi = *lo + pg;
    }
}

/* One definition of the name (ks_elf_each): led to the hook if it gives
 * the real function. Returns 1 if changed. */
static int ks_defs_one(const ElfW(Sym) *sym, void *arg)
{
    struct ks_defs_walk *d = arg;
    if (ELF64_ST_TYPE(sym->st_info) == STT_GNU_IFUNC || sym->st_shndx == SHN_ABS ||
        d->o->base + sym->st_value != d->real)
        return 0;
    uintptr_t at = (uintptr_t)&sym->st_value;
    const ElfW(Phdr) *seg = ks_defs_seg(d->info, at, PT_LOAD);
    if (!seg || (at & 7) || ks_ndefs == KS_DEFS_MAX)
        return 0;
    int ro = !(seg->p_flags & PF_W) || ks_defs_seg(d->info, at, PT_GNU_RELRO);
    int x = seg->p_flags & PF_X ? PROT_EXEC : 0;
    uintptr_t lo, hi;
    ks_defs_pages(d->info, seg, at, &lo, &hi);
    if (ro && mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE | x) != 0)
        return 0;
    __atomic_store_n((ElfW(Addr) *)at, (ElfW(Addr))(d->hook - d->o->base), __ATOMIC_RELEASE);
    if (ro)
        mprotect((void *)lo, hi - lo, PROT_READ | x);
    ks_defs[ks_ndefs].name = d->name;
    ks_defs[ks_ndefs].orig = (void *)d->real;
    ks_defs[ks_ndefs].hook = (void *)d->hook;
    __atomic_store_n(&ks_ndefs, ks_ndefs + 1, __ATOMIC_RELEASE);
    return 1;
}

static int ks_defs_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_defs_walk *d = arg;
    struct ks_elf_obj o;
    if (!ks_elf_info_contains(info, d->real) ||
        ks_elf_open(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) != 0)
        return 0;
    d->info = info;
    d->o = &o;
    return 1 + ks_elf_each(&o, d->name, ks_elf_gnu_hash(d->name), ks_defs_one, d);
}

int ks_defs_patch(const char *name, void *real, void *hook)
{
    struct ks_defs_walk d = {name, (uintptr_t)real, (uintptr_t)hook, NULL, NULL};
    int r = dl_iterate_phdr(ks_defs_visit, &d);
    return r > 0 ? r - 1 : 0;
}

void *ks_defs_original(const char *name, void *addr)
{
    int n = __atomic_load_n(&ks_ndefs, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (ks_defs[i].hook == addr && strcmp(ks_defs[i].name, name) == 0)
            return ks_defs[i].orig;
    return addr;
}
