/* parked's other waits (see parked.c): every blocking call the shim wraps
 * that parked.c does not make itself, and the two reads the shim must not
 * signal (a socket with a receive timeout, a recv with MSG_WAITALL that has
 * part of its data). Each must last as long as it would without the shim,
 * however often the thread is dumped meanwhile.
 *
 * Timed (park_wait_timed, for parked's "NAME MS"): epoll_pwait, epoll_pwait2,
 * sigtimedwait, sem_timedwait, sem_clockwait, semtimedop, poll_chk and
 * ppoll_chk (__poll_chk and __ppoll_chk, what -D_FORTIFY_SOURCE makes of
 * poll and ppoll), rcvtimeo (read on a socket with SO_RCVTIMEO), futex (the
 * program's own futex wait with a timeout, through libc's syscall(), as
 * GLib's g_cond_wait_until: a signal would end it with EINTR).
 *
 * Until woken (park_block / park_wake, parked's "block NAME", "wake NAME"):
 *   sigsuspend   returns -1 EINTR once "wake" sends it SIGUSR1
 *   sigwaitinfo  returns SIGWINCH (28), which "wake" sends it
 *   msgrcv       on an empty queue; returns 8, the size of the message
 *                "wake" sends
 *   msgsnd       into a full queue; returns 0 once "wake" takes a message
 *   semop        decrements a semaphore at 0; returns 0 once "wake" posts
 *   waitall      recv(4 bytes, MSG_WAITALL) with 1 byte there; returns 4
 *                once "wake" sends the other 3
 * A blocker prints "blocking NAME tid=T" before its call and "result NAME
 * rc=R errno=E ms=M" after it, like parked's timed waits. */
#include "tests/progs/parked_waits.h"

#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Declared by <poll.h> only under _FORTIFY_SOURCE; called here directly so
 * that the fortified entry points are the ones used whatever the flags. */
extern int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
extern int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *tmo,
                       const sigset_t *mask, size_t fdslen);

/* SysV objects, removed by park_waits_cleanup (IPC_PRIVATE, this process's):
 * an empty queue msgrcv waits on, a full one msgsnd waits on, a semaphore. */
static int msq_rcv = -1, msq_snd = -1, semid = -1;
static int waitall_sv[2] = {-1, -1};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static struct timespec abs_in(clockid_t clk, long ms)
{
    struct timespec t;
    clock_gettime(clk, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += ms % 1000 * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static int timed_epoll(int empty_fd, long ms, int two)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, empty_fd, &ev);
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    int rc = two ? epoll_pwait2(ep, &ev, 1, &ts, NULL) : epoll_pwait(ep, &ev, 1, (int)ms, NULL);
    int e = errno;
    close(ep);
    errno = e;
    return rc;
}

/* SIGWINCH blocked in this thread only (its default action is to ignore):
 * sigtimedwait waits for it, nothing sends it. */
static int timed_sigwait(long ms)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    return sigtimedwait(&set, NULL, &ts);
}

static int timed_sem(long ms, int clock)
{
    sem_t s;
    sem_init(&s, 0, 0);
    int rc;
    if (clock) {
        struct timespec t = abs_in(CLOCK_MONOTONIC, ms);
        rc = sem_clockwait(&s, CLOCK_MONOTONIC, &t);
    } else {
        struct timespec t = abs_in(CLOCK_REALTIME, ms);
        rc = sem_timedwait(&s, &t);
    }
    int e = errno;
    sem_destroy(&s);
    errno = e;
    return rc;
}

static int timed_semop(long ms)
{
    int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (id < 0)
        return -1;
    struct sembuf op = {0, -1, 0};
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    int rc = semtimedop(id, &op, 1, &ts);
    int e = errno;
    semctl(id, 0, IPC_RMID);
    errno = e;
    return rc;
}

static int timed_rcvtimeo(long ms)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    struct timeval tv = {ms / 1000, ms % 1000 * 1000};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    int rc = (int)read(sv[0], &c, 1);
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    errno = e;
    return rc;
}

static int timed_futex(long ms)
{
    static int word;
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    return (int)syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
}

int park_wait_timed(const char *name, long ms, int empty_fd, int *known)
{
    struct pollfd p = {empty_fd, POLLIN, 0};
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    *known = 1;
    if (!strcmp(name, "epoll_pwait"))
        return timed_epoll(empty_fd, ms, 0);
    if (!strcmp(name, "epoll_pwait2"))
        return timed_epoll(empty_fd, ms, 1);
    if (!strcmp(name, "sigtimedwait"))
        return timed_sigwait(ms);
    if (!strcmp(name, "sem_timedwait"))
        return timed_sem(ms, 0);
    if (!strcmp(name, "sem_clockwait"))
        return timed_sem(ms, 1);
    if (!strcmp(name, "semtimedop"))
        return timed_semop(ms);
    if (!strcmp(name, "poll_chk"))
        return __poll_chk(&p, 1, (int)ms, sizeof p);
    if (!strcmp(name, "ppoll_chk"))
        return __ppoll_chk(&p, 1, &ts, NULL, sizeof p);
    if (!strcmp(name, "rcvtimeo"))
        return timed_rcvtimeo(ms);
    if (!strcmp(name, "futex"))
        return timed_futex(ms);
    *known = 0;
    return -1;
}

/* ---- Blocked until woken ------------------------------------------------ */

