/* See attach.h: the threads that were there before a late load. */
#include "attach.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "shim/common/procfs.h"
#include "ks.h"

int ks_loaded_late;

/* One thread that was there at the attach: its tid and its struct pthread
 * (0 if glibc's thread list did not show it). */
struct ks_pre {
    pid_t tid;
    uintptr_t pd;
};

/* Written once by ks_preattach_note; read-only afterwards. Sorted by tid,
 * for bsearch. The pointer is published with a release store after the
 * count: the control server may already run when the note is taken (a
 * second attach, or any client, rang the doorbell between the shim's
 * constructor and its entry, while the loader was busy). */
static struct ks_pre *ks_pre;
static int ks_pre_n;

/* Where glibc keeps what ks_preattach_thread reads, from its libthread_db
 * descriptors (_thread_db_*: size in bits, count, offset), found once at the
 * note. 0 offsets where the descriptor is missing or of another shape: the
 * pthread_t of a pre-attach thread is then unknown, and it is not ended. */
static struct {
    size_t tid, cancel, list, start; /* in struct pthread (start: 0 unknown) */
    size_t used, user;               /* list heads in _rtld_global */
    uintptr_t rtld_global;
    int ok;
} ks_td;

static int ks_pre_cmp(const void *a, const void *b)
{
    pid_t x = ((const struct ks_pre *)a)->tid, y = ((const struct ks_pre *)b)->tid;
    return (x > y) - (x < y);
}

/* Copies LEN bytes at ADDR of this process without touching ADDR: the
 * kernel copies, so memory unmapped since (a freed thread stack) is EFAULT,
 * not a fault in the shim. Returns 0 or an errno. */
static int ks_pre_peek(uintptr_t addr, void *buf, size_t len)
{
    struct iovec local = {buf, len}, remote = {(void *)addr, len};
    ssize_t n = syscall(SYS_process_vm_readv, ks_getpid(), &local, 1UL, &remote, 1UL, 0UL);
    return n == (ssize_t)len ? 0 : n < 0 ? errno : EFAULT;
}

/* The offset in descriptor NAME if it describes one field of BITS bits. */
static int ks_td_field(void *lib, const char *name, uint32_t bits, size_t *off)
{
    const uint32_t *d = dlsym(lib, name);
    if (!d || d[0] != bits || d[1] != 1)
        return -1;
    *off = d[2];
    return 0;
}

static void ks_td_init(void)
{
    void *lib = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!lib)
        return;
    uintptr_t *rg = dlsym(lib, "__nptl_rtld_global");   /* glibc >= 2.34 */
    int bad = !rg;
    bad |= ks_td_field(lib, "_thread_db_pthread_tid", 32, &ks_td.tid);
    bad |= ks_td_field(lib, "_thread_db_pthread_cancelhandling", 32, &ks_td.cancel);
    bad |= ks_td_field(lib, "_thread_db_pthread_list", 128, &ks_td.list);
    bad |= ks_td_field(lib, "_thread_db_rtld_global__dl_stack_used", 128, &ks_td.used);
    bad |= ks_td_field(lib, "_thread_db_rtld_global__dl_stack_user", 128, &ks_td.user);
    if (ks_td_field(lib, "_thread_db_pthread_start_routine", 64, &ks_td.start) != 0)
        ks_td.start = 0;   /* optional: only the language-runtime check uses it */
    if (!bad) {
        ks_td.rtld_global = *rg;
        ks_td.ok = ks_td.rtld_global != 0;
    }
    dlclose(lib);   /* only drops the reference RTLD_NOLOAD took */
    if (!ks_td.ok)
        ks_debug("glibc's thread list not found: pre-attach threads cannot be ended");
}

/* Fills the pd of each noted thread found on glibc's list at HEAD (an
 * offset in _rtld_global): the threads it created (stack_used) or was given
 * a stack for, and the main thread (stack_user). The walk does not take
 * glibc's lock (it is not exported): every read is a peek, the walk is
 * bounded, and a node counts only if its struct pthread names a noted tid,
 * so a list changing under the walk at worst misses a thread. */
