/* killshim-inject PID TID: end one thread, wait until it is really gone,
 * report how. The ladder (--mode auto): flag, then cancel after --grace, then
 * abort after another --grace, stopping at the first that works. "Gone"
 * means both: the shim's graveyard says how it ended, and the kernel no
 * longer has the task (or only as a zombie). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "end.h"
#include "flagvar.h"
#include "injector.h"
#include "nspid.h"
#include "shim/common/procfs.h"
#include "symbolize.h"

static int ksi_write_var(struct ksi_end *e, struct ksi_step *s);

/* Sends one step. Returns 1 if the answer already says the thread ended, 0
 * otherwise (the step records whether it was accepted), or -(exit code). */
static int ksi_send_step(struct ksi_end *e, const char *mode)
{
    struct ksi_step *s = &e->r.steps[e->r.nsteps++];
    s->mode = mode;
    s->at_s = e->r.nsteps == 1 ? 0 : ksi_now() - e->t0;
    char line[1024];
    int py = strcmp(mode, "python") == 0;
    if (py)
        snprintf(e->r.py.exc, sizeof e->r.py.exc, "%s", e->o->raise ? e->o->raise : "SystemExit");
    snprintf(line, sizeof line, "end tid=%d id=%" PRIu64 " mode=%s%s%s%s", (int)e->r.tid,
             e->r.id, mode, strcmp(mode, "flag") != 0 && !py && e->o->force ? " force=1" : "",
             py ? " exc=" : "", py ? e->r.py.exc : "");
    struct ks_msg m;
    int rc = strcmp(mode, "flag") == 0 && e->var.name[0] ? ksi_write_var(e, s) : KSI_EXIT_OK;
    if (rc == KSI_EXIT_REFUSED)
        return 0;   /* nothing was asked of the thread; s says why */
    if (rc == KSI_EXIT_OK)
        rc = ksi_request(&e->c, line, NULL, NULL, &m);
    if (rc != KSI_EXIT_OK)
        return -rc;
    if (strcmp(m.verb, "err") == 0) {
        const char *code = ks_msg_get(&m, "code");
        const char *msg = ks_msg_get(&m, "msg");
        if (code && strcmp(code, "no-thread") == 0) {
            e->r.how[0] = '\0';
            return 1;
        }
        if (!code || (strcmp(code, "refused") != 0 && strcmp(code, "unsupported") != 0))
            return -ksi_reply_error(&m);
        s->accepted = 0;
        if (py)
            e->r.py.exc[0] = '\0';   /* nothing was raised */
        ksi_copy(s->message, sizeof s->message, msg ? msg : code);
        if (ks_msg_get(&m, "runtime"))   /* found running a runtime's code */
            ksi_copy(e->r.runtime, sizeof e->r.runtime, ks_msg_get(&m, "runtime"));
        ksi_name_frame(e->r.pid, &m, s->message, sizeof s->message);
        fprintf(stderr, "killshim-inject: [%.1fs] thread %d: %s refused: %s\n", s->at_s,
                (int)e->r.tid, mode, s->message);
        return 0;
    }
    s->accepted = 1;
    if (py) {
        e->r.py.raised_at = s->at_s;
        ksi_py_take(&e->r, &m, s->at_s);
    }
    if (ksi_take_state(&e->r, &m))
        return 1;
    if (py)
        ksi_py_pending(&e->r, s->at_s, e->o->grace_s);
    ksi_copy(s->message, sizeof s->message, e->r.pending);
    ksi_progress(e, mode, 1);
    return 0;
}

/* Flag mode with --flag-symbol: writes the variable (flagvar.h). A failed
 * write refuses the step: nothing is asked of the thread. Returns
 * KSI_EXIT_OK, KSI_EXIT_REFUSED (S says why) or another exit code. */
static int ksi_write_var(struct ksi_end *e, struct ksi_step *s)
{
    char why[300];
    int rc = ksi_flagvar_write(&e->c, e->r.tid, e->r.id, &e->var, why, sizeof why);
    if (rc != KSI_EXIT_REFUSED)
        return rc;
    s->accepted = 0;
    ksi_copy(s->message, sizeof s->message, why);
    fprintf(stderr, "killshim-inject: [%.1fs] thread %d: flag refused: %s\n", s->at_s,
            (int)e->r.tid, why);
    return KSI_EXIT_REFUSED;
}

static int ksi_check_opts(const struct ksi_opts *o)
{
    if (o->flag_symbol && o->mode != KSI_MODE_FLAG && o->mode != KSI_MODE_AUTO) {
        ksi_err("--flag-symbol belongs to --mode flag (or auto, whose first step is flag)");
        return KSI_EXIT_USAGE;
    }
    if (o->force && (o->mode == KSI_MODE_FLAG || o->mode == KSI_MODE_PYTHON)) {
        ksi_err("--force belongs to --mode abort or cancel (or auto, whose later steps they are)");
        return KSI_EXIT_USAGE;
    }
    if (o->raise && o->mode != KSI_MODE_PYTHON && o->mode != KSI_MODE_AUTO) {
        ksi_err("--raise belongs to --mode python (or auto, which uses it on a Python thread)");
        return KSI_EXIT_USAGE;
    }
    return KSI_EXIT_OK;
}

