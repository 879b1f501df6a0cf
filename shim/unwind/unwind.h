/* The shim's one binding to libunwind (local unwinding only: the dumps and
 * the abort): a table filled once, when control starts, from
 * dlopen("libunwind.so.8", RTLD_LOCAL). The shim does not link libunwind: a
 * process nobody asks, and every program it execs with the preload
 * inherited, never loads it (nor its liblzma).
 *
 * libunwind.so.8 also defines _Unwind_RaiseException, _Unwind_Resume and the
 * rest of the C++ ABI unwinder; in the global scope ahead of libgcc_s it
 * breaks every cancellation and exception. Opened RTLD_LOCAL, the table works
 * whether or not the library is already in the global scope, and tests can
 * use it without linking libunwind.
 *
 * Everything here is loaded and primed on the accept thread before its first
 * accept (ks_init_serving, shim/init.c): nothing is resolved or loaded later,
 * inside a thread being stopped; before that, ks_unw_ready() is 0 and the
 * doorbell's walk (shim/safepoint/redirect.c) uses its own CFI stepper. */
#ifndef KS_UNWIND_H
#define KS_UNWIND_H

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ks_unw {
    int (*init_local2)(unw_cursor_t *, unw_context_t *, int);
    int (*step)(unw_cursor_t *);
    int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
    int (*get_proc_info)(unw_cursor_t *, unw_proc_info_t *);
    int (*get_proc_info_by_ip)(unw_addr_space_t, unw_word_t, unw_proc_info_t *, void *);
    int (*is_signal_frame)(unw_cursor_t *);
    int (*getcontext)(unw_context_t *);
    unw_addr_space_t as;   /* the local address space */
};

/* Filled by ks_unw_load; all NULL if libunwind could not be loaded. */
extern struct ks_unw ks_unw;

/* Opens libunwind privately, resolves the table, turns its caches off (no
 * lock is then taken while stepping, so a signal handler may unwind) and
 * runs each of its calls once to prime it. Returns 0 or an errno; call once,
 * when control starts. */
int ks_unw_load(void);

/* 1 if ks_unw is usable. */
static inline int ks_unw_ready(void) { return __atomic_load_n(&ks_unw.step, __ATOMIC_ACQUIRE) != 0; }

#ifdef __cplusplus
}
#endif
#endif
