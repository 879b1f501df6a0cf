/* killshim-inject PID TID, the python mode (docs/python.md): CPython's
 * view of the thread taken from the shim's py_* fields, what the wait
 * reports, and the report's python part.
 *
 * "Taken" is judged from the thread's state: the shim raised the exception
 * (PyThreadState_SetAsyncExc) and reports py_exc=set until the thread's
 * eval loop takes it; py_exc=none after that, on a thread that is still
 * alive, means the thread caught it. With py_exc=unknown (a CPython whose
 * thread state layout the shim could not learn) only "raised" is known. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "end.h"
#include "shim/common/procfs.h"
#include "syscalls.h"

static void ksi_py_copy(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

void ksi_py_take(struct ksi_end_result *r, const struct ks_msg *m, double at)
{
    const char *py = ks_msg_get(m, "py");
    uint64_t ident = 0;
    if (py && strcmp(py, "no") == 0) {
        r->py.known = 0;
    } else if (py && strcmp(py, "unknown") == 0) {
        r->py.known = -1;
        ksi_py_copy(r->py.why, sizeof r->py.why, ks_msg_get(m, "py_why"));
    } else if (ks_msg_get_u64(m, "py_ident", &ident) == 0) {
        r->py.known = 1;
        r->py.ident = ident;
        ksi_py_copy(r->py.name, sizeof r->py.name, ks_msg_get(m, "py_name"));
        ksi_py_copy(r->py.state, sizeof r->py.state, ks_msg_get(m, "py_exc"));
        if (r->py.exc[0] && r->py.taken_at < 0 && strcmp(r->py.state, "none") == 0)
            r->py.taken_at = at;
    } else {
        return;
    }
    r->py.polled_at = at;
}

/* What the thread is in now, from the kernel: "the system call NAME", or
 * "" when it runs (or /proc says nothing). */
static void ksi_py_in(const struct ksi_end_result *r, char *buf, size_t cap)
{
    char path[96], sc[256];
    buf[0] = '\0';
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)r->pid, (int)r->host_tid);
    if (ks_read_small_file(path, sc, sizeof sc) <= 0 || strncmp(sc, "running", 7) == 0)
        return;
    long nr = strtol(sc, NULL, 10);
    const char *name = nr >= 0 ? ksi_syscall_name(nr) : NULL;
    if (name)
        snprintf(buf, cap, "the system call %s", name);
    else if (nr >= 0)
        snprintf(buf, cap, "system call %ld", nr);
}

int ksi_py_pending(struct ksi_end_result *r, double now, double grace)
{
    char in[96];
    struct ksi_py *p = &r->py;
    if (p->taken_at >= 0) {
        snprintf(r->pending, sizeof r->pending, "%s was raised and the thread took it by %.2f s "
                 "after the request, but runs on: it catches the exception (an except "
                 "BaseException, or except %s, that does not re-raise) and swallows it",
                 p->exc, p->taken_at, p->exc);
        p->swallowed = now - p->taken_at >= grace;
        return p->swallowed;
    }
    ksi_py_in(r, in, sizeof in);
    if (strcmp(p->state, "set") == 0 && in[0])
        snprintf(r->pending, sizeof r->pending, "%s raised, not taken yet: the thread waits in "
                 "a C call (%s) that CPython does not interrupt for it; it is raised when the "
                 "call returns", p->exc, in);
    else if (strcmp(p->state, "set") == 0)
        snprintf(r->pending, sizeof r->pending, "%s raised, not taken yet: the thread runs "
                 "C code (or waits for the GIL); it is raised at its next Python instruction",
                 p->exc);
    else
        snprintf(r->pending, sizeof r->pending, "%s raised; whether the thread took it is not "
                 "known (this CPython's thread state layout is not known to killshim)%s%s",
                 p->exc, in[0] ? "; it waits in " : "", in);
    return 0;
}

void ksi_py_report_text(const struct ksi_end_result *r)
{
    const struct ksi_py *p = &r->py;
    if (p->known == 1)
        printf("  python:      thread '%s' (ident %" PRIu64 ")", p->name[0] ? p->name : "?",
               p->ident);
    else if (p->known == -1 && p->why[0])
        printf("  python:      CPython not asked: %s", p->why);
    else
        return;
    if (p->exc[0] && p->taken_at >= 0)
        printf("; %s raised at %.2f s, taken by %.2f s", p->exc, p->raised_at, p->taken_at);
    else if (p->exc[0])
        printf("; %s raised at %.2f s", p->exc, p->raised_at);
    printf("\n");
    if (r->outcome == KSI_GONE && !r->process_exited && p->exc[0] &&
        strcmp(r->how, "returned") == 0)
        printf("  the exception unwound its Python frames (finally: blocks and with exits ran) "
               "and the thread returned; threading saw an ordinary end\n");
}

struct json_object *ksi_py_report_json(const struct ksi_end_result *r)
{
    const struct ksi_py *p = &r->py;
    if (p->known == 0 && !p->exc[0])
        return NULL;
    json_object *o = json_object_new_object();
    json_object_object_add(o, "thread", json_object_new_boolean(p->known == 1));
    if (p->known == 1) {
        json_object_object_add(o, "ident", json_object_new_int64((int64_t)p->ident));
        json_object_object_add(o, "name", json_object_new_string(p->name));
    }
    if (p->why[0])
        json_object_object_add(o, "why", json_object_new_string(p->why));
    if (p->exc[0]) {
        json_object_object_add(o, "exception", json_object_new_string(p->exc));
        json_object_object_add(o, "raised_ms", json_object_new_int64((int64_t)(p->raised_at * 1000)));
        json_object_object_add(o, "taken_ms", p->taken_at >= 0 ?
                               json_object_new_int64((int64_t)(p->taken_at * 1000)) : NULL);
        json_object_object_add(o, "swallowed", json_object_new_boolean(p->swallowed));
    }
    return o;
}