/* First contact: the thread's id (so a recycled tid is never hit) and name.
 * Returns an exit code. */
static int ksi_find_thread(struct ksi_end *e)
{
    char line[64], path[96];
    struct ks_msg m;
    /* auto and python ask CPython too: a Python thread is ended its way. */
    int py = e->o->mode == KSI_MODE_AUTO || e->o->mode == KSI_MODE_PYTHON;
    snprintf(line, sizeof line, "status tid=%d%s", (int)e->r.tid, py ? " python=1" : "");
    int rc = ksi_request(&e->c, line, NULL, NULL, &m);
    if (rc != KSI_EXIT_OK)
        return rc;
    if (strcmp(m.verb, "err") == 0)
        return ksi_reply_error(&m);
    const char *state = ks_msg_get(&m, "state");
    if (!state || strcmp(state, "alive") != 0) {
        const char *how = ks_msg_get(&m, "how"), *ago = ks_msg_get(&m, "ended_ms_ago");
        ksi_err("no such thread: %d in process %d (a thread with that tid ended %s ms ago: %s)",
                (int)e->r.tid, (int)e->r.pid, ago ? ago : "?", how ? how : "?");
        return KSI_EXIT_NO_THREAD;
    }
    ksi_copy(e->r.runtime, sizeof e->r.runtime, ks_msg_get(&m, "runtime"));
    ksi_py_take(&e->r, &m, -1);
    if (ks_msg_get_u64(&m, "id", &e->r.id) != 0) {
        ksi_err("malformed status reply from process %d (no id)", (int)e->r.pid);
        return KSI_EXIT_PROTOCOL;
    }
    /* The tid is the target's own (another pid namespace): /proc here knows
     * the thread by the injector's. */
    e->r.host_tid = ksi_host_tid(e->r.pid, e->r.tid);
    snprintf(path, sizeof path, "/proc/%d/task/%d/comm", (int)e->r.pid, (int)e->r.host_tid);
    if (ks_read_small_file(path, e->r.name, sizeof e->r.name) <= 0)
        ksi_copy(e->r.name, sizeof e->r.name, "?");
    e->r.name[strcspn(e->r.name, "\n")] = '\0';
    return KSI_EXIT_OK;
}

/* The steps the mode takes, in order. auto on a thread CPython knows takes
 * its way only (the flag is nothing Python reads; --force keeps the native
 * ladder). Returns how many; *STEPS points at them. */
static int ksi_pick_steps(const struct ksi_end *e, const char *const **steps)
{
    static const char *const all[] = {"flag", "cancel", "abort", "python"};
    switch (e->o->mode) {
    case KSI_MODE_FLAG: *steps = &all[0]; return 1;
    case KSI_MODE_CANCEL: *steps = &all[1]; return 1;
    case KSI_MODE_ABORT: *steps = &all[2]; return 1;
    case KSI_MODE_PYTHON: *steps = &all[3]; return 1;
    default:
        if (!e->o->force && e->r.py.known == 1) {
            *steps = &all[3];
            return 1;
        }
        *steps = &all[0];
        return 3;
    }
}

/* auto without --force on a thread that runs a language runtime's code (its
 * start routine, or a refusal that said so): no step more, not even the
 * flag. The thread is not the shim's to end: cancel and abort would be
 * refused alike, and the flag is no runtime's way to stop. */
static int ksi_runtime_stops_auto(const struct ksi_end *e)
{
    return e->o->mode == KSI_MODE_AUTO && !e->o->force && e->r.runtime[0];
}

/* The step just waited for was refused by the thread itself once it looked
 * at its stack: nothing was done to it. */
static void ksi_refused_late(struct ksi_end *e, int *accepted)
{
    struct ksi_step *s = &e->r.steps[e->r.nsteps - 1];
    *accepted -= s->accepted;
    s->accepted = 0;
    const char *msg = e->r.pending;
    if (strncmp(msg, "abort refused: ", 15) == 0)
        msg += 15;
    ksi_copy(s->message, sizeof s->message, msg);
    fprintf(stderr, "killshim-inject: [%.1fs] thread %d: abort refused: %s\n",
            ksi_now() - e->t0, (int)e->r.tid, s->message);
}

/* Until when the step just sent is waited for: --grace if a later step
 * follows it (none if it was refused), the deadline for the last one (none
 * if nothing is in flight). */
static double ksi_step_until(const struct ksi_end *e, int last, int accepted, double deadline)
{
    const struct ksi_step *s = &e->r.steps[e->r.nsteps - 1];
    double until = deadline;
    if (!last)
        until = s->accepted ? ksi_now() + e->o->grace_s : ksi_now();
    else if (!accepted)
        until = ksi_now();
    return until > deadline ? deadline : until;
}

