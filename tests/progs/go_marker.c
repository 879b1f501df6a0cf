/* The symbol by which killshim knows a Go runtime (shim/safepoint/langrt.c):
 * every cgo program and Go c-shared library exports _cgo_topofstack. Linked
 * into a copy of threads_basic (go_like), which stands in for a Go program
 * where no Go toolchain is installed. Never called. */
void _cgo_topofstack(void) {}
