/* "end" and "status": ask a thread to end, and learn how it is going (or
 * how it went: the graveyard remembers). See docs/PROTOCOL.md.
 *
 * Nothing slow and no allocation happens under the registry lock: the
 * answer is copied out under it and formatted after, so pthread_create and
 * the exit path never wait on a client. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cancel_check.h"
#include "commands.h"
#include "deliver.h"
#include "graveyard.h"
#include "ks.h"
#include "registry.h"

/* What the answer says about a thread, copied under the lock. */
struct ks_view {
    int found;                /* 1 alive (linked), 2 ended (a grave) */
    pid_t tid;
    uint64_t id;
    int role;
    int locks_held;
    int requested;            /* enum ks_req_bits */
    int cancel_disabled;
    char pending[200];
    struct ks_abort_report abort;
    struct ks_grave grave;
};

static const char *ks_role_word(int role)
{
    return role == KS_ROLE_MAIN ? "main" : role == KS_ROLE_SHIM ? "shim" : "app";
}

static void ks_requested_str(int bits, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s%s", bits & KS_REQ_FLAG ? "flag," : "",
             bits & KS_REQ_CANCEL ? "cancel," : "", bits & KS_REQ_ABORT ? "abort," : "",
             bits ? "" : "none");
    size_t n = strlen(buf);
    if (n && buf[n - 1] == ',')
        buf[n - 1] = '\0';
}

/* Caller holds the registry lock. A record whose grave is already written
 * is on its way out: it counts as ended. */
static void ks_view_of(pid_t tid, uint64_t id, struct ks_view *v)
{
    memset(v, 0, sizeof *v);
    v->tid = tid;
    struct ks_thread *t = ks_registry_find(tid);
    if (t && (!id || t->id == id)) {
        if (ks_grave_find(tid, t->id, &v->grave) == 0) {
            v->found = 2;
            v->id = t->id;
            return;
        }
        v->found = 1;
        v->id = t->id;
        v->role = t->role;
        v->locks_held = __atomic_load_n(&t->locks_held, __ATOMIC_RELAXED);
        v->cancel_disabled = __atomic_load_n(&t->cancel_disabled, __ATOMIC_RELAXED);
        v->requested = (t->stop_requested ? KS_REQ_FLAG : 0) |
                       (t->cancel_requested ? KS_REQ_CANCEL : 0) |
                       (__atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) ? KS_REQ_ABORT : 0);
        ks_pending_reason(t, v->pending, sizeof v->pending);
        ks_abort_snapshot(t, &v->abort);
        return;
    }
    if (ks_grave_find(tid, id, &v->grave) == 0) {
        v->found = 2;
        v->id = v->grave.id;
    }
}

static void ks_out_addrs(struct ks_out *out, const char *key, const uintptr_t *a, int n)
{
    char buf[256];
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len + 20 < sizeof buf; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s0x%lx", i ? "," : "",
                                (unsigned long)a[i]);
    if (n > 0)
        ks_out_str(out, key, buf);
}

static const char *ks_abort_state_word(int st)
{
    return st == KS_ABORT_PENDING ? "pending" : st == KS_ABORT_REFUSED ? "refused"
         : st == KS_ABORT_FIRING ? "firing" : "none";
}

