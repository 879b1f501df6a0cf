/* "list": every thread of the process, merged from /proc/self/task (all
 * threads, however created) and the registry (what the shim knows). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_python.h"
#include "commands.h"
#include "shim/core/ks.h"
#include "shim/common/procfs.h"
#include "pyrt.h"
#include "shim/core/attach.h"
#include "shim/core/blocking.h"
#include "shim/core/registry.h"
#include "list_walk.h"
#include "waitinfo.h"

struct ks_snap {
    pid_t tid;
    int role;
    int locks_held;
    int wait_kind;
    uint64_t id;
    uint64_t created_ns;
    void *start;
    void *wait_obj;
    struct ks_thread *rec;   /* valid while ks_registry_unlinks() is unchanged */
};

static int ks_snap_cmp(const void *a, const void *b)
{
    pid_t x = ((const struct ks_snap *)a)->tid, y = ((const struct ks_snap *)b)->tid;
    return (x > y) - (x < y);
}

/* Copies the registry under its lock; nothing slow happens while it is held,
 * so pthread_create never waits on a client. */
static struct ks_snap *ks_snapshot(int *n, unsigned *unlinks)
{
    ks_registry_lock();
    *unlinks = ks_registry_unlinks();
    int cap = ks_registry_count();
    struct ks_snap *s = calloc((size_t)cap + 1, sizeof *s);
    int k = 0;
    for (struct ks_thread *t = ks_registry_first(); s && t && k < cap; t = t->next, k++) {
        s[k].tid = t->tid;
        s[k].rec = t;
        s[k].role = t->role;
        s[k].id = t->id;
        s[k].start = t->start_routine;
        s[k].created_ns = t->created_ns;
        s[k].locks_held = __atomic_load_n(&t->locks_held, __ATOMIC_RELAXED);
        s[k].wait_kind = __atomic_load_n(&t->wait_kind, __ATOMIC_RELAXED);
        s[k].wait_obj = __atomic_load_n(&t->wait_obj, __ATOMIC_RELAXED);
    }
    ks_registry_unlock();
    if (s)
        qsort(s, (size_t)k, sizeof *s, ks_snap_cmp);
    *n = k;
    return s;
}

static const struct ks_snap *ks_snap_find(const struct ks_snap *snap, int n, pid_t tid)
{
    struct ks_snap key = {.tid = tid};
    return bsearch(&key, snap, (size_t)n, sizeof *snap, ks_snap_cmp);
}

/* How many rows ahead a row's record is fetched: its /proc reads take a few
 * microseconds a row, more than a fetch. */
#define KS_LIST_AHEAD 4

/* Fetches into the cache what ks_list_in_call will read of S's record and
 * block state. Each lives in its thread's TLS, at the top of a stack of its
 * own: a TLB and a cache miss a row, a third of the shim's own (user) time
 * in a listing of 10,000 threads. A prefetch never faults, so a record whose
 * thread has gone since the snapshot costs nothing; nothing is read from it
 * here (ks_list_in_call decides under the lock whether it may be). */
static void ks_list_prefetch(const struct ks_snap *s)
{
    if (!s || !s->rec)
        return;
    __builtin_prefetch(&s->rec->id);
    __builtin_prefetch(ks_block_of(s->rec));
}

/* A thread without a snapshot is foreign (a raw clone, a thread started
 * before a preloaded shim's constructor), or pre-attach: it was there when
 * the shim was attached to the running program (core/attach.h). */
static const char *ks_snap_role(const struct ks_snap *s, pid_t tid)
{
    return s ? ks_role_name(s->role) : ks_preattach_has(tid) ? "pre-attach" : "foreign";
}

/* The registry's fields of a thread: what is known without /proc. */
static void ks_list_known(struct ks_out *out, const struct ks_snap *s)
{
    ks_out_i64(out, "id", (int64_t)s->id);
    if (s->start)
        ks_out_hex(out, "start", (uint64_t)(uintptr_t)s->start);
    ks_out_i64(out, "locks", s->locks_held);
    if (s->wait_kind == KS_WAIT_MUTEX && s->wait_obj) {
        pid_t owner = ks_wait_owner(s->wait_kind, s->wait_obj);
        if (ks_wait_is_over(s->tid, owner, NULL))
            return;
        ks_out_hex(out, "wait_mutex", (uint64_t)(uintptr_t)s->wait_obj);
        if (owner != KS_OWNER_UNKNOWN)
            ks_out_i64(out, "wait_owner", owner);
    }
}

/* What one listing carries from row to row. */
struct ks_list_ctx {
    struct ks_task_dir dir;           /* /proc/self/task, opened once */
    unsigned long long uptime_ms;
    long hz;
    const struct ks_py_list_view *py;
    unsigned unlinks;                 /* ks_registry_unlinks() at the snapshot */
    /* The system call each wrapped blocking call (blocking.h) was seen in,
     * from /proc: once KS_LIST_LEARN rows in a row agreed, the other threads
     * sitting in the same call are not asked again. */
    struct { long nr; int agree; } call_nr[KS_CALL_COUNT];
};
#define KS_LIST_LEARN 3

