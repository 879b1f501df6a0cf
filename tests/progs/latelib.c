/* A library attach_ends dlopens after the attach (tests/e2e/attach_test):
 * its own GOT binds pthread_create and the mutex functions, which the shim
 * must patch once it sees the object loaded. latelib_start starts a thread
 * that takes a mutex, pushes a cleanup that releases it, and blocks in
 * read() of a pipe nobody writes; latelib_try reports whether the mutex is
 * free. */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t late_mu = PTHREAD_MUTEX_INITIALIZER;
static int never[2];
static volatile long late_tid;

static void unlock(void *m) { pthread_mutex_unlock(m); }

static void *late_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&late_mu);
    pthread_cleanup_push(unlock, &late_mu);
    __atomic_store_n(&late_tid, (long)syscall(SYS_gettid), __ATOMIC_RELEASE);
    char c;
    if (read(never[0], &c, 1) < 0)
        c = 0;
    pthread_cleanup_pop(1);
    return NULL;
}

/* Returns the new thread's tid once it holds the mutex, or 0. */
long latelib_start(void)
{
    pthread_t t;
    if (pipe(never) != 0 || pthread_create(&t, NULL, late_worker, NULL) != 0)
        return 0;
    pthread_detach(t);
    while (!__atomic_load_n(&late_tid, __ATOMIC_ACQUIRE))
        usleep(1000);
    return late_tid;
}

/* 1 if the mutex is free (taken and given back), 0 if somebody holds it. */
int latelib_try(void)
{
    if (pthread_mutex_trylock(&late_mu) != 0)
        return 0;
    pthread_mutex_unlock(&late_mu);
    return 1;
}
