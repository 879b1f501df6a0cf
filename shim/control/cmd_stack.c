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

#include "cmd_python.h"
#include "commands.h"
#include "shim/core/blocking.h"
#include "shim/core/ks.h"
#include "shim/common/procfs.h"
#include "shim/core/attach.h"
#include "shim/core/registry.h"
#include "shim/core/signals.h"
#include "shim/unwind/stack_capture.h"
#include "waitinfo.h"

#define KS_ANSWER_MS_DEFAULT 1000
#define KS_CAPTURE_GRACE_NS (50 * 1000000ull)   /* for a handler caught mid-answer */
#define KS_LIVENESS_NS (20 * 1000000ull)        /* how often unanswered tids are checked */

struct ks_target {
    int selected;
    int registered, role, wait_kind;   /* from the registry (registered == 0: a thread
                                        * the shim did not see start) */
    void *wait_obj;
    pid_t owner;
    struct ks_taskstat stat;    /* from /proc, for every thread */
    struct ks_capture cap;      /* tid, rec, id, gone; the capture, with the system
                                 * call it read once the thread was held
                                 * (stack_capture.h) */
};

struct ks_targets {
    struct ks_target *v;
    int n, cap, nsel;
    int no_proc;                /* /proc unreadable (a chroot): the registry's threads only */
    struct ks_task_dir dir;     /* /proc/self/task, open for the dump's reads */
};

static int ks_target_cmp(const void *a, const void *b)
{
    pid_t x = ((const struct ks_target *)a)->cap.tid, y = ((const struct ks_target *)b)->cap.tid;
    return (x > y) - (x < y);
}

/* What the dump needs of T's record R. Registry lock held, R linked. */
static void ks_target_take(struct ks_target *t, struct ks_thread *r)
{
    t->registered = 1;
    t->role = r->role;
    t->cap.id = r->id;
    t->cap.rec = r;
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
        t->cap.tid = r->tid;
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
        t->cap.tid = tids[i];
        t->owner = KS_OWNER_UNKNOWN;
    }
    free(tids);
    qsort(ts->v, (size_t)ts->n, sizeof *ts->v, ks_target_cmp);
    ks_registry_lock();
    for (struct ks_thread *r = ks_registry_first(); r; r = r->next) {
        struct ks_target key = {.cap.tid = r->tid};
        struct ks_target *t = bsearch(&key, ts->v, (size_t)ts->n, sizeof *ts->v, ks_target_cmp);
        if (!t)
            continue;   /* started after the directory was read */
        ks_target_take(t, r);
    }
    ks_registry_unlock();
    /* Tasks the registry did not know yet: being born, dying, or foreign. */
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->registered || (only && t->cap.tid != only))
            continue;
        enum ks_settle v = ks_registry_settle(t->cap.tid, ks_task_age_ms(t->cap.tid));
        if (v == KS_SETTLE_EXITING) {
            t->cap.gone = 1;
        } else if (v == KS_SETTLE_LINKED) {
            ks_registry_lock();
            struct ks_thread *r = ks_registry_find(t->cap.tid);
            if (r) {
                ks_target_take(t, r);
            } else {
                t->cap.gone = 1;
            }
            ks_registry_unlock();
        }
    }
select:
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->registered && t->role == KS_ROLE_SHIM)
            t->cap.gone = 1;   /* ours: never dumped, never listed */
        t->selected = !t->cap.gone && (!only || t->cap.tid == only);
        ts->nsel += t->selected;
    }
    return 0;
}

