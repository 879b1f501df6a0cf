/* See stack_py.h. */
#include "stack_py.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack.h"

#define KSI_PY_MAX_FRAMES 4096   /* per thread (the shim sends at most 256) */

static struct ksi_thr *ksi_py_thread(struct ksi_dump *d, const struct ks_msg *m)
{
    int64_t tid;
    if (ks_msg_get_i64(m, "tid", 1, 1LL << 31, &tid) != 0)
        return NULL;
    /* The records follow their thread's "stack" record. */
    for (size_t i = d->n; i-- > 0;)
        if (d->v[i].tid == (long)tid)
            return &d->v[i];
    return NULL;
}

static int ksi_py_frame(const struct ks_msg *m, struct ksi_py *p)
{
    if (p->n >= KSI_PY_MAX_FRAMES) {
        p->cut = 1;
        return 1;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        struct ksi_pyframe *g = realloc(p->f, (size_t)cap * sizeof *g);
        if (!g)
            return -1;
        p->f = g;
        p->cap = cap;
    }
    struct ksi_pyframe *f = &p->f[p->n];
    const char *file = ks_msg_get(m, "file"), *func = ks_msg_get(m, "func");
    int64_t line = -1;
    ks_msg_get_i64(m, "line", -1, 1LL << 31, &line);
    f->line = (int)line;
    f->file = strdup(file ? file : "?");
    f->func = strdup(func ? func : "?");
    if (!f->file || !f->func) {
        free(f->file);
        free(f->func);
        return -1;
    }
    p->n++;
    return 1;
}

int ksi_py_collect(const struct ks_msg *m, struct ksi_dump *d)
{
    int64_t x;
    if (strcmp(m->verb, "python") == 0) {
        const char *why = ks_msg_get(m, "why");
        snprintf(d->py_why, sizeof d->py_why, "%s", why ? why : "");
        return 1;
    }
    int stack = strcmp(m->verb, "pystack") == 0;
    if (!stack && strcmp(m->verb, "pyframe") != 0)
        return 0;
    struct ksi_thr *t = ksi_py_thread(d, m);
    if (!t)
        return 1;   /* its thread was dropped (over the limits) */
    if (stack) {
        if (!t->py && !(t->py = calloc(1, sizeof *t->py)))
            return -1;
        const char *gil = ks_msg_get(m, "gil");
        snprintf(t->py->gil, sizeof t->py->gil, "%s", gil ? gil : "?");
        t->py->torn = ks_msg_get_i64(m, "torn", 0, 1, &x) == 0 && x == 1;
        t->py->moved = ks_msg_get_i64(m, "moved", 0, 1, &x) == 0 && x == 1;
        t->py->cut = ks_msg_get_i64(m, "cut", 0, 1, &x) == 0 && x == 1;
        return 1;
    }
    return t->py ? ksi_py_frame(m, t->py) : 1;
}

static const char *ksi_py_gil_text(const char *gil)
{
    if (strcmp(gil, "held") == 0)
        return "holds the GIL";
    if (strcmp(gil, "waits") == 0)
        return "waits for the GIL";
    if (strcmp(gil, "released") == 0)
        return "GIL released";
    return "GIL unknown";
}

void ksi_py_print_header(const struct ksi_dump *d)
{
    if (d->py_why[0])
        printf("Python frames not read: %s\n", d->py_why);
}

void ksi_py_print_text(const struct ksi_thr *t)
{
    const struct ksi_py *p = t->py;
    if (!p)
        return;
    printf("  Python (%s)%s:\n", ksi_py_gil_text(p->gil),
           p->n == 0 ? ", no Python frame" : "");
    for (int i = 0; i < p->n; i++) {
        printf("    %s (%s", p->f[i].func, p->f[i].file);
        if (p->f[i].line >= 0)
            printf(":%d", p->f[i].line);
        printf(")\n");
    }
    if (p->torn)
        printf("    ... (partial: the thread changed its frames while they were read)\n");
    else if (p->cut)
        printf("    ... (cut: too deep)\n");
    else if (p->moved)
        printf("    (the thread ran on while its frames were read: they may mix two moments)\n");
}

json_object *ksi_py_json(const struct ksi_thr *t)
{
    const struct ksi_py *p = t->py;
    if (!p)
        return NULL;
    json_object *j = json_object_new_object();
    json_object_object_add(j, "gil", json_object_new_string(p->gil));
    json_object *arr = json_object_new_array();
    for (int i = 0; i < p->n; i++) {
        json_object *f = json_object_new_object();
        json_object_object_add(f, "function", json_object_new_string(p->f[i].func));
        json_object_object_add(f, "file", json_object_new_string(p->f[i].file));
        json_object_object_add(f, "line", p->f[i].line >= 0 ? json_object_new_int(p->f[i].line)
                                                           : NULL);
        json_object_array_add(arr, f);
    }
    json_object_object_add(j, "frames", arr);
    json_object_object_add(j, "partial", json_object_new_boolean(p->torn || p->cut));
    json_object_object_add(j, "torn", json_object_new_boolean(p->torn));
    json_object_object_add(j, "moved", json_object_new_boolean(p->moved));
    return j;
}

void ksi_py_free(struct ksi_thr *t)
{
    if (!t->py)
        return;
    for (int i = 0; i < t->py->n; i++) {
        free(t->py->f[i].file);
        free(t->py->f[i].func);
    }
    free(t->py->f);
    free(t->py);
    t->py = NULL;
}
