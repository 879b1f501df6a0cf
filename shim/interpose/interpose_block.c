/* Wrappers of the blocking calls that a signal handler interrupts with EINTR
 * even under SA_RESTART (signal(7)), so that taking a stack is invisible:
 *
 * - At entry a wrapper saves its registers and publishes in_call; a dump then
 *   unwinds the thread from those registers without signalling it (the
 *   handshake is in blocking.h).
 * - If a dump signal still lands inside the call (a thread the shim does not
 *   know, or a signal that stayed pending until the call began), the call is
 *   resumed with the time that is left, as if nothing happened: the dump
 *   handler counts its runs per thread, and an EINTR while the count moved is
 *   the dump's. A program signal arriving during the same call is then
 *   swallowed with it (its handler has run; the call goes on): the one
 *   imperfection, and only for that race.
 *
 * Every wrapper has one shape: enter, call the real function, retry while the
 * call was cut by a dump, return its result unchanged. */
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/msg.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "shim/core/blocking.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"

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

/* A wrapper whose real function is missing fails as the call would. */
#define KS_NEED(name, fail)         \
    do {                            \
        if (!KS_REAL(name)) {       \
            errno = ENOSYS;         \
            return fail;            \
        }                           \
    } while (0)

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

/* ---- The handshake (blocking.h) ---------------------------------------- */

/* Waits while a dump holds this thread. Keeps errno: the wrapped call's
 * result must reach the caller untouched. */
static __attribute__((noinline)) void ks_block_wait_reader(struct ks_block *b)
{
    int saved = errno;
    while (__atomic_load_n(&b->reader, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &b->reader, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

/* Inlined into each wrapper: ks_save_regs must record the wrapper's own
 * frame, which stays live until the wrapper returns. depth goes up before the
 * registers are written, so a wrapped call made by a signal handler that
 * interrupts this one counts as nested and never overwrites them. */
static inline __attribute__((always_inline)) struct ks_block *ks_block_enter(int call)
{
    struct ks_block *b = ks_block_self();
    if (b->depth++ > 0)
        return b;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    ks_save_regs(&b->regs);
    b->call = call;
    __atomic_store_n(&b->in_call, 1, __ATOMIC_SEQ_CST);
    if (KS_UNLIKELY(__atomic_load_n(&b->reader, __ATOMIC_SEQ_CST)))
        ks_block_wait_reader(b);
    return b;
}

/* Drops in_call and waits out a reader before anything above this frame can
 * change. depth goes down last, for the same reason as in enter. */
static void ks_block_drop(struct ks_block *b)
{
    __atomic_store_n(&b->in_call, 0, __ATOMIC_SEQ_CST);
    if (KS_UNLIKELY(__atomic_load_n(&b->reader, __ATOMIC_SEQ_CST)))
        ks_block_wait_reader(b);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    b->depth = 0;
}

/* Runs when the wrapper's scope ends: return, cancellation, forced unwind. */
static void ks_block_leave(struct ks_block **bp)
{
    struct ks_block *b = *bp;
    if (b->depth > 1)
        b->depth--;
    else if (b->depth == 1)
        ks_block_drop(b);
    /* depth 0: a longjmp out of a nested handler already dropped it. */
}

#define KS_BLOCK_ENTER(self, call) \
    struct ks_block *self __attribute__((cleanup(ks_block_leave))) = ks_block_enter(call)

static inline unsigned ks_dumps(struct ks_block *self)
{
    return __atomic_load_n(&self->dumps, __ATOMIC_SEQ_CST);
}

/* After a failed call: was it cut short by a dump signal (and not only by
 * the program's)? Updates *SEEN for the next round. */
static inline int ks_cut_by_dump(struct ks_block *self, unsigned *seen)
{
    if (errno != EINTR)
        return 0;
    unsigned now = ks_dumps(self);
    if (now == *seen)
        return 0;
    *seen = now;
    return 1;
}

/* ---- Time left --------------------------------------------------------- */

static uint64_t ks_ts_ns(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_nsec;
}

/* *OUT = END - now, at least 0. Returns OUT. */
static struct timespec *ks_left_ts(uint64_t end, struct timespec *out)
{
    uint64_t now = ks_now_ns(), left = end > now ? end - now : 0;
    out->tv_sec = (time_t)(left / 1000000000u);
    out->tv_nsec = (long)(left % 1000000000u);
    return out;
}

/* Milliseconds left of a poll-style TIMEOUT begun at START (rounded up,
 * as the kernel rounds); negative (infinite) and 0 stay as they are. */
static int ks_left_ms(int timeout, uint64_t start)
{
    if (timeout <= 0)
        return timeout;
    uint64_t end = start + (uint64_t)timeout * 1000000u, now = ks_now_ns();
    return now >= end ? 0 : (int)((end - now + 999999u) / 1000000u);
}

/* ---- Sleeping ---------------------------------------------------------- */

/* As glibc's: nanosleep, and on interruption the whole seconds not slept. */
KS_EXPORT unsigned int sleep(unsigned int seconds)
{
    KS_BLOCK_ENTER(self, KS_CALL_SLEEP);
    KS_NEED(nanosleep, seconds);
    int saved = errno;
    struct timespec ts = {(time_t)seconds, 0};
    unsigned seen = ks_dumps(self);
    while (KS_REAL(nanosleep)(&ts, &ts) != 0) {
        if (!ks_cut_by_dump(self, &seen))
            return (unsigned int)ts.tv_sec;
    }
    errno = saved;
    return 0;
}

KS_EXPORT int usleep(useconds_t us)
{
    KS_BLOCK_ENTER(self, KS_CALL_USLEEP);
    KS_NEED(nanosleep, -1);
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(nanosleep)(&ts, &ts)) != 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
    KS_BLOCK_ENTER(self, KS_CALL_NANOSLEEP);
    KS_NEED(nanosleep, -1);
    struct timespec mine, left;
    struct timespec *out = rem ? rem : &mine;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(nanosleep)(req, out)) != 0 && ks_cut_by_dump(self, &seen)) {
        left = *out;
        req = &left;
    }
    return rc;
}