static const char *ks_role_of(const struct ks_target *t)
{
    if (t->registered)
        return ks_role_name(t->role);   /* never a shim thread */
    return ks_preattach_has(t->cap.tid) ? "pre-attach" : "foreign";
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
    const struct ks_capture *c = &t->cap;
    ks_out_i64(out, "tid", c->tid);
    if (t->stat.state)   /* name and state come from /proc: absent without it */
        ks_out_str(out, "name", t->stat.comm);
    ks_out_str(out, "role", ks_role_of(t));
    if (t->stat.state)
        ks_out_fmt(out, "state", "%c", t->stat.state);
    if (!t->selected) {
        ks_out_i64(out, "selected", 0);
    } else {
        const struct ks_dump_entry *e = c->e;
        int why = c->why;
        int frames = c->via != KS_VIA_NONE && e->state == KS_ENTRY_DONE && e->nframes > 0;
        if (c->via != KS_VIA_NONE && e->state == KS_ENTRY_DONE && !why)
            why = e->why;
        ks_out_str(out, "via", !frames ? "none" : c->via == KS_VIA_CALL ? "call" : "signal");
        if (ks_nostack_token(why))
            ks_out_str(out, "why", ks_nostack_token(why));
        if (c->via == KS_VIA_CALL)
            ks_out_str(out, "call", ks_call_name(c->call));
        if (c->have_sc && c->sc.nr >= 0) {
            ks_out_i64(out, "syscall", c->sc.nr);
            ks_out_fmt(out, "sargs", "%llx,%llx,%llx,%llx,%llx,%llx", c->sc.args[0], c->sc.args[1],
                       c->sc.args[2], c->sc.args[3], c->sc.args[4], c->sc.args[5]);
            ks_out_hex(out, "ssp", c->sc.sp);
            ks_out_hex(out, "spc", c->sc.pc);
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

/* Reads every thread's stat; one whose stat is gone has exited since the
 * directory was read. (Not its system call: the capture reads that once the
 * thread is held; a read from here would be stale by then.) */
static void ks_read_proc(struct ks_targets *ts)
{
    for (int i = 0; i < ts->n && !ts->no_proc; i++) {
        struct ks_target *t = &ts->v[i];
        if (!t->cap.gone && ks_task_dir_stat(&ts->dir, t->cap.tid, &t->stat) != 0)
            t->cap.gone = 1;
    }
}

/* The selected threads' captures, in tid order (ts->v is sorted), or NULL
 * out of memory. */
static struct ks_capture **ks_selected(struct ks_targets *ts)
{
    struct ks_capture **v = calloc((size_t)(ts->nsel > 0 ? ts->nsel : 1), sizeof *v);
    for (int i = 0, k = 0; v && i < ts->n; i++)
        if (ts->v[i].selected)
            v[k++] = &ts->v[i].cap;
    return v;
}

static void ks_dump_into(struct ks_targets *ts, int answer_ms, uint64_t t0, struct ks_out *out)
{
    struct ks_capture **sel = ks_selected(ts);
    struct ks_capture_opts o = {
        .answer_ns = (uint64_t)answer_ms * 1000000u,
        .slice_ns = KS_LIVENESS_NS,
        .grace_ns = KS_CAPTURE_GRACE_NS,
        .no_proc = ts->no_proc,
        .dir = &ts->dir,
    };
    uint64_t t1 = ks_now_ns();
    struct ks_dump *d = sel ? ks_capture_stacks(sel, ts->nsel, &o) : NULL;
    free(sel);   /* before any output: nothing is held any more */
    if (!d) {
        ks_out_err(out, "internal", "out of memory");
        return;
    }
    uint64_t t2 = ks_now_ns();
    int count = 0, sent = 0;
    struct ks_pystack py;
    ks_pystack_open(&py);
    for (int i = 0; i < ts->n; i++) {
        struct ks_target *t = &ts->v[i];
        if (t->cap.gone)
            continue;
        if (t->wait_kind != KS_WAIT_NONE && t->wait_obj) {
            t->owner = ks_wait_owner(t->wait_kind, t->wait_obj);
            if (ks_wait_is_over(t->cap.tid, t->owner, t->cap.have_sc ? &t->cap.sc : NULL)) {
                t->wait_kind = KS_WAIT_NONE;
                t->wait_obj = NULL;
            }
        }
        ks_out_target(out, t);
        if (t->selected)
            ks_pystack_out(out, &py, t->cap.tid, t->wait_kind, t->wait_obj);
        count += t->selected;
        sent += t->selected && t->cap.via == KS_VIA_SIGNAL;
    }
    ks_dump_release(d);
    ks_pystack_final(out, &py);
    ks_debug("stack: %d threads (%d answered a signal): listing %llu us, capture %llu us, "
             "output %llu us", count, sent, (unsigned long long)(t1 - t0) / 1000,
             (unsigned long long)(t2 - t1) / 1000, (unsigned long long)(ks_now_ns() - t2) / 1000);
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
    ks_task_dir_open(&ts.dir);
    rc = ks_stack_targets(&ts, (pid_t)only);
    if (rc == 0) {
        ks_read_proc(&ts);
        int found = 0;
        for (int i = 0; i < ts.n; i++)
            found |= ts.v[i].selected && !ts.v[i].cap.gone;
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
    ks_task_dir_close(&ts.dir);
    ks_dump_unlock();
    free(ts.v);
}
