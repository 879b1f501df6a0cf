/* The real functions behind the shim's hooks: every one in one table, with
 * the rule that picks its definition, and one accessor, KS_REAL(name).
 *
 * The rule (resolve.c applies it, with its own lookup through the loaded
 * objects' symbol tables, never dlsym):
 *   KS_NEXT  what the program would bind to without the shim: the first
 *            definition after the shim in load order. If that object is not
 *            libc, it is an interposer (a sanitizer's runtime, a profiler)
 *            and is taken as it is: threads created behind its back are
 *            unknown to it (ASan then reports stale stack poison, TSan races
 *            that are none). Otherwise libc's VERSION; "": its default,
 *            which glibc makes the newest (pthread_create@@GLIBC_2.34).
 *   KS_LIBC  libc's own VERSION ("": default), around every interposer:
 *            the kernel-facing install of the shim's signal handlers
 *            (ThreadSanitizer's sigaction defers asynchronous signals and
 *            hands handlers a copy of the context).
 *
 * Each entry is filled on its first use (KS_REAL), every entry at once by the
 * first use of pthread_create, so that a process with threads (and its fork
 * children) never needs to look one up again; resolve.c says why, and why a
 * lookup is safe at any moment (an allocator's initialisation, another
 * library's constructor, before ours). */
#ifndef KS_REAL_H
#define KS_REAL_H

#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/types.h>
#include <time.h>
#include <ucontext.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sembuf;

enum ks_real_where { KS_NEXT, KS_LIBC };

