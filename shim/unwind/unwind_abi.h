/* The shim's own __gcc_personality_v0 and _Unwind_Resume, forwarders to
 * libgcc_s's (unwind_abi.c says why the shim does not link libgcc_s). */
#ifndef KS_UNWIND_ABI_H
#define KS_UNWIND_ABI_H

/* Binds the forwarders to the running process's libgcc_s (or the unwinder
 * it has). Not in a signal handler (dlopen, dlsym). Returns 0, or ENOENT if
 * no unwinder is loaded yet: the first call through a forwarder binds then. */
int ks_unwind_abi_bind(void);

#endif
