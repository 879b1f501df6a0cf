/* abort_victims' lock victims: a lock taken each way the shim counts
 * (trylock, timedlock, clocklock, the write locks of an rwlock, a recursive
 * mutex taken twice), held while the thread spins, then released: an abort
 * asked meanwhile must wait for the last unlock and leave there. And lock
 * calls that fail, which hold nothing: an abort leaves at once. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "tests/progs/abort_victims.h"

static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t hold_rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t rec_mu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static __thread volatile unsigned long sink;   /* per thread: no victim races another */

__attribute__((noinline)) static unsigned long work(unsigned long x)
{
    __asm__ volatile("" ::: "memory");
    return x * 2654435761u + 1;
}

static struct timespec in_ms(clockid_t clk, long ms)
{
    struct timespec t;
    clock_gettime(clk, &t);
    t.tv_nsec += ms * 1000000L;
    t.tv_sec += t.tv_nsec / 1000000000L;
    t.tv_nsec %= 1000000000L;
    return t;
}

static void spin_until(int *flag)
{
    while (!__atomic_load_n(flag, __ATOMIC_RELAXED))
        sink = work(sink);
}

/* Takes one lock the way HOW says; 0 if it holds it now. */
static int take(const char *how, pthread_mutex_t **mu, pthread_rwlock_t **rwl)
{
    struct timespec rt = in_ms(CLOCK_REALTIME, 5000), mono = in_ms(CLOCK_MONOTONIC, 5000);
    *mu = &hold_mu;
    *rwl = NULL;
    if (!strcmp(how, "trylock"))
        return pthread_mutex_trylock(&hold_mu);
    if (!strcmp(how, "timedlock"))
        return pthread_mutex_timedlock(&hold_mu, &rt);
    if (!strcmp(how, "clocklock"))
        return pthread_mutex_clocklock(&hold_mu, CLOCK_MONOTONIC, &mono);
    *mu = NULL;
    *rwl = &hold_rw;
    if (!strcmp(how, "wrlock"))
        return pthread_rwlock_wrlock(&hold_rw);
    if (!strcmp(how, "trywrlock"))
        return pthread_rwlock_trywrlock(&hold_rw);
    if (!strcmp(how, "timedwrlock"))
        return pthread_rwlock_timedwrlock(&hold_rw, &rt);
    if (!strcmp(how, "clockwrlock"))
        return pthread_rwlock_clockwrlock(&hold_rw, CLOCK_MONOTONIC, &mono);
    return EINVAL;
}

/* Holds a lock taken the way HOW says until "release", then unlocks: an
 * abort asked meanwhile must wait for that unlock, and leave there. */
void run_hold(struct victim *v, const char *how)
{
    pthread_mutex_t *mu;
    pthread_rwlock_t *rwl;
    if (!strcmp(how, "recursive")) {
        pthread_mutex_lock(&rec_mu);
        pthread_mutex_lock(&rec_mu);
        announce(v);
        spin_until(&released);
        pthread_mutex_unlock(&rec_mu);
        say("unlocked-once %d\n", v->idx);
        spin_until(&released2);
        pthread_mutex_unlock(&rec_mu);
    } else {
        if (take(how, &mu, &rwl) != 0) {
            say("lock failed %d %s\n", v->idx, how);
            return;
        }
        announce(v);
        spin_until(&released);
        if (mu)
            pthread_mutex_unlock(mu);
        else
            pthread_rwlock_unlock(rwl);
    }
    say("unlocked %d\n", v->idx);
    for (;;)
        sink = work(sink);
}

/* A lock call that fails holds nothing: an abort leaves at once. */
void run_fail(struct victim *v, const char *how)
{
    struct timespec rt = in_ms(CLOCK_REALTIME, 10);
    int rc = !strcmp(how, "trylock") ? pthread_mutex_trylock(&dead_mu)
                                     : pthread_mutex_timedlock(&dead_mu, &rt);
    if (rc == 0) {
        say("lock failed %d %s: it was free\n", v->idx, how);
        return;
    }
    announce(v);
    for (;;)
        sink = work(sink);
}

int hold_try(const char *name)
{
    pthread_mutex_t *mu = !strcmp(name, "hold_mu") ? &hold_mu : !strcmp(name, "rec_mu") ? &rec_mu : NULL;
    if (mu) {
        int rc = pthread_mutex_trylock(mu);
        if (rc == 0)
            pthread_mutex_unlock(mu);
        return rc;
    }
    if (strcmp(name, "hold_rw") != 0)
        return EINVAL;
    int rc = pthread_rwlock_trywrlock(&hold_rw);
    if (rc == 0)
        pthread_rwlock_unlock(&hold_rw);
    return rc;
}
