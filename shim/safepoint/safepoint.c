/* See safepoint.h. */
#include "safepoint.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/auxv.h>

#include "shim/core/elf_sym.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/unwind/unwind_mem.h"
#include "gotsym.h"
#include "lpad.h"

#define KS_MOD_MAX 512
#define KS_SEG_MAX 6

struct ks_mod {
    uintptr_t lo, hi;              /* hull of the segments */
    uintptr_t bias;
    int kind;
    int nseg;
    uintptr_t seg_lo[KS_SEG_MAX], seg_hi[KS_SEG_MAX];
    uintptr_t eh_hdr;              /* PT_GNU_EH_FRAME, or 0 */
    struct ks_gotsym got;          /* its slots for std::terminate... (lpad.h) */
    int got_done;                  /* GOT read (ks_safepoint_refresh_pads) */
    char name[40];
};

/* Readers (signal handlers) retry while ks_seq is odd or changed under them;
 * the one writer at a time holds ks_write_mu. */
static struct ks_mod ks_mods[KS_MOD_MAX];
KS_HOT_DATA static int ks_nmods;
KS_HOT_DATA static unsigned ks_seq;
KS_LOCK_DEFINE(static, ks_write_mu);

/* The writer builds here first, so the published table is written in one
 * short burst. Mapped at the first rebuild (200 KiB, ks.h: ks_lazy; every
 * refresh runs outside signal handlers): most processes build only the
 * first table, in place. Under ks_write_mu. */
KS_HOT_DATA static struct ks_lazy ks_scratch_map =
    KS_LAZY(sizeof(struct ks_mod) * KS_MOD_MAX, "the module table's rebuild");
KS_HOT_DATA static int ks_nscratch;
/* Where ks_safepoint_collect writes: the scratch table, or ks_mods itself
 * for the first table and when the scratch cannot be mapped (see
 * ks_safepoint_refresh). Under ks_write_mu. */
KS_HOT_DATA static struct ks_mod *ks_build;
static unsigned long long ks_seen_adds = ~0ULL, ks_seen_subs = ~0ULL;
/* The executable itself defines the first malloc in the loader's order (a
 * program with its own allocator): set by the first table's build. */
KS_HOT_DATA static int ks_own_malloc;

/* The string helpers here are the shim's own (ks_basename, ks_starts,
 * ks_copy_name), not libc's strrchr, strncmp, strlen and strncpy: the first
 * table may be built in the doorbell's signal handler (redirect.c),
 * where nothing is bound lazily that need not be. NAME into OUT (CAP
 * bytes), cut and terminated; OUT is zeroed. */
static void ks_copy_name(char *out, size_t cap, const char *name)
{
    for (size_t i = 0; i + 1 < cap && name[i]; i++)
        out[i] = name[i];
}

static int ks_kind_of_name(const char *base)
{
    static const char *const glibc[] = {"libc.so", "libm.so", "libmvec.so", "libpthread.so",
                                        "libdl.so", "librt.so", "libresolv.so", "libanl.so",
                                        "libutil.so", "libnss_", "libthread_db", "libBrokenLocale",
                                        NULL};
    for (int i = 0; glibc[i]; i++)
        if (ks_starts(base, glibc[i]))
            return KS_MOD_LIBC;
    if (ks_starts(base, "ld-linux") || ks_starts(base, "ld.so") || ks_starts(base, "ld64.so"))
        return KS_MOD_LOADER;
    if (ks_starts(base, "libgcc_s.so") || ks_starts(base, "libunwind"))
        return KS_MOD_UNWINDER;
    if (ks_starts(base, "libstdc++.so"))
        return KS_MOD_CXXRT;
    if (ks_starts(base, "linux-vdso.so") || ks_starts(base, "linux-gate.so"))
        return KS_MOD_VDSO;
    static const char *const sanitizers[] = {"libasan.so", "libtsan.so", "libubsan.so",
                                             "liblsan.so", "libhwasan.so", "libclang_rt.",
                                             NULL};
    for (int i = 0; sanitizers[i]; i++)
        if (ks_starts(base, sanitizers[i]))
            return KS_MOD_SANRT;
    return KS_MOD_APP;
}

/* M (being built aside) takes the GOT already read for the same object in
 * the published table. Under ks_write_mu, the only writer. */
static void ks_carry_got(struct ks_mod *m)
{
    for (int i = 0; i < ks_nmods; i++) {
        const struct ks_mod *o = &ks_mods[i];
        if (o->got_done && o->bias == m->bias && o->lo == m->lo && o->hi == m->hi) {
            m->got = o->got;
            m->got_done = 1;
            return;
        }
    }
}

