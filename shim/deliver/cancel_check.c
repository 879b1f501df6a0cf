/* See cancel_check.h. */
#include "cancel_check.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim/core/asfmt.h"
#include "shim/core/blocking.h"
#include "shim/core/ks.h"
#include "shim/safepoint/langrt.h"
#include "shim/safepoint/padcheck.h"
#include "shim/core/lock.h"
#include "shim/safepoint/prewalk.h"
#include "shim/core/registry.h"
#include "shim/safepoint/safepoint.h"
#include "shim/core/signals.h"
#include "shim/unwind/stack_capture.h"

#define KS_CHECK_ANSWER_NS (1000ull * 1000000)   /* the stack verb's default wait */
#define KS_CHECK_GRACE_NS (50ull * 1000000)      /* for a handler caught mid-answer */
#define KS_CHECK_SLICE_NS (20ull * 1000000)      /* how often liveness is checked */
#define KS_CHECK_SETTLE_NS (50ull * 1000000)     /* running, D state, a dump signal queued: */
#define KS_CHECK_SETTLE_NAP_NS (2ull * 1000000)  /* waited out this long, looked at this often */

static void ks_check_unknown(struct ks_cancel_check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ks_check_unknown(struct ks_cancel_check *c, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    c->verdict = KS_CHECK_UNKNOWN;
    snprintf(c->reason, sizeof c->reason, "cannot check the stack of thread %d "
             "(%s); --force cancels without the check", (int)c->tid, what);
}

/* The linked record of the thread checked. Registry lock held. */
static struct ks_thread *ks_check_find(const struct ks_cancel_check *c)
{
    struct ks_thread *t = ks_registry_find(c->tid);
    return t && (!c->id || t->id == c->id) ? t : NULL;
}

/* Why no stack was taken, in words: a thread blocked in a system call
 * that a signal would cut short says which. */
static void ks_check_nostack(struct ks_cancel_check *c, int why)
{
    if (why == KS_NOSTACK_SYSCALL)
        ks_check_unknown(c, "it is blocked in system call %ld, which a signal would cut short",
                         c->sc.nr);
    else if (why == KS_NOSTACK_NO_ANSWER)
        ks_check_unknown(c, "it did not answer the shim's signal within %llu ms",
                         KS_CHECK_ANSWER_NS / 1000000);
    else
        ks_check_unknown(c, "%s", ks_nostack_words(why));
}

/* A frame of a language runtime on the stack (langrt.h): C->langrt. */
static void ks_check_langrt(struct ks_cancel_check *c, const struct ks_dump_entry *e)
{
    char module[64];
    int rt = ks_langrt_scan(e->ips, e->nframes, NULL, module, sizeof module);
    if (rt)
        ks_langrt_refusal(rt, module, c->tid, "runs in", c->langrt, sizeof c->langrt);
}

/* Walks the frames in E; fills the verdict. */
static void ks_check_walk(struct ks_cancel_check *c, const struct ks_dump_entry *e, int flags)
{
    if (e->why != KS_NOSTACK_NONE) {
        ks_check_nostack(c, e->why);
        return;
    }
    ks_check_langrt(c, e);
    struct ks_walk w;
    /* On this connection thread's own stack (256 KiB): the walk reads the
     * target's stack as addresses, it does not run on it. */
    struct ks_pad_work work;
    ks_prewalk_frames(e->ips, e->exact, e->nframes, flags, &w, &work);
    if (w.verdict == KS_WALK_OK) {
        c->verdict = KS_CHECK_OK;
        c->napp_cleanup = w.napp_cleanup;
        memcpy(c->app_cleanup_lo, w.app_cleanup_lo, sizeof c->app_cleanup_lo);
        memcpy(c->app_cleanup_hi, w.app_cleanup_hi, sizeof c->app_cleanup_hi);
        return;
    }
    if (w.verdict == KS_WALK_UNKNOWN) {
        ks_check_unknown(c, "%s", w.reason);
        return;
    }
    c->verdict = KS_CHECK_REFUSED;
    snprintf(c->reason, sizeof c->reason, "%s", w.reason);
    if (w.where) {
        struct ks_sb b;
        ks_sb_init(&b, c->frame_text, sizeof c->frame_text);
        ks_sb_where(&b, w.where);
        c->frame = w.where;
    }
}

/* Before the thread is held (a held thread that enters a wrapped call waits
 * there): waits a little while it runs or sits in a passing state. A running
 * thread reaches its cancellation point from frames not seen yet; most
 * threads asked to end run in short bursts between blocking calls, so the
 * stack walked is then the one the cancellation will unwind. */
static void ks_check_settle(pid_t tid)
{
    uint64_t end = ks_now_ns() + KS_CHECK_SETTLE_NS;
    struct ks_syscall sc;
    struct ks_taskstatus st;
    while (ks_now_ns() < end && ks_read_task_syscall(tid, &sc) == 0) {
        int running = sc.nr == KS_SYSCALL_RUNNING;
        int why = running ? KS_NOSTACK_NONE : ks_dump_why_not_signal(tid, &sc, &st);
        if (!running && why != KS_NOSTACK_UNINTERRUPTIBLE && why != KS_NOSTACK_SIGNAL_PENDING)
            return;
        ks_nap_ns(KS_CHECK_SETTLE_NAP_NS);
    }
}

/* Under the registry lock as the thread is held: a deferred cancellation
 * starts at a call into a cancellation point, never at the instruction the
 * signal interrupted (for a blocked thread, that is the system call in
 * libc, whose frame has nothing to check). */
static void ks_check_on_hold(struct ks_capture *cap, struct ks_thread *r, void *deferred)
{
    (void)cap;
    *(int *)deferred = !__atomic_load_n(&r->cancel_async, __ATOMIC_RELAXED);
}

/* Takes the stack of the thread checked (CAP: its tid and record) and walks
 * it. */
static void ks_check_take(struct ks_cancel_check *c, struct ks_capture *cap)
{
    int deferred = 0;
    struct ks_capture_opts o = {
        .answer_ns = KS_CHECK_ANSWER_NS,
        .slice_ns = KS_CHECK_SLICE_NS,
        .grace_ns = KS_CHECK_GRACE_NS,
        .keep_call_held = 1,   /* until ks_cancel_check_done: the cancel acts in that call */
        .on_hold = ks_check_on_hold,
        .arg = &deferred,
    };
    struct ks_dump *d = ks_capture_stacks(&cap, 1, &o);
    if (!d) {
        ks_check_unknown(c, "out of memory");
        return;
    }
    c->held = cap->held ? cap->rec : NULL;
    c->have_sc = cap->have_sc;
    c->sc = cap->sc;
    if (cap->via == KS_VIA_CALL) {
        ks_check_walk(c, cap->e, 0);
    } else if (cap->via == KS_VIA_SIGNAL) {
        c->signalled = 1;
        ks_check_walk(c, cap->e, deferred ? KS_FRAMES_SKIP_TOP : 0);
    } else if (cap->gone || cap->why == KS_NOSTACK_EXITED) {
        c->verdict = KS_CHECK_GONE;
    } else {
        ks_check_nostack(c, cap->why);
    }
    ks_dump_release(d);
}

void ks_cancel_check(pid_t tid, uint64_t id, struct ks_cancel_check *c)
{
    memset(c, 0, sizeof *c);
    c->tid = tid;
    c->id = id;
    ks_dump_lock();
    /* The walk classifies frames by module: a library dlopened since the
     * last look must be in the table, with its GOT for the landing pad
     * scan. Takes the loader's lock. */
    ks_safepoint_refresh_pads();
    ks_check_settle(tid);
    struct ks_capture cap = {.tid = tid};
    ks_registry_lock();
    struct ks_thread *t = ks_check_find(c);
    if (t && t->role == KS_ROLE_APP) {
        cap.rec = t;
        cap.id = c->id = t->id;
    }
    ks_registry_unlock();
    if (!cap.rec)
        c->verdict = t ? KS_CHECK_OK : KS_CHECK_GONE;
    else
        ks_check_take(c, &cap);
}

int ks_cancel_check_current(const struct ks_cancel_check *c, struct ks_thread *t)
{
    if (t->tid != c->tid || t->id != c->id)
        return 0;
    if (c->held)   /* in_call drops when the real call returns: it leaves */
        return c->held == t && __atomic_load_n(&ks_block_of(t)->in_call, __ATOMIC_SEQ_CST);
    if (!c->signalled)
        return 1;
    struct ks_syscall now;
    if (ks_read_task_syscall(c->tid, &now) != 0)
        return 0;
    if (now.nr == KS_SYSCALL_RUNNING)
        return 1;
    return c->have_sc && now.nr == c->sc.nr && now.sp == c->sc.sp && now.pc == c->sc.pc;
}

void ks_cancel_check_done(struct ks_cancel_check *c)
{
    if (c->held)
        ks_reader_release(c->held);
    c->held = NULL;
    ks_dump_unlock();
}

/* ---- Whether the cancel may act now ------------------------------------- */

/* The system calls glibc 2.36 makes cancellation points (SYSCALL_CANCEL):
 * a thread blocked in one with cancellation enabled acts on a cancel right
 * there. A futex wait is one in pthread_cond_*wait, pthread_join and
 * sem_wait, which wait with FUTEX_WAIT_BITSET; a mutex waits with
 * FUTEX_WAIT, and the timed mutex and rwlock waits that use the bitset
 * too are ones the shim's lock hooks know (WAIT_KIND). */
static int ks_syscall_cancels(const struct ks_syscall *sc, int wait_kind)
{
    switch (sc->nr) {
    case SYS_read: case SYS_write: case SYS_open: case SYS_openat: case SYS_creat:
    case SYS_close: case SYS_readv: case SYS_writev: case SYS_pread64: case SYS_pwrite64:
    case SYS_preadv: case SYS_pwritev: case SYS_preadv2: case SYS_pwritev2:
    case SYS_accept: case SYS_accept4: case SYS_connect: case SYS_recvfrom:
    case SYS_recvmsg: case SYS_recvmmsg: case SYS_sendto: case SYS_sendmsg:
    case SYS_sendmmsg: case SYS_poll: case SYS_ppoll: case SYS_select: case SYS_pselect6:
    case SYS_epoll_wait: case SYS_epoll_pwait: case SYS_epoll_pwait2: case SYS_nanosleep:
    case SYS_clock_nanosleep: case SYS_pause: case SYS_rt_sigsuspend:
    case SYS_rt_sigtimedwait: case SYS_wait4: case SYS_waitid: case SYS_msgrcv:
    case SYS_msgsnd: case SYS_fsync: case SYS_fdatasync: case SYS_msync:
    case SYS_sync_file_range: case SYS_mq_timedsend: case SYS_mq_timedreceive:
        return 1;
    case SYS_fcntl:
        return sc->args[1] == F_SETLKW || sc->args[1] == F_OFD_SETLKW;
    case SYS_futex:
        return (sc->args[1] & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET &&
               wait_kind != KS_WAIT_MUTEX && wait_kind != KS_WAIT_RWLOCK;
    default:
        return 0;
    }
}

/* Where the cancel would act: 1 at once (blocked in a cancellation point),
 * else 0 with WHY filled in. */
static int ks_cancel_acts_now(const struct ks_cancel_check *c, struct ks_thread *t, int wait_kind,
                              char *why, size_t cap)
{
    if (c->held) {
        int call = __atomic_load_n(&ks_block_of(t)->call, __ATOMIC_RELAXED);
        if (call != KS_CALL_SEMOP && call != KS_CALL_SEMTIMEDOP)
            return 1;
        snprintf(why, cap, "it is blocked in %s, which is not a cancellation point: a cancel "
                 "would act later, holding whatever it holds then; waits until it blocks in one "
                 "holding no lock (--force cancels anyway)", ks_call_name(call));
        return 0;
    }
    struct ks_syscall now;
    if (c->signalled && ks_read_task_syscall(t->tid, &now) == 0 && now.nr >= 0) {
        if (ks_syscall_cancels(&now, wait_kind))
            return 1;
        snprintf(why, cap, "it is blocked in system call %ld, which is not a cancellation "
                 "point here: a cancel would act later, holding whatever it holds then; waits "
                 "until it blocks in one holding no lock (--force cancels anyway)", now.nr);
        return 0;
    }
    snprintf(why, cap, "it is running: a cancel would act at its next cancellation point, "
             "holding whatever it holds then; waits until it blocks in one holding no lock "
             "(--force cancels anyway)");
    return 0;
}

/* A lock taken with MARK is released by the program's own cleanups if a
 * pthread_cleanup_push handler was registered after it and is still
 * (DEPTH: the count now), or the function that took it has a frame with a
 * cleanup on the way out. */
static int ks_covered(const struct ks_cancel_check *c, int depth, ks_lock_mark mark)
{
    int cdepth = ks_mark_cdepth(mark);
    uintptr_t ra = ks_mark_ra(mark);
    if (cdepth != KS_CDEPTH_UNKNOWN && depth > cdepth)
        return 1;
    for (int i = 0; ra && i < c->napp_cleanup && i < KS_WALK_APP_CLEANUPS; i++)
        if (ra - 1 >= c->app_cleanup_lo[i] && ra - 1 < c->app_cleanup_hi[i])
            return 1;
    return 0;
}

int ks_cancel_must_wait(const struct ks_cancel_check *c, struct ks_thread *t, char *why,
                        size_t cap, uintptr_t *lock)
{
    *lock = 0;
    if (__atomic_load_n(&t->cancel_disabled, __ATOMIC_RELAXED)) {
        snprintf(why, cap, "cancellation disabled by the thread; a cancel would act at its "
                 "first cancellation point after it re-enables, holding whatever it holds then: "
                 "waits until it re-enables (--force cancels anyway)");
        return 1;
    }
    /* The locks as one consistent view: the cond wrapper moves the cond's
     * mutex in and out of the count under the same lock. */
    ks_wait_lock(t);
    int n = __atomic_load_n(&t->locks_held, __ATOMIC_RELAXED);
    int depth = __atomic_load_n(&t->cleanup_depth, __ATOMIC_RELAXED);
    int wait_kind = __atomic_load_n(&t->wait_kind, __ATOMIC_RELAXED);
    void *cond_mu = wait_kind == KS_WAIT_COND ? t->wait_mutex : NULL;
    ks_lock_mark cond_mark = t->wait_mutex_mark, mark[KS_HELD_MAX];
    void *held[KS_HELD_MAX];
    for (int i = 0; i < n && i < KS_HELD_MAX; i++) {
        held[i] = t->held[i];
        mark[i] = t->held_mark[i];
    }
    ks_wait_unlock(t);
    if (!__atomic_load_n(&t->cancel_async, __ATOMIC_RELAXED) &&
        !ks_cancel_acts_now(c, t, wait_kind, why, cap))
        return 1;
    if (cond_mu && !ks_covered(c, depth, cond_mark)) {
        *lock = (uintptr_t)cond_mu;
        snprintf(why, cap, "it waits in pthread_cond_wait on mutex 0x%lx, which a cancel there "
                 "re-acquires before any cleanup runs, and no cleanup of the program would "
                 "release it; waits until it blocks elsewhere holding no lock (--force cancels "
                 "anyway)", (unsigned long)*lock);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        if (i < KS_HELD_MAX && ks_covered(c, depth, mark[i]))
            continue;
        *lock = i < KS_HELD_MAX ? (uintptr_t)held[i] : 0;
        char which[40] = "a lock";
        if (*lock)
            snprintf(which, sizeof which, "lock 0x%lx", (unsigned long)*lock);
        snprintf(why, cap, "it holds %s, which a cancel now would leave locked (%d lock%s held "
                 "in all), and no cleanup of the program would release it; waits until it holds "
                 "none (--force cancels anyway)", which, n, n == 1 ? "" : "s");
        return 1;
    }
    return 0;
}
