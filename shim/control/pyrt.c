/* See pyrt.h. The API is reached through function pointers found with
 * dlsym: PyObject is opaque here (void *), and every reference this file
 * owns is dropped with Py_DecRef. */
#include "pyrt.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shim/core/elf_sym.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "pyframes.h"
#include "pyrt_job.h"

typedef void pyobj;

/* The C API the shim uses: 3.8's exported functions. */
struct ks_py_api {
    int (*is_initialized)(void);
    int (*is_finalizing)(void);                 /* _Py_IsFinalizing, 3.13: Py_IsFinalizing */
    int (*gil_ensure)(void);
    void (*gil_release)(int);
    void *(*tstate_get)(void);
    void *(*interp_main)(void);
    void *(*thread_head)(void *);
    void *(*thread_next)(void *);
    int (*set_async_exc)(unsigned long, pyobj *);
    pyobj *(*sys_get)(const char *);            /* borrowed */
    pyobj *(*dict_get_str)(pyobj *, const char *);   /* borrowed */
    pyobj *(*dict_get)(pyobj *, pyobj *);       /* borrowed */
    int (*dict_next)(pyobj *, ssize_t *, pyobj **, pyobj **);
    pyobj *(*getattr)(pyobj *, const char *);
    pyobj *(*long_from_ulong)(unsigned long);
    long (*long_as_long)(pyobj *);
    const char *(*utf8)(pyobj *);
    pyobj *(*builtins)(void);                   /* borrowed */
    int (*is_subclass)(pyobj *, pyobj *);
    pyobj **base_exception;                     /* &PyExc_BaseException */
    void (*err_clear)(void);
    void (*decref)(pyobj *);
    const char *(*version)(void);
    int minor;                                  /* 3.MINOR */
};

static struct ks_py_api ks_py;
static int ks_py_state;        /* 0 not looked for, 1 usable, -1 absent or unsupported */
static char ks_py_bad[160];    /* why not usable */
KS_LOCK_DEFINE(static, ks_py_lock);

/* Offsets in a PyThreadState found at run time (ks_py_learn_layout): -1 unknown. */
static long ks_py_off_native = -1, ks_py_off_async = -1;

/* The object that exports CPython's API: libpython3.x.so (global, or loaded
 * RTLD_LOCAL by an embedding program), or a python3 linked with it
 * statically (Debian's). Found and read with the shim's own ELF lookup, not
 * dlsym: a failed dlsym leaves an error string malloc'd in the asking
 * thread, and every status request in a process without Python asked. */
static struct ks_elf_obj ks_py_obj;

static void *ks_py_sym(const char *name)
{
    const ElfW(Sym) *sym = ks_elf_find(&ks_py_obj, name, ks_elf_gnu_hash(name), NULL);
    return sym ? ks_elf_addr(&ks_py_obj, sym) : NULL;
}

#define KS_PY_GET(field, name) (*(void **)&ks_py.field = ks_py_sym(name))

static int ks_py_resolve(void)
{
    int ok = KS_PY_GET(is_initialized, "Py_IsInitialized") && KS_PY_GET(gil_ensure,
        "PyGILState_Ensure") && KS_PY_GET(gil_release, "PyGILState_Release") &&
        KS_PY_GET(tstate_get, "PyThreadState_Get") &&
        KS_PY_GET(thread_head, "PyInterpreterState_ThreadHead") &&
        KS_PY_GET(thread_next, "PyThreadState_Next") &&
        KS_PY_GET(set_async_exc, "PyThreadState_SetAsyncExc") &&
        KS_PY_GET(sys_get, "PySys_GetObject") && KS_PY_GET(dict_get_str, "PyDict_GetItemString") &&
        KS_PY_GET(dict_get, "PyDict_GetItem") && KS_PY_GET(dict_next, "PyDict_Next") &&
        KS_PY_GET(getattr, "PyObject_GetAttrString") &&
        KS_PY_GET(long_from_ulong, "PyLong_FromUnsignedLong") &&
        KS_PY_GET(long_as_long, "PyLong_AsLong") && KS_PY_GET(utf8, "PyUnicode_AsUTF8") &&
        KS_PY_GET(builtins, "PyEval_GetBuiltins") && KS_PY_GET(is_subclass, "PyObject_IsSubclass") &&
        KS_PY_GET(base_exception, "PyExc_BaseException") && KS_PY_GET(err_clear, "PyErr_Clear") &&
        KS_PY_GET(decref, "Py_DecRef") && KS_PY_GET(version, "Py_GetVersion");
    if (!ok)
        return 0;
    if (!KS_PY_GET(interp_main, "PyInterpreterState_Main"))
        KS_PY_GET(interp_main, "PyInterpreterState_Head");
    if (!KS_PY_GET(is_finalizing, "_Py_IsFinalizing"))
        KS_PY_GET(is_finalizing, "Py_IsFinalizing");
    return ks_py.interp_main && ks_py.is_finalizing;
}