struct blocker {
    const char *name;
    pthread_t th;
    int started;
};
static struct blocker blockers[] = {
    {"sigsuspend", 0, 0}, {"sigwaitinfo", 0, 0}, {"msgrcv", 0, 0},
    {"msgsnd", 0, 0},     {"semop", 0, 0},       {"waitall", 0, 0},
};
#define NBLOCKERS (sizeof blockers / sizeof blockers[0])

struct msg8 {
    long type;
    char text[8];
};

static struct blocker *find(const char *name)
{
    for (size_t i = 0; i < NBLOCKERS; i++)
        if (!strcmp(blockers[i].name, name))
            return &blockers[i];
    return NULL;
}

static long block_call(const char *name)
{
    if (!strcmp(name, "sigsuspend")) {
        sigset_t none;
        sigemptyset(&none);
        return sigsuspend(&none);
    }
    if (!strcmp(name, "sigwaitinfo")) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGWINCH);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        return sigwaitinfo(&set, NULL);
    }
    if (!strcmp(name, "msgrcv")) {
        struct msg8 m;
        return msgrcv(msq_rcv, &m, sizeof m.text, 0, 0);
    }
    if (!strcmp(name, "msgsnd")) {
        struct msg8 m = {1, "blocked"};
        return msgsnd(msq_snd, &m, sizeof m.text, 0);   /* the queue is full */
    }
    if (!strcmp(name, "semop")) {
        struct sembuf op = {0, -1, 0};
        return semop(semid, &op, 1);
    }
    if (!strcmp(name, "waitall")) {
        char buf[4];
        return recv(waitall_sv[0], buf, sizeof buf, MSG_WAITALL);
    }
    errno = EINVAL;
    return -1;
}

__attribute__((noinline)) static long park_block_call(const char *name)
{
    long rc = block_call(name);
    __asm__ volatile("" ::: "memory");   /* keep this frame: no tail call */
    return rc;
}

static void *blocker_main(void *arg)
{
    struct blocker *b = arg;
    parked_say("blocking %s tid=%d", b->name, gettid());
    long t0 = now_ms();
    errno = 0;
    long rc = park_block_call(b->name);
    int e = errno;
    parked_say("result %s rc=%ld errno=%d ms=%ld", b->name, rc, e, now_ms() - t0);
    return NULL;
}

/* What each blocker needs before it blocks: an empty queue (msgrcv); a
 * queue with room for exactly one 8-byte message, already taken (msgsnd);
 * a semaphore at 0; a socket with one of the four bytes waitall asks for. */
static int prepare(const char *name)
{
    if (!strcmp(name, "msgrcv") && msq_rcv < 0)
        msq_rcv = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (!strcmp(name, "msgsnd") && msq_snd < 0) {
        msq_snd = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
        struct msqid_ds ds;
        if (msq_snd < 0 || msgctl(msq_snd, IPC_STAT, &ds) != 0)
            return -1;
        ds.msg_qbytes = sizeof(((struct msg8 *)0)->text);   /* lowering needs no privilege */
        struct msg8 fill = {1, "filler"};
        if (msgctl(msq_snd, IPC_SET, &ds) != 0 || msgsnd(msq_snd, &fill, sizeof fill.text, 0) != 0)
            return -1;
    }
    if (!strcmp(name, "semop") && semid < 0)
        semid = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (!strcmp(name, "waitall")) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, waitall_sv) != 0 ||
            write(waitall_sv[1], "a", 1) != 1)
            return -1;
    }
    return 0;
}

void park_block(const char *name)
{
    struct blocker *b = find(name);
    if (!b || b->started || prepare(name) != 0) {
        parked_say("block %s failed", name);
        return;
    }
    if (pthread_create(&b->th, NULL, blocker_main, b) != 0) {
        parked_say("block %s failed", name);
        return;
    }
    b->started = 1;
}

void park_wake(const char *name)
{
    struct blocker *b = find(name);
    if (!b || !b->started) {
        parked_say("wake %s failed", name);
        return;
    }
    int ok = 1;
    if (!strcmp(name, "sigsuspend"))
        ok = pthread_kill(b->th, SIGUSR1) == 0;
    else if (!strcmp(name, "sigwaitinfo"))
        ok = pthread_kill(b->th, SIGWINCH) == 0;
    else if (!strcmp(name, "msgrcv")) {
        struct msg8 m = {2, "wake"};
        ok = msgsnd(msq_rcv, &m, sizeof m.text, IPC_NOWAIT) == 0;
    } else if (!strcmp(name, "msgsnd")) {
        struct msg8 out;
        ok = msgrcv(msq_snd, &out, sizeof out.text, 0, IPC_NOWAIT) >= 0;
    } else if (!strcmp(name, "semop")) {
        struct sembuf op = {0, 1, 0};
        ok = semop(semid, &op, 1) == 0;
    } else if (!strcmp(name, "waitall")) {
        ok = write(waitall_sv[1], "bcd", 3) == 3;
    }
    if (!ok)
        parked_say("wake %s failed", name);
    pthread_join(b->th, NULL);
    b->started = 0;
}

void park_waits_cleanup(void)
{
    for (size_t i = 0; i < NBLOCKERS; i++)
        if (blockers[i].started)
            pthread_detach(blockers[i].th);
    if (msq_rcv >= 0)
        msgctl(msq_rcv, IPC_RMID, NULL);
    if (msq_snd >= 0)
        msgctl(msq_snd, IPC_RMID, NULL);
    if (semid >= 0)
        semctl(semid, 0, IPC_RMID);
    for (int i = 0; i < 2; i++)
        if (waitall_sv[i] >= 0)
            close(waitall_sv[i]);
}
