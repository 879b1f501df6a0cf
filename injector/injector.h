/* killshim-inject: the pieces of the CLI and the contract between them. */
#ifndef KSI_INJECTOR_H
#define KSI_INJECTOR_H

#include <stdio.h>
#include <sys/types.h>

#include "err.h"   /* ksi_err: every action reports through it */

/* Exit codes: documented in --help, the README and killshim-inject(1).
 * Scripts rely on them: never renumber. */
enum ksi_exit {
    KSI_EXIT_OK = 0,
    KSI_EXIT_ERROR = 1,        /* anything not listed below */
    KSI_EXIT_USAGE = 2,        /* bad command line */
    KSI_EXIT_PENDING = 3,      /* the thread is still alive at --timeout */
    KSI_EXIT_NO_PROCESS = 4,   /* no such process */
    KSI_EXIT_NO_SHIM = 5,      /* the process does not run the shim */
    KSI_EXIT_PERMISSION = 6,   /* not the process's user, nor root */
    KSI_EXIT_PROTOCOL = 7,     /* protocol version mismatch or malformed reply */
    KSI_EXIT_NO_THREAD = 8,    /* no such thread in the process */
    KSI_EXIT_REFUSED = 9,      /* the shim refused: the action cannot be safe */
    KSI_EXIT_LEFT_LOCKS = 10,  /* the thread is gone, but left pthread locks held */
};

enum ksi_mode { KSI_MODE_AUTO, KSI_MODE_FLAG, KSI_MODE_CANCEL, KSI_MODE_ABORT, KSI_MODE_PYTHON };

struct ksi_opts {
    pid_t pid;
    pid_t tid;               /* 0: none given */
    int json;
    int all;                 /* list the shim's own threads too; --stack: its frames */
    int stack;               /* --stack */
    enum ksi_mode mode;
    double grace_s;          /* --grace */
    double timeout_s;        /* --timeout */
    int timeout_set;         /* --timeout was given */
    int force;
    const char *flag_symbol; /* --flag-symbol NAME[=VALUE] */
    const char *raise;       /* --raise NAME: python mode's exception (NULL: SystemExit) */
    int attach;              /* --attach: load the shim first if it is not there */
    const char *shim;        /* --shim PATH: the library --attach loads */
};

/* The actions; each returns an exit code and prints its own errors. */
int ksi_do_list(const struct ksi_opts *o);
int ksi_do_stack(const struct ksi_opts *o);
int ksi_do_end(const struct ksi_opts *o);
/* --attach (attach.c): loads the shim into o->pid if it is not there yet.
 * Returns KSI_EXIT_OK or an exit code (its error printed). */
int ksi_do_attach(const struct ksi_opts *o);

#endif
