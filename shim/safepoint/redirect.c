/* See redirect.h. */
#include "redirect.h"

#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/core/blocking.h"
#include "shim/common/doorbell.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"
#include "cfi_step.h"
#include "safepoint.h"
#include "shim/core/signals.h"
#include "shim/unwind/unwind_mem.h"

#define KS_FP_MAX 16384                 /* the largest XSAVE area (AMX) fits */
#define KS_TRAMP_STACK (64 * 1024)

/* The one redirect in flight. Owned by the thread whose tid is in .tid from
 * ks_redirect until ks_redirect_resume clears it. */
static struct {
    pid_t tid;
    void (*fn)(void);
    gregset_t gregs;
    sigset_t mask;
    int err;                   /* errno at the interruption */
    size_t fp_len;
    unsigned char fp[KS_FP_MAX] __attribute__((aligned(64)));
} ks_saved;
static unsigned char ks_tramp_stack[KS_TRAMP_STACK] __attribute__((aligned(16)));

/* The frames below main on the main thread (__libc_start_call_main,
 * __libc_start_main, _start): after the first runtime frame that follows the
 * program's own, at most this many frames may remain. */
#define KS_BASE_FRAMES 3

/* The walk's stepper: the module table's CFI, stack pages probed through
 * the kernel (unwind_mem.h). No libunwind: a process nobody asked has not
 * loaded it. */
static const struct ks_cfi_env ks_walk_env = {ks_safepoint_cfi, ks_mem_readable};

/* malloc is the executable's own (ks_safepoint_own_malloc): no redirects.
 * Control's start allocates, and a thread interrupted in the program's own
 * code may be inside that allocator, holding its locks, which are not the
 * shim's to see (its frames are the program's). Such a process starts
 * serving when a thread waits in a system call. A library that brings the
 * allocator is a runtime module (KS_MOD_ALLOC): the walk refuses it. */
KS_SIGSAFE int ks_redirect_safe(ucontext_t *uc)
{
    struct ks_thread *self = ks_self();
    if (self->shim_depth || __atomic_load_n(&self->locks_held, __ATOMIC_RELAXED) > 0 ||
        ks_block_self()->depth || ks_safepoint_own_malloc())
        return 0;
    struct ks_cfi_cursor cur;
    ks_cfi_init(&cur, uc, &ks_walk_env);
    uintptr_t start = ks_thread_start_addr();
    int app_frames = 0, base_left = -1;
    for (int n = 0; n < 512; n++) {
        uintptr_t ip = cur.reg[KS_CFI_RIP];
        /* A signal frame, or a frame a signal interrupted (an exact ip past
         * frame 0: a trampoline whose CIE says 'S'): in a handler. */
        if (cur.signal || (n > 0 && cur.exact))
            return 0;
        struct ks_pc_info pi;
        int kind = ks_safepoint_lookup(cur.exact ? ip : ip - 1, &pi);
        /* At (or just after) a system call in one of libc's stubs, where a
         * thread that spends its time in the kernel takes signals: if the
         * program's own code called it (the next frame must be), no lock of
         * libc's is held (a call from inside libc, where one could be,
         * fails the walk at the next frame). */
        int stub = n == 0 && kind == KS_MOD_LIBC && ks_uc_at_syscall(uc);
        if (kind == KS_MOD_SHIM && app_frames) {
            uintptr_t proc = 0;
            return ks_cfi_proc_start(&cur, &proc) == 0 && proc == start;
        }
        if (stub) {
            /* checked at the next frame */
        } else if (base_left >= 0) {
            if (base_left-- == 0)
                return 0;
        } else if (kind == KS_MOD_APP) {
            app_frames++;
        } else if (kind == KS_MOD_LIBC && app_frames) {
            base_left = KS_BASE_FRAMES - 1;   /* below main, or a libc callback */
        } else {
            return 0;
        }
        int rc = ks_cfi_step(&cur);
        if (rc == 0)
            return app_frames > 0;
        if (rc < 0)
            return 0;
    }
    return 0;
}

/* Before the first table: where the CFI is, found without it. */
static KS_SIGSAFE int ks_find_now(uintptr_t pc, struct ks_cfi_module *out)
{
    return ks_safepoint_kind_now(pc, out) == KS_MOD_NONE ? ENOENT : 0;
}

static const struct ks_cfi_env ks_first_env = {ks_find_now, ks_mem_readable};

/* The loader links and unlinks objects with its list lock held, in its own
 * code (ld.so), and takes and drops that lock in libc's mutex code: a
 * thread interrupted in either could be in the middle of the list or of the
 * lock that dl_iterate_phdr would walk or take again (it is recursive).
 * Interrupted in the application's code, it is in neither: at most inside
 * a dl_iterate_phdr callback, where the list is whole and the lock its own
 * to take again. Nor in a libc stub the application called. Unless that
 * code is a signal handler, which may have interrupted the loader itself,
 * or was called by the loader (a constructor, an auditor): so every frame
 * down to the thread's start is stepped, and a signal frame or a frame of
 * the loader's refuses, as does a frame the stepper cannot step. */