static void ks_answer_view(struct ks_out *out, const struct ks_view *v)
{
    char req[32];
    ks_out_word(out, "ok");
    ks_out_i64(out, "tid", v->tid);
    ks_out_i64(out, "id", (int64_t)v->id);
    if (v->found == 1) {
        ks_requested_str(v->requested, req, sizeof req);
        ks_out_str(out, "state", "alive");
        ks_out_str(out, "role", ks_role_word(v->role));
        ks_out_str(out, "requested", req);
        if (v->pending[0])
            ks_out_str(out, "pending", v->pending);
        ks_out_str(out, "cancel", v->cancel_disabled ? "disabled" : "enabled");
        ks_out_i64(out, "locks", v->locks_held);
        if (v->abort.state != KS_ABORT_NONE) {
            ks_out_str(out, "abort", ks_abort_state_word(v->abort.state));
            ks_out_str(out, "abort_how", ks_abort_how_name(v->abort.how));
            if (v->abort.where)
                ks_out_hex(out, "abort_where", v->abort.where);
            if (v->abort.steps)
                ks_out_i64(out, "abort_steps", v->abort.steps);
        }
    } else {
        const struct ks_grave *g = &v->grave;
        uint64_t now = ks_now_ns();
        ks_requested_str(g->requested, req, sizeof req);
        ks_out_str(out, "state", "ended");
        ks_out_str(out, "role", ks_role_word(g->role));
        ks_out_str(out, "how", ks_end_how_name(g->how));
        ks_out_str(out, "requested", req);
        if (g->site)
            ks_out_hex(out, "site", g->site);
        if (g->start_routine)
            ks_out_hex(out, "start", (uint64_t)(uintptr_t)g->start_routine);
        ks_out_i64(out, "locks_left", g->locks_held);
        if (g->how == KS_END_ABORTED) {
            ks_out_str(out, "abort_how", ks_abort_how_name(g->abort_how));
            ks_out_addrs(out, "cleanup", g->cleanup, g->ncleanup);
            ks_out_addrs(out, "left", g->left, g->nleft);
            if (g->abort_note[0])
                ks_out_str(out, "abort_note", g->abort_note);
        }
        ks_out_i64(out, "lived_ms", (int64_t)((g->ended_ns - g->created_ns) / 1000000));
        ks_out_i64(out, "ended_ms_ago", (int64_t)((now - g->ended_ns) / 1000000));
    }
    ks_out_eol(out);
}

static int ks_task_exists(pid_t tid)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)tid);
    return stat(path, &st) == 0;
}

/* TID is neither alive in the registry nor in the graveyard. */
static void ks_answer_unknown(struct ks_out *out, pid_t tid, uint64_t id)
{
    if (id)
        ks_out_err(out, "no-thread", "no thread %d with id %llu in process %d (it may have "
                   "ended long ago: the graveyard keeps the last %d)", (int)tid,
                   (unsigned long long)id, (int)ks_getpid(), KS_GRAVES);
    else if (ks_task_exists(tid))
        ks_out_err(out, "refused", "thread %d of process %d was not started through "
                   "pthread_create after the shim loaded (or is starting right now): "
                   "killshim does not track it and will not end it", (int)tid, (int)ks_getpid());
    else
        ks_out_err(out, "no-thread", "no thread %d in process %d", (int)tid, (int)ks_getpid());
}

/* tid= (required) and id= (optional, 0: any). Answers bad-request itself. */
static int ks_get_target(const struct ks_msg *req, struct ks_out *out, pid_t *tid, uint64_t *id)
{
    int64_t x;
    if (ks_msg_get_i64(req, "tid", 1, 1 << 30, &x) != 0) {
        ks_out_err(out, "bad-request", "tid=N (a thread id of this process) is required");
        return -1;
    }
    *tid = (pid_t)x;
    *id = 0;
    int rc = ks_msg_get_u64(req, "id", id);
    if (rc == EINVAL) {
        ks_out_err(out, "bad-request", "id= must be a thread's id from list or status");
        return -1;
    }
    return 0;
}

void ks_cmd_status(const struct ks_msg *req, struct ks_out *out)
{
    pid_t tid;
    uint64_t id;
    if (ks_get_target(req, out, &tid, &id) != 0)
        return;
    struct ks_view v;
    char why[200];
    if (ks_abort_request)
        ks_abort_prepare();
    ks_registry_lock();
    /* A pending abort is retried at each look (ks_abort_request, rate
     * limited): the waits it sits in (a cond wait woken too early, a patched
     * return the thread jumped past, a frame with no call boundary) are
     * tried again as the client polls. */
    struct ks_thread *t = ks_registry_find(tid);
    if (t && (!id || t->id == id) &&
        __atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) == KS_ABORT_PENDING && ks_abort_request)
        ks_abort_request(t, __atomic_load_n(&t->abort.force, __ATOMIC_RELAXED), why, sizeof why);
    ks_view_of(tid, id, &v);
    ks_registry_unlock();
    if (v.found)
        ks_answer_view(out, &v);
    else
        ks_answer_unknown(out, tid, id);
}