/* The wrapped blocking call that registered thread S is in right now, or
 * KS_CALL_NONE. Its block state is read under the registry lock, where it
 * stays valid (registry.h); the record is looked up again only if some
 * thread left the registry since the snapshot (a lookup walks a chain of
 * records in as many threads' TLS: at 10,000 threads it cost as much as
 * reading the stat file). */
static int ks_list_in_call(const struct ks_snap *s, unsigned unlinks)
{
    int call = KS_CALL_NONE;
    ks_registry_lock();
    struct ks_thread *t = s->rec && ks_registry_unlinks() == unlinks ? s->rec
                        : ks_registry_find(s->tid);
    if (t && t->id == s->id) {
        struct ks_block *b = ks_block_of(t);
        if (__atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST))
            call = __atomic_load_n(&b->call, __ATOMIC_RELAXED);
    }
    ks_registry_unlock();
    return call > KS_CALL_NONE && call < KS_CALL_COUNT ? call : KS_CALL_NONE;
}

/* The system call a thread in STATE sits in: 0 and *NR, or -1 (none).
 * A running thread shows none in /proc either. A registered thread inside
 * one of the shim's wrapped calls gets the number its call was seen in
 * (docs/PROTOCOL.md: a signal handler that blocks in another call while the
 * wrapped one is interrupted is shown in the wrapped one). */
static int ks_list_syscall(struct ks_list_ctx *c, pid_t tid, const struct ks_snap *s, char state,
                           long *nr)
{
    if (state == 'R')
        return -1;
    int call = s ? ks_list_in_call(s, c->unlinks) : KS_CALL_NONE;
    if (call != KS_CALL_NONE && c->call_nr[call].agree >= KS_LIST_LEARN) {
        *nr = c->call_nr[call].nr;
        return 0;
    }
    struct ks_syscall sc;
    if (ks_task_dir_syscall(&c->dir, tid, &sc) != 0 || sc.nr < 0)
        return -1;
    if (call != KS_CALL_NONE) {
        int same = c->call_nr[call].agree && c->call_nr[call].nr == sc.nr;
        c->call_nr[call].agree = same ? c->call_nr[call].agree + 1 : 1;
        c->call_nr[call].nr = sc.nr;
    }
    *nr = sc.nr;
    return 0;
}

static void ks_list_one(struct ks_out *out, pid_t tid, const struct ks_snap *s,
                        struct ks_list_ctx *c)
{
    struct ks_taskstat st;
    if (ks_task_dir_stat(&c->dir, tid, &st) != 0)
        return;   /* exited while we listed: not a thread any more */
    unsigned long long hz = (unsigned long long)c->hz;
    char state[2] = {st.state, '\0'};
    ks_out_word(out, "thread");
    ks_out_i64(out, "tid", tid);
    ks_out_str(out, "name", st.comm);
    ks_out_str(out, "role", ks_snap_role(s, tid));
    ks_out_i64(out, "registered", s && s->role != KS_ROLE_SHIM);
    ks_out_str(out, "state", state);
    ks_out_i64(out, "cpu_ms", (int64_t)((st.utime + st.stime) * 1000 / hz));
    ks_out_i64(out, "age_ms", (int64_t)ks_age_ms(st.starttime, c->hz, c->uptime_ms));
    if (s)
        ks_list_known(out, s);
    long nr;
    if (ks_list_syscall(c, tid, s, st.state, &nr) == 0)
        ks_out_i64(out, "syscall", nr);
    ks_py_list_fields(out, c->py, tid, s ? s->wait_kind : 0, s ? s->wait_obj : NULL);
    ks_out_eol(out);
}

/* The tids in /proc/self/task, read before the registry is copied: a
 * thread created after the read is simply not listed, and one that left
 * the registry after it is recognised as exiting (ks_resolve_unknown). */
static pid_t *ks_task_tids(int *n) { return ks_read_ids("/proc/self/task", n); }

/* The registry's view of a task the snapshot did not know (see
 * ks_registry_settle): 1 and *OUT filled if it registered since, 0 if it is
 * foreign, -1 if it is on its way out (not listed). */
static int ks_resolve_unknown(pid_t tid, struct ks_snap *out)
{
    enum ks_settle v = ks_registry_settle(tid, ks_task_age_ms(tid));
    if (v == KS_SETTLE_EXITING)
        return -1;
    if (v == KS_SETTLE_FOREIGN)
        return 0;
    int found = 0;
    ks_registry_lock();
    struct ks_thread *t = ks_registry_find(tid);
    if (t) {
        memset(out, 0, sizeof *out);
        out->tid = tid;
        out->role = t->role;
        out->id = t->id;
        out->start = t->start_routine;
        out->locks_held = __atomic_load_n(&t->locks_held, __ATOMIC_RELAXED);
        found = 1;
    }
    ks_registry_unlock();
    return found ? 1 : -1;   /* gone again in between: it was short-lived */
}

