/* killshim-inject --stack: printing a dump (stack.h), as text or JSON. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stack.h"
#include "syscalls.h"

#define KSI_SHIM_MODULE "libkillshim.so"

static int ksi_is_shim(const struct ksi_frame *f)
{
    return f->sym && strcmp(f->sym->module, KSI_SHIM_MODULE) == 0;
}

/* ---- Words ------------------------------------------------------------ */

static const char *ksi_why_text(const char *why)
{
    static const struct { const char *code, *text; } map[] = {
        {"stopped", "the thread is stopped (SIGSTOP or a debugger); not signalled"},
        {"uninterruptible", "in uninterruptible sleep (D); it cannot take a signal now"},
        {"signals-blocked", "it blocks every signal, the shim's too; not waited for"},
        {"signal-pending", "an earlier dump's signal is still pending on it (stopped or traced?)"},
        {"syscall", "in a system call that a signal would cut short; not interrupted"},
        {"no-answer", "did not answer in time (stopped, traced, or blocking signals)"},
        {"altstack", "running on its alternate signal stack; not unwound"},
        {"low-stack", "too little stack left to unwind safely"},
        {"unwind-failed", "the unwinder could not start"},
        {"exited", "exited (a zombie until the process ends)"},
        {"send-failed", "the dump signal could not be sent"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(why, map[i].code) == 0)
            return map[i].text;
    return why;
}

static void ksi_syscall_text(const struct ksi_thr *t, char *buf, size_t cap)
{
    const char *name = ksi_syscall_name(t->sc_nr);
    char num[32];
    if (!name) {
        snprintf(num, sizeof num, "syscall_%ld", t->sc_nr);
        name = num;
    }
    snprintf(buf, cap, "%s(0x%llx, 0x%llx, 0x%llx, 0x%llx, 0x%llx, 0x%llx)", name, t->sargs[0],
             t->sargs[1], t->sargs[2], t->sargs[3], t->sargs[4], t->sargs[5]);
}

/* ---- Wait-for graph --------------------------------------------------- */

static int ksi_cycle_shown(const struct ksi_opts *o, const struct ksi_graph *g,
                           const struct ksi_cycle *c)
{
    return !o->tid || ksi_cycle_has(g, c, o->tid);
}

static int ksi_known_tid(const struct ksi_dump *d, long tid)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].tid == tid)
            return 1;
    return 0;
}

/* ---- Text ------------------------------------------------------------- */

void ksi_frame_text(int i, const struct ksi_frame *f, struct ksi_line *l)
{
    const struct ksi_symbol *s = f->sym;
    l->n = 0;
    /* "  #%-2d 0x%016llx" */
    char d[24], *p = ksi_line_digits(d + sizeof d, (unsigned long long)(i < 0 ? -(long long)i : i));
    if (i < 0)
        *--p = '-';
    size_t dn = (size_t)(d + sizeof d - p);
    ksi_line_put(l, "  #", 3);
    ksi_line_put(l, p, dn);
    ksi_line_pad(l, 2, dn);
    ksi_line_put(l, " 0x", 3);
    ksi_line_hex(l, f->pc, 16);
    /* Without a symbol (a stripped library, no debug file), the module and
     * the address as the object's own: what addr2line -e takes. */
    if (s && (s->name[0] || s->module[0])) {
        ksi_line_put(l, " ", 1);
        ksi_line_str(l, s->name[0] ? s->name : s->module);
        ksi_line_put(l, "+0x", 3);
        ksi_line_hex(l, s->name[0] ? (unsigned long long)s->offset
                                   : (unsigned long long)s->module_offset, 0);
    } else {
        ksi_line_put(l, " ??", 3);
    }
    if (s && s->name[0] && s->module[0]) {
        ksi_line_put(l, " (", 2);
        ksi_line_str(l, s->module);
        ksi_line_put(l, ")", 1);
    }
    if (s && s->file[0]) {
        ksi_line_put(l, " ", 1);
        ksi_line_str(l, s->file);
        ksi_line_put(l, ":", 1);
        ksi_line_dec(l, s->line);
    }
    ksi_line_put(l, "\n", 1);
}

/* A dump of 1,000 threads prints about 12,000 frames: built by hand, not
 * with five printf calls each (ksi_frame_text; stack_frame_test compares). */
static void ksi_print_frame(int i, const struct ksi_frame *f)
{
    struct ksi_line l;
    ksi_frame_text(i, f, &l);
    fwrite(l.b, 1, l.n, stdout);
}

static void ksi_print_thread(const struct ksi_opts *o, const struct ksi_dump *d,
                             const struct ksi_thr *t)
{
    printf("\nThread %ld \"%s\" (%s, %s)", t->tid, t->name, t->role, t->state);
    if (t->wait[0]) {
        printf(": waits for %s 0x%llx", t->wait, t->wait_obj);
        if (t->has_owner && t->owner > 0)
            printf(" held by %ld%s", t->owner, ksi_known_tid(d, t->owner) ? "" : " (exited)");
    }
    putchar('\n');
    if (strcmp(t->via, "call") == 0)
        printf("  in %s() (seen by the shim at the call; the thread was not interrupted)\n",
               t->call);
    if (t->has_syscall) {
        char sc[256];
        ksi_syscall_text(t, sc, sizeof sc);
        printf("  blocked in %s\n", sc);
    }
    ksi_py_print_text(t);
    if (strcmp(t->via, "none") == 0) {
        printf("  no stack: %s\n", t->why[0] ? ksi_why_text(t->why) : "unknown");
        if (t->has_syscall && t->nframes == 1)
            ksi_print_frame(0, &t->frames[0]);
        return;
    }
    if (t->why[0])
        printf("  stack incomplete: %s\n", ksi_why_text(t->why));
    int shown = 0;
    for (int i = 0; i < t->nframes; i++)
        if (o->all || !ksi_is_shim(&t->frames[i]))
            ksi_print_frame(shown++, &t->frames[i]);
    if (t->cut)
        printf("  ... (stack cut: too deep, or a frame without unwind information)\n");
}

