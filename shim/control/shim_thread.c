/* See shim_thread.h. */
#include "shim_thread.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/core/registry.h"

/* glibc's count of live threads: pthread_create adds one before the clone,
 * a thread's exit path takes one away and calls exit(0) if that made it
 * zero. NULL if not found. */
KS_HOT_DATA static unsigned int *ks_nthreads;
KS_HOT_DATA static int ks_alive;

/* libthread_db's description of the variable (glibc's db-symbols: size in
 * bits, element count, offset): checked so that a glibc whose variable
 * changed shape is left alone. */
static int ks_nthreads_shape_ok(void *lib)
{
    const uint32_t *desc = dlsym(lib, "_thread_db___nptl_nthreads");
    return desc && desc[0] == 8 * sizeof(unsigned int) && desc[1] == 1;
}

/* Set once ks_find_nthreads has run (stores of the same value: two
 * spawns at once may both look). */
static int ks_nthreads_looked;

static void ks_find_nthreads(void)
{
    /* glibc 2.34 moved it from libpthread into libc. */
    static const char *const libs[] = {"libc.so.6", "libpthread.so.0", NULL};
    for (int i = 0; libs[i] && !__atomic_load_n(&ks_nthreads, __ATOMIC_ACQUIRE); i++) {
        void *lib = dlopen(libs[i], RTLD_LAZY | RTLD_NOLOAD);
        if (!lib)
            continue;
        unsigned int *p = dlsym(lib, "__nptl_nthreads");
        if (p && ks_nthreads_shape_ok(lib))
            __atomic_store_n(&ks_nthreads, p, __ATOMIC_RELEASE);
        dlclose(lib);   /* only drops the reference RTLD_NOLOAD took */
    }
    if (!__atomic_load_n(&ks_nthreads, __ATOMIC_ACQUIRE))
        ks_debug("glibc's thread count not found: the shim's threads count as the program's");
}


/* After a successful pthread_create of a shim thread, in its creator.
 * glibc counted it; take it out. Zero means the program's last thread ended
 * between glibc's increment and this: glibc's exit path saw a count the new
 * thread kept above zero, so it is ours to do what it would have done. */
static void ks_uncount(void)
{
    unsigned int *n = __atomic_load_n(&ks_nthreads, __ATOMIC_ACQUIRE);
    if (n && __atomic_sub_fetch(n, 1, __ATOMIC_SEQ_CST) == 0)
        exit(0);
}

/* Before a shim thread leaves: put it back, since glibc's exit path is
 * about to take it away. A count of zero means exit(0) is under way in
 * another thread (the only way the count reaches zero): stay out of it and
 * let exit_group end this thread (every signal is blocked here, so the
 * nanosleep is never cut short; the loop is for the paranoid). */
static void ks_recount(void)
{
    unsigned int *n = __atomic_load_n(&ks_nthreads, __ATOMIC_ACQUIRE);
    if (!n)
        return;
    unsigned int v = __atomic_load_n(n, __ATOMIC_SEQ_CST);
    do {
        while (v == 0) {
            ks_nap_ns(3600ull * 1000000000u);
            v = __atomic_load_n(n, __ATOMIC_SEQ_CST);
        }
    } while (!__atomic_compare_exchange_n(n, &v, v + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
}

struct ks_spawn {
    void *(*fn)(void *);
    void *arg;
    char name[16];
};

/* A shim thread's way out: also when code it calls ends it with
 * pthread_exit (CPython does, to a thread that takes the GIL while the
 * interpreter finalizes: pyrt.c); glibc's count must be put back then too,
 * or the program's last thread would exit(0) early. */
static void ks_shim_thread_done(void *arg)
{
    (void)arg;
    ks_registry_remove_self(ks_now_ns());
    ks_recount();
    __atomic_sub_fetch(&ks_alive, 1, __ATOMIC_RELEASE);
}

static void *ks_shim_thread_main(void *p)
{
    struct ks_spawn s = *(struct ks_spawn *)p;
    free(p);
    /* Named from inside: a detached thread may be gone before its creator
     * could name it, and its handle with it. */
    pthread_setname_np(pthread_self(), s.name);
    /* Here, not in the creator: control may start from the doorbell's
     * signal handler (control.c), where nothing maps. */
    ks_registry_prepare_exits();
    ks_registry_add_self(KS_ROLE_SHIM, NULL);
    ks_registry_starting_add(-1);
    void *r;
    pthread_cleanup_push(ks_shim_thread_done, NULL);
    r = s.fn(s.arg);
    pthread_cleanup_pop(1);
    return r;
}

int ks_spawn_shim_thread(const char *name, void *(*fn)(void *), void *arg, size_t stack)
{
    struct ks_spawn *s = malloc(sizeof *s);
    if (!s)
        return ENOMEM;
    s->fn = fn;
    s->arg = arg;
    snprintf(s->name, sizeof s->name, "%s", name);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack)
        pthread_attr_setstacksize(&attr, stack);
    sigset_t all;
    ks_sigfill(&all);
    pthread_attr_setsigmask_np(&attr, &all);
    if (!__atomic_load_n(&ks_nthreads_looked, __ATOMIC_ACQUIRE)) {
        ks_find_nthreads();
        __atomic_store_n(&ks_nthreads_looked, 1, __ATOMIC_RELEASE);
    }
    pthread_t th;
    ks_registry_starting_add(1);
    __atomic_add_fetch(&ks_alive, 1, __ATOMIC_ACQ_REL);
    ks_real_pthread_create_t *create = KS_REAL(pthread_create);
    int rc = create ? create(&th, &attr, ks_shim_thread_main, s) : ENOSYS;
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        __atomic_sub_fetch(&ks_alive, 1, __ATOMIC_RELEASE);
        ks_registry_starting_add(-1);
        free(s);
        return rc;
    }
    ks_uncount();
    return 0;
}

int ks_shim_threads_alive(void) { return __atomic_load_n(&ks_alive, __ATOMIC_ACQUIRE); }

KS_FORK_PATH void ks_shim_threads_after_fork(void)
{
    if (__atomic_load_n(&ks_alive, __ATOMIC_RELAXED))
        __atomic_store_n(&ks_alive, 0, __ATOMIC_RELEASE);
}
