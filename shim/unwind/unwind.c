/* See unwind.h. */
#include "unwind.h"

#include <dlfcn.h>
#include <errno.h>

#include "shim/core/attach.h"
#include "shim/core/ks.h"
#include "unwind_mem.h"

struct ks_unw ks_unw;

static void *ks_unw_sym(void *h, const char *name, int *missing)
{
    void *p = dlsym(h, name);
    if (!p)
        (*missing)++;
    return p;
}

/* Runs each call the abort's walks make on a frame and one step: libunwind's
 * one-time setup and the binding of its calls into libc then never happen in
 * a signal handler. Two frames run every such path; a longer walk only
 * repeats them, at one dl_iterate_phdr and two sigprocmask system calls a
 * frame. */
#define KS_PRIME_FRAMES 2

static int ks_unw_prime(void)
{
    unw_context_t ctx;
    unw_cursor_t cur;
    if (ks_unw.getcontext(&ctx) != 0 || ks_unw.init_local2(&cur, &ctx, 0) != 0)
        return EINVAL;
    unw_proc_info_t pi;
    int n = 0;
    unw_word_t ip;
    do {
        ks_unw.get_reg(&cur, UNW_REG_IP, &ip);
        ks_unw.is_signal_frame(&cur);
        ks_unw.get_proc_info(&cur, &pi);
    } while (++n < KS_PRIME_FRAMES && ks_unw.step(&cur) > 0);
    return 0;
}

int ks_unw_load(void)
{
    if (ks_unw_ready())
        return 0;   /* loaded at init under ThreadSanitizer (shim/init.c) */
    /* RTLD_LOCAL keeps its _Unwind_* out of the global scope; RTLD_NOW binds
     * everything now rather than inside a signal handler later. */
    void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return ENOENT;
    /* Loaded with the shim by an attach, libc's pipe2 comes first in the
     * global scope: libunwind's init must still reach the shim's
     * (interpose_pipe.c). */
    if (__atomic_load_n(&ks_loaded_late, __ATOMIC_ACQUIRE))
        ks_got_patch_deps();
    struct ks_unw u;
    int missing = 0;
    u.init_local2 = (int (*)(unw_cursor_t *, unw_context_t *, int))ks_unw_sym(h, "_ULx86_64_init_local2", &missing);
    u.step = (int (*)(unw_cursor_t *))ks_unw_sym(h, "_ULx86_64_step", &missing);
    u.get_reg = (int (*)(unw_cursor_t *, unw_regnum_t, unw_word_t *))ks_unw_sym(h, "_ULx86_64_get_reg", &missing);
    u.get_proc_info = (int (*)(unw_cursor_t *, unw_proc_info_t *))ks_unw_sym(h, "_ULx86_64_get_proc_info", &missing);
    u.get_proc_info_by_ip = (int (*)(unw_addr_space_t, unw_word_t, unw_proc_info_t *, void *))
        ks_unw_sym(h, "_ULx86_64_get_proc_info_by_ip", &missing);
    u.is_signal_frame = (int (*)(unw_cursor_t *))ks_unw_sym(h, "_ULx86_64_is_signal_frame", &missing);
    u.getcontext = (int (*)(unw_context_t *))ks_unw_sym(h, "_Ux86_64_getcontext", &missing);
    unw_addr_space_t *asp = ks_unw_sym(h, "_ULx86_64_local_addr_space", &missing);
    int (*set_policy)(unw_addr_space_t, unw_caching_policy_t) =
        (int (*)(unw_addr_space_t, unw_caching_policy_t))ks_unw_sym(h, "_ULx86_64_set_caching_policy", &missing);
    unw_accessors_t *(*get_accessors)(unw_addr_space_t) =
        (unw_accessors_t * (*)(unw_addr_space_t)) ks_unw_sym(h, "_Ux86_64_get_accessors", &missing);
    if (missing)
        return ENOSYS;
    u.as = *asp;
    /* Before the first unwind: libunwind's init then opens no pipe, and its
     * reads are checked without one (unwind_mem.h). */
    int rc = ks_unw_mem_install(get_accessors, u.as);
    if (rc)
        ks_debug("libunwind's memory accessor could not be replaced (%d)", rc);
    /* The global cache takes a mutex; a thread stopped while another one holds
     * it would wait in its signal handler. Uncached lookups take none. */
    set_policy(u.as, UNW_CACHE_NONE);
    /* Published with its step last: ks_unw_ready() readers see a whole table. */
    int (*step)(unw_cursor_t *) = u.step;
    u.step = NULL;
    ks_unw = u;
    __atomic_store_n(&ks_unw.step, step, __ATOMIC_RELEASE);
    return ks_unw_prime();
}
