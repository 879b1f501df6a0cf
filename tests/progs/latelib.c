/* A library attach_ends dlopens after the attach (tests/e2e/attach_end_test):
 * its imports (pthread_create, the mutex functions) are bound while it is
 * loaded, after the attach, and must reach the shim's hooks without any
 * request of a client in between.
 *
 * Its constructor (inside the dlopen, under the loader's lock) starts a
 * thread; latelib_start, called right after the dlopen, starts another.
 * Each takes a mutex of its own, pushes a cleanup that releases it, and
 * blocks in read() of a pipe nobody writes. latelib_tid gives a thread's
 * tid once it holds its mutex; latelib_try reports whether both mutexes
 * are free. */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

struct late {
    pthread_mutex_t mu;
    volatile long tid;
};
static struct late ctor_t = {PTHREAD_MUTEX_INITIALIZER, 0};
static struct late call_t = {PTHREAD_MUTEX_INITIALIZER, 0};
static int never[2] = {-1, -1};

static void unlock(void *m) { pthread_mutex_unlock(m); }

static void *late_worker(void *arg)
{
    struct late *l = arg;
    pthread_mutex_lock(&l->mu);
    pthread_cleanup_push(unlock, &l->mu);
    __atomic_store_n(&l->tid, (long)syscall(SYS_gettid), __ATOMIC_RELEASE);
    char c;
    if (read(never[0], &c, 1) < 0)
        c = 0;
    pthread_cleanup_pop(1);
    return NULL;
}

static int late_spawn(struct late *l)
{
    pthread_t t;
    if (pthread_create(&t, NULL, late_worker, l) != 0)
        return -1;
    pthread_detach(t);
    return 0;
}

/* Starts the thread and returns: waiting here for it would wait under the
 * loader's lock. */
__attribute__((constructor)) static void latelib_init(void)
{
    if (pipe(never) != 0 || late_spawn(&ctor_t) != 0)
        ctor_t.tid = -1;
}

static long late_wait(struct late *l)
{
    while (!__atomic_load_n(&l->tid, __ATOMIC_ACQUIRE))
        usleep(1000);
    return l->tid > 0 ? l->tid : 0;
}

/* The tid of the thread the constructor started, once it holds its mutex
 * (0: it could not be started). */
long latelib_ctor_tid(void) { return late_wait(&ctor_t); }

/* Starts the second thread; its tid once it holds its mutex, or 0. */
long latelib_start(void)
{
    if (never[0] < 0 || late_spawn(&call_t) != 0)
        return 0;
    return late_wait(&call_t);
}

static int late_free(pthread_mutex_t *m)
{
    if (pthread_mutex_trylock(m) != 0)
        return 0;
    pthread_mutex_unlock(m);
    return 1;
}

/* 1 if both mutexes are free (taken and given back), 0 if one is held. */
int latelib_try(void) { return late_free(&ctor_t.mu) && late_free(&call_t.mu); }
