/* The control socket's connections (see conn.h). */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim/common/access.h"
#include "commands.h"
#include "shim/common/fdid.h"
#include "shim/core/attach.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/common/proto.h"
#include "shim_thread.h"

#define KS_CONN_STACK (256 * 1024)

/* The connections being served. Under ks_conn_mu, taken through the real
 * function (the shim's locking is not the program's). */
struct ks_conn {
    int fd;                      /* -1: free slot */
    struct ks_fdid id;
    int privileged;              /* root's or the process's uid: may use the reserve */
    /* Since when the connection waits on its client (for its next line, or
     * to take a reply), CLOCK_MONOTONIC ns; 0 while it runs a request.
     * Written by its thread, read by the accept thread. */
    uint64_t waiting_since;
};
static struct ks_conn ks_conn_tab[KS_MAX_CONNS];
/* Set (under ks_conn_mu) once every slot is marked free, by the first
 * connection: a process nobody connects to never writes the table's pages
 * (2.5 KB of .bss, a page fault at start in every process otherwise). Until
 * then there is no connection: readers of the table check it first. */
KS_HOT_DATA static int ks_conn_tab_ready;
KS_LOCK_DEFINE(static, ks_conn_mu);
KS_HOT_DATA static _Atomic int ks_conns;
static int ks_idle_ms = 10000;   /* per request line, per reply; KILLSHIM_IDLE_TIMEOUT_MS */

static void ks_conn_lock(void) { ks_lock(&ks_conn_mu); }
static void ks_conn_unlock(void) { ks_unlock(&ks_conn_mu); }

static void ks_set_waiting(struct ks_conn *c, uint64_t since)
{
    __atomic_store_n(&c->waiting_since, since, __ATOMIC_RELAXED);
}

/* poll() for EVENTS until DEADLINE_NS. Returns 1 ready, 0 timed out, -1
 * error. Checks first that the number is still ours: waiting on a number
 * the program reused would wait on its file. */
