#include "client.h"
#include "maps_view.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "deadline.h"
#include "injector.h"
#include "shim/common/doorbell.h"
#include "netns.h"
#include "peer.h"
#include "shim/common/access.h"
#include "shim/common/procfs.h"
#include "shim/common/sockaddr.h"
#include "symbolize.h"

#define KSI_REPLY_TIMEOUT_S 30
/* A process starts serving when first asked (shim/control/control.h); this long. */
#define KSI_START_TIMEOUT_MS 2000

static void ksi_comm(pid_t pid, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    if (ks_read_small_file(path, buf, cap) <= 0)
        snprintf(buf, cap, "?");
    buf[strcspn(buf, "\n")] = '\0';
}

int ksi_maps_shim(pid_t pid)
{
    struct ksi_maps m;
    return ksi_maps_read(pid, &m) == 0 && m.shim;
}

static int ksi_read_line(struct ksi_client *c, struct ks_msg *m)
{
    for (;;) {
        char *at = c->rbuf + c->rpos;
        size_t have = c->rlen - c->rpos;
        char *nl = memchr(at, '\n', have);
        if (nl) {
            size_t len = (size_t)(nl - at);
            const char *err = NULL;
            int rc = ks_proto_parse(at, len, m, &err);
            c->rpos += len + 1;
            if (rc != 0) {
                ksi_err("malformed reply from process %d: %s", (int)c->pid, err);
                return KSI_EXIT_PROTOCOL;
            }
            /* Every value is printed somewhere: none may drive the terminal. */
            for (int i = 0; i < m->nfields; i++)
                ksi_sanitize((char *)m->f[i].val);
            return KSI_EXIT_OK;
        }
        if (have > KS_PROTO_MAX_LINE) {
            ksi_err("malformed reply from process %d: line too long", (int)c->pid);
            return KSI_EXIT_PROTOCOL;
        }
        memmove(c->rbuf, at, have);   /* less than a line */
        c->rpos = 0;
        c->rlen = have;
        ssize_t r = read(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - 1 - c->rlen);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ksi_err("process %d did not answer within %d s", (int)c->pid, KSI_REPLY_TIMEOUT_S);
            return KSI_EXIT_ERROR;
        }
        if (r <= 0) {
            ksi_err("process %d closed the connection%s", (int)c->pid,
                    kill(c->pid, 0) != 0 && errno == ESRCH ? " (it exited)" : "");
            return KSI_EXIT_ERROR;
        }
        c->rlen += (size_t)r;
    }
}

int ksi_reply_error(const struct ks_msg *final)
{
    const char *code = ks_msg_get(final, "code");
    const char *msg = ks_msg_get(final, "msg");
    if (!code) code = "?";
    ksi_err("%s", msg ? msg : code);
    if (strcmp(code, "permission") == 0) return KSI_EXIT_PERMISSION;
    if (strcmp(code, "no-thread") == 0) return KSI_EXIT_NO_THREAD;
    if (strcmp(code, "refused") == 0) return KSI_EXIT_REFUSED;
    if (strcmp(code, "unknown-verb") == 0 || strcmp(code, "proto") == 0) return KSI_EXIT_PROTOCOL;
    return KSI_EXIT_ERROR;
}

/* 1 if the process closed the connection before its first byte. The shim
 * waits for clients in poll (no fd number held while it waits, fdid.h): if
 * the program closed the listening socket during that wait, the shim drops
 * it when the next client arrives, that client is reset, and the shim binds
 * the name again at once. */
