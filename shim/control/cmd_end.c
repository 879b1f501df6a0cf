/* "end" and "status": ask a thread to end, and learn how it is going (or
 * how it went: the graveyard remembers). See docs/PROTOCOL.md; what the
 * answers say is in cmd_view.c.
 *
 * Nothing slow and no allocation happens under the registry lock: the
 * answer is copied out under it and formatted after, so pthread_create and
 * the exit path never wait on a client. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shim/common/access.h"
#include "shim/deliver/cancel_check.h"
#include "cmd_preattach.h"
#include "cmd_python.h"
#include "cmd_view.h"
#include "commands.h"
#include "shim/deliver/deliver.h"
#include "shim/deliver/graveyard.h"
#include "shim/core/attach.h"
#include "shim/core/ks.h"
#include "shim/safepoint/langrt.h"
#include "shim/core/registry.h"

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

static int ks_refuse_langrt(pid_t tid, void *start, char *why, size_t cap);
static void ks_cancel_retry(pid_t tid, uint64_t id);

void ks_cmd_status(const struct ks_msg *req, struct ks_out *out)
{
    pid_t tid;
    uint64_t id;
    if (ks_get_target(req, out, &tid, &id) != 0)
        return;
    if (ks_preattach_target(tid, id)) {   /* no record: cmd_preattach.c */
        ks_preattach_status(tid, out);
        return;
    }
    struct ks_view v;
    char why[200];
    /* Only the client whose cancel waits asks for it: anybody's look at the
     * thread must not set off a cancel asked long ago. Trying it is ending
     * the thread: attach access, as for "end". */
    const char *retry = ks_msg_get(req, "retry");
    if (retry && strcmp(retry, "cancel") == 0) {
        if (ks_access_check(req, KS_ACCESS_ATTACH, "status retry=cancel", why, sizeof why) != 0) {
            ks_out_err(out, "permission", "%s", why);
            return;
        }
        ks_cancel_retry(tid, id);
    }
    ks_abort_prepare();
    ks_registry_lock();
    /* A pending abort is retried at each look (ks_abort_request, rate
     * limited): the waits it sits in (a cond wait woken too early, a patched
     * return the thread jumped past, a frame with no call boundary) are
     * tried again as the client polls. */
    struct ks_thread *t = ks_registry_find(tid);
    if (t && (!id || t->id == id) &&
        __atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) == KS_ABORT_PENDING)
        ks_abort_request(t, __atomic_load_n(&t->abort.force, __ATOMIC_RELAXED), why, sizeof why);
    ks_view_of(tid, id, &v);
    ks_registry_unlock();
    if (v.found == 1 && v.role == KS_ROLE_APP)
        ks_refuse_langrt(tid, v.start, v.langrt, sizeof v.langrt);
    struct ks_py_thread py;
    ks_status_python(req, &v, &py);
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
        ks_out_err(out, "bad-request", "mode=flag|cancel|abort|python is required");
        return -1;
    }
    return 0;
}

/* Policy, before any mechanism: what is never a target. */
static int ks_end_refused(const struct ks_thread *t, enum ks_end_mode m, char *why, size_t cap)
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
    /* Cancellation disabled: the cancel waits until the thread re-enables it,
     * wherever the thread is now, so a stack that moved since it was checked
     * changes nothing (ks_cancel_must_wait says so). */
    if (same && !q->force && __atomic_load_n(&t->cancel_disabled, __ATOMIC_RELAXED))
        moved = 0;
    if (moved && !last_try)
        return EAGAIN;
    if (!same) {
        snprintf(why, cap, "cannot check the stack of thread %d (it ended or its tid was "
                 "reused while it was checked)", (int)t->tid);
        return EPERM;
    }
    /* A thread that keeps moving runs between short system calls (a loop of
     * short naps): like a running thread, it waits, and is checked again as
     * its client polls (a moment when it stays put long enough). */
    if (moved && !q->force) {
        ks_cancel_wait_set(t->tid, t->id, "it kept moving between system calls while its "
                           "stack was checked; checked again while the injector waits "
                           "(--force cancels without the check)", 0);
        return 0;
    }
    if (c->langrt[0] && !q->force) {
        snprintf(why, cap, "%s", c->langrt);
        return EPERM;
    }
    char wait[240];
    uintptr_t lock;
    if (!q->force && ks_cancel_must_wait(c, t, wait, sizeof wait, &lock)) {
        ks_cancel_wait_set(t->tid, t->id, wait, lock);
        return 0;
    }
    ks_cancel_wait_clear(t->tid, t->id);
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
        if (ks_end_refused(t, q->mode, why, cap))
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
    if (q->mode == KS_MODE_CANCEL && q->chk.langrt[0] && strcmp(why, q->chk.langrt) == 0)
        ks_out_str(out, "runtime", q->chk.langrt);
    ks_out_eol(out);
}

/* Every round of a request: cancel mode checks the thread's stack first,
 * and again if it moved meanwhile. */
static void ks_end_rounds(struct ks_end_req *q, struct ks_view *v, int *refused, int *rc,
                          char *why, size_t cap)
{
    for (int i = 1;; i++) {
        if (q->mode == KS_MODE_CANCEL)
            ks_cancel_check(q->tid, q->id, &q->chk);
        int again = ks_end_locked(q, i == KS_CANCEL_TRIES, v, refused, rc, why, cap);
        if (q->mode == KS_MODE_CANCEL)
            ks_cancel_check_done(&q->chk);
        if (again != EAGAIN)
            break;
    }
}

