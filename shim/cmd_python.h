/* The protocol's Python parts (docs/python.md): "end mode=python" and the
 * py_* fields of "status python=1". Called by cmd_end.c; the CPython
 * access itself is pyrt.c's. */
#ifndef KS_CMD_PYTHON_H
#define KS_CMD_PYTHON_H

#include <stdint.h>
#include <sys/types.h>

#include "cmd_view.h"
#include "proto.h"
#include "pyrt.h"

/* end tid=TID [id=ID] mode=python [exc=NAME]: raises NAME (default
 * SystemExit) in TID's Python thread and answers as "end" does, with the
 * py_* fields; or err code=refused (msg says why) when nothing was done. */
void ks_end_python(const struct ks_msg *req, struct ks_out *out, pid_t tid, uint64_t id);

/* status ... python=1: asks CPython about V's thread (alive) into P and
 * points V->py at it. Without python=1, nothing (no GIL taken). */
void ks_status_python(const struct ks_msg *req, struct ks_view *v, struct ks_py_thread *p);

#endif
