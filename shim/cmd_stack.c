/* "stack [tid=N] [answer_ms=MS]": every program thread's stack (or N's),
 * what it is blocked on, and the owner of the lock it waits for. One record
 * per thread:
 *
 *   stack tid=T name=N role=R state=S via=call|signal|none [why=W] [call=C]
 *         [syscall=NR sargs=A,...,F ssp=SP spc=PC] [wait=K wait_obj=O owner=T]
 *         [ips=PC!,RA,...] [cut=1] [selected=0]
 *
 * How a stack is taken, without ever making a call return early:
 * - via=call: the thread sits in a wrapped blocking call (blocking.h); it is
 *   unwound here from the registers its wrapper saved, and not signalled.
 * - via=signal: it is sent KS_SIG_DUMP and unwinds itself in the handler
 *   (stack_capture.c), if that is invisible: it is not stopped, does not
 *   block the signal, and is not in a system call that a handler would cut
 *   short (the kernel says which call in /proc/self/task/TID/syscall).
 * - via=none: why says which of those held, or that it did not answer within
 *   answer_ms; its system call and pc are still reported.
 * In ips, '!' marks an exact pc (the interrupted instruction); the others are
 * return addresses. The shim's own threads are not dumped. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "commands.h"
#include "blocking.h"
#include "ks.h"
#include "procfs.h"
#include "registry.h"
#include "signals.h"
#include "stack_capture.h"
#include "waitinfo.h"

#define KS_ANSWER_MS_DEFAULT 1000
#define KS_CAPTURE_GRACE_NS (50 * 1000000ull)   /* for a handler caught mid-answer */
#define KS_LIVENESS_NS (20 * 1000000ull)        /* how often unanswered tids are checked */

enum ks_via { KS_VIA_NONE, KS_VIA_CALL, KS_VIA_SIGNAL };

struct ks_target {
    pid_t tid;
    int selected;
    int gone;                   /* exited during the dump: not reported */
    /* From the registry (registered == 0: a thread the shim did not see start). */
    int registered, role, wait_kind;
    uint64_t id;
    void *wait_obj;
    struct ks_thread *rec;      /* dereferenced only under the registry lock, after
                                 * checking it is still linked with this id, or while
                                 * the thread is held by its reader flag */
    int held;                   /* we set its reader flag (blocking.h) */
    /* From /proc: stat for every thread, syscall for the selected ones,
     * status (signal masks) only for those about to be signalled. */
    int have_syscall;
    struct ks_taskstat stat;
    struct ks_taskstatus st;
    struct ks_syscall sc;
    /* The capture. */
    int via, call;
    const char *why;
    struct ks_regs regs;
    struct ks_dump_entry *e;
    pid_t owner;
};

struct ks_targets {
    struct ks_target *v;
    int n, cap, nsel;
    int no_proc;                /* /proc unreadable (a chroot): the registry's threads only */
};

static int ks_target_cmp(const void *a, const void *b)
{
    pid_t x = ((const struct ks_target *)a)->tid, y = ((const struct ks_target *)b)->tid;
    return (x > y) - (x < y);
}

/* What the dump needs of T's record R. Registry lock held, R linked. */
static void ks_target_take(struct ks_target *t, struct ks_thread *r)
{
    t->registered = 1;
    t->role = r->role;
    t->id = r->id;
    t->rec = r;
    t->wait_kind = __atomic_load_n(&r->wait_kind, __ATOMIC_RELAXED);
    t->wait_obj = __atomic_load_n(&r->wait_obj, __ATOMIC_RELAXED);
}

/* Without /proc (a chroot that lacks it): the threads the registry knows,
 * taken under its lock. Foreign threads cannot be seen. */
static int ks_collect_registry(struct ks_targets *ts)
{
    ks_registry_lock();
    int cap = ks_registry_count();
    ts->v = calloc((size_t)cap + 1, sizeof *ts->v);
    for (struct ks_thread *r = ks_registry_first(); ts->v && r && ts->n < cap; r = r->next) {
        struct ks_target *t = &ts->v[ts->n++];
        t->tid = r->tid;
        t->owner = KS_OWNER_UNKNOWN;
        ks_target_take(t, r);
    }
    ks_registry_unlock();
    if (!ts->v)
        return ENOMEM;
    ts->cap = cap + 1;
    ts->no_proc = 1;
    qsort(ts->v, (size_t)ts->n, sizeof *ts->v, ks_target_cmp);
    return 0;
}

