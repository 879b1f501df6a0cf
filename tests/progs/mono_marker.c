/* A symbol by which killshim knows Mono (shim/safepoint/langrt.c): Debian's
 * mono-sgen, which has the runtime linked in, and libmonosgen-2.0.so both
 * export mono_jit_init. Linked into a copy of threads_basic (mono_like),
 * which stands in for a Mono program where Mono is not installed. Never
 * called. */
void mono_jit_init(void) {}
