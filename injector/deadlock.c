/* See deadlock.h. */
#include "deadlock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ksi_graph_init(struct ksi_graph *g, size_t nthreads)
{
    memset(g, 0, sizeof *g);
    g->edges = calloc(nthreads ? nthreads : 1, sizeof *g->edges);
    if (!g->edges)
        return -1;
    g->cap = nthreads;
    return 0;
}

void ksi_graph_add(struct ksi_graph *g, long tid, long owner, const char *kind,
                   unsigned long long obj)
{
    if (owner > 0 && (size_t)g->nedges < g->cap)
        g->edges[g->nedges++] = (struct ksi_wait_edge){tid, owner, kind, obj};
}

int ksi_graph_cycles(struct ksi_graph *g)
{
    g->ncycles = ksi_find_cycles(g->edges, g->nedges, &g->cycles);
    return g->ncycles < 0 ? -1 : 0;
}

void ksi_graph_free(struct ksi_graph *g)
{
    ksi_cycles_free(g->cycles, g->ncycles > 0 ? g->ncycles : 0);
    free(g->edges);
    memset(g, 0, sizeof *g);
}

int ksi_cycle_has(const struct ksi_graph *g, const struct ksi_cycle *c, long tid)
{
    for (int i = 0; i < c->n; i++)
        if (g->edges[c->idx[i]].tid == tid)
            return 1;
    return 0;
}

json_object *ksi_json_hex(unsigned long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "0x%llx", v);
    return json_object_new_string(buf);
}

json_object *ksi_json_cycle(const struct ksi_graph *g, const struct ksi_cycle *c, int with_edges)
{
    json_object *j = json_object_new_object(), *tids = json_object_new_array(),
                *edges = with_edges ? json_object_new_array() : NULL;
    for (int i = 0; i < c->n; i++) {
        const struct ksi_wait_edge *e = &g->edges[c->idx[i]];
        json_object_array_add(tids, json_object_new_int64(e->tid));
        if (!edges)
            continue;
        json_object *je = json_object_new_object();
        json_object_object_add(je, "tid", json_object_new_int64(e->tid));
        json_object_object_add(je, "waits_for", json_object_new_int64(e->owner));
        json_object_object_add(je, "kind", json_object_new_string(e->kind));
        json_object_object_add(je, "object", ksi_json_hex(e->obj));
        json_object_array_add(edges, je);
    }
    char buf[4096];
    ksi_cycle_text(g->edges, c, buf, sizeof buf);
    json_object_object_add(j, "tids", tids);
    if (edges)
        json_object_object_add(j, "edges", edges);
    json_object_object_add(j, "text", json_object_new_string(buf));
    return j;
}

void *ksi_grow(void *v, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return v;
    size_t want = *cap ? *cap * 2 : 64;
    void *grown = realloc(v, want * size);
    if (grown)
        *cap = want;
    return grown;
}
