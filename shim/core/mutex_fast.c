/* See mutex_fast.h. The probe: the fast path is turned on only where glibc
 * is seen doing exactly what it replicates, on this machine, in this
 * process, with whatever tunables it was started with. */
#include "mutex_fast.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "elf_sym.h"
#include "ks.h"
#include "real.h"

int ks_mutex_fast_off = 1;
int ks_mutex_fast_try_off = KS_MUTEX_TRY_UNPROBED;
KS_HOT_DATA unsigned long ks_mutex_tid_off;   /* written at start: not a .bss page of its own */

void ks_mutex_wake(int *lock)
{
    int e = errno;
    syscall(SYS_futex, lock, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = e;
}

/* struct pthread's tid offset, from the descriptor glibc keeps for
 * libthread_db: {bits, elements, offset}; also libc's object into LIBC (as
 * ks_real_resolve_init's walk read it, or from a walk of its own). 0 if
 * absent or implausible. */
KS_START_PATH static unsigned long ks_tid_off_of_libc(struct ks_elf_obj *libc)
{
    static const char name[] = "_thread_db_pthread_tid";
    struct ks_elf_loaded l;
    if (ks_real_libc(&l.obj) == 0) {
        l.sym = ks_elf_find(&l.obj, name, ks_elf_gnu_hash(name), NULL);
        if (!l.sym)
            return 0;
    } else if (ks_elf_find_loaded(name, "libc.so.6", &l) != 0) {
        return 0;
    }
    *libc = l.obj;
    const uint32_t *d = ks_elf_addr(&l.obj, l.sym);
    if (!d || d[0] != 32 || d[1] != 1 || d[2] == 0 || d[2] % 4 != 0 || d[2] > 4096)
        return 0;
    return d[2];
}

/* The same offset from the kernel, without reading libc's descriptor:
 * that is a page of libc's data that a program like /bin/true never
 * touches, a page fault in every process at start (about 3 us here; the
 * system call is about 0.6, docs/bench.md). The kernel's clear_child_tid
 * of the calling thread (PR_GET_TID_ADDRESS) is where glibc asked the
 * kernel to keep the thread's tid: &pd->tid, by set_tid_address at start
 * for the main thread (__tls_init_tp, 2.34 on; the same call in
 * __pthread_initialize_minimal before), by clone's CLONE_CHILD_CLEARTID for
 * a thread of pthread_create and for a fork child; glibc sets it nowhere
 * else. The caller then checks that the word there holds the tid (as the
 * descriptor's answer is checked). 0 where the kernel cannot tell (built
 * without CONFIG_CHECKPOINT_RESTORE: EINVAL) or the address is not in the
 * first 4 KiB of the thread's descriptor (the program moved it with a
 * set_tid_address of its own). A system call of its own, not libc's
 * prctl: binding that would fault in a page of libc's code. */
KS_START_PATH static unsigned long ks_tid_off_of_kernel(void)
{
    uintptr_t addr = 0, tp;
    long rc;
    __asm__ volatile("syscall"
                     : "=a"(rc)
                     : "0"((long)SYS_prctl), "D"((long)PR_GET_TID_ADDRESS), "S"(&addr),
                       "d"(0L)
                     : "rcx", "r11", "memory");
    __asm__("movq %%fs:0, %0" : "=r"(tp));   /* x86-64: the descriptor's own address */
    if (rc != 0 || addr <= tp || addr - tp > 4096 || (addr - tp) % 4 != 0)
        return 0;
    return addr - tp;
}

/* The kernel's answer, or libc's descriptor's where the kernel gives none
 * or its word does not hold TID; libc's object into LIBC either way (the
 * descriptor's path finds it by a walk of its own if the init's is not
 * there). */
KS_START_PATH static unsigned long ks_find_tid_off(struct ks_elf_obj *libc, pid_t tid)
{
    unsigned long off = ks_tid_off_of_kernel();
    if (off != 0 && ks_mutex_tp_pid(off) == tid && ks_real_libc(libc) == 0)
        return off;
    return ks_tid_off_of_libc(libc);
}

struct ks_mutex_words {
    int lock;
    unsigned int count;
    int owner;
    unsigned int nusers;
    int kind;
};

KS_START_PATH static int ks_words_are(const pthread_mutex_t *m, struct ks_mutex_words w)
{
    return m->__data.__lock == w.lock && m->__data.__count == w.count &&
           m->__data.__owner == w.owner && m->__data.__nusers == w.nusers &&
           m->__data.__kind == w.kind;
}

/* glibc's own lock and unlock on a default mutex leave exactly the words
 * the fast path would, and never mark __kind (forced elision does); with
 * WITH_TRY, its trylock too, on a held and on a free mutex. The trylock is
 * not checked at start: glibc 2.36's reads a switch table in libc's
 * .rodata, a page that a program like /bin/true never touches (it is the
 * page of _thread_db_pthread_tid too), one page fault in every process
 * that never calls trylock (docs/bench.md). */
KS_START_PATH __attribute__((noinline)) static int ks_glibc_agrees(pid_t tid, int with_try)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    const struct ks_mutex_words held = {1, 0, tid, 1, 0}, free = {0, 0, 0, 0, 0};
    if (KS_REAL(pthread_mutex_lock)(&m) != 0)
        return 0;
    int ok = ks_words_are(&m, held);
    if (with_try) {
        ok &= KS_REAL(pthread_mutex_trylock)(&m) == EBUSY;   /* held: glibc says busy */
        ok &= ks_words_are(&m, held);
    }
    if (KS_REAL(pthread_mutex_unlock)(&m) != 0)
        return 0;
    ok &= ks_words_are(&m, free);
    if (!with_try)
        return ok;
    if (KS_REAL(pthread_mutex_trylock)(&m) != 0)
        return 0;
    ok &= ks_words_are(&m, held);
    if (KS_REAL(pthread_mutex_unlock)(&m) != 0)
        return 0;
    return ok && ks_words_are(&m, free);
}

