/* See cmd_view.h. */
#include "cmd_view.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "shim/deliver/cancel_check.h"
#include "shim/core/attach.h"
#include "shim/core/ks.h"
#include "pyrt.h"
#include "shim/core/registry.h"

static void ks_requested_str(int bits, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s%s%s", bits & KS_REQ_FLAG ? "flag," : "",
             bits & KS_REQ_CANCEL ? "cancel," : "", bits & KS_REQ_ABORT ? "abort," : "",
             bits ? "" : "none");
    size_t n = strlen(buf);
    if (n && buf[n - 1] == ',')
        buf[n - 1] = '\0';
}

void ks_view_of(pid_t tid, uint64_t id, struct ks_view *v)
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
        v->start = t->start_routine;
        v->requested = ks_requested_bits(t);
        ks_abort_snapshot(t, &v->abort);
        ks_pending_reason_of(t, &v->abort, v->pending, sizeof v->pending);
        /* A cancel not issued yet (cancel_check.h) says why, unless an
         * abort, a later step, says what it does. */
        char why[240];
        if (v->abort.state == KS_ABORT_NONE &&
            ks_cancel_wait_get(t->tid, t->id, why, sizeof why, &v->pending_lock)) {
            v->requested |= KS_REQ_CANCEL;
            snprintf(v->pending, sizeof v->pending, "cancel waits: %s", why);
        }
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

void ks_answer_view(struct ks_out *out, const struct ks_view *v)
{
    char req[32];
    ks_out_word(out, "ok");
    ks_out_i64(out, "tid", v->tid);
    ks_out_i64(out, "id", (int64_t)v->id);
    if (v->found == 1) {
        ks_requested_str(v->requested, req, sizeof req);
        ks_out_str(out, "state", "alive");
        ks_out_str(out, "role", ks_role_name(v->role));
        ks_out_str(out, "requested", req);
        if (v->pending[0])
            ks_out_str(out, "pending", v->pending);
        if (v->pending_lock)
            ks_out_hex(out, "pending_lock", v->pending_lock);
        if (v->langrt[0])
            ks_out_str(out, "runtime", v->langrt);
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
        if (v->py)
            ks_py_out(out, v->py);
    } else {
        const struct ks_grave *g = &v->grave;
        uint64_t now = ks_now_ns();
        ks_requested_str(g->requested, req, sizeof req);
        ks_out_str(out, "state", "ended");
        ks_out_str(out, "role", ks_role_name(g->role));
        ks_out_str(out, "how", ks_end_how_name(g->how));
        ks_out_str(out, "requested", req);
        if (g->site)
            ks_out_hex(out, "site", g->site);
        if (g->start_routine)
            ks_out_hex(out, "start", (uint64_t)(uintptr_t)g->start_routine);
        ks_out_i64(out, "locks_left", g->locks_held);
        ks_out_addrs(out, "left", g->left, g->nleft);
        if (g->how == KS_END_ABORTED) {
            ks_out_str(out, "abort_how", ks_abort_how_name(g->abort_how));
            ks_out_addrs(out, "cleanup", g->cleanup, g->ncleanup);
            if (g->abort_note[0])
                ks_out_str(out, "abort_note", g->abort_note);
        }
        if (g->created_ns)   /* 0: a main thread whose start /proc did not show */
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

void ks_answer_unknown(struct ks_out *out, pid_t tid, uint64_t id)
{
    if (id)
        ks_out_err(out, "no-thread", "no thread %d with id %llu in process %d (it may have "
                   "ended long ago: the graveyard keeps the last %d)", (int)tid,
                   (unsigned long long)id, (int)ks_getpid(), KS_GRAVES);
    else if (ks_preattach_has(tid) && ks_task_exists(tid))
        ks_out_err(out, "refused", "thread %d of process %d started before the shim was "
                   "attached: it has no id (ask without one; see docs/attach.md)", (int)tid,
                   (int)ks_getpid());
    else if (ks_task_exists(tid))
        ks_out_err(out, "refused", "thread %d of process %d was not started through "
                   "pthread_create after the shim loaded (or is starting right now): "
                   "killshim does not track it and will not end it", (int)tid, (int)ks_getpid());
    else
        ks_out_err(out, "no-thread", "no thread %d in process %d", (int)tid, (int)ks_getpid());
}
