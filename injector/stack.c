/* killshim-inject --stack PID [TID]: every thread's stack (or TID's), what it
 * is blocked on, the owner of the lock it waits for, and the deadlock cycles
 * of the wait-for graph. The shim captures raw addresses ("stack" verb, see
 * shim/control/cmd_stack.c); names, modules and lines are found here, from the
 * files the process maps. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "injector.h"
#include "symbolize.h"
#include "syscalls.h"
#include "deadlock.h"

#define KSI_SHIM_MODULE "libkillshim.so"

/* The reply is the target's to write: at most this much of it is kept (a
 * real dump is far smaller; past it, the rest is read and dropped, and the
 * deadline bounds how long that takes). */
#define KSI_MAX_THREADS (1 << 16)
#define KSI_MAX_FRAMES (1 << 20)    /* in all: 1M addresses, 24 MiB */
#define KSI_MAX_LOOKUPS (1 << 16)   /* distinct addresses named */

struct ksi_frame {
    unsigned long long pc;
    int exact;                  /* the interrupted instruction, not a return address */
    const struct ksi_symbol *sym;   /* NULL: unknown */
};

struct ksi_thr {
    long tid, owner;
    char name[64], role[16], state[4], via[8], why[32], call[32], wait[16];
    int selected, has_syscall, has_owner, cut, nframes;
    long sc_nr;
    unsigned long long sargs[6], ssp, spc, wait_obj;
    struct ksi_frame *frames;
};

struct ksi_dump {
    struct ksi_thr *v;
    size_t n, cap, frames;
    int oom;
    int cut;   /* over KSI_MAX_THREADS or KSI_MAX_FRAMES: the rest was dropped */
};

/* ---- Reading the reply ------------------------------------------------ */

static void ksi_copy_field(const struct ks_msg *m, const char *key, char *dst, size_t cap,
                           const char *dflt)
{
    const char *s = ks_msg_get(m, key);
    snprintf(dst, cap, "%s", s ? s : dflt);
}

/* "7f12ab!,40113a,..." */
static int ksi_parse_ips(const char *s, struct ksi_thr *t, struct ksi_dump *d)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if (d->frames + n > KSI_MAX_FRAMES) {
        d->cut = 1;
        return 0;
    }
    d->frames += n;
    t->frames = calloc(n, sizeof *t->frames);
    if (!t->frames)
        return -1;
    while (*s) {
        char *end;
        unsigned long long pc = strtoull(s, &end, 16);
        if (end == s)
            return -1;
        struct ksi_frame *f = &t->frames[t->nframes++];
        f->pc = pc;
        f->exact = *end == '!';
        s = end + (*end == '!');
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return 0;
}

static void ksi_parse_sargs(const char *s, struct ksi_thr *t)
{
    for (int i = 0; i < 6 && s && *s; i++) {
        char *end;
        t->sargs[i] = strtoull(s, &end, 16);
        s = *end == ',' ? end + 1 : end;
    }
}

static int ksi_collect(const struct ks_msg *m, void *ctx)
{
    struct ksi_dump *d = ctx;
    if (strcmp(m->verb, "stack") != 0)
        return 0;   /* newer shims may send more record types */
    if (d->n >= KSI_MAX_THREADS || d->cut) {
        d->cut = 1;
        return 1;
    }
    struct ksi_thr *v = ksi_grow(d->v, d->n, &d->cap, sizeof *v);
    if (!v) {
        d->oom = 1;
        return 1;
    }
    d->v = v;
    struct ksi_thr *t = &d->v[d->n++];
    memset(t, 0, sizeof *t);
    int64_t x;
    uint64_t u;
    if (ks_msg_get_i64(m, "tid", 1, 1LL << 31, &x) == 0) t->tid = (long)x;
    ksi_copy_field(m, "name", t->name, sizeof t->name, "?");
    ksi_copy_field(m, "role", t->role, sizeof t->role, "?");
    ksi_copy_field(m, "state", t->state, sizeof t->state, "?");
    ksi_copy_field(m, "via", t->via, sizeof t->via, "none");
    ksi_copy_field(m, "why", t->why, sizeof t->why, "");
    ksi_copy_field(m, "call", t->call, sizeof t->call, "");
    ksi_copy_field(m, "wait", t->wait, sizeof t->wait, "");
    t->selected = !(ks_msg_get_i64(m, "selected", 0, 1, &x) == 0 && x == 0);
    if (ks_msg_get_i64(m, "syscall", 0, 100000, &x) == 0) {
        t->has_syscall = 1;
        t->sc_nr = (long)x;
        ksi_parse_sargs(ks_msg_get(m, "sargs"), t);
        if (ks_msg_get_u64(m, "ssp", &u) == 0) t->ssp = u;
        if (ks_msg_get_u64(m, "spc", &u) == 0) t->spc = u;
    }
    if (ks_msg_get_u64(m, "wait_obj", &u) == 0) t->wait_obj = u;
    if (ks_msg_get_i64(m, "owner", 0, 1LL << 31, &x) == 0) {
        t->has_owner = 1;
        t->owner = (long)x;
    }
    t->cut = ks_msg_get_i64(m, "cut", 0, 1, &x) == 0 && x == 1;
    const char *ips = ks_msg_get(m, "ips");
    if (ips && ksi_parse_ips(ips, t, d) != 0) {
        ksi_err("malformed frame list for thread %ld", t->tid);
        t->nframes = 0;
    }
    return 0;
}

