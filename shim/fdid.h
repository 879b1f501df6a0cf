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
 * instructions) is the one race left; see docs/robust.md. */
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

#ifdef __cplusplus
}
#endif
#endif
