/* bench_scale: listing and dumping a process with many threads. Starts
 * bench_target sleepers N under the shim and times, in turns within each
 * round:
 *   list:   killshim-inject PID        next to  ps -L -p PID (no shim), and
 *                                               the bare /proc walk any lister
 *                                               pays: read every task's stat
 *   stacks: killshim-inject --stack    next to  gdb "thread apply all bt" and
 *                                               eu-stack -p (where installed)
 * Every tool's output is kept and its lines counted, so a run that failed or
 * printed a fraction of the threads is seen, not timed as fast. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"
#include "stats.h"

enum kb_tool { T_LIST, T_PS, T_PROC, T_STACK, T_GDB, T_EU, NTOOLS };

static const char *const kb_tool_name[NTOOLS] = {
    "killshim-inject PID", "ps -L -p PID", "/proc/PID/task/*/stat read",
    "killshim-inject --stack PID",
    "gdb thread apply all bt", "eu-stack -p PID",
};

struct kb_tool_res {
    struct kb_samples s;
    size_t lines;             /* output lines of the last good run */
    int reported;
};

static char kb_pid[16];
static const char *kb_injector;

static void kb_argv(enum kb_tool t, char **argv)
{
    int n = 0;
    switch (t) {
    case T_LIST: argv[n++] = (char *)kb_injector; break;
    case T_STACK: argv[n++] = (char *)kb_injector; argv[n++] = "--stack"; break;
    case T_PS:
        argv[n++] = "ps"; argv[n++] = "-L"; argv[n++] = "-o"; argv[n++] = "tid=,stat=,comm=";
        argv[n++] = "-p";
        break;
    case T_GDB:
        argv[n++] = "gdb"; argv[n++] = "-nx"; argv[n++] = "-q"; argv[n++] = "-batch";
        argv[n++] = "-iex"; argv[n++] = "set debuginfod enabled off";
        argv[n++] = "-ex"; argv[n++] = "thread apply all bt"; argv[n++] = "-p";
        break;
    case T_EU: argv[n++] = "eu-stack"; argv[n++] = "-p"; break;
    default: break;
    }
    argv[n++] = kb_pid;
    argv[n] = NULL;
}

/* The floor of a listing from outside: open and read every task's stat,
 * in this process (no exec), as the shim and ps both do at least once. */
static void kb_proc_walk(struct kb_tool_res *r)
{
    char path[64], buf[1024];
    uint64_t t0 = kb_now_ns();
    snprintf(path, sizeof path, "/proc/%s/task", kb_pid);
    DIR *d = opendir(path);
    if (!d) {
        r->s.failed++;
        return;
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "%.20s/stat", e->d_name);
        int fd = openat(dirfd(d), path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        n += read(fd, buf, sizeof buf) > 0;
        close(fd);
    }
    closedir(d);
    kb_add(&r->s, (double)(kb_now_ns() - t0));
    r->lines = n;
}

static void kb_time(enum kb_tool t, struct kb_tool_res *r)
{
    if (t == T_PROC) {
        kb_proc_walk(r);
        return;
    }
    char *argv[16];
    kb_argv(t, argv);
    struct kb_run run = {.capture = 1};
    if (kb_run(argv, &run) == 0) {
        kb_add(&r->s, (double)run.wall_ns);
        r->lines = kb_count_lines(run.out);
    } else {
        r->s.failed++;
        if (!r->reported)
            fprintf(stderr, "bench_scale: %s failed (status %d): %.300s\n", kb_tool_name[t],
                    WIFEXITED(run.status) ? WEXITSTATUS(run.status) : -1, run.err);
        r->reported = 1;
    }
    kb_run_free(&run);
}

static int kb_have(const char *prog)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

