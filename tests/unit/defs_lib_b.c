/* defs_patch_test: an object loaded after the definition was changed. Its
 * constructor, which runs inside the dlopen, calls defs_value as the
 * program's will after it returns. */
int defs_value(void);
int defs_ctor_saw;
int defs_call(void);

__attribute__((constructor)) static void defs_init(void) { defs_ctor_saw = defs_value(); }
int defs_call(void) { return defs_value(); }
