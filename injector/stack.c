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
#include "stack.h"
#include "injector.h"
#include "symbolize.h"
#include "syscalls.h"
#include "deadlock.h"

/* The reply is the target's to write: at most this much of it is kept (a
 * real dump is far smaller; past it, the rest is read and dropped, and the
 * deadline bounds how long that takes). */
#define KSI_MAX_THREADS (1 << 16)
#define KSI_MAX_FRAMES (1 << 20)    /* in all: 1M addresses, 24 MiB */
#define KSI_MAX_LOOKUPS (1 << 16)   /* distinct addresses named */

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
    int py = ksi_py_collect(m, d);
    if (py < 0)
        d->oom = 1;
    if (py)
        return py < 0;
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
    pid_t pid;
    int early;                /* SYM was opened before the reply came */
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

/* ---- The action ------------------------------------------------------- */

/* Returns how many frames no module holds. */
static size_t ksi_symbolize(struct ksi_dump *d, struct ksi_symcache *c)
{
    size_t total = 0, missed = 0;
    for (size_t i = 0; i < d->n; i++)
        total += (size_t)d->v[i].nframes + 1;
    if (ksi_cache_init(c, total) != 0)
        return 0;   /* addresses without names */
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
        for (int k = 0; k < t->nframes; k++) {
            t->frames[k].sym = ksi_lookup(c, t->frames[k].pc, t->frames[k].exact);
            missed += !t->frames[k].sym;
        }
    }
    return missed;
}

/* The symbolizer reads the target's whole map (two lines a thread) and
 * reports every module to libdwfl: done while the shim takes the stacks.
 * A frame in a module mapped after that read is not found in it; the dump
 * is then symbolized again from a fresh read (ksi_symbolize_all). */
static void ksi_stack_open_sym(void *ctx)
{
    struct ksi_symcache *c = ctx;
    if (!c->sym) {
        c->sym = ksi_sym_open(c->pid);
        c->early = 1;
    }
}

static void ksi_symbolize_all(struct ksi_dump *d, struct ksi_symcache *c)
{
    if (!c->sym)
        c->sym = ksi_sym_open(c->pid);
    if (ksi_symbolize(d, c) == 0 || !c->early)
        return;
    ksi_sym_close(c->sym);
    free(c->slots);
    c->slots = NULL;
    c->cap = c->used = 0;
    c->early = 0;
    c->sym = ksi_sym_open(c->pid);
    ksi_symbolize(d, c);
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
    struct ksi_symcache cache = {.pid = o->pid};
    c.on_sent = ksi_stack_open_sym;
    c.on_sent_ctx = &cache;
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
    struct ksi_graph g = {0};
    if (rc == KSI_EXIT_OK) {
        int64_t us = 0;
        ks_msg_get_i64(&final, "us", 0, INT64_MAX, &us);
        ksi_symbolize_all(&d, &cache);
        if (ksi_build_graph(&d, &g) != 0) {
            ksi_err("out of memory building the wait-for graph");
            rc = KSI_EXIT_ERROR;
        } else if (o->json) {
            ksi_stack_print_json(o, &d, &g, us);
        } else {
            ksi_stack_print_text(o, &d, &g, us);
        }
    }
    ksi_graph_free(&g);
    ksi_sym_close(cache.sym);
    free(cache.slots);
    for (size_t i = 0; i < d.n; i++) {
        free(d.v[i].frames);
        ksi_py_free(&d.v[i]);
    }
    free(d.v);
    return rc;
}
