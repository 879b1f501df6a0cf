/* The offsets one CPython version's own headers give (Py_BUILD_CORE for the
 * internal ones), in the shim's table's shape: what pyframes_layout_test
 * compares the shim's row for that version with. Compiled once per version
 * (tests/unit/BUILD): against Debian 12's python3.11-dev, and against the
 * 3.9 and 3.13 -dev headers tools/pythons.sh unpacks; KS_PYL_PROBE names
 * each copy's functions. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <frameobject.h>
#include <internal/pycore_interp.h>
#include <internal/pycore_runtime.h>
#if PY_MINOR_VERSION >= 11
#include <internal/pycore_code.h>
#include <internal/pycore_frame.h>
#endif
#include <stddef.h>
#include <string.h>

#include "pyframes_layout_c.h"

#define KS_CAT2(a, b) a##b
#define KS_CAT(a, b) KS_CAT2(a, b)
#define KS_P(name) KS_CAT(name, KS_PYL_PROBE)

static void ks_pyl_fill(struct ks_pyl *l)
{
    memset(l, 0, sizeof *l);
    l->minor = PY_MINOR_VERSION;
    l->rt_interp_main = offsetof(_PyRuntimeState, interpreters.main);
#if PY_MINOR_VERSION >= 12
    l->rt_gil = -1;
    l->is_gil = offsetof(PyInterpreterState, ceval.gil);
#else
    l->rt_gil = offsetof(_PyRuntimeState, ceval.gil);
    l->is_gil = -1;
#endif
    l->gil_holder = offsetof(struct _gil_runtime_state, last_holder);
    l->gil_locked = offsetof(struct _gil_runtime_state, locked);
    l->gil_cond = offsetof(struct _gil_runtime_state, cond);
    l->gil_mutex = offsetof(struct _gil_runtime_state, mutex);
    l->ts_next = offsetof(PyThreadState, next);
    l->ts_interp = offsetof(PyThreadState, interp);
    l->ts_ident = offsetof(PyThreadState, thread_id);
    l->ts_async_exc = offsetof(PyThreadState, async_exc);
#if PY_MINOR_VERSION < 11
    l->is_threads_head = offsetof(PyInterpreterState, tstate_head);
    l->ts_native_id = -1;
    l->ts_cframe = -1;
    l->ts_frame = offsetof(PyThreadState, frame);
    l->fr_code = offsetof(PyFrameObject, f_code);
    l->fr_previous = offsetof(PyFrameObject, f_back);
    l->fr_instr = -1;
    l->fr_lasti = offsetof(PyFrameObject, f_lasti);
    l->fr_owner = -1;
    l->fr_size = offsetof(PyFrameObject, f_lasti) + sizeof(int);
    l->co_linetable = offsetof(PyCodeObject, co_lnotab);
    l->co_lnotab = 1;
    l->co_code = -1;
    l->co_size = sizeof(PyCodeObject);
#else
    l->is_threads_head = offsetof(PyInterpreterState, threads.head);
    l->ts_native_id = offsetof(PyThreadState, native_thread_id);
    l->fr_previous = offsetof(_PyInterpreterFrame, previous);
    l->fr_lasti = -1;
    l->fr_size = sizeof(_PyInterpreterFrame);
    l->co_linetable = offsetof(PyCodeObject, co_linetable);
    l->co_lnotab = 0;
    l->co_code = offsetof(PyCodeObject, co_code_adaptive);
    l->co_size = offsetof(PyCodeObject, co_code_adaptive) + sizeof(_Py_CODEUNIT);
#if PY_MINOR_VERSION >= 13
    l->ts_cframe = -1;
    l->ts_frame = offsetof(PyThreadState, current_frame);
    l->fr_code = offsetof(_PyInterpreterFrame, f_executable);
    l->fr_instr = offsetof(_PyInterpreterFrame, instr_ptr);
    l->fr_owner = offsetof(_PyInterpreterFrame, owner);
    l->fr_owner_cstack = FRAME_OWNED_BY_CSTACK;
#else
    l->ts_cframe = offsetof(PyThreadState, cframe);
    l->ts_frame = offsetof(_PyCFrame, current_frame);
    l->fr_code = offsetof(_PyInterpreterFrame, f_code);
    l->fr_instr = offsetof(_PyInterpreterFrame, prev_instr);
    l->fr_owner = -1;
#endif
#endif
    l->co_filename = offsetof(PyCodeObject, co_filename);
    l->co_name = offsetof(PyCodeObject, co_name);
    l->co_firstlineno = offsetof(PyCodeObject, co_firstlineno);
    l->str_state = offsetof(PyASCIIObject, state);
    l->str_length = offsetof(PyASCIIObject, length);
    l->str_ascii_data = sizeof(PyASCIIObject);
    l->str_compact_data = sizeof(PyCompactUnicodeObject);
    l->bytes_size = offsetof(PyVarObject, ob_size);
    l->bytes_data = offsetof(PyBytesObject, ob_sval);
}

/* The bits of PyASCIIObject.state the reader decodes: kind at bit 2 (3
 * bits), compact at 5, ascii at 6. */
