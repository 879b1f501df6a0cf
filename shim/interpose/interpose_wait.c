/* The blocking-call wrappers (interpose_block.c says how they work) of the
 * waits for signals, semaphores and System V IPC, and the ways out of a
 * wrapped call without returning (longjmp, setcontext). */
#include <errno.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <time.h>
#include <ucontext.h>

#include "block_wrap.h"

/* ---- Waiting for signals ----------------------------------------------- */

KS_EXPORT int pause(void)
{
    KS_BLOCK_ENTER(self, KS_CALL_PAUSE);
    KS_NEED(pause, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(pause)()) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int sigsuspend(const sigset_t *mask)
{
    KS_BLOCK_ENTER(self, KS_CALL_SIGSUSPEND);
    KS_NEED(sigsuspend, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(sigsuspend)(mask)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *tmo)
{
    KS_BLOCK_ENTER(self, KS_CALL_SIGTIMEDWAIT);
    KS_NEED(sigtimedwait, -1);
    uint64_t start = tmo ? ks_now_ns() : 0;
    struct timespec left;
    const struct timespec *cur = tmo;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(sigtimedwait)(set, info, cur)) < 0 && ks_cut_by_dump(self, &seen)) {
        if (tmo)
            cur = ks_left_ts(start + ks_ts_ns(tmo), &left);
    }
    return rc;
}

KS_EXPORT int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
    KS_BLOCK_ENTER(self, KS_CALL_SIGWAITINFO);
    KS_NEED(sigwaitinfo, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(sigwaitinfo)(set, info)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

/* ---- Semaphores and System V IPC -------------------------------------- */

/* A timed futex wait ends with EINTR on any handler; sem_wait without a
 * timeout is restarted by the kernel and needs no wrapper. */
KS_EXPORT int sem_timedwait(sem_t *s, const struct timespec *abstime)
{
    KS_BLOCK_ENTER(self, KS_CALL_SEM_TIMEDWAIT);
    KS_NEED(sem_timedwait, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(sem_timedwait)(s, abstime)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *abstime)
{
    KS_BLOCK_ENTER(self, KS_CALL_SEM_CLOCKWAIT);
    KS_NEED(sem_clockwait, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(sem_clockwait)(s, clk, abstime)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT ssize_t msgrcv(int id, void *p, size_t sz, long type, int flags)
{
    KS_BLOCK_ENTER(self, KS_CALL_MSGRCV);
    KS_NEED(msgrcv, -1);
    unsigned seen = ks_dumps(self);
    ssize_t rc;
    while ((rc = KS_REAL(msgrcv)(id, p, sz, type, flags)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int msgsnd(int id, const void *p, size_t sz, int flags)
{
    KS_BLOCK_ENTER(self, KS_CALL_MSGSND);
    KS_NEED(msgsnd, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(msgsnd)(id, p, sz, flags)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int semop(int id, struct sembuf *ops, size_t n)
{
    KS_BLOCK_ENTER(self, KS_CALL_SEMOP);
    KS_NEED(semop, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(semop)(id, ops, n)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int semtimedop(int id, struct sembuf *ops, size_t n, const struct timespec *tmo)
{
    KS_BLOCK_ENTER(self, KS_CALL_SEMTIMEDOP);
    KS_NEED(semtimedop, -1);
    uint64_t start = tmo ? ks_now_ns() : 0;
    struct timespec left;
    const struct timespec *cur = tmo;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(semtimedop)(id, ops, n, cur)) < 0 && ks_cut_by_dump(self, &seen)) {
        if (tmo)
            cur = ks_left_ts(start + ks_ts_ns(tmo), &left);
    }
    return rc;
}

/* ---- Leaving a wrapped call without returning ------------------------- */

/* A signal handler that interrupted a wrapped call and jumps out of it
 * abandons the wrapper's frame: its stack will be reused, so the saved
 * registers must stop being offered to dumps first. A jump that stays inside
 * the handler is treated the same (the outer call is then signalled like any
 * other, and its wrapper resumes it if cut short). */
static void ks_block_abandon(void)
{
    struct ks_block *b = ks_block_self();
    if (KS_UNLIKELY(b->depth > 0))
        ks_block_drop(b);
}

KS_EXPORT void longjmp(struct __jmp_buf_tag env[1], int val)
{
    ks_block_abandon();
    KS_REAL(longjmp)(env, val);
    __builtin_unreachable();
}

KS_EXPORT void _longjmp(struct __jmp_buf_tag env[1], int val)
{
    ks_block_abandon();
    KS_REAL(longjmp)(env, val);
    __builtin_unreachable();
}

KS_EXPORT void siglongjmp(struct __jmp_buf_tag env[1], int val)
{
    ks_block_abandon();
    KS_REAL(siglongjmp)(env, val);
    __builtin_unreachable();
}

/* glibc's headers do not declare it (they only redirect longjmp to it). */
KS_EXPORT __attribute__((noreturn)) void __longjmp_chk(struct __jmp_buf_tag env[1], int val)
{
    ks_block_abandon();
    KS_REAL(longjmp_chk)(env, val);
    __builtin_unreachable();
}

KS_EXPORT int setcontext(const ucontext_t *ucp)
{
    ks_block_abandon();
    KS_NEED(setcontext, -1);
    return KS_REAL(setcontext)(ucp);
}
