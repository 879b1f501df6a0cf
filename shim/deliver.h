/* Ending a thread: the contract between the verbs that request it
 * (cmd_end.c), the modes (deliver_flag.c, deliver_cancel.c,
 * deliver_abort.c) and the exit path (interpose_thread.c).
 *
 * Every request is made by the control side with the registry lock held and
 * the target's record linked (so the target is alive and its tid is its own).
 * The target acts on it in its own context; when it ends, its cleanup
 * records how (the "graveyard"), so a client that asks after the thread is
 * gone still learns how and where it left. */
#ifndef KS_DELIVER_H
#define KS_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a thread ended. */
enum ks_end_how {
    KS_END_ALIVE = 0,
    KS_END_RETURNED,     /* its start routine returned */
    KS_END_EXITED,       /* pthread_exit */
    KS_END_CANCELLED,    /* pthread_cancel acted */
    KS_END_ABORTED,      /* the shim's abort fired */
};

/* State of an abort request, kept in the target's record (t->abort). */
enum ks_abort_state {
    KS_ABORT_NONE = 0,
    KS_ABORT_PENDING,    /* waiting for a safe point; reason says which */
    KS_ABORT_REFUSED,    /* cannot be made safe; reason says why */
    KS_ABORT_FIRING,     /* unwinding now */
};

/* Asks the abort of T. Caller holds the registry lock and T is linked.
 * FORCE: end it at once even where it is not safe (held locks, inside libc);
 * the graveyard then says what was left behind. Returns 0 if the request is
 * in flight (T->abort says how it goes), or an errno with WHY filled in
 * (refused before anything was done to the thread). */
int ks_abort_request(struct ks_thread *t, int force, char *why, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
