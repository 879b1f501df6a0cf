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
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "block_wrap.h"

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
