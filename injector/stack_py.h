/* killshim-inject --stack: the Python frames of a thread (the shim's
 * pystack and pyframe records, shim/control/cmd_pystack.c), read and
 * printed above the thread's native frames. */
#ifndef KSI_STACK_PY_H
#define KSI_STACK_PY_H

#include <json-c/json.h>

#include "shim/common/proto.h"

struct ksi_dump;
struct ksi_thr;

struct ksi_pyframe {
    int line;                 /* -1: not known */
    char *file, *func;
};

struct ksi_py {
    char gil[12];             /* held, waits, released */
    int torn, moved, cut, n, cap;
    struct ksi_pyframe *f;
};

/* Takes M if it is one of the Python records (1), else 0; -1 out of memory. */
int ksi_py_collect(const struct ks_msg *m, struct ksi_dump *d);
/* T's Python frames as text (nothing for a thread without them). */
void ksi_py_print_text(const struct ksi_thr *t);
/* The dump's Python line ("Python frames not read: ...") if any. */
void ksi_py_print_header(const struct ksi_dump *d);
/* T's "python" JSON member, NULL for a thread CPython does not know. */
json_object *ksi_py_json(const struct ksi_thr *t);
void ksi_py_free(struct ksi_thr *t);

#endif
