/* The wait-for graph of a process's threads and its cycles (deadlocks).
 * A thread waits for at most one other (the owner of the lock it is blocked
 * on), so every cycle is found by following edges: O(threads). */
#ifndef KSI_WAITGRAPH_H
#define KSI_WAITGRAPH_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stddef.h>

struct ksi_wait_edge {
    long tid;                  /* the waiting thread */
    long owner;                /* the thread holding what it waits for */
    const char *kind;          /* "mutex", "rwlock" */
    unsigned long long obj;    /* the lock's address */
};

/* One cycle: indexes into the edge array, in wait order, starting at the
 * edge of the smallest tid in the cycle. */
struct ksi_cycle {
    int *idx;
    int n;
};

/* Finds every cycle among the N EDGES (at most one per tid; owners that have
 * no edge end a chain). Cycles come sorted by their smallest tid. Returns
 * the number of cycles (*OUT malloc'd, free with ksi_cycles_free), or -1 if
 * out of memory. */
int ksi_find_cycles(const struct ksi_wait_edge *edges, int n, struct ksi_cycle **out);
void ksi_cycles_free(struct ksi_cycle *c, int n);

/* "deadlock: 101 waits for 102 (mutex 0x5610), 102 waits for 101 (mutex
 * 0x5650)" into BUF (truncated to CAP). */
void ksi_cycle_text(const struct ksi_wait_edge *edges, const struct ksi_cycle *c, char *buf,
                    size_t cap);

#ifdef __cplusplus
}
#endif

#endif
