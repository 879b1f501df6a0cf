/* See cancel_check.h. */
#include "cancel_check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "asfmt.h"
#include "blocking.h"
#include "ks.h"
#include "prewalk.h"
#include "registry.h"
#include "safepoint.h"
#include "signals.h"
#include "stack_capture.h"

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

static void ks_nap_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    syscall(SYS_nanosleep, &ts, NULL);   /* the shim's own wait: not through its hooks */
}

static const char *ks_why_words(const char *why, const struct ks_cancel_check *c, char *buf,
                                size_t cap)
{
    if (strcmp(why, "stopped") == 0)
        return "it is stopped";
    if (strcmp(why, "uninterruptible") == 0)
        return "it stays in uninterruptible sleep";
    if (strcmp(why, "signals-blocked") == 0)
        return "it blocks the shim's signals";
    if (strcmp(why, "signal-pending") == 0)
        return "an earlier signal of the shim is still pending on it";
    if (strcmp(why, "syscall") == 0) {
        snprintf(buf, cap, "it is blocked in system call %ld, which a signal would cut short",
                 c->sc.nr);
        return buf;
    }
    return why;
}

/* Asks the thread to take its own stack into D's only entry. Returns 0 when
 * the entry is DONE; else sets the verdict. The thread is held (reader
 * flag) on entry and released on return: by its handler when it answers,
 * here otherwise. */
static int ks_check_by_signal(struct ks_cancel_check *c, struct ks_dump *d)
{
    struct ks_dump_entry *e = &d->e[0];
    struct ks_taskstatus st;
    c->have_sc = ks_read_task_syscall(c->tid, &c->sc) == 0;
    const char *why = ks_dump_why_not_signal(c->tid, c->have_sc ? &c->sc : NULL, &st);
    ks_dump_publish(d);
    int sent = 0;
    ks_registry_lock();
    struct ks_thread *t = ks_check_find(c);
    if (t && !why) {
        __atomic_store_n(&e->state, KS_ENTRY_WAITING, __ATOMIC_SEQ_CST);
        if (ks_signal_thread_locked(t, KS_SIG_DUMP) == 0)
            sent = 1;
        else {
            __atomic_store_n(&e->state, KS_ENTRY_IDLE, __ATOMIC_SEQ_CST);
            why = "the shim's signal could not be sent";
        }
    }
    if (t && !sent)
        ks_reader_release(t);
    ks_registry_unlock();
    c->held = NULL;
    if (!t || (why && strcmp(why, "exited") == 0)) {
        c->verdict = KS_CHECK_GONE;
        return -1;
    }
    if (why) {
        char buf[96];
        ks_check_unknown(c, "%s", ks_why_words(why, c, buf, sizeof buf));
        return -1;
    }
    /* A thread on its way out blocks every signal and never answers. */
    uint64_t deadline = ks_now_ns() + KS_CHECK_ANSWER_NS;
    int gone = 0;
    while (ks_dump_wait(d, 1, deadline, KS_CHECK_SLICE_NS) < 1 && ks_now_ns() < deadline) {
        if (syscall(SYS_tgkill, ks_getpid(), c->tid, 0) != 0 && errno == ESRCH) {
            gone = 1;
            break;
        }
    }
    if (ks_dump_abandon(e, KS_CHECK_GRACE_NS) == KS_ENTRY_DONE) {
        c->signalled = 1;
        return 0;
    }
    ks_registry_lock();
    t = ks_check_find(c);
    if (t)
        ks_reader_release(t);
    ks_registry_unlock();
    if (gone || !t)
        c->verdict = KS_CHECK_GONE;
    else
        ks_check_unknown(c, "it did not answer the shim's signal within %llu ms",
                         KS_CHECK_ANSWER_NS / 1000000);
    return -1;
}

/* Walks the frames in E; fills the verdict. */
static void ks_check_walk(struct ks_cancel_check *c, const struct ks_dump_entry *e, int flags)
{
    static const char *const capture_why[] = {
        [KS_CAPTURE_ALTSTACK] = "it runs on its alternate signal stack",
        [KS_CAPTURE_LOWSTACK] = "too little of its stack is left to walk it",
        [KS_CAPTURE_FAILED] = "libunwind could not start from its registers",
    };
    if (e->why > 0 && e->why <= KS_CAPTURE_FAILED) {
        ks_check_unknown(c, "%s", capture_why[e->why]);
        return;
    }
    struct ks_walk w;
    ks_prewalk_frames(e->ips, e->exact, e->nframes, flags, &w);
    if (w.verdict == KS_WALK_OK) {
        c->verdict = KS_CHECK_OK;
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
        const char *why = sc.nr == KS_SYSCALL_RUNNING ? "running"
                        : ks_dump_why_not_signal(tid, &sc, &st);
        if (!why || (strcmp(why, "running") != 0 && strcmp(why, "uninterruptible") != 0 &&
                     strcmp(why, "signal-pending") != 0))
            return;
        ks_nap_ns(KS_CHECK_SETTLE_NAP_NS);
    }
}

void ks_cancel_check(pid_t tid, uint64_t id, struct ks_cancel_check *c)
{
    memset(c, 0, sizeof *c);
    c->tid = tid;
    c->id = id;
    ks_dump_lock();
    /* The walk classifies frames by module: a library dlopened since the
     * last look must be in the table. Takes the loader's lock. */
    ks_safepoint_refresh();
    struct ks_dump *d = ks_dump_alloc(1);
    if (!d) {
        ks_check_unknown(c, "out of memory");
        return;
    }
    d->e[0].tid = tid;
    ks_check_settle(tid);
    struct ks_regs regs;
    int in_call = 0, deferred;
    ks_registry_lock();
    struct ks_thread *t = ks_check_find(c);
    if (!t || t->role != KS_ROLE_APP) {
        c->verdict = t ? KS_CHECK_OK : KS_CHECK_GONE;
        ks_registry_unlock();
        ks_dump_release(d);
        return;
    }
    c->id = t->id;
    ks_stack_bounds(t);   /* allocates: before the hold */
    struct ks_block *b = ks_block_of(t);
    d->e[0].stack_lo = b->stack_lo;
    d->e[0].stack_hi = b->stack_hi;
    __atomic_store_n(&b->reader, 1, __ATOMIC_SEQ_CST);
    c->held = t;
    if (__atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST)) {
        in_call = 1;
        regs = b->regs;
    }
    /* A deferred cancellation starts at a call into a cancellation point,
     * never at the instruction the signal interrupted (for a blocked thread,
     * that is the system call in libc, whose frame has nothing to check). */
    deferred = !__atomic_load_n(&t->cancel_async, __ATOMIC_RELAXED);
    ks_registry_unlock();
    if (in_call) {
        ks_unwind_regs(&regs, &d->e[0]);
        ks_check_walk(c, &d->e[0], 0);
    } else if (ks_check_by_signal(c, d) == 0) {
        ks_check_walk(c, &d->e[0], deferred ? KS_FRAMES_SKIP_TOP : 0);
    }
    ks_dump_release(d);
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
