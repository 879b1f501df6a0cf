/* The borrowed thread of an attach (attach.h): seized, interrupted, made to
 * run a system call or a function, and put back exactly as it was.
 *
 * Where the thread stops: PTRACE_INTERRUPT (and every later stop) parks it
 * in the kernel's signal path (get_signal) on its way back to user space.
 * The kernel decides whether to restart an interrupted system call only
 * after get_signal returns, from the registers as they are then: orig_rax
 * (the call's number, or -1 outside a call) and rax (-ERESTARTSYS and its
 * kin). So while the thread runs our code its orig_rax is -1 (nothing to
 * restart), and the last stop puts back the saved registers untouched: on
 * detach the kernel rewinds rip onto the syscall instruction and reloads
 * rax as it would have without us. A read still gets its data; a
 * nanosleep (-ERESTART_RESTARTBLOCK) resumes through restart_syscall with
 * its remaining time (the restart block is the task's, and nothing we run
 * sleeps with a timeout).
 *
 * Signals that arrive for the thread while we hold it are not delivered in
 * our frame (a handler that longjmps would leave through pthread_create):
 * they are kept and given back at detach (the first) or re-sent with tgkill
 * (the rest, which lose their siginfo: documented). */
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "deadline.h"
#include "injector.h"

#define KSI_XSTATE_MAX (64 * 1024)
#define KSI_KEPT_MAX 8
#define KSI_REDZONE 128

struct ksi_borrow {
    pid_t pid, tid;
    struct user_regs_struct saved;
    unsigned char *xstate;
    size_t xstate_len;
    uint64_t sysinsn;                 /* the syscall instruction it sat at */
    int kept[KSI_KEPT_MAX], nkept;    /* signals held back (see the top) */
};

static void ksi_borrow_free(struct ksi_borrow *b)
{
    free(b->xstate);
    free(b);
}

static void ksi_keep_signal(struct ksi_borrow *b, int sig)
{
    if (b->nkept < KSI_KEPT_MAX)
        b->kept[b->nkept++] = sig;
}

/* Waits for the next stop of the thread that is not an interrupt's
 * leftover. Returns the stop's signal (SIGTRAP for a step or our int3), or
 * -1 with errno (ESRCH: it died). Other signals are kept and the thread is
 * resumed with REQ again. */
static int ksi_wait_trap(struct ksi_borrow *b, int req)
{
    int warned = 0;
    double t0 = ksi_now();
    for (;;) {
        int st;
        pid_t r = waitpid(b->tid, &st, __WALL | WNOHANG);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (!warned && ksi_now() - t0 >= 5) {
                /* Leaving now would kill the program (our int3 without a
                 * tracer): wait, and say so. */
                ksi_err("attach: thread %d has not returned from pthread_create in 5 s; "
                        "still waiting for it", (int)b->tid);
                warned = 1;
            }
            usleep(50);
            continue;
        }
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            errno = ESRCH;
            return -1;
        }
        int sig = WSTOPSIG(st), event = (st >> 16) & 0xff;
        if (event == 0 && sig == SIGTRAP)
            return SIGTRAP;
        if (event == 0)
            ksi_keep_signal(b, sig);   /* else the interrupt's leftover stop */
        if (ptrace(req, b->tid, 0, 0) != 0)
            return -1;
    }
}

/* The first stop after the interrupt: an interrupt stop, or a signal the
 * thread was about to take (kept). Returns 0 or an errno. */
static int ksi_wait_first_stop(struct ksi_borrow *b)
{
    for (;;) {
        int st;
        if (waitpid(b->tid, &st, __WALL) < 0)
            return errno;
        if (WIFEXITED(st) || WIFSIGNALED(st))
            return ESRCH;
        if ((st >> 16) == PTRACE_EVENT_STOP)
            return 0;
        ksi_keep_signal(b, WSTOPSIG(st));
        return 0;   /* a signal-delivery stop is as good a place */
    }
}

static int ksi_get_xstate(struct ksi_borrow *b)
{
    b->xstate = calloc(1, KSI_XSTATE_MAX);
    if (!b->xstate)
        return ENOMEM;
    struct iovec iov = {b->xstate, KSI_XSTATE_MAX};
    if (ptrace(PTRACE_GETREGSET, b->tid, (void *)NT_X86_XSTATE, &iov) != 0)
        return errno;
    b->xstate_len = iov.iov_len;
    return 0;
}

/* Is the thread stopped in a system call the kernel will restart or
 * return from? Then rip - 2 is its syscall instruction. */
static int ksi_find_sysinsn(struct ksi_borrow *b)
{
    unsigned char insn[2];
    if ((long long)b->saved.orig_rax < 0)
        return EAGAIN;
    if (ksi_mem_read(b->pid, b->saved.rip - 2, insn, 2) != 0)
        return EAGAIN;
    if (insn[0] != 0x0f || insn[1] != 0x05)
        return EAGAIN;
    b->sysinsn = b->saved.rip - 2;
    return 0;
}

