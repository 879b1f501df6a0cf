/* pthread_create and pthread_exit interposition: every thread the program
 * creates is registered before its start routine runs, and unregistered
 * however it ends, leaving a grave (graveyard.h) that says how. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "shim/unwind/asan_stack.h"
#include "shim/control/control.h"
#include "shim/deliver/deliver.h"
#include "shim/deliver/graveyard.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"

struct ks_start {
    void *(*fn)(void *);
    void *arg;
};

/* The start trampoline's argument lives in a slot of a fixed pool, not in a
 * malloc'd block: its free() in the new thread made glibc set up a malloc
 * cache (tcache) for a thread that may never call malloc, and tear it down
 * at the thread's exit, about 1,100 instructions a thread (callgrind of
 * bench_work threads: 40% of what the shim added to a create+join) and
 * 0.75 KiB of RSS per parked thread. A slot is taken by the creator and
 * given back by the new thread once it has copied it, one atomic operation
 * each (acquire/release: the copy happens before the next taker writes).
 * More creations in flight than slots fall back to malloc. A fork child
 * keeps the bits of creations in flight in other threads of the parent:
 * those slots stay taken there (the pool only shrinks, the fallback stays). */
#define KS_START_SLOTS 256
static struct ks_start ks_start_slot[KS_START_SLOTS];
static uint64_t ks_start_used[KS_START_SLOTS / 64];

static struct ks_start *ks_start_take(void)
{
    for (int w = 0; w < KS_START_SLOTS / 64; w++) {
        uint64_t used = __atomic_load_n(&ks_start_used[w], __ATOMIC_RELAXED);
        while (~used) {
            int b = __builtin_ctzll(~used);
            if (__atomic_compare_exchange_n(&ks_start_used[w], &used, used | 1ull << b, 1,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return &ks_start_slot[w * 64 + b];
        }
    }
    return malloc(sizeof(struct ks_start));
}

static void ks_start_give(struct ks_start *s)
{
    size_t i = (size_t)(s - ks_start_slot);
    if (s >= ks_start_slot && i < KS_START_SLOTS)
        __atomic_fetch_and(&ks_start_used[i / 64], ~(1ull << (i % 64)), __ATOMIC_RELEASE);
    else
        free(s);
}

/* Maps where a thread's end is written (its grave, the ring of exits),
 * once, before a thread that may end needs it: ks_thread_ended never maps. */
KS_THREAD_PATH static inline void ks_prepare_ends(void)
{
    ks_grave_prepare();
    ks_registry_prepare_exits();
}

/* The grave goes in before the record goes out (graveyard.h), and the
 * eventfd is closed only once no control thread can find the record. One
 * clock read for both (each was 40 instructions of a create+join). */
KS_THREAD_PATH static void ks_thread_ended(struct ks_thread *t, int how, uintptr_t site)
{
    t->end_how = how;
    ks_abort_on_exit(t);
    uint64_t now = ks_now_ns();
    ks_grave_bury(t, how, site, now);
    ks_registry_remove_self(now);
    ks_flag_release(t);
    ks_abort_release(t);
}

/* Runs while the thread unwinds: pthread_exit, cancellation or the shim's
 * abort (which leaves the same way). The abort marks itself FIRING before it
 * unwinds and pthread_exit marks the record, so what is left is
 * cancellation, whoever asked for it. STACK_LO: the lowest address of the
 * thread's stack, under ASan only. */
static KS_NO_ASAN void ks_thread_unwound(void *stack_lo)
{
    ks_unpoison_below(stack_lo);
    struct ks_thread *t = ks_self();
    if (__atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) == KS_ABORT_FIRING)
        ks_thread_ended(t, KS_END_ABORTED, t->abort.site);
    else if (t->end_how == KS_END_EXITED)
        ks_thread_ended(t, KS_END_EXITED, t->exit_site);
    else
        ks_thread_ended(t, KS_END_CANCELLED, __atomic_load_n(&t->cancel_site, __ATOMIC_RELAXED));
}

KS_THREAD_PATH static KS_NO_ASAN void *ks_thread_start(void *p)
{
    struct ks_start s = *(struct ks_start *)p;
    ks_start_give(p);
    ks_registry_add_self(KS_ROLE_APP, (void *)s.fn);
    ks_registry_starting_add(-1);
    void *ret;
    pthread_cleanup_push(ks_thread_unwound, ks_stack_lo());
    ret = s.fn(s.arg);
    pthread_cleanup_pop(0);
    ks_thread_ended(ks_self(), KS_END_RETURNED, (uintptr_t)s.fn);
    return ret;
}

KS_EXPORT KS_THREAD_PATH int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                                            void *(*fn)(void *), void *arg)
{
    ks_init();   /* a constructor that runs before ours may create threads */
    ks_thread_start_set((uintptr_t)ks_thread_start);   /* before the thread exists */
    ks_fork_need();      /* before the process has a second thread (init.c) */
    ks_control_need();   /* a fork child serves once it is multi-threaded */
    ks_prepare_ends();
    ks_real_pthread_create_t *real = KS_REAL(pthread_create);
    if (KS_UNLIKELY(!real))
        return EAGAIN;
    struct ks_start *s = ks_start_take();
    if (!s)   /* cannot track it, but never refuse a thread the program wants */
        return real(thread, attr, fn, arg);
    s->fn = fn;
    s->arg = arg;
    ks_registry_starting_add(1);
    int rc = real(thread, attr, ks_thread_start, s);
    if (rc != 0) {
        ks_registry_starting_add(-1);
        ks_start_give(s);
    }
    return rc;
}

/* Marks the record so the exit path tells pthread_exit from cancellation,
 * and remembers the call site. The abort's exit routine may itself call
 * pthread_exit: a FIRING abort keeps its own account. The main thread has no
 * trampoline to unwind into: its record ends here. */
KS_EXPORT void pthread_exit(void *ret)
{
    struct ks_thread *t = ks_self();
    if (__atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_FIRING) {
        t->end_how = KS_END_EXITED;
        t->exit_site = (uintptr_t)__builtin_return_address(0) - 1;   /* inside the call */
        if (t->linked && t->role == KS_ROLE_MAIN) {
            ks_prepare_ends();   /* a program that never created a thread */
            if (!t->created_ns)   /* its grave's lived_ms (registry.h) */
                t->created_ns = ks_process_started_ns();
            ks_thread_ended(t, KS_END_EXITED, t->exit_site);
        }
    }
    ks_real_pthread_exit_t *real = KS_REAL(pthread_exit);
    if (real)
        real(ret);
    /* pthread_exit must not return, and without libc's there is no way out
     * that keeps the process alive: park the thread. */
    for (;;)
        pause();
}
