/* What every blocking-call wrapper (interpose_block.c, interpose_wait.c)
 * is made of: enter (save the registers, publish in_call, wait out a
 * reader), leave on every way out of the scope, notice a cut by a dump
 * signal, and the time left of a timeout. Inlined into each wrapper:
 * ks_save_regs must record the wrapper's own frame. */
#ifndef KS_BLOCK_WRAP_H
#define KS_BLOCK_WRAP_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include "shim/core/blocking.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"

/* A wrapper whose real function is missing fails as the call would. */
#define KS_NEED(name, fail)         \
    do {                            \
        if (!KS_REAL(name)) {       \
            errno = ENOSYS;         \
            return fail;            \
        }                           \
    } while (0)

/* Inlined into each wrapper: ks_save_regs must record the wrapper's own
 * frame, which stays live until the wrapper returns. depth goes up before the
 * registers are written, so a wrapped call made by a signal handler that
 * interrupts this one counts as nested and never overwrites them. */
static inline __attribute__((always_inline)) struct ks_block *ks_block_enter(int call)
{
    struct ks_block *b = ks_block_self();
    if (b->depth++ > 0)
        return b;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    ks_save_regs(&b->regs);
    __atomic_store_n(&b->call, call, __ATOMIC_RELAXED);   /* a listing reads it racily (cmd_list.c) */
    __atomic_store_n(&b->in_call, 1, __ATOMIC_SEQ_CST);
    if (KS_UNLIKELY(__atomic_load_n(&b->reader, __ATOMIC_SEQ_CST)))
        ks_block_wait_reader(b);
    return b;
}

/* Runs when the wrapper's scope ends: return, cancellation, forced unwind. */
static inline void ks_block_leave(struct ks_block **bp)
{
    struct ks_block *b = *bp;
    if (b->depth > 1)
        b->depth--;
    else if (b->depth == 1)
        ks_block_drop(b);
    /* depth 0: a longjmp out of a nested handler already dropped it. */
}

#define KS_BLOCK_ENTER(self, call) \
    struct ks_block *self __attribute__((cleanup(ks_block_leave))) = ks_block_enter(call)

static inline unsigned ks_dumps(struct ks_block *self)
{
    return __atomic_load_n(&self->dumps, __ATOMIC_SEQ_CST);
}

/* After a failed call: was it cut short by a dump signal (and not only by
 * the program's)? Updates *SEEN for the next round. */
static inline int ks_cut_by_dump(struct ks_block *self, unsigned *seen)
{
    if (errno != EINTR)
        return 0;
    unsigned now = ks_dumps(self);
    if (now == *seen)
        return 0;
    *seen = now;
    return 1;
}

/* ---- Time left --------------------------------------------------------- */

static inline uint64_t ks_ts_ns(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_nsec;
}

/* *OUT = END - now, at least 0. Returns OUT. */
static inline struct timespec *ks_left_ts(uint64_t end, struct timespec *out)
{
    uint64_t now = ks_now_ns(), left = end > now ? end - now : 0;
    out->tv_sec = (time_t)(left / 1000000000u);
    out->tv_nsec = (long)(left % 1000000000u);
    return out;
}

/* Milliseconds left of a poll-style TIMEOUT begun at START (rounded up,
 * as the kernel rounds); negative (infinite) and 0 stay as they are. */
static inline int ks_left_ms(int timeout, uint64_t start)
{
    if (timeout <= 0)
        return timeout;
    uint64_t end = start + (uint64_t)timeout * 1000000u, now = ks_now_ns();
    return now >= end ? 0 : (int)((end - now + 999999u) / 1000000u);
}

#endif
