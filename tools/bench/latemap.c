/* The control thread's start cost without the shim (docs/bench.md, branch
 * ctlcost): a preload whose pthread_create hook starts, before the program's
 * first thread, an idle thread of its own that maps five 64 KiB anonymous
 * blocks and touches them, 50 ms later (liblatemap_after.so: after the
 * program's first thread stack exists) or at once, with the program's
 * first thread created only once they are made (liblatemap_before.so), or
 * never (liblatemap_idle.so). bench_pair with the three side by side:
 *   bench_pair -s idle=liblatemap_idle.so -s before=liblatemap_before.so
 *              -s after=liblatemap_after.so -c 0 -n 6000 -e 20 -l X
 *              -- bench_work serve-threads-cpu 50
 * KS_LATEMAP: 0 idle, 1 before, 2 after. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef int create_fn(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static int lm_started, lm_mapped;

static void *lm_idle(void *arg)
{
    (void)arg;
    if (KS_LATEMAP == 2)
        usleep(50000);
    for (int i = 0; KS_LATEMAP && i < 5; i++) {
        char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED)
            memset(p, 1, 4096);
    }
    __atomic_store_n(&lm_mapped, 1, __ATOMIC_RELEASE);
    for (;;)
        pause();
    return NULL;
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    create_fn *real = (create_fn *)dlsym(RTLD_NEXT, "pthread_create");
    if (!__atomic_exchange_n(&lm_started, 1, __ATOMIC_ACQ_REL)) {
        pthread_attr_t a;
        pthread_t th;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 * 1024);
        real(&th, &a, lm_idle, NULL);
        pthread_attr_destroy(&a);
        while (KS_LATEMAP == 1 && !__atomic_load_n(&lm_mapped, __ATOMIC_ACQUIRE))
            usleep(100);
    }
    return real(t, attr, fn, arg);
}
