/* killshim-inject PID TID: the wait. After each step the driver (end.c)
 * polls the shim's "status" and the kernel's /proc until the thread is gone,
 * a step is refused by the thread itself, or the step's time is up. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "end.h"
#include "shim/common/procfs.h"

/* Polls start at 0.25 ms and double up to 20 ms: a thread that needs a
 * moment (an abort's unwind, a cancel reaching its point) is seen gone at
 * once, not one whole 20 ms period later; a long wait costs the shim no
 * more requests than before. */
#define KSI_POLL_FIRST_US 250
#define KSI_POLL_MAX_US 20000
#define KSI_PROGRESS_S 1.0

/* The kernel's view: 1 while TID is a live task of PID. A zombie (the main
 * thread after pthread_exit) has ended. */
static int ksi_task_alive(pid_t pid, pid_t tid)
{
    struct ks_taskstat st;
    if (ks_read_task_stat(pid, tid, &st) != 0)
        return 0;
    return st.state != 'Z' && st.state != 'X';
}

static int ksi_process_gone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

/* "0x1,0x2" into OUT (at most MAX). Returns how many. */
static int ksi_addr_list(const char *s, uint64_t *out, int max)
{
    int n = 0;
    while (s && *s && n < max) {
        char *end;
        out[n++] = strtoull(s, &end, 0);
        if (end == s)
            break;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* Copies an "ended" status line into the result. */
static void ksi_take_grave(struct ksi_end_result *r, const struct ks_msg *m)
{
    int64_t x;
    uint64_t u;
    ksi_copy(r->how, sizeof r->how, ks_msg_get(m, "how"));
    ksi_copy(r->requested, sizeof r->requested, ks_msg_get(m, "requested"));
    r->site = ks_msg_get_u64(m, "site", &u) == 0 ? u : 0;
    r->start = ks_msg_get_u64(m, "start", &u) == 0 ? u : 0;
    r->locks_left = ks_msg_get_i64(m, "locks_left", 0, INT32_MAX, &x) == 0 ? (int)x : 0;
    ksi_copy(r->abort_how, sizeof r->abort_how, ks_msg_get(m, "abort_how"));
    ksi_copy(r->abort_note, sizeof r->abort_note, ks_msg_get(m, "abort_note"));
    r->ncleanup = ksi_addr_list(ks_msg_get(m, "cleanup"), r->cleanup, 8);
    r->nleft = ksi_addr_list(ks_msg_get(m, "left"), r->left, 4);
}

/* Takes a status or end answer M: returns 1 if it says the thread ended
 * (R filled from its grave), else 0 with R's pending reason and lock. */
int ksi_take_state(struct ksi_end_result *r, const struct ks_msg *m)
{
    const char *state = ks_msg_get(m, "state"), *role = ks_msg_get(m, "role");
    r->pre_attach = role && strcmp(role, "pre-attach") == 0;
    if (state && strcmp(state, "ended") == 0) {
        ksi_take_grave(r, m);
        return 1;
    }
    ksi_copy(r->pending, sizeof r->pending, ks_msg_get(m, "pending"));
    ksi_name_lock(r, m);
    return 0;
}

/* Asks "status" once. Returns 1 if the thread has ended (graveyard), 0 if it
 * is alive (R->pending updated), 2 if it is alive and its abort was refused
 * (the thread is untouched; R->pending says why), or -(exit code) on a
 * failure. */
static int ksi_poll_status(struct ksi_end *e)
{
    char line[128];
    struct ks_msg m;
    /* A cancel this ladder asked may be waiting: try it again (only this
     * client's polls do, see docs/PROTOCOL.md). */
    int cancel = 0, py = 0;
    for (int i = 0; i < e->r.nsteps; i++) {
        cancel |= e->r.steps[i].accepted && strcmp(e->r.steps[i].mode, "cancel") == 0;
        py |= e->r.steps[i].accepted && strcmp(e->r.steps[i].mode, "python") == 0;
    }
    /* CPython is asked (a thread, the GIL) at most every 200 ms. */
    double now = ksi_now() - e->t0;
    int ask_py = py && now - e->r.py.polled_at >= 0.2;
    snprintf(line, sizeof line, "status tid=%d id=%" PRIu64 "%s%s", (int)e->r.tid, e->r.id,
             cancel ? " retry=cancel" : "", ask_py ? " python=1" : "");
    int rc = ksi_request(&e->c, line, NULL, NULL, &m);
    if (rc != KSI_EXIT_OK)
        return -rc;
    if (strcmp(m.verb, "err") == 0) {
        const char *code = ks_msg_get(&m, "code");
        if (code && strcmp(code, "no-thread") == 0) {
            /* Linked no more and out of the graveyard's ring: gone, how unknown. */
            e->r.how[0] = '\0';
            return 1;
        }
        return -ksi_reply_error(&m);
    }
    if (ksi_take_state(&e->r, &m))
        return 1;
    if (py) {   /* the python step's own account (end_python.c) */
        if (ask_py)
            ksi_py_take(&e->r, &m, now);
        return ksi_py_pending(&e->r, now, e->o->grace_s) ? 3 : 0;
    }
    uint64_t where = 0;
    e->r.abort_where = ks_msg_get_u64(&m, "abort_where", &where) == 0 ? where : 0;
    ksi_name_where(&e->r);
    const char *abort = ks_msg_get(&m, "abort");
    return abort && strcmp(abort, "refused") == 0 ? 2 : 0;
}

void ksi_progress(struct ksi_end *e, const char *mode, int force)
{
    double now = ksi_now();
    if (!force && now - e->last_progress < KSI_PROGRESS_S)
        return;
    e->last_progress = now;
    fprintf(stderr, "killshim-inject: [%.1fs] thread %d: %s: %s\n", now - e->t0, (int)e->r.tid,
            mode, e->r.pending[0] ? e->r.pending : "requested");
}

/* Waits until the thread is gone or UNTIL passes. Returns 1 gone, 0 not yet,
 * 2 the abort step was refused after it was accepted (the shim found no safe
 * way out once the thread looked at its stack), 3 the thread swallowed the
 * python step's exception, or -(exit code). The /proc check comes after the graveyard's: the grave is
 * written on the thread's way out, the task disappears a moment later. */
int ksi_wait_gone(struct ksi_end *e, double until, const char *mode)
{
    int ended = 0;
    unsigned pause_us = KSI_POLL_FIRST_US;
    for (;;) {
        if (ksi_process_gone(e->r.pid)) {
            e->r.process_exited = 1;
            return 1;
        }
        if (!ended) {
            int rc = ksi_poll_status(e);
            if (rc < 0) {
                if (ksi_process_gone(e->r.pid)) {
                    e->r.process_exited = 1;
                    return 1;
                }
                return rc;
            }
            if ((rc == 2 && strcmp(mode, "abort") == 0) || rc == 3)
                return rc;
            ended = rc == 1;
        }
        if (ended && !ksi_task_alive(e->r.pid, e->r.tid))
            return 1;
        if (ksi_now() >= until)
            return 0;
        if (!ended)
            ksi_progress(e, mode, 0);
        usleep(pause_us);
        pause_us = pause_us * 2 < KSI_POLL_MAX_US ? pause_us * 2 : KSI_POLL_MAX_US;
    }
}
