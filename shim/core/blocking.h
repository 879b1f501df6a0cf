/* Blocking calls that a signal handler would cut short (signal(7): sleep,
 * poll, epoll_wait, select, pause, sigsuspend, ... return EINTR even under
 * SA_RESTART), and how a stack dump reads a thread that sits in one without
 * sending it a signal.
 *
 * interpose_block.c wraps those calls. At entry a wrapper saves the
 * registers unwinding needs (its own frame stays live until it returns), then
 * publishes in_call. A dump (cmd_stack.c) that finds in_call set unwinds from
 * those registers instead of signalling the thread.
 *
 * Handshake (Dekker; every access below is sequentially consistent):
 *   dumper:  reader = 1;  if (in_call) read regs and the stack;  reader = 0
 *   wrapper: ... in_call = 0;  while (reader) wait;  return
 * At least one side sees the other's store, so the wrapper never returns
 * (and its caller's frames never change) while a dumper reads them. The same
 * wait at entry (in_call = 1; while (reader) wait) means a thread that a dump
 * chose to signal (it saw in_call == 0) enters its blocking call only after
 * it has answered, so the dump's signal never lands inside that call.
 *
 * Non-local exits: cancellation and forced unwinds run the wrapper's cleanup
 * (-fexceptions); longjmp, siglongjmp and setcontext out of a signal handler
 * are hooked (they drop in_call and wait the same way). */
#ifndef KS_BLOCKING_H
#define KS_BLOCKING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ks_call {
    KS_CALL_NONE = 0,
    KS_CALL_SLEEP,
    KS_CALL_USLEEP,
    KS_CALL_NANOSLEEP,
    KS_CALL_CLOCK_NANOSLEEP,
    KS_CALL_POLL,
    KS_CALL_PPOLL,
    KS_CALL_SELECT,
    KS_CALL_PSELECT,
    KS_CALL_EPOLL_WAIT,
    KS_CALL_EPOLL_PWAIT,
    KS_CALL_EPOLL_PWAIT2,
    KS_CALL_PAUSE,
    KS_CALL_SIGSUSPEND,
    KS_CALL_SIGTIMEDWAIT,
    KS_CALL_SIGWAITINFO,
    KS_CALL_SEM_TIMEDWAIT,
    KS_CALL_SEM_CLOCKWAIT,
    KS_CALL_MSGRCV,
    KS_CALL_MSGSND,
    KS_CALL_SEMOP,
    KS_CALL_SEMTIMEDOP,
    KS_CALL_COUNT
};

/* The C name of CALL ("sleep"), or "?" */
const char *ks_call_name(int call);

/* Callee-saved registers, stack and instruction pointer of a live frame:
 * all that DWARF unwinding needs to start from it (the argument and scratch
 * registers are dead across a call). */
struct ks_regs {
    uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip;
};

/* Fills R with the caller's registers as they will be when this call returns
 * (rip: the return address, rsp: the caller's stack pointer). */
void ks_save_regs(struct ks_regs *r);

/* Per thread, beside its registry record (registry.h: ks_block_self,
 * ks_block_of). */
struct ks_block {
    int depth;           /* owner only: wrapped calls nested through signal handlers */
    int call;            /* owner writes before in_call: enum ks_call of the outer call */
    int in_call;         /* 1 while regs describe the outer wrapper's live frame */
    int reader;          /* a dump reads regs, or awaits this thread's answer */
    unsigned dumps;      /* times the dump handler ran on this thread (EINTR retry) */
    struct ks_regs regs; /* owner writes before in_call */
    uintptr_t stack_lo, stack_hi;   /* the thread's stack, found once by a dump
                                     * under the registry lock; 0: not yet */
};

/* The handshake's slow paths, for the wrappers (interpose/block_wrap.h).
 * ks_block_wait_reader: waits while a dump holds B's thread, errno kept.
 * ks_block_drop: drops in_call and waits out a reader before anything above
 * the wrapper's frame can change; depth goes to 0 last. */
void ks_block_wait_reader(struct ks_block *b);
void ks_block_drop(struct ks_block *b);

/* What a dump waiting for answers sleeps on (stack_capture.c): bumped and
 * woken by each answer, and by a thread that starts waiting for its reader
 * (a thread the dump signalled may enter a wrapped call instead of
 * answering, its signal blocked: the dump then takes it from its registers,
 * stack_take.c, at once rather than at its next look). */
extern int ks_dump_bell;

#ifdef __cplusplus
}
#endif
#endif
