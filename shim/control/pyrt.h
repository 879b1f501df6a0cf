/* CPython seen from inside: find the interpreter in the process, take its
 * GIL from a shim thread, map a native thread to its Python thread, and
 * raise an exception in it (PyThreadState_SetAsyncExc). docs/python.md.
 *
 * The interpreter is found at run time through its exported C API (a
 * libpython3.x.so, or a python3 binary that links libpython statically and
 * exports the API for its extension modules, as Debian's does): the shim
 * has no build-time dependency on Python and supports no version it cannot
 * check at run time (3.8 to 3.13, the default GIL build).
 *
 * Every call into Python runs in a throwaway shim thread that holds the GIL
 * (PyGILState_Ensure); the caller waits at most its timeout and never takes
 * the GIL itself: a connection thread never hangs on a GIL another thread
 * keeps (a C call that does not release it). A call that comes too late is
 * abandoned: the throwaway thread then does nothing under the GIL.
 *
 * Control side only: dlsym, threads, Python's allocator. Never call these
 * with the registry lock held (a Python thread may wait on it, in a hook,
 * while it holds the GIL). */
#ifndef KS_PYRT_H
#define KS_PYRT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shim/common/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What CPython knows about one native thread. */
struct ks_py_thread {
    int found;                /* 1: a thread state of the main interpreter is TID's */
    uint64_t ident;           /* threading's ident (PyThreadState_GetID) */
    char name[64];            /* threading.Thread's name, "" if threading has none */
    int exc;                  /* async exception: -1 unknown layout, 0 none, 1 set, not taken */
    char why[200];            /* not asked: why (no CPython, the GIL busy...) */
};

/* 1 if the process has CPython whose API the shim can use (found once). */
int ks_py_present(void);

/* What CPython knows of TID, under the GIL within TIMEOUT_MS. Returns 0
 * (P filled: P->found 0 if CPython has no thread state for TID), or an
 * errno with WHY filled in: ENOENT no CPython, EBUSY the GIL was not free in
 * time, ESHUTDOWN not initialized or finalizing, EINVAL not a supported
 * build. */
int ks_py_thread_of(pid_t tid, struct ks_py_thread *p, int timeout_ms, char *why, size_t cap);

/* Raises the builtins exception EXC (a BaseException subclass, by name) in
 * TID's Python thread: the thread sees it at its next Python instruction,
 * or when the C call it is in returns. Returns 0 (P filled) or an errno
 * with WHY filled in: as ks_py_thread_of, and ESRCH not a Python thread,
 * EINVAL EXC is no exception of builtins. Nothing was done on an error. */
int ks_py_raise(pid_t tid, const char *exc, struct ks_py_thread *p, int timeout_ms, char *why,
                size_t cap);

/* The addresses a reader of CPython's memory starts from, without the GIL
 * (pyframes.c): the runtime state and the type objects it checks what it
 * reads against. */
struct ks_py_addrs {
    int minor;                /* 3.MINOR */
    const void *runtime;      /* &_PyRuntime */
    const void *code_type, *unicode_type, *bytes_type;
};

/* Fills A if CPython is present and exports them all. Returns 0 or an errno
 * with WHY filled in (ENOENT no CPython, EINVAL unsupported). */
int ks_py_addrs(struct ks_py_addrs *a, char *why, size_t cap);

/* One thread CPython knows, for "list". */
struct ks_py_row {
    pid_t tid;                /* its native id (0: not known) */
    uint64_t ident;
    uintptr_t ts;             /* its thread state (0: not known, 3.8 to 3.10) */
    char name[64];
};

/* Every thread of the main interpreter, at most CAP into ROWS (*N), under
 * the GIL within TIMEOUT_MS. Returns 0 or an errno with WHY filled in (as
 * ks_py_thread_of). */
int ks_py_list(struct ks_py_row *rows, int cap, int *n, int timeout_ms, char *why, size_t wcap);

/* How many workers whose caller gave up on them still wait for the GIL
 * (none has got it since). */
int ks_py_abandoned(void);

/* The fields of P on a reply line: py_ident, py_name, py_exc
 * (none|set|unknown); py=no if P->found is 0; py=unknown py_why=... if
 * CPython could not be asked (P->why). */
void ks_py_out(struct ks_out *out, const struct ks_py_thread *p);

#ifdef __cplusplus
}
#endif
#endif
