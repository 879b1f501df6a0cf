/* bench_act: speed of acting. Ends threads of a running target
 * (bench_target act, under the shim) with killshim-inject and, side by side
 * in the same run, with gdb, and measures for each
 *   - start to thread gone: from the tool's start until the thread has left
 *     /proc, polled every 50 µs while the tool runs (gdb's thread leaves
 *     after gdb detaches; ours may leave long before the injector has
 *     printed its report);
 *   - start to the tool's exit, report included;
 *   - how long the target's other threads were held up: the largest gap of
 *     its 1 ms heartbeat over the acting window (start to gone) and over the
 *     tool's whole run, next to an idle 5 ms window's (with a busy thread
 *     alive, for the busy victims).
 * The methods take turns within each round, so drift hits them alike. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"
#include "stats.h"

enum kb_method { KS_CANCEL, KS_ABORT, GDB_CANCEL, GDB_ABORT, IDLE, IDLE_BUSY, NMETHODS };

static const char *const kb_method_name[NMETHODS] = {
    "killshim-inject -m cancel", "killshim-inject -m abort",
    "gdb: call pthread_cancel", "gdb: async cancel", "idle window",
    "idle window, busy thread alive",
};

struct kb_target_proc {
    pid_t pid;
    int to, from;
};

struct kb_result {
    struct kb_samples gone, done;  /* start to thread gone; start to tool's exit */
    struct kb_samples gap_act;     /* heartbeat's largest gap, start to gone */
    struct kb_samples gap_all;     /* the same, start to the tool's exit */
    int failed, reported;
};

static const char *kb_injector;
static char kb_busy_text[64];
static const char *kb_suffix = "";

/* WHAT with the load it was measured under, for the rows. */
static const char *kb_what(const char *what)
{
    static char buf[8][256];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s%s", what, kb_suffix);
    return b;
}

static int kb_ask(struct kb_target_proc *t, const char *cmd, char *reply, size_t cap)
{
    size_t len = strlen(cmd);
    if (write(t->to, cmd, len) != (ssize_t)len)
        return -1;
    return kb_read_line(t->from, reply, cap, 10000) < 0 ? -1 : 0;
}

static int kb_task_alive(pid_t pid, pid_t tid)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/task/%d", (int)pid, (int)tid);
    return stat(path, &st) == 0;
}

/* Polls until TID leaves PID, for at most MS. Returns 0 when gone. */
static int kb_wait_gone(pid_t pid, pid_t tid, int ms)
{
    uint64_t deadline = kb_now_ns() + (uint64_t)ms * 1000000u;
    for (;;) {
        if (!kb_task_alive(pid, tid))
            return 0;
        if (kb_now_ns() >= deadline)
            return -1;
        usleep(50);
    }
}

struct kb_watch {
    pid_t pid, tid;
    uint64_t gone_at;         /* 0 until seen gone */
};

static void kb_watch_tick(void *ctx, uint64_t t0)
{
    struct kb_watch *w = ctx;
    (void)t0;
    if (!w->gone_at && !kb_task_alive(w->pid, w->tid))
        w->gone_at = kb_now_ns();
}

static int kb_build_argv(enum kb_method m, pid_t pid, pid_t tid, unsigned long handle,
                         char bufs[][160], char **argv)
{
    int n = 0;
    snprintf(bufs[0], 160, "%d", (int)pid);
    snprintf(bufs[1], 160, "%d", (int)tid);
    if (m == KS_CANCEL || m == KS_ABORT) {
        argv[n++] = (char *)kb_injector;
        argv[n++] = "-m";
        argv[n++] = m == KS_CANCEL ? "cancel" : "abort";
        argv[n++] = "-t";
        argv[n++] = "5";
        argv[n++] = bufs[0];
        argv[n++] = bufs[1];
    } else {
        argv[n++] = "gdb";
        argv[n++] = "-nx";
        argv[n++] = "-q";
        argv[n++] = "-batch";
        argv[n++] = "-iex";
        argv[n++] = "set debuginfod enabled off";
        argv[n++] = "-p";
        argv[n++] = bufs[0];
        if (m == GDB_ABORT) {
            /* A thread in a CPU loop never reaches a cancellation point:
             * switch it to asynchronous cancellation from inside, then
             * cancel it from the main thread. */
            snprintf(bufs[2], 160,
                     "python [t.switch() for t in gdb.selected_inferior().threads()"
                     " if t.ptid[1] == %d]", (int)tid);
            argv[n++] = "-ex";
            argv[n++] = bufs[2];
            argv[n++] = "-ex";
            argv[n++] = "call (int)pthread_setcanceltype(1, 0)";
            argv[n++] = "-ex";
            argv[n++] = "thread 1";
        }
        snprintf(bufs[3], 160, "call (int)pthread_cancel(%lu)", handle);
        argv[n++] = "-ex";
        argv[n++] = bufs[3];
    }
    argv[n] = NULL;
    return n;
}

