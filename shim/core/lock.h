/* The shim's own mutexes, and its own naps.
 *
 * A shim lock is taken through the real pthread functions, never the shim's
 * hooks: its locking is not the program's (interpose_lock.c counts only the
 * program's, and an abort waits for that count to reach zero). Every shim
 * lock is defined with KS_LOCK_DEFINE, which also lists it in one linker
 * section: the fork child resets every one of them in ks_locks_after_fork,
 * since a parent thread that held one at fork is gone in the child and
 * would hold it for ever.
 *
 * Lock order (outermost first): load (init.c: serving's dlopens, and fork's
 * prepare) > conn (server.c) > dump (stack_capture.c) >
 * registry > grave, act, step-install, safepoint-write. The last four are
 * leaves: nothing is taken while one is held. */
#ifndef KS_LOCK_H
#define KS_LOCK_H

#include <pthread.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ks_lock {
    pthread_mutex_t mu;
    const char *name;     /* for tests and debugging */
};

/* Defines the shim lock VAR (with STORAGE static or empty) and lists it for
 * the fork child's reset. */
#define KS_LOCK_DEFINE(storage, var)                                             \
    storage struct ks_lock var = {PTHREAD_MUTEX_INITIALIZER, #var};              \
    static struct ks_lock *const ks_lock_entry_##var                             \
        __attribute__((used, section("ks_locks"), aligned(sizeof(void *)))) = &var

/* The linker's bounds of the ks_locks section (one pointer per lock), for
 * lock.c's walk: weak, so a link without any shim lock still works. */
extern struct ks_lock *const __start_ks_locks[] __attribute__((visibility("hidden"), weak));
extern struct ks_lock *const __stop_ks_locks[] __attribute__((visibility("hidden"), weak));

void ks_lock(struct ks_lock *l);
void ks_unlock(struct ks_lock *l);
/* 0 if taken, EBUSY if another thread holds it. */
int ks_trylock(struct ks_lock *l);

/* In the fork child, before anything else of the shim runs there: every
 * shim lock back to unlocked. Only the forking thread exists in the child,
 * and it held none of them across fork (no shim code forks). */
void ks_locks_after_fork(void);
/* Every shim lock, for tests: calls FN on each; returns how many. */
int ks_locks_each(void (*fn)(struct ks_lock *, void *), void *arg);

/* Sleeps NS nanoseconds with the raw system call: never through the
 * program's (or the shim's own) sleep wrappers, and never cut short by a
 * signal the caller does not block. */
void ks_nap_ns(uint64_t ns);
static inline void ks_nap_ms(unsigned ms) { ks_nap_ns((uint64_t)ms * 1000000u); }

#ifdef __cplusplus
}
#endif
#endif
