/* Fills the table of real functions (real.h) with a lookup of our own: one
 * walk of the loaded objects (dl_iterate_phdr) and their dynamic symbol and
 * version tables (elf_sym.c), for every entry at once.
 *
 * Why not dlsym/dlvsym: they allocate (a failed lookup formats its error
 * message with malloc), and the program's allocator may be the very caller:
 * jemalloc's initialisation takes a mutex, the mutex hook resolved, a failed
 * dlvsym called malloc, jemalloc took the mutex again: endless recursion
 * (redis-server died at start). And dladdr, which told an interposer from
 * libc, scanned libc's symbol table per call: 80% of the instructions of a
 * /bin/true under the shim.
 *
 * Why this is safe at any moment:
 * - It allocates nothing and calls nothing the program can interpose:
 *   dl_iterate_phdr is libc's (a sanitizer runtime's interceptor only
 *   wraps it), and its lock is the loader's recursive dl_load_write_lock,
 *   held by other threads only while they link or unlink an object.
 * - Re-entry on the same thread (a signal handler, an indirect function's
 *   resolver calling a hook) runs a nested walk that fills the same table
 *   and returns; a depth limit is the backstop against a loop we did not
 *   foresee: past it, a hook gets NULL and fails with its error instead of
 *   recursing until the stack overflows.
 * - Concurrent walks store the same values (release stores, one pointer
 *   each), so the first one to finish wins nothing the other would change.
 * - Only the table and a thread-local depth are written: nothing here needs
 *   a constructor to have run. */
#include "real.h"

#include <link.h>
#include <stdint.h>

#include "attach.h"
#include "elf_sym.h"
#include "ks.h"

void *ks_real_fn[KS_FN_COUNT];

static const struct ks_real_rule {
    const char *symbol;
    const char *version;
    enum ks_real_where where;
} ks_rules[KS_FN_COUNT] = {
#define KS_X(field, sym, ver, wh, ret, params) [KS_FN_##field] = {sym, ver, wh},
    KS_REAL_TABLE(KS_X)
#undef KS_X
};

/* Set once a complete walk has stored everything it found: a NULL entry is
 * then a function the process does not have, and KS_REAL stops looking. */
static int ks_real_complete;
static __thread int ks_resolve_depth __attribute__((tls_model("initial-exec")));
#define KS_RESOLVE_MAX_DEPTH 3

/* For tests/unit/resolve_test: called at each object a walk visits. */
void (*ks_resolve_visit_hook)(void);

/* Per entry, during one walk (on the stack: about 1.3 KB a walk). */
struct ks_found {
    void *first;                 /* the first definition after the shim, default version */
    void *exact;                 /* the first definition at the rule's version */
    uint32_t hash;               /* of the symbol's name */
    unsigned char first_is_libc;
    unsigned char final;         /* nothing later in load order can change it */
};

struct ks_walk {
    uintptr_t self;      /* an address inside the object that holds this code */
    int after_self;      /* objects before ours are not searched (RTLD_NEXT) */
    int left;            /* entries not final yet */
    struct ks_found found[KS_FN_COUNT];
};

static int ks_is_libc(const struct ks_elf_obj *o)
{
    static const char want[] = "libc.so.6";
    for (size_t i = 0; i < sizeof want; i++)
        if (o->soname[i] != want[i])
            return 0;
    return 1;
}

/* Applies entry F's rule to object O, the next in load order. */
static void ks_visit_entry(struct ks_walk *w, const struct ks_elf_obj *o, int libc, int f)
{
    const struct ks_real_rule *r = &ks_rules[f];
    struct ks_found *fd = &w->found[f];
    const ElfW(Sym) *s;
    if (r->where == KS_LIBC) {
        if (libc && (s = ks_elf_find(o, r->symbol, fd->hash, r->version)))
            fd->exact = ks_elf_addr(o, s);
        fd->final = libc;   /* only libc's own counts, found or not */
        return;
    }
    if (!fd->first && (s = ks_elf_find(o, r->symbol, fd->hash, NULL))) {
        fd->first = ks_elf_addr(o, s);
        fd->first_is_libc = libc;
    }
    if (r->version && !fd->exact && (s = ks_elf_find(o, r->symbol, fd->hash, r->version)))
        fd->exact = ks_elf_addr(o, s);
    /* An interposer's definition is taken as it is; libc's needs the
     * rule's version, if it has one. */
    fd->final = fd->first && (!fd->first_is_libc || !r->version || fd->exact);
}

