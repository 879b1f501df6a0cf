/* Identity of the shim's own file descriptors.
 *
 * The shim's fds (the control socket, its connections) live in the
 * program's fd table, and a program may close every fd (closefrom,
 * close_range, a loop up to RLIMIT_NOFILE) or dup2 over one of them, then
 * reuse the number for a file of its own. A number alone therefore proves
 * nothing: before each use the shim checks that the number still names the
 * open file it created (a socket's (st_dev, st_ino) is unique while the
 * socket lives), and it never reads, writes or closes a number that has
 * changed hands. A change between the check and the syscall (a few
 * instructions) is the one race left; see docs/robust.md. And it keeps its
 * long-lived fds at high numbers (ks_fd_high), where a program that closes
 * and reopens files does not land. */
#ifndef KS_FDID_H
#define KS_FDID_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ks_fdid {
    dev_t dev;
    ino_t ino;
};

/* Records what FD refers to now. Returns 0 or an errno. */
int ks_fdid_get(int fd, struct ks_fdid *id);
/* 1 if FD still refers to the file ID was taken from, else 0. */
int ks_fdid_same(int fd, const struct ks_fdid *id);
/* Closes FD if it is still ID's file; otherwise leaves the number (now the
 * program's) alone. Returns 1 if it closed it. */
int ks_fdid_close(int fd, const struct ks_fdid *id);

/* For an fd whose inode every file of its kind shares (eventfd, epoll,
 * timerfd, signalfd: one anonymous inode for all), where (st_dev, st_ino)
 * proves nothing: a private duplicate of FD at a high number, or -1 if no
 * number is free for one. ks_fdid_same_dup then asks the kernel (kcmp
 * KCMP_FILE) whether FD and that duplicate are still one open file; where
 * kcmp is refused (seccomp, a kernel without it), or there is no duplicate
 * (DUP -1), it can only check that FD is an anonymous-inode file, which is
 * all there is then. */
int ks_fdid_dup(int fd);
int ks_fdid_same_dup(int fd, int dup);

/* Where the shim's long-lived fds live (the control socket, its
 * connections, the eventfds behind killshim_stop_fd): at KS_FD_FLOOR or
 * above, or at half the soft RLIMIT_NOFILE if that is lower. The kernel
 * hands out the lowest free number, so a program only reaches 256 with 256
 * files of its own open; the fixed numbers programs dup2 onto lie below it
 * (0-2, systemd's passed fds from 3, the shells' saved fds from 10 and
 * bash's script fd 255); and the default soft limit (1024) leaves room
 * above it. Higher would cost the process a bigger fd table in the kernel
 * (8 bytes a slot up to the highest open number) for no gain. */
#define KS_FD_FLOOR 256

/* Moves FD, just created by the shim (socket, accept4, eventfd), to the
 * lowest free number at or above the floor, close-on-exec, and closes the
 * low number if it still names the same file. Returns the new fd; FD itself
 * if it is already high enough or cannot move (no free number below the
 * limit: it stays usable, and checked before each use like any other); FD
 * unchanged if negative, so "fd = ks_fd_high(socket(...))" keeps socket's
 * errno. */
int ks_fd_high(int fd);
/* The floor ks_fd_high uses now (RLIMIT_NOFILE may have changed). */
int ks_fd_floor(void);

/* accept4 on the listening socket LISTEN_FD (the caller's own, ID), the
 * result moved high (ks_fd_high), without holding a number while it waits:
 * a blocked accept4 has already taken the lowest free fd for the connection
 * it waits for (the kernel allocates the number before it sleeps), so a
 * program's open() gets the next one for as long as the shim waits, forever
 * on an idle socket. So it waits in poll (which takes no number) for up to
 * KS_ACCEPT_WAIT_MS, and accepts only a connection that is there, without
 * blocking. Returns the fd, or -1 with errno: EINTR when nothing came (or it
 * went away again; the caller re-checks LISTEN_FD and calls again), EBADF if
 * LISTEN_FD was closed or replaced under the wait (then nothing is done to
 * it), or accept4's. The wait's end also lets the caller notice within a
 * second that the program closed or replaced LISTEN_FD. */
#define KS_ACCEPT_WAIT_MS 1000
int ks_fd_accept(int listen_fd, const struct ks_fdid *id);

/* poll() on one fd for up to MS milliseconds, as the raw system call: the
 * shim's own poll hook (interpose_block.c) is for the program's threads,
 * and its wait must never count as one of theirs. Returns as poll; fills
 * REVENTS if not NULL. */
int ks_fd_poll1(int fd, short events, int ms, short *revents);

#ifdef __cplusplus
}
#endif
#endif
