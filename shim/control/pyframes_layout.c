/* See pyframes.h: one row per CPython minor version, from that version's
 * own headers (Include/internal/pycore_runtime.h, pycore_interp.h,
 * pycore_gil.h, pycore_frame.h, cpython/pystate.h, cpython/code.h,
 * cpython/frameobject.h, cpython/unicodeobject.h), for x86_64, the default
 * (GIL, release) build. tests/unit/pyframes_layout_test checks every row
 * field by field against offsetof on that version's headers, and
 * tests/e2e/python_stack_test (and its _39, _313 variants) reads a real
 * interpreter of each version with it:
 *
 * - 3.9: Debian 11's python3.9 3.9.2 (tools/pythons.sh).
 * - 3.11: Debian 12's python3.11 3.11.2 (and, by hand, a pyenv-built 3.11.7
 *   with a shared libpython).
 * - 3.13: Debian 13's python3.13 3.13.5 (tools/pythons.sh). 3.13 also
 *   publishes most of these offsets itself (_PyRuntime.debug_offsets):
 *   pyframes_dbg.c checks them against this row in the running process.
 *
 * 3.8, 3.10 and 3.12 have no row: no interpreter of theirs could be run
 * here to prove one, and a wrong offset would read garbage as frames (never
 * crash: every read is fault-proof and checked, but garbage all the same).
 * Their frames are not read, and the stack says so (pyframes.c). Both
 * differ from their neighbours (upstream's history, not checked here
 * against their headers): in 3.10 f_lasti counts code units and
 * co_linetable replaced co_lnotab with a format of its own; in 3.12 the GIL
 * moved into the interpreter (as 3.13) while _PyCFrame remained (as 3.11). */
#include "pyframes.h"

#include <stddef.h>

static const struct ks_pyl ks_pyl_rows[] = {
    {
        .minor = 9,
        .rt_interp_main = 40,
        .rt_gil = 352,            /* _PyRuntime.ceval.gil */
        .is_gil = -1,
        .gil_holder = 8,
        .gil_locked = 16,
        .gil_cond = 32,
        .gil_mutex = 80,
        .is_threads_head = 8,     /* tstate_head */
        .ts_next = 8,
        .ts_interp = 16,
        .ts_ident = 176,
        .ts_native_id = -1,       /* none: found by its pthread_t (ts_ident) */
        .ts_async_exc = 168,
        .ts_cframe = -1,
        .ts_frame = 24,           /* PyThreadState.frame, a PyFrameObject */
        .fr_code = 32,
        .fr_previous = 24,        /* f_back */
        .fr_size = 108,           /* up to f_lasti */
        .fr_instr = -1,
        .fr_lasti = 104,          /* a byte offset into co_code */
        .fr_owner = -1,
        .co_lnotab = 1,
        .co_filename = 104,
        .co_name = 112,
        .co_firstlineno = 40,
        .co_linetable = 120,      /* co_lnotab */
        .co_size = 176,
        .co_code = -1,
        .str_state = 32,
        .str_length = 16,
        .str_ascii_data = 48,     /* sizeof(PyASCIIObject) */
        .str_compact_data = 72,   /* sizeof(PyCompactUnicodeObject) */
        .bytes_size = 16,
        .bytes_data = 32,
    },
    {
        .minor = 11,
        .rt_interp_main = 48,
        .rt_gil = 360,
        .is_gil = -1,
        .gil_holder = 8,
        .gil_locked = 16,
        .gil_cond = 32,
        .gil_mutex = 80,
        .is_threads_head = 16,
        .ts_next = 8,
        .ts_interp = 16,
        .ts_ident = 152,
        .ts_native_id = 160,
        .ts_async_exc = 144,
        .ts_cframe = 56,
        .ts_frame = 8,            /* _PyCFrame.current_frame */
        .fr_code = 32,
        .fr_previous = 48,
        .fr_size = 80,
        .fr_instr = 56,           /* prev_instr */
        .fr_lasti = -1,
        .fr_owner = -1,
        .co_lnotab = 0,
        .co_filename = 112,
        .co_name = 120,
        .co_firstlineno = 72,
        .co_linetable = 136,
        .co_size = 192,
        .co_code = 184,           /* co_code_adaptive */
        .str_state = 32,
        .str_length = 16,
        .str_ascii_data = 48,
        .str_compact_data = 72,
        .bytes_size = 16,
        .bytes_data = 32,
    },
    {
        .minor = 13,
        .rt_interp_main = 640,
        .rt_gil = -1,
        .is_gil = 16,             /* PyInterpreterState.ceval.gil */
        .gil_holder = 8,
        .gil_locked = 16,
        .gil_cond = 32,
        .gil_mutex = 80,
        .is_threads_head = 7344,
        .ts_next = 8,
        .ts_interp = 16,
        .ts_ident = 152,
        .ts_native_id = 160,
        .ts_async_exc = 144,
        .ts_cframe = -1,
        .ts_frame = 72,           /* current_frame */
        .fr_code = 0,             /* f_executable */
        .fr_previous = 8,
        .fr_size = 80,
        .fr_instr = 56,           /* instr_ptr */
        .fr_lasti = -1,
        .fr_owner = 70,
        .fr_owner_cstack = 3,     /* FRAME_OWNED_BY_CSTACK: an entry frame */
        .co_lnotab = 0,
        .co_filename = 112,
        .co_name = 120,
        .co_firstlineno = 68,
        .co_linetable = 136,
        .co_size = 208,
        .co_code = 200,           /* co_code_adaptive */
        .str_state = 32,
        .str_length = 16,
        .str_ascii_data = 40,     /* no wstr since 3.12 */
        .str_compact_data = 56,
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
