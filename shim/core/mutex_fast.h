/* The uncontended lock and unlock of a default pthread mutex, inline in the
 * lock hooks (interpose_lock.c), so that counting a held lock does not cost
 * a second call through to glibc (docs/bench.md: that call alone was 1.4x a
 * lock+unlock pair).
 *
 * Only what glibc 2.36 does itself for a mutex whose __kind is 0
 * (PTHREAD_MUTEX_TIMED_NP: the default type, private, not robust, not PI,
 * no elision flag), from nptl/pthread_mutex_lock.c, pthread_mutex_unlock.c,
 * pthread_mutex_trylock.c and sysdeps/nptl/lowlevellock.h:
 *   lock:    __lock 0 -> 1 (a CAS with acquire; a plain store while the
 *            process has one thread), then __owner = the caller's tid as
 *            glibc keeps it (struct pthread's tid) and ++__nusers;
 *   unlock:  __owner = 0, --__nusers, then __lock = 0 (an exchange with
 *            release; a plain store while single-threaded), and if it was 2
 *            (waiters) the futex wake of one, FUTEX_WAKE_PRIVATE;
 *   trylock: the CAS, then the same owner and count.
 * Everything else returns 0 here and the hook calls glibc, which then does
 * the whole call: any other __kind (every other type, robust, PI,
 * process-shared, elision), a lock that is taken (the wait is glibc's), and
 * everything while ks_mutex_fast_off is 1. The two are one protocol on the
 * same words, so a mutex locked by one may be unlocked by the other, and
 * pthread_cond_wait (glibc's, on the mutex's words) is unaffected.
 *
 * ks_mutex_fast_init turns it on only after a probe shows that glibc does
 * exactly this here (mutex_fast.c; the trylock's part at the first trylock,
 * ks_mutex_fast_try_probe): the lock hooks' next definitions are
 * libc's own (not a sanitizer's or another interposer's, which must see
 * every lock), glibc writes the tid the fast path would and leaves __kind
 * alone (it marks __kind when elision is forced, glibc.elision.enable=1:
 * then it stays off), and it is never on in a ThreadSanitizer build. */
#ifndef KS_MUTEX_FAST_H
#define KS_MUTEX_FAST_H

#include <pthread.h>
#include <sys/single_threaded.h>
#include <sys/types.h>

#include "ks.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 until ks_mutex_fast_init turns the fast path on (0), once, before or
 * while hooks run: either value is correct at any moment (the two paths
 * share the protocol). Or'ed into the mutex's __kind, so that one compare
 * with 0 tests both. */
extern int ks_mutex_fast_off __attribute__((visibility("hidden")));
/* The trylock's own switch, or'ed into the test of ks_mutex_fast_trylock:
 * KS_MUTEX_TRY_UNPROBED until the first trylock through the hooks once the
 * fast path is on, which checks glibc's own trylock
 * (ks_mutex_fast_try_probe), then 0 if it agreed, KS_MUTEX_TRY_REFUSED if
 * not. As ks_mutex_fast_off, either value is correct at any moment. */
enum { KS_MUTEX_TRY_UNPROBED = 1, KS_MUTEX_TRY_REFUSED = 2 };
extern int ks_mutex_fast_try_off __attribute__((visibility("hidden")));
/* Offset of struct pthread's tid from the thread pointer (where the kernel
 * keeps the thread's clear_child_tid, or glibc's _thread_db_pthread_tid;
 * checked by the probe): the value glibc writes to __owner, also right in
 * a fork child before any atfork handler ran. */
extern unsigned long ks_mutex_tid_off __attribute__((visibility("hidden")));

/* Probes glibc and turns the fast path on if it is safe (see above). Once,
 * from ks_init, after the real functions are resolved. */
void ks_mutex_fast_init(void);
void ks_mutex_fast_init_as(pid_t tid);   /* TID: the caller's, already asked for */
/* The trylock's half of the probe, out of line: the trylock hook calls it
 * while ks_mutex_fast_try_off is KS_MUTEX_TRY_UNPROBED (it does nothing
 * while the fast path is off). Any thread, any number of times. */
void ks_mutex_fast_try_probe(void);

/* Wakes one waiter of LOCK, as glibc's __lll_lock_wake does
 * (FUTEX_WAKE_PRIVATE, 1); errno is left as it was. LOCK may be freed
 * memory by then (another thread took, released and freed the mutex): a
 * wake of an address nobody waits on does nothing, as in glibc. */
