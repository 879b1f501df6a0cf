/* killshim-inject PID TID: what the end action learns, shared between the
 * driver (end.c: the ladder and the wait) and the report (end_report.c). */
#ifndef KSI_END_H
#define KSI_END_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "injector.h"
#include "shim/common/proto.h"

#define KSI_MAX_STEPS 3

struct ksi_step {
    const char *mode;         /* "flag", "cancel", "abort", "python" */
    double at_s;              /* sent this long after the first request */
    int accepted;             /* 0: refused (message says why) */
    char message[400];        /* the refusal, or the pending reason it answered */
};

enum ksi_outcome {
    KSI_GONE,                 /* the thread is gone (graveyard and /proc agree) */
    KSI_PENDING,              /* still alive at --timeout */
    KSI_REFUSED,              /* every step was refused */
};

struct ksi_end_result {
    pid_t pid, tid;
    pid_t host_tid;           /* TID in the injector's pid namespace, for /proc */
    uint64_t id;
    char name[64];            /* its comm, read before anything was asked */
    enum ksi_outcome outcome;
    double elapsed_s;         /* from the first request to "gone" (or timeout) */
    struct ksi_step steps[KSI_MAX_STEPS];
    int nsteps;
    /* When gone (from the graveyard; how "" if the process itself exited): */
    char how[16];             /* returned, exited, cancelled, aborted */
    char requested[32];       /* modes asked of it, e.g. "flag,cancel" */
    uint64_t site;            /* where it left; 0 unknown */
    uint64_t start;           /* its start routine */
    int locks_left;
    int process_exited;
    int pre_attach;           /* it started before the shim was attached: how it
                                 ended and the locks it left are not known */
    /* Aborted: how it left, the frames whose cleanups ran, the locks it left
     * held (addresses) and a note (e.g. a cond's mutex the shim unlocked). */
    char abort_how[24];
    uint64_t cleanup[8];
    int ncleanup;
    uint64_t left[4];
    int nleft;
    char abort_note[128];
    /* When pending: */
    char pending[400];
    uint64_t abort_where;     /* the code an abort's pending or refusal reason is about */
    /* The status of first contact: started by a language runtime (the shim's
     * refusal, "" if not). */
    char runtime[300];
    /* Gone with locks left: the threads blocked on them when it was gone. */
    struct ksi_waiter {
        long tid;
        char name[64];
        uint64_t lock;
    } waiters[16];
    int nwaiters;
    /* CPython's view (status python=1, docs/python.md; end_python.c). */
    struct ksi_py {
        int known;            /* 1 a Python thread, 0 not, -1 CPython not asked (why) */
        uint64_t ident;       /* threading's ident */
        char name[64];        /* threading.Thread's name */
        char why[200];
        char exc[64];         /* the exception raised ("" none yet) */
        char state[8];        /* its async exception at the last look: none, set, unknown */
        double raised_at;     /* seconds after the first request; -1 not raised */
        double taken_at;      /* first look that found it taken; -1 not yet */
        double polled_at;     /* last python=1 look */
        int swallowed;        /* taken, and the thread ran on past --grace */
    } py;
};

/* end_python.c: the python mode's part of the wait and the report. */
/* Takes the py_* fields of a status or end reply M, AT seconds in. */
void ksi_py_take(struct ksi_end_result *r, const struct ks_msg *m, double at);
/* While the python step waits: what R->pending says (taken or not, what
 * the thread is in), and 1 once the thread has swallowed the exception
 * (taken more than GRACE seconds ago, still alive) at NOW. */
int ksi_py_pending(struct ksi_end_result *r, double now, double grace);
/* The report's python line (text), and its JSON object. */
void ksi_py_report_text(const struct ksi_end_result *r);
struct json_object;
struct json_object *ksi_py_report_json(const struct ksi_end_result *r);

/* end_names.c: a name in place of an address in the shim's messages. */
/* An abort's pending or refusal reason about code at R->abort_where: appends
 * " [in FUNCTION]" to R->pending. */
void ksi_name_where(struct ksi_end_result *r);
/* A cancel refused for a frame (M's frame and frame_text): the function's
 * name in place of frame_text in MSG. */
void ksi_name_frame(pid_t pid, const struct ks_msg *m, char *msg, size_t cap);
/* A waiting cancel about the lock M's pending_lock: "NAME (0x...)" in place
 * of its address in R->pending. */
void ksi_name_lock(struct ksi_end_result *r, const struct ks_msg *m);

/* end_waiters.c: fills R->waiters, the threads blocked now on a lock R
 * says the thread left held (a "list" on C). */
struct ksi_client;
void ksi_find_waiters(struct ksi_client *c, struct ksi_end_result *r);

/* Prints the report (text or JSON) on stdout. PID must still be readable for
 * symbols; without it addresses are printed raw. */
void ksi_end_report(const struct ksi_opts *o, const struct ksi_end_result *r);
/* The mode that ended the thread, judged from how it ended and what was asked. */
const char *ksi_end_mode_that_worked(const struct ksi_end_result *r);

/* The driver's state, shared by end.c (the steps) and end_wait.c (the wait). */
#include "client.h"
#include "deadline.h"   /* ksi_now */
#include "flagvar.h"

struct ksi_end {
    const struct ksi_opts *o;
    struct ksi_client c;
    struct ksi_flagvar var;   /* --flag-symbol: the variable, if var.name[0] */
    double t0;                /* when the first request went out */
    double last_progress;
    struct ksi_end_result r;
};

static inline void ksi_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* end_wait.c. Takes a status or end answer M: returns 1 if it says the
 * thread ended (R filled from its grave), else 0 with R's pending reason and
 * lock. */
int ksi_take_state(struct ksi_end_result *r, const struct ks_msg *m);
/* "[1.2s] thread N: MODE: pending" on stderr, at most every second unless FORCE. */
void ksi_progress(struct ksi_end *e, const char *mode, int force);
/* Waits until the thread is gone or UNTIL passes. Returns 1 gone, 0 not yet,
 * 2 the abort step was refused after it was accepted, 3 the thread swallowed
 * the python step's exception, or -(exit code). */
int ksi_wait_gone(struct ksi_end *e, double until, const char *mode);

#endif