/* Every tid in /proc/self/task, merged with the registry under its lock. */
static int ks_stack_targets(struct ks_targets *ts, pid_t only)
{
    int n = 0;
    pid_t *tids = ks_read_ids("/proc/self/task", &n);
    if (!tids && ks_collect_registry(ts) == 0)
        goto select;
    if (!tids)
        return errno;
    struct ks_target *grown = realloc(ts->v, (size_t)(ts->n + n + 1) * sizeof *grown);
    if (!grown) {
        free(tids);
        return ENOMEM;
    }
    ts->v = grown;
    ts->cap = ts->n + n + 1;
    for (int i = 0; i < n; i++) {
        struct ks_target *t = &ts->v[ts->n++];
        memset(t, 0, sizeof *t);
        t->tid = tids[i];
        t->owner = KS_OWNER_UNKNOWN;
    }
    free(tids);
    qsort(ts->v, (size_t)ts->n, sizeof *ts->v, ks_target_cmp);
    ks_registry_lock();
    for (struct ks_thread *r = ks_registry_first(); r; r = r->next) {
        struct ks_target key = {.tid = r->tid};
        struct ks_target *t = bsearch(&key, ts->v, (size_t)ts->n, sizeof *ts->v, ks_target_cmp);
        if (!t)
            continue;   /* started after the directory was read */
        ks_target_take(t, r);
    }
    ks_registry_unlock();
    /* Tasks the registry did not know yet: being born, dying, or foreign. */
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->registered || (only && t->tid != only))
            continue;
        enum ks_settle v = ks_registry_settle(t->tid, ks_task_age_ms(t->tid));
        if (v == KS_SETTLE_EXITING) {
            t->gone = 1;
        } else if (v == KS_SETTLE_LINKED) {
            ks_registry_lock();
            struct ks_thread *r = ks_registry_find(t->tid);
            if (r) {
                ks_target_take(t, r);
            } else {
                t->gone = 1;
            }
            ks_registry_unlock();
        }
    }
select:
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->registered && t->role == KS_ROLE_SHIM)
            t->gone = 1;   /* ours: never dumped, never listed */
        t->selected = !t->gone && (!only || t->tid == only);
        ts->nsel += t->selected;
    }
    return 0;
}

/* The record of T if it is still the same linked thread. Registry lock held. */
static struct ks_thread *ks_live_rec(const struct ks_target *t)
{
    struct ks_thread *r = t->registered ? ks_registry_find(t->tid) : NULL;
    return r == t->rec && r && r->id == t->id ? r : NULL;
}

/* Holds every selected registered thread (reader flag, blocking.h). A thread
 * found inside a wrapped call has its registers copied and stays held until
 * it is unwound; the others stay held until they answer or are given up.
 * From here to ks_finish the dumper does not allocate, and takes no lock
 * but the registry's and the loader's (libunwind's dl_iterate_phdr; dlopen
 * holds it only while it links a library into the list). */
static void ks_hold_all(struct ks_targets *ts)
{
    ks_registry_lock();
    /* Stack bounds first: pthread_getattr_np allocates, and nothing may
     * allocate while a thread is held. A held thread may be in a signal
     * handler that interrupted malloc with the arena lock taken. */
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        struct ks_thread *r = t->selected && !t->gone ? ks_live_rec(t) : NULL;
        if (!r)
            continue;
        ks_stack_bounds(r);
        t->e->stack_lo = ks_block_of(r)->stack_lo;
        t->e->stack_hi = ks_block_of(r)->stack_hi;
    }
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        struct ks_thread *r = t->selected && !t->gone ? ks_live_rec(t) : NULL;
        if (!r)
            continue;
        struct ks_block *b = ks_block_of(r);
        __atomic_store_n(&b->reader, 1, __ATOMIC_SEQ_CST);
        t->held = 1;
        if (__atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST)) {
            t->via = KS_VIA_CALL;
            t->call = b->call;
            t->regs = b->regs;
        }
    }
    ks_registry_unlock();
}

