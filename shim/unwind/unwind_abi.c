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
ks_resume_fn *ks_real_resume;   /* hidden; read by _Unwind_Resume below */

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

/* Defined under the ABI's names below, hidden (in assembly: the compiler
 * declares _Unwind_Resume itself with default visibility, and an exported
 * one would serve the program's own landing pads instead of libgcc_s's). */
__attribute__((used)) static _Unwind_Reason_Code ks_personality(int version, _Unwind_Action actions, _Unwind_Exception_Class cls,
                     struct _Unwind_Exception *ue, struct _Unwind_Context *ctx)
{
    if (!__atomic_load_n(&ks_real_personality, __ATOMIC_ACQUIRE) && ks_unwind_abi_bind() != 0)
        return _URC_FATAL_PHASE1_ERROR;
    return ks_real_personality(version, actions, cls, ue, ctx);
}

/* Called from the slow path of _Unwind_Resume below: binds, or ends the
 * process (a cleanup ran, so an unwinder is running: not reached). */
__attribute__((used)) ks_resume_fn *ks_resume_target(void)
{
    if (!__atomic_load_n(&ks_real_resume, __ATOMIC_ACQUIRE) && ks_unwind_abi_bind() != 0)
        abort();
    return ks_real_resume;
}

/* _Unwind_Resume jumps to libgcc_s's and leaves no frame of its own: the
 * real one unwinds from its caller's frame, which must be the landing pad's
 * function, not a forwarder (whose own cleanup, under ThreadSanitizer's
 * instrumentation, would be entered again and again). */
__asm__(".text\n"
        ".globl __gcc_personality_v0\n.hidden __gcc_personality_v0\n"
        ".set __gcc_personality_v0, ks_personality\n"
        ".globl _Unwind_Resume\n.hidden _Unwind_Resume\n"
        ".type _Unwind_Resume,@function\n"
        "_Unwind_Resume:\n"
        ".cfi_startproc\n"
        "mov ks_real_resume(%rip), %rax\n"
        "test %rax, %rax\n"
        "jz 1f\n"
        "jmp *%rax\n"
        "1: push %rdi\n"            /* aligns the stack for the call */
        ".cfi_adjust_cfa_offset 8\n"
        "call ks_resume_target\n"
        "pop %rdi\n"
        ".cfi_adjust_cfa_offset -8\n"
        "jmp *%rax\n"
        ".cfi_endproc\n"
        ".size _Unwind_Resume, .-_Unwind_Resume\n");
