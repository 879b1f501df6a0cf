/* bench_startup: what preloading costs a process that does nothing. Spawns
 * a command (default /bin/true) with posix_spawn and reaps it, under each
 * named variant of the environment, in rounds: every round runs each variant
 * N times back to back, the variants' order rotating from round to round, so
 * drift in the machine's load falls on all alike. A round's value is the
 * mean time per spawn+exit+reap; the row gives the best round (the least
 * disturbed), the median round with its IQR, the spread, and the median of
 * the rounds' ratios to the baseline's same round (with their IQR: the
 * figure a drift in the machine's load moves least).
 *
 *   bench_startup [-n N] [-r ROUNDS] [-c CMD] NAME=ENV[,ENV...] ...
 *
 * ENV is K=V ("LD_PRELOAD=/x.so,KILLSHIM_DISABLE=1") or "-" for none; the
 * first variant is the baseline the others are compared with. LD_PRELOAD
 * and KILLSHIM_* are removed from the inherited environment first. */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats.h"

extern char **environ;

#define KB_MAX_VARIANTS 8

struct kb_variant {
    char *name;
    char **env;
    struct kb_samples rounds;   /* ns per run, one value per round */
    struct kb_samples cpu;      /* the child's user+sys ns per run, per round */
    struct kb_samples ratio;    /* per round: rounds / the baseline's same round */
    struct kb_samples cpu_ratio;
};

static int kb_inherited(const char *e)
{
    return strncmp(e, "LD_PRELOAD=", 11) != 0 && strncmp(e, "KILLSHIM_", 9) != 0;
}

/* NAME=ENV[,ENV...] -> V. Returns 0 or -1. */
static int kb_parse_variant(char *spec, struct kb_variant *v)
{
    char *eq = strchr(spec, '=');
    if (!eq)
        return -1;
    *eq = '\0';
    v->name = spec;
    size_t n = 0, extra = 1;
    while (environ[n])
        n++;
    for (const char *p = eq + 1; *p; p++)
        extra += *p == ',';
    v->env = calloc(n + extra + 1, sizeof *v->env);
    if (!v->env)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (kb_inherited(environ[i]))
            v->env[k++] = environ[i];
    if (strcmp(eq + 1, "-") != 0)
        for (char *tok = strtok(eq + 1, ","); tok; tok = strtok(NULL, ","))
            v->env[k++] = tok;
    return 0;
}

/* Mean ns per run of N runs of ARGV with ENV; -1 if one failed. *CPU: the
 * children's mean user+sys time (wait4), which a loaded machine inflates far
 * less than the wall time. */
static double kb_round(char *const argv[], char **env, int n, double *cpu)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    double ret = -1;
    uint64_t t0 = kb_now_ns();
    double cpu_ns = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int st;
        struct rusage ru;
        if (posix_spawn(&pid, argv[0], &fa, NULL, argv, env) != 0)
            goto out;
        while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR)
            ;
        cpu_ns += (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
                  (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench_startup: %s exited with status %d\n", argv[0], st);
            goto out;
        }
    }
    ret = (double)(kb_now_ns() - t0) / n;
    *cpu = cpu_ns / n;
out:
    posix_spawn_file_actions_destroy(&fa);
    return ret;
}

/* RATIO gets each round of VS over the same round of BS (both still in
 * the order the rounds ran: before any kb_summarize sorts them). */
static void kb_ratios(const struct kb_samples *vs, const struct kb_samples *bs,
                      struct kb_samples *ratio)
{
    for (size_t r = 0; r < vs->n && r < bs->n; r++)
        kb_add(ratio, vs->v[r] / bs->v[r]);
}

/* One row: the best round (the least disturbed), the median round and its
 * IQR, the spread; against BASE's best, and the median of the rounds'
 * ratios to BASE's (RATIO) with its IQR. */
