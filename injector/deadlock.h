/* The wait-for graph of one reply's threads, as list and --stack show it:
 * the edges collected from the rows, the cycles among them (waitgraph.h
 * finds them), and one JSON form of a cycle. */
#ifndef KSI_DEADLOCK_H
#define KSI_DEADLOCK_H

#include <json-c/json.h>
#include <stddef.h>

#include "waitgraph.h"

struct ksi_graph {
    struct ksi_wait_edge *edges;
    int nedges;
    size_t cap;
    struct ksi_cycle *cycles;
    int ncycles;
};

/* Room for up to NTHREADS edges (a thread waits for at most one other).
 * Returns 0, or -1 out of memory. */
int ksi_graph_init(struct ksi_graph *g, size_t nthreads);
/* TID waits for OWNER through the lock OBJ of KIND ("mutex", "rwlock";
 * not copied). Ignored if OWNER is not a thread or the graph is full. */
void ksi_graph_add(struct ksi_graph *g, long tid, long owner, const char *kind,
                   unsigned long long obj);
/* Finds the cycles among the edges added. Returns 0, or -1 out of memory. */
int ksi_graph_cycles(struct ksi_graph *g);
void ksi_graph_free(struct ksi_graph *g);

/* 1 if TID is one of the waiters of cycle C. */
int ksi_cycle_has(const struct ksi_graph *g, const struct ksi_cycle *c, long tid);
/* {"tids": [...], "text": "deadlock: ..."}, with WITH_EDGES also
 * "edges": [{"tid", "waits_for", "kind", "object"}...]. */
json_object *ksi_json_cycle(const struct ksi_graph *g, const struct ksi_cycle *c, int with_edges);
/* "0x..." as a JSON string. */
json_object *ksi_json_hex(unsigned long long v);

/* Makes room for one more element of SIZE bytes in V, which holds N of
 * *CAP: returns V itself, or V grown (doubling, from 64) with *CAP updated,
 * or NULL out of memory (V and *CAP unchanged; the caller still owns V). */
void *ksi_grow(void *v, size_t n, size_t *cap, size_t size);

#endif
