/* Control server (see server.h). */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "ks.h"
#include "proto.h"
#include "registry.h"
#include "sockaddr.h"

#define KS_MAX_CONNS 64          /* connection threads at once; more get "busy" */
#define KS_CONN_STACK (256 * 1024)

static int ks_listen_fd = -1;
static char ks_sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* file mode only */
static pid_t ks_sock_owner;      /* pid that created ks_sock_path */
static _Atomic int ks_conns;
static uint64_t ks_generation;   /* bumped at fork: an old accept loop quits */
static int ks_idle_ms = 10000;   /* a silent client is dropped after this; KILLSHIM_IDLE_TIMEOUT_MS */

struct ks_spawn {
    void *(*fn)(void *);
    void *arg;
};

static void *ks_shim_thread_main(void *p)
{
    struct ks_spawn s = *(struct ks_spawn *)p;
    free(p);
    ks_registry_add_self(KS_ROLE_SHIM, NULL);
    void *r = s.fn(s.arg);
    ks_registry_remove_self();
    return r;
}

int ks_spawn_shim_thread(const char *name, void *(*fn)(void *), void *arg, size_t stack)
{
    if (!ks_real.pthread_create)
        ks_resolve_all();
    struct ks_spawn *s = malloc(sizeof *s);
    if (!s)
        return ENOMEM;
    s->fn = fn;
    s->arg = arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack)
        pthread_attr_setstacksize(&attr, stack);
    sigset_t all;
    sigfillset(&all);
    pthread_attr_setsigmask_np(&attr, &all);
    pthread_t th;
    int rc = ks_real.pthread_create(&th, &attr, ks_shim_thread_main, s);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(s);
        return rc;
    }
    pthread_setname_np(th, name);
    return 0;
}

/* send() with MSG_NOSIGNAL: a client that hangs up must never raise SIGPIPE
 * in the program. Returns 0 or -1. */
static int ks_send_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void ks_send_err(int fd, const char *code, const char *msg)
{
    struct ks_out o;
    ks_out_init(&o);
    ks_out_err(&o, code, "%s", msg);
    if (!o.oom)
        ks_send_all(fd, o.buf, o.len);
    ks_out_free(&o);
}

/* Runs one request line; returns 0 to go on, 1 to close the connection. */
static int ks_serve_line(int fd, const char *line, size_t len)
{
    struct ks_msg *m = malloc(sizeof *m);
    struct ks_out o;
    ks_out_init(&o);
    int quit = 0;
    const char *err = NULL;
    if (!m) {
        ks_out_err(&o, "internal", "out of memory");
    } else if (ks_proto_parse(line, len, m, &err) != 0) {
        ks_out_err(&o, "bad-request", "%s", err);
    } else if (strcmp(m->verb, "quit") == 0) {
        ks_out_ok(&o);
        quit = 1;
    } else {
        const struct ks_command *c = ks_command_find(m->verb);
        if (c)
            c->fn(m, &o);
        else
            ks_out_err(&o, "unknown-verb", "unknown verb '%s' (try 'help')", m->verb);
    }
    if (o.oom) {
        ks_out_free(&o);
        ks_out_init(&o);
        ks_out_err(&o, "internal", "out of memory while answering");
    }
    int rc = ks_send_all(fd, o.buf, o.len) != 0 || quit;
    ks_out_free(&o);
    free(m);
    return rc;
}

static void *ks_conn_main(void *p)
{
    int fd = (int)(intptr_t)p;
    struct timeval tv = {ks_idle_ms / 1000, (ks_idle_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    char banner[96];
    int bn = snprintf(banner, sizeof banner, "killshim proto=%d pid=%d\n", KS_PROTO_VERSION,
                      (int)ks_pid);
    char *buf = malloc(KS_PROTO_MAX_LINE + 2);
    if (!buf || ks_send_all(fd, banner, (size_t)bn) != 0)
        goto out;
    size_t have = 0;
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        if (nl) {
            size_t len = (size_t)(nl - buf);
            if (ks_serve_line(fd, buf, len))
                break;
            have -= len + 1;
            memmove(buf, nl + 1, have);
            continue;
        }
        if (have > KS_PROTO_MAX_LINE) {
            ks_send_err(fd, "too-long", "request line longer than 4096 bytes");
            break;
        }
        ssize_t r = read(fd, buf + have, KS_PROTO_MAX_LINE + 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ks_send_err(fd, "timeout", "no complete request line in time; closing");
            break;
        }
        if (r <= 0) {
            if (have > 0)
                ks_send_err(fd, "truncated", "connection closed in the middle of a line");
            break;
        }
        have += (size_t)r;
    }
out:
    free(buf);
    close(fd);
    atomic_fetch_sub(&ks_conns, 1);
    return NULL;
}

/* Only the target's own user, or root, may control it (as the JVM's attach
 * listener does). Checked on every connection, before anything is read. */
static int ks_peer_allowed(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return 0;
    return cr.uid == 0 || cr.uid == geteuid();
}

static void *ks_accept_main(void *p)
{
    uint64_t gen = (uint64_t)(uintptr_t)p;
    int lfd = ks_listen_fd;
    while (__atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE) == gen) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                usleep(100 * 1000);   /* the program ran out of fds; wait, don't spin */
                continue;
            }
            ks_warn("control socket stopped accepting: %s", strerror(errno));
            return NULL;
        }
        if (!ks_peer_allowed(fd)) {
            ks_send_err(fd, "permission", "killshim: permission denied: only the process's own user or root may control it");
            close(fd);
            continue;
        }
        if (atomic_fetch_add(&ks_conns, 1) >= KS_MAX_CONNS) {
            atomic_fetch_sub(&ks_conns, 1);
            ks_send_err(fd, "busy", "too many clients at once; try again");
            close(fd);
            continue;
        }
        int rc = ks_spawn_shim_thread("killshim-conn", ks_conn_main, (void *)(intptr_t)fd,
                                      KS_CONN_STACK);
        if (rc != 0) {
            atomic_fetch_sub(&ks_conns, 1);
            ks_send_err(fd, "busy", "cannot start a thread to serve this client");
            close(fd);
        }
    }
    return NULL;
}

