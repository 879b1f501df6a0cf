/* One place that finds the real functions behind the shim's hooks. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <string.h>

#include "ks.h"

struct ks_real ks_real;

void *ks_resolve(const char *name, const char *version)
{
    void *p = NULL;
    if (version)
        p = dlvsym(RTLD_NEXT, name, version);
    if (!p)
        p = dlsym(RTLD_NEXT, name);
    return p;
}

void *ks_resolve_libc(const char *name)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc)
        return NULL;
    void *p = dlsym(libc, name);
    dlclose(libc);   /* only drops the reference RTLD_NOLOAD took */
    return p;
}

/* Another interposer between us and libc (a sanitizer's runtime, a
 * profiler) defines NAME unversioned, and dlvsym would skip it: threads
 * created behind its back are unknown to it (ASan then reports stale stack
 * poison as errors, TSan races that are none), and a condition wait it does
 * not see leaves TSan believing the mutex is still held. NAME in that
 * interposer, or NULL if the next definition is libc's. */
static void *ks_next_interposer(const char *name)
{
    void *next = dlsym(RTLD_NEXT, name);
    Dl_info di;
    if (next && dladdr(next, &di) && di.dli_fname && !strstr(di.dli_fname, "/libc.so"))
        return next;
    return NULL;
}

/* glibc 2.34 moved libpthread into libc and gave pthread_create a new
 * version; the old GLIBC_2.2.5 one is kept for old binaries. Ask for the
 * newest first so the program gets what it would get without the shim. */
static void *ks_resolve_versioned(const char *name)
{
    void *next = ks_next_interposer(name);
    if (next)
        return next;
    static const char *const versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", NULL};
    for (int i = 0; versions[i]; i++) {
        void *p = dlvsym(RTLD_NEXT, name, versions[i]);
        if (p)
            return p;
    }
    return dlsym(RTLD_NEXT, name);
}

/* pthread_cond_* have two versions since glibc 2.3.2; the default (new) one
 * is what a program built today binds to. */
static void *ks_resolve_cond(const char *name)
{
    void *next = ks_next_interposer(name);
    return next ? next : ks_resolve(name, "GLIBC_2.3.2");
}

/* dlsym may allocate (its error buffer), but the shim does not interpose the
 * allocator, so resolving cannot recurse into a hook. Two threads resolving
 * at once store the same pointers: the race is benign, and each pointer is
 * published with a release store so a reader never sees a torn value. */
void ks_resolve_all(void)
{
#define KS_SET(field, expr) \
    __atomic_store_n(&ks_real.field, (__typeof__(ks_real.field))(expr), __ATOMIC_RELEASE)
    KS_SET(pthread_create, ks_resolve_versioned("pthread_create"));
    KS_SET(pthread_mutex_lock, ks_resolve_versioned("pthread_mutex_lock"));
    KS_SET(pthread_mutex_trylock, ks_resolve_versioned("pthread_mutex_trylock"));
    KS_SET(pthread_mutex_timedlock, ks_resolve_versioned("pthread_mutex_timedlock"));
    KS_SET(pthread_mutex_unlock, ks_resolve_versioned("pthread_mutex_unlock"));
    KS_SET(pthread_mutex_clocklock, ks_resolve_versioned("pthread_mutex_clocklock"));
    KS_SET(pthread_rwlock_rdlock, ks_resolve_versioned("pthread_rwlock_rdlock"));
    KS_SET(pthread_rwlock_wrlock, ks_resolve_versioned("pthread_rwlock_wrlock"));
    KS_SET(pthread_rwlock_tryrdlock, ks_resolve_versioned("pthread_rwlock_tryrdlock"));
    KS_SET(pthread_rwlock_trywrlock, ks_resolve_versioned("pthread_rwlock_trywrlock"));
    KS_SET(pthread_rwlock_timedrdlock, ks_resolve_versioned("pthread_rwlock_timedrdlock"));
    KS_SET(pthread_rwlock_timedwrlock, ks_resolve_versioned("pthread_rwlock_timedwrlock"));
    KS_SET(pthread_rwlock_clockrdlock, ks_resolve_versioned("pthread_rwlock_clockrdlock"));
    KS_SET(pthread_rwlock_clockwrlock, ks_resolve_versioned("pthread_rwlock_clockwrlock"));
    KS_SET(pthread_rwlock_unlock, ks_resolve_versioned("pthread_rwlock_unlock"));
    KS_SET(pthread_cond_wait, ks_resolve_cond("pthread_cond_wait"));
    KS_SET(pthread_cond_timedwait, ks_resolve_cond("pthread_cond_timedwait"));
    KS_SET(pthread_cond_clockwait, ks_resolve_versioned("pthread_cond_clockwait"));
    KS_SET(__pthread_register_cancel, ks_resolve("__pthread_register_cancel", NULL));
    KS_SET(__pthread_unregister_cancel, ks_resolve("__pthread_unregister_cancel", NULL));
    KS_SET(__pthread_register_cancel_defer, ks_resolve("__pthread_register_cancel_defer", NULL));
    KS_SET(__pthread_unregister_cancel_restore,
           ks_resolve("__pthread_unregister_cancel_restore", NULL));
#undef KS_SET
}