static int ksi_closed_before_banner(const struct ksi_client *c)
{
    char b;
    ssize_t r;
    do
        r = recv(c->fd, &b, 1, MSG_PEEK);
    while (r < 0 && errno == EINTR);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* Why connecting to PID failed (errno E; RUNG: its doorbell was rung): says
 * so and returns the exit code. */
static int ksi_connect_failed(pid_t pid, const char *comm, const char *where, int rung, int e)
{
    if (e == EACCES || e == EPERM) {
        ksi_err("permission denied: cannot connect to %s of process %d (%s)", where, (int)pid, comm);
        return KSI_EXIT_PERMISSION;
    }
    if (rung)
        ksi_err("process %d (%s) runs the shim but did not start serving %s within %d ms: "
                "it starts when one of its threads waits in a system call or runs the "
                "program's own code (only the former if the program brings its own malloc), "
                "and none did (or it blocks the shim's signals)",
                (int)pid, comm, where, KSI_START_TIMEOUT_MS);
    else if (ksi_maps_shim(pid))
        ksi_err("process %d (%s) loaded libkillshim.so but does not serve %s "
                "(its stderr says why; or KILLSHIM_SOCKET_DIR differs)", (int)pid, comm, where);
    else
        ksi_err("process %d (%s) does not run the killshim shim; start it with "
                "'killshim run -- CMD' or LD_PRELOAD=/path/to/libkillshim.so CMD", (int)pid, comm);
    return KSI_EXIT_NO_SHIM;
}

/* The connected C: checks who serves it and its banner. Returns KSI_EXIT_OK,
 * -1 (closed before the banner: try again, unless LAST) or an exit code; C is
 * closed unless OK. */
static int ksi_greet(struct ksi_client *c, pid_t pid, const char *where, int last)
{
    /* Anyone can bind an abstract name: the listener's maker must be the
     * target's pid, and (ksi_peer_check, after the banner: by then the
     * server has accepted) the target itself must hold the server end. */
    struct ucred cr;
    socklen_t crl = sizeof cr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) == 0 && cr.pid != pid) {
        ksi_err("%s is served by process %d (uid %d), not by %d: refusing to talk to it", where,
                (int)cr.pid, (int)cr.uid, (int)pid);
        ksi_close(c);
        return KSI_EXIT_PROTOCOL;
    }
    struct timeval tv = {KSI_REPLY_TIMEOUT_S, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    if (!last && ksi_closed_before_banner(c)) {
        ksi_close(c);
        return -1;
    }
    struct ks_msg m;
    int64_t proto = 0;
    int rc = ksi_read_line(c, &m);
    if (rc == KSI_EXIT_OK && strcmp(m.verb, "err") == 0) {
        rc = ksi_reply_error(&m);
    } else if (rc == KSI_EXIT_OK && (strcmp(m.verb, "killshim") != 0 ||
                                     ks_msg_get_i64(&m, "proto", 0, 1 << 30, &proto) != 0)) {
        ksi_err("process %d answered on %s with something that is not killshim", (int)pid, where);
        rc = KSI_EXIT_PROTOCOL;
    }
    if (rc == KSI_EXIT_OK)
        rc = ksi_peer_check(c->fd, pid, where);
    if (rc == KSI_EXIT_OK && proto != KS_PROTO_VERSION) {
        ksi_err("protocol version mismatch: process %d speaks %lld, this injector speaks %d; "
                "use the killshim-inject that matches its libkillshim.so", (int)pid,
                (long long)proto, KS_PROTO_VERSION);
        rc = KSI_EXIT_PROTOCOL;
    }
    if (rc != KSI_EXIT_OK)
        ksi_close(c);
    return rc;
}

static int ksi_connect_once(pid_t pid, struct ksi_client *c, int last)
{
    ksi_phase("connecting to process %d", (int)pid);
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->pid = pid;
    if (kill(pid, 0) != 0 && errno == ESRCH) {
        ksi_err("no such process: %d", (int)pid);
        return KSI_EXIT_NO_PROCESS;
    }
    char comm[64];
    ksi_comm(pid, comm, sizeof comm);

    struct sockaddr_un addr;
    socklen_t alen;
    char where[sizeof addr.sun_path + 32];
    /* Named with the pid it has in its own pid namespace (a container seen
     * from the host); every /proc read and signal uses PID. */
    ks_sockaddr_for_pid(ks_sockaddr_own_pid(pid), &addr, &alen, where, sizeof where);
    /* In another network namespace the name is only reachable from inside
     * it: the connection and the peer check are made there. */
    int back = -1, rc;
    if (!ks_sockaddr_is_file() && (rc = ksi_netns_enter(pid, where, &back)) != KSI_EXIT_OK)
        return rc;
    int rung = 0;
    c->fd = ks_control_connect(pid, KSI_START_TIMEOUT_MS, &rung);
    int e = errno;
    rc = c->fd < 0 ? -2 : ksi_greet(c, pid, where, last);
    ksi_netns_leave(back);
    return rc == -2 ? ksi_connect_failed(pid, comm, where, rung, e) : rc;
}

int ksi_connect(pid_t pid, struct ksi_client *c)
{
    /* A connection reset before the banner is tried again, a few times
     * over about a second (see ksi_closed_before_banner). */
    int rc = -1;
    for (int i = 0; rc < 0 && i < 20; i++) {
        if (i)
            usleep(50 * 1000);
        rc = ksi_connect_once(pid, c, i == 19);
    }
    return rc;
}

void ksi_close(struct ksi_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->maps);
    c->maps = NULL;
}