/* File mode: bind in a private 0700 directory, make the socket 0600, then
 * rename it into place. The socket is never reachable with looser
 * permissions, and the rename replaces a stale file a dead process left. */
static int ks_bind_file(int fd, const struct sockaddr_un *want)
{
    char dir[sizeof want->sun_path];
    const char *slash = strrchr(want->sun_path, '/');
    size_t dl = slash ? (size_t)(slash - want->sun_path) : 0;
    if (snprintf(dir, sizeof dir, "%.*s/.killshim-XXXXXX", (int)dl, want->sun_path) >= (int)sizeof dir)
        return ENAMETOOLONG;
    if (!mkdtemp(dir))
        return errno;
    struct sockaddr_un tmp = {.sun_family = AF_UNIX};
    int rc = 0;
    if (snprintf(tmp.sun_path, sizeof tmp.sun_path, "%s/s", dir) >= (int)sizeof tmp.sun_path)
        rc = ENAMETOOLONG;
    else if (bind(fd, (const struct sockaddr *)&tmp, sizeof tmp) != 0)
        rc = errno;
    else if (chmod(tmp.sun_path, 0600) != 0 || rename(tmp.sun_path, want->sun_path) != 0)
        rc = errno;
    if (rc)
        unlink(tmp.sun_path);
    rmdir(dir);
    return rc;
}

static int ks_listen(char *display, size_t cap)
{
    struct sockaddr_un addr;
    socklen_t alen;
    if (ks_sockaddr_for_pid(ks_pid, &addr, &alen, display, cap) != 0)
        return errno;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int rc = 0;
    if (ks_sockaddr_is_file()) {
        rc = ks_bind_file(fd, &addr);
        if (!rc) {
            snprintf(ks_sock_path, sizeof ks_sock_path, "%s", addr.sun_path);
            ks_sock_owner = ks_pid;
        }
    } else if (bind(fd, (const struct sockaddr *)&addr, alen) != 0) {
        rc = errno;
    }
    if (!rc && listen(fd, 64) != 0)
        rc = errno;
    if (rc) {
        close(fd);
        return rc;
    }
    ks_listen_fd = fd;
    return 0;
}

void ks_server_start(void)
{
    const char *idle = getenv("KILLSHIM_IDLE_TIMEOUT_MS");
    if (idle && atoi(idle) > 0)
        ks_idle_ms = atoi(idle);
    char display[128] = "";
    int rc = ks_listen(display, sizeof display);
    if (rc) {
        ks_warn("cannot serve control socket %s: %s; the program runs on without killshim control",
                display, strerror(rc));
        return;
    }
    uint64_t gen = __atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE);
    rc = ks_spawn_shim_thread("killshim-ctl", ks_accept_main, (void *)(uintptr_t)gen, KS_CONN_STACK);
    if (rc) {
        ks_warn("cannot start the control thread: %s; the program runs on without killshim control",
                strerror(rc));
        close(ks_listen_fd);
        ks_listen_fd = -1;
        return;
    }
    ks_debug("serving %s", display);
}

void ks_server_after_fork_child(void)
{
    __atomic_add_fetch(&ks_generation, 1, __ATOMIC_RELEASE);
    if (ks_listen_fd >= 0)
        close(ks_listen_fd);
    ks_listen_fd = -1;
    ks_sock_path[0] = '\0';   /* the parent's file is the parent's to remove */
    atomic_store(&ks_conns, 0);
    ks_server_start();
}

void ks_server_cleanup(void)
{
    if (ks_sock_path[0] && ks_sock_owner == getpid())
        unlink(ks_sock_path);
}
