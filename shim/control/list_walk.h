/* The rows of a long listing written by two threads, in order: the
 * connection thread and a throwaway shim thread ("killshim-list") take
 * chunks of the items in turn, each chunk's rows go to a buffer of its own,
 * and the connection thread hands the chunks on in their order as each is
 * done (it walks the next free chunk itself while the one due is still
 * being written). Nearly all of a listing's time is the kernel's (an open
 * and a read of a /proc file a task): a second thread halves it on an idle
 * core, and where the second thread gets no CPU the first simply takes more
 * chunks. */
#ifndef KS_LIST_WALK_H
#define KS_LIST_WALK_H

#include "shim/common/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the rows of items FROM..TO-1 into OUT for walker WHO (0: the
 * caller, 1: the second thread; each has state of its own in ARG). Returns
 * the rows written. Called from both threads at once, never for the same
 * WHO at once. */
typedef int ks_walk_fn(void *arg, int who, struct ks_out *out, int from, int to);

/* Rows of items 0..N-1 into OUT, in order, each part handed on as it fills.
 * With fewer than KS_WALK_MIN items, a process allowed one CPU only, or no
 * thread or memory for the second walker, the caller walks them all (FN
 * with WHO 0 only). Waits for the second walker's chunks without a
 * deadline, as for its own rows. Returns the rows written. */
#define KS_WALK_MIN 1000
int ks_walk_ordered(struct ks_out *out, int n, ks_walk_fn *fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
