#define Py_BUILD_CORE 1
#include <Python.h>
#include <internal/pycore_runtime.h>
#include <internal/pycore_interp.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_code.h>
#include <stddef.h>
#include <stdio.h>
#define P(t,f) printf("%-40s %zu\n", #t "." #f, offsetof(t,f))
int main(void){
 P(_PyRuntimeState, interpreters.head);
 P(_PyRuntimeState, interpreters.main);
 P(_PyRuntimeState, ceval.gil);
 P(_PyRuntimeState, ceval.gil.last_holder);
 P(_PyRuntimeState, ceval.gil.locked);
 P(_PyRuntimeState, ceval.gil.cond);
 P(_PyRuntimeState, ceval.gil.mutex);
 P(_PyRuntimeState, ceval.gil.switch_cond);
 P(_PyRuntimeState, ceval.gil.switch_mutex);
 P(_PyRuntimeState, gilstate.tstate_current);
 P(PyInterpreterState, next);
 P(PyInterpreterState, threads.head);
 P(PyThreadState, next);
 P(PyThreadState, interp);
 P(PyThreadState, cframe);
 P(PyThreadState, thread_id);
 P(PyThreadState, native_thread_id);
 P(PyThreadState, async_exc);
 P(_PyCFrame, current_frame);
 P(_PyInterpreterFrame, f_code);
 P(_PyInterpreterFrame, previous);
 P(_PyInterpreterFrame, prev_instr);
 P(_PyInterpreterFrame, owner);
 P(PyCodeObject, co_filename);
 P(PyCodeObject, co_name);
 P(PyCodeObject, co_qualname);
 P(PyCodeObject, co_linetable);
 P(PyCodeObject, co_firstlineno);
 P(PyCodeObject, co_code_adaptive);
 P(PyBytesObject, ob_sval);
 P(PyVarObject, ob_size);
 P(PyObject, ob_type);
 P(PyASCIIObject, length);
 P(PyASCIIObject, state);
 printf("sizeof ascii %zu compact %zu\n", sizeof(PyASCIIObject), sizeof(PyCompactUnicodeObject));
 printf("sizeof tstate %zu interp frame %zu\n", sizeof(PyThreadState), sizeof(_PyInterpreterFrame));
 printf("PY_VERSION %s\n", PY_VERSION);
 return 0;}
