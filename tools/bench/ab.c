/* bench_ab: the cost of carrying the shim. Runs one command alternately with
 * and without LD_PRELOAD of the shim (ABBA order, so drift in the machine's
 * load falls on both sides alike) and prints one row: ours next to the
 * baseline from the same run.
 *
 * The value of a run is either its wall time (-w) or the number the command
 * prints as the first word of its last stdout line (the workloads in work.c
 * measure themselves, so process start-up does not dilute them). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spawn.h"
#include "stats.h"

static const char kb_usage[] =
    "usage: bench_ab -s SHIM -l WHAT [-n RUNS] [-W WARMUP] [-w] [-u ns|bytes|plain]\n"
    "                [-g none|ratio:X|diff:X|abs:X] [-T TARGET_TEXT] -- CMD [ARGS...]\n";

static int kb_parse_goal(const char *s, struct kb_target *t)
{
    const char *colon = strchr(s, ':');
    t->goal = KB_GOAL_NONE;
    if (strcmp(s, "none") == 0)
        return 0;
    if (!colon)
        return -1;
    t->limit = strtod(colon + 1, NULL);
    size_t k = (size_t)(colon - s);
    if (k == 5 && strncmp(s, "ratio", 5) == 0) t->goal = KB_GOAL_RATIO_MAX;
    else if (k == 4 && strncmp(s, "diff", 4) == 0) t->goal = KB_GOAL_DIFF_MAX;
    else if (k == 3 && strncmp(s, "abs", 3) == 0) t->goal = KB_GOAL_ABS_MAX;
    else return -1;
    return 0;
}

/* One run; adds its value to S or counts it failed. Prints the first
 * failure's stderr so a broken setup is visible, not just slow. */
static void kb_one(char **argv, const char *preload, int wall, struct kb_samples *s)
{
    struct kb_run r = {.preload = preload, .capture = !wall};
    int rc = kb_run(argv, &r);
    double v = 0;
    int ok = rc == 0;
    if (ok && wall) {
        v = (double)r.wall_ns;
    } else if (ok) {
        char *last = r.out;
        for (char *p = r.out; p && *p; p++)
            if (*p == '\n' && p[1])
                last = p + 1;
        char *end;
        v = last ? strtod(last, &end) : 0;
        ok = last && end != last;
    }
    if (ok) {
        kb_add(s, v);
    } else {
        if (!s->failed)
            fprintf(stderr, "bench_ab: %s%s failed (status %d): %s\n", argv[0],
                    preload ? " (with the shim)" : "", r.status, r.err);
        s->failed++;
    }
    kb_run_free(&r);
}

int main(int argc, char **argv)
{
    const char *shim = NULL, *what = NULL;
    int runs = 10, warmup = 1, wall = 0, c;
    enum kb_unit unit = KB_NS;
    struct kb_target t = {.goal = KB_GOAL_NONE, .text = NULL};
    while ((c = getopt(argc, argv, "s:l:n:W:wu:g:T:")) != -1) {
        switch (c) {
        case 's': shim = optarg; break;
        case 'l': what = optarg; break;
        case 'n': runs = atoi(optarg); break;
        case 'W': warmup = atoi(optarg); break;
        case 'w': wall = 1; break;
        case 'u':
            unit = strcmp(optarg, "bytes") == 0 ? KB_BYTES
                 : strcmp(optarg, "plain") == 0 ? KB_PLAIN : KB_NS;
            break;
        case 'g':
            if (kb_parse_goal(optarg, &t)) { fputs(kb_usage, stderr); return 2; }
            break;
        case 'T': t.text = optarg; break;
        default: fputs(kb_usage, stderr); return 2;
        }
    }
    if (!shim || !what || optind >= argc || runs < 1) {
        fputs(kb_usage, stderr);
        return 2;
    }
    char **cmd = argv + optind;
    struct kb_samples ours = {0}, base = {0}, junk = {0};
    for (int i = 0; i < warmup; i++) {
        kb_one(cmd, shim, wall, &junk);
        kb_one(cmd, NULL, wall, &junk);
    }
    for (int i = 0; i < runs; i++) {
        if (i % 2 == 0) {
            kb_one(cmd, shim, wall, &ours);
            kb_one(cmd, NULL, wall, &base);
        } else {
            kb_one(cmd, NULL, wall, &base);
            kb_one(cmd, shim, wall, &ours);
        }
    }
    kb_row(what, unit, "with the shim", &ours, "without shim", &base, &t);
    kb_free(&ours);
    kb_free(&base);
    kb_free(&junk);
    return 0;
}