static int ks_safepoint_collect(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t malloc_at = *(const uintptr_t *)arg;
    if (ks_nscratch >= KS_MOD_MAX)
        return 1;
    struct ks_mod *m = &ks_build[ks_nscratch];
    memset(m, 0, sizeof *m);
    m->bias = info->dlpi_addr;
    m->lo = UINTPTR_MAX;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_EH_FRAME)
            m->eh_hdr = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type != PT_LOAD || m->nseg >= KS_SEG_MAX)
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        uintptr_t hi = lo + ph->p_memsz;
        m->seg_lo[m->nseg] = lo;
        m->seg_hi[m->nseg] = hi;
        m->nseg++;
        if (lo < m->lo)
            m->lo = lo;
        if (hi > m->hi)
            m->hi = hi;
    }
    if (!m->nseg)
        return 0;
    const char *name = info->dlpi_name && *info->dlpi_name ? info->dlpi_name
                                                            : program_invocation_short_name;
    const char *base = ks_basename(name ? name : "?");
    ks_copy_name(m->name, sizeof m->name, base);
    m->kind = ks_nscratch == 0 && !(info->dlpi_name && *info->dlpi_name) ? KS_MOD_APP
                                                                          : ks_kind_of_name(base);
    uintptr_t self = (uintptr_t)&ks_safepoint_refresh;
    if (self >= m->lo && self < m->hi)
        m->kind = KS_MOD_SHIM;
    /* A library that brings the program's malloc: an abort stepping to a
     * "call boundary" inside it would leave its thread cache half updated
     * (tcmalloc's free list crashed at the thread's exit), so it is a
     * runtime the thread must leave first. The executable's own malloc
     * stays application code. */
    if (m->kind == KS_MOD_APP && ks_elf_info_contains(info, malloc_at)) {
        if (ks_nscratch > 0)
            m->kind = KS_MOD_ALLOC;
        else
            __atomic_store_n(&ks_own_malloc, 1, __ATOMIC_RELEASE);
    }
    /* An application module's GOT is read only for an abort or a cancel
     * check (ks_safepoint_refresh_pads), not in every process at start:
     * here it is carried over from the table being replaced. */
    if (m->kind == KS_MOD_APP && ks_build != ks_mods)
        ks_carry_got(m);
    ks_nscratch++;
    return 0;
}

static int ks_count_changes(struct dl_phdr_info *info, size_t size, void *arg)
{
    unsigned long long *v = arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        v[0] = info->dlpi_adds;
        v[1] = info->dlpi_subs;
    }
    return 1;   /* the counters are the same in every entry */
}