/* Unwinds the threads held in wrapped calls and lets them go. Their records
 * stay valid while they are held: a held thread cannot leave its wrapper. */
static void ks_unwind_held_calls(struct ks_targets *ts)
{
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->via != KS_VIA_CALL)
            continue;
        ks_unwind_regs(&t->regs, t->e);
        t->e->state = KS_ENTRY_DONE;
        ks_reader_release(t->rec);
        t->held = 0;
    }
}

/* Signals the selected threads that are not held in a call, when that is
 * invisible. Returns how many were signalled. */
static int ks_signal_all(struct ks_targets *ts)
{
    /* /proc first, outside the registry lock (pthread_create and thread
     * exits wait for that lock). */
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (!t->selected || t->gone || t->via == KS_VIA_CALL)
            continue;
        /* Without /proc nothing says whether a signal would cut a system
         * call short: the dump stays invisible, so no signal. */
        if (ts->no_proc) {
            t->why = "no-procfs";
            continue;
        }
        t->why = ks_dump_why_not_signal(t->tid, t->have_syscall ? &t->sc : NULL, &t->st);
        if (t->why && strcmp(t->why, "exited") == 0 && t->st.state != 'Z')
            t->gone = 1;   /* its status vanished: it has exited since it was listed */
    }
    int sent = 0;
    ks_registry_lock();
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (!t->selected || t->via == KS_VIA_CALL)
            continue;
        struct ks_thread *r = t->registered ? ks_live_rec(t) : NULL;
        if (t->registered && !r)
            t->gone = 1;
        if (t->gone || t->why) {
            if (r && t->held) {
                ks_reader_release(r);
                t->held = 0;
            }
            continue;
        }
        /* An unregistered thread has no record, so nothing proves its tid
         * was not recycled since /proc listed it. tgkill with our pid can
         * only reach a thread of this process; if that is a newer thread, it
         * answers for the tid it now owns (its own stack, correctly labelled)
         * or, if it has no entry, ignores the signal. */
        __atomic_store_n(&t->e->state, KS_ENTRY_WAITING, __ATOMIC_SEQ_CST);
        int rc = ks_signal_tid(t->tid, KS_SIG_DUMP);
        if (rc == 0) {
            t->via = KS_VIA_SIGNAL;
            sent++;
            continue;
        }
        __atomic_store_n(&t->e->state, KS_ENTRY_IDLE, __ATOMIC_SEQ_CST);
        if (rc == ESRCH)
            t->gone = 1;
        else
            t->why = "send-failed";
        if (r && t->held) {
            ks_reader_release(r);
            t->held = 0;
        }
    }
    ks_registry_unlock();
    return sent;
}

/* Waits for the signalled threads, noticing those that exit meanwhile (a
 * thread on its way out blocks every signal and never answers). */
static void ks_wait_answers(struct ks_targets *ts, struct ks_dump *d, int sent, int answer_ms)
{
    uint64_t deadline = ks_now_ns() + (uint64_t)answer_ms * 1000000u;
    int gone = 0;
    while (ks_dump_wait(d, sent - gone, deadline, KS_LIVENESS_NS) < sent - gone &&
           ks_now_ns() < deadline) {
        gone = 0;
        for (int i = 0; i < ts->n; i++) {
            struct ks_target *t = &ts->v[i];
            if (t->via != KS_VIA_SIGNAL)
                continue;
            if (!t->gone && __atomic_load_n(&t->e->state, __ATOMIC_ACQUIRE) == KS_ENTRY_WAITING &&
                syscall(SYS_tgkill, ks_getpid(), t->tid, 0) != 0 && errno == ESRCH)
                t->gone = 1;
            gone += t->gone && __atomic_load_n(&t->e->state, __ATOMIC_ACQUIRE) != KS_ENTRY_DONE;
        }
    }
}