static void kb_print_one(const char *name, const struct kb_samples *vs, const struct kb_samples *bs,
                         struct kb_samples *ratio, const char *base_name)
{
    struct kb_summary s, b, q;
    kb_summarize((struct kb_samples *)vs, &s);
    kb_summarize((struct kb_samples *)bs, &b);
    char best[32], med[32], q1[32], q3[32], lo[32], hi[32], diff[32];
    kb_fmt(best, sizeof best, s.min, KB_NS);
    kb_fmt(med, sizeof med, s.median, KB_NS);
    kb_fmt(q1, sizeof q1, s.q1, KB_NS);
    kb_fmt(q3, sizeof q3, s.q3, KB_NS);
    kb_fmt(lo, sizeof lo, s.min, KB_NS);
    kb_fmt(hi, sizeof hi, s.max, KB_NS);
    kb_fmt(diff, sizeof diff, s.min - b.min, KB_NS);
    printf("%-14s best %10s  median %10s [IQR %s - %s]  rounds %s - %s (n=%zu)", name, best, med,
           q1, q3, lo, hi, s.n);
    if (base_name) {
        kb_summarize(ratio, &q);
        printf("\n%-14s vs %s: %.3fx best (%s%s); per round %.3fx [IQR %.3f - %.3f]", "", base_name,
               s.min / b.min, s.min >= b.min ? "+" : "", diff, q.median, q.q1, q.q3);
    }
    printf("\n");
}

static void kb_print(struct kb_variant *v, const struct kb_variant *base)
{
    kb_print_one(v->name, &v->rounds, &base->rounds, &v->ratio, v != base ? base->name : NULL);
}

static void kb_print_cpu(struct kb_variant *v, const struct kb_variant *base)
{
    kb_print_one(v->name, &v->cpu, &base->cpu, &v->cpu_ratio, v != base ? base->name : NULL);
}

int main(int argc, char **argv)
{
    int n = 300, rounds = 5, opt;
    char *cmd = "/bin/true";
    while ((opt = getopt(argc, argv, "n:r:c:")) != -1) {
        if (opt == 'n') n = atoi(optarg);
        else if (opt == 'r') rounds = atoi(optarg);
        else if (opt == 'c') cmd = optarg;
        else goto usage;
    }
    struct kb_variant v[KB_MAX_VARIANTS] = {0};
    int nv = 0;
    for (int i = optind; i < argc && nv < KB_MAX_VARIANTS; i++, nv++)
        if (kb_parse_variant(argv[i], &v[nv]) != 0)
            goto usage;
    if (nv == 0 || n <= 0 || rounds <= 0)
        goto usage;
    char *cargv[] = {cmd, NULL};
    double cpu;
    for (int i = 0; i < nv; i++)   /* warm the page cache and the loader's */
        if (kb_round(cargv, v[i].env, 10, &cpu) < 0)
            return 1;
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < nv; j++) {
            struct kb_variant *x = &v[(r + j) % nv];
            double ns = kb_round(cargv, x->env, n, &cpu);
            if (ns < 0)
                return 1;
            kb_add(&x->rounds, ns);
            kb_add(&x->cpu, cpu);
        }
    for (int i = 1; i < nv; i++) {
        kb_ratios(&v[i].rounds, &v[0].rounds, &v[i].ratio);
        kb_ratios(&v[i].cpu, &v[0].cpu, &v[i].cpu_ratio);
    }
    printf("posix_spawn+exit+waitpid of %s, %d rounds x %d runs, mean per run of each round:\n",
           cmd, rounds, n);
    for (int i = 0; i < nv; i++)
        kb_print(&v[i], &v[0]);
    printf("the same runs, the child's CPU time (user+sys, wait4), mean per run of each round:\n");
    for (int i = 0; i < nv; i++)
        kb_print_cpu(&v[i], &v[0]);
    return 0;
usage:
    fprintf(stderr, "usage: bench_startup [-n N] [-r ROUNDS] [-c CMD] NAME=K=V[,K=V...]|NAME=- ...\n");
    return 2;
}
