/* The count of pthread locks a thread holds, kept in its record
 * (registry.h: locks_held, held[], held_mark[]): the bookkeeping the lock
 * hooks (interpose_lock.c), the cond hook (interpose_cond.c) and the abort
 * (abort_exit.c) share. Only the owner thread writes it.
 *
 * locks_held is read by the control thread (list, end, abort): relaxed
 * atomic stores (a plain mov on x86), so a reader sees whole values and the
 * race is a defined one. */
#ifndef KS_HELD_H
#define KS_HELD_H

#include "registry.h"

/* Counts OBJ held, with MARK. */
static inline void ks_held_put(struct ks_thread *self, void *obj, ks_lock_mark mark)
{
    int n = self->locks_held;
    if (n >= 0 && n < KS_HELD_MAX) {
        self->held[n] = obj;
        self->held_mark[n] = mark;
    }
    __atomic_store_n(&self->locks_held, n + 1, __ATOMIC_RELAXED);
}

/* RA: the lock call's return address, taken by the exported hook itself. */
static inline void ks_held_add(struct ks_thread *self, void *obj, void *ra)
{
    ks_held_put(self, obj, ks_mark((uintptr_t)ra, self->cleanup_depth));
}

/* Takes OBJ out of the count. Returns 0 and its mark (cdepth
 * KS_CDEPTH_UNKNOWN if it was beyond the remembered ones), or -1 if nothing
 * was counted. */
static inline int ks_held_take(struct ks_thread *self, void *obj, ks_lock_mark *mark)
{
    int n = self->locks_held;
    /* A lock taken before the shim loaded is released without having been
     * counted: never go below zero. */
    if (n <= 0)
        return -1;
    /* From the newest remembered down: locks are mostly released in the
     * reverse order of taking, and of a lock taken twice (recursive, or
     * read-locked twice) the newer goes first. */
    int top = (n < KS_HELD_MAX ? n : KS_HELD_MAX) - 1;
    *mark = ks_mark(0, KS_CDEPTH_UNKNOWN);
    for (int i = top; i >= 0; i--)
        if (self->held[i] == obj) {
            *mark = self->held_mark[i];
            if (i != top) {
                self->held[i] = self->held[top];
                self->held_mark[i] = self->held_mark[top];
            }
            break;
        }
    __atomic_store_n(&self->locks_held, n - 1, __ATOMIC_RELAXED);
    return 0;
}

/* The common case of ks_held_take, for a caller that needs no mark: OBJ is
 * the newest of at most KS_HELD_MAX held locks (locks are mostly released
 * in the reverse order of taking). Takes it out of the count, as
 * ks_held_take would (its search finds OBJ at the top first), and returns
 * the count before (>= 1); returns 0 and changes nothing otherwise (then
 * ks_held_take must do the whole search). Inline in the unlock hooks: no
 * loop, no index arithmetic beyond one subtraction. */
static inline int ks_held_pop(struct ks_thread *self, void *obj)
{
    int n = self->locks_held;
    if (__builtin_expect((unsigned int)(n - 1) < KS_HELD_MAX, 1) &&
        __builtin_expect(self->held[n - 1] == obj, 1)) {
        __atomic_store_n(&self->locks_held, n - 1, __ATOMIC_RELAXED);
        return n;
    }
    return 0;
}

/* The mutex of a condition wait is released inside pthread_cond_*wait and
 * re-acquired before it returns (or, cancelled, before its cleanups run):
 * the cond wrapper takes it out of SELF's held locks for the wait and puts
 * it back after. Neither fires the abort's unlock hook. ks_lock_uncount
 * returns 1 (and *MARK, the lock's) if OBJ was counted held, 0 if not (then
 * there is nothing to put back). */
int ks_lock_uncount(struct ks_thread *self, void *obj, ks_lock_mark *mark);
void ks_lock_recount(struct ks_thread *self, void *obj, ks_lock_mark mark);

#endif
