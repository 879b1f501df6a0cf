/* Control server (see server.h). */
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "fdid.h"
#include "ks.h"
#include "lock.h"
#include "proto.h"
#include "registry.h"
#include "shim_thread.h"
#include "signals.h"
#include "sockaddr.h"

#define KS_MAX_CONNS 64          /* connection threads at once; more wait in the backlog */
#define KS_CONN_STACK (256 * 1024)

/* The listening socket. Only the accept thread changes these once it runs
 * (it re-creates the socket if the program takes the number away). */
static int ks_listen_fd = -1;
static struct ks_fdid ks_listen_id;
static char ks_sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* file mode only */
static pid_t ks_sock_owner;      /* pid that created ks_sock_path */
static _Atomic int ks_conns;

/* The connections being served, so a fork child can drop its copies of
 * them: the parent's clients are the parent's. Under ks_conn_mu, taken
 * through the real function (the shim's locking is not the program's). */
struct ks_conn {
    int fd;                      /* -1: free slot */
    struct ks_fdid id;
};
static struct ks_conn ks_conn_tab[KS_MAX_CONNS];
KS_LOCK_DEFINE(static, ks_conn_mu);
/* Bumped at fork and when the shim steps aside: an accept loop started
 * under an older generation quits. */
static uint64_t ks_generation;
static int ks_idle_ms = 10000;   /* a silent client is dropped after this; KILLSHIM_IDLE_TIMEOUT_MS */

/* ---- Connections ------------------------------------------------------- */

static void ks_conn_lock(void) { ks_lock(&ks_conn_mu); }
static void ks_conn_unlock(void) { ks_unlock(&ks_conn_mu); }

/* A free slot for FD, or NULL. The accept loop waits for ks_conns to drop
 * below KS_MAX_CONNS before it accepts, so a slot is normally free. */
static struct ks_conn *ks_conn_add(int fd)
{
    struct ks_conn *c = NULL;
    struct ks_fdid id;
    if (ks_fdid_get(fd, &id) != 0)
        return NULL;
    ks_conn_lock();
    for (int i = 0; i < KS_MAX_CONNS && !c; i++) {
        if (ks_conn_tab[i].fd < 0) {
            c = &ks_conn_tab[i];
            c->fd = fd;
            c->id = id;
        }
    }
    ks_conn_unlock();
    return c;
}

/* Closes C's socket if the number is still ours and frees the slot. */
static void ks_conn_drop(struct ks_conn *c)
{
    ks_conn_lock();
    ks_fdid_close(c->fd, &c->id);
    c->fd = -1;
    ks_conn_unlock();
}

/* send() with MSG_NOSIGNAL: a client that hangs up must never raise SIGPIPE
 * in the program. Refuses a number the program has taken over: the reply
 * must never land in one of the program's files. Returns 0 or -1. */
static int ks_send_all(const struct ks_conn *c, const char *buf, size_t len)
{
    while (len) {
        if (!ks_fdid_same(c->fd, &c->id))
            return -1;
        ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void ks_send_err(const struct ks_conn *c, const char *code, const char *msg)
{
    struct ks_out o;
    ks_out_init(&o);
    ks_out_err(&o, code, "%s", msg);
    if (!o.oom)
        ks_send_all(c, o.buf, o.len);
    ks_out_free(&o);
}

/* Runs one request line; returns 0 to go on, 1 to close the connection. */
static int ks_serve_line(const struct ks_conn *c, const char *line, size_t len)
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
        const struct ks_command *cmd = ks_command_find(m->verb);
        if (cmd)
            cmd->fn(m, &o);
        else
            ks_out_err(&o, "unknown-verb", "unknown verb '%s' (try 'help')", m->verb);
    }
    if (o.oom) {
        ks_out_free(&o);
        ks_out_init(&o);
        ks_out_err(&o, "internal", "out of memory while answering");
    }
    int rc = ks_send_all(c, o.buf, o.len) != 0 || quit;
    ks_out_free(&o);
    free(m);
    return rc;
}

