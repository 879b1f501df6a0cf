/* See blocking.h: what of the handshake is not inlined into the wrappers
 * (interpose/block_wrap.h), and the calls' names. */
#include "blocking.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ks.h"

/* The registers a caller's frame needs, at the return address. Written in
 * assembly so that no prologue of its own disturbs them; never on a stack
 * that is unwound (it returns at once), so it needs no CFI of substance. */
__asm__(".text\n"
        ".globl ks_save_regs\n"
        ".hidden ks_save_regs\n"
        ".type ks_save_regs,@function\n"
        "ks_save_regs:\n"
        ".cfi_startproc\n"
        "movq %rbx, 0(%rdi)\n"
        "movq %rbp, 8(%rdi)\n"
        "movq %r12, 16(%rdi)\n"
        "movq %r13, 24(%rdi)\n"
        "movq %r14, 32(%rdi)\n"
        "movq %r15, 40(%rdi)\n"
        "leaq 8(%rsp), %rax\n"
        "movq %rax, 48(%rdi)\n"
        "movq (%rsp), %rax\n"
        "movq %rax, 56(%rdi)\n"
        "ret\n"
        ".cfi_endproc\n"
        ".size ks_save_regs, .-ks_save_regs\n");

static const char *const ks_call_names[KS_CALL_COUNT] = {
    [KS_CALL_NONE] = "?",
    [KS_CALL_SLEEP] = "sleep",
    [KS_CALL_USLEEP] = "usleep",
    [KS_CALL_NANOSLEEP] = "nanosleep",
    [KS_CALL_CLOCK_NANOSLEEP] = "clock_nanosleep",
    [KS_CALL_POLL] = "poll",
    [KS_CALL_PPOLL] = "ppoll",
    [KS_CALL_SELECT] = "select",
    [KS_CALL_PSELECT] = "pselect",
    [KS_CALL_EPOLL_WAIT] = "epoll_wait",
    [KS_CALL_EPOLL_PWAIT] = "epoll_pwait",
    [KS_CALL_EPOLL_PWAIT2] = "epoll_pwait2",
    [KS_CALL_PAUSE] = "pause",
    [KS_CALL_SIGSUSPEND] = "sigsuspend",
    [KS_CALL_SIGTIMEDWAIT] = "sigtimedwait",
    [KS_CALL_SIGWAITINFO] = "sigwaitinfo",
    [KS_CALL_SEM_TIMEDWAIT] = "sem_timedwait",
    [KS_CALL_SEM_CLOCKWAIT] = "sem_clockwait",
    [KS_CALL_MSGRCV] = "msgrcv",
    [KS_CALL_MSGSND] = "msgsnd",
    [KS_CALL_SEMOP] = "semop",
    [KS_CALL_SEMTIMEDOP] = "semtimedop",
};

const char *ks_call_name(int call)
{
    return call > 0 && call < KS_CALL_COUNT ? ks_call_names[call] : "?";
}

int ks_dump_bell;

/* Waits while a dump holds this thread, ringing the dump's bell first (the
 * dump may be waiting for this thread's answer: blocking.h). Keeps errno:
 * the wrapped call's result must reach the caller untouched. */
__attribute__((noinline)) void ks_block_wait_reader(struct ks_block *b)
{
    int saved = errno;
    __atomic_add_fetch(&ks_dump_bell, 1, __ATOMIC_SEQ_CST);
    ks_futex_wake(&ks_dump_bell, 1);
    while (__atomic_load_n(&b->reader, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &b->reader, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

/* Drops in_call and waits out a reader before anything above this frame can
 * change. depth goes down last, for the same reason as in enter. */
void ks_block_drop(struct ks_block *b)
{
    __atomic_store_n(&b->in_call, 0, __ATOMIC_SEQ_CST);
    if (KS_UNLIKELY(__atomic_load_n(&b->reader, __ATOMIC_SEQ_CST)))
        ks_block_wait_reader(b);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    b->depth = 0;
}