/* ---- Symbols ---------------------------------------------------------- */

/* Many threads share frames: each address is looked up once. */
struct ksi_symcache {
    struct ksi_sym *sym;
    struct ksi_symslot {
        unsigned long long key;   /* lookup address + 1 (0: empty) */
        int found;
        struct ksi_symbol s;
    } *slots;
    size_t cap, used;
};

static struct ksi_symslot *ksi_slot(struct ksi_symcache *c, unsigned long long key)
{
    size_t i = (size_t)(key * 0x9e3779b97f4a7c15ull) & (c->cap - 1);
    while (c->slots[i].key && c->slots[i].key != key)
        i = (i + 1) & (c->cap - 1);
    return &c->slots[i];
}

/* Sized once for every frame of the dump: the table never moves, so frames
 * can point into it. */
static int ksi_cache_init(struct ksi_symcache *c, size_t frames)
{
    c->cap = 64;
    while (c->cap < frames * 2 && c->cap < 2 * KSI_MAX_LOOKUPS)
        c->cap *= 2;
    c->slots = calloc(c->cap, sizeof *c->slots);
    return c->slots ? 0 : -1;
}

/* The symbol at PC; a return address is looked up one byte back, inside the
 * call instruction, so a call that ends a function is not attributed to the
 * next one. Returns NULL if nothing is known. */
static const struct ksi_symbol *ksi_lookup(struct ksi_symcache *c, unsigned long long pc, int exact)
{
    if (!c->sym || !c->slots || !pc || (c->used + 1) * 2 > c->cap)
        return NULL;
    unsigned long long addr = exact ? pc : pc - 1;
    struct ksi_symslot *s = ksi_slot(c, addr + 1);
    if (!s->key) {
        s->key = addr + 1;
        c->used++;
        s->found = ksi_sym_lookup(c->sym, addr, 1, &s->s) == 0 || s->s.module[0];
        if (s->found && s->s.name[0] && !exact)
            s->s.offset += 1;   /* shown against PC itself */
    }
    return s->found ? &s->s : NULL;
}

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

static int ksi_build_graph(const struct ksi_dump *d, struct ksi_graph *g)
{
    if (ksi_graph_init(g, d->n) != 0)
        return -1;
    for (size_t i = 0; i < d->n; i++) {
        const struct ksi_thr *t = &d->v[i];
        if (t->wait[0] && t->has_owner)
            ksi_graph_add(g, t->tid, t->owner, t->wait, t->wait_obj);
    }
    return ksi_graph_cycles(g);
}

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

