#include "sockaddr.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procfs.h"

static const char *ks_socket_dir(void)
{
    const char *d = getenv("KILLSHIM_SOCKET_DIR");
    return d && *d ? d : NULL;
}

int ks_sockaddr_is_file(void) { return ks_socket_dir() != NULL; }

int ks_sockaddr_for_pid(pid_t pid, struct sockaddr_un *addr, socklen_t *len,
                        char *display, size_t display_cap)
{
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    const char *dir = ks_socket_dir();
    int n;
    if (dir) {
        /* The display first: a path too long for sun_path is still named
         * in the message that says so. */
        if (display) snprintf(display, display_cap, "%s/killshim-%d.sock", dir, (int)pid);
        n = snprintf(addr->sun_path, sizeof addr->sun_path, "%s/killshim-%d.sock", dir, (int)pid);
        if (n < 0 || (size_t)n >= sizeof addr->sun_path) { errno = ENAMETOOLONG; return -1; }
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
    } else {
        /* sun_path[0] == '\0' marks the abstract namespace; the length,
         * not a NUL, ends the name. */
        n = snprintf(addr->sun_path + 1, sizeof addr->sun_path - 1, "killshim-%d", (int)pid);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        if (display) snprintf(display, display_cap, "@%s", addr->sun_path + 1);
    }
    return 0;
}

pid_t ks_sockaddr_own_pid(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pid;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return pid;
    buf[n] = '\0';
    int levels;
    long last = ks_parse_nspid(buf, &levels);   /* the pid it sees itself as */
    return last > 0 ? (pid_t)last : pid;
}

int ks_sockaddr_connect(int sock, pid_t pid)
{
    pid = ks_sockaddr_own_pid(pid);
    struct sockaddr_un addr;
    socklen_t len;
    if (ks_sockaddr_for_pid(pid, &addr, &len, NULL, 0) == 0)
        return connect(sock, (const struct sockaddr *)&addr, len);
    if (errno != ENAMETOOLONG)
        return -1;
    /* The directory's path is too long for sun_path: name the socket
     * through the opened directory, as the shim binds it. */
    int dir = open(ks_socket_dir(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/killshim-%d.sock", dir,
             (int)pid);
    int rc = connect(sock, (const struct sockaddr *)&addr, sizeof addr);
    int e = errno;
    close(dir);
    errno = e;
    return rc;
}