static int ks_wait_io(const struct ks_conn *c, short events, uint64_t deadline_ns)
{
    for (;;) {
        uint64_t now = ks_now_ns();
        if (now >= deadline_ns)
            return 0;
        if (!ks_fdid_same(c->fd, &c->id))
            return -1;
        int ms = (int)((deadline_ns - now + 999999) / 1000000);
        int r = ks_fd_poll1(c->fd, events, ms, NULL);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Sends all of BUF by DEADLINE_NS, with MSG_NOSIGNAL (a client that hangs up
 * must never raise SIGPIPE in the program). Refuses a number the program
 * has taken over: the reply must never land in one of its files. While the
 * client does not take the bytes, the connection waits on it (evictable).
 * Returns 0 or -1. */
static int ks_send_all(struct ks_conn *c, const char *buf, size_t len, uint64_t deadline_ns)
{
    while (len) {
        if (!ks_fdid_same(c->fd, &c->id))
            return -1;
        ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!__atomic_load_n(&c->waiting_since, __ATOMIC_RELAXED))
                ks_set_waiting(c, ks_now_ns());
            if (ks_wait_io(c, POLLOUT, deadline_ns) != 1)
                return -1;
            continue;
        }
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static uint64_t ks_deadline(void) { return ks_now_ns() + (uint64_t)ks_idle_ms * 1000000; }

static void ks_send_err(struct ks_conn *c, const char *code, const char *msg)
{
    struct ks_out o;
    ks_out_init(&o);
    ks_out_err(&o, code, "%s", msg);
    if (!o.oom)
        ks_send_all(c, o.buf, o.len, ks_now_ns() + 1000000000ull);
    ks_out_free(&o);
}

/* Runs the parsed request M into O: the access check first. Returns 1 for
 * quit. */
static int ks_dispatch(const struct ks_msg *m, struct ks_out *o)
{
    if (strcmp(m->verb, "quit") == 0) {
        ks_out_ok(o);
        return 1;
    }
    const struct ks_command *cmd = ks_command_find(m->verb);
    char why[320];
    if (!cmd)
        ks_out_err(o, "unknown-verb", "unknown verb '%s' (try 'help')", m->verb);
    else if (ks_access_check(m, cmd->access, cmd->verb, why, sizeof why) != 0)
        ks_out_err(o, "permission", "%s", why);
    else {
        ks_got_patch_later();   /* objects the program loaded since an attach */
        cmd->fn(m, o);
    }
    return 0;
}

/* A long reply's parts (ks_out_part: a listing's rows), sent as written. */
static int ks_send_part(void *arg, const char *buf, size_t len)
{
    return ks_send_all(arg, buf, len, ks_deadline());
}

/* Runs one request line; returns 0 to go on, 1 to close the connection. */
static int ks_serve_line(struct ks_conn *c, const char *line, size_t len)
{
    struct ks_msg *m = malloc(sizeof *m);
    struct ks_out o;
    ks_out_init(&o);
    o.sink = ks_send_part;
    o.sink_arg = c;
    int quit = 0;
    const char *err = NULL;
    if (!m)
        ks_out_err(&o, "internal", "out of memory");
    else if (ks_proto_parse(line, len, m, &err) != 0)
        ks_out_err(&o, "bad-request", "%s", err);
    else
        quit = ks_dispatch(m, &o);
    if (o.lost) {   /* a part was not taken: the client is gone or stuck */
        ks_out_free(&o);
        return 1;
    }
    if (o.oom) {
        ks_out_free(&o);
        ks_out_init(&o);
        ks_out_err(&o, "internal", "out of memory while answering");
    }
    if (m) {
        ks_wipe(m, sizeof *m);   /* a proof, copied by the parser */
        free(m);
    }
    int rc = ks_send_all(c, o.buf, o.len, ks_deadline()) != 0 || quit;
    ks_out_free(&o);
    return rc;
}

/* Reads more of the client's line into BUF by DEADLINE_NS. Returns the
 * bytes read, 0 at end of stream, -1 on an error, -2 at the deadline. */
static ssize_t ks_recv_some(struct ks_conn *c, char *buf, size_t cap, uint64_t deadline_ns)
{
    for (;;) {
        int w = ks_wait_io(c, POLLIN, deadline_ns);
        if (w != 1)
            return w == 0 ? -2 : -1;
        ssize_t r = recv(c->fd, buf, cap, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
    }
}

/* Serves lines until the client leaves, errs or runs out of time. The
 * deadline covers the whole line, however the bytes trickle in. */
static void ks_conn_loop(struct ks_conn *c, char *buf)
{
    size_t have = 0;
    uint64_t deadline = ks_deadline();
    ks_set_waiting(c, ks_now_ns());
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        if (nl) {
            size_t len = (size_t)(nl - buf);
            ks_set_waiting(c, 0);
            if (ks_serve_line(c, buf, len))
                return;
            ks_wipe(buf, len + 1);
            have -= len + 1;
            memmove(buf, nl + 1, have);
            deadline = ks_deadline();
            ks_set_waiting(c, ks_now_ns());
            continue;
        }
        if (have > KS_PROTO_MAX_LINE) {
            ks_send_err(c, "too-long", "request line longer than 4096 bytes");
            return;
        }
        ssize_t r = ks_recv_some(c, buf + have, KS_PROTO_MAX_LINE + 1 - have, deadline);
        if (r == -2) {
            ks_send_err(c, "timeout", "no complete request line in time; closing");
            return;
        }
        if (r <= 0) {
            if (r == 0 && have > 0)
                ks_send_err(c, "truncated", "connection closed in the middle of a line");
            return;
        }
        have += (size_t)r;
    }
}

/* Closes C's socket if the number is still ours and frees the slot. */
static void ks_conn_drop(struct ks_conn *c)
{
    ks_conn_lock();
    ks_fdid_close(c->fd, &c->id);
    c->fd = -1;
    ks_conn_unlock();
    atomic_fetch_sub(&ks_conns, 1);
}

static void *ks_conn_main(void *p)
{
    struct ks_conn *c = p;
    char banner[96];
    int bn = snprintf(banner, sizeof banner, "killshim proto=%d pid=%d\n", KS_PROTO_VERSION,
                      (int)ks_getpid());
    char *buf = malloc(KS_PROTO_MAX_LINE + 2);
    if (buf && ks_send_all(c, banner, (size_t)bn, ks_deadline()) == 0)
        ks_conn_loop(c, buf);
    if (buf) {
        ks_wipe(buf, KS_PROTO_MAX_LINE + 2);
        free(buf);
    }
    ks_conn_drop(c);
    return NULL;
}

static int ks_peer_privileged(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return 0;
    return cr.uid == 0 || cr.uid == geteuid() || cr.uid == getuid();
}

/* A slot for FD, or NULL with *WHY set: none free, or none left outside the
 * reserve for an unprivileged client. */
static struct ks_conn *ks_conn_add(int fd, int privileged, const char **why)
{
    struct ks_fdid id;
    *why = "too many clients at once; try again";
    if (ks_fdid_get(fd, &id) != 0)
        return NULL;
    struct ks_conn *c = NULL;
    int others = 0;
    ks_conn_lock();
    if (!ks_conn_tab_ready) {
        for (int i = 0; i < KS_MAX_CONNS; i++)
            ks_conn_tab[i].fd = -1;
        ks_conn_tab_ready = 1;
    }
    for (int i = 0; i < KS_MAX_CONNS; i++)
        others += ks_conn_tab[i].fd >= 0 && !ks_conn_tab[i].privileged;
    if (!privileged && others >= KS_MAX_CONNS - KS_CONN_RESERVED)
        *why = "too many clients of other users at once (the rest of the slots are kept for "
               "root and the process's own user); try again";
    else
        for (int i = 0; i < KS_MAX_CONNS && !c; i++)
            if (ks_conn_tab[i].fd < 0) {
                c = &ks_conn_tab[i];
                c->fd = fd;
                c->id = id;
                c->privileged = privileged;
                ks_set_waiting(c, ks_now_ns());
            }
    ks_conn_unlock();
    return c;
}

void ks_conn_serve(int fd)
{
    const char *why;
    struct ks_conn *c = ks_conn_add(fd, ks_peer_privileged(fd), &why);
    if (!c) {
        struct ks_conn tmp = {.fd = fd};
        ks_fdid_get(fd, &tmp.id);
        ks_send_err(&tmp, "busy", why);
        ks_fdid_close(fd, &tmp.id);
        return;
    }
    atomic_fetch_add(&ks_conns, 1);
    int rc = ks_spawn_shim_thread("killshim-conn", ks_conn_main, c, KS_CONN_STACK);
    if (rc != 0) {
        ks_send_err(c, "busy", "cannot start a thread to serve this client");
        ks_conn_drop(c);
    }
}

/* Under ks_conn_mu: the connection that has waited on its client longest,
 * if that is at least KS_CONN_EVICT_MS; else NULL. */
static struct ks_conn *ks_conn_slowest(uint64_t now)
{
    struct ks_conn *best = NULL;
    uint64_t best_since = now - (uint64_t)KS_CONN_EVICT_MS * 1000000;
    for (int i = 0; i < KS_MAX_CONNS; i++) {
        struct ks_conn *c = &ks_conn_tab[i];
        uint64_t since = __atomic_load_n(&c->waiting_since, __ATOMIC_RELAXED);
        if (c->fd >= 0 && since && since <= best_since) {
            best = c;
            best_since = since;
        }
    }
    return best;
}

int ks_conn_room(int listen_fd)
{
    if (atomic_load(&ks_conns) < KS_MAX_CONNS)
        return 1;
    short ev = 0;
    if (ks_fd_poll1(listen_fd, POLLIN, 0, &ev) != 1 || !(ev & POLLIN))
        return 0;   /* nobody waits to get in: leave the slow ones be */
    ks_conn_lock();
    struct ks_conn *c = ks_conn_slowest(ks_now_ns());
    /* Its thread sees the end of the stream (or a failed send) and leaves;
     * a busy connection is never chosen, so no request is cut short. */
    if (c && ks_fdid_same(c->fd, &c->id)) {
        shutdown(c->fd, SHUT_RDWR);
        ks_set_waiting(c, 0);   /* chosen once */
        ks_debug("all %d connections taken and a client waits: closed the one silent longest",
                 KS_MAX_CONNS);
    }
    ks_conn_unlock();
    return 0;
}

void ks_conn_shutdown_all(void)
{
    ks_conn_lock();
    for (int i = 0; i < KS_MAX_CONNS && ks_conn_tab_ready; i++)
        if (ks_conn_tab[i].fd >= 0 && ks_fdid_same(ks_conn_tab[i].fd, &ks_conn_tab[i].id))
            shutdown(ks_conn_tab[i].fd, SHUT_RDWR);
    ks_conn_unlock();
}

KS_START_PATH void ks_conn_init(void)
{
    const char *idle = ks_env("KILLSHIM_IDLE_TIMEOUT_MS");   /* at start: util.c */
    if (idle && atoi(idle) > 0)
        ks_idle_ms = atoi(idle);
}

KS_FORK_PATH void ks_conn_after_fork_child(void)
{
    /* ks_conn_mu was reset with every shim lock (lock.h). Written only
     * where set: each page the child writes is copied. */
    for (int i = 0; i < KS_MAX_CONNS && ks_conn_tab_ready; i++) {
        if (ks_conn_tab[i].fd >= 0) {
            ks_fdid_close(ks_conn_tab[i].fd, &ks_conn_tab[i].id);
            ks_conn_tab[i].fd = -1;
        }
    }
    if (atomic_load(&ks_conns))
        atomic_store(&ks_conns, 0);
}
