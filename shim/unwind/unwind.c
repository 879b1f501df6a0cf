/* See unwind.h. */
#include "unwind.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>

#include "shim/core/attach.h"
#include "shim/core/ks.h"
#include "shim/core/signals.h"
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

/* libunwind runs inside the shim's dump handler, and a step takes its
 * memory pool's mutex (twice a frame: about a hundred pthread_mutex_lock
 * calls a dump of a Python process, counted with gdb). Bound as usual,
 * those reach the shim's own lock hooks, which would count a lock the
 * interrupted thread never took: they are bound to libc's functions.
 *
 * Under ThreadSanitizer (a test build) every libc function libunwind
 * imports is: the handlers are installed past TSan (signals.c) so that it
 * cannot defer them, and may interrupt a thread inside TSan's runtime, which
 * is not reentrant. Through TSan's interceptors, the pool's mutex took a
 * clock block from the same per-thread cache the interrupted MutexUnlock
 * was taking one from: python_stack_test died in DenseSlabAlloc::Refill on
 * a corrupt free list, and a loop of dumps of churning Python threads, 1 run
 * in 10, also reported a race under a mutex both threads held (a lost
 * happens-before edge); TSan alone or the shim without dumps, never. TSan
 * then sees none of libunwind's calls (it checks none of its memory either,
 * being uninstrumented). Its signal mask calls go to the system call, and
 * pipe/pipe2 stay the shim's (interpose_pipe.c). */
static void *ks_unw_libc_fn(const char *name, void *libc)
{
#if defined(__SANITIZE_THREAD__) || defined(KS_TSAN)
    if (strcmp(name, "pipe") == 0 || strcmp(name, "pipe2") == 0)
        return NULL;
    if (strcmp(name, "sigprocmask") == 0 || strcmp(name, "pthread_sigmask") == 0)
        return (void *)ks_sigmask_pass;
#else
    if (strcmp(name, "pthread_mutex_lock") != 0 && strcmp(name, "pthread_mutex_unlock") != 0)
        return NULL;
#endif
    /* libc's, or the loader's (__tls_get_addr); after an attach dlsym gives
     * the hook for what the shim interposes (defs_patch.c): its original. */
    return ks_defs_original(name, dlsym(libc, name));
}

static void ks_unw_rebind(void *h)
{
    struct link_map *lm = NULL;
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (libc && dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm)
        ks_debug("libunwind: %d of its calls bound to libc's functions",
                 ks_got_rebind(lm->l_addr, ks_unw_libc_fn, libc));
    if (libc)
        dlclose(libc);
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
    ks_unw_rebind(h);
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
