/* bench_pair: the carrying cost of the shim where it is a few percent of a
 * few microseconds, on a machine shared with other work.
 *
 * bench_ab runs whole processes one after another, seconds apart; here the
 * load of the other tenants changes faster than that, and a 3% difference
 * drowns (thread create+join: a spread ten times the difference). So each
 * side is one long-lived server (bench_work serve-threads N and the like:
 * a batch per byte on stdin, its value per line on stdout), the baseline
 * without LD_PRELOAD and one per shim given, all pinned to the same CPUs
 * (-c: the driver pins itself and they inherit it). A round asks each side
 * for one batch of a few milliseconds (after one thrown away, -p), in an
 * order shuffled every round (kp_order says why not ABBA), and the value
 * that counts is each side's batch over the baseline's batch of the same
 * round: the two met about the same load.
 * Printed per side: its batches (median, IQR, range) beside the baseline's,
 * the per-round ratios as a row of their own (median, IQR, range; the
 * target, -r, is the first side's), and the ratio of the fastest tenths. */
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"
#include "stats.h"

#define KP_MAX 6   /* sides besides the baseline */

static const char kp_usage[] =
    "usage: bench_pair -s [NAME=]SHIM [-s ...] -l WHAT [-n ROUNDS] [-e EPOCHS] [-W WARMUP]\n"
    "                  [-p PRIME]\n"
    "                  [-c CPU,...]\n"
    "                  [-T TARGET_TEXT -r MAX_RATIO] -- CMD [ARGS...]\n";

struct kp_side {
    const char *name, *preload;   /* preload NULL: the baseline */
    pid_t pid;
    int to, from;
    struct kb_samples v, ratio;
};

static int kp_pin(const char *list)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (const char *p = list; *p;) {
        char *end;
        long c = strtol(p, &end, 10);
        if (end == p || c < 0 || c >= CPU_SETSIZE)
            return -1;
        CPU_SET((int)c, &set);
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return sched_setaffinity(0, sizeof set, &set);
}

/* One batch of side S; -1 if it failed (the run is then worthless). */
static int kp_batch(struct kp_side *s, double *out)
{
    char line[128], *end;
    if (write(s->to, "x", 1) != 1 || kb_read_line(s->from, line, sizeof line, 60000) < 0)
        return -1;
    *out = strtod(line, &end);
    return end == line ? -1 : 0;
}

static void kp_stop(struct kp_side *s, int n)
{
    for (int i = 0; i < n; i++) {
        if (s[i].pid <= 0)
            continue;
        close(s[i].to);   /* EOF: the server leaves */
        close(s[i].from);
        waitpid(s[i].pid, NULL, 0);
    }
}

/* The order of a round: a fresh shuffle each round (a fixed seed, so runs
 * are alike). A fixed order, even reversed every round, let a side always
 * follow another process's batch while the others sometimes followed their
 * own: the side that never did paid for the switch (caches, TLBs) and came
 * out 3-5% slower than the same library in another position. */
static void kp_order(int *o, int n, unsigned *seed)
{
    for (int i = 0; i < n; i++)
        o[i] = i;
    for (int i = n - 1; i > 0; i--) {
        *seed = *seed * 1103515245u + 12345u;
        int j = (int)((*seed >> 16) % (unsigned)(i + 1)), t = o[i];
        o[i] = o[j];
        o[j] = t;
    }
}

/* Rounds; returns 0, or -1 if a side failed. Each side's turn is PRIME
 * batches thrown away, then the one that counts: what it measures is the
 * program running, not the program coming back after another one ran. */
static int kp_rounds(struct kp_side *s, int n, int rounds, int warmup, int prime,
                     unsigned *seed)
{
    double v[KP_MAX + 1], junk;
    int o[KP_MAX + 1];
    for (int r = -warmup; r < rounds; r++) {
        kp_order(o, n, seed);
        for (int k = 0; k < n; k++) {
            int i = o[k], bad = 0;
            for (int p = 0; p < prime; p++)
                bad |= kp_batch(&s[i], &junk);
            if (bad || kp_batch(&s[i], &v[i]) != 0) {
                fprintf(stderr, "bench_pair: %s failed\n", s[i].name);
                return -1;
            }
        }
        if (r < 0)
            continue;
        for (int i = 0; i < n; i++) {
            kb_add(&s[i].v, v[i]);
            if (i > 0 && v[0] > 0)
                kb_add(&s[i].ratio, v[i] / v[0]);
        }
    }
    return 0;
}

