/* See cmd_python.h. The registry lock is never held while CPython is
 * asked: a Python thread may wait for it in a hook while it holds the GIL,
 * and the worker that asks waits for the GIL. */
#include "cmd_python.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/core/registry.h"

#define KS_PY_GIL_MS 1000   /* the longest an end or status waits for the GIL */

/* A builtins name: letters, digits and '_', not starting with a digit. */
static int ks_py_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 64 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Policy, as for the native modes (cmd_end.c): never the shim's threads;
 * not the main thread (SystemExit there ends the interpreter: end the
 * process instead). Returns 1 with WHY filled in if refused, 0 if TID is a
 * target, -1 if there is no such thread (with that ID). */
static int ks_py_refuse(pid_t tid, uint64_t id, char *why, size_t cap)
{
    ks_registry_lock();
    struct ks_thread *t = ks_registry_find(tid);
    int rc = !t || (id && t->id != id) ? -1 : 0;
    if (!rc && t->role == KS_ROLE_SHIM) {
        snprintf(why, cap, "thread %d is one of killshim's own threads; it is never a target",
                 (int)tid);
        rc = 1;
    } else if (!rc && t->role == KS_ROLE_MAIN) {
        snprintf(why, cap, "thread %d is the main thread: an exception there ends the "
                 "interpreter (SystemExit is sys.exit); end the process instead", (int)tid);
        rc = 1;
    }
    ks_registry_unlock();
    return rc;
}

static void ks_py_refused(struct ks_out *out, const char *why)
{
    ks_out_word(out, "err");
    ks_out_str(out, "code", "refused");
    ks_out_str(out, "msg", why);
    ks_out_eol(out);
}

void ks_end_python(const struct ks_msg *req, struct ks_out *out, pid_t tid, uint64_t id)
{
    const char *exc = ks_msg_get(req, "exc");
    char why[320] = "";
    if (!exc)
        exc = "SystemExit";
    if (!ks_py_name_ok(exc)) {
        ks_out_err(out, "bad-request", "exc= must name an exception of builtins (SystemExit, "
                   "KeyboardInterrupt...)");
        return;
    }
    int r = ks_py_refuse(tid, id, why, sizeof why);
    if (r == 1) {
        ks_py_refused(out, why);
        return;
    }
    struct ks_view v;
    struct ks_py_thread p;
    if (r == 0 && ks_py_raise(tid, exc, &p, KS_PY_GIL_MS, why, sizeof why) != 0) {
        ks_py_refused(out, why);
        return;
    }
    /* Still linked with the same id: the thread asked was alive through the
     * raise, so the tid was its own and no other's. */
    ks_registry_lock();
    ks_view_of(tid, id, &v);
    ks_registry_unlock();
    if (r == 0 && v.found == 1) {
        p.why[0] = '\0';
        v.py = &p;
    }
    if (v.found)
        ks_answer_view(out, &v);
    else
        ks_answer_unknown(out, tid, id);
}

void ks_status_python(const struct ks_msg *req, struct ks_view *v, struct ks_py_thread *p)
{
    const char *ask = ks_msg_get(req, "python");
    /* No CPython, nothing to say (a client asks on every end it drives). */
    if (!ask || strcmp(ask, "1") != 0 || v->found != 1 || v->role == KS_ROLE_SHIM ||
        !ks_py_present())
        return;
    char why[200];
    if (ks_py_thread_of(v->tid, p, KS_PY_GIL_MS, why, sizeof why) != 0)
        snprintf(p->why, sizeof p->why, "%s", why);
    v->py = p;
}

#define KS_PY_LIST_MS 50      /* a listing never waits longer for the GIL */
#define KS_PY_LIST_MAX 4096   /* Python threads listed by name */

#define KS_PY_NAMES_NS (1000 * 1000000ull)   /* how long a listing reuses names */

/* The names the last worker got under the GIL, with the thread state each
 * was read from. A listing whose thread states (read without the GIL) are
 * all among them, within KS_PY_NAMES_NS, takes them and starts no thread:
 * a program listed again and again is not handed a new thread and a GIL
 * switch every time. A state, its native id and its ident all equal is the
 * same thread (a freed state's address and a dead thread's tid and ident
 * are all reused at once only by chance). A name changed since (Thread.name
 * = ...) shows up to KS_PY_NAMES_NS late. */
static struct ks_py_row *ks_py_names;
static int ks_py_nnames;
static uint64_t ks_py_names_ns;
KS_LOCK_DEFINE(static, ks_py_names_lock);

static const struct ks_py_row *ks_py_named(const struct ks_pyf_ts *t)
{
    for (int i = 0; i < ks_py_nnames; i++)
        if (ks_py_names[i].ts == t->ts && ks_py_names[i].tid == t->tid &&
            ks_py_names[i].ident == t->ident)
            return &ks_py_names[i];
    return NULL;
}

