/* See peer.h. */
#include "peer.h"

#include <dirent.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "access.h"
#include "injector.h"
#include "shim/common/access.h"
#include "shim/common/procfs.h"
#include "shim/common/sockaddr.h"

#define KSI_NOCOOKIE (~0u)   /* INET_DIAG_NOCOOKIE: look the socket up by inode alone */

/* The inode of the socket at the other end of FD, from sock_diag. Returns 0
 * or an errno (the unix_diag module may be missing). */
static int ksi_peer_inode(int fd, unsigned *peer)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return errno;
    int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0)
        return errno;
    struct timeval tv = {2, 0};
    setsockopt(nl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct {
        struct nlmsghdr h;
        struct unix_diag_req r;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.r.sdiag_family = AF_UNIX;
    req.r.udiag_states = ~0u;
    req.r.udiag_ino = (unsigned)st.st_ino;
    req.r.udiag_show = UDIAG_SHOW_PEER;
    req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = KSI_NOCOOKIE;
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    long buf[2048];
    ssize_t n = -1;
    if (sendto(nl, &req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof req)
        n = recv(nl, buf, sizeof buf, 0);
    int rc = n < 0 ? errno : ENOENT;
    close(nl);
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (n < 0 || !NLMSG_OK(h, (size_t)n))
        return rc;
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        return e->error ? -e->error : ENOENT;
    }
    const struct unix_diag_msg *m = NLMSG_DATA(h);
    unsigned left = h->nlmsg_len - (unsigned)NLMSG_LENGTH(sizeof *m);
    for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, left); a = RTA_NEXT(a, left))
        if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof(unsigned)) {
            memcpy(peer, RTA_DATA(a), sizeof *peer);
            return 0;
        }
    return ENOENT;
}

/* Without sock_diag, for an abstract name: the inode of the socket that
 * listens on it, from /proc/net/unix (in the injector's network namespace,
 * where it connected). Returns 0 or ENOENT. */
static int ksi_listener_inode(const char *where, unsigned *ino)
{
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f)
        return errno;
    char line[512];
    int rc = ENOENT;
    while (rc && fgets(line, sizeof line, f)) {
        unsigned flags, st, inode;
        char path[256] = "";
        if (sscanf(line, "%*x: %*x %*x %x %*x %x %u %255s", &flags, &st, &inode, path) == 4 &&
            (flags & 0x10000) && strcmp(path, where) == 0) {
            *ino = inode;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

/* 1 if the fd directory DIR (/proc/PID/fd) holds socket INO, 0 if not, or
 * -errno if it cannot be read. */
static int ksi_dir_holds(const char *dir, unsigned ino)
{
    char link[320], want[48], got[64];
    snprintf(want, sizeof want, "socket:[%u]", ino);
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, got, sizeof got - 1);
        if (n > 0) {
            got[n] = '\0';
            found = strcmp(got, want) == 0;
        }
    }
    closedir(d);
    return found;
}

/* 1 if PID has socket INO open, 0 if not, or -errno if its fds cannot be
 * read (through a live thread if its main thread has exited). */
static int ksi_holds(pid_t pid, unsigned ino)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)ks_live_task(pid));
    return ksi_dir_holds(dir, ino);
}

/* The first process that holds socket INO, for the message; 0 if none the
 * injector can see. */
static pid_t ksi_holder(unsigned ino)
{
    DIR *d = opendir("/proc");
    pid_t who = 0;
    struct dirent *e;
    while (d && !who && (e = readdir(d)) != NULL) {
        pid_t p = (pid_t)atoi(e->d_name);
        if (p > 0 && ksi_holds(p, ino) == 1)
            who = p;
    }
    if (d)
        closedir(d);
    return who;
}

static void ksi_describe(pid_t pid, char *buf, size_t cap)
{
    char path[64], comm[64] = "?", status[4096];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    if (ks_read_small_file(path, comm, sizeof comm) > 0)
        comm[strcspn(comm, "\n")] = '\0';
    int uid = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    const char *u = ks_read_small_file(path, status, sizeof status) > 0 ? strstr(status, "\nUid:")
                                                                        : NULL;
    if (u)
        sscanf(u + 5, "%*d %d", &uid);
    snprintf(buf, cap, "process %d (%s, uid %d)", (int)pid, comm, uid);
}

static int ksi_impostor(int fd, pid_t pid, const char *where, unsigned ino)
{
    struct ucred cr = {0, (uid_t)-1, (gid_t)-1};
    socklen_t crl = sizeof cr;
    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl);
    pid_t holder = ksi_holder(ino);
    char who[160] = "no process the injector can see";
    if (holder)
        ksi_describe(holder, who, sizeof who);
    ksi_err("%s is not served by process %d: an impostor holds the name. Its server end is "
            "held by %s; its listening socket was made by uid %d as pid %d%s. Refusing to talk "
            "to it", where, (int)pid, who, (int)cr.uid, (int)cr.pid,
            cr.pid == pid ? " (an earlier process with the target's pid)" : "");
    return KSI_EXIT_PROTOCOL;
}

int ksi_peer_check(int fd, pid_t pid, const char *where)
{
    unsigned ino = 0;
    int rc = ksi_peer_inode(fd, &ino);
    if (rc && ks_sockaddr_is_file()) {
        ksi_err("cannot check who serves %s: the kernel's sock_diag answers %s (load the "
                "unix_diag module); refusing to send anything to an unchecked peer", where,
                strerror(rc));
        return KSI_EXIT_ERROR;
    }
    if (rc && ksi_listener_inode(where, &ino) != 0) {
        ksi_err("cannot check who serves %s: no sock_diag (%s) and no listener in "
                "/proc/net/unix", where, strerror(rc));
        return KSI_EXIT_ERROR;
    }
    int held = ksi_holds(pid, ino);
    if (held == 1)
        return KSI_EXIT_OK;
    if (held < 0) {
        char why[256];
        ksi_access_why(pid, KS_ACCESS_READ, why, sizeof why);
        ksi_err("permission denied: looking inside process %d needs ptrace read access (what "
                "/proc/%d/fd needs, to check who serves %s), which the kernel does not give "
                "you (%s): %s", (int)pid, (int)pid, where, strerror(-held), why);
        return KSI_EXIT_PERMISSION;
    }
    return ksi_impostor(fd, pid, where, ino);
}