struct ksi_borrow *ksi_borrow_begin(pid_t pid, pid_t tid, struct ksi_attach_err *e)
{
    struct ksi_borrow *b = calloc(1, sizeof *b);
    if (!b) {
        e->code = KSI_EXIT_ERROR;
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return NULL;
    }
    b->pid = pid;
    b->tid = tid;
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
        ksi_attach_seize_error(pid, errno, e);
        ksi_borrow_free(b);
        return NULL;
    }
    int rc = ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0 ? errno : ksi_wait_first_stop(b);
    if (!rc)
        rc = ptrace(PTRACE_GETREGS, tid, 0, &b->saved) != 0 ? errno : ksi_get_xstate(b);
    if (!rc)
        rc = ksi_find_sysinsn(b);
    if (rc) {
        /* Nothing changed yet: a plain detach gives back what we kept. */
        ptrace(PTRACE_DETACH, tid, 0, b->nkept ? b->kept[0] : 0);
        for (int i = 1; i < b->nkept; i++)
            syscall(SYS_tgkill, pid, tid, b->kept[i]);
        e->code = rc == ESRCH ? KSI_EXIT_NO_PROCESS : KSI_EXIT_ERROR;
        snprintf(e->msg, sizeof e->msg, rc == EAGAIN
                 ? "thread %d left its system call before it could be borrowed"
                 : "cannot stop thread %d: %s", (int)tid, strerror(rc));
        ksi_borrow_free(b);
        errno = rc;
        return NULL;
    }
    return b;
}

int ksi_borrow_syscall(struct ksi_borrow *b, long nr, const uint64_t args[6], int64_t *ret)
{
    struct user_regs_struct r = b->saved;
    r.rax = (uint64_t)nr;
    r.orig_rax = (uint64_t)-1;
    r.rdi = args[0], r.rsi = args[1], r.rdx = args[2];
    r.r10 = args[3], r.r8 = args[4], r.r9 = args[5];
    r.rip = b->sysinsn;
    if (ptrace(PTRACE_SETREGS, b->tid, 0, &r) != 0 ||
        ptrace(PTRACE_SINGLESTEP, b->tid, 0, 0) != 0)
        return errno;
    if (ksi_wait_trap(b, PTRACE_SINGLESTEP) < 0)
        return errno;
    if (ptrace(PTRACE_GETREGS, b->tid, 0, &r) != 0)
        return errno;
    if (r.rip != b->sysinsn + 2)
        return EFAULT;
    *ret = (int64_t)r.rax;
    return 0;
}

int ksi_borrow_call(struct ksi_borrow *b, uint64_t fn, const uint64_t args[4], uint64_t ret_trap,
                    uint64_t *ret)
{
    struct user_regs_struct r = b->saved;
    /* Below the red zone the interrupted function may keep data in, on a
     * 16-byte boundary at the call, as the ABI wants at a function's entry
     * minus the return address. */
    uint64_t sp = ((b->saved.rsp - KSI_REDZONE - 64) & ~(uint64_t)15) - 8;
    if (ksi_mem_write(b->pid, sp, &ret_trap, sizeof ret_trap) != 0)
        return errno ? errno : EIO;
    r.rsp = sp;
    r.rip = fn;
    r.rax = 0;
    r.orig_rax = (uint64_t)-1;
    r.rdi = args[0], r.rsi = args[1], r.rdx = args[2], r.rcx = args[3];
    if (ptrace(PTRACE_SETREGS, b->tid, 0, &r) != 0 || ptrace(PTRACE_CONT, b->tid, 0, 0) != 0)
        return errno;
    for (;;) {
        if (ksi_wait_trap(b, PTRACE_CONT) < 0)
            return errno;
        if (ptrace(PTRACE_GETREGS, b->tid, 0, &r) != 0)
            return errno;
        if (r.rip == ret_trap + 1)
            break;
        /* A SIGTRAP of the program's own (it raised one, or an int3 of
         * its own): not ours, keep it for later. */
        ksi_keep_signal(b, SIGTRAP);
        if (ptrace(PTRACE_CONT, b->tid, 0, 0) != 0)
            return errno;
    }
    *ret = r.rax;
    return 0;
}

long ksi_borrow_nr(const struct ksi_borrow *b) { return (long)b->saved.orig_rax; }

int ksi_borrow_end(struct ksi_borrow *b)
{
    struct iovec iov = {b->xstate, b->xstate_len};
    int rc = 0;
    if (ptrace(PTRACE_SETREGS, b->tid, 0, &b->saved) != 0 ||
        ptrace(PTRACE_SETREGSET, b->tid, (void *)NT_X86_XSTATE, &iov) != 0)
        rc = errno;
    if (ptrace(PTRACE_DETACH, b->tid, 0, b->nkept ? b->kept[0] : 0) != 0 && !rc)
        rc = errno;
    for (int i = 1; i < b->nkept; i++)
        syscall(SYS_tgkill, b->pid, b->tid, b->kept[i]);
    ksi_borrow_free(b);
    return rc;
}