/* V's rows from the names, if they cover its every thread state. */
static int ks_py_names_take(struct ks_py_list_view *v)
{
    int ok = 0;
    ks_lock(&ks_py_names_lock);
    if (v->raw_ok && !v->raw.torn && ks_py_names &&
        ks_now_ns() - ks_py_names_ns < KS_PY_NAMES_NS && v->raw.n <= KS_PY_LIST_MAX) {
        ok = 1;
        for (int i = 0; i < v->raw.n && ok; i++) {
            const struct ks_py_row *r = ks_py_named(&v->raw.v[i]);
            if (r)
                v->rows[v->n++] = *r;
            ok = r != NULL;
        }
    }
    ks_unlock(&ks_py_names_lock);
    if (!ok)
        v->n = 0;
    return ok;
}

static void ks_py_names_keep(const struct ks_py_list_view *v)
{
    struct ks_py_row *copy = malloc((size_t)(v->n ? v->n : 1) * sizeof *copy);
    if (!copy)
        return;
    memcpy(copy, v->rows, (size_t)v->n * sizeof *copy);
    ks_lock(&ks_py_names_lock);
    struct ks_py_row *old = ks_py_names;
    ks_py_names = copy;
    ks_py_nnames = v->n;
    ks_py_names_ns = ks_now_ns();
    ks_unlock(&ks_py_names_lock);
    free(old);
}

/* Before 3.11 the rows come from threading (by ident, without the thread
 * state): each row's state from the snapshot, by ident, so that the names
 * can be kept as for 3.11+ (a row without one keeps 0: nothing is kept). */
static void ks_py_rows_states(struct ks_py_list_view *v)
{
    for (int i = 0; i < v->n; i++)
        for (int k = 0; !v->rows[i].ts && k < v->raw.n; k++)
            if (v->raw.v[k].ident == v->rows[i].ident && v->raw.v[k].tid == v->rows[i].tid)
                v->rows[i].ts = v->raw.v[k].ts;
}

void ks_py_list_take(struct ks_py_list_view *v)
{
    memset(v, 0, sizeof *v);
    if (!(v->present = ks_py_present()))
        return;
    /* Before the worker takes the GIL: who holds it now. */
    v->raw_ok = ks_pyf_open(&v->raw, v->raw_why, sizeof v->raw_why) == 0;
    v->rows = calloc(KS_PY_LIST_MAX, sizeof *v->rows);
    if (!v->rows) {
        snprintf(v->why, sizeof v->why, "out of memory");
        return;
    }
    if (ks_py_names_take(v))
        return;
    int rc;
    if (ks_py_abandoned() > 0) {
        /* One already waits for the GIL: a second would only wait too. */
        snprintf(v->why, sizeof v->why, "the GIL has not been free since an earlier request "
                 "(a thread holds it in a C call that does not release it); nothing was done");
        rc = EBUSY;
    } else {
        rc = ks_py_list(v->rows, KS_PY_LIST_MAX, &v->n, KS_PY_LIST_MS, v->why, sizeof v->why);
    }
    if (rc != 0 && v->raw_ok) {
        /* The GIL was not free: read again who keeps it. The first
         * snapshot may have caught it between two holders (a thread just
         * entering the C call that then kept it). */
        ks_pyf_close(&v->raw);
        v->raw_ok = ks_pyf_open(&v->raw, v->raw_why, sizeof v->raw_why) == 0;
    }
    if (rc == 0 && v->raw_ok)
        ks_py_rows_states(v);
    if (rc == 0 && v->n > 0 && v->rows[0].ts)
        ks_py_names_keep(v);
    if (rc != 0) {
        free(v->rows);
        v->rows = NULL;
        v->n = 0;
    }
}

void ks_py_list_fields(struct ks_out *out, const struct ks_py_list_view *v, pid_t tid,
                       int wait_kind, const void *wait_obj)
{
    int r = v->raw_ok ? ks_pyf_find(&v->raw, tid) : -1, named = 0;
    for (int i = 0; i < v->n && !named; i++)
        if (v->rows[i].tid == tid) {
            ks_out_i64(out, "py_ident", (int64_t)v->rows[i].ident);
            if (v->rows[i].name[0])
                ks_out_str(out, "py_name", v->rows[i].name);
            named = 1;
        }
    if (!named && r >= 0)
        ks_out_i64(out, "py_ident", (int64_t)v->raw.v[r].ident);
    if (r >= 0)
        ks_out_str(out, "py_gil", ks_pyf_gil(&v->raw, r, wait_kind, wait_obj));
}

void ks_py_list_final(struct ks_out *out, struct ks_py_list_view *v)
{
    if (v->present && v->rows)
        ks_out_i64(out, "python", v->n);
    else if (v->present)
        ks_out_str(out, "python_why", v->why);
    free(v->rows);
    v->rows = NULL;
    if (v->raw_ok)
        ks_pyf_close(&v->raw);
    v->raw_ok = 0;
}

/* pyrt.h: here, with the other reply fields of Python threads. */
void ks_py_out(struct ks_out *out, const struct ks_py_thread *p)
{
    if (p->why[0]) {
        ks_out_str(out, "py", "unknown");
        ks_out_str(out, "py_why", p->why);
        return;
    }
    if (!p->found) {
        ks_out_str(out, "py", "no");
        return;
    }
    ks_out_i64(out, "py_ident", (int64_t)p->ident);
    if (p->name[0])
        ks_out_str(out, "py_name", p->name);
    ks_out_str(out, "py_exc", p->exc < 0 ? "unknown" : p->exc ? "set" : "none");
}
