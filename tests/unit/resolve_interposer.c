/* An interposer between resolve_test and libc, as a sanitizer's runtime or
 * a profiler is between the shim and libc: unversioned definitions of a few
 * of the shim's real functions, each forwarding to the next one. The test
 * links it before libc, so it comes first in load order after the test. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/sem.h>
#include <time.h>

int sigaction(int signo, const struct sigaction *act, struct sigaction *old)
{
    int (*next)(int, const struct sigaction *, struct sigaction *) =
        (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    return next(signo, act, old);
}

int semtimedop(int id, struct sembuf *ops, size_t n, const struct timespec *t)
{
    int (*next)(int, struct sembuf *, size_t, const struct timespec *) =
        (int (*)(int, struct sembuf *, size_t, const struct timespec *))dlsym(RTLD_NEXT, "semtimedop");
    return next(id, ops, n, t);
}

int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *t)
{
    int (*next)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *) =
        (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))dlvsym(
            RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
    return next(c, m, t);
}