/* X(field, symbol, version, where, return type, parameters) */
#define KS_REAL_TABLE(X)                                                                      \
    /* Threads (interpose_thread.c, interpose_cancel.c, deliver_*.c) */                      \
    X(pthread_create, "pthread_create", "", KS_NEXT, int,                                      \
      (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))                       \
    X(pthread_exit, "pthread_exit", "", KS_NEXT, void, (void *))                               \
    X(pthread_cancel, "pthread_cancel", "", KS_NEXT, int, (pthread_t))                         \
    X(pthread_setcancelstate, "pthread_setcancelstate", "", KS_NEXT, int, (int, int *))        \
    X(pthread_setcanceltype, "pthread_setcanceltype", "", KS_NEXT, int, (int, int *))          \
    X(_exit, "_exit", "", KS_NEXT, void, (int))                                                \
    /* Namespaces that need a lone thread (interpose_ns.c) */                                \
    X(unshare, "unshare", "", KS_NEXT, int, (int))                                             \
    X(setns, "setns", "", KS_NEXT, int, (int, int))                                            \
    /* Cleanup registration of code built without -fexceptions (interpose_cleanup.c) */       \
    X(__pthread_register_cancel, "__pthread_register_cancel", "", KS_NEXT, void,               \
      (__pthread_unwind_buf_t *))                                                             \
    X(__pthread_unregister_cancel, "__pthread_unregister_cancel", "", KS_NEXT, void,           \
      (__pthread_unwind_buf_t *))                                                             \
    X(__pthread_register_cancel_defer, "__pthread_register_cancel_defer", "", KS_NEXT, void,   \
      (__pthread_unwind_buf_t *))                                                             \
    X(__pthread_unregister_cancel_restore, "__pthread_unregister_cancel_restore", "",          \
      KS_NEXT, void, (__pthread_unwind_buf_t *))                                              \
    /* Locks (interpose_lock.c) */                                                            \
    X(pthread_mutex_lock, "pthread_mutex_lock", "", KS_NEXT, int, (pthread_mutex_t *))         \
    X(pthread_mutex_trylock, "pthread_mutex_trylock", "", KS_NEXT, int, (pthread_mutex_t *))   \
    X(pthread_mutex_timedlock, "pthread_mutex_timedlock", "", KS_NEXT, int,                    \
      (pthread_mutex_t *, const struct timespec *))                                           \
    X(pthread_mutex_clocklock, "pthread_mutex_clocklock", "", KS_NEXT, int,                    \
      (pthread_mutex_t *, clockid_t, const struct timespec *))                                \
    X(pthread_mutex_unlock, "pthread_mutex_unlock", "", KS_NEXT, int, (pthread_mutex_t *))     \
    X(pthread_rwlock_rdlock, "pthread_rwlock_rdlock", "", KS_NEXT, int, (pthread_rwlock_t *))  \
    X(pthread_rwlock_wrlock, "pthread_rwlock_wrlock", "", KS_NEXT, int, (pthread_rwlock_t *))  \
    X(pthread_rwlock_tryrdlock, "pthread_rwlock_tryrdlock", "", KS_NEXT, int,                  \
      (pthread_rwlock_t *))                                                                   \
    X(pthread_rwlock_trywrlock, "pthread_rwlock_trywrlock", "", KS_NEXT, int,                  \
      (pthread_rwlock_t *))                                                                   \
    X(pthread_rwlock_timedrdlock, "pthread_rwlock_timedrdlock", "", KS_NEXT, int,              \
      (pthread_rwlock_t *, const struct timespec *))                                          \
    X(pthread_rwlock_timedwrlock, "pthread_rwlock_timedwrlock", "", KS_NEXT, int,              \
      (pthread_rwlock_t *, const struct timespec *))                                          \
    X(pthread_rwlock_clockrdlock, "pthread_rwlock_clockrdlock", "", KS_NEXT, int,              \
      (pthread_rwlock_t *, clockid_t, const struct timespec *))                               \
    X(pthread_rwlock_clockwrlock, "pthread_rwlock_clockwrlock", "", KS_NEXT, int,              \
      (pthread_rwlock_t *, clockid_t, const struct timespec *))                               \
    X(pthread_rwlock_unlock, "pthread_rwlock_unlock", "", KS_NEXT, int, (pthread_rwlock_t *))  \
    /* Condition waits (interpose_cond.c): the GLIBC_2.3.2 implementation, not     \
     * the GLIBC_2.2.5 compatibility one, whatever the program was linked against. */        \
    X(pthread_cond_wait, "pthread_cond_wait", "GLIBC_2.3.2", KS_NEXT, int,                    \
      (pthread_cond_t *, pthread_mutex_t *))                                                  \
    X(pthread_cond_timedwait, "pthread_cond_timedwait", "GLIBC_2.3.2", KS_NEXT, int,          \
      (pthread_cond_t *, pthread_mutex_t *, const struct timespec *))                         \
    X(pthread_cond_clockwait, "pthread_cond_clockwait", "", KS_NEXT, int,                      \
      (pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *))              \
    /* Signals (interpose_signal.c, signals.c) */                                            \
    X(sigaction, "sigaction", "", KS_NEXT, int,                                                \
      (int, const struct sigaction *, struct sigaction *))                                    \
    X(libc_sigaction, "sigaction", "", KS_LIBC, int,                                           \
      (int, const struct sigaction *, struct sigaction *))                                    \
    X(sigprocmask, "sigprocmask", "", KS_NEXT, int, (int, const sigset_t *, sigset_t *))       \
    X(pthread_sigmask, "pthread_sigmask", "", KS_NEXT, int, (int, const sigset_t *, sigset_t *)) \
    /* Blocking calls (interpose_block.c) */                                                 \
    X(nanosleep, "nanosleep", "", KS_NEXT, int, (const struct timespec *, struct timespec *))  \
    X(clock_nanosleep, "clock_nanosleep", "", KS_NEXT, int,                                    \
      (clockid_t, int, const struct timespec *, struct timespec *))                           \
    X(poll, "poll", "", KS_NEXT, int, (struct pollfd *, nfds_t, int))                          \
    X(poll_chk, "__poll_chk", "", KS_NEXT, int, (struct pollfd *, nfds_t, int, size_t))        \
    X(ppoll, "ppoll", "", KS_NEXT, int,                                                        \
      (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))                   \
    X(ppoll_chk, "__ppoll_chk", "", KS_NEXT, int,                                              \
      (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t))           \
    X(select, "select", "", KS_NEXT, int, (int, fd_set *, fd_set *, fd_set *, struct timeval *)) \
    X(pselect, "pselect", "", KS_NEXT, int,                                                    \
      (int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *))         \
    X(epoll_wait, "epoll_wait", "", KS_NEXT, int, (int, struct epoll_event *, int, int))       \
    X(epoll_pwait, "epoll_pwait", "", KS_NEXT, int,                                            \
      (int, struct epoll_event *, int, int, const sigset_t *))                                \
    X(epoll_pwait2, "epoll_pwait2", "", KS_NEXT, int,                                          \
      (int, struct epoll_event *, int, const struct timespec *, const sigset_t *))            \
    X(pause, "pause", "", KS_NEXT, int, (void))                                                \
    X(sigsuspend, "sigsuspend", "", KS_NEXT, int, (const sigset_t *))                          \
    X(sigtimedwait, "sigtimedwait", "", KS_NEXT, int,                                          \
      (const sigset_t *, siginfo_t *, const struct timespec *))                               \
    X(sigwaitinfo, "sigwaitinfo", "", KS_NEXT, int, (const sigset_t *, siginfo_t *))           \
    X(sem_timedwait, "sem_timedwait", "", KS_NEXT, int, (sem_t *, const struct timespec *))    \
    X(sem_clockwait, "sem_clockwait", "", KS_NEXT, int,                                        \
      (sem_t *, clockid_t, const struct timespec *))                                          \
    X(msgrcv, "msgrcv", "", KS_NEXT, ssize_t, (int, void *, size_t, long, int))                \
    X(msgsnd, "msgsnd", "", KS_NEXT, int, (int, const void *, size_t, int))                    \
    X(semop, "semop", "", KS_NEXT, int, (int, struct sembuf *, size_t))                        \
    X(semtimedop, "semtimedop", "", KS_NEXT, int,                                              \
      (int, struct sembuf *, size_t, const struct timespec *))                                \
    X(longjmp, "longjmp", "", KS_NEXT, void, (struct __jmp_buf_tag *, int))                    \
    X(siglongjmp, "siglongjmp", "", KS_NEXT, void, (struct __jmp_buf_tag *, int))              \
    X(longjmp_chk, "__longjmp_chk", "", KS_NEXT, void, (struct __jmp_buf_tag *, int))          \
    X(setcontext, "setcontext", "", KS_NEXT, int, (const ucontext_t *))                        \
    /* libunwind's init must open no pipe (interpose_pipe.c, unwind_mem.h) */                \
    X(pipe2, "pipe2", "", KS_NEXT, int, (int *, int))

