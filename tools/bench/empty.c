/* Nothing: see libbench_empty.so in BUILD. */
int kb_empty_library;
