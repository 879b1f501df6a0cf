/* The protocol's Python parts (docs/python.md): "end mode=python" and the
 * py_* fields of "status python=1". Called by cmd_end.c; the CPython
 * access itself is pyrt.c's. */
#ifndef KS_CMD_PYTHON_H
#define KS_CMD_PYTHON_H

#include <stdint.h>
#include <sys/types.h>

#include "cmd_view.h"
#include "shim/common/proto.h"
#include "pyframes.h"
#include "pyrt.h"

/* end tid=TID [id=ID] mode=python [exc=NAME]: raises NAME (default
 * SystemExit) in TID's Python thread and answers as "end" does, with the
 * py_* fields; or err code=refused (msg says why) when nothing was done. */
void ks_end_python(const struct ks_msg *req, struct ks_out *out, pid_t tid, uint64_t id);

/* status ... python=1: asks CPython about V's thread (alive) into P and
 * points V->py at it. Without python=1, or without CPython in the process,
 * nothing (no GIL taken, no py fields). */
void ks_status_python(const struct ks_msg *req, struct ks_view *v, struct ks_py_thread *p);

/* "list" in a process with CPython: its threads' py_ident, py_name and
 * py_gil (held|waits|released), and on the final line python=N (threads
 * CPython knows) or python_why="..." (not asked: the GIL not free within
 * 50 ms...). The thread states and the GIL are read first without the GIL
 * (pyframes.h): a thread that keeps the GIL still gets py_ident and py_gil
 * when the names cannot be had. Nothing without CPython. */
struct ks_py_list_view {
    int present;              /* CPython in the process */
    struct ks_py_row *rows;   /* malloc'd; NULL if not asked */
    int n;
    char why[200];
    int raw_ok;               /* RAW was read */
    struct ks_pyf raw;
    char raw_why[200];
};
void ks_py_list_take(struct ks_py_list_view *v);   /* asks CPython (at most 50 ms) */
void ks_py_list_fields(struct ks_out *out, const struct ks_py_list_view *v, pid_t tid,
                       int wait_kind, const void *wait_obj);
void ks_py_list_final(struct ks_out *out, struct ks_py_list_view *v);   /* and frees */

/* "stack" in a process with CPython (cmd_pystack.c): a snapshot of its
 * thread states read without the GIL, then each thread's pystack and
 * pyframe records, and the final python record. Nothing without CPython. */
struct ks_pystack {
    int present, ok;
    struct ks_pyf s;
    struct ks_pyf_frame *f;   /* room for KS_PYF_FRAMES_MAX */
    char why[200];
};
void ks_pystack_open(struct ks_pystack *p);
void ks_pystack_out(struct ks_out *out, struct ks_pystack *p, pid_t tid, int wait_kind,
                    const void *wait_obj);
void ks_pystack_final(struct ks_out *out, struct ks_pystack *p);   /* and frees */

#endif
