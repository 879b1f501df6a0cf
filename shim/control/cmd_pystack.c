/* The Python side of "stack": after a thread's "stack" record, for a thread
 * CPython knows (pyframes.h),
 *
 *   pystack tid=T gil=held|waits|released frames=N [torn=1] [moved=1] [cut=1]
 *   pyframe tid=T file=F line=L func=N        (N of them, newest first)
 *
 * and once, before "ok", in a process with CPython:
 *
 *   python threads=N [torn=1]        or        python why=W
 *
 * Read without the GIL, after the native stacks were taken: a thread's
 * Python frames are from a moment a little later than its native ones. */
#include "cmd_python.h"

#include <stdio.h>
#include <stdlib.h>

#include "pyframes.h"

void ks_pystack_open(struct ks_pystack *p)
{
    p->ok = 0;
    p->f = NULL;
    if (!(p->present = ks_py_present()))
        return;
    if (ks_pyf_open(&p->s, p->why, sizeof p->why) != 0)
        return;
    p->f = malloc(KS_PYF_FRAMES_MAX * sizeof *p->f);
    if (!p->f) {
        snprintf(p->why, sizeof p->why, "out of memory");
        ks_pyf_close(&p->s);
        return;
    }
    p->ok = 1;
}

void ks_pystack_out(struct ks_out *out, struct ks_pystack *p, pid_t tid, int wait_kind,
                    const void *wait_obj)
{
    int i = p->ok ? ks_pyf_find(&p->s, tid) : -1;
    if (i < 0)
        return;
    int torn, moved;
    int n = ks_pyf_frames(&p->s, i, p->f, KS_PYF_FRAMES_MAX, &torn, &moved);
    ks_out_word(out, "pystack");
    ks_out_i64(out, "tid", tid);
    ks_out_str(out, "gil", ks_pyf_gil(&p->s, i, wait_kind, wait_obj));
    ks_out_i64(out, "frames", n);
    if (torn)
        ks_out_i64(out, "torn", 1);
    if (moved)
        ks_out_i64(out, "moved", 1);
    if (n == KS_PYF_FRAMES_MAX)
        ks_out_i64(out, "cut", 1);
    ks_out_eol(out);
    for (int k = 0; k < n; k++) {
        ks_out_word(out, "pyframe");
        ks_out_i64(out, "tid", tid);
        ks_out_str(out, "file", p->f[k].file);
        ks_out_i64(out, "line", p->f[k].line);
        ks_out_str(out, "func", p->f[k].func);
        ks_out_eol(out);
    }
}

void ks_pystack_final(struct ks_out *out, struct ks_pystack *p)
{
    if (p->present) {
        ks_out_word(out, "python");
        if (p->ok) {
            ks_out_i64(out, "threads", p->s.n);
            if (p->s.torn)
                ks_out_i64(out, "torn", 1);
        } else {
            ks_out_str(out, "why", p->why);
        }
        ks_out_eol(out);
    }
    if (p->ok)
        ks_pyf_close(&p->s);
    free(p->f);
    p->f = NULL;
    p->ok = 0;
}