static void ks_td_walk(size_t head, struct ks_pre *pre, int n)
{
    uintptr_t first = ks_td.rtld_global + head, node;
    if (ks_pre_peek(first, &node, sizeof node) != 0)
        return;
    for (int steps = 0; node && node != first && steps < 100000; steps++) {
        uintptr_t pd = node - ks_td.list;
        int32_t tid;
        if (ks_pre_peek(pd + ks_td.tid, &tid, sizeof tid) != 0)
            return;
        struct ks_pre key = {tid, 0}, *hit = bsearch(&key, pre, (size_t)n, sizeof key, ks_pre_cmp);
        if (hit)
            hit->pd = pd;
        if (ks_pre_peek(node, &node, sizeof node) != 0)   /* list_t's next comes first */
            return;
    }
}

void ks_preattach_note(void)
{
    if (__atomic_load_n(&ks_pre, __ATOMIC_ACQUIRE))
        return;
    int n = 0;
    pid_t *tids = ks_read_ids("/proc/self/task", &n);
    if (!tids)
        return;
    struct ks_pre *pre = calloc((size_t)n + 1, sizeof *pre);
    if (!pre) {
        free(tids);
        return;
    }
    pid_t self = ks_gettid();
    int k = 0;
    for (int i = 0; i < n; i++)
        if (tids[i] != self)   /* the attach's own thread, which ends now */
            pre[k++].tid = tids[i];
    free(tids);
    qsort(pre, (size_t)k, sizeof *pre, ks_pre_cmp);
    ks_td_init();
    if (ks_td.ok) {
        ks_td_walk(ks_td.used, pre, k);
        ks_td_walk(ks_td.user, pre, k);
    }
    ks_pre_n = k;
    __atomic_store_n(&ks_pre, pre, __ATOMIC_RELEASE);
}

static const struct ks_pre *ks_pre_find(pid_t tid)
{
    struct ks_pre *pre = __atomic_load_n(&ks_pre, __ATOMIC_ACQUIRE);
    struct ks_pre key = {tid, 0};
    return pre ? bsearch(&key, pre, (size_t)ks_pre_n, sizeof key, ks_pre_cmp) : NULL;
}

int ks_preattach_has(pid_t tid) { return ks_pre_find(tid) != NULL; }

int ks_preattach_thread(pid_t tid, pthread_t *pd, int *cancelhandling)
{
    const struct ks_pre *p = ks_pre_find(tid);
    if (!p)
        return ESRCH;
    if (!p->pd)
        return ENOENT;
    /* The kernel zeroes the tid field when the thread exits
     * (CLONE_CHILD_CLEARTID), and a struct pthread reused for a later
     * thread holds that thread's tid: equal means it is still this thread. */
    int32_t now;
    int ch;
    if (ks_pre_peek(p->pd + ks_td.tid, &now, sizeof now) != 0 || now != tid ||
        ks_pre_peek(p->pd + ks_td.cancel, &ch, sizeof ch) != 0)
        return ESRCH;
    *pd = (pthread_t)p->pd;
    *cancelhandling = ch;
    return 0;
}

void *ks_preattach_start_routine(pid_t tid)
{
    pthread_t pd;
    int ch;
    void *start = NULL;
    if (!ks_td.start || ks_preattach_thread(tid, &pd, &ch) != 0 ||
        ks_pre_peek((uintptr_t)pd + ks_td.start, &start, sizeof start) != 0)
        return NULL;
    return start;
}

/* One compare-and-swap, as glibc's own updates of the word (the thread's
 * cancellable calls flip the type bit around each system call: if one
 * clears it right after, the cancel stays a deferred one, acted on at the
 * thread's next cancellation point). The cancelled bits are cleared because
 * glibc's SIGCANCEL handler acts only on a thread it finds not yet marked:
 * a deferred cancel asked before (a CPU loop never acts on one) would make
 * it ignore the signal. The handler sets them again and unwinds the thread.
 * Returns 0, or ESRCH if the thread is already on its way out. */
int ks_preattach_set_async(pthread_t pd)
{
    int *word = (int *)((char *)pd + ks_td.cancel);
    int old = __atomic_load_n(word, __ATOMIC_RELAXED), want;
    do {
        if (old & KS_EXITING_BIT)
            return ESRCH;
        want = (old | KS_CANCELTYPE_BIT) & ~(KS_CANCELING_BIT | KS_CANCELED_BIT);
    } while (!__atomic_compare_exchange_n(word, &old, want, 1, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return 0;
}