int ks_safepoint_refresh(void)
{
    ks_lock(&ks_write_mu);
    unsigned long long v[2] = {0, 0};
    dl_iterate_phdr(ks_count_changes, v);
    if (v[0] == ks_seen_adds && v[1] == ks_seen_subs && (v[0] | v[1])) {
        ks_unlock(&ks_write_mu);
        return 0;
    }
    /* The program's malloc: the first definition in the loader's order
     * (allocation-free, before the walk below: not nested in it). */
    struct ks_elf_loaded al;
    uintptr_t malloc_at = ks_elf_find_loaded("malloc", NULL, &al) == 0
                        ? (uintptr_t)al.obj.base + al.sym->st_value : 0;
    /* The first table (ks_seq still 0: nothing was ever published, and a
     * reader finds no module) is built in place, under an odd ks_seq that
     * turns readers away: it saves every process the scratch table.
     * Later ones are built aside and copied in one short burst; in place
     * too if the scratch cannot be mapped (readers are turned away for the
     * whole build then, and GOTs are read again: ks_carry_got is skipped). */
    struct ks_mod *aside = __atomic_load_n(&ks_seq, __ATOMIC_RELAXED) == 0
                         ? NULL : ks_lazy_get(&ks_scratch_map);
    int in_place = aside == NULL;
    ks_build = in_place ? ks_mods : aside;
    ks_nscratch = 0;
    if (in_place) {
        __atomic_store_n(&ks_seq, ks_seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }
    dl_iterate_phdr(ks_safepoint_collect, &malloc_at);
    if (!in_place) {
        __atomic_store_n(&ks_seq, ks_seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        memcpy(ks_mods, aside, sizeof(struct ks_mod) * (size_t)ks_nscratch);
    }
    __atomic_store_n(&ks_nmods, ks_nscratch, __ATOMIC_RELAXED);
    __atomic_store_n(&ks_seq, ks_seq + 1, __ATOMIC_RELEASE);
    ks_seen_adds = v[0];
    ks_seen_subs = v[1];
    ks_unlock(&ks_write_mu);
    return 0;
}

/* Reads the GOT of each application module of the published table that
 * has not had it read, publishing each under an odd ks_seq. Under
 * ks_write_mu. */
static int ks_read_gots(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    for (int i = 0; i < ks_nmods; i++) {
        struct ks_mod *m = &ks_mods[i];
        if (m->kind != KS_MOD_APP || m->got_done || m->bias != info->dlpi_addr)
            continue;
        struct ks_gotsym g;
        ks_gotsym_collect(info, &g);
        __atomic_store_n(&ks_seq, ks_seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        m->got = g;
        m->got_done = 1;
        __atomic_store_n(&ks_seq, ks_seq + 1, __ATOMIC_RELEASE);
        break;
    }
    return 0;
}

int ks_safepoint_refresh_pads(void)
{
    int rc = ks_safepoint_refresh();
    ks_lock(&ks_write_mu);
    int missing = 0;
    for (int i = 0; i < ks_nmods; i++)
        missing |= ks_mods[i].kind == KS_MOD_APP && !ks_mods[i].got_done;
    if (missing)
        dl_iterate_phdr(ks_read_gots, NULL);
    ks_unlock(&ks_write_mu);
    return rc;
}

/* Finds ADDR's module and segment in the published table. Returns the
 * module's index or -1; *SEG the segment's. Caller validates with ks_seq. */
static int ks_find(uintptr_t addr, int *seg)
{
    int n = __atomic_load_n(&ks_nmods, __ATOMIC_RELAXED);
    for (int i = 0; i < n && i < KS_MOD_MAX; i++) {
        const struct ks_mod *m = &ks_mods[i];
        if (addr < m->lo || addr >= m->hi)
            continue;
        for (int s = 0; s < m->nseg && s < KS_SEG_MAX; s++)
            if (addr >= m->seg_lo[s] && addr < m->seg_hi[s]) {
                *seg = s;
                return i;
            }
        *seg = -1;
        return i;
    }
    return -1;
}

int ks_safepoint_lookup(uintptr_t addr, struct ks_pc_info *out)
{
    for (int tries = 0; tries < 10000; tries++) {
        unsigned s1 = __atomic_load_n(&ks_seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            ks_sched_yield();   /* the writer is another thread: let it finish */
            continue;
        }
        int seg = -1;
        int i = ks_find(addr, &seg);
        struct ks_pc_info r = {.kind = KS_MOD_NONE};
        if (i >= 0) {
            const struct ks_mod *m = &ks_mods[i];
            r.kind = m->kind;
            r.bias = m->bias;
            if (seg >= 0) {
                r.seg_lo = m->seg_lo[seg];
                r.seg_hi = m->seg_hi[seg];
            }
            memcpy(r.name, m->name, sizeof r.name);
            r.name[sizeof r.name - 1] = 0;
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&ks_seq, __ATOMIC_RELAXED) == s1) {
            *out = r;
            return r.kind;
        }
    }
    memset(out, 0, sizeof *out);
    out->kind = KS_MOD_NONE;
    return KS_MOD_NONE;
}

int ks_safepoint_cfi(uintptr_t pc, struct ks_cfi_module *out)
{
    for (int tries = 0; tries < 10000; tries++) {
        unsigned s1 = __atomic_load_n(&ks_seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            ks_sched_yield();
            continue;
        }
        int seg = -1, hseg = -1;
        int i = ks_find(pc, &seg);
        struct ks_cfi_module r = {0, 0, 0, 0, 0};
        if (i >= 0 && seg >= 0) {
            const struct ks_mod *m = &ks_mods[i];
            r.pc_lo = m->seg_lo[seg];
            r.pc_hi = m->seg_hi[seg];
            /* The table's own segment, which holds .eh_frame too (every
             * linker puts both in one read-only segment): the FDE search
             * never reads past it. */
            if (m->eh_hdr && ks_find(m->eh_hdr, &hseg) == i && hseg >= 0) {
                r.eh_hdr = m->eh_hdr;
                r.hdr_lo = m->seg_lo[hseg];
                r.hdr_hi = m->seg_hi[hseg];
            }
        }
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&ks_seq, __ATOMIC_RELAXED) == s1) {
            *out = r;
            return r.pc_hi ? 0 : ENOENT;
        }
    }
    memset(out, 0, sizeof *out);
    return ENOENT;
}

int ks_safepoint_got_kind(uintptr_t slot)
{
    for (int tries = 0; tries < 10000; tries++) {
        unsigned s1 = __atomic_load_n(&ks_seq, __ATOMIC_ACQUIRE);
        if (s1 & 1) {
            ks_sched_yield();
            continue;
        }
        int seg = -1, kind = KS_LP_OTHER;
        int i = ks_find(slot, &seg);
        /* A GOT not read (no ks_safepoint_refresh_pads before this scan):
         * any slot could be std::terminate's, and the scan must refuse. */
        if (i >= 0)
            kind = ks_mods[i].got_done ? ks_gotsym_kind(&ks_mods[i].got, slot)
                 : ks_mods[i].kind == KS_MOD_APP ? KS_LP_TERMINATE : KS_LP_OTHER;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&ks_seq, __ATOMIC_RELAXED) == s1)
            return kind;
    }
    return KS_LP_OTHER;
}

