/* Control server (see server.h). */
#include "server.h"

#include <errno.h>
#include <limits.h>
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

#include "conn.h"
#include "shim/common/fdid.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/core/registry.h"
#include "shim_thread.h"
#include "shim/core/signals.h"
#include "shim/common/sockaddr.h"
#include "sockdir.h"

#define KS_CONN_STACK (256 * 1024)

/* The listening socket. Only the accept thread changes these once it runs
 * (it re-creates the socket if the program takes the number away). */
static int ks_listen_fd = -1;
static struct ks_fdid ks_listen_id;
/* Bumped when the shim steps aside: an accept loop started under an older
 * generation quits. */
static uint64_t ks_generation;

/* ---- Listening ----------------------------------------------------------- */

/* Set while another socket holds the process's abstract name (a squatter, or
 * a socket a process that had this pid before left to a descendant): the
 * accept thread keeps trying to bind it. */
KS_HOT_DATA static int ks_squatted;

/* WHY gets who holds ADDR: its listener's SO_PEERCRED, as the injector
 * would see it. */
static void ks_name_holder(const struct sockaddr_un *addr, socklen_t alen, const char *display,
                           char *why, size_t cap)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct ucred cr = {0, (uid_t)-1, (gid_t)-1};
    socklen_t crl = sizeof cr;
    if (s >= 0 && connect(s, (const struct sockaddr *)addr, alen) == 0)
        getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &crl);
    if (s >= 0)
        close(s);
    char who[96] = "a socket whose maker is unknown";
    if (cr.pid > 0)
        snprintf(who, sizeof who, "a socket of uid %d made by pid %d%s", (int)cr.uid, (int)cr.pid,
                 cr.pid == ks_getpid() ? " (an earlier process with this pid)"
                 : kill(cr.pid, 0) != 0 && errno == ESRCH ? " (which has exited)" : "");
    snprintf(why, cap, "%s is taken by %s; killshim-inject cannot reach this process until the "
             "name is free, and the shim keeps trying (find the holder with: ss -xlp | grep "
             "'%s ')", display, who, display);
}

static int ks_bind_abstract(int fd, char *display, size_t cap, char *why, size_t wcap)
{
    struct sockaddr_un addr;
    socklen_t alen;
    if (ks_sockaddr_for_pid(ks_getpid(), &addr, &alen, display, cap) != 0) {
        snprintf(why, wcap, "%s", strerror(errno));
        return errno;
    }
    if (bind(fd, (const struct sockaddr *)&addr, alen) == 0 && listen(fd, 64) == 0)
        return 0;
    int rc = errno;
    if (rc == EADDRINUSE)
        ks_name_holder(&addr, alen, display, why, wcap);
    else
        snprintf(why, wcap, "%s", strerror(rc));
    return rc;
}

/* Binds and listens on the process's socket. Returns 0, or an errno with
 * WHY filled in. */
static int ks_listen(char *display, size_t cap, char *why, size_t wcap)
{
    int fd = ks_fd_high(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd < 0) {
        snprintf(why, wcap, "socket: %s", strerror(errno));
        return errno;
    }
    int rc = ks_sockaddr_is_file() ? ks_sockdir_bind(fd, display, cap, why, wcap)
                                   : ks_bind_abstract(fd, display, cap, why, wcap);
    struct ks_fdid id;
    if (!rc && (rc = ks_fdid_get(fd, &id)) != 0)
        snprintf(why, wcap, "%s", strerror(rc));
    if (rc) {
        close(fd);
        return rc;
    }
    ks_listen_id = id;
    __atomic_store_n(&ks_listen_fd, fd, __ATOMIC_RELEASE);
    return 0;
}

/* The socket must be made (again): its name was taken at start (squatted),
 * or the program closed or replaced our listening fd (closefrom,
 * close_range, a close loop, dup2 over it; the number is the program's now:
 * leave it). Binds a new socket under the same name, which is free once the
 * old socket is gone (a blocked accept kept it alive until it returned). If
 * the name stays taken (the program dup'ed the old socket somewhere, or a
 * squatter holds it), retries, slower and slower, up to every 2 s. Returns
 * 0 once serving again, or ECANCELED if a fork made this loop obsolete. */
static int ks_relisten(uint64_t gen)
{
    static int warned;
    int old = ks_listen_fd;
    char display[128] = "", why[512] = "";
    int rc, delay_ms = 20;
    while ((rc = ks_listen(display, sizeof display, why, sizeof why)) != 0) {
        if (!ks_squatted && !warned++)
            ks_warn("the program closed or replaced the control socket's fd %d and it cannot be "
                    "re-created yet (%s); retrying", old, why);
        ks_nap_ms((unsigned)delay_ms);
        if (delay_ms < 2000)
            delay_ms *= 2;
        if (__atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE) != gen)
            return ECANCELED;
    }
    if (ks_squatted)
        ks_warn("%s is free again: serving it now", display);
    else if (!warned++)
        ks_warn("the program closed or replaced the control socket's fd %d; serving %s again on fd %d",
                old, display, ks_listen_fd);
    ks_squatted = 0;
    return 0;
}