/* Protocol 1 had the shim write the program's stop variable at an address
 * the client named; from protocol 2 the client writes it itself, through
 * the kernel (docs/security.md). A request that still names one is refused
 * before anything is done, rather than half-served. */
static int ks_no_flag_addr(const struct ks_msg *req, struct ks_out *out)
{
    if (!ks_msg_get(req, "flag_addr") && !ks_msg_get(req, "flag_value"))
        return 0;
    ks_out_err(out, "bad-request", "flag_addr and flag_value are gone since protocol 2: the "
               "client writes the program's stop variable itself (process_vm_writev), then "
               "sends end mode=flag");
    return -1;
}

enum ks_end_mode { KS_MODE_FLAG, KS_MODE_CANCEL, KS_MODE_ABORT };

static int ks_get_mode(const struct ks_msg *req, struct ks_out *out, enum ks_end_mode *m)
{
    const char *s = ks_msg_get(req, "mode");
    if (s && strcmp(s, "flag") == 0) *m = KS_MODE_FLAG;
    else if (s && strcmp(s, "cancel") == 0) *m = KS_MODE_CANCEL;
    else if (s && strcmp(s, "abort") == 0) *m = KS_MODE_ABORT;
    else {
        ks_out_err(out, "bad-request", "mode=flag|cancel|abort is required");
        return -1;
    }
    return 0;
}

/* Policy, before any mechanism: what is never a target. */
static int ks_refuse(const struct ks_thread *t, enum ks_end_mode m, char *why, size_t cap)
{
    if (t->role == KS_ROLE_SHIM) {
        snprintf(why, cap, "thread %d is one of killshim's own threads; it is never a target",
                 (int)t->tid);
        return 1;
    }
    if (t->role == KS_ROLE_MAIN && m != KS_MODE_FLAG) {
        snprintf(why, cap, "thread %d is the main thread: its tid stays a zombie until the "
                 "process exits, so it cannot be seen to end; end the process instead, or "
                 "ask it to stop with mode=flag", (int)t->tid);
        return 1;
    }
    return 0;
}

#define KS_CANCEL_TRIES 3   /* checks of a thread that moves while it is checked */

/* What one end request asks, parsed. */
struct ks_end_req {
    pid_t tid;
    uint64_t id;
    enum ks_end_mode mode;
    int force;
    struct ks_cancel_check chk;   /* mode cancel: the stack check */
};

/* Cancel mode's part under the registry lock, T linked: the check's verdict,
 * then pthread_cancel. Returns 0, EAGAIN if T moved since it was checked, or
 * an errno with WHY filled in (refused). */
static int ks_cancel_checked(struct ks_end_req *q, struct ks_thread *t, int last_try, char *why,
                             size_t cap)
{
    const struct ks_cancel_check *c = &q->chk;
    if (c->verdict == KS_CHECK_REFUSED || (c->verdict == KS_CHECK_UNKNOWN && !q->force)) {
        snprintf(why, cap, "%s", c->reason);
        return EPERM;
    }
    /* GONE, or another id: the check saw no thread, or another one with
     * this tid (reused since). */
    int same = c->verdict != KS_CHECK_GONE && t->id == c->id;
    int moved = !same || (c->verdict == KS_CHECK_OK && !ks_cancel_check_current(c, t));
    if (moved && !last_try)
        return EAGAIN;
    if (!same || (moved && !q->force)) {
        snprintf(why, cap, "cannot check the stack of thread %d (it kept "
                 "moving between system calls while it was checked); --force cancels "
                 "without the check", (int)t->tid);
        return EPERM;
    }
    if (c->verdict != KS_CHECK_OK)
        ks_debug("cancel of thread %d without the stack check (forced): %s", (int)t->tid,
                 c->reason);
    return ks_cancel_request(t, why, cap);
}