void ks_mutex_wake(int *lock);

/* The pid_t at OFF from the thread pointer (%fs on x86-64, where glibc's
 * struct pthread begins). An asm, not __seg_fs: the header is also C++'s. */
static inline pid_t ks_mutex_tp_pid(unsigned long off)
{
    pid_t v;
    __asm__("movl %%fs:(%1), %0" : "=r"(v) : "r"(off));
    return v;
}

static inline pid_t ks_mutex_glibc_tid(void) { return ks_mutex_tp_pid(ks_mutex_tid_off); }

/* The caller's tid from glibc's copy where the probe found it, else 0 (the
 * probe off, or not run yet): readable where ks_mutex_tid_off is set, in a
 * new thread from its first instruction and in a fork child before any
 * atfork handler (the kernel writes it), async-signal-safe. */
static inline pid_t ks_mutex_self_tid(void)
{
    unsigned long off = __atomic_load_n(&ks_mutex_tid_off, __ATOMIC_RELAXED);
    return off ? ks_mutex_tp_pid(off) : 0;
}

static inline int ks_mutex_fast_eligible(pthread_mutex_t *m)
{
    return (__atomic_load_n(&ks_mutex_fast_off, __ATOMIC_RELAXED) |
            __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED)) == 0;
}

/* 1 if M was taken here (the caller then holds it), 0 if glibc must do the
 * call (nothing was changed). */
static inline int ks_mutex_fast_lock(pthread_mutex_t *m)
{
    if (!ks_mutex_fast_eligible(m))
        return 0;
    int *lock = &m->__data.__lock;
    /* The single-threaded branch is the fall-through here and in the
     * unlock: without an atomic, a pair is a few ns and each taken jump
     * showed (docs/bench.md, branch mutexst); the multithreaded pair's two
     * atomics dwarf the two jumps it takes instead. */
    if (KS_LIKELY(__libc_single_threaded)) {
        /* Only this thread exists, and only it could create another. A
         * taken lock is glibc's business (a normal mutex relocked hangs). */
        if (__atomic_load_n(lock, __ATOMIC_RELAXED) != 0)
            return 0;
        __atomic_store_n(lock, 1, __ATOMIC_RELAXED);
    } else {
        int free = 0;
        if (!__atomic_compare_exchange_n(lock, &free, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return 0;
    }
    m->__data.__owner = ks_mutex_glibc_tid();
    ++m->__data.__nusers;
    return 1;
}

static inline int ks_mutex_fast_trylock(pthread_mutex_t *m)
{
    if (!ks_mutex_fast_eligible(m) || __atomic_load_n(&ks_mutex_fast_try_off, __ATOMIC_RELAXED))
        return 0;
    int free = 0;
    if (!__atomic_compare_exchange_n(&m->__data.__lock, &free, 1, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return 0;
    m->__data.__owner = ks_mutex_glibc_tid();
    ++m->__data.__nusers;
    return 1;
}

enum { KS_MUTEX_GLIBC, KS_MUTEX_RELEASED, KS_MUTEX_RELEASED_WAKE };

/* KS_MUTEX_RELEASED if M was released here; KS_MUTEX_RELEASED_WAKE if it
 * was and a waiter marked it (glibc's __lll_lock_wait sets 2): the caller
 * then calls ks_mutex_wake(&m->__data.__lock), out of line, as glibc's
 * unlock calls __lll_lock_wake; KS_MUTEX_GLIBC if glibc must do the call.
 * As glibc's, it does not check that the caller owns M (unlocking another
 * thread's normal mutex is undefined). */
static inline int ks_mutex_fast_unlock(pthread_mutex_t *m)
{
    if (!ks_mutex_fast_eligible(m))
        return KS_MUTEX_GLIBC;
    int *lock = &m->__data.__lock;
    m->__data.__owner = 0;
    --m->__data.__nusers;
    if (KS_LIKELY(__libc_single_threaded)) {
        __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
        return KS_MUTEX_RELEASED;
    }
    return __atomic_exchange_n(lock, 0, __ATOMIC_RELEASE) > 1 ? KS_MUTEX_RELEASED_WAKE
                                                              : KS_MUTEX_RELEASED;
}

#ifdef __cplusplus
}
#endif
#endif
