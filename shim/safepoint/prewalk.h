/* Before an abort does anything irreversible, it walks the thread's stack
 * from the point it would leave from to the thread's start, the way the
 * forced unwind will, and says whether that unwind is safe: every frame can
 * be unwound, none would call std::terminate or catch the unwind, and none
 * belongs to code the abort must not unwind through (libc, a signal handler).
 * Runs in the thread's own signal context: async-signal-safe (libunwind's
 * local unwinding with caches off, the module table, the LSDA evaluator). */
#ifndef KS_PREWALK_H
#define KS_PREWALK_H

#include <stdint.h>
#include <ucontext.h>


#ifdef __cplusplus
extern "C" {
#endif

enum ks_walk_verdict {
    KS_WALK_OK = 0,
    KS_WALK_TRANSIENT,   /* not now: a runtime frame or a signal frame is in the way */
    KS_WALK_REFUSED,     /* never from here: terminate, catch (...), no unwind info */
    KS_WALK_UNKNOWN,     /* ks_prewalk_frames: the stack could not be checked whole */
};

/* Flags for ks_prewalk. */
#define KS_WALK_SKIP_SHIM_TOP 1     /* leading frames of the shim are the exit path */
#define KS_WALK_RUNTIME_TOP 2       /* leading runtime frames may be unwound (--force) */
#define KS_WALK_LANGRT_OK 4         /* frames of a language runtime (langrt.h) may be
                                       unwound (--force); without it they refuse */

#define KS_WALK_APP_CLEANUPS 16
/* Frames with cleanups a walk remembers (the abort reports them: deliver.h
 * says KS_ABORT_MAX_CLEANUP, the same number). */
#define KS_WALK_CLEANUPS 8

/* What made a walk TRANSIENT. */
enum ks_walk_obstacle {
    KS_OBST_NONE = 0,
    KS_OBST_RUNTIME,     /* a runtime frame: the thread runs a callback of libc... */
    KS_OBST_SIGNAL,      /* a signal frame: it runs a signal handler */
    KS_OBST_NOEXCEPT,    /* the frame it would leave from is a noexcept function */
    KS_OBST_NOTHROW_CALL,/* a frame is inside a call that cannot throw (no call-site
                            entry for it): not before that call returns, at
                            transient_sp */
};

struct ks_walk {
    int verdict;
    int obstacle;             /* TRANSIENT: enum ks_walk_obstacle */
    uintptr_t where;          /* the frame the verdict is about */
    uintptr_t exit_ip;        /* the first application frame: where it leaves from */
    uintptr_t transient_sp;   /* TRANSIENT: that frame's stack pointer */
    int frames;
    int napp_cleanup;         /* ks_prewalk_frames: frames of the program (not
                                 libc's, the C++ runtime's or the shim's) whose
                                 cleanups (destructors) the unwind runs: their
                                 functions' ranges, the innermost first */
    uintptr_t app_cleanup_lo[KS_WALK_APP_CLEANUPS], app_cleanup_hi[KS_WALK_APP_CLEANUPS];
    int ncleanup;
    uintptr_t cleanup[KS_WALK_CLEANUPS];
    char reason[120];
};

/* The landing pad check's working state (padcheck.h: struct ks_pad_work),
 * some 25 KB: the caller's, kept off the walking thread's stack. */
struct ks_pad_work;

/* Walks from CTX. EXACT: CTX is a context interrupted by a signal (its IP is
 * the next instruction, not a return address). Never writes to CTX. WORK:
 * used by this walk alone until it returns. */
void ks_prewalk(ucontext_t *ctx, int exact, int flags, struct ks_walk *w,
                struct ks_pad_work *work);

/* For cancel mode (cancel_check.c): walks a stack taken as addresses
 * (stack_capture.h: IPS innermost first, N of them; bit i of EXACT set when
 * ips[i] is an interrupted pc rather than a return address) the way glibc's
 * cancellation unwind goes: through every frame, libc's and the shim's
 * included, up to the shim's thread start. OK; REFUSED: a frame would call
 * std::terminate (noexcept), catch the unwind (catch (...)) or stop it (no
 * unwind information), W->where is an address inside it and W->reason
 * names it as "module+0xoffset ..."; UNKNOWN: it could not be checked
 * whole (the frames end before the thread's start, an exception table this
 * shim cannot read). Runs on the control thread, not in signal context. */
#define KS_FRAMES_SKIP_TOP 1   /* ips[0] is where a running thread happens to be, not
                                  where its unwind will start: not evaluated */
void ks_prewalk_frames(const uintptr_t *ips, const uint64_t *exact, int n, int flags,
                       struct ks_walk *w, struct ks_pad_work *work);

/* Resolves what the walk compares against (libgcc's C personality, the type
 * abi::__forced_unwind, the shim's thread start). At init. */
void ks_prewalk_init(void *libgcc_handle);

/* Appends "module+0xoffset" for ADDR to the message in B. */
struct ks_sb;
void ks_sb_where(struct ks_sb *b, uintptr_t addr);

#ifdef __cplusplus
}
#endif
#endif
