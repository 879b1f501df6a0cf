/* See pyframes.h: one row per CPython minor version, from that version's
 * own headers (Include/internal/pycore_runtime.h, pycore_interp.h,
 * pycore_frame.h, cpython/pystate.h, cpython/code.h, cpython/unicodeobject.h),
 * for x86_64. CPython 3.13 exports these offsets itself
 * (_PyRuntime.debug_offsets); 3.8 to 3.12 do not, so debuggers (py-spy,
 * austin) carry tables like this one.
 *
 * 3.11: measured with offsetof against Debian 12's python3.11-dev 3.11.2
 * headers (Py_BUILD_CORE): tests/unit/pyframes_layout_test checks this row
 * against them field by field, and tests/e2e/python_stack_test reads
 * Debian's python3.11 with it (by hand: a pyenv-built 3.11.7 with a shared
 * libpython reads the same). Rows for other versions are to be added the same way,
 * each checked against its headers. */
#include "pyframes.h"

#include <stddef.h>

static const struct ks_pyl ks_pyl_rows[] = {
    {
        .minor = 11,
        .rt_interp_main = 48,
        .rt_gil_holder = 368,
        .rt_gil_locked = 376,
        .rt_gil_cond = 392,
        .rt_gil_mutex = 440,
        .is_threads_head = 16,
        .ts_next = 8,
        .ts_interp = 16,
        .ts_native_id = 160,
        .ts_ident = 152,
        .ts_cframe = 56,
        .ts_frame = 8,            /* _PyCFrame.current_frame */
        .fr_code = 32,
        .fr_previous = 48,
        .fr_instr = 56,           /* prev_instr */
        .fr_size = 80,
        .co_filename = 112,
        .co_name = 120,
        .co_firstlineno = 72,
        .co_linetable = 136,
        .co_code = 184,           /* co_code_adaptive */
        .co_size = 192,
        .str_state = 32,
        .str_length = 16,
        .str_ascii_data = 48,     /* sizeof(PyASCIIObject) */
        .str_compact_data = 72,   /* sizeof(PyCompactUnicodeObject) */
        .bytes_size = 16,
        .bytes_data = 32,
    },
};

const struct ks_pyl *ks_pyl_for(int minor)
{
    for (size_t i = 0; i < sizeof ks_pyl_rows / sizeof ks_pyl_rows[0]; i++)
        if (ks_pyl_rows[i].minor == minor)
            return &ks_pyl_rows[i];
    return NULL;
}