/* Gives up on threads that did not answer and lets every held thread go. */
static void ks_finish(struct ks_targets *ts)
{
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->via == KS_VIA_SIGNAL && ks_dump_abandon(t->e, KS_CAPTURE_GRACE_NS) != KS_ENTRY_DONE) {
            t->via = KS_VIA_NONE;
            if (!t->why)
                t->why = "no-answer";
        }
    }
    ks_registry_lock();
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        struct ks_thread *r = t->held ? ks_live_rec(t) : NULL;
        if (r)
            ks_reader_release(r);
        t->held = 0;
    }
    ks_registry_unlock();
}

static const char *ks_role_of(const struct ks_target *t)
{
    return t->registered ? ks_role_name(t->role) : "foreign";   /* never a shim thread */
}

static const char *ks_capture_why(int why)
{
    switch (why) {
    case KS_CAPTURE_ALTSTACK: return "altstack";
    case KS_CAPTURE_LOWSTACK: return "low-stack";
    case KS_CAPTURE_FAILED: return "unwind-failed";
    default: return NULL;
    }
}

static void ks_out_ips(struct ks_out *out, const struct ks_dump_entry *e)
{
    char buf[KS_STACK_MAX * 20 + 1];
    size_t len = 0;
    for (int i = 0; i < e->nframes; i++) {
        int exact = (e->exact[i / 64] >> (i % 64)) & 1;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%lx%s", i ? "," : "",
                                (unsigned long)e->ips[i], exact ? "!" : "");
    }
    ks_out_str(out, "ips", buf);
}

static void ks_out_target(struct ks_out *out, const struct ks_target *t)
{
    ks_out_word(out, "stack");
    ks_out_i64(out, "tid", t->tid);
    if (t->stat.state)   /* name and state come from /proc: absent without it */
        ks_out_str(out, "name", t->stat.comm);
    ks_out_str(out, "role", ks_role_of(t));
    if (t->stat.state)
        ks_out_fmt(out, "state", "%c", t->stat.state);
    if (!t->selected) {
        ks_out_i64(out, "selected", 0);
    } else {
        const struct ks_dump_entry *e = t->e;
        const char *why = t->why;
        int frames = t->via != KS_VIA_NONE && e->state == KS_ENTRY_DONE && e->nframes > 0;
        if (t->via != KS_VIA_NONE && e->state == KS_ENTRY_DONE && !why)
            why = ks_capture_why(e->why);
        ks_out_str(out, "via", !frames ? "none" : t->via == KS_VIA_CALL ? "call" : "signal");
        if (why)
            ks_out_str(out, "why", why);
        if (t->via == KS_VIA_CALL)
            ks_out_str(out, "call", ks_call_name(t->call));
        if (t->have_syscall && t->sc.nr >= 0) {
            ks_out_i64(out, "syscall", t->sc.nr);
            ks_out_fmt(out, "sargs", "%llx,%llx,%llx,%llx,%llx,%llx", t->sc.args[0], t->sc.args[1],
                       t->sc.args[2], t->sc.args[3], t->sc.args[4], t->sc.args[5]);
            ks_out_hex(out, "ssp", t->sc.sp);
            ks_out_hex(out, "spc", t->sc.pc);
        }
        if (frames && e->nframes > 0) {
            ks_out_ips(out, e);
            if (e->truncated)
                ks_out_i64(out, "cut", 1);
        }
    }
    const char *kind = ks_wait_kind_name(t->wait_kind);
    if (kind && t->wait_obj) {
        ks_out_str(out, "wait", kind);
        ks_out_hex(out, "wait_obj", (uint64_t)(uintptr_t)t->wait_obj);
        if (t->owner != KS_OWNER_UNKNOWN)
            ks_out_i64(out, "owner", t->owner);
    }
    ks_out_eol(out);
}

/* Reads /proc for every thread; one whose stat is gone has exited since the
 * directory was read. */