static unsigned ks_pyl_bits(unsigned kind, unsigned compact, unsigned ascii)
{
    PyASCIIObject o;
    memset(&o, 0, sizeof o);
    o.state.kind = kind;
    o.state.compact = compact;
    o.state.ascii = ascii;
    unsigned v;
    memcpy(&v, &o.state, sizeof v);
    return v;
}

#if PY_MINOR_VERSION == 13
#include "shim/control/pyframes_dbg.h"

/* The shim's copy of _Py_DebugOffsets' head against the header's: the
 * first field that differs, or NULL. */
static const char *ks_pyl_dbg(void)
{
#define KS_DBG(mine, theirs)                                                        \
    if (offsetof(struct ks_pydbg313, mine) != offsetof(_Py_DebugOffsets, theirs)) \
        return #theirs;
    if (offsetof(_PyRuntimeState, debug_offsets) != 0)
        return "_PyRuntimeState.debug_offsets is not first";
    KS_DBG(version, version);
    KS_DBG(free_threaded, free_threaded);
    KS_DBG(rt_interpreters_head, runtime_state.interpreters_head);
    KS_DBG(is_threads_head, interpreter_state.threads_head);
    KS_DBG(is_ceval_gil, interpreter_state.ceval_gil);
    KS_DBG(is_gil_runtime_state, interpreter_state.gil_runtime_state);
    KS_DBG(is_gil_locked, interpreter_state.gil_runtime_state_locked);
    KS_DBG(is_gil_holder, interpreter_state.gil_runtime_state_holder);
    KS_DBG(ts_next, thread_state.next);
    KS_DBG(ts_interp, thread_state.interp);
    KS_DBG(ts_current_frame, thread_state.current_frame);
    KS_DBG(ts_thread_id, thread_state.thread_id);
    KS_DBG(ts_native_thread_id, thread_state.native_thread_id);
    KS_DBG(fr_size, interpreter_frame.size);
    KS_DBG(fr_previous, interpreter_frame.previous);
    KS_DBG(fr_executable, interpreter_frame.executable);
    KS_DBG(fr_instr_ptr, interpreter_frame.instr_ptr);
    KS_DBG(fr_owner, interpreter_frame.owner);
    KS_DBG(co_filename, code_object.filename);
    KS_DBG(co_name, code_object.name);
    KS_DBG(co_linetable, code_object.linetable);
    KS_DBG(co_firstlineno, code_object.firstlineno);
    KS_DBG(co_code_adaptive, code_object.co_code_adaptive);
    KS_DBG(bytes_ob_size, bytes_object.ob_size);
    KS_DBG(bytes_ob_sval, bytes_object.ob_sval);
    KS_DBG(str_state, unicode_object.state);
    KS_DBG(str_length, unicode_object.length);
    KS_DBG(str_asciiobject_size, unicode_object.asciiobject_size);
#undef KS_DBG
    if (sizeof(struct ks_pydbg313) > sizeof(_Py_DebugOffsets))
        return "sizeof";
    return NULL;
}
#endif

const struct ks_pyl_probe KS_P(ks_pyl_probe_) = {
    .version = PY_VERSION,
    .fill = ks_pyl_fill,
    .state_bits = ks_pyl_bits,
#if PY_MINOR_VERSION == 13
    .dbg = ks_pyl_dbg,
#endif
};