static void kb_fail(struct kb_result *r, enum kb_method m, const char *why)
{
    r->failed++;
    r->gone.failed = r->done.failed = r->failed;
    if (!r->reported)
        fprintf(stderr, "bench_act: %s failed: %s\n", kb_method_name[m], why);
    r->reported = 1;
}

static int kb_gap(struct kb_target_proc *t, uint64_t t0, uint64_t t1, double *gap)
{
    char cmd[96], reply[128];
    unsigned long long g;
    snprintf(cmd, sizeof cmd, "gap %llu %llu\n", (unsigned long long)t0, (unsigned long long)t1);
    if (kb_ask(t, cmd, reply, sizeof reply) || sscanf(reply, "gap %llu", &g) != 1)
        return -1;
    *gap = (double)g;
    return 0;
}

/* One operation: start a victim, end it with method M, measure. */
static void kb_once(struct kb_target_proc *t, enum kb_method m, struct kb_result *r)
{
    char reply[256], cmd[64];
    double g;
    if (m == IDLE || m == IDLE_BUSY) {
        /* The busy victim's own CPU use delays the heartbeat on a small
         * machine: the abort's hold-up is compared with a window that has
         * one too. */
        pid_t tid = 0;
        if (m == IDLE_BUSY && (kb_ask(t, "busy\n", reply, sizeof reply) ||
                               sscanf(reply, "victim %d", &tid) != 1)) {
            kb_fail(r, m, "the target did not start a victim");
            return;
        }
        /* Poll /proc as during an operation: the poller's own CPU use is
         * then on both sides. */
        uint64_t t0 = kb_now_ns();
        while (kb_now_ns() - t0 < 5000000u) {
            kb_task_alive(t->pid, t->pid);
            usleep(50);
        }
        if (kb_gap(t, t0, kb_now_ns(), &g) == 0) {
            kb_add(&r->gap_act, g);
            kb_add(&r->gap_all, g);
        }
        if (tid) {
            snprintf(cmd, sizeof cmd, "release %d\n", (int)tid);
            kb_ask(t, cmd, reply, sizeof reply);
            kb_wait_gone(t->pid, tid, 2000);
        }
        return;
    }
    struct kb_watch w = {.pid = t->pid};
    unsigned long handle = 0;
    if (kb_ask(t, m == KS_CANCEL || m == GDB_CANCEL ? "blocked\n" : "busy\n", reply,
               sizeof reply) ||
        sscanf(reply, "victim %d %lu", &w.tid, &handle) != 2) {
        kb_fail(r, m, "the target did not start a victim");
        return;
    }
    char bufs[4][160], *argv[32], why[600] = "";
    kb_build_argv(m, t->pid, w.tid, handle, bufs, argv);
    struct kb_run run = {.capture = 1, .tick = kb_watch_tick, .tick_ctx = &w};
    int ok = kb_run(argv, &run) == 0;
    uint64_t t0 = run.t0, exited = t0 + run.wall_ns;
    if (!ok)
        snprintf(why, sizeof why, "exit status %d: %s",
                 WIFEXITED(run.status) ? WEXITSTATUS(run.status) : -1, run.err);
    kb_run_free(&run);
    if (ok && !w.gone_at) {
        if (kb_wait_gone(t->pid, w.tid, 5000) == 0)
            w.gone_at = kb_now_ns();
        else
            snprintf(why, sizeof why, "thread %d still there 5 s after the tool returned",
                     (int)w.tid);
        ok = w.gone_at != 0;
    }
    if (!ok) {
        kb_fail(r, m, why);
        snprintf(cmd, sizeof cmd, "release %d\n", (int)w.tid);
        kb_ask(t, cmd, reply, sizeof reply);
        kb_wait_gone(t->pid, w.tid, 2000);
        return;
    }
    uint64_t done = exited > w.gone_at ? exited : w.gone_at;
    kb_add(&r->gone, (double)(w.gone_at - t0));
    kb_add(&r->done, (double)(done - t0));
    if (kb_gap(t, t0, w.gone_at, &g) == 0)
        kb_add(&r->gap_act, g);
    if (kb_gap(t, t0, done, &g) == 0)
        kb_add(&r->gap_all, g);
}

