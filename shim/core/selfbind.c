/* See selfbind.h. Reads the shim's own dynamic section (DT_JMPREL, its
 * symbols and the versions its references need) and looks each name up in
 * the loaded objects with elf_sym.c: no allocation, no lock but the
 * loader's list lock of dl_iterate_phdr, nothing the program can
 * interpose. It runs in the constructor and where control starts, which
 * may be the doorbell's signal handler on a thread waiting in a system
 * call (control.c says why that thread holds none of libc's or the
 * loader's locks); so what it keeps for all ~110 imports is in pages of
 * its own, not on that thread's stack.
 *
 * A slot is bound with one aligned 8-byte store of the address the loader's
 * resolver would store: a thread calling through it meanwhile runs the
 * resolver or the function, either is right. .got.plt of a lazily linked
 * object is not in RELRO: it stays writable. */
#include "selfbind.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "elf_sym.h"
#include "ks.h"

/* One import to bind. */
struct ks_bind {
    const char *name;
    const char *version;   /* the reference's version; NULL: none */
    uint32_t hash;
    uintptr_t slot;
    void *to;              /* its definition, once found */
};

struct ks_selfbind_walk {
    uintptr_t self;
    struct ks_elf_obj o;     /* the shim */
    struct ks_bind *b;
    int n, cap, left;
};

/* 1 if S ends in C. Not through a length: GCC makes a length loop a call
 * to strlen, bound lazily in the constructor (an import it need not have). */
KS_START_PATH static KS_SIGSAFE int ks_ends_in(const char *s, char c)
{
    char last = 0;
    for (; *s; s++)
        last = *s;
    return last == c;
}

/* A name's first four bytes, to tell most names apart in one compare: every
 * name the shim imports has four characters or more, and a shorter one is
 * read into the string table's next string (mapped), then compared whole. */