enum ks_real_id {
#define KS_X(field, sym, ver, where, ret, params) KS_FN_##field,
    KS_REAL_TABLE(KS_X)
#undef KS_X
    KS_FN_COUNT
};

#define KS_X(field, sym, ver, where, ret, params) typedef ret ks_real_##field##_t params;
KS_REAL_TABLE(KS_X)
#undef KS_X

/* The resolved pointers, by enum ks_real_id; NULL until resolved (or if the
 * symbol does not exist). Written with release stores (two threads may
 * resolve at once: they store the same values), read with acquire loads. */
extern void *ks_real_fn[KS_FN_COUNT];

/* Fills every entry of the table that is still empty (once: later calls
 * return at once). Safe at any moment: before any constructor, inside an
 * allocator's initialisation, re-entered on the same thread (a signal
 * handler, a resolver), from several threads. Allocates nothing and calls
 * nothing the program can interpose. Takes the loader's list lock. */
void ks_real_resolve_all(void);

/* 1 once ks_real_resolve_all has run to its end: no KS_REAL looks up again. */
int ks_real_table_complete(void);

/* What ks_init resolves, in one walk: what every process calls at start
 * (the shim's locks, the install of its signal handlers) and what must be
 * there without resolving (KS_REAL_PEEK's users: _exit). */
void ks_real_resolve_init(void);

/* libc.so.6's lookup tables into OUT, as the first walk that reached libc
 * (ks_real_resolve_init's, at start) read them. 0, or ENOENT if no walk
 * has reached it yet. */
struct ks_elf_obj;
int ks_real_libc(struct ks_elf_obj *out);

/* 1 if entry F, once resolved, is libc.so.6's own definition (not an
 * interposer's, not another object's): what the walk that resolved it saw,
 * so that no caller looks the name up in libc again to compare. */
int ks_real_is_libcs(enum ks_real_id f);

/* Entry F's symbol name and where it is looked up (ks_rules, resolve.c:
 * offsets into one block of the names, nothing the loader relocates). */
const char *ks_real_symbol(enum ks_real_id f);
enum ks_real_where ks_real_where_of(enum ks_real_id f);

/* Slow path of KS_REAL: resolves and returns entry F (NULL if it does not
 * exist, or if resolution is re-entered too deep on this thread). The first
 * miss of pthread_create resolves every entry. */
void *ks_real_miss(enum ks_real_id f);

static inline void *ks_real_get(enum ks_real_id f)
{
    void *p = __atomic_load_n(&ks_real_fn[f], __ATOMIC_ACQUIRE);
    if (__builtin_expect(!p, 0))
        p = ks_real_miss(f);
    return p;
}

/* The real NAME as a typed pointer, resolved on first use; NULL if the
 * process has no such function. The one way the shim reaches one. */
#define KS_REAL(name) ((ks_real_##name##_t *)ks_real_get(KS_FN_##name))

/* For a hook that returns its real function's result: calls the real NAME
 * with ARGS (parenthesised), or evaluates to ERR if it cannot be had (the
 * process lacks it, or resolution was re-entered past its depth limit): the
 * program's call fails with an error rather than jumping to address 0. */
#define KS_CALL_OR(name, err, args)                       \
    ({                                                    \
        ks_real_##name##_t *ks_fn_ = KS_REAL(name);       \
        __builtin_expect(ks_fn_ != NULL, 1) ? ks_fn_ args : (err); \
    })

/* The same, never resolving: for paths that must not take the loader's lock
 * (_exit in a fork child, whose parent thread may have held it). NULL if
 * ks_init has not run. Only for entries ks_real_resolve_init resolves. */
#define KS_REAL_PEEK(name) \
    ((ks_real_##name##_t *)__atomic_load_n(&ks_real_fn[KS_FN_##name], __ATOMIC_ACQUIRE))

#ifdef __cplusplus
}
#endif
#endif