/* Runs the steps; fills e->r.outcome. Returns an exit code for failures
 * that are not outcomes (connection lost, protocol). */
static int ksi_run_ladder(struct ksi_end *e)
{
    const char *const *steps;
    int nsteps = ksi_pick_steps(e, &steps);
    e->t0 = ksi_now();
    if (ksi_runtime_stops_auto(e) && strcmp(steps[0], "python") != 0) {
        struct ksi_step *s = &e->r.steps[e->r.nsteps++];
        s->mode = "auto";
        ksi_copy(s->message, sizeof s->message, e->r.runtime);
        fprintf(stderr, "killshim-inject: [0.0s] thread %d: refused: %s\n", (int)e->r.tid,
                s->message);
        e->r.outcome = KSI_REFUSED;
        return KSI_EXIT_OK;
    }
    double deadline = e->t0 + e->o->timeout_s;
    int accepted = 0;
    for (int i = 0; i < nsteps; i++) {
        int rc = ksi_send_step(e, steps[i]);
        if (rc < 0)
            return -rc;
        double until = deadline;
        if (rc == 0) {
            accepted += e->r.steps[e->r.nsteps - 1].accepted;
            if (!e->r.steps[e->r.nsteps - 1].accepted && ksi_runtime_stops_auto(e)) {
                /* Its stack runs a runtime's code: the rest is refused alike. */
                e->r.elapsed_s = ksi_now() - e->t0;
                e->r.outcome = KSI_REFUSED;
                return KSI_EXIT_OK;
            }
            until = ksi_step_until(e, i == nsteps - 1, accepted, deadline);
        }
        rc = ksi_wait_gone(e, until, steps[i]);
        if (rc < 0)
            return -rc;
        if (rc == 2) {
            ksi_refused_late(e, &accepted);
            continue;
        }
        if (rc == 3) {   /* the python step's exception was swallowed */
            fprintf(stderr, "killshim-inject: [%.1fs] thread %d: python: %s\n", ksi_now() - e->t0,
                    (int)e->r.tid, e->r.pending);
            break;
        }
        if (rc == 1) {
            e->r.outcome = KSI_GONE;
            e->r.elapsed_s = ksi_now() - e->t0;
            return KSI_EXIT_OK;
        }
        if (ksi_now() >= deadline)
            break;
    }
    e->r.elapsed_s = ksi_now() - e->t0;
    e->r.outcome = accepted ? KSI_PENDING : KSI_REFUSED;
    return KSI_EXIT_OK;
}

int ksi_do_end(const struct ksi_opts *o)
{
    int rc = ksi_check_opts(o);
    if (rc != KSI_EXIT_OK)
        return rc;
    struct ksi_end *e = calloc(1, sizeof *e);
    if (!e) {
        ksi_err("out of memory");
        return KSI_EXIT_ERROR;
    }
    e->o = o;
    e->r.py.raised_at = e->r.py.taken_at = e->r.py.polled_at = -1;
    e->r.pid = o->pid;
    e->r.tid = o->tid;
    e->r.host_tid = o->tid;
    rc = ksi_connect(o->pid, &e->c);
    if (rc != KSI_EXIT_OK)
        goto out;
    rc = ksi_find_thread(e);
    if (rc == KSI_EXIT_OK && o->flag_symbol)
        rc = ksi_flagvar_find(e->r.pid, o->flag_symbol, &e->var);
    if (rc == KSI_EXIT_OK)
        rc = ksi_run_ladder(e);
    /* It saw its variable and left before the flag request reached it: its
     * grave says nothing was requested, but the flag step asked it. */
    if (rc == KSI_EXIT_OK && e->var.written && e->r.outcome == KSI_GONE &&
        !strstr(e->r.requested, "flag")) {
        char was[sizeof e->r.requested];
        ksi_copy(was, sizeof was, e->r.requested);
        if (!was[0] || strcmp(was, "none") == 0)
            ksi_copy(e->r.requested, sizeof e->r.requested, "flag");
        else
            snprintf(e->r.requested, sizeof e->r.requested, "flag,%.20s", was);
    }
    if (rc == KSI_EXIT_OK && e->r.outcome == KSI_GONE && !e->r.process_exited &&
        e->r.nleft > 0)
        ksi_find_waiters(&e->c, &e->r);
    ksi_close(&e->c);
    if (rc != KSI_EXIT_OK)
        goto out;
    ksi_end_report(o, &e->r);
    /* The whole process gone is not "the thread ended and the rest runs on";
     * nor is a thread gone with a lock that stays locked. */
    if (e->r.outcome == KSI_GONE)
        rc = e->r.process_exited ? KSI_EXIT_ERROR
           : e->r.locks_left > 0 ? KSI_EXIT_LEFT_LOCKS : KSI_EXIT_OK;
    else
        rc = e->r.outcome == KSI_PENDING ? KSI_EXIT_PENDING : KSI_EXIT_REFUSED;
out:
    free(e);
    return rc;
}
