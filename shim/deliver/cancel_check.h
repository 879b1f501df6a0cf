/* Cancel mode's safety check. pthread_cancel unwinds the thread from its
 * cancellation point through every frame to its start. A noexcept frame on
 * the way calls std::terminate, and a catch (...) that does not rethrow makes
 * glibc abort: either kills the whole process. So before cancel mode calls
 * pthread_cancel, the shim takes the thread's stack as it is now and walks it
 * the way that unwind will (prewalk.h: ks_prewalk_frames).
 *
 * The stack is taken as the stack verb takes it (stack_capture.h):
 * - In a wrapped blocking call (blocking.h): unwound on the control thread
 *   from the registers its wrapper saved. The thread stays held (its reader
 *   flag) until ks_cancel_check_done: it cannot return from its wrapper, so
 *   a pthread_cancel made before then unwinds the frames that were checked.
 * - Otherwise: it unwinds itself in the KS_SIG_DUMP handler (SA_RESTART),
 *   when that is invisible (ks_dump_why_not_signal), and goes back to its
 *   system call. ks_cancel_check_current tells, just before pthread_cancel,
 *   whether it still sits in the same call at the same stack pointer.
 * A stack that cannot be taken (a signal would be seen, no answer) or walked
 * whole is "cannot check": cancel mode refuses it unless the client forces.
 *
 * What no check can cover: a thread that runs (is not blocked) reaches its
 * next cancellation point later, from a stack nobody has seen; only the frames
 * it runs under now are checked (docs/ending.md). */
#ifndef KS_CANCEL_CHECK_H
#define KS_CANCEL_CHECK_H

#include <stdint.h>
#include <sys/types.h>

#include "shim/safepoint/prewalk.h"
#include "shim/common/procfs.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ks_check_verdict {
    KS_CHECK_OK = 0,
    KS_CHECK_REFUSED,   /* the unwind would end the process, or could not complete */
    KS_CHECK_UNKNOWN,   /* the stack could not be taken, or walked whole */
    KS_CHECK_GONE,      /* TID is not linked (with that id): nothing was done */
};

struct ks_thread;

struct ks_cancel_check {
    int verdict;                /* enum ks_check_verdict */
    uintptr_t frame;            /* REFUSED: an address inside the frame named; 0 if none */
    char frame_text[64];        /* how REASON names that frame: "module+0xoffset" */
    char reason[240];           /* REFUSED, UNKNOWN: why, for the client */
    int napp_cleanup;           /* OK: functions of the program whose frames
                                   have cleanups (destructors) the unwind runs */
    uintptr_t app_cleanup_lo[KS_WALK_APP_CLEANUPS], app_cleanup_hi[KS_WALK_APP_CLEANUPS];
    char langrt[320];           /* a frame of a language runtime (langrt.h) is on
                                   the stack: the refusal; "" if none */
    /* The thread as it was taken. */
    pid_t tid;
    uint64_t id;
    struct ks_thread *held;     /* held in its wrapped call until _done, or NULL */
    int signalled;              /* taken through the dump signal */
    int have_sc;
    struct ks_syscall sc;       /* signalled: its system call just before the signal */
};

/* Takes the stack of TID (with id ID; 0: whichever thread has TID) and walks
 * it; fills C. A thread of a role that is never cancelled (main, shim) is not
 * looked at (verdict OK: the caller's policy refuses it). Takes the dump lock
 * and may hold the thread, both until ks_cancel_check_done; waits up to a
 * second for a signalled thread's answer. Not under the registry lock. */
void ks_cancel_check(pid_t tid, uint64_t id, struct ks_cancel_check *c);

/* Registry lock held, T linked: 1 if T is the thread checked and its stack
 * may still be the one walked (held in its call; blocked in the same system
 * call at the same stack and instruction pointers as when it was signalled;
 * or running, which no check can follow), 0 if it moved since. */
int ks_cancel_check_current(const struct ks_cancel_check *c, struct ks_thread *t);

/* Lets a held thread go and drops the dump lock. Not under the registry
 * lock (a held thread cannot leave its wrapper, so its record stays valid). */
void ks_cancel_check_done(struct ks_cancel_check *c);

/* ---- Whether the cancel may act now --------------------------------------
 * A cancel acts where the thread next reaches a cancellation point, and the
 * thread leaves holding whatever it holds there: a pthread mutex or rwlock
 * nothing releases stays locked, and every thread that needs it hangs (a
 * cancelled pthread_cond_wait re-acquires its mutex before any cleanup
 * runs). So cancel mode calls pthread_cancel only when the cancel will act
 * at once, where the thread is now (blocked in a cancellation point with
 * cancellation enabled, or asynchronous cancellation), and only if every
 * lock it would leave with has a cleanup of the program to release it: a
 * pthread_cleanup_push handler registered after the lock was taken
 * (interpose_cleanup.c), or a destructor in the frame that took the lock
 * (the function its lock call returned to has cleanups at the call the
 * thread is in now: std::unique_lock, std::lock_guard). A destructor
 * elsewhere is not taken to release it. Otherwise it waits, and says why.
 * --force skips this.
 *
 * Registry lock held, T linked, C a check of T that is current (the thread
 * sits where it was checked). Returns 0 if the cancel may act now, else 1
 * with WHY filled in and *LOCK the lock it is about (0 if none). */
int ks_cancel_must_wait(const struct ks_cancel_check *c, struct ks_thread *t, char *why,
                        size_t cap, uintptr_t *lock);

/* A cancel that waits is tried again when its client polls and asks for it
 * ("status ... retry=cancel", cmd_end.c; other clients' polls never act on
 * it), at most every KS_CANCEL_RETRY_MS, and lapses when nobody asked for
 * KS_CANCEL_LAPSE_MS: it was never issued, so nothing is left to undo.
 * cancel_wait.c; every function with the registry lock held. */
#define KS_CANCEL_RETRY_MS 100
#define KS_CANCEL_LAPSE_MS 3000
void ks_cancel_wait_set(pid_t tid, uint64_t id, const char *reason, uintptr_t lock);
void ks_cancel_wait_clear(pid_t tid, uint64_t id);
/* 1 and REASON, *LOCK if (TID, ID) has a cancel waiting (not lapsed), else 0. */
int ks_cancel_wait_get(pid_t tid, uint64_t id, char *reason, size_t cap, uintptr_t *lock);
/* 1 if (TID, ID) has a waiting cancel due for another try now; notes that a
 * client asked (and drops a lapsed one). */
int ks_cancel_wait_due(pid_t tid, uint64_t id);

#ifdef __cplusplus
}
#endif
#endif