/* The version: 3.8 to 3.13 with the GIL (a free-threaded build has no GIL
 * to serialize with). From Py_Version (3.11+: read-only data,
 * PY_VERSION_HEX) where there is one: Py_GetVersion formats its string
 * into a static buffer at every call, and the interpreter's own calls
 * write it too, without a lock (ThreadSanitizer saw the two writes race).
 * Before 3.11, and for 3.13's free-threading mark, the string. */
static int ks_py_check_version(void)
{
    const unsigned long *hex = ks_py_sym("Py_Version");
    const char *v = NULL;
    char num[16] = "";
    int major = 0, minor = 0;
    if (hex) {
        major = (int)((*hex >> 24) & 0xff);
        minor = (int)((*hex >> 16) & 0xff);
        snprintf(num, sizeof num, "%d.%d", major, minor);
    }
    if (!hex || minor >= 13) {
        v = ks_py.version();
        if (!hex && (!v || sscanf(v, "%d.%d", &major, &minor) != 2))
            major = 0;
    }
    if (major != 3 || minor < 8 || minor > 13 || (v && strstr(v, "free-threading"))) {
        if (!v)
            v = num;
        snprintf(ks_py_bad, sizeof ks_py_bad, "CPython %.40s is not supported (3.8 to 3.13 "
                 "with the GIL)", v ? v : "?");
        return 0;
    }
    ks_py.minor = minor;
    return 1;
}

int ks_py_present(void)
{
    ks_lock(&ks_py_lock);
    /* Not found yet is looked for again: a program may load libpython late. */
    if (ks_py_state != 1) {
        struct ks_elf_loaded l;
        int found = ks_elf_find_loaded("Py_IsInitialized", NULL, &l) == 0 &&
                    (ks_py_obj = l.obj, ks_py_resolve());
        snprintf(ks_py_bad, sizeof ks_py_bad, "no CPython in this process (no libpython3, no "
                 "exported Python C API)");
        ks_py_state = found && ks_py_check_version() ? 1 : -1;
    }
    int ok = ks_py_state == 1;
    ks_unlock(&ks_py_lock);
    return ok;
}

int ks_py_addrs(struct ks_py_addrs *a, char *why, size_t cap)
{
    memset(a, 0, sizeof *a);
    if (!ks_py_present()) {
        ks_lock(&ks_py_lock);
        snprintf(why, cap, "%s", ks_py_bad);
        ks_unlock(&ks_py_lock);
        return strstr(why, "not supported") ? EINVAL : ENOENT;
    }
    a->minor = ks_py.minor;
    a->runtime = ks_py_sym("_PyRuntime");
    a->code_type = ks_py_sym("PyCode_Type");
    a->unicode_type = ks_py_sym("PyUnicode_Type");
    a->bytes_type = ks_py_sym("PyBytes_Type");
    if (a->runtime && a->code_type && a->unicode_type && a->bytes_type)
        return 0;
    snprintf(why, cap, "CPython does not export _PyRuntime and its type objects");
    return ENOENT;
}