KS_START_PATH static KS_SIGSAFE uint32_t ks_prefix(const char *name)
{
    const unsigned char *p = (const unsigned char *)name;
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The name of the version a reference with index NDX needs, or NULL. */
KS_START_PATH static KS_SIGSAFE const char *ks_needed_version(const struct ks_selfbind_walk *w, unsigned ndx)
{
    const ElfW(Verneed) *n = w->o.verneed;
    for (int guard = 0; n && ndx > 1 && guard < 64; guard++) {
        const ElfW(Vernaux) *a = (const ElfW(Vernaux) *)((const char *)n + n->vn_aux);
        for (unsigned i = 0; i < n->vn_cnt; i++) {
            if ((a->vna_other & 0x7fff) == ndx)
                return a->vna_name < w->o.strsz ? w->o.strtab + a->vna_name : NULL;
            a = (const ElfW(Vernaux) *)((const char *)a + a->vna_next);
        }
        if (!n->vn_next)
            break;
        n = (const ElfW(Verneed) *)((const char *)n + n->vn_next);
    }
    return NULL;
}

#define KS_WANT_SYMS 1024   /* the shim has about 190 dynamic symbols */

/* Which imports a walk binds: ONLY's names (NULL: all; up to 16 entries;
 * one ending in '_' names every import it begins). */
struct ks_want {
    const char *const *only;
    int n;
    int by_index;          /* set: a bit per wanted symbol index */
    uint64_t set[KS_WANT_SYMS / 64];
    uint32_t pre[16];
    unsigned char family[16];
    uint64_t bloom;        /* one bit per prefix: most names miss it at once */
};

/* With the shim's DT_HASH (it is linked with --hash-style=both for this;
 * DT_GNU_HASH lists only definitions) each name's reference is found by
 * its hash, and a relocation is told by its symbol index in one compare
 * (a bit in SET) instead of by its name: reading every relocation's name
 * was 11,800 instructions of every start (docs/bench.md). A family (a prefix, the
 * sanitizer builds') can only be matched by the names. */
KS_START_PATH static KS_SIGSAFE void ks_want_init(struct ks_want *m, const struct ks_elf_obj *o,
                                                  const char *const *only)
{
    *m = (struct ks_want){.only = only, .by_index = o->sysv_hash != NULL};
    for (; only && only[m->n] && m->n < 16; m->n++) {
        const char *n = only[m->n];
        m->pre[m->n] = ks_prefix(n);
        m->family[m->n] = n[0] && n[1] && n[2] && n[3] && ks_ends_in(n, '_');
        m->bloom |= 1ull << ((m->pre[m->n] * 0x9e3779b1u) >> 26);
        m->by_index &= !m->family[m->n];
    }
    for (int k = 0; m->by_index && k < m->n; k++) {
        uint32_t i = ks_elf_ref_index(o, only[k]);
        if (i >= KS_WANT_SYMS)
            m->by_index = 0;   /* never in the shim: by the names then */
        else if (i)
            m->set[i / 64] |= 1ull << (i % 64);
    }
}

/* 1 if the import SYM (named NAME) is one M wants. */
KS_START_PATH static KS_SIGSAFE int ks_wanted(const struct ks_want *m, uint32_t sym,
                                             const char *name)
{
    if (!m->only)
        return 1;
    if (m->by_index)
        return sym < KS_WANT_SYMS && (m->set[sym / 64] >> (sym % 64) & 1);
    int want = 0;
    uint32_t p = ks_prefix(name);
    if (!(m->bloom & 1ull << ((p * 0x9e3779b1u) >> 26)))
        return 0;
    for (int k = 0; k < m->n && !want; k++)
        want = p == m->pre[k] &&
               (m->family[k] ? ks_starts(name, m->only[k]) : ks_streq(name, m->only[k]));
    return want;
}

/* Notes the shim's slots to bind: those ONLY names (ks_want) whose value
 * still lies in the shim (the lazy resolver's stub, or one of the shim's
 * own hooks, which a lookup finds again). */
KS_START_PATH static KS_SIGSAFE void ks_self_slots(struct ks_selfbind_walk *w,
                                                   const struct dl_phdr_info *info,
                                                   const char *const *only)
{
    struct ks_want m;
    ks_want_init(&m, &w->o, only);
    for (size_t i = 0; i < w->o.njmprel && w->n < w->cap; i++) {
        const ElfW(Rela) *r = &w->o.jmprel[i];
        uint32_t sym = (uint32_t)ELF64_R_SYM(r->r_info);
        if (ELF64_R_TYPE(r->r_info) != R_X86_64_JUMP_SLOT || !sym)
            continue;
        const char *name = m.by_index ? NULL : w->o.strtab + w->o.symtab[sym].st_name;
        uintptr_t slot = info->dlpi_addr + r->r_offset;
        if (!ks_wanted(&m, sym, name) || !ks_elf_info_contains(info, *(uintptr_t *)slot))
            continue;
        name = w->o.strtab + w->o.symtab[sym].st_name;
        unsigned ndx = w->o.versym ? w->o.versym[sym] & 0x7fff : 0;
        w->b[w->n++] = (struct ks_bind){
            .name = name, .version = ks_needed_version(w, ndx),
            .hash = ks_elf_gnu_hash(name), .slot = slot};
    }
    w->left = w->n;
}

struct ks_selfbind_arg {
    struct ks_selfbind_walk *w;
    const char *const *only;
};

KS_START_PATH static KS_SIGSAFE int ks_find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_selfbind_arg *a = arg;
    struct ks_selfbind_walk *w = a->w;
    if (!ks_elf_info_contains(info, w->self) ||
        ks_elf_open(&w->o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) != 0)
        return 0;
    ks_self_slots(w, info, a->only);
    return 1;
}

/* Every object in load order, the shim included (its references see its own
 * exported hooks, as the loader's global scope does): the first definition
 * of each name wins. Not the vDSO, which is on the loader's list but not in
 * its scope: a sanitizer's build binds getrandom unversioned (libasan's),
 * and the kernel's vDSO defines one too. (An object the program dlopened
 * RTLD_LOCAL is not in the scope either; it comes after libc, which defines
 * every name the shim imports.) */
KS_START_PATH static KS_SIGSAFE int ks_find_defs(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_selfbind_walk *w = arg;
    struct ks_elf_obj o;
    if (ks_elf_open(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) != 0 ||
        ks_streq(o.soname, "linux-vdso.so.1"))
        return 0;
    for (int i = 0; i < w->n; i++) {
        struct ks_bind *b = &w->b[i];
        const ElfW(Sym) *s;
        if (b->to || !(s = ks_elf_find_ref(&o, b->name, b->hash, b->version)))
            continue;
        b->to = ks_elf_addr(&o, s);
        w->left--;
    }
    return w->left == 0;
}

