#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t kb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int kb_add(struct kb_samples *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

void kb_free(struct kb_samples *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int kb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between order statistics (type 7, as R and numpy). */
double kb_quantile(const double *v, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n)
        return v[n - 1];
    return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

void kb_summarize(struct kb_samples *s, struct kb_summary *out)
{
    memset(out, 0, sizeof *out);
    if (s->n == 0)
        return;
    qsort(s->v, s->n, sizeof *s->v, kb_cmp);
    out->n = s->n;
    out->min = s->v[0];
    out->max = s->v[s->n - 1];
    out->median = kb_quantile(s->v, s->n, 0.5);
    out->q1 = kb_quantile(s->v, s->n, 0.25);
    out->q3 = kb_quantile(s->v, s->n, 0.75);
}

void kb_fmt(char *buf, size_t cap, double v, enum kb_unit unit)
{
    double a = fabs(v);
    switch (unit) {
    case KB_NS:
        if (a < 1e3) snprintf(buf, cap, "%.1f ns", v);
        else if (a < 1e6) snprintf(buf, cap, "%.2f µs", v / 1e3);
        else if (a < 1e9) snprintf(buf, cap, "%.2f ms", v / 1e6);
        else snprintf(buf, cap, "%.2f s", v / 1e9);
        break;
    case KB_BYTES:
        if (a < 1024) snprintf(buf, cap, "%.0f B", v);
        else if (a < 1024 * 1024) snprintf(buf, cap, "%.1f KiB", v / 1024);
        else snprintf(buf, cap, "%.2f MiB", v / (1024 * 1024));
        break;
    case KB_RATIO:
        snprintf(buf, cap, "%.3fx", v);
        break;
    default:
        snprintf(buf, cap, "%.3g", v);
    }
}

static void kb_fmt_spread(char *buf, size_t cap, const struct kb_summary *s, enum kb_unit u)
{
    char lo[32], hi[32];
    kb_fmt(lo, sizeof lo, s->min, u);
    kb_fmt(hi, sizeof hi, s->max, u);
    snprintf(buf, cap, "%s – %s (n=%zu)", lo, hi, s->n);
}

static void kb_detail(const char *who, const struct kb_summary *s, int failed, enum kb_unit u)
{
    char m[32], q1[32], q3[32], lo[32], hi[32];
    if (s->n == 0) {
        printf("    %-28s no samples  FAILED runs=%d\n", who, failed);
        return;
    }
    kb_fmt(m, sizeof m, s->median, u);
    kb_fmt(q1, sizeof q1, s->q1, u);
    kb_fmt(q3, sizeof q3, s->q3, u);
    kb_fmt(lo, sizeof lo, s->min, u);
    kb_fmt(hi, sizeof hi, s->max, u);
    printf("    %-28s median %-11s IQR %s .. %s  range %s .. %s  n=%zu", who, m, q1, q3,
           lo, hi, s->n);
    if (failed)
        printf("  FAILED runs=%d", failed);
    printf("\n");
}

static const char *kb_met(const struct kb_target *t, const struct kb_summary *o,
                          const struct kb_summary *b, int have_base)
{
    if (!t || t->goal == KB_GOAL_NONE)
        return "–";
    if (o->n == 0)
        return "n/a";
    switch (t->goal) {
    case KB_GOAL_ABS_MAX:
        return o->median <= t->limit ? "yes" : "NO";
    case KB_GOAL_RATIO_MAX:
        if (!have_base || b->median <= 0)
            return "n/a";
        return o->median / b->median <= t->limit ? "yes" : "NO";
    case KB_GOAL_DIFF_MAX:
        if (!have_base)
            return "n/a";
        return o->median - b->median <= t->limit ? "yes" : "NO";
    default:
        return "–";
    }
}

void kb_row(const char *what, enum kb_unit unit, const char *ours_name,
            struct kb_samples *ours, const char *base_name, struct kb_samples *base,
            const struct kb_target *t)
{
    struct kb_summary o, b;
    kb_summarize(ours, &o);
    int have_base = base != NULL;
    if (have_base)
        kb_summarize(base, &b);
    else
        memset(&b, 0, sizeof b);
    have_base = have_base && b.n > 0;

    printf("  %s\n", what);
    kb_detail(ours_name, &o, ours->failed, unit);
    if (base)
        kb_detail(base_name, &b, base->failed, unit);

    char med[32] = "n/a", spread[96] = "–", basecol[160] = "–", ratio[64] = "–";
    if (o.n) {
        kb_fmt(med, sizeof med, o.median, unit);
        kb_fmt_spread(spread, sizeof spread, &o, unit);
    } else if (ours->failed) {
        snprintf(spread, sizeof spread, "all %d runs failed", ours->failed);
    }
    if (have_base) {
        char bm[32], bs[96];
        kb_fmt(bm, sizeof bm, b.median, unit);
        kb_fmt_spread(bs, sizeof bs, &b, unit);
        snprintf(basecol, sizeof basecol, "%s: %s [%s]", base_name, bm, bs);
    } else if (base) {
        snprintf(basecol, sizeof basecol, "%s: n/a", base_name);
    }
    if (o.n && have_base && b.median > 0) {
        char d[32];
        kb_fmt(d, sizeof d, o.median - b.median, unit);
        snprintf(ratio, sizeof ratio, "%.3fx (%s%s)", o.median / b.median,
                 o.median >= b.median ? "+" : "", d);
    }
    printf("ROW|%s|%s|%s|%s|%s|%s|%s\n", what, med, spread, basecol, ratio,
           t && t->text ? t->text : "–", kb_met(t, &o, &b, have_base));
    fflush(stdout);
}
