/* killshim-inject PID: one row per thread. */
#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "list.h"
#include "shim/common/procfs.h"
#include "injector.h"
#include "symbolize.h"
#include "syscalls.h"
#include "deadlock.h"

/* The reply is the target's to write: at most this many rows are kept. */
#define KSI_MAX_ROWS (1 << 16)

struct ksi_rows {
    struct ksi_row *v;
    size_t n, cap;
    int cut;   /* over KSI_MAX_ROWS: the rest was dropped */
    struct ksi_sym *sym;
    struct ksi_client *client;   /* whose proof's map text the symbolizer takes */
    pid_t pid;
    unsigned long long memo_addr;   /* the last start symbolized, and its text */
    char memo_start[256];
    int memo_whole;
};

static int ksi_row_cmp(const void *a, const void *b)
{
    long long x = ((const struct ksi_row *)a)->tid, y = ((const struct ksi_row *)b)->tid;
    return (x > y) - (x < y);
}

/* A row's fields, found in one pass: ten thousand rows asked for by name
 * (ks_msg_get, a strcmp per field per key) were a tenth of a listing. The
 * first of a repeated key counts, as with ks_msg_get. */
struct ksi_fields {
    const char *tid, *cpu_ms, *age_ms, *locks, *registered, *start, *wait_mutex, *wait_owner,
        *syscall, *py_ident, *py_name, *py_gil, *name, *role, *state;
};

static void ksi_fields_of(const struct ks_msg *m, struct ksi_fields *fv)
{
    static const struct { const char *key; size_t off; } keys[] = {
#define KSI_KEY(k) {#k, offsetof(struct ksi_fields, k)}
        KSI_KEY(tid), KSI_KEY(cpu_ms), KSI_KEY(age_ms), KSI_KEY(locks), KSI_KEY(registered),
        KSI_KEY(start), KSI_KEY(wait_mutex), KSI_KEY(wait_owner), KSI_KEY(syscall),
        KSI_KEY(py_ident), KSI_KEY(py_name), KSI_KEY(py_gil), KSI_KEY(name), KSI_KEY(role),
        KSI_KEY(state),
#undef KSI_KEY
    };
    memset(fv, 0, sizeof *fv);
    /* First bytes first: strcmp of every field with every key was a tenth
     * of the injector's time at 10,000 rows. */
    for (int f = 0; f < m->nfields; f++)
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (m->f[f].key[0] == keys[k].key[0] && strcmp(m->f[f].key, keys[k].key) == 0) {
                const char **slot = (const char **)((char *)fv + keys[k].off);
                if (!*slot)
                    *slot = m->f[f].val;
                break;
            }
}

static void ksi_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* START of row R, symbolized. Threads mostly share a few start routines:
 * the last answer is kept (a lookup in libdwfl walks the module's whole
 * symbol table). */
static void ksi_row_start(struct ksi_rows *rs, struct ksi_row *r)
{
    if (rs->memo_addr && rs->memo_addr == r->start_addr) {
        memcpy(r->start, rs->memo_start, sizeof r->start);
        r->start_whole = rs->memo_whole;
        return;
    }
    struct ksi_symbol sy;
    int found = rs->sym && ksi_sym_lookup(rs->sym, r->start_addr, 0, &sy) == 0;
    if (found)
        snprintf(r->start, sizeof r->start, "%s", sy.name);
    else if (rs->sym && sy.module[0]) {   /* a stripped object */
        snprintf(r->start, sizeof r->start, "%.200s+0x%llx", sy.module,
                 (unsigned long long)sy.module_offset);
        r->start_whole = 1;
    } else {
        snprintf(r->start, sizeof r->start, "0x%llx", r->start_addr);
    }
    rs->memo_addr = r->start_addr;
    memcpy(rs->memo_start, r->start, sizeof r->start);
    rs->memo_whole = r->start_whole;
}