static void *ks_conn_main(void *p)
{
    struct ks_conn *c = p;
    struct timeval tv = {ks_idle_ms / 1000, (ks_idle_ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    char banner[96];
    int bn = snprintf(banner, sizeof banner, "killshim proto=%d pid=%d\n", KS_PROTO_VERSION,
                      (int)ks_getpid());
    char *buf = malloc(KS_PROTO_MAX_LINE + 2);
    if (!buf || ks_send_all(c, banner, (size_t)bn) != 0)
        goto out;
    size_t have = 0;
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        if (nl) {
            size_t len = (size_t)(nl - buf);
            if (ks_serve_line(c, buf, len))
                break;
            have -= len + 1;
            memmove(buf, nl + 1, have);
            continue;
        }
        if (have > KS_PROTO_MAX_LINE) {
            ks_send_err(c, "too-long", "request line longer than 4096 bytes");
            break;
        }
        if (!ks_fdid_same(c->fd, &c->id))
            break;   /* the program closed our connection and reused the number */
        ssize_t r = read(c->fd, buf + have, KS_PROTO_MAX_LINE + 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ks_send_err(c, "timeout", "no complete request line in time; closing");
            break;
        }
        if (r <= 0) {
            if (have > 0)
                ks_send_err(c, "truncated", "connection closed in the middle of a line");
            break;
        }
        have += (size_t)r;
    }
out:
    free(buf);
    ks_conn_drop(c);
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

/* ---- Listening ----------------------------------------------------------- */

/* File mode: bind in a private 0700 directory, listen, make the socket 0600,
 * then rename it into place. The socket is never reachable with looser
 * permissions; once its name exists it already accepts, so a client that
 * finds the file and is refused knows the file is stale; and the rename
 * replaces a stale file a dead process left under the same pid. */
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
    else if (listen(fd, 64) != 0 || chmod(tmp.sun_path, 0600) != 0 ||
             rename(tmp.sun_path, want->sun_path) != 0)
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
    if (ks_sockaddr_for_pid(ks_getpid(), &addr, &alen, display, cap) != 0)
        return errno;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int rc = 0;
    if (ks_sockaddr_is_file()) {
        rc = ks_bind_file(fd, &addr);
        if (!rc) {
            snprintf(ks_sock_path, sizeof ks_sock_path, "%s", addr.sun_path);
            ks_sock_owner = ks_getpid();
        }
    } else if (bind(fd, (const struct sockaddr *)&addr, alen) != 0 || listen(fd, 64) != 0) {
        rc = errno;
    }
    struct ks_fdid id;
    if (!rc)
        rc = ks_fdid_get(fd, &id);
    if (rc) {
        close(fd);
        return rc;
    }
    ks_listen_id = id;
    __atomic_store_n(&ks_listen_fd, fd, __ATOMIC_RELEASE);
    return 0;
}

/* The program closed or replaced our listening fd (closefrom, close_range,
 * a close loop, dup2 over it). The number is the program's now: leave it.
 * Bind a new socket under the same name, which is free once the old socket
 * is gone (a blocked accept kept it alive until it returned). If the old
 * socket lives on (the program dup'ed it somewhere), the name stays taken:
 * retry, slower and slower. Returns 0 once serving again, or ECANCELED if a
 * fork made this loop obsolete. */
static int ks_relisten(uint64_t gen)
{
    static int warned;
    int old = ks_listen_fd;
    char display[128] = "";
    int rc, delay_ms = 20;
    while ((rc = ks_listen(display, sizeof display)) != 0) {
        if (!warned++)
            ks_warn("the program closed or replaced the control socket's fd %d and %s cannot be "
                    "re-created yet (%s); retrying", old, display, strerror(rc));
        ks_nap_ms((unsigned)delay_ms);
        if (delay_ms < 2000)
            delay_ms *= 2;
        if (__atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE) != gen)
            return ECANCELED;
    }
    if (!warned++)
        ks_warn("the program closed or replaced the control socket's fd %d; serving %s again on fd %d",
                old, display, ks_listen_fd);
    return 0;
}

/* Waits until a connection slot is free: clients beyond KS_MAX_CONNS wait
 * in the listen backlog (and then in connect) instead of being refused. */
static int ks_wait_slot(uint64_t gen)
{
    while (atomic_load(&ks_conns) >= KS_MAX_CONNS) {
        ks_nap_ms(2);
        if (__atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE) != gen)
            return -1;
    }
    return 0;
}

static void ks_serve_client(int fd)
{
    struct ks_conn tmp = {.fd = fd};
    ks_fdid_get(fd, &tmp.id);
    if (!ks_peer_allowed(fd)) {
        ks_send_err(&tmp, "permission", "killshim: permission denied: only the process's own user or root may control it");
        ks_fdid_close(fd, &tmp.id);
        return;
    }
    struct ks_conn *c = ks_conn_add(fd);
    if (!c) {
        ks_send_err(&tmp, "busy", "too many clients at once; try again");
        ks_fdid_close(fd, &tmp.id);
        return;
    }
    atomic_fetch_add(&ks_conns, 1);
    int rc = ks_spawn_shim_thread("killshim-conn", ks_conn_main, c, KS_CONN_STACK);
    if (rc != 0) {
        ks_send_err(c, "busy", "cannot start a thread to serve this client");
        ks_conn_drop(c);
        atomic_fetch_sub(&ks_conns, 1);
    }
}

/* The accept thread takes the shim's ACT signal (every other signal stays
 * blocked, shim_thread.h): ks_server_wake cuts its accept short with it.
 * A blocking accept, not a poll: a blocked accept holds the socket, so a
 * client that connected just before the program closed every fd is still
 * served (the socket lives until the call returns). */
static void ks_accept_unblock_wake(void)
{
    int act = ks_signo(KS_SIG_ACT);
    if (act <= 0)
        return;
    uint64_t set = 1ull << (act - 1);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, NULL, sizeof set);
}

/* The accept thread's tid while it runs, 0 otherwise; under ks_conn_mu, so
 * that a wake never reaches a recycled tid. */