/* ---- Under the GIL, in the worker ----------------------------------------- */

/* 3.11 and later keep the thread's ident and its native id side by side
 * (thread_id, native_thread_id), right after async_exc (the pending
 * asynchronous exception). Their offsets are learned from the worker's own
 * thread state, whose values are known: pthread_self and gettid, and no
 * exception pending. 256 bytes stay inside every version's PyThreadState
 * (360 bytes in 3.11, more after). Not found: the layout is unknown, and the
 * public threading module is used instead. */
static void ks_py_learn_layout(void)
{
    /* Before 3.11 (no native id to learn from): a verified row's async_exc
     * (pyframes_layout.c), the state found by its ident (ks_py_exc_of). */
    const struct ks_pyl *l = ks_py.minor < 11 ? ks_pyl_for(ks_py.minor) : NULL;
    if (l)
        ks_py_off_async = l->ts_async_exc;
    if (ks_py_off_native >= 0 || ks_py.minor < 11)
        return;
    const unsigned long *w = ks_py.tstate_get();
    unsigned long self = (unsigned long)pthread_self(), tid = (unsigned long)ks_gettid();
    for (int i = 1; i + 1 < 256 / (int)sizeof(long); i++)
        if (w[i] == self && w[i + 1] == tid && w[i - 1] == 0) {
            ks_py_off_native = (long)((i + 1) * sizeof(long));
            ks_py_off_async = (long)((i - 1) * sizeof(long));
            return;
        }
}

static unsigned long ks_py_word(const void *ts, long off)
{
    return *(const unsigned long *)((const char *)ts + off);
}

/* threading._active (ident -> Thread), borrowed from the module's dict
 * entry; NULL if threading was never imported. New reference. */
static pyobj *ks_py_active(void)
{
    pyobj *mods = ks_py.sys_get("modules");
    pyobj *th = mods ? ks_py.dict_get_str(mods, "threading") : NULL;
    pyobj *act = th ? ks_py.getattr(th, "_active") : NULL;
    if (!act)
        ks_py.err_clear();
    return act;
}

/* A Thread's attribute as a long, -1 if it has none. */
static long ks_py_attr_long(pyobj *o, const char *name)
{
    pyobj *v = ks_py.getattr(o, name);
    long x = v ? ks_py.long_as_long(v) : -1;
    if (v)
        ks_py.decref(v);
    ks_py.err_clear();
    return x;
}

/* P's ident by threading's _native_id (3.8+), when the layout is unknown. */
static void ks_py_find_by_threading(pyobj *act, pid_t tid, struct ks_py_thread *p)
{
    ssize_t pos = 0;
    pyobj *k, *v;
    while (act && ks_py.dict_next(act, &pos, &k, &v))
        if (ks_py_attr_long(v, "_native_id") == (long)tid) {
            p->found = 1;
            p->ident = (uint64_t)ks_py.long_as_long(k);
            ks_py.err_clear();
            return;
        }
}

/* threading's name of the thread IDENT into BUF ("" if none). */
static void ks_py_name(pyobj *act, uint64_t ident, char *buf, size_t cap)
{
    pyobj *key = ks_py.long_from_ulong((unsigned long)ident);
    pyobj *th = key && act ? ks_py.dict_get(act, key) : NULL;
    pyobj *name = th ? ks_py.getattr(th, "_name") : NULL;
    const char *s = name ? ks_py.utf8(name) : NULL;
    snprintf(buf, cap, "%s", s ? s : "");
    if (name)
        ks_py.decref(name);
    if (key)
        ks_py.decref(key);
    ks_py.err_clear();
}

/* Before 3.11, with a verified row: whether P's state (by its ident) has
 * an asynchronous exception pending. */
static void ks_py_exc_of(struct ks_py_thread *p)
{
    const struct ks_pyl *l = ks_pyl_for(ks_py.minor);
    if (!l || ks_py_off_async < 0)
        return;
    for (void *ts = ks_py.thread_head(ks_py.interp_main()); ts; ts = ks_py.thread_next(ts))
        if (ks_py_word(ts, l->ts_ident) == p->ident) {
            p->exc = ks_py_word(ts, ks_py_off_async) != 0;
            return;
        }
}