/* Without /proc (a chroot that lacks it): the threads the registry knows,
 * with what it knows of them; foreign threads and /proc's columns (name,
 * state, cpu_ms, syscall) are missing, and the final line says so. */
static void ks_list_registry(struct ks_out *out)
{
    int n = 0;
    unsigned unlinks;
    struct ks_snap *snap = ks_snapshot(&n, &unlinks);
    if (!snap) {
        ks_out_err(out, "internal", "out of memory");
        return;
    }
    uint64_t now = ks_now_ns();
    for (int i = 0; i < n; i++) {
        ks_out_word(out, "thread");
        ks_out_i64(out, "tid", snap[i].tid);
        ks_out_str(out, "role", ks_snap_role(&snap[i], snap[i].tid));
        ks_out_i64(out, "registered", snap[i].role != KS_ROLE_SHIM);
        if (snap[i].created_ns)
            ks_out_i64(out, "age_ms", (int64_t)((now - snap[i].created_ns) / 1000000));
        ks_list_known(out, &snap[i]);
        ks_out_eol(out);
    }
    free(snap);
    ks_out_word(out, "ok");
    ks_out_i64(out, "count", n);
    ks_out_i64(out, "procfs", 0);
    ks_out_eol(out);
}

/* What every walker of one listing reads and none writes: the tids, the
 * registry's snapshot, each task's entry in it (NULL: none), CPython's view. */
struct ks_list_in {
    const pid_t *tids;
    const struct ks_snap *snap;
    const struct ks_snap **of;   /* NULL without memory: found row by row */
    int n;                       /* rows in snap */
};

/* Rows FROM..TO-1 of IN into OUT (each part handed on as it fills, where
 * OUT has a sink). Returns the rows written (tasks gone since are not). */
static int ks_list_range(struct ks_out *out, const struct ks_list_in *in, int from, int to,
                         struct ks_list_ctx *c)
{
    int count = 0;
    for (int i = from; i < to; i++) {
        struct ks_snap late;
        pid_t tid = in->tids[i];
        if (in->of && i + KS_LIST_AHEAD < to)
            ks_list_prefetch(in->of[i + KS_LIST_AHEAD]);
        const struct ks_snap *s = in->of ? in->of[i] : ks_snap_find(in->snap, in->n, tid);
        if (!s) {
            int v = ks_resolve_unknown(tid, &late);
            if (v < 0)
                continue;
            if (v > 0)
                s = &late;
        }
        size_t before = out->len;
        ks_list_one(out, tid, s, c);
        count += out->len != before;
        ks_out_part(out);   /* the client parses these while we go on */
    }
    return count;
}

/* Both walkers of one listing (list_walk.h): what they share, and each
 * one's own /proc/self/task fd and learned system call numbers, its fd
 * opened at its first chunk. */
struct ks_list_walkers {
    struct ks_list_in in;
    struct ks_list_ctx c[2];
    int opened[2];
};

static int ks_list_walk(void *arg, int who, struct ks_out *out, int from, int to)
{
    struct ks_list_walkers *w = arg;
    if (!w->opened[who]) {
        ks_task_dir_open(&w->c[who].dir);
        w->opened[who] = 1;
    }
    return ks_list_range(out, &w->in, from, to, &w->c[who]);
}

void ks_cmd_list(const struct ks_msg *req, struct ks_out *out)
{
    (void)req;
    int ntask = 0, n = 0;
    pid_t *tids = ks_task_tids(&ntask);
    if (!tids) {
        ks_list_registry(out);
        return;
    }
    unsigned unlinks;
    struct ks_snap *snap = ks_snapshot(&n, &unlinks);
    if (!snap) {
        free(tids);
        ks_out_err(out, "internal", "out of memory");
        return;
    }
    struct ks_list_ctx c;
    memset(&c, 0, sizeof c);
    c.hz = sysconf(_SC_CLK_TCK);
    if (c.hz <= 0)
        c.hz = 100;
    c.uptime_ms = ks_uptime_ms();
    c.unlinks = unlinks;
    struct ks_py_list_view py;
    ks_py_list_take(&py);   /* before the rows: what CPython knows, if it is here */
    c.py = &py;
    /* Each task's snapshot (NULL: none), found before the rows, so that the
     * records of the rows ahead can be fetched while the /proc reads of the
     * rows between run (ks_list_prefetch). Without memory for it: found
     * row by row, unfetched. */
    const struct ks_snap **of = malloc((size_t)ntask * sizeof *of + 1);
    for (int i = 0; of && i < ntask; i++)
        of[i] = ks_snap_find(snap, n, tids[i]);
    struct ks_list_walkers w = {.in = {tids, snap, of, n}, .c = {c, c}};
    int count = ks_walk_ordered(out, ntask, ks_list_walk, &w);
    for (int who = 0; who < 2; who++)   /* both walkers are through */
        if (w.opened[who])
            ks_task_dir_close(&w.c[who].dir);
    free(of);
    free(tids);
    free(snap);
    ks_out_word(out, "ok");
    ks_out_i64(out, "count", count);
    ks_py_list_final(out, &py);
    ks_out_eol(out);
}