static int ksi_collect(const struct ks_msg *m, void *ctx)
{
    struct ksi_rows *rs = ctx;
    if (strcmp(m->verb, "thread") != 0)
        return 0;   /* newer shims may send more record types: skip them */
    if (rs->n >= KSI_MAX_ROWS) {
        rs->cut = 1;   /* the target writes the reply: keep a bounded part */
        return 1;
    }
    struct ksi_row *v = ksi_grow(rs->v, rs->n, &rs->cap, sizeof *v);
    if (!v)
        return 1;
    rs->v = v;
    struct ksi_row *r = &rs->v[rs->n++];
    memset(r, 0, sizeof *r);
    struct ksi_fields fv;
    ksi_fields_of(m, &fv);
    int64_t x;
    uint64_t u;
    if (ks_val_i64(fv.tid, 1, 1LL << 31, &x) == 0) r->tid = x;
    if (ks_val_i64(fv.cpu_ms, 0, INT64_MAX, &x) == 0) r->cpu_ms = x;
    if (ks_val_i64(fv.age_ms, 0, INT64_MAX, &x) == 0) r->age_ms = x;
    if (ks_val_i64(fv.locks, 0, INT64_MAX, &x) == 0) r->locks = x;
    if (ks_val_i64(fv.registered, 0, 1, &x) == 0) r->registered = (int)x;
    if (ks_val_u64(fv.start, &u) == 0) r->start_addr = u;
    if (ks_val_u64(fv.wait_mutex, &u) == 0) r->wait_mutex = u;
    if (ks_val_i64(fv.wait_owner, 0, 1LL << 31, &x) == 0) r->wait_owner = x;
    r->syscall = ks_val_i64(fv.syscall, 0, 100000, &x) == 0 ? x : -1;
    r->python = fv.py_ident != NULL;
    ksi_copy(r->py_name, sizeof r->py_name, fv.py_name ? fv.py_name : "");
    ksi_copy(r->py_gil, sizeof r->py_gil, fv.py_gil ? fv.py_gil : "");
    ksi_copy(r->name, sizeof r->name, fv.name ? fv.name : "?");
    ksi_copy(r->role, sizeof r->role, fv.role ? fv.role : "?");
    ksi_copy(r->state, sizeof r->state, fv.state ? fv.state : "?");
    /* A shim without /proc (a chroot) sends no /proc columns: read ours. */
    struct ks_taskstat st;
    if (!fv.state && ks_read_task_stat(rs->pid, (pid_t)r->tid, &st) == 0) {
        long hz = sysconf(_SC_CLK_TCK);
        snprintf(r->name, sizeof r->name, "%s", st.comm);
        snprintf(r->state, sizeof r->state, "%c", st.state);
        r->cpu_ms = (long long)((st.utime + st.stime) * 1000 / (unsigned long long)(hz > 0 ? hz : 100));
        /* The main thread's age is the process's, which only /proc knows. */
        unsigned long long age = ks_age_ms(st.starttime, hz, ks_uptime_ms());
        if (!fv.age_ms && age)
            r->age_ms = (long long)age;
    }
    if (strcmp(r->role, "main") == 0)
        snprintf(r->start, sizeof r->start, "main");
    else if (r->start_addr)
        ksi_row_start(rs, r);
    return 0;
}

/* The deadlock cycles among the rows' mutex waits. Returns 0, or -1 out
 * of memory. */
static int ksi_list_graph(const struct ksi_rows *rs, struct ksi_graph *g)
{
    if (ksi_graph_init(g, rs->n) != 0)
        return -1;
    for (size_t i = 0; i < rs->n; i++) {
        const struct ksi_row *r = &rs->v[i];
        if (r->wait_mutex)
            ksi_graph_add(g, (long)r->tid, (long)r->wait_owner, "mutex", r->wait_mutex);
    }
    return ksi_graph_cycles(g);
}

/* Under the table, once, if a thread was there before an attach
 * (docs/attach.md). */
static void ksi_print_preattach_note(const struct ksi_rows *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->v[i].role, "pre-attach") == 0) {
            printf("pre-attach: started before the shim was attached; the locks they took "
                   "before it cannot be seen\n");
            return;
        }
}

static void ksi_print_table(const struct ksi_opts *o, const struct ksi_rows *rs,
                            const struct ksi_graph *g)
{
    size_t shown = 0, hidden = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (!o->all && strcmp(rs->v[i].role, "shim") == 0) hidden++;
        else shown++;
    }
    printf("process %d: %zu thread%s", (int)o->pid, shown, shown == 1 ? "" : "s");
    if (hidden)
        printf(" (+%zu killshim thread%s hidden; --all shows them)", hidden, hidden == 1 ? "" : "s");
    printf("\n%-8s %-16s %-24s %-5s %9s %9s  %-10s %s\n", "TID", "NAME", "START", "STATE",
           "CPU", "AGE", "KIND", "NOTE");
    for (size_t i = 0; i < rs->n; i++) {
        const struct ksi_row *r = &rs->v[i];
        if (!o->all && strcmp(r->role, "shim") == 0)
            continue;
        struct ksi_line l;
        ksi_row_text(r, &l);
        fwrite(l.b, 1, l.n, stdout);
    }
    ksi_print_preattach_note(rs);
    for (int i = 0; i < g->ncycles; i++) {
        char buf[4096];
        ksi_cycle_text(g->edges, &g->cycles[i], buf, sizeof buf);
        printf("%s\n", buf);
    }
}