/* The thread states of the main interpreter are walked under the GIL: a
 * state is unlinked and freed only by a thread that holds the GIL (its own
 * exit, PyGILState_Release); one being created may be linked meanwhile, at
 * the head, and is then missed (its thread runs no Python code yet). */
static void ks_py_find(pid_t tid, struct ks_py_thread *p)
{
    memset(p, 0, sizeof *p);
    p->exc = -1;
    ks_py_learn_layout();
    pyobj *act = ks_py_active();
    if (ks_py_off_native >= 0) {
        for (void *ts = ks_py.thread_head(ks_py.interp_main()); ts; ts = ks_py.thread_next(ts))
            if (ks_py_word(ts, ks_py_off_native) == (unsigned long)tid) {
                p->found = 1;
                /* thread_id, the ident PyThreadState_SetAsyncExc takes
                 * (PyThreadState_GetID is another number: the state's). */
                p->ident = ks_py_word(ts, ks_py_off_native - (long)sizeof(long));
                p->exc = ks_py_word(ts, ks_py_off_async) != 0;
                break;
            }
    } else {
        ks_py_find_by_threading(act, tid, p);
        if (p->found)
            ks_py_exc_of(p);
    }
    if (p->found)
        ks_py_name(act, p->ident, p->name, sizeof p->name);
    if (act)
        ks_py.decref(act);
}

/* Every thread state of the main interpreter (or, without the layout,
 * every thread of threading._active), named. */
static void ks_py_do_list(struct ks_py_job *j)
{
    ks_py_learn_layout();
    pyobj *act = ks_py_active();
    if (ks_py_off_native >= 0) {
        for (void *ts = ks_py.thread_head(ks_py.interp_main()); ts && j->nrows < j->caprows;
             ts = ks_py.thread_next(ts)) {
            struct ks_py_row *r = &j->rows[j->nrows++];
            r->tid = (pid_t)ks_py_word(ts, ks_py_off_native);
            r->ts = (uintptr_t)ts;
            r->ident = ks_py_word(ts, ks_py_off_native - (long)sizeof(long));
        }
    } else {
        ssize_t pos = 0;
        pyobj *k, *v;
        while (act && j->nrows < j->caprows && ks_py.dict_next(act, &pos, &k, &v)) {
            struct ks_py_row *r = &j->rows[j->nrows++];
            r->tid = (pid_t)ks_py_attr_long(v, "_native_id");
            r->ident = (uint64_t)ks_py.long_as_long(k);
            ks_py.err_clear();
        }
    }
    for (int i = 0; i < j->nrows; i++)
        ks_py_name(act, j->rows[i].ident, j->rows[i].name, sizeof j->rows[i].name);
    if (act)
        ks_py.decref(act);
}

static void ks_py_do_raise(struct ks_py_job *j)
{
    ks_py_find(j->tid, &j->res);
    if (!j->res.found) {
        j->rc = ESRCH;
        snprintf(j->why, sizeof j->why, "thread %d is not a Python thread (CPython has no "
                 "thread state for it)", (int)j->tid);
        return;
    }
    pyobj *exc = ks_py.dict_get_str(ks_py.builtins(), j->exc);
    if (!exc || ks_py.is_subclass(exc, *ks_py.base_exception) != 1) {
        ks_py.err_clear();
        j->rc = EINVAL;
        snprintf(j->why, sizeof j->why, "%s is no exception of builtins (SystemExit, "
                 "KeyboardInterrupt, RuntimeError...)", j->exc);
        return;
    }
    if (ks_py.set_async_exc((unsigned long)j->res.ident, exc) != 1) {
        j->rc = ESRCH;
        snprintf(j->why, sizeof j->why, "thread %d left Python as it was asked", (int)j->tid);
        return;
    }
    j->res.exc = ks_py_off_async >= 0 ? 1 : -1;
}

