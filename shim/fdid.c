/* See fdid.h. */
#include "fdid.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

int ks_fdid_close(int fd, const struct ks_fdid *id)
{
    if (!ks_fdid_same(fd, id))
        return 0;
    close(fd);
    return 1;
}
