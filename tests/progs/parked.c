/* Threads parked in known places, for stack dumps. Each parks in a function
 * of its own name, so a stack can be checked for it:
 *   park_spin (busy loop), park_read (read on an empty pipe),
 *   park_cond (pthread_cond_wait), park_mutex (a mutex main holds),
 *   park_blocked (every signal blocked by a raw rt_sigprocmask, then a raw
 *   read system call on a pipe until "release", none of them through libc).
 * stdout: "tids main=T spin=T read=T cond=T mutex=T blocked=T",
 *         "mutex=0xADDR" (the one park_mutex waits for), then "ready".
 * stdin:
 *   "release"     every parked thread does its next step and prints
 *                 "done NAME" (spin counts on, read gets a byte, ...)
 *   "progress"    prints "progress spin=N" (the busy loop's counter)
 *   "sleep S" "usleep MS" "nanosleep MS" "clock MS" "poll MS" "ppoll MS"
 *   "select MS" "pselect MS" "epoll MS", and parked_waits.c's timed waits
 *   ("epoll_pwait MS", "sigtimedwait MS", "rcvtimeo MS"...)
 *                 a new thread (park_timed) makes that call once and prints
 *                 "timed NAME tid=T" before and "result NAME rc=R errno=E
 *                 ms=M" after: rc 0 and M >= the time asked mean it was not
 *                 cut short
 *   "pause"       a new thread (park_pause) calls pause() and prints
 *                 "paused tid=T", and "pause returned rc=R errno=E" when it
 *                 returns; "wake-pause" sends it SIGUSR1 (a handler without
 *                 SA_RESTART), which is the only thing that should end it
 *   "altstack"    a new thread takes SIGUSR2 on its alternate signal stack
 *                 and spins in the handler (park_onstack), after printing
 *                 "onstack tid=T", until "release"
 *   "foreign"     a thread the shim does not see start (glibc's SIGEV_THREAD
 *                 timer thread; under ThreadSanitizer, see start_foreign)
 *                 unblocks signals, prints "foreign tid=T" and spins in
 *                 park_foreign until "release"
 *   "block NAME", "wake NAME"
 *                 a thread blocked in NAME until woken (parked_waits.c)
 *   "quit"        checks the heap and exits 0 */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tests/progs/parked_waits.h"

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cond_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond_cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static int pipe_fd[2], empty_fd[2], blocked_fd[2];
static atomic_int released, ready_count;
static atomic_long spins;
static atomic_int tids[6];

void parked_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&out_mu);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    va_end(ap);
}

static void started(int slot)
{
    atomic_store(&tids[slot], gettid());
    atomic_fetch_add(&ready_count, 1);
}

__attribute__((noinline)) void park_spin(void)
{
    while (!atomic_load_explicit(&released, memory_order_relaxed))
        atomic_fetch_add_explicit(&spins, 1, memory_order_relaxed);
}

void *spin_main(void *a)
{
    (void)a;
    started(1);
    park_spin();
    parked_say("done spin");
    return NULL;
}

__attribute__((noinline)) int park_read(void)
{
    char c = 0;
    ssize_t r = read(pipe_fd[0], &c, 1);
    return r == 1 ? c : -1;
}

void *read_main(void *a)
{
    (void)a;
    started(2);
    int c = park_read();
    parked_say("done read %c", c);
    return NULL;
}

__attribute__((noinline)) void park_cond(void)
{
    pthread_mutex_lock(&cond_mu);
    while (!atomic_load(&released))
        pthread_cond_wait(&cond_cv, &cond_mu);
    pthread_mutex_unlock(&cond_mu);
}

void *cond_main(void *a)
{
    (void)a;
    started(3);
    park_cond();
    parked_say("done cond");
    return NULL;
}

__attribute__((noinline)) void park_mutex(void)
{
    pthread_mutex_lock(&held);
    pthread_mutex_unlock(&held);
}

void *mutex_main(void *a)
{
    (void)a;
    started(4);
    park_mutex();
    parked_say("done mutex");
    return NULL;
}

__attribute__((noinline)) void park_blocked(void)
{
    sigset_t all;
    sigfillset(&all);
    /* Raw: the shim keeps its own signals out of masks set through libc. */
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, sizeof(long));
    char c;
    while (syscall(SYS_read, blocked_fd[0], &c, 1) != 1) {
    }
}

