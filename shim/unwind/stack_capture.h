/* Stack capture: raw return addresses of program threads, taken inside the
 * process with libunwind, either by the thread itself in the KS_SIG_DUMP
 * handler or by the dumper from registers a blocking-call wrapper saved
 * (blocking.h). Symbolizing happens in the injector, outside the process.
 *
 * One dump runs at a time (the stack verb and cancel's check hold the dump
 * lock). It publishes a
 * table of entries sorted by tid; a signalled thread finds its entry, claims
 * it (WAITING -> CAPTURING), unwinds into it and marks it DONE. A table is
 * freed only once no handler can still be reading it; a late signal (the
 * thread answered after the dump gave up on it) finds no table, or an entry
 * that is no longer WAITING, and does nothing. */
#ifndef KS_STACK_CAPTURE_H
#define KS_STACK_CAPTURE_H

#include <stdint.h>
#include <sys/types.h>

#include "shim/core/blocking.h"
#include "shim/common/procfs.h"

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

/* Why a thread's stack was not taken (or is cut): the handler's answers
 * first, then why a thread is not signalled, then the protocol's own. One
 * enum and one table (ks_nostack_token, ks_nostack_words) for every user. */
enum ks_nostack {
    KS_NOSTACK_NONE = 0,
    KS_NOSTACK_ALTSTACK,        /* the thread was on its alternate signal stack */
    KS_NOSTACK_LOWSTACK,        /* too little stack left to unwind safely */
    KS_NOSTACK_UNWIND_FAILED,   /* libunwind could not start */
    KS_NOSTACK_EXITED,          /* its /proc status is gone, or it is a zombie */
    KS_NOSTACK_STOPPED,
    KS_NOSTACK_UNINTERRUPTIBLE,
    KS_NOSTACK_SIGNALS_BLOCKED, /* it blocks KS_SIG_DUMP */
    KS_NOSTACK_SIGNAL_PENDING,  /* an earlier dump's signal is still queued */
    KS_NOSTACK_SYSCALL,         /* its system call would return early to a handler */
    KS_NOSTACK_NO_PROCFS,       /* no /proc: nothing says a signal would be invisible */
    KS_NOSTACK_SEND_FAILED,
    KS_NOSTACK_NO_ANSWER,       /* signalled, did not answer in time */
    KS_NOSTACK_N
};
/* The protocol's token ("altstack", "low-stack", "unwind-failed", "exited",
 * "stopped", ...: docs/PROTOCOL.md), NULL for NONE. */
const char *ks_nostack_token(int why);
/* The same for a person ("it is stopped"), for a refusal's message. */
const char *ks_nostack_words(int why);

struct ks_dump_entry {
    pid_t tid;
    int state;             /* enum ks_entry_state; atomic */
    uintptr_t stack_lo, stack_hi;   /* the thread's stack; 0: unknown */
    int nframes;
    int truncated;         /* more than KS_STACK_MAX frames, or a frame without
                            * unwind info ended the walk early (see unwind) */
    int why;               /* enum ks_nostack: NONE, ALTSTACK, LOWSTACK or UNWIND_FAILED */
    uint64_t exact[KS_STACK_MAX / 64];  /* bit i: ips[i] is an exact pc (the
                            * interrupted instruction), not a return address */
    uintptr_t ips[KS_STACK_MAX];
};

struct ks_dump {
    int n;
    int answered;          /* entries that reached DONE; futex word */
    struct ks_dump_entry e[];   /* sorted by tid */
};

/* When control starts, before the first request (ks_init_serving), after
 * ks_unw_load: lets libunwind's own signal masking through (signals.h),
 * primes libunwind's dump paths (their one-time setup must not run inside a
 * signalled thread) and registers the KS_SIG_DUMP handler. */
void ks_stack_init_serving(void);
/* In a fork child: no dump runs there, and none is published. */
void ks_stack_after_fork_child(void);
/* 1 once ks_stack_init_serving ran (the dump signal has its handler). */
extern int ks_stack_ready;

/* Serializes dumps (one table published at a time). */
void ks_dump_lock(void);
void ks_dump_unlock(void);