/* One epoch: every side a fresh process, ROUNDS rounds, then they leave.
 * A process's own layout (where ASLR put its stacks, heap and libraries,
 * which cache sets they share) makes it a few percent faster or slower than
 * its twin for its whole life: the empty library came out 0.975x in one
 * run and 1.027x in the next. Over several epochs that averages out. */
static int kp_epoch(struct kp_side *side, int n, char **argv, int rounds, int warmup,
                    int prime, unsigned *seed)
{
    for (int i = 0; i < n; i++) {
        side[i].pid = kb_start(argv, side[i].preload, &side[i].to, &side[i].from);
        if (side[i].pid < 0) {
            fprintf(stderr, "bench_pair: cannot start %s\n", argv[0]);
            kp_stop(side, i);
            return -1;
        }
    }
    int rc = kp_rounds(side, n, rounds, warmup, prime, seed);
    kp_stop(side, n);
    return rc;
}

int main(int argc, char **argv)
{
    struct kp_side side[KP_MAX + 1] = {{.name = "without shim"}};
    int n = 1, rounds = 200, warmup = 5, prime = 1, epochs = 10, c;
    const char *what = NULL, *cpus = NULL;
    struct kb_target t = {.goal = KB_GOAL_NONE};
    while ((c = getopt(argc, argv, "s:l:n:e:W:p:c:T:r:")) != -1) {
        switch (c) {
        case 's': {
            if (n > KP_MAX) { fputs(kp_usage, stderr); return 2; }
            char *eq = strchr(optarg, '=');
            side[n].name = eq ? (*eq = '\0', optarg) : "with the shim";
            side[n++].preload = eq ? eq + 1 : optarg;
            break;
        }
        case 'l': what = optarg; break;
        case 'n': rounds = atoi(optarg); break;
        case 'e': epochs = atoi(optarg); break;
        case 'W': warmup = atoi(optarg); break;
        case 'p': prime = atoi(optarg); break;
        case 'c': cpus = optarg; break;
        case 'T': t.text = optarg; break;
        case 'r': t.goal = KB_GOAL_ABS_MAX; t.limit = strtod(optarg, NULL); break;
        default: fputs(kp_usage, stderr); return 2;
        }
    }
    if (n < 2 || !what || optind >= argc || rounds < 1 || warmup < 0 || prime < 0 ||
        epochs < 1 || epochs > rounds) {
        fputs(kp_usage, stderr);
        return 2;
    }
    if (cpus && kp_pin(cpus) != 0) {
        fprintf(stderr, "bench_pair: cannot pin to CPUs %s\n", cpus);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    unsigned seed = 1;
    for (int e = 0; e < epochs; e++)
        if (kp_epoch(side, n, argv + optind, rounds / epochs + (e < rounds % epochs), warmup,
                     prime, &seed) != 0)
            return 1;
    printf("  (pinned to CPUs %s; %d rounds in %d sets of fresh processes, each side's turn "
           "in a shuffled order, its batch after %d thrown away)\n",
           cpus ? cpus : "any", rounds, epochs, prime);
    for (int i = 1; i < n; i++) {
        char label[256], rl[256];
        snprintf(label, sizeof label, "%s: %s", what, side[i].name);
        kb_row(label, KB_NS, side[i].name, &side[i].v, side[0].name, &side[0].v, NULL);
        snprintf(rl, sizeof rl, "%s: %s, per-round ratio to the baseline", what, side[i].name);
        kb_row(rl, KB_RATIO, "ratio", &side[i].ratio, NULL, NULL, i == 1 ? &t : NULL);
        /* The fastest tenth of each side's batches (sorted by kb_row): the
         * batches the other tenants hit least, if they only ever add. */
        double lo = kb_quantile(side[i].v.v, side[i].v.n, 0.1),
               blo = kb_quantile(side[0].v.v, side[0].v.n, 0.1);
        printf("    fastest tenth: %.1f ns against %.1f ns, %.3fx\n", lo, blo, lo / blo);
    }
    for (int i = 0; i < n; i++) {
        kb_free(&side[i].v);
        kb_free(&side[i].ratio);
    }
    return 0;
}