/* Returns an error number, not -1: errno is set only for ks_cut_by_dump. */
KS_EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
                              struct timespec *rem)
{
    KS_BLOCK_ENTER(self, KS_CALL_CLOCK_NANOSLEEP);
    if (!KS_REAL(clock_nanosleep))
        return ENOSYS;
    struct timespec mine, left;
    struct timespec *out = rem ? rem : &mine;
    unsigned seen = ks_dumps(self);
    int rc, saved = errno;
    while ((rc = KS_REAL(clock_nanosleep)(clk, flags, req, out)) == EINTR) {
        errno = EINTR;
        if (!ks_cut_by_dump(self, &seen))
            break;
        if (!(flags & TIMER_ABSTIME)) {
            left = *out;
            req = &left;
        }
    }
    errno = saved;
    return rc;
}

/* ---- Waiting for file descriptors ------------------------------------- */

KS_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    KS_BLOCK_ENTER(self, KS_CALL_POLL);
    KS_NEED(poll, -1);
    uint64_t start = timeout > 0 ? ks_now_ns() : 0;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(poll)(fds, n, ks_left_ms(timeout, start))) < 0 &&
           ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

/* What -D_FORTIFY_SOURCE turns poll into. */
KS_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
    KS_BLOCK_ENTER(self, KS_CALL_POLL);
    KS_NEED(poll_chk, -1);
    uint64_t start = timeout > 0 ? ks_now_ns() : 0;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(poll_chk)(fds, n, ks_left_ms(timeout, start), fdslen)) < 0 &&
           ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *tmo, const sigset_t *mask)
{
    KS_BLOCK_ENTER(self, KS_CALL_PPOLL);
    KS_NEED(ppoll, -1);
    uint64_t start = tmo ? ks_now_ns() : 0;
    struct timespec left;
    const struct timespec *cur = tmo;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(ppoll)(fds, n, cur, mask)) < 0 && ks_cut_by_dump(self, &seen)) {
        if (tmo)   /* the kernel read it: valid */
            cur = ks_left_ts(start + ks_ts_ns(tmo), &left);
    }
    return rc;
}

KS_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *tmo,
                          const sigset_t *mask, size_t fdslen)
{
    KS_BLOCK_ENTER(self, KS_CALL_PPOLL);
    KS_NEED(ppoll_chk, -1);
    uint64_t start = tmo ? ks_now_ns() : 0;
    struct timespec left;
    const struct timespec *cur = tmo;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(ppoll_chk)(fds, n, cur, mask, fdslen)) < 0 &&
           ks_cut_by_dump(self, &seen)) {
        if (tmo)
            cur = ks_left_ts(start + ks_ts_ns(tmo), &left);
    }
    return rc;
}

/* Linux leaves the sets untouched on EINTR and writes the time left into
 * TV, so the same arguments resume the wait. */
KS_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    KS_BLOCK_ENTER(self, KS_CALL_SELECT);
    KS_NEED(select, -1);
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(select)(nfds, r, w, e, tv)) < 0 && ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

/* pselect never writes its timeout back: the time left comes from the clock. */
KS_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *tmo,
                      const sigset_t *mask)
{
    KS_BLOCK_ENTER(self, KS_CALL_PSELECT);
    KS_NEED(pselect, -1);
    uint64_t start = tmo ? ks_now_ns() : 0;
    struct timespec left;
    const struct timespec *cur = tmo;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(pselect)(nfds, r, w, e, cur, mask)) < 0 && ks_cut_by_dump(self, &seen)) {
        if (tmo)
            cur = ks_left_ts(start + ks_ts_ns(tmo), &left);
    }
    return rc;
}

KS_EXPORT int epoll_wait(int ep, struct epoll_event *ev, int max, int timeout)
{
    KS_BLOCK_ENTER(self, KS_CALL_EPOLL_WAIT);
    KS_NEED(epoll_wait, -1);
    uint64_t start = timeout > 0 ? ks_now_ns() : 0;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(epoll_wait)(ep, ev, max, ks_left_ms(timeout, start))) < 0 &&
           ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int epoll_pwait(int ep, struct epoll_event *ev, int max, int timeout, const sigset_t *mask)
{
    KS_BLOCK_ENTER(self, KS_CALL_EPOLL_PWAIT);
    KS_NEED(epoll_pwait, -1);
    uint64_t start = timeout > 0 ? ks_now_ns() : 0;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(epoll_pwait)(ep, ev, max, ks_left_ms(timeout, start), mask)) < 0 &&
           ks_cut_by_dump(self, &seen)) {
    }
    return rc;
}

KS_EXPORT int epoll_pwait2(int ep, struct epoll_event *ev, int max, const struct timespec *tmo,
                           const sigset_t *mask)
{
    KS_BLOCK_ENTER(self, KS_CALL_EPOLL_PWAIT2);
    KS_NEED(epoll_pwait2, -1);
    uint64_t start = tmo ? ks_now_ns() : 0;
    struct timespec left;
    const struct timespec *cur = tmo;
    unsigned seen = ks_dumps(self);
    int rc;
    while ((rc = KS_REAL(epoll_pwait2)(ep, ev, max, cur, mask)) < 0 &&
           ks_cut_by_dump(self, &seen)) {
        if (tmo)
            cur = ks_left_ts(start + ks_ts_ns(tmo), &left);
    }
    return rc;
}

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