/* A table for N entries (tids filled by the caller, sorted), or NULL. */
struct ks_dump *ks_dump_alloc(int n);
/* Makes D the table that handlers answer into. */
void ks_dump_publish(struct ks_dump *d);
/* Waits until D->answered reaches WANT, or until DEADLINE_NS (monotonic), or
 * for at most SLICE_NS, or until the bell rings (blocking.h: an answer, or a
 * thread that started waiting for its reader); returns D->answered. */
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
/* KS_NOSTACK_NONE if TID may be sent KS_SIG_DUMP invisibly, else why not:
 * EXITED, STOPPED, UNINTERRUPTIBLE, SIGNALS_BLOCKED, SIGNAL_PENDING or
 * SYSCALL (SC, the call it is blocked in, would return early to a handler;
 * NULL SC: not known). Fills ST from /proc. Not under the registry lock
 * (reads /proc). */
int ks_dump_why_not_signal(pid_t tid, const struct ks_syscall *sc, struct ks_taskstatus *st);

/* ---- Taking the stacks of a set of threads (stack_take.c) ---------------
 * The one protocol for the stack verb and cancel's check: hold every
 * registered thread (reader flag); unwind those held in a wrapped call from
 * their saved registers; signal the others where that is invisible; wait
 * for their answers, noticing those that exit; abandon the rest; let the
 * held threads go. Runs on the control side with the dump lock held.
 *
 * Each thread's system call is read from /proc only once it is held: a
 * thread held outside any wrapped call cannot enter one until it has
 * answered (blocking.h), so a read after the hold that shows a call a
 * signal would cut short is a call the shim does not wrap. A read from
 * before the hold proves nothing: the thread may have left its wrapped call
 * since, and would be taken for one still blocked in it (a dump of redis
 * under a light load missed its event loop's stack so, 1 time in 10). */
enum ks_via { KS_VIA_NONE, KS_VIA_CALL, KS_VIA_SIGNAL };

struct ks_capture {
    /* The caller's. */
    pid_t tid;
    struct ks_thread *rec;      /* its record when listed, NULL if the registry does not
                                 * know it; used only under the registry lock after
                                 * checking it is still linked with ID, or while held */
    uint64_t id;
    int gone;                   /* in: known gone (skipped); out: exited meanwhile */
    /* Filled. */
    int have_sc;                /* SC was read */
    struct ks_syscall sc;       /* its system call from /proc, read once it was held
                                 * (see ks_capture_stacks) */
    struct ks_dump_entry *e;    /* its entry in the table returned */
    int via;                    /* enum ks_via; NONE: no stack, WHY says why */
    int why;                    /* enum ks_nostack */
    int call;                   /* via CALL: the wrapped call (enum ks_call) */
    int held;                   /* its reader flag is still ours (keep_call_held) */
    struct ks_regs regs;        /* via CALL: as its wrapper saved them */
    struct ks_taskstatus st;    /* signalled or not: its status then */
};

struct ks_capture_opts {
    uint64_t answer_ns;         /* how long the signalled threads have to answer */
    uint64_t slice_ns;          /* how often meanwhile an unanswered tid is checked alive */
    uint64_t grace_ns;          /* for a handler caught mid-answer */
    int no_proc;                /* /proc unreadable: never signal (NO_PROCFS) */
    struct ks_task_dir *dir;    /* if set: /proc/self/task held open, for the system
                                 * calls' reads (procfs.h); else absolute paths */
    int keep_call_held;         /* a thread unwound from its wrapped call stays held
                                 * (held = 1): the caller lets it go (ks_reader_release) */
    /* If set: called for each thread as it is held, under the registry lock
     * with its record R linked. */
    void (*on_hold)(struct ks_capture *c, struct ks_thread *r, void *arg);
    void *arg;
};

/* Takes the stacks of the N threads V[i] (sorted by tid). Caller holds the
 * dump lock and not the registry lock. Returns the table the entries V[i]->e
 * live in (free it with ks_dump_release when done with them), or NULL out of
 * memory (nothing was done to any thread). */
struct ks_dump *ks_capture_stacks(struct ks_capture *const *v, int n,
                                  const struct ks_capture_opts *o);

#ifdef __cplusplus
}
#endif
#endif
