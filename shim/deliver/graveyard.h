/* The graveyard: a bounded ring of the threads that ended most recently, so
 * that a client asking after a thread is gone still learns how it ended,
 * where it left and what it left behind.
 *
 * Invariant: a thread's exit path writes its grave BEFORE it unlinks its
 * record. So a client that holds the registry lock and does not find a
 * (tid, id) linked finds it here, unless the ring has since overwritten it
 * (KS_GRAVES newer endings). Lock order: registry lock, then graveyard lock. */
#ifndef KS_GRAVEYARD_H
#define KS_GRAVEYARD_H

#include <stdint.h>
#include <sys/types.h>

#include "deliver.h"
#include "shim/core/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KS_GRAVES 512

/* What had been asked of a thread when it ended (bits). */
enum ks_req_bits { KS_REQ_FLAG = 1, KS_REQ_CANCEL = 2, KS_REQ_ABORT = 4 };

/* What has been asked of T so far (enum ks_req_bits). T is linked under the
 * registry lock, or is the calling thread. */
int ks_requested_bits(const struct ks_thread *t);

/* What every ending writes comes first, in one cache line (the ring's
 * slots are aligned to it, graveyard.c): a grave costs a create+join one
 * line that is likely cold by then, not three. The rest is an abort's, or a
 * lock left held. */
struct ks_grave {
    pid_t tid;
    int how;                  /* enum ks_end_how */
    int requested;            /* enum ks_req_bits */
    int locks_held;           /* pthread mutexes/rwlocks it still held */
    int role;                 /* enum ks_role */
    int nleft;
    uint64_t id;
    uintptr_t site;           /* where it left (see ks_grave_bury); 0 unknown */
    void *start_routine;
    uint64_t created_ns, ended_ns;   /* CLOCK_MONOTONIC */
    /* Aborted: how it left and what ran (deliver.h). */
    int abort_how;            /* enum ks_abort_how; 0 if not aborted */
    int ncleanup;
    uintptr_t cleanup[KS_ABORT_MAX_CLEANUP];   /* frames whose cleanups ran */
    uintptr_t left[KS_ABORT_MAX_LEFT];         /* locks it left held (the first few
                                                  of locks_held, however it ended) */
    char abort_note[KS_ABORT_REASON_MAX];   /* the abort's last reason, whole: e.g. the
                                               shim unlocked a cond's mutex */
};
_Static_assert(__builtin_offsetof(struct ks_grave, abort_how) <= 64,
               "what every ending writes fits the grave's first cache line");

/* Called by T itself on its way out, before it unlinks. SITE: the caller
 * of pthread_exit, the abort's site, the blocked call that was cancelled or
 * the start routine it returned from; ENDED_NS: ks_now_ns() then. Of the
 * arrays, only the entries their counts name are written: those past them
 * (and the cleanups and note of a grave not aborted) may be an older
 * grave's, and are never read. */
void ks_grave_bury(const struct ks_thread *t, int how, uintptr_t site, uint64_t ended_ns);
/* Maps the ring (160 KiB, ks.h: ks_lazy) if it is not yet: called before a
 * thread that may end exists (the pthread_create hook, a shim thread's
 * start, the main thread's pthread_exit), never from a signal handler. A
 * grave finds the ring mapped or is not kept: ks_grave_bury never maps. */
void ks_grave_prepare(void);
/* The grave of (TID, ID), or with ID 0 the most recent grave of TID. Returns
 * 0 and fills OUT, or ENOENT. */
int ks_grave_find(pid_t tid, uint64_t id, struct ks_grave *out);
/* "returned", "exited", "cancelled", "aborted" or "alive". */
const char *ks_end_how_name(int how);

#ifdef __cplusplus
}
#endif
#endif
