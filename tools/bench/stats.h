/* Samples, their summary, and the one output format every benchmark uses.
 *
 * A benchmark never asserts: it prints rows. Each row is one line
 *   ROW|what|median|spread|baseline|ratio|target|met
 * that run.sh gathers into the table of docs/bench.md, preceded by a
 * human-readable detail line with quartiles and the run count. */
#ifndef KB_STATS_H
#define KB_STATS_H

#include <stddef.h>
#include <stdint.h>

struct kb_samples {
    double *v;
    size_t n, cap;
    int failed;               /* runs that did not do the job (not in v) */
};

struct kb_summary {
    double median, min, max, q1, q3;
    size_t n;
};

/* Units the values are kept in; printing picks a readable scale. */
enum kb_unit { KB_NS, KB_BYTES, KB_PLAIN, KB_RATIO };

/* What a row's "met?" compares. */
enum kb_goal {
    KB_GOAL_NONE,             /* for information */
    KB_GOAL_RATIO_MAX,        /* ours / baseline <= limit (medians) */
    KB_GOAL_DIFF_MAX,         /* ours - baseline <= limit (medians) */
    KB_GOAL_ABS_MAX,          /* ours <= limit (median) */
};

struct kb_target {
    enum kb_goal goal;
    double limit;
    const char *text;         /* as the issue states it, e.g. "<= 1.15x" */
};

/* Appends X. Returns 0, or -1 out of memory (the sample is lost). */
int kb_add(struct kb_samples *s, double x);
void kb_free(struct kb_samples *s);
/* The Q-quantile of the N sorted values V (linear interpolation, as R's
 * type 7); N > 0. */
double kb_quantile(const double *v, size_t n, double q);
/* Summarizes S (sorts it in place). n == 0 if S is empty. */
void kb_summarize(struct kb_samples *s, struct kb_summary *out);
/* Formats V in UNIT with a readable scale into BUF. */
void kb_fmt(char *buf, size_t cap, double v, enum kb_unit unit);

/* Prints the detail lines and the ROW line of OURS next to BASE (which may
 * be NULL: no baseline). The names say what each side measured. */
void kb_row(const char *what, enum kb_unit unit, const char *ours_name,
            struct kb_samples *ours, const char *base_name, struct kb_samples *base,
            const struct kb_target *t);

/* CLOCK_MONOTONIC in ns. */
uint64_t kb_now_ns(void);

#endif