void ks_mutex_fast_try_probe(void)
{
    if (__atomic_load_n(&ks_mutex_fast_off, __ATOMIC_ACQUIRE) != 0 ||
        __atomic_load_n(&ks_mutex_fast_try_off, __ATOMIC_RELAXED) != KS_MUTEX_TRY_UNPROBED)
        return;
    /* Racing callers each probe a mutex of their own and agree. */
    int ok = ks_glibc_agrees(ks_mutex_glibc_tid(), 1);
    __atomic_store_n(&ks_mutex_fast_try_off, ok ? 0 : KS_MUTEX_TRY_REFUSED, __ATOMIC_RELAXED);
    if (!ok)
        ks_debug("mutex fast path's trylock off: glibc's trylock is not the expected one");
}

KS_START_PATH void ks_mutex_fast_init(void) { ks_mutex_fast_init_as(ks_gettid()); }

KS_START_PATH void ks_mutex_fast_init_as(pid_t tid)
{
#if defined(__SANITIZE_THREAD__) || defined(KS_TSAN)
    /* ThreadSanitizer must see every lock: its interceptors are the next
     * definitions anyway (the check below), but say so here too. */
    (void)tid;
    ks_debug("mutex fast path off: ThreadSanitizer build");
    return;
#else
    struct ks_elf_obj libc;
    unsigned long off = ks_find_tid_off(&libc, tid);
    if (off == 0 || ks_mutex_tp_pid(off) != tid) {
        ks_debug("mutex fast path off: glibc's thread id not found");
        return;
    }
    if (!ks_real_is_libcs(KS_FN_pthread_mutex_lock) ||
        !ks_real_is_libcs(KS_FN_pthread_mutex_trylock) ||
        !ks_real_is_libcs(KS_FN_pthread_mutex_unlock)) {
        ks_debug("mutex fast path off: the lock functions are not libc's own");
        return;
    }
    ks_mutex_tid_off = off;
    if (!ks_glibc_agrees(tid, 0)) {
        ks_debug("mutex fast path off: glibc's default mutex is not the expected one "
                 "(elision forced?)");
        return;
    }
    __atomic_store_n(&ks_mutex_fast_off, 0, __ATOMIC_RELEASE);
    ks_debug("mutex fast path on (tid at +%lu)", off);
#endif
}