/* Waits until a new client can get a connection slot (conn.h): clients
 * beyond it wait in the listen backlog (and then in connect) instead of
 * being refused, unless a slow connection can make room for them. */
static int ks_wait_slot(uint64_t gen)
{
    while (!ks_conn_room(ks_listen_fd)) {
        ks_nap_ms(2);
        if (__atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE) != gen)
            return -1;
    }
    return 0;
}

/* The accept thread takes the shim's ACT signal (every other signal stays
 * blocked, shim_thread.h): ks_server_wake cuts its wait for a client short
 * with it (ks_fd_accept waits in poll, at most a second at a time). */
static void ks_accept_unblock_wake(void)
{
    int act = ks_signo(KS_SIG_ACT);
    if (act <= 0)
        return;
    uint64_t set = 1ull << (act - 1);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, NULL, sizeof set);
}

/* The accept thread's tid while it runs, 0 otherwise; under ks_accept_mu,
 * so that a wake never reaches a recycled tid. */
KS_HOT_DATA static pid_t ks_accept_tid;
KS_LOCK_DEFINE(static, ks_accept_mu);

static void ks_accept_set_tid(pid_t tid)
{
    ks_lock(&ks_accept_mu);
    ks_accept_tid = tid;
    ks_unlock(&ks_accept_mu);
}

static void *ks_accept_loop(uint64_t gen)
{
    ks_accept_unblock_wake();
    for (;;) {
        /* Checked before every accept: accepting on a number the program
         * has reused would take its connections, or spin on its file. */
        if (!ks_fdid_same(ks_listen_fd, &ks_listen_id)) {
            if (ks_relisten(gen) != 0)
                return NULL;
            continue;
        }
        if (__atomic_load_n(&ks_generation, __ATOMIC_ACQUIRE) != gen || ks_wait_slot(gen) != 0)
            return NULL;
        int fd = ks_fd_accept(ks_listen_fd, &ks_listen_id);
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
        ks_conn_serve(fd);
    }
}

KS_HOT_DATA static void (*ks_prepare)(void);

/* 1 once PREPARE has run to its end on an accept thread of this process
 * image (a fork child inherits it: its load is done, or torn and never
 * done, shim/init.c); a futex word for ks_server_wait_prepared. Stays 1:
 * PREPARE is once per process image (the restarts after a step aside find
 * it done). */
static int ks_prepared;

static void ks_set_prepared(void)
{
    if (__atomic_load_n(&ks_prepared, __ATOMIC_ACQUIRE))
        return;
    __atomic_store_n(&ks_prepared, 1, __ATOMIC_RELEASE);
    ks_futex_wake(&ks_prepared, INT_MAX);
}

int ks_server_wait_prepared(uint64_t max_ns)
{
    return ks_futex_wait_set(&ks_prepared, ks_now_ns() + max_ns) ? 0 : ETIMEDOUT;
}

static void *ks_accept_main(void *p)
{
    ks_accept_set_tid(ks_gettid());
    if (ks_prepare)
        ks_prepare();
    ks_set_prepared();
    void *r = ks_accept_loop((uint64_t)(uintptr_t)p);
    ks_accept_set_tid(0);
    return r;
}

KS_START_PATH void ks_server_init(void (*prepare)(void))
{
    ks_prepare = prepare;
    ks_conn_init();
}

int ks_server_listen(void)
{
    if (ks_squatted || (ks_listen_fd >= 0 && ks_fdid_same(ks_listen_fd, &ks_listen_id)))
        return 0;
    char display[128] = "", why[512] = "";
    int rc = ks_listen(display, sizeof display, why, sizeof why);
    /* A taken abstract name may be freed later (its holder exits): the
     * accept thread keeps trying to bind it. Anything else is for good. */
    if (rc == EADDRINUSE && !ks_sockaddr_is_file()) {
        ks_squatted = 1;
        ks_warn("cannot serve control socket now: %s", why);
        return 0;
    }
    if (rc)
        ks_warn("cannot serve control socket %s: %s; the program runs on without killshim control",
                display, why);
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
    ks_squatted = 0;
}

void ks_server_wake(void)
{
    ks_lock(&ks_accept_mu);
    if (ks_accept_tid)
        ks_signal_tid(ks_accept_tid, KS_SIG_ACT);
    ks_unlock(&ks_accept_mu);
}

void ks_server_stop(void)
{
    __atomic_add_fetch(&ks_generation, 1, __ATOMIC_ACQ_REL);
    ks_server_wake();
    ks_conn_shutdown_all();
}

KS_FORK_PATH void ks_server_after_fork_child(void)
{
    /* Drop the child's copies of the parent's sockets: the listening one
     * (so its name is freed when the parent exits) and its clients'. Only
     * numbers that still name our sockets: the program may own them now.
     * Written only if set: each page the child writes is copied. */
    ks_conn_after_fork_child();
    if (ks_listen_fd >= 0 || ks_squatted)
        ks_server_close();
    if (ks_accept_tid)
        ks_accept_tid = 0;
    ks_sockdir_after_fork_child();   /* the parent's file is the parent's to remove */
}

/* In KS_FORK_PATH, as is what it calls: a fork child that exits runs it. */
KS_FORK_PATH void ks_server_cleanup(void) { ks_sockdir_cleanup(); }