/* Sends LINE and reads the reply (see ksi_request), as it is. */
static int ksi_exchange(struct ksi_client *c, const char *line, ksi_record_fn *fn, void *ctx,
                        struct ks_msg *final)
{
    /* The verb only: the rest may carry a proof, a secret for a second. */
    ksi_phase("waiting for process %d to answer \"%.*s\"", (int)c->pid, (int)strcspn(line, " "),
              line);
    char buf[KS_PROTO_MAX_LINE + 1];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (n < 0 || (size_t)n >= sizeof buf) {
        ksi_err("request too long");
        return KSI_EXIT_USAGE;
    }
    for (int off = 0; off < n;) {
        ssize_t w = send(c->fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            ksi_err("cannot send to process %d: %s", (int)c->pid, strerror(errno));
            return KSI_EXIT_ERROR;
        }
        off += (int)w;
    }
    explicit_bzero(buf, sizeof buf);   /* it may hold a proof */
    if (c->on_sent && strncmp(line, "challenge", 9) != 0) {
        c->on_sent(c->on_sent_ctx);
        /* What the deadline then names is the wait for the reply again. */
        ksi_phase("waiting for process %d to answer \"%.*s\"", (int)c->pid,
                  (int)strcspn(line, " "), line);
    }
    int stop = 0;
    for (;;) {
        int rc = ksi_read_line(c, final);
        if (rc != KSI_EXIT_OK)
            return rc;
        if (strcmp(final->verb, "ok") == 0 || strcmp(final->verb, "err") == 0)
            return KSI_EXIT_OK;
        if (fn && !stop)
            stop = fn(final, ctx);
    }
}

/* What the request LINE needs proven (access.h): none for the verbs that
 * only describe the shim, attach for end, read for the rest. */
static int ksi_needs(const char *line)
{
    size_t n = strcspn(line, " ");
    static const char *const none[] = {"hello", "help", "challenge", "quit"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++)
        if (strlen(none[i]) == n && strncmp(line, none[i], n) == 0)
            return KS_ACCESS_NONE;
    return n == 3 && strncmp(line, "end", 3) == 0 ? KS_ACCESS_ATTACH : KS_ACCESS_READ;
}

/* A proof good for a moment more: a new challenge when the one in hand is
 * about to expire. The kernel's rules are applied as the proof is made
 * (ks_proof_make reads /proc/PID/maps and the process's memory as us). */
static int ksi_fresh_proof(struct ksi_client *c)
{
    if (c->proof.level && ksi_now() < c->proof_until)
        return KSI_EXIT_OK;
    struct ks_msg m;
    int rc = ksi_exchange(c, "challenge", NULL, NULL, &m);
    if (rc != KSI_EXIT_OK)
        return rc;
    int64_t gen, valid_ms;
    if (strcmp(m.verb, "ok") != 0)
        return ksi_reply_error(&m);
    if (ks_msg_get_i64(&m, "gen", 1, INT64_MAX, &gen) != 0 ||
        ks_msg_get_i64(&m, "valid_ms", 0, 3600000, &valid_ms) != 0) {
        ksi_err("malformed challenge from process %d", (int)c->pid);
        return KSI_EXIT_PROTOCOL;
    }
    double t0 = ksi_now();
    free(c->maps);
    c->maps = NULL;
    ks_proof_make_maps(c->pid, (uint64_t)gen, &c->proof, c->keep_maps ? &c->maps : NULL,
                       &c->maps_len);
    /* A margin for the trip and a slow machine: renewed early, never late. */
    c->proof_until = t0 + (double)valid_ms / 1000.0 * 0.6;
    return KSI_EXIT_OK;
}

int ksi_request(struct ksi_client *c, const char *line, ksi_record_fn *fn, void *ctx,
                struct ks_msg *final)
{
    int need = ksi_needs(line);
    if (need == KS_ACCESS_NONE)
        return ksi_exchange(c, line, fn, ctx, final);
    for (int attempt = 0;; attempt++) {
        int rc = ksi_fresh_proof(c);
        if (rc != KSI_EXIT_OK)
            return rc;
        if (c->proof.level < need)
            return ksi_access_denied(c->pid, need, &c->proof);
        char buf[KS_PROTO_MAX_LINE + 1];
        if (snprintf(buf, sizeof buf, "%s proof=%s", line, c->proof.text) >= (int)sizeof buf) {
            ksi_err("request too long");
            return KSI_EXIT_USAGE;
        }
        rc = ksi_exchange(c, buf, fn, ctx, final);
        explicit_bzero(buf, sizeof buf);
        /* FINAL is filled only on success: a connection closed mid-request
         * (the program died) leaves it as it was. */
        if (rc != KSI_EXIT_OK)
            return rc;
        const char *code = ks_msg_get(final, "code");
        /* Expired on the way (a stalled machine): once more, afresh. */
        if (attempt || strcmp(final->verb, "err") != 0 || !code || strcmp(code, "permission") != 0)
            return rc;
        c->proof.level = 0;
    }
}
