/* See fdid.h. */
#include "fdid.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The program may have closed FD behind the shim's back (closefrom, a raw
 * close_range) and another thread opened something else on the number: the
 * question is what the kernel has there now, whoever owns it. A raw fstat
 * asks it without telling an fd-tracking interposer (ThreadSanitizer) that
 * the shim used the program's fd. */
int ks_fdid_get(int fd, struct ks_fdid *id)
{
    struct stat st;
    if (fd < 0 || syscall(SYS_fstat, fd, &st) != 0)
        return fd < 0 ? EBADF : errno;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    return 0;
}

int ks_fdid_same(int fd, const struct ks_fdid *id)
{
    struct ks_fdid now = {0, 0};
    return ks_fdid_get(fd, &now) == 0 && now.dev == id->dev && now.ino == id->ino;
}

int ks_fdid_dup(int fd)
{
    int saved = errno;
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, ks_fd_floor());
    errno = saved;
    return dup < 0 ? -1 : dup;
}

int ks_fdid_same_dup(int fd, int dup)
{
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) != 0 || (st.st_mode & S_IFMT) != 0)
        return 0;   /* closed, or a file of a kind with inodes of its own */
    struct ks_fdid id = {st.st_dev, st.st_ino};
    if (dup < 0)
        return 1;   /* an anonymous inode: nothing finer to compare */
    if (!ks_fdid_same(dup, &id))
        return 0;
    int saved = errno;
    long k = syscall(SYS_kcmp, (long)getpid(), (long)getpid(), (long)KCMP_FILE, (long)fd,
                     (long)dup);
    int same = k == 0 || (k < 0 && (errno == ENOSYS || errno == EPERM));
    errno = saved;
    return same;
}

int ks_fdid_close(int fd, const struct ks_fdid *id)
{
    if (!ks_fdid_same(fd, id))
        return 0;
    close(fd);
    return 1;
}

int ks_fd_floor(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= 2 * (rlim_t)KS_FD_FLOOR)
        return KS_FD_FLOOR;
    return (int)(rl.rlim_cur / 2);
}

int ks_fd_high(int fd)
{
    int floor = ks_fd_floor();
    struct ks_fdid id;
    if (fd < 0 || fd >= floor || ks_fdid_get(fd, &id) != 0)
        return fd;
    int saved = errno;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, floor);
    if (high < 0) {
        errno = saved;
        return fd;
    }
    /* Between the creation and here the program may have closed FD and
     * opened a file of its own there (a close loop in another thread):
     * then only our copy at HIGH is ours, and the low number is left. */
    ks_fdid_close(fd, &id);
    errno = saved;
    return high;
}

int ks_fd_poll1(int fd, short events, int ms, short *revents)
{
    struct pollfd p = {.fd = fd, .events = events};
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    int r = (int)syscall(SYS_ppoll, &p, 1, &ts, NULL, 0);
    if (revents)
        *revents = p.revents;
    return r;
}

int ks_fd_accept(int listen_fd, const struct ks_fdid *id)
{
    short revents = 0;
    int n = ks_fd_poll1(listen_fd, POLLIN, KS_ACCEPT_WAIT_MS, &revents);
    if (n < 0)
        return -1;
    if (n == 0 || !(revents & (POLLIN | POLLNVAL | POLLERR | POLLHUP))) {
        errno = EINTR;
        return -1;
    }
    /* A second may have passed since the caller's check: the program may
     * have put a file of its own on the number (dup2), which polls readable.
     * Its flags are not ours to change. */
    if ((revents & POLLNVAL) || !ks_fdid_same(listen_fd, id)) {
        errno = EBADF;
        return -1;
    }
    /* Non-blocking, so that a connection that went away between the poll
     * and here (the client gave up) leaves no accept4 asleep on a number.
     * Accepted sockets do not inherit the flag (SOCK_CLOEXEC only). */
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        errno = EINTR;
    return ks_fd_high(fd);
}