static void ksi_print_json(const struct ksi_opts *o, const struct ksi_rows *rs,
                           const struct ksi_graph *g)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "pid", json_object_new_int(o->pid));
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < rs->n; i++) {
        const struct ksi_row *r = &rs->v[i];
        json_object *t = json_object_new_object();
        json_object_object_add(t, "tid", json_object_new_int64(r->tid));
        json_object_object_add(t, "name", json_object_new_string(r->name));
        json_object_object_add(t, "role", json_object_new_string(r->role));
        json_object_object_add(t, "registered", json_object_new_boolean(r->registered));
        json_object_object_add(t, "state", json_object_new_string(r->state));
        json_object_object_add(t, "cpu_ms", json_object_new_int64(r->cpu_ms));
        json_object_object_add(t, "age_ms", json_object_new_int64(r->age_ms));
        json_object_object_add(t, "start", r->start[0] ? json_object_new_string(r->start) : NULL);
        /* null: not known (a pre-attach thread's locks were taken unseen). */
        json_object_object_add(t, "locks_held", strcmp(r->role, "pre-attach") == 0
                               ? NULL : json_object_new_int64(r->locks));
        json_object_object_add(t, "waiting_for_mutex", r->wait_mutex ? ksi_json_hex(r->wait_mutex) : NULL);
        json_object_object_add(t, "waiting_for_owner",
                               r->wait_mutex && r->wait_owner > 0 ? json_object_new_int64(r->wait_owner) : NULL);
        const char *sc = r->syscall >= 0 ? ksi_syscall_name(r->syscall) : NULL;
        json_object_object_add(t, "syscall", sc ? json_object_new_string(sc) : NULL);
        json_object_object_add(t, "python", json_object_new_boolean(r->python));
        json_object_object_add(t, "python_name", r->py_name[0] ? json_object_new_string(r->py_name) : NULL);
        json_object_object_add(t, "python_gil", r->py_gil[0] ? json_object_new_string(r->py_gil) : NULL);
        json_object_array_add(arr, t);
    }
    json_object_object_add(root, "threads", arr);
    json_object *dl = json_object_new_array();
    for (int i = 0; i < g->ncycles; i++)
        json_object_array_add(dl, ksi_json_cycle(g, &g->cycles[i], 0));
    json_object_object_add(root, "deadlocks", dl);
    puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
}

/* The symbolizer takes the target's whole map (two lines a thread, of
 * which it keeps only the files' lines) as the access proof read it a
 * moment before (one read of 1 MB at 10,000 threads, not two), or reads
 * it if there is none: done while the shim builds the first part of its
 * reply. */
static void ksi_open_sym(void *ctx)
{
    struct ksi_rows *rs = ctx;
    if (rs->sym)
        return;
    char *maps = rs->client->maps;
    rs->client->maps = NULL;
    rs->sym = ksi_sym_open_files(rs->pid, maps, rs->client->maps_len);
    free(maps);
}

int ksi_do_list(const struct ksi_opts *o)
{
    struct ksi_client c;
    int rc = ksi_connect(o->pid, &c);
    if (rc != KSI_EXIT_OK)
        return rc;
    struct ksi_rows rs = {0};
    rs.pid = o->pid;
    rs.client = &c;
    c.keep_maps = 1;
    c.on_sent = ksi_open_sym;
    c.on_sent_ctx = &rs;
    struct ks_msg final;
    rc = ksi_request(&c, "list", ksi_collect, &rs, &final);
    ksi_close(&c);
    if (rc == KSI_EXIT_OK && strcmp(final.verb, "err") == 0)
        rc = ksi_reply_error(&final);
    /* CPython was not asked (the GIL busy): the rows are the native ones. */
    if (rc == KSI_EXIT_OK && ks_msg_get(&final, "python_why"))
        ksi_err("process %d: Python threads not named: %s", (int)o->pid,
                ks_msg_get(&final, "python_why"));
    if (rs.cut)
        ksi_err("process %d sent more than %d threads: the rest is not shown", (int)o->pid,
                KSI_MAX_ROWS);
    struct ksi_graph g = {0};
    if (rc == KSI_EXIT_OK) {
        qsort(rs.v, rs.n, sizeof *rs.v, ksi_row_cmp);
        if (ksi_list_graph(&rs, &g) != 0) {
            ksi_err("out of memory building the wait-for graph");
            rc = KSI_EXIT_ERROR;
        } else if (o->json) {
            ksi_print_json(o, &rs, &g);
        } else {
            ksi_print_table(o, &rs, &g);
        }
    }
    ksi_graph_free(&g);
    ksi_sym_close(rs.sym);
    free(rs.v);
    return rc;
}
