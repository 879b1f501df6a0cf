/* Fills the table of real functions (real.h) with a lookup of our own: a
 * walk of the loaded objects (dl_iterate_phdr) and their dynamic symbol and
 * version tables (elf_sym.c), for one entry on its first use, or for every
 * entry still empty.
 *
 * Why not dlsym/dlvsym: they allocate (a failed lookup formats its error
 * message with malloc), and the program's allocator may be the very caller:
 * jemalloc's initialisation takes a mutex, the mutex hook resolved, a failed
 * dlvsym called malloc, jemalloc took the mutex again: endless recursion
 * (redis-server died at start). And dladdr, which told an interposer from
 * libc, scanned libc's symbol table per call: 80% of the instructions of a
 * /bin/true under the shim.
 *
 * When: each entry on its first use, while the process has one thread; all
 * of them before it has two. Resolving the whole table at start cost every
 * process about 38,000 instructions and two page faults (docs/bench.md),
 * and most processes under the shim (the children a build or a shell execs)
 * use a handful of the entries. The walk takes the loader's list lock
 * (dl_load_write_lock), which glibc does not reset in a fork child: an entry
 * first used in the child of a multi-threaded parent could wait forever for
 * a parent thread that held it at the fork. So the first use of
 * pthread_create, the one way the shim and the program start a thread
 * (interpose_thread.c, shim_thread.c, deliver_abort.c), resolves every entry
 * (ks_real_miss): a process that has threads has a complete table, and so
 * do its fork children. A single-threaded process's lookups cannot meet the
 * lock held by another thread, and its fork children have none either. (A
 * thread started around pthread_create, with a raw clone, is not covered;
 * a program that forks from such a process and calls dl_iterate_phdr in the
 * child has the same hazard of its own.) _exit is resolved at init
 * (ks_real_resolve_init): a fork child calls it without resolving.
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
 * - Only the table, its looked-up marks and a thread-local depth are
 *   written: nothing here needs a constructor to have run. */
#include "real.h"

#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/single_threaded.h>

#include "attach.h"
#include "elf_sym.h"
#include "ks.h"

KS_HOT_DATA void *ks_real_fn[KS_FN_COUNT];

/* Every entry's symbol and version, in one block of characters, and the
 * rules as offsets into it: a table of pointers to them was 1,416 bytes of
 * data the loader relocates at every start (61 relocations), which with
 * the rest of RELRO spread it over two pages, two page faults in every
 * process (docs/bench.md). */
static const struct ks_real_strings {
#define KS_X(field, sym, ver, wh, ret, params) char field[sizeof sym]; char field##_v[sizeof ver];
    KS_REAL_TABLE(KS_X)
#undef KS_X
} ks_strings = {
#define KS_X(field, sym, ver, wh, ret, params) sym, ver,
    KS_REAL_TABLE(KS_X)
#undef KS_X
};

