/* The thread registry: one record per thread of the program, kept in that
 * thread's own static TLS (no allocation on pthread_create), linked into one
 * list under ks_registry_lock.
 *
 * Invariants:
 * - A record is linked from just before the start routine runs until the
 *   thread's exit path unlinks it (return, pthread_exit, cancellation, abort).
 *   The unlink takes ks_registry_lock, so any code that finds a record while
 *   holding that lock knows its thread is alive and its tid is not recycled:
 *   signal a thread only under the lock (ks_registry_with_linked).
 * - Fields marked "owner" are written only by the thread itself; others read
 *   them racily (they are hints for listings) or under the lock. */
#ifndef KS_REGISTRY_H
#define KS_REGISTRY_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>


#ifdef __cplusplus
extern "C" {
#endif

enum ks_role {
    KS_ROLE_MAIN = 0,   /* the process's main thread, registered at load */
    KS_ROLE_APP = 1,    /* created through pthread_create after the shim loaded */
    KS_ROLE_SHIM = 2,   /* the shim's own threads: never a target */
};

/* The protocol's word for ROLE: "main", "app" or "shim" (a thread the
 * registry does not know is "foreign": the caller says so). */
const char *ks_role_name(int role);

/* What a thread is blocked in, as far as the shim's wrappers know. */
enum ks_wait_kind {
    KS_WAIT_NONE = 0,
    KS_WAIT_MUTEX = 1,  /* pthread_mutex_lock / timedlock: wait_obj is the mutex */
    KS_WAIT_RWLOCK = 2, /* rwlock rd/wr lock: wait_obj is the rwlock */
    KS_WAIT_COND = 3,   /* pthread_cond_*wait: wait_obj is the cond, wait_mutex its mutex */
};

#define KS_HELD_MAX 4          /* lock addresses remembered per thread */
/* Where and when a held lock was taken, for cancel mode's question "would a
 * cleanup of the program release it?" (cancel_check.h): the return address
 * of its lock call, in the function that took it (0: unknown), and the
 * thread's cleanup_depth then (KS_CDEPTH_UNKNOWN: none known). One word, so
 * that the record stays within 256 bytes: x86-64 user addresses fit in the
 * low 48 bits, the depth (saturated) takes the high 16. */
typedef uint64_t ks_lock_mark;
#define KS_CDEPTH_UNKNOWN 0xffff
#define KS_MARK_RA_BITS 48
static inline ks_lock_mark ks_mark(uintptr_t ra, int cdepth)
{
    /* One compare on the lock hooks' path (a depth in range); saturated
     * (negative: 0) otherwise. */
    uint64_t d = __builtin_expect((unsigned int)cdepth < KS_CDEPTH_UNKNOWN, 1) ? (unsigned int)cdepth
                 : cdepth < 0                                                  ? 0
                                                                               : KS_CDEPTH_UNKNOWN;
    return ((uint64_t)ra & ((1ull << KS_MARK_RA_BITS) - 1)) | d << KS_MARK_RA_BITS;
}
static inline uintptr_t ks_mark_ra(ks_lock_mark m) { return m & ((1ull << KS_MARK_RA_BITS) - 1); }
static inline int ks_mark_cdepth(ks_lock_mark m) { return (int)(m >> KS_MARK_RA_BITS); }

/* An abort request on a thread (deliver_abort.c). The record keeps what the
 * dispatcher and the lock hooks test on every call; everything else (the
 * progress report and the thread's search state) lives in a block from a
 * static pool, taken by the first request and given back when the thread
 * ends, so a thread never asked to abort costs no more than this. */
struct ks_abort_info;
struct ks_abort_slot {
    int state;                /* enum ks_abort_state (deliver.h) */
    int force;                /* written by the control side */
    uintptr_t site;           /* IP of the application frame it left from */
    struct ks_abort_info *info;   /* set under the registry lock before the
                                     first signal; stays until the thread ends */
};

struct ks_thread {
    /* Identity: set before linking, immutable while linked. */
    pid_t tid;
    uint8_t role;
    uint8_t sig_batch;        /* owner only, linked or not: inside a batch of
                                 ks_sigmask_batch_begin (signals.h); in the
                                 padding before handle, so free */
    pthread_t handle;
    void *start_routine;      /* NULL for the main thread */
    uint64_t id;              /* unique in this process; never reused */
    uint64_t created_ns;      /* CLOCK_MONOTONIC at registration; 0: the main
                               * thread's, the process's start (/proc) */

    /* Lock tracking (owner writes; see interpose_lock.c). Fields shared
     * between threads are accessed with __atomic builtins (the header is
     * also C++'s, which has no _Atomic). */
    int locks_held;           /* pthread mutexes and rwlocks it holds (the
                                 mutex of a condition wait is not held while
                                 the thread waits: interpose_cond.c) */
    void *held[KS_HELD_MAX];  /* the first KS_HELD_MAX of them, in no order */
    ks_lock_mark held_mark[KS_HELD_MAX];   /* where and when each was taken */
    int cleanup_depth;        /* pthread_cleanup_push handlers it has registered
                                 (interpose_cleanup.c): a lock taken at depth D
                                 has a handler registered after it while
                                 cleanup_depth > D (the idiom: lock, push(unlock)) */
    int wait_kind;            /* enum ks_wait_kind */
    void *wait_obj;
    void *wait_mutex;         /* KS_WAIT_COND: the mutex the wait releases */
    ks_lock_mark wait_mutex_mark;   /* KS_WAIT_COND: its mark (cdepth
                                 KS_CDEPTH_UNKNOWN if it was not counted held) */
    int wait_lock;            /* spinlock: while the control side holds it, a
                                 KS_WAIT_COND wait_obj stays valid (interpose_cond.c) */

    /* Ending the thread (see deliver*.c). Written by the control thread
     * under the registry lock, read by the owner. */
    int stop_requested;       /* flag mode; killshim_stop_requested() reads it */
    int cancel_requested;     /* cancel mode was used on it */
    struct ks_abort_slot abort;
    int end_how;              /* enum ks_end_how, set on the way out */

    /* Flag and cancel modes (deliver_flag.c, deliver_cancel.c). */
    int stop_fd;              /* eventfd of killshim_stop_fd() plus 1, 0 if none
                                 (TLS starts zeroed); set under the lock, where
                                 the control side reads it */
    int stop_dup;             /* a private duplicate of it plus 1, 0 if none:
                                 checked against before each write and the
                                 close (ks_fdid_same_dup: eventfds share an inode) */
    uint8_t cancel_disabled;  /* owner: as set through pthread_setcancelstate */
    uint8_t cancel_async;     /* owner: as set through pthread_setcanceltype */
    uintptr_t cancel_site;    /* user PC of the syscall it was blocked in when
                                 cancel mode was asked; 0 if it was not blocked */
    uintptr_t exit_site;      /* owner: the call to pthread_exit, if it made one */
    /* Registry links, under ks_registry_lock: the list, and the chain of
     * its tid's bucket once a second record was linked (ks_registry_find is
     * O(threads / buckets); with one record, the list). */
    struct ks_thread *next, *prev;
    struct ks_thread *hnext;
    int linked;

    /* Owner only: nonzero while shim code runs on this thread in a signal
     * handler (stack_capture.c, the abort's) or in an abort's exit path. The
     * lock and cond hooks then pass straight through, so what that code
     * locks (libunwind's own locks) never shows as the program's. */
    int shim_depth;
};

/* The calling thread's record (never NULL; unlinked threads have tid 0).
 * Inline because the mutex hooks reach it on every lock and unlock (a call
 * here was a measurable part of their cost, see docs/bench.md). initial-exec:
 * the shim is preloaded, so its TLS is static and reaching it never
 * allocates, not even from a signal handler. */
extern __thread struct ks_thread ks_self_rec
    __attribute__((tls_model("initial-exec"), visibility("hidden")));
static inline struct ks_thread *ks_self(void) { return &ks_self_rec; }

/* T's wait_lock (a spinlock: the cond wrapper and the control side hold it
 * for a few stores or loads). */
static inline void ks_wait_lock(struct ks_thread *t)
{
    while (__atomic_exchange_n(&t->wait_lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
}
static inline void ks_wait_unlock(struct ks_thread *t)
{
    __atomic_store_n(&t->wait_lock, 0, __ATOMIC_RELEASE);
}

/* A thread's stack-dump state (blocking.h) lives beside its record in the
 * same thread's TLS, not inside it. ks_block_self: the caller's. ks_block_of:
 * the state of the thread whose record is T, valid as long as T is (under the
 * registry lock with T linked, or while T's thread is held in a wrapped
 * call). */
struct ks_block;
struct ks_block *ks_block_self(void);
struct ks_block *ks_block_of(struct ks_thread *t);

/* The start routine the shim gives every thread it creates
 * (interpose_thread.c): the bottom frame of an application thread's stack,
 * where the walks (prewalk.c, redirect.c) stop. The pthread_create hook
 * sets it before it creates a thread; 0 before the first. Kept here, below
 * both, so that the walks do not reach up into the hooks. */
extern uintptr_t ks_thread_start_pc;   /* registry.c */
static inline void ks_thread_start_set(uintptr_t pc)
{
    __atomic_store_n(&ks_thread_start_pc, pc, __ATOMIC_RELEASE);
}
/* Inline: read in signal handlers, from code ThreadSanitizer does not
 * instrument (SIGCTX_COPTS, shim/defs.bzl). */
static inline uintptr_t ks_thread_start_addr(void)
{
    return __atomic_load_n(&ks_thread_start_pc, __ATOMIC_ACQUIRE);
}

/* Links the calling thread's record with ROLE and START. Idempotent. */
void ks_registry_add_self(enum ks_role role, void *start);
/* Unlinks the calling thread's record, NOW (ks_now_ns) its time of exit:
 * the caller's one clock read for its grave and this. Idempotent. */
void ks_registry_remove_self(uint64_t now);
/* Maps the ring of exited threads (64 KiB, ks.h: ks_lazy) if it is not
 * yet: called before a thread that may end exists (the pthread_create hook,
 * a shim thread's start, the main thread's pthread_exit), never from a
 * signal handler. ks_registry_remove_self never maps: without the ring an
 * exit is not remembered (ks_registry_exiting). */
void ks_registry_prepare_exits(void);
/* Unlinks every record but the caller's (after fork, in the child). */
void ks_registry_reset_after_fork(void);

void ks_registry_lock(void);
void ks_registry_unlock(void);
/* First record, or NULL; iterate with ->next. Caller holds the lock. */
struct ks_thread *ks_registry_first(void);
/* The linked record of TID, or NULL. Caller holds the lock. */
struct ks_thread *ks_registry_find(pid_t tid);
/* Number of linked records. Caller holds the lock. */
int ks_registry_count(void);
/* A number that changes whenever a record is unlinked. While it has not
 * changed, every record seen linked before is still linked (and valid) and
 * can be used without looking it up again. Caller holds the lock. */
unsigned ks_registry_unlinks(void);

/* 1 if TID unlinked itself in the last KS_EXITING_MS: its task may linger
 * in /proc/self/task for a moment after its exit path (even after a join
 * returned), and is not a thread of the program any more. Caller holds the
 * lock. */
#define KS_EXITING_MS 2000
int ks_registry_exiting(pid_t tid);

/* Threads between pthread_create and their registration: their task is in
 * /proc/self/task before their record is linked. The pthread_create hook
 * adds 1 before the real call; the new thread (or the failed call) takes
 * it back. */
void ks_registry_starting_add(int delta);
int ks_registry_starting(void);

/* What a task in /proc/self/task that a copy of the registry did not know
 * is. A thread between pthread_create and its registration (a new thread
 * not scheduled yet, on a loaded machine, for a long while) is waited for:
 * any task younger than 200 ms, and one younger than 3 s while creations
 * are in flight. A thread that unregistered on its way out is EXITING (not
 * a thread of the program any more). Anything else is FOREIGN: a raw
 * clone, libc's own helpers, a RTLD_DEEPBIND library's threads. AGE_MS:
 * the task's age (ks_task_age_ms). Takes the lock; call without it. */
enum ks_settle { KS_SETTLE_LINKED, KS_SETTLE_EXITING, KS_SETTLE_FOREIGN };
enum ks_settle ks_registry_settle(pid_t tid, unsigned long long age_ms);

/* Calls FN(record, ARG) with the lock held if and only if TID is linked with
 * id ID (0: any id), and returns its result; ESRCH if the thread is gone (or
 * its tid now belongs to another thread). Whatever FN does to the thread (a
 * signal), it does to the thread the caller meant, never to a recycled tid. */
int ks_registry_with_linked(pid_t tid, uint64_t id, int (*fn)(struct ks_thread *, void *),
                            void *arg);

#ifdef __cplusplus
}
#endif

#endif