int ks_safepoint_readable(uintptr_t addr, size_t len)
{
    struct ks_pc_info pi;
    ks_safepoint_lookup(addr, &pi);
    return pi.seg_hi > pi.seg_lo && addr >= pi.seg_lo && len <= pi.seg_hi - addr;
}

KS_SIGSAFE int ks_safepoint_built(void)
{
    unsigned s = __atomic_load_n(&ks_seq, __ATOMIC_ACQUIRE);
    return s != 0 && !(s & 1);
}

/* The program headers of the object LM: the main program's from the
 * auxiliary vector, a library's behind its ELF header (at its load bias:
 * the loader maps its first page there). Returns them, or NULL. */
static KS_SIGSAFE const ElfW(Phdr) *ks_phdrs_of(const struct link_map *lm, size_t *n)
{
    if (!lm->l_name || !*lm->l_name) {
        *n = getauxval(AT_PHNUM);
        return (const ElfW(Phdr) *)getauxval(AT_PHDR);
    }
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)lm->l_addr;
    if (!ks_mem_readable((uintptr_t)eh) || eh->e_ident[EI_MAG0] != ELFMAG0 ||
        eh->e_ident[EI_MAG1] != ELFMAG1 || eh->e_ident[EI_MAG2] != ELFMAG2 ||
        eh->e_ident[EI_MAG3] != ELFMAG3 || eh->e_phentsize != sizeof(ElfW(Phdr)))
        return NULL;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(lm->l_addr + eh->e_phoff);
    *n = eh->e_phnum;
    if (!*n || !ks_mem_readable((uintptr_t)ph) || !ks_mem_readable((uintptr_t)(ph + *n) - 1))
        return NULL;
    return ph;
}

/* For an object whose segments are not contiguous (a code section aligned
 * past a page gets a segment of its own after a gap: stress-ng's), glibc's
 * _dl_find_object gives the bounds of its first code segment only, and its
 * .eh_frame_hdr and .eh_frame lie in a read-only segment after them: CFI's
 * reads are bounded by the segment that holds the header. M's bounds stay
 * as they are if it is inside them already or no segment holds it (the
 * reads then fail). */
static KS_SIGSAFE void ks_hdr_segment(const struct link_map *lm, struct ks_cfi_module *m)
{
    if (!m->eh_hdr || (m->eh_hdr >= m->hdr_lo && m->eh_hdr < m->hdr_hi))
        return;
    size_t n = 0;
    const ElfW(Phdr) *ph = ks_phdrs_of(lm, &n);
    for (size_t i = 0; ph && i < n; i++) {
        uintptr_t lo = lm->l_addr + ph[i].p_vaddr, hi = lo + ph[i].p_memsz;
        if (ph[i].p_type == PT_LOAD && m->eh_hdr >= lo && m->eh_hdr < hi) {
            m->hdr_lo = lo;
            m->hdr_hi = hi;
            return;
        }
    }
}

/* _dl_find_object reads the loader's lock-free copy of its list, made for
 * unwinders, which run in signal handlers. */
KS_SIGSAFE int ks_safepoint_kind_now(uintptr_t pc, struct ks_cfi_module *cfi)
{
    struct dl_find_object fo;
    if (_dl_find_object((void *)pc, &fo) != 0 || !fo.dlfo_link_map)
        return KS_MOD_NONE;
    uintptr_t lo = (uintptr_t)fo.dlfo_map_start, hi = (uintptr_t)fo.dlfo_map_end;
    if (cfi) {
        *cfi = (struct ks_cfi_module){.eh_hdr = (uintptr_t)fo.dlfo_eh_frame,
                                      .hdr_lo = lo, .hdr_hi = hi, .pc_lo = lo, .pc_hi = hi};
        ks_hdr_segment(fo.dlfo_link_map, cfi);
    }
    uintptr_t self = (uintptr_t)&ks_safepoint_kind_now;
    if (self >= lo && self < hi)
        return KS_MOD_SHIM;
    const char *name = fo.dlfo_link_map->l_name;
    return name && *name ? ks_kind_of_name(ks_basename(name)) : KS_MOD_APP;
}

const char *ks_mod_kind_name(int kind)
{
    static const char *const names[] = {"application", "libc", "the dynamic loader",
                                        "the unwinder", "the C++ runtime", "the shim",
                                        "the vDSO", "a sanitizer runtime",
                                        "the program's allocator", "unknown code"};
    return kind >= 0 && kind <= KS_MOD_NONE ? names[kind] : "?";
}

KS_SIGSAFE int ks_safepoint_own_malloc(void)
{
    return __atomic_load_n(&ks_own_malloc, __ATOMIC_ACQUIRE);
}
