/* pthread_create interposition: every thread the program creates is
 * registered before its start routine runs and unregistered however it ends. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "ks.h"
#include "registry.h"

struct ks_start {
    void *(*fn)(void *);
    void *arg;
};

/* Runs on return, pthread_exit and cancellation (and the shim's abort, which
 * unwinds the same way): the record is unlinked before the TLS it lives in is
 * released. */
static void ks_thread_cleanup(void *unused)
{
    (void)unused;
    ks_registry_remove_self();
}

static void *ks_thread_start(void *p)
{
    struct ks_start s = *(struct ks_start *)p;
    free(p);
    ks_registry_add_self(KS_ROLE_APP, (void *)s.fn);
    void *ret;
    pthread_cleanup_push(ks_thread_cleanup, NULL);
    ret = s.fn(s.arg);
    pthread_cleanup_pop(1);
    return ret;
}

KS_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                             void *(*fn)(void *), void *arg)
{
    ks_init();   /* a constructor that runs before ours may create threads */
    if (KS_UNLIKELY(!ks_real.pthread_create))
        return EAGAIN;
    struct ks_start *s = malloc(sizeof *s);
    if (!s)   /* cannot track it, but never refuse a thread the program wants */
        return ks_real.pthread_create(thread, attr, fn, arg);
    s->fn = fn;
    s->arg = arg;
    int rc = ks_real.pthread_create(thread, attr, ks_thread_start, s);
    if (rc != 0)
        free(s);
    return rc;
}