/* One round of the request under the registry lock; fills V. Returns
 * EAGAIN to check again (cancel mode), else 0 with *REFUSED or *RC set. */
static int ks_end_locked(struct ks_end_req *q, int last_try, struct ks_view *v, int *refused,
                         int *rc, char *why, size_t cap)
{
    *refused = 0;
    *rc = 0;
    ks_registry_lock();
    struct ks_thread *t = ks_registry_find(q->tid);
    if (t && (!q->id || t->id == q->id)) {
        if (ks_refuse(t, q->mode, why, cap))
            *refused = 1;
        else if (q->mode == KS_MODE_FLAG)
            *rc = ks_flag_request(t, why, cap);
        else if (q->mode == KS_MODE_CANCEL)
            *rc = ks_cancel_checked(q, t, last_try, why, cap);
        else
            *rc = ks_abort_request(t, q->force, why, cap);
        if (*rc == EAGAIN && q->mode == KS_MODE_CANCEL) {
            ks_registry_unlock();
            return EAGAIN;
        }
        if (!*rc && !*refused && q->mode == KS_MODE_ABORT &&
            __atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) == KS_ABORT_REFUSED) {
            *refused = 1;
            ks_pending_reason(t, why, cap);
        }
    }
    /* Without an id, a grave of TID may be an older thread's: only the
     * linked thread is "the thread TID". With one, a thread that ended while
     * the request was on its way is answered with how it ended. */
    if (t || q->id)
        ks_view_of(q->tid, q->id, v);
    else
        v->found = 0;
    ks_registry_unlock();
    return 0;
}

/* A refusal; a cancel refused for a frame names it for the client to
 * symbolize: frame= an address inside it, frame_text= how msg names it. */
static void ks_answer_refused(struct ks_out *out, const struct ks_end_req *q, const char *why)
{
    ks_out_word(out, "err");
    ks_out_str(out, "code", "refused");
    ks_out_str(out, "msg", why);
    if (q->mode == KS_MODE_CANCEL && q->chk.frame && strstr(why, q->chk.frame_text)) {
        ks_out_hex(out, "frame", q->chk.frame);
        ks_out_str(out, "frame_text", q->chk.frame_text);
    }
    ks_out_eol(out);
}

void ks_cmd_end(const struct ks_msg *req, struct ks_out *out)
{
    struct ks_end_req q;
    char why[256] = "";
    int64_t force = 0;
    memset(&q, 0, sizeof q);
    if (ks_get_target(req, out, &q.tid, &q.id) != 0 || ks_get_mode(req, out, &q.mode) != 0)
        return;
    if (ks_msg_get_i64(req, "force", 0, 1, &force) == EINVAL) {
        ks_out_err(out, "bad-request", "force=0|1");
        return;
    }
    q.force = (int)force;
    if (ks_no_flag_addr(req, out) != 0)
        return;
    if (q.mode == KS_MODE_ABORT && !ks_abort_request) {
        ks_out_err(out, "unsupported", "this shim was built without the abort mode");
        return;
    }
    if (q.mode == KS_MODE_ABORT)
        ks_abort_prepare();
    else if (q.mode == KS_MODE_CANCEL)
        ks_unwind_prime();
    struct ks_view v;
    int rc = 0, refused = 0;
    for (int i = 1;; i++) {
        if (q.mode == KS_MODE_CANCEL)
            ks_cancel_check(q.tid, q.id, &q.chk);
        int again = ks_end_locked(&q, i == KS_CANCEL_TRIES, &v, &refused, &rc, why, sizeof why);
        if (q.mode == KS_MODE_CANCEL)
            ks_cancel_check_done(&q.chk);
        if (again != EAGAIN)
            break;
    }
    if (refused || rc)
        ks_answer_refused(out, &q, why[0] ? why : strerror(rc));
    else if (v.found)
        ks_answer_view(out, &v);
    else
        ks_answer_unknown(out, q.tid, q.id);
}
