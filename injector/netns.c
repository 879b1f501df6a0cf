/* See netns.h.
 *
 * An abstract name (@killshim-PID) belongs to one network namespace, and a
 * socket to the one its creator was in at socket(). So for the connection
 * the injector moves into the target's: the connecting socket, sock_diag's
 * netlink socket and /proc/net/unix (the peer check, peer.c) all belong to
 * it then, and the injector goes back once the peer is checked; the
 * connected socket keeps working from there. setns(CLONE_NEWNET) moves
 * only the calling thread (unlike a mount namespace, it does not need a
 * single-threaded process), and /proc/self/net follows the main thread:
 * the injector makes no thread, so the two agree (a sanitizer's background
 * thread neither reads /proc/net nor makes sockets). */
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deadline.h"
#include "injector.h"

static int ksi_netns_why(pid_t pid, const char *where, const char *what, int e)
{
    ksi_err("process %d is in another network namespace, where %s is another name, and %s "
            "failed (%s%s): run the injector in its namespace (nsenter --net --target %d "
            "killshim-inject ...) or set KILLSHIM_SOCKET_DIR on both sides", (int)pid, where,
            what, strerror(e), e == EPERM ? ": entering it needs CAP_SYS_ADMIN" : "", (int)pid);
    return e == EPERM || e == EACCES ? KSI_EXIT_PERMISSION : KSI_EXIT_ERROR;
}

int ksi_netns_enter(pid_t pid, const char *where, int *back)
{
    *back = -1;
    char path[64];
    struct stat me, it;
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
    if (stat("/proc/self/ns/net", &me) != 0 || stat(path, &it) != 0)
        return KSI_EXIT_OK;   /* cannot tell: the peer check decides */
    if (me.st_ino == it.st_ino && me.st_dev == it.st_dev)
        return KSI_EXIT_OK;
    int own = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (own < 0)
        return ksi_netns_why(pid, where, "opening the injector's own", errno);
    int theirs = open(path, O_RDONLY | O_CLOEXEC);
    if (theirs < 0) {
        int e = errno;
        close(own);
        return ksi_netns_why(pid, where, "opening it", e);
    }
    int rc = setns(theirs, CLONE_NEWNET);
    int e = errno;
    close(theirs);
    if (rc != 0) {
        close(own);
        return ksi_netns_why(pid, where, "entering it", e);
    }
    ksi_phase("entered the network namespace of process %d", (int)pid);
    *back = own;
    return KSI_EXIT_OK;
}

void ksi_netns_leave(int back)
{
    if (back < 0)
        return;
    /* Cannot fail where the entry worked (the same capability, over the
     * injector's own namespace); if it did, what follows only connects
     * again, in the target's namespace, where that works. */
    (void)setns(back, CLONE_NEWNET);
    close(back);
}
