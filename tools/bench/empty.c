/* Preloaded by bench_startup as the cost of preloading anything. */
int kb_empty_library;
