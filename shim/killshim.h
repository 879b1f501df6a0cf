/* killshim.h: the public API of libkillshim, for programs that want to stop
 * cooperatively when `killshim-inject --mode flag` (or the first step of the
 * default mode) asks one of their threads to stop. C (C99 and later) and C++.
 *
 *     #include "killshim.h"
 *
 *     while (!killshim_stop_requested())
 *         do_some_work();
 *
 * or, in an event loop, add killshim_stop_fd() to the poll/epoll set: it
 * becomes readable once a stop is requested for the calling thread.
 *
 * Header only: nothing to link. Each function looks the shim up once with
 * dlsym(RTLD_DEFAULT, ...) and caches what it found, so a program that
 * includes this header builds and links without the shim, and when it runs
 * without it, behaves as "never requested" (killshim_stop_requested() is 0,
 * killshim_stop_fd() is -1). On glibc older than 2.34, link with -ldl.
 *
 * Both functions are thread-safe. The first call in a thread may allocate
 * (dlsym, the eventfd): don't make it from a signal handler.
 *
 * ABI: the shim exports killshim_stop_requested_v1 and killshim_stop_fd_v1.
 * A later, incompatible version gets new names; these stay. */
#ifndef KILLSHIM_H
#define KILLSHIM_H

#include <dlfcn.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILLSHIM_API_VERSION 1

/* glibc defines RTLD_DEFAULT only with _GNU_SOURCE; its value is 0. */
#ifdef RTLD_DEFAULT
#define KILLSHIM_RTLD_DEFAULT_ RTLD_DEFAULT
#else
#define KILLSHIM_RTLD_DEFAULT_ ((void *)0)
#endif

typedef int killshim_int_fn_(void);

static inline int killshim_never_requested_(void) { return 0; }
static inline int killshim_no_fd_(void) { return -1; }

/* The shim's NAME, or FALLBACK without the shim; looked up once per
 * translation unit. Two threads racing on the first call both store the same
 * pointer, so the race is benign. */
static inline killshim_int_fn_ *killshim_resolve_(killshim_int_fn_ **cache, const char *name,
                                                  killshim_int_fn_ *fallback)
{
    killshim_int_fn_ *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (__builtin_expect(f == 0, 0)) {
        void *p = dlsym(KILLSHIM_RTLD_DEFAULT_, name);
        f = p ? __extension__(killshim_int_fn_ *) p : fallback;
        __atomic_store_n(cache, f, __ATOMIC_RELEASE);
    }
    return f;
}

/* Nonzero once a stop was requested for the calling thread (flag mode).
 * It stays nonzero. 0 without the shim. Cheap: an indirect call and a load. */
static inline int killshim_stop_requested(void)
{
    static killshim_int_fn_ *fn;
    return killshim_resolve_(&fn, "killshim_stop_requested_v1", killshim_never_requested_)();
}

/* A file descriptor (an eventfd, non-blocking, close-on-exec) that becomes
 * readable once a stop is requested for the calling thread, for poll, select
 * and epoll. One per thread, created on the first call (later calls return
 * the same one); the shim closes it when the thread ends: don't close it
 * yourself, and don't use it from another thread after this one ended.
 * -1 without the shim, or if it could not be created (errno says why). */
static inline int killshim_stop_fd(void)
{
    static killshim_int_fn_ *fn;
    return killshim_resolve_(&fn, "killshim_stop_fd_v1", killshim_no_fd_)();
}

#ifdef __cplusplus
}
#endif
#endif
