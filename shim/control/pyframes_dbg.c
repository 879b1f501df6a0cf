/* See pyframes_dbg.h. The row stays the source of the offsets the reader
 * uses (it also holds what the runtime does not publish: the GIL's
 * condition and mutex, the main interpreter, the str's compact size); the
 * runtime's own are the check that this process's CPython is the build
 * the row was measured on. Pure: the caller copies the header (pyframes.c,
 * once per snapshot, fault-proof), so tests/unit/pyframes_layout_test
 * checks this against fabricated headers. */
#include "pyframes_dbg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>


/* Whether D agrees with L; the first field that does not into *BAD. */
static int ks_pyf_dbg_agrees(const struct ks_pyl *l, const struct ks_pydbg313 *d,
                             const char **bad)
{
#define KS_DBG_EQ(want, got, name)            \
    if ((uint64_t)(want) != (got)) {          \
        *bad = name;                          \
        return 0;                             \
    }
    KS_DBG_EQ(l->is_threads_head, d->is_threads_head, "interpreter_state.threads_head");
    KS_DBG_EQ(l->is_gil, d->is_ceval_gil, "interpreter_state.ceval_gil");
    KS_DBG_EQ(l->gil_holder, d->is_gil_holder - d->is_gil_runtime_state,
              "interpreter_state.gil_runtime_state_holder");
    KS_DBG_EQ(l->gil_locked, d->is_gil_locked - d->is_gil_runtime_state,
              "interpreter_state.gil_runtime_state_locked");
    KS_DBG_EQ(l->ts_next, d->ts_next, "thread_state.next");
    KS_DBG_EQ(l->ts_interp, d->ts_interp, "thread_state.interp");
    KS_DBG_EQ(l->ts_frame, d->ts_current_frame, "thread_state.current_frame");
    KS_DBG_EQ(l->ts_ident, d->ts_thread_id, "thread_state.thread_id");
    KS_DBG_EQ(l->ts_native_id, d->ts_native_thread_id, "thread_state.native_thread_id");
    KS_DBG_EQ(l->fr_code, d->fr_executable, "interpreter_frame.executable");
    KS_DBG_EQ(l->fr_previous, d->fr_previous, "interpreter_frame.previous");
    KS_DBG_EQ(l->fr_instr, d->fr_instr_ptr, "interpreter_frame.instr_ptr");
    KS_DBG_EQ(l->fr_owner, d->fr_owner, "interpreter_frame.owner");
    KS_DBG_EQ(l->fr_size, d->fr_size, "interpreter_frame.size");
    KS_DBG_EQ(l->co_filename, d->co_filename, "code_object.filename");
    KS_DBG_EQ(l->co_name, d->co_name, "code_object.name");
    KS_DBG_EQ(l->co_firstlineno, d->co_firstlineno, "code_object.firstlineno");
    KS_DBG_EQ(l->co_linetable, d->co_linetable, "code_object.linetable");
    KS_DBG_EQ(l->co_code, d->co_code_adaptive, "code_object.co_code_adaptive");
    KS_DBG_EQ(l->bytes_size, d->bytes_ob_size, "bytes_object.ob_size");
    KS_DBG_EQ(l->bytes_data, d->bytes_ob_sval, "bytes_object.ob_sval");
    KS_DBG_EQ(l->str_state, d->str_state, "unicode_object.state");
    KS_DBG_EQ(l->str_length, d->str_length, "unicode_object.length");
    KS_DBG_EQ(l->str_ascii_data, d->str_asciiobject_size, "unicode_object.asciiobject_size");
#undef KS_DBG_EQ
    return 1;
}

int ks_pyf_dbg_check(const struct ks_pyl *l, const struct ks_pydbg313 *d, char *why,
                     size_t cap)
{
    const char *bad = NULL;
    if (!d || memcmp(d->cookie, "xdebugpy", 8) != 0)
        bad = "the cookie";
    else if (((d->version >> 16) & 0xffff) != (uint64_t)(0x0300 | l->minor))
        bad = "the version";
    else if (d->free_threaded)
        bad = "free_threaded";
    else
        ks_pyf_dbg_agrees(l, d, &bad);
    if (!bad)
        return 0;
    snprintf(why, cap, "CPython 3.%d: its _PyRuntime.debug_offsets differ from the verified "
             "layout (%s), Python frames are not read", l->minor, bad);
    return ENOTSUP;
}
