/* The offsets CPython 3.11's own headers give (python3.11-dev, with
 * Py_BUILD_CORE for the internal ones), in the table's shape: what
 * pyframes_layout_test compares the shim's 3.11 row with. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_code.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_interp.h>
#include <internal/pycore_runtime.h>
#include <stddef.h>
#include <string.h>

#include "pyframes_layout_c.h"

int ks_pyl_minor_of_headers(void) { return PY_MINOR_VERSION; }
const char *ks_pyl_version_of_headers(void) { return PY_VERSION; }

void ks_pyl_from_headers(struct ks_pyl *l)
{
    memset(l, 0, sizeof *l);
    l->minor = PY_MINOR_VERSION;
    l->rt_interp_main = offsetof(_PyRuntimeState, interpreters.main);
    l->rt_gil_holder = offsetof(_PyRuntimeState, ceval.gil.last_holder);
    l->rt_gil_locked = offsetof(_PyRuntimeState, ceval.gil.locked);
    l->rt_gil_cond = offsetof(_PyRuntimeState, ceval.gil.cond);
    l->rt_gil_mutex = offsetof(_PyRuntimeState, ceval.gil.mutex);
    l->is_threads_head = offsetof(PyInterpreterState, threads.head);
    l->ts_next = offsetof(PyThreadState, next);
    l->ts_interp = offsetof(PyThreadState, interp);
    l->ts_native_id = offsetof(PyThreadState, native_thread_id);
    l->ts_ident = offsetof(PyThreadState, thread_id);
    l->ts_cframe = offsetof(PyThreadState, cframe);
    l->ts_frame = offsetof(_PyCFrame, current_frame);
    l->fr_code = offsetof(_PyInterpreterFrame, f_code);
    l->fr_previous = offsetof(_PyInterpreterFrame, previous);
    l->fr_instr = offsetof(_PyInterpreterFrame, prev_instr);
    l->fr_size = sizeof(_PyInterpreterFrame);
    l->co_filename = offsetof(PyCodeObject, co_filename);
    l->co_name = offsetof(PyCodeObject, co_name);
    l->co_firstlineno = offsetof(PyCodeObject, co_firstlineno);
    l->co_linetable = offsetof(PyCodeObject, co_linetable);
    l->co_code = offsetof(PyCodeObject, co_code_adaptive);
    l->co_size = offsetof(PyCodeObject, co_code_adaptive) + sizeof(_Py_CODEUNIT);
    l->str_state = offsetof(PyASCIIObject, state);
    l->str_length = offsetof(PyASCIIObject, length);
    l->str_ascii_data = sizeof(PyASCIIObject);
    l->str_compact_data = sizeof(PyCompactUnicodeObject);
    l->bytes_size = offsetof(PyVarObject, ob_size);
    l->bytes_data = offsetof(PyBytesObject, ob_sval);
}

/* The bits of PyASCIIObject.state the reader decodes: kind at bit 2 (3
 * bits), compact at 5, ascii at 6. */
unsigned ks_pyl_state_bits(unsigned kind, unsigned compact, unsigned ascii)
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
