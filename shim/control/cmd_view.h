/* What the "end" and "status" verbs answer about a thread (cmd_end.c):
 * copied under the registry lock, formatted after it. Internal to those
 * verbs. */
#ifndef KS_CMD_VIEW_H
#define KS_CMD_VIEW_H

#include <stdint.h>
#include <sys/types.h>

#include "shim/deliver/deliver.h"
#include "shim/deliver/graveyard.h"
#include "shim/common/proto.h"

struct ks_py_thread;

/* What the answer says about a thread, copied under the lock. */
struct ks_view {
    int found;                /* 1 alive (linked), 2 ended (a grave) */
    pid_t tid;
    uint64_t id;
    int role;
    int locks_held;
    int requested;            /* enum ks_req_bits */
    int cancel_disabled;
    void *start;
    char pending[300];
    uintptr_t pending_lock;   /* a waiting cancel: the lock it waits about */
    char langrt[320];         /* status: started by a language runtime (langrt.h) */
    struct ks_abort_report abort;
    struct ks_grave grave;
    const struct ks_py_thread *py;   /* status python=1: what CPython knows (pyrt.h) */
};

/* Fills V for TID (with id ID, 0: any). Caller holds the registry lock. A
 * record whose grave is already written is on its way out: it counts as
 * ended. */
void ks_view_of(pid_t tid, uint64_t id, struct ks_view *v);
/* "ok ..." with V's fields (V->found set). */
void ks_answer_view(struct ks_out *out, const struct ks_view *v);
/* The error for TID that is neither alive in the registry nor buried. */
void ks_answer_unknown(struct ks_out *out, pid_t tid, uint64_t id);

#endif