static pid_t ks_accept_tid;

static void ks_accept_set_tid(pid_t tid)
{
    ks_conn_lock();
    ks_accept_tid = tid;
    ks_conn_unlock();
}

static void *ks_accept_loop(uint64_t gen)
{
    ks_accept_unblock_wake();
    for (;;) {
        if (__atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE) != gen || ks_wait_slot(gen) != 0)
            return NULL;
        /* Checked before every accept: accepting on a number the program
         * has reused would take its connections, or spin on its file. */
        if (!ks_fdid_same(ks_listen_fd, &ks_listen_id)) {
            if (ks_relisten(gen) != 0)
                return NULL;
            continue;
        }
        int fd = accept4(ks_listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS) {
                ks_nap_ms(100);   /* the program ran out of fds; wait, don't spin */
                continue;
            }
            if (!ks_fdid_same(ks_listen_fd, &ks_listen_id))
                continue;             /* taken away during the call: re-create above */
            if (e == EINVAL) {
                /* Still our socket, but no longer listening: the program
                 * called shutdown() on it. Start afresh. */
                ks_fdid_close(ks_listen_fd, &ks_listen_id);
                if (ks_relisten(gen) != 0)
                    return NULL;
                continue;
            }
            ks_warn("control socket stopped accepting: %s", strerror(e));
            return NULL;
        }
        ks_serve_client(fd);
    }
}

static void *ks_accept_main(void *p)
{
    ks_accept_set_tid(ks_gettid());
    void *r = ks_accept_loop((uint64_t)(uintptr_t)p);
    ks_accept_set_tid(0);
    return r;
}

static void ks_read_idle_timeout(void)
{
    const char *idle = getenv("KILLSHIM_IDLE_TIMEOUT_MS");
    if (idle && atoi(idle) > 0)
        ks_idle_ms = atoi(idle);
}

void ks_server_init(void)
{
    ks_read_idle_timeout();
    for (int i = 0; i < KS_MAX_CONNS; i++)
        ks_conn_tab[i].fd = -1;
}

int ks_server_listen(void)
{
    if (ks_listen_fd >= 0 && ks_fdid_same(ks_listen_fd, &ks_listen_id))
        return 0;
    char display[128] = "";
    int rc = ks_listen(display, sizeof display);
    if (rc)
        ks_warn("cannot serve control socket %s: %s; the program runs on without killshim control",
                display, strerror(rc));
    else
        ks_debug("serving %s", display);
    return rc;
}

int ks_server_run(void)
{
    uint64_t gen = __atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE);
    int rc = ks_spawn_shim_thread("killshim-ctl", ks_accept_main, (void *)(uintptr_t)gen,
                                  KS_CONN_STACK);
    if (rc)
        ks_warn("cannot start the control thread: %s; the program runs on without killshim control",
                strerror(rc));
    return rc;
}

void ks_server_close(void)
{
    if (ks_listen_fd >= 0)
        ks_fdid_close(ks_listen_fd, &ks_listen_id);
    ks_listen_fd = -1;
}

void ks_server_wake(void)
{
    ks_conn_lock();
    if (ks_accept_tid)
        ks_signal_tid(ks_accept_tid, KS_SIG_ACT);
    ks_conn_unlock();
}

void ks_server_stop(void)
{
    __atomic_add_fetch(&ks_generation, 1, __ATOMIC_ACQ_REL);
    ks_server_wake();
    ks_conn_lock();
    /* A connection thread waits in read() for its client's next line (or
     * is busy with a request and reads next): either way its read ends. */
    for (int i = 0; i < KS_MAX_CONNS; i++)
        if (ks_conn_tab[i].fd >= 0 && ks_fdid_same(ks_conn_tab[i].fd, &ks_conn_tab[i].id))
            shutdown(ks_conn_tab[i].fd, SHUT_RDWR);
    ks_conn_unlock();
}

void ks_server_after_fork_child(void)
{
    /* Drop the child's copies of the parent's sockets: the listening one
     * (so its name is freed when the parent exits) and its clients'. Only
     * numbers that still name our sockets: the program may own them now.
     * (ks_conn_mu was reset with every shim lock, lock.h.) */
    for (int i = 0; i < KS_MAX_CONNS; i++) {
        if (ks_conn_tab[i].fd >= 0) {
            ks_fdid_close(ks_conn_tab[i].fd, &ks_conn_tab[i].id);
            ks_conn_tab[i].fd = -1;
        }
    }
    /* Written only if set: each page the child writes is copied. */
    if (ks_listen_fd >= 0)
        ks_server_close();
    if (ks_accept_tid)
        ks_accept_tid = 0;
    if (ks_sock_path[0])
        ks_sock_path[0] = '\0';   /* the parent's file is the parent's to remove */
    if (atomic_load(&ks_conns))
        atomic_store(&ks_conns, 0);
}

void ks_server_cleanup(void)
{
    if (ks_sock_path[0] && ks_sock_owner == getpid())
        unlink(ks_sock_path);
}