/* Binds the slots ONLY names (NULL: all) with up to CAP entries of B. */
KS_START_PATH static KS_SIGSAFE void ks_selfbind(const char *const *only, struct ks_bind *b, int cap)
{
    struct ks_selfbind_walk w = {.self = (uintptr_t)&ks_selfbind, .b = b, .cap = cap};
    struct ks_selfbind_arg a = {&w, only};
    if (!dl_iterate_phdr(ks_find_self, &a) || w.n == 0)
        return;
    dl_iterate_phdr(ks_find_defs, &w);
    /* Not found: left to the loader, which reports it. Already right (one of
     * the shim's own hooks): not written, so that a slot of a shim linked
     * -z now, read-only after relocation, is never stored to. */
    for (int i = 0; i < w.n; i++)
        if (b[i].to && __atomic_load_n((void **)b[i].slot, __ATOMIC_RELAXED) != b[i].to)
            __atomic_store_n((void **)b[i].slot, b[i].to, __ATOMIC_RELEASE);
}

#define KS_SELFBIND_INIT_MAX 64

/* A sanitizer's instrumentation calls its runtime from any function, the
 * handler's included (ASan's stack poisoning, its reports): every one of
 * those, in the test builds that have them (the shim has none otherwise),
 * bound by the walk, which matches these families by their names. */
#if defined(KS_SANITIZER) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static const char *const ks_sanitizer_imports[] = {
    "__asan_", "__ubsan_", "__tsan_", "__sanitizer_", NULL,
};
#endif
static const char *const ks_debug_imports[] = {"snprintf", "vsnprintf", "strlen", "write", NULL};

KS_START_PATH static int ks_first_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)info, (void)size, (void)arg;
    return 1;
}

/* What runs in the shim's signal handler before control starts, and what
 * a fork child runs (found with objdump from ks_sig_entry and
 * ks_control_doorbell to ks_control_begin, and from the fork handlers):
 * errno, syscall, dl_iterate_phdr and _dl_find_object (the first module
 * table's build, safepoint.c) (the pid is ks_getpid's system call there,
 * signal sets and copies are ks.h's own: no binding, and no page of libc's
 * code that the program may never touch).
 * Each is called once here, through its PLT slot, so that the loader's
 * lazy resolver binds it: on the main thread, in the constructor, as any
 * program's first call of a function is bound, and by construction where
 * LD_BIND_NOW binds it (doorbell_test compares). One lookup each, about
 * 600 instructions; finding them and their definitions with the walk below
 * cost 20,000 instructions of every start (docs/bench.md). Each call is
 * made so that GCC keeps it (errno read and written).
 * The waits the handler may make are system calls of the shim's own
 * (ks_sched_yield). Not __stack_chk_fail, which runs only where a stack is
 * already smashed and the process ends: ks_selfbind_all binds it with the
 * rest when control starts. */
KS_START_PATH void ks_selfbind_init(void)
{
    int saved = errno;
    (void)syscall(SYS_getpid);
    dl_iterate_phdr(ks_first_object, NULL);
    struct dl_find_object fo;
    (void)_dl_find_object((void *)&ks_first_object, &fo);
    errno = saved;
#if defined(KS_SANITIZER) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    struct ks_bind b[KS_SELFBIND_INIT_MAX];
    ks_selfbind(ks_sanitizer_imports, b, KS_SELFBIND_INIT_MAX);
#endif
    if (ks_debug_enabled) {
        struct ks_bind d[KS_SELFBIND_INIT_MAX];
        ks_selfbind(ks_debug_imports, d, KS_SELFBIND_INIT_MAX);
    }
}

/* The shim imports about 110 functions (more in a sanitizer's build): room
 * for them all, in pages of
 * their own for the moment (not in .bss, where 10 KB moved the variables
 * every process touches at start across one more page: a page fault more
 * in every exec'd child). The system call itself: syscall() is bound at
 * init, mmap may not be yet. */
#define KS_SELFBIND_MAX 2048
KS_HOT_DATA static int ks_all_done;

KS_SIGSAFE void ks_selfbind_all(void)
{
    if (__atomic_load_n(&ks_all_done, __ATOMIC_ACQUIRE))
        return;
    size_t len = KS_SELFBIND_MAX * sizeof(struct ks_bind);
    void *m = (void *)syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {   /* what is left unbound the loader binds on use */
        ks_debug("cannot bind the shim's imports: mmap failed");
        return;
    }
    ks_selfbind(NULL, m, KS_SELFBIND_MAX);
    syscall(SYS_munmap, m, len);
    __atomic_store_n(&ks_all_done, 1, __ATOMIC_RELEASE);
}

int ks_selfbind_done(void) { return __atomic_load_n(&ks_all_done, __ATOMIC_ACQUIRE); }