static const struct ks_real_rule {
    uint16_t symbol, version;   /* offsets into ks_strings */
    unsigned char where;        /* enum ks_real_where */
} ks_rules[KS_FN_COUNT] = {
#define KS_X(field, sym, ver, wh, ret, params)                                                \
    [KS_FN_##field] = {offsetof(struct ks_real_strings, field),                              \
                       offsetof(struct ks_real_strings, field##_v), wh},
    KS_REAL_TABLE(KS_X)
#undef KS_X
};
_Static_assert(sizeof ks_strings <= UINT16_MAX, "the rules' offsets are 16 bits");

KS_START_PATH static const char *ks_rule_symbol(const struct ks_real_rule *r)
{
    return (const char *)&ks_strings + r->symbol;
}

/* NULL for the default version (written "" in the table). */
KS_START_PATH static const char *ks_rule_version(const struct ks_real_rule *r)
{
    const char *v = (const char *)&ks_strings + r->version;
    return *v ? v : NULL;
}

const char *ks_real_symbol(enum ks_real_id f) { return ks_rule_symbol(&ks_rules[f]); }
enum ks_real_where ks_real_where_of(enum ks_real_id f) { return ks_rules[f].where; }

/* Per entry: set once a walk for it has stored what it found (release,
 * after the table's store): a NULL entry is then a function the process
 * does not have, and KS_REAL stops looking. */
KS_HOT_DATA static unsigned char ks_real_looked[KS_FN_COUNT];
/* Per entry: its definition is libc's (ks_real_is_libcs), stored before
 * the entry itself. */
KS_HOT_DATA static unsigned char ks_real_libcs[KS_FN_COUNT];
/* Set once a walk for every entry has ended (ks_real_table_complete). */
KS_HOT_DATA static int ks_real_all_looked;
static __thread int ks_resolve_depth __attribute__((tls_model("initial-exec")));
#define KS_RESOLVE_MAX_DEPTH 3

/* libc's lookup tables as the first walk to reach libc read them, for the
 * mutex probe (ks_real_libc), which would otherwise walk the loader's list
 * again at every start for the same object (about 1,900 instructions).
 * One walk claims the slot (0 -> 1), writes it, then publishes it (2). */
KS_HOT_DATA static struct ks_elf_obj ks_libc_obj;
KS_HOT_DATA static int ks_libc_obj_set;

KS_START_PATH int ks_real_libc(struct ks_elf_obj *out)
{
    if (__atomic_load_n(&ks_libc_obj_set, __ATOMIC_ACQUIRE) != 2)
        return ENOENT;
    *out = ks_libc_obj;
    return 0;
}

/* For tests/unit/resolve_test: called at each object a walk visits. */
KS_HOT_DATA void (*ks_resolve_visit_hook)(void);

/* Per entry, during one walk (on the stack: 32 bytes an entry). */
struct ks_found {
    int id;                      /* enum ks_real_id */
    void *first;                 /* the first definition after the shim, default version */
    void *exact;                 /* the first definition at the rule's version */
    uint32_t hash;               /* of the symbol's name */
    unsigned char first_is_libc;
    unsigned char exact_is_libc;
    unsigned char final;         /* nothing later in load order can change it */
};

/* One walk, for the N entries found[0..N-1] name. */
struct ks_walk {
    uintptr_t self;      /* an address inside the object that holds this code */
    int after_self;      /* objects before ours are not searched (RTLD_NEXT) */
    int n;
    int left;            /* entries not final yet */
    struct ks_found *found;
};

KS_START_PATH static int ks_is_libc(const struct ks_elf_obj *o)
{
    static const char want[] = "libc.so.6";
    for (size_t i = 0; i < sizeof want; i++)
        if (o->soname[i] != want[i])
            return 0;
    return 1;
}

/* Applies entry F's rule to object O, the next in load order. */
KS_START_PATH static void ks_visit_entry(struct ks_found *fd, const struct ks_elf_obj *o, int libc, int f)
{
    const struct ks_real_rule *r = &ks_rules[f];
    const ElfW(Sym) *s;
    if (r->where == KS_LIBC) {
        if (libc && (s = ks_elf_find(o, ks_rule_symbol(r), fd->hash, ks_rule_version(r)))) {
            fd->exact = ks_elf_addr(o, s);
            fd->exact_is_libc = 1;
        }
        fd->final = libc;   /* only libc's own counts, found or not */
        return;
    }
    const char *sym = ks_rule_symbol(r), *ver = ks_rule_version(r);
    if (!fd->first && (s = ks_elf_find(o, sym, fd->hash, NULL))) {
        fd->first = ks_elf_addr(o, s);
        fd->first_is_libc = libc;
    }
    if (ver && !fd->exact && (s = ks_elf_find(o, sym, fd->hash, ver))) {
        fd->exact = ks_elf_addr(o, s);
        fd->exact_is_libc = (unsigned char)libc;
    }
    /* An interposer's definition is taken as it is; libc's needs the
     * rule's version, if it has one. */
    fd->final = fd->first && (!fd->first_is_libc || !ver || fd->exact);
}

KS_START_PATH static int ks_visit(struct dl_phdr_info *info, size_t size, void *arg)
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
    int unclaimed = 0;
    if (libc && __atomic_load_n(&ks_libc_obj_set, __ATOMIC_RELAXED) == 0 &&
        __atomic_compare_exchange_n(&ks_libc_obj_set, &unclaimed, 1, 0, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
        ks_libc_obj = o;
        __atomic_store_n(&ks_libc_obj_set, 2, __ATOMIC_RELEASE);
    }
    for (int i = 0; i < w->n; i++) {
        struct ks_found *fd = &w->found[i];
        if (fd->final)
            continue;
        ks_visit_entry(fd, &o, libc, fd->id);
        w->left -= fd->final;
    }
    return w->left == 0;   /* nonzero stops the walk */
}

/* The definition entry FD stands for; *LIBCS: it is libc's. */
KS_START_PATH static void *ks_pick(const struct ks_real_rule *r, const struct ks_found *fd,
                                   int *libcs)
{
    if (r->where == KS_LIBC) {
        *libcs = fd->exact_is_libc;
        return fd->exact;
    }
    if (fd->first && !fd->first_is_libc) {
        *libcs = 0;
        return fd->first;   /* an interposer */
    }
    *libcs = fd->exact ? fd->exact_is_libc : fd->first_is_libc;
    return fd->exact ? fd->exact : fd->first;
}

/* Resolves those of the N entries FOUND[i].id that are still empty. */
KS_START_PATH static void ks_walk(int n, struct ks_found *found)
{
    struct ks_walk w = {.self = (uintptr_t)&ks_walk, .n = n, .found = found};
    for (int i = 0; i < n; i++) {
        struct ks_found *fd = &found[i];
        int f = fd->id;
        *fd = (struct ks_found){.id = f,
                                .final = __atomic_load_n(&ks_real_fn[f], __ATOMIC_ACQUIRE) != NULL};
        if (!fd->final) {
            fd->hash = ks_elf_gnu_hash(ks_rule_symbol(&ks_rules[f]));
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
    for (int i = 0; i < n; i++) {
        int libcs = 0;
        void *p = ks_pick(&ks_rules[found[i].id], &found[i], &libcs);
        if (!p)
            continue;
        __atomic_store_n(&ks_real_libcs[found[i].id], (unsigned char)libcs, __ATOMIC_RELAXED);
        __atomic_store_n(&ks_real_fn[found[i].id], p, __ATOMIC_RELEASE);
    }
}

/* Walks for the N entries FOUND[i].id and marks them looked up; nothing
 * past the depth limit. */
KS_START_PATH static void ks_resolve_some(int n, struct ks_found *found)
{
    if (ks_resolve_depth >= KS_RESOLVE_MAX_DEPTH)
        return;
    ks_resolve_depth++;
    ks_walk(n, found);
    ks_resolve_depth--;
    for (int i = 0; i < n; i++)
        __atomic_store_n(&ks_real_looked[found[i].id], 1, __ATOMIC_RELEASE);
}

void ks_real_resolve_all(void)
{
    if (__atomic_load_n(&ks_real_all_looked, __ATOMIC_ACQUIRE))
        return;
    struct ks_found found[KS_FN_COUNT];
    for (int f = 0; f < KS_FN_COUNT; f++)
        found[f].id = f;
    int depth = ks_resolve_depth;
    ks_resolve_some(KS_FN_COUNT, found);
    if (depth < KS_RESOLVE_MAX_DEPTH)
        __atomic_store_n(&ks_real_all_looked, 1, __ATOMIC_RELEASE);
}

KS_START_PATH int ks_real_is_libcs(enum ks_real_id f)
{
    return ks_real_get(f) && __atomic_load_n(&ks_real_libcs[f], __ATOMIC_RELAXED);
}

int ks_real_table_complete(void) { return __atomic_load_n(&ks_real_all_looked, __ATOMIC_ACQUIRE); }

/* What every process under the shim calls at start (the shim's locks, its
 * signal handlers' install), in one walk rather than one each; and _exit. */
KS_START_PATH void ks_real_resolve_init(void)
{
    static const unsigned char ids[] = {
        KS_FN__exit, KS_FN_pthread_mutex_lock, KS_FN_pthread_mutex_unlock,
        KS_FN_pthread_mutex_trylock,   /* the mutex fast path's probe (mutex_fast.c) */
        KS_FN_pthread_sigmask, KS_FN_sigprocmask, KS_FN_libc_sigaction,
        KS_FN_sigaction,   /* checked by the install (signals.c): a walk of its own */
    };
    struct ks_found found[sizeof ids];
    for (size_t i = 0; i < sizeof ids; i++)
        found[i].id = ids[i];
    ks_resolve_some(sizeof ids, found);
}

/* For tests/unit/resolve_test only: forgets everything, as before the first
 * resolution. Never called by the shim (a hook could read a cleared entry). */
void ks_real_forget(void)
{
    for (int f = 0; f < KS_FN_COUNT; f++) {
        __atomic_store_n(&ks_real_fn[f], NULL, __ATOMIC_RELEASE);
        __atomic_store_n(&ks_real_looked[f], 0, __ATOMIC_RELEASE);
        __atomic_store_n(&ks_real_libcs[f], 0, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&ks_real_all_looked, 0, __ATOMIC_RELEASE);
}

KS_START_PATH void *ks_real_miss(enum ks_real_id f)
{
    /* A thread started around the hook (glibc's own helper threads, a
     * sanitizer's runtime): the fork handlers, whose prepare completes the
     * table in the parent and whose child resets the shim's locks, are
     * registered from here on (init.c: they are registered at a process's
     * first need). */
    if (!__libc_single_threaded)
        ks_fork_need();
    if (!__atomic_load_n(&ks_real_looked[f], __ATOMIC_ACQUIRE)) {
        if (f == KS_FN_pthread_create) {
            ks_real_resolve_all();   /* before a second thread: see the top */
        } else {
            struct ks_found one = {.id = f};
            ks_resolve_some(1, &one);
        }
    }
    return __atomic_load_n(&ks_real_fn[f], __ATOMIC_ACQUIRE);
}