KS_SIGSAFE int ks_redirect_table(ucontext_t *uc)
{
    if (ks_safepoint_built())
        return 0;
    struct ks_cfi_cursor cur;
    ks_cfi_init(&cur, uc, &ks_first_env);
    int stub = 0;
    for (int n = 0; n < 512; n++) {
        if (cur.signal || (n > 0 && cur.exact))
            return EAGAIN;
        uintptr_t ip = cur.reg[KS_CFI_RIP];
        int kind = ks_safepoint_kind_now(cur.exact ? ip : ip - 1, NULL);
        if (n == 0 && kind == KS_MOD_LIBC && ks_uc_at_syscall(uc))
            stub = 1;   /* its caller decides */
        else if ((n == 0 || (n == 1 && stub)) && kind != KS_MOD_APP)
            return EAGAIN;
        if (kind == KS_MOD_LOADER)
            return EAGAIN;
        int rc = ks_cfi_step(&cur);
        if (rc == 0)
            break;
        if (rc < 0)
            return EAGAIN;
    }
    ks_safepoint_refresh();
    return 0;
}

/* The fp state in a signal frame: FXSAVE's 512 bytes, or the XSAVE area
 * whose size the kernel wrote into the software-reserved bytes. */
static KS_SIGSAFE size_t ks_fp_len(const ucontext_t *uc)
{
    const struct _fpx_sw_bytes *sw =
        (const struct _fpx_sw_bytes *)((const char *)uc->uc_mcontext.fpregs + 464);
    return sw->magic1 == FP_XSTATE_MAGIC1 ? sw->extended_size : 512;
}

void ks_redirect_tramp(void);
__asm__(".text\n"
        ".globl ks_redirect_tramp\n"
        ".hidden ks_redirect_tramp\n"
        ".type ks_redirect_tramp,@function\n"
        "ks_redirect_tramp:\n"
        ".cfi_startproc\n"
        ".cfi_undefined rip\n"   /* the outermost frame: unwinders stop here */
        "call ks_redirect_run\n"
        "ud2\n"
        ".cfi_endproc\n"
        ".size ks_redirect_tramp, .-ks_redirect_tramp\n");

/* On the trampoline's stack, with every signal blocked but the dump signal. */
__attribute__((used, noreturn)) void ks_redirect_run(void)
{
    ks_saved.fn();
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = ks_signo(KS_SIG_DUMP);
    si.si_code = SI_QUEUE;
    si.si_pid = ks_getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = KS_RESUME_COOKIE;
    /* Delivered before the call returns: the handler restores the saved
     * context, and the thread never comes back here. */
    for (;;)
        syscall(SYS_rt_tgsigqueueinfo, ks_getpid(), ks_gettid(), si.si_signo, &si);
}

KS_SIGSAFE int ks_redirect(ucontext_t *uc, void (*fn)(void), int err)
{
    size_t len = ks_fp_len(uc);
    if (len > sizeof ks_saved.fp)
        return E2BIG;
    pid_t none = 0, self = ks_gettid();
    if (!__atomic_compare_exchange_n(&ks_saved.tid, &none, self, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return EBUSY;
    ks_saved.fn = fn;
    ks_copy(ks_saved.gregs, uc->uc_mcontext.gregs, sizeof ks_saved.gregs);
    ks_saved.mask = uc->uc_sigmask;
    ks_saved.err = err;
    ks_saved.fp_len = len;
    ks_copy(ks_saved.fp, uc->uc_mcontext.fpregs, len);
    /* 16-aligned at the trampoline's call, as the ABI wants at a call. */
    uintptr_t sp = ((uintptr_t)ks_tramp_stack + sizeof ks_tramp_stack) & ~(uintptr_t)15;
    uc->uc_mcontext.gregs[REG_RSP] = (greg_t)sp;
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)ks_redirect_tramp;
    uc->uc_mcontext.gregs[REG_EFL] &= ~(greg_t)0x400;   /* DF clear, as the ABI wants */
    ks_sigfill(&uc->uc_sigmask);
    ks_sigdel(&uc->uc_sigmask, ks_signo(KS_SIG_DUMP));
    return 0;
}

KS_SIGSAFE int ks_redirect_resume(const siginfo_t *si, ucontext_t *uc, int *err)
{
    if (!si || si->si_code != SI_QUEUE || si->si_pid != ks_getpid() ||
        si->si_value.sival_int != KS_RESUME_COOKIE ||
        __atomic_load_n(&ks_saved.tid, __ATOMIC_ACQUIRE) != ks_gettid())
        return 0;
    ks_copy(uc->uc_mcontext.gregs, ks_saved.gregs, sizeof ks_saved.gregs);
    uc->uc_sigmask = ks_saved.mask;
    if (ks_fp_len(uc) == ks_saved.fp_len)
        ks_copy(uc->uc_mcontext.fpregs, ks_saved.fp, ks_saved.fp_len);
    *err = ks_saved.err;
    __atomic_store_n(&ks_saved.tid, 0, __ATOMIC_RELEASE);
    return 1;
}