static void ks_read_proc(struct ks_targets *ts)
{
    for (int i = 0; i < ts->n && !ts->no_proc; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->gone)
            continue;
        if (ks_read_task_stat(0, t->tid, &t->stat) != 0) {
            t->gone = 1;
            continue;
        }
        if (t->selected)
            t->have_syscall = ks_read_task_syscall(t->tid, &t->sc) == 0;
    }
}

static struct ks_dump *ks_make_table(struct ks_targets *ts)
{
    struct ks_dump *d = ks_dump_alloc(ts->nsel);
    if (!d)
        return NULL;
    int k = 0;
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (!t->selected)
            continue;
        d->e[k].tid = t->tid;   /* ts->v is sorted by tid, so is the table */
        t->e = &d->e[k++];
    }
    d->n = k;
    return d;
}

static void ks_dump_into(struct ks_targets *ts, int answer_ms, uint64_t t0, struct ks_out *out)
{
    struct ks_dump *d = ks_make_table(ts);
    if (!d) {
        ks_out_err(out, "internal", "out of memory");
        return;
    }
    uint64_t t1 = ks_now_ns();
    ks_dump_publish(d);
    ks_hold_all(ts);
    ks_unwind_held_calls(ts);
    uint64_t t2 = ks_now_ns();
    int sent = ks_signal_all(ts);
    uint64_t t3 = ks_now_ns();
    if (sent)
        ks_wait_answers(ts, d, sent, answer_ms);
    ks_finish(ts);
    uint64_t t4 = ks_now_ns();
    int count = 0;
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->gone)
            continue;
        if (t->wait_kind != KS_WAIT_NONE && t->wait_obj)
            t->owner = ks_wait_owner(t->wait_kind, t->wait_obj);
        ks_out_target(out, t);
        count += t->selected;
    }
    ks_dump_release(d);
    ks_debug("stack: %d threads (%d signalled): listing %llu us, calls %llu us, signals %llu us, "
             "answers %llu us, output %llu us", count, sent, (unsigned long long)(t1 - t0) / 1000,
             (unsigned long long)(t2 - t1) / 1000, (unsigned long long)(t3 - t2) / 1000,
             (unsigned long long)(t4 - t3) / 1000, (unsigned long long)(ks_now_ns() - t4) / 1000);
    ks_out_word(out, "ok");
    ks_out_i64(out, "threads", count);
    ks_out_i64(out, "us", (int64_t)((ks_now_ns() - t0) / 1000u));
    ks_out_eol(out);
}

void ks_cmd_stack(const struct ks_msg *req, struct ks_out *out)
{
    int64_t only = 0, answer_ms = KS_ANSWER_MS_DEFAULT;
    int rc = ks_msg_get_i64(req, "tid", 1, INT32_MAX, &only);
    if (rc == EINVAL) {
        ks_out_err(out, "bad-request", "tid must be a thread id");
        return;
    }
    rc = ks_msg_get_i64(req, "answer_ms", 1, 600000, &answer_ms);
    if (rc == EINVAL) {
        ks_out_err(out, "bad-request", "answer_ms must be 1..600000");
        return;
    }
    if (!__atomic_load_n(&ks_stack_ready, __ATOMIC_ACQUIRE)) {
        ks_out_err(out, "unsupported", "stack capture is not set up in this process (see its stderr)");
        return;
    }
    uint64_t t0 = ks_now_ns();
    struct ks_targets ts = {0};
    ks_dump_lock();
    rc = ks_stack_targets(&ts, (pid_t)only);
    if (rc == 0) {
        ks_read_proc(&ts);
        int found = 0;
        for (int i = 0; i < ts.n; i++)
            found |= ts.v[i].selected && !ts.v[i].gone;
        if (only && !found)
            rc = ESRCH;
    }
    if (rc == ESRCH)
        ks_out_err(out, "no-thread", "no thread %lld in process %d (or it is one of the shim's)",
                   (long long)only, (int)ks_getpid());
    else if (rc)
        ks_out_err(out, "internal", "cannot list threads: %s", strerror(rc));
    else
        ks_dump_into(&ts, (int)answer_ms, t0, out);
    ks_dump_unlock();
    free(ts.v);
}