static int ks_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_walk *w = arg;
    void (*hook)(void) = __atomic_load_n(&ks_resolve_visit_hook, __ATOMIC_ACQUIRE);
    if (hook)
        hook();
    if (ks_elf_info_contains(info, w->self)) {
        w->after_self = 1;   /* never ourselves: the objects after us */
        return 0;
    }
    if (!w->after_self)
        return 0;
    struct ks_elf_obj o;
    if (ks_elf_open(&o, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) != 0)
        return 0;
    int libc = ks_is_libc(&o);
    for (int f = 0; f < KS_FN_COUNT; f++) {
        if (w->found[f].final)
            continue;
        ks_visit_entry(w, &o, libc, f);
        w->left -= w->found[f].final;
    }
    return w->left == 0;   /* nonzero stops the walk */
}

static void *ks_pick(const struct ks_real_rule *r, const struct ks_found *fd)
{
    if (r->where == KS_LIBC)
        return fd->exact;
    if (fd->first && !fd->first_is_libc)
        return fd->first;   /* an interposer */
    return fd->exact ? fd->exact : fd->first;
}

static void ks_walk(void)
{
    struct ks_walk w = {.self = (uintptr_t)&ks_walk, .left = 0};
    for (int f = 0; f < KS_FN_COUNT; f++) {
        w.found[f].final = __atomic_load_n(&ks_real_fn[f], __ATOMIC_ACQUIRE) != NULL;
        if (!w.found[f].final) {
            w.found[f].hash = ks_elf_gnu_hash(ks_rules[f].symbol);
            w.left++;
        }
    }
    if (w.left == 0)
        return;
    dl_iterate_phdr(ks_visit, &w);
    if (!w.after_self) {   /* never found ourselves: search everything */
        w.after_self = 1;
        dl_iterate_phdr(ks_visit, &w);
    }
    /* Loaded late (attach.h): the objects before us are what the program
     * bound to all along (libc comes before a dlopened shim). */
    if (w.left > 0 && __atomic_load_n(&ks_loaded_late, __ATOMIC_ACQUIRE)) {
        w.after_self = 1;
        dl_iterate_phdr(ks_visit, &w);
    }
    for (int f = 0; f < KS_FN_COUNT; f++) {
        void *p = ks_pick(&ks_rules[f], &w.found[f]);
        if (p)
            __atomic_store_n(&ks_real_fn[f], p, __ATOMIC_RELEASE);
    }
}

void ks_real_resolve_all(void)
{
    if (ks_resolve_depth >= KS_RESOLVE_MAX_DEPTH)
        return;
    ks_resolve_depth++;
    ks_walk();
    ks_resolve_depth--;
    __atomic_store_n(&ks_real_complete, 1, __ATOMIC_RELEASE);
}

/* For tests/unit/resolve_test only: forgets everything, as before the first
 * resolution. Never called by the shim (a hook could read a cleared entry). */
void ks_real_forget(void)
{
    for (int f = 0; f < KS_FN_COUNT; f++)
        __atomic_store_n(&ks_real_fn[f], NULL, __ATOMIC_RELEASE);
    __atomic_store_n(&ks_real_complete, 0, __ATOMIC_RELEASE);
}

void *ks_real_miss(enum ks_real_id f)
{
    if (!__atomic_load_n(&ks_real_complete, __ATOMIC_ACQUIRE))
        ks_real_resolve_all();
    return __atomic_load_n(&ks_real_fn[f], __ATOMIC_ACQUIRE);
}