/* The shim's control socket is up once a plain listing succeeds. */
static int kb_wait_control(pid_t pid)
{
    char p[16];
    snprintf(p, sizeof p, "%d", (int)pid);
    char *argv[] = {(char *)kb_injector, p, NULL};
    for (int i = 0; i < 100; i++) {
        struct kb_run run = {.capture = 1};
        int rc = kb_run(argv, &run);
        kb_run_free(&run);
        if (rc == 0)
            return 0;
        usleep(50000);
    }
    return -1;
}

/* Starts the target under the shim, with BUSY spinning threads. */
static int kb_target_up(struct kb_target_proc *t, const char *target, const char *shim, long busy)
{
    char *targv[] = {(char *)target, "act", NULL};
    char line[256];
    t->pid = kb_start(targv, shim, &t->to, &t->from);
    if (t->pid < 0 || kb_read_line(t->from, line, sizeof line, 10000) < 0 ||
        strcmp(line, "ready") != 0) {
        fprintf(stderr, "bench_act: the target did not start\n");
        return -1;
    }
    if (kb_wait_control(t->pid) != 0)
        fprintf(stderr, "bench_act: killshim-inject cannot list the target\n");
    char spin[32];
    snprintf(spin, sizeof spin, "spin %ld\n", busy);
    if (busy > 0 && (kb_ask(t, spin, line, sizeof line) || strcmp(line, "ok") != 0)) {
        fprintf(stderr, "bench_act: the target did not start %ld busy threads\n", busy);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *shim = NULL, *target = NULL;
    int runs = 10, gdb = 1, c;
    long busy = 0;
    while ((c = getopt(argc, argv, "s:i:p:n:Gb:")) != -1) {
        switch (c) {
        case 's': shim = optarg; break;
        case 'i': kb_injector = optarg; break;
        case 'p': target = optarg; break;
        case 'n': runs = atoi(optarg); break;
        case 'G': gdb = 0; break;
        case 'b': busy = atol(optarg); break;
        default: goto usage;
        }
    }
    if (!shim || !kb_injector || !target || runs < 1)
        goto usage;

    signal(SIGPIPE, SIG_IGN);
    snprintf(kb_busy_text, sizeof kb_busy_text, ", %ld other threads busy", busy);
    kb_suffix = busy > 0 ? kb_busy_text : "";
    struct kb_target_proc t;
    if (kb_target_up(&t, target, shim, busy) != 0)
        return 1;

    struct kb_result res[NMETHODS];
    memset(res, 0, sizeof res);
    int gdb_dead = 0;
    for (int i = 0; i < runs; i++) {
        for (int k = 0; k < NMETHODS; k++) {
            enum kb_method m = (enum kb_method)((i + k) % NMETHODS);
            if ((!gdb || gdb_dead) && (m == GDB_CANCEL || m == GDB_ABORT))
                continue;
            kb_once(&t, m, &res[m]);
            /* gdb can leave the target dead ("Couldn't write extended
             * state status" on some VMs): gdb's rows stop there (their
             * failures are counted), a fresh target serves the others. */
            if (kill(t.pid, 0) == 0 && waitpid(t.pid, NULL, WNOHANG) == 0)
                continue;
            fprintf(stderr, "bench_act: the target died after %s: gdb left out from here\n",
                    kb_method_name[m]);
            waitpid(t.pid, NULL, 0);
            close(t.to);
            close(t.from);
            gdb_dead = 1;
            if (kb_target_up(&t, target, shim, busy) != 0)
                return 1;
        }
    }
    close(t.to);
    kill(t.pid, SIGKILL);
    waitpid(t.pid, NULL, 0);

    struct kb_target five_ms = {KB_GOAL_ABS_MAX, 5e6, "median <= 5 ms"};
    struct kb_target none = {KB_GOAL_DIFF_MAX, 1e6, "none (<= idle + 1 ms)"};
    const char *gc = kb_method_name[GDB_CANCEL], *ga = kb_method_name[GDB_ABORT];
    struct kb_result *kc = &res[KS_CANCEL], *ka = &res[KS_ABORT], *idle = &res[IDLE];
    struct kb_result *idleb = &res[IDLE_BUSY];
    const char *ib = kb_method_name[IDLE_BUSY];
    struct kb_result *dc = gdb ? &res[GDB_CANCEL] : NULL, *da = gdb ? &res[GDB_ABORT] : NULL;
    kb_row(kb_what("end a blocked thread (-m cancel): start to thread gone"), KB_NS,
           kb_method_name[KS_CANCEL], &kc->gone, gc, dc ? &dc->gone : NULL, &five_ms);
    kb_row(kb_what("end a blocked thread (-m cancel): start to the tool's exit, report printed"), KB_NS,
           kb_method_name[KS_CANCEL], &kc->done, gc, dc ? &dc->done : NULL, NULL);
    kb_row(kb_what("end a busy thread (-m abort): start to thread gone"), KB_NS,
           kb_method_name[KS_ABORT], &ka->gone, ga, da ? &da->gone : NULL, &five_ms);
    kb_row(kb_what("end a busy thread (-m abort): start to the tool's exit, report printed"), KB_NS,
           kb_method_name[KS_ABORT], &ka->done, ga, da ? &da->done : NULL, NULL);
    kb_row(kb_what("other threads held up while acting (heartbeat's largest gap, start to gone): -m cancel"),
           KB_NS, kb_method_name[KS_CANCEL], &kc->gap_act, kb_method_name[IDLE], &idle->gap_act,
           &none);
    kb_row(kb_what("other threads held up while acting (heartbeat's largest gap, start to gone): -m abort"),
           KB_NS, kb_method_name[KS_ABORT], &ka->gap_act, ib, &idleb->gap_act, &none);
    kb_row(kb_what("other threads held up over the injector's whole run: -m cancel"), KB_NS,
           kb_method_name[KS_CANCEL], &kc->gap_all, kb_method_name[IDLE], &idle->gap_all, NULL);
    kb_row(kb_what("other threads held up over the injector's whole run: -m abort"), KB_NS,
           kb_method_name[KS_ABORT], &ka->gap_all, ib, &idleb->gap_all, NULL);
    if (gdb) {
        kb_row(kb_what("other threads held up while acting (start to gone): gdb pthread_cancel"), KB_NS,
               gc, &dc->gap_act, kb_method_name[IDLE], &idle->gap_act, NULL);
        kb_row(kb_what("other threads held up while acting (start to gone): gdb async cancel"), KB_NS,
               ga, &da->gap_act, ib, &idleb->gap_act, NULL);
    }
    for (int m = 0; m < NMETHODS; m++) {
        kb_free(&res[m].gone);
        kb_free(&res[m].done);
        kb_free(&res[m].gap_act);
        kb_free(&res[m].gap_all);
    }
    return 0;
usage:
    fputs("usage: bench_act -s SHIM -i KILLSHIM_INJECT -p BENCH_TARGET [-n RUNS] [-G (no gdb)] [-b BUSY_THREADS]\n",
          stderr);
    return 2;
}
