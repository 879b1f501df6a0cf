/* The two symbols of the C unwinding ABI that the shim's own frames need,
 * without linking libgcc_s.
 *
 * The shim is built with -fexceptions: a cancellation (or the abort's
 * pthread_exit) that unwinds through its wrappers runs their cleanups
 * (pthread_cleanup_push, __attribute__((cleanup))). Code built so names
 * __gcc_personality_v0 (in its unwind tables) and _Unwind_Resume (at the end
 * of each cleanup), both libgcc_s's, and linking libgcc_s for them made every
 * process under the shim, and every program it execs, load libgcc_s at start
 * and run its constructor (cpuid, which a hypervisor traps: docs/bench.md).
 *
 * Both are only ever called while libgcc_s's unwinder is running: glibc's
 * pthread_cancel and pthread_exit dlopen libgcc_s before they unwind, and a
 * C++ program links it. So the shim defines them, hidden, as forwarders to
 * libgcc_s's own, bound at the first call (dlopen with RTLD_NOLOAD: nothing
 * is loaded there) or earlier by ks_unwind_abi_bind, which runs when control
 * starts. A forced unwind comes at a cancellation point or from the abort's
 * exit, in the thread's normal context, where dlopen may run; an
 * asynchronous cancellation may only interrupt async-cancel-safe calls,
 * which never hold the loader's lock. */
#include "unwind_abi.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unwind.h>

#include "shim/core/ks.h"

typedef _Unwind_Reason_Code ks_personality_fn(int, _Unwind_Action, _Unwind_Exception_Class,
                                              struct _Unwind_Exception *, struct _Unwind_Context *);
typedef void ks_resume_fn(struct _Unwind_Exception *);

static ks_personality_fn *ks_real_personality;
static ks_resume_fn *ks_real_resume;

static void *ks_abi_sym(void *h, const char *name)
{
    void *p = h ? dlsym(h, name) : NULL;
    /* No libgcc_s: the unwinder running is another one that exports the
     * ABI (libunwind's, or a program's static copy). */
    return p ? p : dlsym(RTLD_DEFAULT, name);
}

int ks_unwind_abi_bind(void)
{
    if (__atomic_load_n(&ks_real_resume, __ATOMIC_ACQUIRE))
        return 0;
    void *h = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);
    ks_personality_fn *p = (ks_personality_fn *)ks_abi_sym(h, "__gcc_personality_v0");
    ks_resume_fn *r = (ks_resume_fn *)ks_abi_sym(h, "_Unwind_Resume");
    if (h)
        dlclose(h);   /* NOLOAD took a reference; the unwinder's own stays */
    if (!p || !r)
        return ENOENT;
    __atomic_store_n(&ks_real_personality, p, __ATOMIC_RELEASE);
    __atomic_store_n(&ks_real_resume, r, __ATOMIC_RELEASE);
    return 0;
}

/* Defined under the ABI's names below, hidden: the compiler declares
 * _Unwind_Resume itself with default visibility, and an exported one would
 * serve the program's own landing pads instead of libgcc_s's. */
__attribute__((used)) static _Unwind_Reason_Code ks_personality(int version, _Unwind_Action actions, _Unwind_Exception_Class cls,
                     struct _Unwind_Exception *ue, struct _Unwind_Context *ctx)
{
    if (!__atomic_load_n(&ks_real_personality, __ATOMIC_ACQUIRE) && ks_unwind_abi_bind() != 0)
        return _URC_FATAL_PHASE1_ERROR;
    return ks_real_personality(version, actions, cls, ue, ctx);
}

__attribute__((used, noreturn)) static void ks_resume(struct _Unwind_Exception *ue)
{
    if (!__atomic_load_n(&ks_real_resume, __ATOMIC_ACQUIRE) && ks_unwind_abi_bind() != 0)
        abort();   /* a cleanup ran, so an unwinder is running: not reached */
    ks_real_resume(ue);
    abort();   /* _Unwind_Resume does not return */
}

__asm__(".globl __gcc_personality_v0\n.hidden __gcc_personality_v0\n"
        ".set __gcc_personality_v0, ks_personality\n"
        ".globl _Unwind_Resume\n.hidden _Unwind_Resume\n"
        ".set _Unwind_Resume, ks_resume\n");
