/* CPython's threads and frames read from its memory, without the GIL and
 * without stopping anyone, the way py-spy reads another process (here the
 * shim reads its own): a thread that keeps the GIL in a C call still gets
 * its Python frames, and no Python code of the shim runs. docs/python.md.
 *
 * The structures are CPython's private ones: their offsets come from a
 * table per minor version (pyframes_layout.c), taken from that version's
 * headers. A version without a row is not read (the listing and the
 * stacks then show no Python frames, and say why).
 *
 * Every read goes through ks_mem_copy (fault-proof) and every walk is
 * bounded: the threads run on while they are read, so a read may be torn
 * (a frame popped and its memory reused, a thread state freed). What is
 * read is checked (type objects, sizes, the thread state's interpreter);
 * the first check that fails ends the walk and marks it torn. */
#ifndef KS_PYFRAMES_H
#define KS_PYFRAMES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyrt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Offsets into CPython's private structures, for one minor version. -1:
 * the version has no such field. */
struct ks_pyl {
    int minor;
    long rt_interp_main;                  /* _PyRuntimeState.interpreters.main */
    long rt_gil;                          /* .ceval.gil (before 3.12), or -1 and: */
    long is_gil;                          /* PyInterpreterState.ceval.gil, a pointer (3.12+) */
    long gil_holder, gil_locked;          /* in the GIL: last_holder, locked */
    long gil_cond, gil_mutex;             /* cond, mutex */
    long is_threads_head;                 /* PyInterpreterState.threads.head (tstate_head) */
    long ts_next, ts_interp, ts_ident;    /* ts_ident: thread_id (pthread_self) */
    long ts_native_id;                    /* -1 before 3.11: found by ts_ident */
    long ts_async_exc;                    /* the pending asynchronous exception */
    long ts_cframe;                       /* -1: the frame is in the thread state */
    long ts_frame;                        /* _PyCFrame.current_frame, or the state's */
    long fr_code, fr_previous, fr_size;   /* the frame, its code object, its caller */
    long fr_instr;                        /* the code unit being run (3.11+) ... */
    long fr_lasti;                        /* ... or its byte offset, an int (before 3.11) */
    long fr_owner;                        /* a char; a frame owned by the C stack ... */
    int fr_owner_cstack;                  /* ... (this value) has no code: skipped */
    int co_lnotab;                        /* 1: co_linetable is co_lnotab (before 3.10) */
    long co_filename, co_name, co_firstlineno, co_linetable, co_size;
    long co_code;                         /* co_code_adaptive (3.11+) */
    long str_state, str_length, str_ascii_data, str_compact_data;
    long bytes_size, bytes_data;
};

/* The row for 3.MINOR, or NULL. */
const struct ks_pyl *ks_pyl_for(int minor);

/* One Python frame, newest first. */
struct ks_pyf_frame {
    int line;                 /* -1: not known */
    char file[256];
    char func[128];
};

#define KS_PYF_THREADS_MAX 8192   /* thread states walked */
#define KS_PYF_FRAMES_MAX 256     /* frames of one thread */

/* A snapshot of the main interpreter's thread states. */
struct ks_pyf {
    const struct ks_pyl *l;
    struct ks_py_addrs a;
    uintptr_t interp;
    uintptr_t gil, gil_holder;    /* the GIL's state, its last holder */
    int gil_locked;
    int n;
    int torn;                 /* the walk of the thread states stopped early */
    struct ks_pyf_ts {
        pid_t tid;
        uint64_t ident;       /* threading's ident */
        uintptr_t ts;
    } *v;
};

/* Takes the snapshot. Returns 0, or an errno with WHY filled in: ENOENT no
 * CPython, ENOTSUP no layout for its version, ESHUTDOWN no interpreter (not
 * initialized yet or finalized), ENOMEM. Before 3.11 a thread state has no
 * native id: each is matched to the registry's thread of its pthread_t
 * (ident), which takes the registry lock (the caller holds none). */
int ks_pyf_open(struct ks_pyf *s, char *why, size_t cap);
void ks_pyf_close(struct ks_pyf *s);

/* The index of TID's thread state in S, or -1. */
int ks_pyf_find(const struct ks_pyf *s, pid_t tid);

/* Whether the thread of S->v[I] holds the GIL ("held"), is blocked taking
 * it ("waits": the shim saw it enter a wait on the GIL's condition variable
 * or mutex, WAIT_KIND and WAIT_OBJ from its registry record), or neither
 * ("released": it runs C code without the GIL or sits in a call that
 * released it). */
const char *ks_pyf_gil(const struct ks_pyf *s, int i, int wait_kind, const void *wait_obj);

/* S->v[I]'s frames, newest first, at most CAP into F (all of them unless
 * CAP were read). Returns how many;
 * *TORN 1 if a check failed (the frames after it are not given), *MOVED 1
 * if the newest frame changed while they were read (they may then mix two
 * moments of the thread). */
int ks_pyf_frames(const struct ks_pyf *s, int i, struct ks_pyf_frame *f, int cap, int *torn,
                  int *moved);

#ifdef __cplusplus
}
#endif
#endif
