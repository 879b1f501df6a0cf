/* The socket directory (see sockdir.h). */
#include "sockdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "shim/common/fdid.h"
#include "shim/core/ks.h"

/* The directory, opened and checked. Reopened (and checked again) only if
 * the program closed the number. */
static int ks_dir_fd = -1;
static struct ks_fdid ks_dir_id;

/* The file this process made, so that it removes that one and no other. */
static struct {
    pid_t owner;                 /* 0: none */
    dev_t dev;
    ino_t ino;
    char name[32];
} ks_made KS_HOT_DATA;   /* read at every exit */

/* KILLSHIM_SOCKET_DIR without trailing slashes: "DIR/" would make open()
 * follow a symbolic link DIR despite O_NOFOLLOW. */
static const char *ks_dir_path(char *buf, size_t cap)
{
    const char *d = getenv("KILLSHIM_SOCKET_DIR");
    snprintf(buf, cap, "%s", d ? d : "");
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    return buf;
}

static int ks_dir_check(int fd, const char *path, char *why, size_t cap)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(why, cap, "cannot stat KILLSHIM_SOCKET_DIR=%s: %s", path, strerror(errno));
        return errno;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(why, cap, "KILLSHIM_SOCKET_DIR=%s belongs to uid %d, neither this process's "
                 "user (%d) nor root: its owner could replace the socket", path, (int)st.st_uid,
                 (int)geteuid());
        return EPERM;
    }
    if (st.st_mode & 022) {
        snprintf(why, cap, "KILLSHIM_SOCKET_DIR=%s is writable by %s (mode %04o): use a "
                 "directory only its owner can write", path,
                 st.st_mode & 002 ? "every user" : "its group", (unsigned)(st.st_mode & 07777));
        return EPERM;
    }
    return 0;
}

static int ks_dir_open(char *why, size_t cap)
{
    if (ks_dir_fd >= 0 && ks_fdid_same(ks_dir_fd, &ks_dir_id))
        return 0;
    char path[4096];
    ks_dir_path(path, sizeof path);
    int fd = ks_fd_high(open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd < 0) {
        int e = errno;
        struct stat st;
        if (e == ELOOP || (e == ENOTDIR && lstat(path, &st) == 0 && S_ISLNK(st.st_mode)))
            snprintf(why, cap, "KILLSHIM_SOCKET_DIR=%s is a symbolic link: name the directory "
                     "itself (a link could be repointed)", path);
        else
            snprintf(why, cap, "cannot open KILLSHIM_SOCKET_DIR=%s: %s", path, strerror(e));
        return e;
    }
    struct ks_fdid id;
    int rc = ks_dir_check(fd, path, why, cap);
    if (!rc)
        rc = ks_fdid_get(fd, &id);
    if (rc) {
        close(fd);
        return rc;
    }
    ks_dir_fd = fd;
    ks_dir_id = id;
    return 0;
}

/* A fresh private subdirectory of the directory: *SUB gets its name. */
static int ks_make_private(char *sub, size_t cap)
{
    for (int tries = 0; tries < 16; tries++) {
        unsigned long long r;
        if (syscall(SYS_getrandom, &r, sizeof r, (unsigned long)GRND_NONBLOCK) != (long)sizeof r)
            r = ks_now_ns() ^ ((unsigned long long)ks_gettid() << 32);
        snprintf(sub, cap, ".killshim-%016llx", r);
        if (mkdirat(ks_dir_fd, sub, 0700) == 0)
            return 0;
        if (errno != EEXIST)
            return errno;
    }
    return EEXIST;
}

/* Binds and listens in the private subdirectory SUB, then renames the
 * socket into place: once its name exists it already accepts (a client that
 * finds the file and is refused knows the file is stale), and the rename
 * replaces a stale file a dead process left under the same pid. */
static int ks_bind_in(int sock, const char *sub, const char *name, char *why, size_t cap)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s/s", sub);
    snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/%s", ks_dir_fd, tmp);
    /* Its mode at creation: bind gives the file the socket inode's mode
     * less the umask. */
    if (fchmod(sock, 0600) != 0 || bind(sock, (const struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        if (e == ENOENT && access("/proc/self/fd", X_OK) != 0)
            snprintf(why, cap, "KILLSHIM_SOCKET_DIR needs /proc mounted (the socket is bound "
                     "through /proc/self/fd, never through the path again)");
        else
            snprintf(why, cap, "cannot bind the socket: %s", strerror(e));
        return e;
    }
    struct stat st;
    int rc = listen(sock, 64) != 0 ? errno : 0;
    /* A kernel that ignored the fchmod: still private in the 0700
     * subdirectory, so it is fixed before the name appears. */
    if (!rc && fstatat(ks_dir_fd, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & 077))
        rc = fchmodat(ks_dir_fd, tmp, 0600, 0) != 0 ? errno : 0;
    if (!rc && renameat(ks_dir_fd, tmp, ks_dir_fd, name) != 0)
        rc = errno;
    if (!rc && fstatat(ks_dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        ks_made.owner = getpid();
        ks_made.dev = st.st_dev;
        ks_made.ino = st.st_ino;
        snprintf(ks_made.name, sizeof ks_made.name, "%s", name);
    }
    if (rc) {
        snprintf(why, cap, "cannot put the socket in place: %s", strerror(rc));
        unlinkat(ks_dir_fd, tmp, 0);
    }
    return rc;
}

int ks_sockdir_bind(int sock, char *display, size_t dcap, char *why, size_t wcap)
{
    char path[4096], name[32], sub[40];
    snprintf(name, sizeof name, "killshim-%d.sock", (int)ks_getpid());
    snprintf(display, dcap, "%s/%s", ks_dir_path(path, sizeof path), name);
    int rc = ks_dir_open(why, wcap);
    if (rc)
        return rc;
    rc = ks_make_private(sub, sizeof sub);
    if (rc) {
        snprintf(why, wcap, "cannot make a private directory in KILLSHIM_SOCKET_DIR=%s: %s",
                 path, strerror(rc));
        return rc;
    }
    rc = ks_bind_in(sock, sub, name, why, wcap);
    unlinkat(ks_dir_fd, sub, AT_REMOVEDIR);
    return rc;
}

KS_FORK_PATH void ks_sockdir_cleanup(void)
{
    if (!ks_made.owner || ks_made.owner != getpid())
        return;
    char why[64];
    struct stat st;
    /* The directory the file was made in, reopened and checked if the
     * program closed the number; a different directory now at the path is
     * not ours to touch. */
    struct ks_fdid was = ks_dir_id;
    if (ks_dir_open(why, sizeof why) != 0 || ks_dir_id.dev != was.dev || ks_dir_id.ino != was.ino)
        return;
    if (fstatat(ks_dir_fd, ks_made.name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_dev == ks_made.dev && st.st_ino == ks_made.ino)
        unlinkat(ks_dir_fd, ks_made.name, 0);
    ks_made.owner = 0;
}

KS_FORK_PATH void ks_sockdir_after_fork_child(void)
{
    if (ks_made.owner)
        ks_made.owner = 0;
}
