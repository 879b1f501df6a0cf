/* Stack capture: raw return addresses of program threads, taken inside the
 * process with libunwind, either by the thread itself in the KS_SIG_DUMP
 * handler or by the dumper from registers a blocking-call wrapper saved
 * (blocking.h). Symbolizing happens in the injector, outside the process.
 *
 * One dump runs at a time (cmd_stack.c holds the dump lock). It publishes a
 * table of entries sorted by tid; a signalled thread finds its entry, claims
 * it (WAITING -> CAPTURING), unwinds into it and marks it DONE. A table is
 * freed only once no handler can still be reading it; a late signal (the
 * thread answered after the dump gave up on it) finds no table, or an entry
 * that is no longer WAITING, and does nothing. */
#ifndef KS_STACK_CAPTURE_H
#define KS_STACK_CAPTURE_H

#include <stdint.h>
#include <sys/types.h>

#include "blocking.h"
#include "procfs.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KS_STACK_MAX 128   /* frames kept per thread; deeper stacks are cut */

enum ks_entry_state {
    KS_ENTRY_IDLE = 0,     /* not signalled (yet) */
    KS_ENTRY_WAITING,      /* signalled; the thread has not answered */
    KS_ENTRY_CAPTURING,    /* its handler is unwinding */
    KS_ENTRY_DONE,         /* frames are valid */
    KS_ENTRY_ABANDONED,    /* the dump stopped waiting for it */
};

/* Why an answered entry holds no (or a cut) stack. */
enum ks_capture_why {
    KS_CAPTURE_OK = 0,
    KS_CAPTURE_ALTSTACK,   /* the thread was on its alternate signal stack */
    KS_CAPTURE_LOWSTACK,   /* too little stack left to unwind safely */
    KS_CAPTURE_FAILED,     /* libunwind could not start */
};

struct ks_dump_entry {
    pid_t tid;
    int state;             /* enum ks_entry_state; atomic */
    uintptr_t stack_lo, stack_hi;   /* the thread's stack; 0: unknown */
    int nframes;
    int truncated;         /* more than KS_STACK_MAX frames, or a frame without
                            * unwind info ended the walk early (see unwind) */
    int why;               /* enum ks_capture_why */
    uint64_t exact[KS_STACK_MAX / 64];  /* bit i: ips[i] is an exact pc (the
                            * interrupted instruction), not a return address */
    uintptr_t ips[KS_STACK_MAX];
};

struct ks_dump {
    int n;
    int answered;          /* entries that reached DONE; futex word */
    struct ks_dump_entry e[];   /* sorted by tid */
};

/* Loads nothing lazily later: primes libunwind (its one-time setup must not
 * run inside a signalled thread), registers the KS_SIG_DUMP handler and lets
 * libunwind's own signal masking through (signals.h). Called from ks_init. */
void ks_stack_init(void);
/* In a fork child: no dump runs there, and none is published. */
void ks_stack_after_fork_child(void);
/* 1 once ks_stack_init ran (the dump signal has its handler). */
extern int ks_stack_ready;

/* Serializes dumps (one table published at a time). */
void ks_dump_lock(void);
void ks_dump_unlock(void);

/* A table for N entries (tids filled by the caller, sorted), or NULL. */
struct ks_dump *ks_dump_alloc(int n);
/* Makes D the table that handlers answer into. */
void ks_dump_publish(struct ks_dump *d);
/* Waits until D->answered reaches WANT, or until DEADLINE_NS (monotonic), or
 * for at most SLICE_NS; returns D->answered. */
int ks_dump_wait(struct ks_dump *d, int want, uint64_t deadline_ns, uint64_t slice_ns);
/* Marks E abandoned if its thread has not started answering; if it is
 * answering right now, waits up to GRACE_NS for it. Returns E's final state. */
int ks_dump_abandon(struct ks_dump_entry *e, uint64_t grace_ns);
/* Unpublishes D and frees it once no handler can touch it. If a handler
 * stays inside it (its thread was stopped mid-answer), D is leaked rather
 * than freed under it. */
void ks_dump_release(struct ks_dump *d);

/* Unwinds, on the calling thread, the stack of a thread held in a blocking
 * call (blocking.h) from the registers its wrapper saved. */
void ks_unwind_regs(const struct ks_regs *r, struct ks_dump_entry *e);

/* ---- Holding and signalling one thread (the stack verb, cancel's check) --
 * A reader holds thread R by setting its reader flag (blocking.h) under the
 * registry lock with R linked: then either R sits in a wrapped call and
 * cannot leave it, or R enters none until the flag drops (the dump handler
 * drops it when R answers). */
struct ks_thread;
/* Finds R's stack bounds once and keeps them in its block (for the handler's
 * low-stack check). Registry lock held, R linked. Allocates
 * (pthread_getattr_np): call it before holding any thread, since a held
 * thread may be in a handler that interrupted malloc. */
void ks_stack_bounds(struct ks_thread *r);
/* Lets R go: clears its reader flag and wakes its wrapper. R must still be
 * linked (registry lock held) or held in its wrapped call. */
void ks_reader_release(struct ks_thread *r);
/* NULL if TID may be sent KS_SIG_DUMP invisibly, else why not: "exited",
 * "stopped", "uninterruptible", "signals-blocked", "signal-pending" (an
 * earlier dump's signal is still queued) or "syscall" (SC, the call it is
 * blocked in, would return early to a handler; NULL SC: not known). Fills ST
 * from /proc. Not under the registry lock (reads /proc). */
const char *ks_dump_why_not_signal(pid_t tid, const struct ks_syscall *sc, struct ks_taskstatus *st);

#ifdef __cplusplus
}
#endif
#endif
