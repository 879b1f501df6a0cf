/* The one handler of KS_SIG_ACT, and what the verbs say about a thread that
 * was asked to end but is still alive. See deliver.h. */
#include "deliver.h"

#include <stdio.h>
#include <string.h>

#include "shim/core/ks.h"
#include "shim/core/registry.h"
#include "shim/core/signals.h"

/* Runs in the target's signal context. A flag or cancel wake is done by the
 * time this runs: the signal (installed without SA_RESTART) has already made
 * an interruptible blocking call return EINTR. Only an abort has work here. */
static void ks_act_dispatch(int signo, siginfo_t *si, ucontext_t *uc)
{
    (void)signo;
    struct ks_thread *t = ks_self();
    if (__atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE) != KS_ABORT_NONE)
        ks_abort_on_signal(t, si, uc);
}

KS_START_PATH void ks_deliver_init(void) { ks_signals_set_handler(KS_SIG_ACT, ks_act_dispatch); }

void ks_pending_reason(const struct ks_thread *t, char *buf, size_t cap)
{
    /* The abort's target rewrites its report without a lock: take a
     * consistent copy. */
    struct ks_abort_report ab;
    ks_abort_snapshot(t, &ab);
    ks_pending_reason_of(t, &ab, buf, cap);
}

void ks_pending_reason_of(const struct ks_thread *t, const struct ks_abort_report *ab,
                          char *buf, size_t cap)
{
    const char *reason = ab->reason;
    switch (ab->state) {
    case KS_ABORT_PENDING:
        snprintf(buf, cap, "abort pending: %s", reason[0] ? reason : "waiting for a safe point");
        return;
    case KS_ABORT_REFUSED:
        snprintf(buf, cap, "abort refused: %s", reason[0] ? reason : "no safe point");
        return;
    case KS_ABORT_FIRING:
        snprintf(buf, cap, "abort firing: unwinding");
        return;
    default:
        break;
    }
    if (__atomic_load_n(&t->cancel_requested, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&t->cancel_disabled, __ATOMIC_RELAXED))
            snprintf(buf, cap, "cancellation disabled by the thread; pending until it re-enables");
        else
            snprintf(buf, cap, "cancel pending: waiting for the thread to reach a cancellation point");
        return;
    }
    if (__atomic_load_n(&t->stop_requested, __ATOMIC_ACQUIRE)) {
        snprintf(buf, cap, "stop flag set; waiting for the thread to notice");
        return;
    }
    if (cap)
        buf[0] = '\0';
}
