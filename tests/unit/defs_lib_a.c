/* defs_patch_test: the object that defines what a later load binds to (as
 * libc defines pthread_create). */
int defs_value(void);
int defs_value(void) { return 1; }