void *blocked_main(void *a)
{
    (void)a;
    started(5);
    park_blocked();
    parked_say("done blocked");
    return NULL;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

struct timed {
    char name[16];
    long arg;
};

__attribute__((noinline)) int park_timed(const struct timed *t)
{
    long ms = t->arg;
    struct timespec ts = {ms / 1000, ms % 1000 * 1000000L};
    struct timeval tv = {ms / 1000, ms % 1000 * 1000};
    struct pollfd p = {empty_fd[0], POLLIN, 0};
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(empty_fd[0], &rd);
    if (!strcmp(t->name, "sleep"))
        return (int)sleep((unsigned)t->arg);
    if (!strcmp(t->name, "usleep"))
        return usleep((useconds_t)ms * 1000);
    if (!strcmp(t->name, "nanosleep"))
        return nanosleep(&ts, NULL);
    if (!strcmp(t->name, "clock"))
        return clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    if (!strcmp(t->name, "poll"))
        return poll(&p, 1, (int)ms);
    if (!strcmp(t->name, "ppoll"))
        return ppoll(&p, 1, &ts, NULL);
    if (!strcmp(t->name, "select"))
        return select(empty_fd[0] + 1, &rd, NULL, NULL, &tv);
    if (!strcmp(t->name, "pselect"))
        return pselect(empty_fd[0] + 1, &rd, NULL, NULL, &ts, NULL);
    if (!strcmp(t->name, "epoll")) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN};
        epoll_ctl(ep, EPOLL_CTL_ADD, empty_fd[0], &ev);
        int rc = epoll_wait(ep, &ev, 1, (int)ms);
        int e = errno;
        close(ep);
        errno = e;
        return rc;
    }
    int known;
    int rc = park_wait_timed(t->name, ms, empty_fd[0], &known);
    if (known)
        return rc;
    errno = EINVAL;
    return -1;
}

void *timed_main(void *a)
{
    struct timed *t = a;
    parked_say("timed %s tid=%d", t->name, gettid());
    long t0 = now_ms();
    errno = 0;
    int rc = park_timed(t);
    int e = errno;
    __asm__ volatile("" ::: "memory");
    parked_say("result %s rc=%d errno=%d ms=%ld", t->name, rc, e, now_ms() - t0);
    free(t);
    return NULL;
}

/* glibc starts timer threads itself, not through pthread_create, with every
 * signal blocked. ThreadSanitizer does not know such a thread either and its
 * instrumentation cannot run there (--config=tsan): the code of this thread
 * is left uninstrumented and prints its line with one write(2). */
#define FOREIGN_CODE __attribute__((noinline, no_sanitize("thread")))

FOREIGN_CODE void park_foreign(void)
{
    while (!atomic_load_explicit(&released, memory_order_relaxed)) {
    }
}

static FOREIGN_CODE void foreign_main(union sigval v)
{
    (void)v;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_UNBLOCK, &all, NULL);
    char line[64];
    int n = snprintf(line, sizeof line, "foreign tid=%d\n", gettid());
    if (write(1, line, (size_t)n) != n)
        _exit(3);
    park_foreign();
}

#ifdef __SANITIZE_THREAD__
static FOREIGN_CODE void *foreign_thread(void *a)
{
    (void)a;
    union sigval v = {0};
    foreign_main(v);
    return NULL;
}
#endif

static void start_foreign(void)
{
#ifdef __SANITIZE_THREAD__
    /* GCC 12's ThreadSanitizer crashes on a SIGEV_THREAD timer thread, with
     * or without the shim: the foreign thread comes from libc's own
     * pthread_create instead, around the shim and TSan alike. */
    typedef int create_fn(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    create_fn *create = libc ? (create_fn *)dlsym(libc, "pthread_create") : NULL;
    pthread_t t;
    if (!create || create(&t, NULL, foreign_thread, NULL) != 0)
        parked_say("foreign failed");
    return;
#endif
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = foreign_main;
    timer_t timer;
    struct itimerspec once = {{0, 0}, {0, 1000000}};
    if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0 || timer_settime(timer, 0, &once, NULL) != 0)
        parked_say("foreign failed");
}

static void on_usr1(int s) { (void)s; }

__attribute__((noinline)) void park_onstack(int s)
{
    (void)s;
    parked_say("onstack tid=%d", gettid());
    while (!atomic_load_explicit(&released, memory_order_relaxed)) {
    }
}