/* A thread started by a language runtime (langrt.h) is never cancelled or
 * aborted unforced. T: its start routine, copied under the lock; looked up
 * after (dladdr takes the loader's lock). Returns 0 or EPERM with WHY. */
static int ks_refuse_langrt(pid_t tid, void *start, char *why, size_t cap)
{
    char module[64];
    uintptr_t addr = (uintptr_t)start;
    int rt = start ? ks_langrt_scan(&addr, 1, NULL, module, sizeof module) : 0;
    if (!rt)
        return 0;
    ks_langrt_refusal(rt, module, tid, "was started by", why, cap);
    return EPERM;
}

/* What is refused before the registry lock is taken for the request
 * (looking takes other locks, or reads /proc). Returns 0 or an errno with
 * WHY filled in; *RUNTIME = 1 if a language runtime started the thread. */
static int ks_end_precheck(const struct ks_end_req *q, char *why, size_t cap, int *runtime)
{
    void *start = NULL;
    int app = 0;
    ks_registry_lock();
    struct ks_thread *t = ks_registry_find(q->tid);
    if (t && (!q->id || t->id == q->id)) {
        app = t->role == KS_ROLE_APP;
        start = t->start_routine;
    }
    ks_registry_unlock();
    if (!app || q->mode == KS_MODE_FLAG)
        return 0;
    int rc = q->force ? 0 : ks_refuse_langrt(q->tid, start, why, cap);
    *runtime = rc != 0;
    if (!rc && q->mode == KS_MODE_ABORT)
        rc = ks_abort_reachable(q->tid, why, cap);
    return rc;
}

/* A cancel that waits (cancel_check.h) is tried again as its client polls. */
static void ks_cancel_retry(pid_t tid, uint64_t id)
{
    ks_registry_lock();
    struct ks_thread *t = ks_registry_find(tid);
    int due = t && (!id || t->id == id) && ks_cancel_wait_due(tid, t->id);
    id = t ? t->id : id;
    ks_registry_unlock();
    if (!due)
        return;
    struct ks_end_req q;
    memset(&q, 0, sizeof q);
    q.tid = tid;
    q.id = id;
    q.mode = KS_MODE_CANCEL;
    struct ks_view v;
    int refused = 0, rc = 0;
    char why[320] = "", old[8];
    uintptr_t lock;
    ks_end_rounds(&q, &v, &refused, &rc, why, sizeof why);
    if (!refused && !rc)
        return;
    /* Not now (the stack cannot be checked where it is now): still waits. */
    ks_registry_lock();
    if (ks_cancel_wait_get(tid, id, old, sizeof old, &lock))
        ks_cancel_wait_set(tid, id, why[0] ? why : strerror(rc), 0);
    ks_registry_unlock();
}

void ks_cmd_end(const struct ks_msg *req, struct ks_out *out)
{
    struct ks_end_req q;
    char why[320] = "";
    int64_t force = 0;
    memset(&q, 0, sizeof q);
    if (ks_get_target(req, out, &q.tid, &q.id) != 0)
        return;
    const char *mode = ks_msg_get(req, "mode");
    if (mode && strcmp(mode, "python") == 0) {   /* CPython's own way (cmd_python.c) */
        ks_end_python(req, out, q.tid, q.id);
        return;
    }
    if (ks_get_mode(req, out, &q.mode) != 0)
        return;
    if (ks_msg_get_i64(req, "force", 0, 1, &force) == EINVAL) {
        ks_out_err(out, "bad-request", "force=0|1");
        return;
    }
    q.force = (int)force;
    if (ks_no_flag_addr(req, out) != 0)
        return;
    if (ks_preattach_target(q.tid, q.id)) {   /* no record: cmd_preattach.c */
        /* A language runtime's thread is not cancelled unforced, as a
         * registered one is not (cmd_preattach.c looks at its start routine
         * and stack). An unforced abort is refused there anyway. */
        int runtime = 0;
        if (q.mode == KS_MODE_CANCEL && !q.force &&
            ks_preattach_runtime(q.tid, why, sizeof why, &runtime) != 0) {
            ks_out_word(out, "err");
            ks_out_str(out, "code", "refused");
            ks_out_str(out, "msg", why);
            if (runtime)
                ks_out_str(out, "runtime", why);
            ks_out_eol(out);
            return;
        }
        ks_preattach_end(q.tid, q.mode == KS_MODE_FLAG ? KS_PRE_FLAG : q.mode == KS_MODE_CANCEL
                         ? KS_PRE_CANCEL : KS_PRE_ABORT, q.force, out);
        return;
    }
    int runtime = 0;
    int pre = ks_end_precheck(&q, why, sizeof why, &runtime);
    if (pre != 0) {
        ks_out_word(out, "err");
        ks_out_str(out, "code", "refused");
        ks_out_str(out, "msg", why);
        if (runtime)   /* a language runtime started it */
            ks_out_str(out, "runtime", why);
        ks_out_eol(out);
        return;
    }
    if (q.mode == KS_MODE_ABORT)
        ks_abort_prepare();
    else if (q.mode == KS_MODE_CANCEL)
        ks_unwind_prime();
    struct ks_view v;
    int rc = 0, refused = 0;
    ks_end_rounds(&q, &v, &refused, &rc, why, sizeof why);
    if (refused || rc)
        ks_answer_refused(out, &q, why[0] ? why : strerror(rc));
    else if (v.found)
        ks_answer_view(out, &v);
    else
        ks_answer_unknown(out, q.tid, q.id);
}