int main(int argc, char **argv)
{
    const char *shim = NULL, *target = NULL;
    long threads = 1000;
    int runs = 10, gdb_runs = 3, eu_runs = 3, stacks = 1, c;
    while ((c = getopt(argc, argv, "s:i:p:N:n:g:e:S")) != -1) {
        switch (c) {
        case 's': shim = optarg; break;
        case 'i': kb_injector = optarg; break;
        case 'p': target = optarg; break;
        case 'N': threads = atol(optarg); break;
        case 'n': runs = atoi(optarg); break;
        case 'g': gdb_runs = atoi(optarg); break;
        case 'e': eu_runs = atoi(optarg); break;
        case 'S': stacks = 0; break;
        default: goto usage;
        }
    }
    if (!shim || !kb_injector || !target || threads < 1 || runs < 1)
        goto usage;

    char nbuf[24];
    snprintf(nbuf, sizeof nbuf, "%ld", threads);
    char *targv[] = {(char *)target, "sleepers", nbuf, NULL};
    int to, from;
    pid_t pid = kb_start(targv, shim, &to, &from);
    char line[128];
    uint64_t t0 = kb_now_ns();
    if (pid < 0 || kb_read_line(from, line, sizeof line, 120000) < 0 ||
        strcmp(line, "ready") != 0) {
        fprintf(stderr, "bench_scale: the target did not start %ld threads\n", threads);
        return 1;
    }
    printf("  (target pid %d: %ld threads up in %.2f s)\n", (int)pid, threads,
           (double)(kb_now_ns() - t0) / 1e9);
    snprintf(kb_pid, sizeof kb_pid, "%d", (int)pid);

    struct kb_tool_res res[NTOOLS];
    memset(res, 0, sizeof res);
    /* gdb and eu-stack are baselines of the stack dump only. */
    int have_gdb = stacks && gdb_runs > 0 && kb_have("gdb");
    int have_eu = stacks && eu_runs > 0 && kb_have("eu-stack");
    kb_time(T_LIST, &res[T_LIST]);   /* warm-up: page cache, the shim's first connection */
    kb_free(&res[T_LIST].s);
    memset(&res[T_LIST], 0, sizeof res[T_LIST]);
    for (int i = 0; i < runs; i++) {
        int flip = i % 2;
        kb_time(flip ? T_PS : T_LIST, &res[flip ? T_PS : T_LIST]);
        kb_time(flip ? T_LIST : T_PS, &res[flip ? T_LIST : T_PS]);
        kb_time(T_PROC, &res[T_PROC]);
        if (stacks)
            kb_time(T_STACK, &res[T_STACK]);
    }
    for (int i = 0; i < gdb_runs || i < eu_runs; i++) {
        if (have_gdb && i < gdb_runs) kb_time(T_GDB, &res[T_GDB]);
        if (have_eu && i < eu_runs) kb_time(T_EU, &res[T_EU]);
    }
    close(to);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);

    for (int t = 0; t < NTOOLS; t++)
        if (res[t].s.n)
            printf("  output of %s: %zu lines\n", kb_tool_name[t], res[t].lines);
    char what[160];
    struct kb_target list_goal = {KB_GOAL_ABS_MAX, 100e6, "<= 100 ms"};
    struct kb_target stack_goal = {KB_GOAL_ABS_MAX, 60e6, "<= 60 ms"};
    snprintf(what, sizeof what, "list %ld threads: killshim-inject PID", threads);
    kb_row(what, KB_NS, kb_tool_name[T_LIST], &res[T_LIST].s, kb_tool_name[T_PS], &res[T_PS].s,
           threads >= 10000 ? &list_goal : NULL);
    kb_row(what, KB_NS, kb_tool_name[T_LIST], &res[T_LIST].s, kb_tool_name[T_PROC],
           &res[T_PROC].s, threads >= 10000 ? &list_goal : NULL);
    if (stacks) {
        const struct kb_target *g = threads == 1000 ? &stack_goal : NULL;
        snprintf(what, sizeof what, "stacks of %ld threads: killshim-inject --stack", threads);
        if (have_gdb)
            kb_row(what, KB_NS, kb_tool_name[T_STACK], &res[T_STACK].s, kb_tool_name[T_GDB], &res[T_GDB].s, g);
        if (have_eu)
            kb_row(what, KB_NS, kb_tool_name[T_STACK], &res[T_STACK].s, kb_tool_name[T_EU], &res[T_EU].s, g);
        if (!have_gdb && !have_eu)
            kb_row(what, KB_NS, kb_tool_name[T_STACK], &res[T_STACK].s, NULL, NULL, g);
    }
    /* For run.sh's plot: each tool's median at this thread count. */
    for (int t = 0; t < NTOOLS; t++) {
        struct kb_summary m;
        if (!res[t].s.n)
            continue;
        kb_summarize(&res[t].s, &m);
        printf("PLOT|%s|%ld|%.0f\n", kb_tool_name[t], threads, m.median);
    }
    for (int t = 0; t < NTOOLS; t++)
        kb_free(&res[t].s);
    return 0;
usage:
    fputs("usage: bench_scale -s SHIM -i KILLSHIM_INJECT -p BENCH_TARGET [-N THREADS] [-n RUNS]\n"
          "                   [-g GDB_RUNS] [-e EU_STACK_RUNS] [-S (no stacks, so no gdb or eu-stack)]\n",
          stderr);
    return 2;
}
