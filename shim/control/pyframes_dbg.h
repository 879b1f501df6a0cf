/* CPython 3.13's own offsets (_PyRuntime.debug_offsets, "xdebugpy"), read
 * from the running process and checked against the shim's verified row
 * (pyframes_layout.c). docs/python.md. */
#ifndef KS_PYFRAMES_DBG_H
#define KS_PYFRAMES_DBG_H

#include <stddef.h>
#include <stdint.h>

#include "pyframes.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The head of 3.13's _Py_DebugOffsets (Include/internal/pycore_runtime.h),
 * up to the str object's: 64-bit words in the header's order. Its layout
 * is 3.13's only (3.14 adds fields in the middle); the unit test checks it
 * against 3.13's header. */
struct ks_pydbg313 {
    char cookie[8];
    uint64_t version, free_threaded;
    uint64_t rt_size, rt_finalizing, rt_interpreters_head;
    uint64_t is_size, is_id, is_next, is_threads_head, is_gc, is_imports_modules, is_sysdict,
        is_builtins, is_ceval_gil, is_gil_runtime_state, is_gil_enabled, is_gil_locked,
        is_gil_holder;
    uint64_t ts_size, ts_prev, ts_next, ts_interp, ts_current_frame, ts_thread_id,
        ts_native_thread_id, ts_datastack_chunk, ts_status;
    uint64_t fr_size, fr_previous, fr_executable, fr_instr_ptr, fr_localsplus, fr_owner;
    uint64_t co_size, co_filename, co_name, co_qualname, co_linetable, co_firstlineno,
        co_argcount, co_localsplusnames, co_localspluskinds, co_code_adaptive;
    uint64_t ob_size, ob_type;
    uint64_t tp_size, tp_name, tp_repr, tp_flags;
    uint64_t tuple[3], list[3], dict[3], flt[2], lng[3];
    uint64_t bytes_size, bytes_ob_size, bytes_ob_sval;
    uint64_t str_size, str_state, str_length, str_asciiobject_size;
};

/* The header D (copied from the start of _PyRuntime, NULL if unreadable)
 * must be 3.13's with L's offsets: a build whose layout differs (a debug
 * or free-threaded one) is not read. Returns 0, or ENOTSUP with WHY
 * naming the first field that differs. */
int ks_pyf_dbg_check(const struct ks_pyl *l, const struct ks_pydbg313 *d, char *why,
                     size_t cap);

#ifdef __cplusplus
}
#endif
#endif
