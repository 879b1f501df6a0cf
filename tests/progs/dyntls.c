/* A library with a thread-local stop variable, loaded with dlopen by
 * end_victims (kind "dyntls"): its TLS is dynamic, which --flag-symbol
 * refuses. */
__thread volatile int dyn_stop;

int dyntls_stop_requested(void) { return dyn_stop; }