static void ksi_print_frame(int i, const struct ksi_frame *f)
{
    const struct ksi_symbol *s = f->sym;
    printf("  #%-2d 0x%016llx", i, f->pc);
    /* Without a symbol (a stripped library, no debug file), the module and
     * the address as the object's own: what addr2line -e takes. */
    if (s && s->name[0])
        printf(" %s+0x%llx", s->name, (unsigned long long)s->offset);
    else if (s && s->module[0])
        printf(" %s+0x%llx", s->module, (unsigned long long)s->module_offset);
    else
        printf(" ??");
    if (s && s->name[0] && s->module[0])
        printf(" (%s)", s->module);
    if (s && s->file[0])
        printf(" %s:%d", s->file, s->line);
    putchar('\n');
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

static void ksi_print_text(const struct ksi_opts *o, const struct ksi_dump *d,
                           const struct ksi_graph *g, long long us)
{
    size_t sel = 0;
    for (size_t i = 0; i < d->n; i++)
        sel += d->v[i].selected;
    printf("process %d: %zu thread%s, stacks taken in %.1f ms\n", (int)o->pid, sel,
           sel == 1 ? "" : "s", (double)us / 1000.0);
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
    json_object *frames = json_object_new_array();
    int nf = strcmp(t->via, "none") == 0 ? 0 : t->nframes;
    for (int i = 0; i < nf; i++)
        if (o->all || !ksi_is_shim(&t->frames[i]))
            json_object_array_add(frames, ksi_json_frame(&t->frames[i]));
    json_object_object_add(j, "frames", frames);
    json_object_object_add(j, "truncated", json_object_new_boolean(t->cut));
    return j;
}

static void ksi_print_json(const struct ksi_opts *o, const struct ksi_dump *d,
                           const struct ksi_graph *g, long long us)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "pid", json_object_new_int(o->pid));
    json_object_object_add(root, "capture_us", json_object_new_int64(us));
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

/* ---- The action ------------------------------------------------------- */

static void ksi_symbolize(struct ksi_dump *d, struct ksi_symcache *c)
{
    size_t total = 0;
    for (size_t i = 0; i < d->n; i++)
        total += (size_t)d->v[i].nframes + 1;
    if (ksi_cache_init(c, total) != 0)
        return;   /* addresses without names */
    for (size_t i = 0; i < d->n; i++) {
        struct ksi_thr *t = &d->v[i];
        if (strcmp(t->via, "none") == 0 && t->has_syscall && t->spc) {
            /* No stack: the pc the kernel shows stands in for frame #0. */
            free(t->frames);
            t->frames = calloc(1, sizeof *t->frames);
            t->nframes = t->frames ? 1 : 0;
            if (t->frames)
                t->frames[0] = (struct ksi_frame){t->spc, 1, NULL};
        }
        for (int k = 0; k < t->nframes; k++)
            t->frames[k].sym = ksi_lookup(c, t->frames[k].pc, t->frames[k].exact);
    }
}

int ksi_do_stack(const struct ksi_opts *o)
{
    struct ksi_client c;
    int rc = ksi_connect(o->pid, &c);
    if (rc != KSI_EXIT_OK)
        return rc;
    char req[128];
    int n = snprintf(req, sizeof req, "stack");
    if (o->tid)
        n += snprintf(req + n, sizeof req - (size_t)n, " tid=%d", (int)o->tid);
    if (o->timeout_set)
        snprintf(req + n, sizeof req - (size_t)n, " answer_ms=%d",
                 o->timeout_s * 1000 < 1 ? 1 : (int)(o->timeout_s * 1000));
    struct ksi_dump d = {0};
    struct ks_msg final;
    rc = ksi_request(&c, req, ksi_collect, &d, &final);
    ksi_close(&c);
    if (rc == KSI_EXIT_OK && strcmp(final.verb, "err") == 0)
        rc = ksi_reply_error(&final);
    if (rc == KSI_EXIT_OK && d.oom) {
        ksi_err("out of memory reading the reply");
        rc = KSI_EXIT_ERROR;
    }
    if (d.cut)
        ksi_err("process %d sent more than %d threads or %d frames: the rest is not shown",
                (int)o->pid, KSI_MAX_THREADS, KSI_MAX_FRAMES);
    struct ksi_symcache cache = {0};
    struct ksi_graph g = {0};
    if (rc == KSI_EXIT_OK) {
        int64_t us = 0;
        ks_msg_get_i64(&final, "us", 0, INT64_MAX, &us);
        cache.sym = ksi_sym_open(o->pid);
        ksi_symbolize(&d, &cache);
        if (ksi_build_graph(&d, &g) != 0) {
            ksi_err("out of memory building the wait-for graph");
            rc = KSI_EXIT_ERROR;
        } else if (o->json) {
            ksi_print_json(o, &d, &g, us);
        } else {
            ksi_print_text(o, &d, &g, us);
        }
    }
    ksi_graph_free(&g);
    ksi_sym_close(cache.sym);
    free(cache.slots);
    for (size_t i = 0; i < d.n; i++)
        free(d.v[i].frames);
    free(d.v);
    return rc;
}