/* Alternate stacks kept reachable, so LeakSanitizer (--config=asan) knows
 * they are meant to stay. */
void *parked_kept[64];
int parked_nkept;

void *altstack_main(void *a)
{
    (void)a;
    stack_t ss = {.ss_sp = malloc(64 * 1024), .ss_size = 64 * 1024};
    if (parked_nkept < 64)
        parked_kept[parked_nkept++] = ss.ss_sp;
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0)
        parked_say("altstack failed");
    pthread_kill(pthread_self(), SIGUSR2);
    return NULL;   /* the alternate stack stays: glibc may still run on it */
}

__attribute__((noinline)) int park_pause(void)
{
    int rc = pause();
    __asm__ volatile("" ::: "memory");   /* no tail call: keep this frame */
    return rc;
}

void *pause_main(void *a)
{
    (void)a;
    parked_say("paused tid=%d", gettid());
    int rc = park_pause();
    parked_say("pause returned rc=%d errno=%d", rc, errno);
    return NULL;
}

static void spawn(void *(*fn)(void *), void *arg, pthread_t *out)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
    }
    if (out)
        *out = t;
    else
        pthread_detach(t);
}

static int heap_ok(void)
{
    void *p[1000];
    for (int i = 0; i < 1000; i++)
        if (!(p[i] = malloc((size_t)(i % 97) * 16 + 1)))
            return 0;
    for (int i = 0; i < 1000; i++)
        free(p[i]);
    return 1;
}

int main(void)
{
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    struct sigaction onstack = {.sa_handler = park_onstack, .sa_flags = SA_ONSTACK};
    sigaction(SIGUSR2, &onstack, NULL);
    if (pipe(pipe_fd) || pipe(empty_fd) || pipe(blocked_fd))
        return 1;
    atomic_store(&tids[0], gettid());
    pthread_mutex_lock(&held);
    pthread_t th[5], pauser = 0;
    void *(*mains[5])(void *) = {spin_main, read_main, cond_main, mutex_main, blocked_main};
    for (int i = 0; i < 5; i++)
        spawn(mains[i], NULL, &th[i]);
    while (atomic_load(&ready_count) < 5)
        usleep(1000);
    parked_say("tids main=%d spin=%d read=%d cond=%d mutex=%d blocked=%d", tids[0], tids[1], tids[2],
        tids[3], tids[4], tids[5]);
    parked_say("mutex=%p", (void *)&held);
    parked_say("ready");
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        char name[16];
        long arg;
        if (strncmp(line, "release", 7) == 0) {
            pthread_mutex_lock(&cond_mu);
            atomic_store(&released, 1);
            pthread_cond_broadcast(&cond_cv);
            pthread_mutex_unlock(&cond_mu);
            if (write(pipe_fd[1], "x", 1) != 1 || write(blocked_fd[1], "x", 1) != 1)
                return 1;
            pthread_mutex_unlock(&held);
            for (int i = 0; i < 5; i++)
                pthread_join(th[i], NULL);
            parked_say("released");
        } else if (strncmp(line, "progress", 8) == 0) {
            parked_say("progress spin=%ld", atomic_load(&spins));
        } else if (strncmp(line, "wake-pause", 10) == 0 && pauser) {
            pthread_kill(pauser, SIGUSR1);
            pthread_join(pauser, NULL);
            pauser = 0;
        } else if (strncmp(line, "altstack", 8) == 0) {
            spawn(altstack_main, NULL, NULL);
        } else if (strncmp(line, "foreign", 7) == 0) {
            start_foreign();
        } else if (strncmp(line, "block ", 6) == 0 && sscanf(line + 6, "%15s", name) == 1) {
            park_block(name);
        } else if (strncmp(line, "wake ", 5) == 0 && sscanf(line + 5, "%15s", name) == 1) {
            park_wake(name);
        } else if (strncmp(line, "pause", 5) == 0) {
            spawn(pause_main, NULL, &pauser);
        } else if (sscanf(line, "%15s %ld", name, &arg) == 2) {
            struct timed *t = malloc(sizeof *t);
            snprintf(t->name, sizeof t->name, "%s", name);
            t->arg = arg;
            spawn(timed_main, t, NULL);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    park_waits_cleanup();
    if (!heap_ok())
        return 3;
    parked_say("bye");
    return 0;
}
