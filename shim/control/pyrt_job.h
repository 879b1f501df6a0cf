/* The calls into CPython of pyrt.c, each run by a throwaway shim thread
 * (pyrt_job.c): the job both sides share, and how the caller waits for it
 * without ever waiting for the GIL itself. Internal to pyrt. */
#ifndef KS_PYRT_JOB_H
#define KS_PYRT_JOB_H

#include <stddef.h>
#include <sys/types.h>

#include "pyrt.h"

enum { KS_PY_PROBE, KS_PY_RAISE, KS_PY_LIST };

/* One call into Python, shared by the caller and the worker. */
struct ks_py_job {
    int refs;          /* the caller and the worker: the last to let go frees it */
    int done;          /* 1 once the worker is through (a futex word) */
    int step;          /* 0 waiting, 1 the worker runs it, 2 abandoned by the caller,
                        * 3 the worker went through without running it */
    int op;
    pid_t tid;
    char exc[64];
    int rc;
    char why[200];
    struct ks_py_thread res;
    struct ks_py_row *rows;   /* KS_PY_LIST: room for caprows, in the job's allocation */
    int nrows, caprows;
    void (*work)(struct ks_py_job *j);   /* ks_py_call's WORK */
};

/* Runs WORK(J) in a new shim thread (pyrt.c's work under the GIL: it takes
 * and releases it; passed in, so that this file calls nothing of pyrt.c's)
 * and waits at most TIMEOUT_MS
 * for the GIL; J (calloc'd) is then shared: the caller lets go with
 * ks_py_put, which frees it once the worker has too. Returns 0 (J's
 * rc and results hold the answer) or an errno with WHY filled in (EBUSY:
 * the GIL was not free in time, nothing was done). */
int ks_py_call(struct ks_py_job *j, void (*work)(struct ks_py_job *j), int timeout_ms,
               char *why, size_t cap);
/* Lets go of J: the last of the caller and the worker frees it. */
void ks_py_put(struct ks_py_job *j);

#endif