/* In the worker: J's work under the GIL (takes and releases it). */
static void ks_py_work(struct ks_py_job *j)
{
    /* Finalizing first: Py_FinalizeEx clears "initialized" just after it
     * sets "finalizing". */
    int fin = ks_py.is_finalizing();
    if (fin || !ks_py.is_initialized()) {
        j->rc = ESHUTDOWN;
        snprintf(j->why, sizeof j->why, "CPython is %s", fin ?
                 "finalizing (the interpreter is exiting)" : "not initialized");
        return;
    }
    int g = ks_py.gil_ensure();
    int zero = 0;
    if (ks_py.is_finalizing()) {
        j->rc = ESHUTDOWN;
        snprintf(j->why, sizeof j->why, "CPython is finalizing (the interpreter is exiting)");
    } else if (__atomic_compare_exchange_n(&j->step, &zero, 1, 0, __ATOMIC_ACQ_REL,
                                           __ATOMIC_ACQUIRE)) {
        if (j->op == KS_PY_RAISE)
            ks_py_do_raise(j);
        else if (j->op == KS_PY_LIST)
            ks_py_do_list(j);
        else
            ks_py_find(j->tid, &j->res);
    }
    ks_py.gil_release(g);
}

/* A job for OP with room for NROWS rows, or NULL with WHY filled in (and
 * *RC an errno). */
static struct ks_py_job *ks_py_job_new(int op, int nrows, char *why, size_t cap, int *rc)
{
    if (!ks_py_present()) {
        ks_lock(&ks_py_lock);
        snprintf(why, cap, "%s", ks_py_bad);
        ks_unlock(&ks_py_lock);
        *rc = strstr(why, "not supported") ? EINVAL : ENOENT;
        return NULL;
    }
    struct ks_py_job *j = calloc(1, sizeof *j + (size_t)nrows * sizeof(struct ks_py_row));
    if (!j) {
        snprintf(why, cap, "out of memory");
        *rc = ENOMEM;
        return NULL;
    }
    j->op = op;
    j->rows = (struct ks_py_row *)(j + 1);
    j->caprows = nrows;
    return j;
}

static int ks_py_run(int op, pid_t tid, const char *exc, struct ks_py_thread *p, int timeout_ms,
                     char *why, size_t cap)
{
    int rc = 0;
    memset(p, 0, sizeof *p);
    struct ks_py_job *j = ks_py_job_new(op, 0, why, cap, &rc);
    if (!j)
        return rc;
    j->tid = tid;
    snprintf(j->exc, sizeof j->exc, "%s", exc ? exc : "");
    rc = ks_py_call(j, ks_py_work, timeout_ms, why, cap);
    if (!rc || rc == ESRCH || rc == EINVAL)
        *p = j->res;
    ks_py_put(j);
    return rc;
}

int ks_py_list(struct ks_py_row *rows, int cap, int *n, int timeout_ms, char *why, size_t wcap)
{
    int rc = 0;
    *n = 0;
    struct ks_py_job *j = ks_py_job_new(KS_PY_LIST, cap, why, wcap, &rc);
    if (!j)
        return rc;
    rc = ks_py_call(j, ks_py_work, timeout_ms, why, wcap);
    if (!rc) {
        memcpy(rows, j->rows, (size_t)j->nrows * sizeof *rows);
        *n = j->nrows;
    }
    ks_py_put(j);
    return rc;
}

int ks_py_thread_of(pid_t tid, struct ks_py_thread *p, int timeout_ms, char *why, size_t cap)
{
    return ks_py_run(KS_PY_PROBE, tid, NULL, p, timeout_ms, why, cap);
}

int ks_py_raise(pid_t tid, const char *exc, struct ks_py_thread *p, int timeout_ms, char *why,
                size_t cap)
{
    return ks_py_run(KS_PY_RAISE, tid, exc, p, timeout_ms, why, cap);
}
