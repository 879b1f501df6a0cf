#include "waitgraph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ksi_node {
    long tid;
    int edge;
};

static int ksi_node_cmp(const void *a, const void *b)
{
    long x = ((const struct ksi_node *)a)->tid, y = ((const struct ksi_node *)b)->tid;
    return (x > y) - (x < y);
}

static int ksi_cycle_cmp(const void *a, const void *b, void *edges)
{
    const struct ksi_wait_edge *e = edges;
    long x = e[((const struct ksi_cycle *)a)->idx[0]].tid;
    long y = e[((const struct ksi_cycle *)b)->idx[0]].tid;
    return (x > y) - (x < y);
}

/* Index into NODES of the node for TID, or -1. */
static int ksi_find(const struct ksi_node *nodes, int n, long tid)
{
    struct ksi_node key = {tid, 0};
    const struct ksi_node *p = bsearch(&key, nodes, (size_t)n, sizeof *nodes, ksi_node_cmp);
    return p ? (int)(p - nodes) : -1;
}

/* Stores the cycle PATH[from..len) rotated to start at its smallest tid. */
static int ksi_add_cycle(const struct ksi_wait_edge *edges, const struct ksi_node *nodes,
                         const int *path, int from, int len, struct ksi_cycle **out, int *count)
{
    int n = len - from, first = 0;
    for (int i = 1; i < n; i++)
        if (nodes[path[from + i]].tid < nodes[path[from + first]].tid)
            first = i;
    struct ksi_cycle *v = realloc(*out, (size_t)(*count + 1) * sizeof *v);
    if (!v)
        return -1;
    *out = v;
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx)
        return -1;
    for (int i = 0; i < n; i++)
        idx[i] = nodes[path[from + (first + i) % n]].edge;
    v[*count].idx = idx;
    v[*count].n = n;
    (*count)++;
    (void)edges;
    return 0;
}

int ksi_find_cycles(const struct ksi_wait_edge *edges, int n, struct ksi_cycle **out)
{
    *out = NULL;
    int count = 0, rc = 0;
    struct ksi_node *nodes = malloc((size_t)(n ? n : 1) * sizeof *nodes);
    int *color = calloc((size_t)(n ? n : 1), sizeof *color);   /* 0 new, 1 on path, 2 done */
    int *path = malloc((size_t)(n ? n : 1) * sizeof *path);
    int *pos = malloc((size_t)(n ? n : 1) * sizeof *pos);
    if (!nodes || !color || !path || !pos) {
        rc = -1;
        goto out;
    }
    for (int i = 0; i < n; i++)
        nodes[i] = (struct ksi_node){edges[i].tid, i};
    qsort(nodes, (size_t)n, sizeof *nodes, ksi_node_cmp);
    for (int start = 0; start < n && rc == 0; start++) {
        int len = 0;
        for (int v = start; v >= 0 && color[v] == 0;) {
            color[v] = 1;
            pos[v] = len;
            path[len++] = v;
            int w = ksi_find(nodes, n, edges[nodes[v].edge].owner);
            if (w >= 0 && color[w] == 1)
                rc = ksi_add_cycle(edges, nodes, path, pos[w], len, out, &count);
            v = w;
        }
        for (int i = 0; i < len; i++)
            color[path[i]] = 2;
    }
    if (rc == 0 && count > 1)
        qsort_r(*out, (size_t)count, sizeof **out, ksi_cycle_cmp, (void *)edges);
out:
    free(nodes);
    free(color);
    free(path);
    free(pos);
    if (rc) {
        ksi_cycles_free(*out, count);
        *out = NULL;
        return -1;
    }
    return count;
}

void ksi_cycles_free(struct ksi_cycle *c, int n)
{
    for (int i = 0; c && i < n; i++)
        free(c[i].idx);
    free(c);
}

void ksi_cycle_text(const struct ksi_wait_edge *edges, const struct ksi_cycle *c, char *buf,
                    size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "deadlock:");
    for (int i = 0; i < c->n && len < cap; i++) {
        const struct ksi_wait_edge *e = &edges[c->idx[i]];
        len += (size_t)snprintf(buf + len, cap - len, "%s %ld waits for %ld (%s 0x%llx)",
                                i ? "," : "", e->tid, e->owner, e->kind, e->obj);
    }
}
