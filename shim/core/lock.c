/* See lock.h. */
#include "lock.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ks.h"
#include "mutex_fast.h"

/* A shim lock is a default mutex: uncontended, it is taken and released
 * inline, as glibc would (mutex_fast.h, the same words and protocol, and
 * off where glibc was not seen doing exactly that, and under TSan); taken,
 * or with the fast path off, glibc does it. Each real call was about 40
 * instructions, and a create+join takes three shim locks. */
KS_THREAD_PATH void ks_lock(struct ks_lock *l)
{
    if (!ks_mutex_fast_lock(&l->mu))
        KS_REAL(pthread_mutex_lock)(&l->mu);
    KS_TSAN_ACQUIRE(&l->mu);
}

/* In the fork path's text: a fork child unlocks what its thread took in
 * the fork's prepare (init.c), and touches one code page less. */
KS_FORK_PATH void ks_unlock(struct ks_lock *l)
{
    KS_TSAN_RELEASE(&l->mu);
    int fast = ks_mutex_fast_unlock(&l->mu);
    if (fast == KS_MUTEX_RELEASED_WAKE)
        ks_mutex_wake(&l->mu.__data.__lock);
    else if (fast == KS_MUTEX_GLIBC)
        KS_REAL(pthread_mutex_unlock)(&l->mu);
}

int ks_trylock(struct ks_lock *l)
{
    int rc = KS_REAL(pthread_mutex_trylock)(&l->mu);
    if (rc == 0)
        KS_TSAN_ACQUIRE(&l->mu);
    return rc;
}

KS_FORK_PATH int ks_locks_each(void (*fn)(struct ks_lock *, void *), void *arg)
{
    int n = 0;
    for (struct ks_lock *const *p = __start_ks_locks; p && p < __stop_ks_locks; p++, n++)
        fn(*p, arg);
    return n;
}

/* Resets L only if it is not in its initial state: every page the fork
 * child writes is copied, and most children exec or exit at once. */
KS_FORK_PATH static void ks_lock_reset(struct ks_lock *l, void *arg)
{
    (void)arg;
    static const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    if (memcmp(&l->mu, &fresh, sizeof fresh) != 0)
        l->mu = fresh;
}

KS_FORK_PATH void ks_locks_after_fork(void) { ks_locks_each(ks_lock_reset, NULL); }

void ks_nap_ns(uint64_t ns)
{
    int saved = errno;
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (syscall(SYS_nanosleep, &ts, &ts) != 0 && errno == EINTR)
        ;
    errno = saved;
}