void ksi_stack_print_text(const struct ksi_opts *o, const struct ksi_dump *d,
                          const struct ksi_graph *g, long long us)
{
    size_t sel = 0;
    for (size_t i = 0; i < d->n; i++)
        sel += d->v[i].selected;
    printf("process %d: %zu thread%s, stacks taken in %.1f ms\n", (int)o->pid, sel,
           sel == 1 ? "" : "s", (double)us / 1000.0);
    ksi_py_print_header(d);
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].selected)
            ksi_print_thread(o, d, &d->v[i]);
    int any = 0;
    for (int i = 0; i < g->ncycles; i++) {
        if (!ksi_cycle_shown(o, g, &g->cycles[i]))
            continue;
        char buf[4096];
        ksi_cycle_text(g->edges, &g->cycles[i], buf, sizeof buf);
        printf("%s%s\n", any++ ? "" : "\n", buf);
    }
}

/* ---- JSON ------------------------------------------------------------- */


static json_object *ksi_str_or_null(const char *s)
{
    return s && s[0] ? json_object_new_string(s) : NULL;
}

static json_object *ksi_json_frame(const struct ksi_frame *f)
{
    const struct ksi_symbol *s = f->sym;
    json_object *j = json_object_new_object();
    json_object_object_add(j, "pc", ksi_json_hex(f->pc));
    json_object_object_add(j, "exact", json_object_new_boolean(f->exact));
    json_object_object_add(j, "symbol", ksi_str_or_null(s ? s->name : NULL));
    json_object_object_add(j, "offset", s && s->name[0] ? json_object_new_int64((int64_t)s->offset) : NULL);
    json_object_object_add(j, "module", ksi_str_or_null(s ? s->module : NULL));
    json_object_object_add(j, "module_offset", s && s->module[0] ? ksi_json_hex(s->module_offset) : NULL);
    json_object_object_add(j, "file", ksi_str_or_null(s ? s->file : NULL));
    json_object_object_add(j, "line", s && s->file[0] ? json_object_new_int(s->line) : NULL);
    return j;
}

static json_object *ksi_json_thread(const struct ksi_opts *o, const struct ksi_thr *t)
{
    json_object *j = json_object_new_object();
    json_object_object_add(j, "tid", json_object_new_int64(t->tid));
    json_object_object_add(j, "name", json_object_new_string(t->name));
    json_object_object_add(j, "role", json_object_new_string(t->role));
    json_object_object_add(j, "state", json_object_new_string(t->state));
    json_object_object_add(j, "captured", json_object_new_string(t->via));
    json_object_object_add(j, "reason", ksi_str_or_null(t->why));
    json_object_object_add(j, "reason_text", t->why[0] ? json_object_new_string(ksi_why_text(t->why)) : NULL);
    json_object_object_add(j, "in_call", strcmp(t->via, "call") == 0 ? ksi_str_or_null(t->call) : NULL);
    json_object *sc = NULL;
    if (t->has_syscall) {
        sc = json_object_new_object();
        json_object_object_add(sc, "nr", json_object_new_int64(t->sc_nr));
        json_object_object_add(sc, "name", ksi_str_or_null(ksi_syscall_name(t->sc_nr)));
        json_object *args = json_object_new_array();
        for (int i = 0; i < 6; i++)
            json_object_array_add(args, ksi_json_hex(t->sargs[i]));
        json_object_object_add(sc, "args", args);
        json_object_object_add(sc, "sp", ksi_json_hex(t->ssp));
        json_object_object_add(sc, "pc", ksi_json_hex(t->spc));
    }
    json_object_object_add(j, "syscall", sc);
    json_object *w = NULL;
    if (t->wait[0]) {
        w = json_object_new_object();
        json_object_object_add(w, "kind", json_object_new_string(t->wait));
        json_object_object_add(w, "object", ksi_json_hex(t->wait_obj));
        json_object_object_add(w, "owner", t->has_owner && t->owner > 0 ? json_object_new_int64(t->owner) : NULL);
    }
    json_object_object_add(j, "waits_for", w);
    json_object_object_add(j, "python", ksi_py_json(t));
    json_object *frames = json_object_new_array();
    int nf = strcmp(t->via, "none") == 0 ? 0 : t->nframes;
    for (int i = 0; i < nf; i++)
        if (o->all || !ksi_is_shim(&t->frames[i]))
            json_object_array_add(frames, ksi_json_frame(&t->frames[i]));
    json_object_object_add(j, "frames", frames);
    json_object_object_add(j, "truncated", json_object_new_boolean(t->cut));
    return j;
}

void ksi_stack_print_json(const struct ksi_opts *o, const struct ksi_dump *d,
                          const struct ksi_graph *g, long long us)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "pid", json_object_new_int(o->pid));
    json_object_object_add(root, "capture_us", json_object_new_int64(us));
    json_object_object_add(root, "python_why",
                           d->py_why[0] ? json_object_new_string(d->py_why) : NULL);
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].selected)
            json_object_array_add(arr, ksi_json_thread(o, &d->v[i]));
    json_object_object_add(root, "threads", arr);
    json_object *cyc = json_object_new_array();
    for (int i = 0; i < g->ncycles; i++)
        if (ksi_cycle_shown(o, g, &g->cycles[i]))
            json_object_array_add(cyc, ksi_json_cycle(g, &g->cycles[i], 1));
    json_object_object_add(root, "deadlocks", cyc);
    puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
}

