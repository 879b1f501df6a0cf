/* Threads to be ended, of every kind the end-to-end tests need, started on
 * command; and a health check of what stays behind.
 *
 * stdout: "main tid=T", "ready"; then for "spawn KIND [detached]"
 *         "started I KIND tid=T" once thread I is about to wait.
 * stdin:  spawn KIND [detached]   start thread I (I counts from 0)
 *         join I                  pthread_join: "joined I canceled" or "joined I value=0x..."
 *         reenable I              a nocancel thread re-enables cancellation
 *         release I               a racer returns
 *         reset-reporting         stop_reporting = 0 (reporters since returned)
 *         check                   "check ok ticks=N" if the ticker thread still
 *                                 runs, the shared mutexes are free, malloc works
 *                                 and a new thread can be created and joined;
 *                                 else "check FAIL why"
 *         quit
 * Kinds (what ends them):
 *   api       loops until killshim_stop_requested(); returns 0x1234
 *   fd        polls killshim_stop_fd() and a silent pipe; pthread_exit(0x5678)
 *   global    loops until the non-exported `static volatile int stop_global`
 *   tls       loops until its own copy of `static __thread volatile int stop_tls`
 *   running   loops while `static volatile char keep_running` (shared) stays 1
 *   read, accept, poll, sleep   blocked there; retry on EINTR, never stop by themselves
 *   write     blocked writing into a full pipe nobody reads (a call that a
 *             signal handler would cut short: the shim never signals it)
 *   cond      pthread_cond_wait forever (a cleanup handler unlocks the mutex)
 *   condraw   pthread_cond_wait forever on raw_mu, with no cleanup handler: a
 *             cancel there would leave raw_mu locked (the ticker needs it)
 *   waiter    blocks locking held_mu (a holder has it)
 *   holdread  locks its own mutex and naps until "release I", then unlocks
 *             it and blocks in read
 *   sigblock  blocks every signal with the raw rt_sigprocmask system call,
 *             then naps in a loop
 *   nocancel  cancellation disabled until "reenable I" (prints "reenabling I"),
 *             then sleeps in a loop
 *   reporter  cancellation disabled; loops until `static volatile int
 *             stop_reporting`; returns 0x7e
 *   fidget    a reporter that naps 20 us at a time: it is never in the same
 *             system call for long
 *   fidget-on the same with cancellation enabled
 *   holder    locks held_mu, then blocks in read: leaves a lock behind
 *   racer     waits for "release I", then returns
 *   dyntls    dlopens $KS_DYNTLS_LIB, loops until its thread-local dyn_stop */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shim/killshim.h"

#define MAX_THREADS 256

static volatile int stop_global;
static volatile int stop_reporting;
static __thread volatile int stop_tls;
static volatile char keep_running = 1;
/* Read-only (in .rodata): --flag-symbol must be refused, never fault. */
__attribute__((used)) static const int stop_readonly = 0;

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;   /* the ticker's */
static pthread_mutex_t cond_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond_cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t raw_mu = PTHREAD_MUTEX_INITIALIZER;   /* condraw's; the ticker's too */
static pthread_cond_t raw_cv = PTHREAD_COND_INITIALIZER;
static _Atomic long ticks;
static _Atomic int reenable[MAX_THREADS], release_[MAX_THREADS];
static pthread_t threads[MAX_THREADS];
/* Every thread's argument, kept for good: a thread that is ended never
 * frees its own. Not static: stores to a static nothing reads may be
 * optimised away, and LeakSanitizer would then see them leak. */
struct arg *end_victims_args[MAX_THREADS];
static char joined[MAX_THREADS], detached[MAX_THREADS];

static void say(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    buf[n++] = '\n';
    ssize_t w = write(1, buf, (size_t)n);   /* one write: lines never interleave */
    (void)w;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);   /* EINTR just shortens the nap */
}

struct arg {
    int idx;
    char kind[16];
};

static void started(const struct arg *a)
{
    say("started %d %s tid=%d", a->idx, a->kind, gettid());
}

static void unlock_cleanup(void *mu) { pthread_mutex_unlock(mu); }

__attribute__((noinline)) static void *run_api(struct arg *a)
{
    say("started %d api tid=%d fd=%d requested=%d", a->idx, gettid(), killshim_stop_fd(),
        killshim_stop_requested());
    while (!killshim_stop_requested())
        nap_ms(2);
    return (void *)0x1234;
}

__attribute__((noinline)) static void *run_fd(struct arg *a)
{
    int p[2];
    if (pipe(p) != 0)
        return NULL;
    int fd = killshim_stop_fd();
    started(a);
    struct pollfd pf[2] = {{fd, POLLIN, 0}, {p[0], POLLIN, 0}};
    for (;;) {
        int n = poll(pf, 2, -1);
        if (n > 0 && (pf[0].revents & POLLIN))
            break;
    }
    close(p[0]);
    close(p[1]);
    pthread_exit((void *)0x5678);
}

__attribute__((noinline)) static void block_forever_in_read(void)
{
    int p[2];
    if (pipe(p) != 0)
        return;
    char c;
    for (;;)
        if (read(p[0], &c, 1) >= 0 || errno != EINTR)
            break;
}

__attribute__((noinline)) static void *run_blocked(struct arg *a)
{
    if (strcmp(a->kind, "read") == 0) {
        started(a);
        block_forever_in_read();
    } else if (strcmp(a->kind, "poll") == 0) {
        int p[2];
        if (pipe(p) != 0)
            return NULL;
        struct pollfd pf = {p[0], POLLIN, 0};
        started(a);
        while (poll(&pf, 1, -1) <= 0) {
        }
    } else if (strcmp(a->kind, "accept") == 0) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "ks-end-victims-%d-%d",
                 (int)getpid(), a->idx);
        socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                    strlen(addr.sun_path + 1));
        if (bind(s, (struct sockaddr *)&addr, len) != 0 || listen(s, 1) != 0)
            return NULL;
        started(a);
        while (accept(s, NULL, NULL) < 0 && errno == EINTR) {
        }
    } else if (strcmp(a->kind, "sleep") == 0) {
        started(a);
        for (;;)
            sleep(1000);
    } else if (strcmp(a->kind, "cond") == 0) {
        pthread_mutex_lock(&cond_mu);
        pthread_cleanup_push(unlock_cleanup, &cond_mu);
        started(a);
        for (;;)
            pthread_cond_wait(&cond_cv, &cond_mu);
        pthread_cleanup_pop(1);
    } else if (strcmp(a->kind, "condraw") == 0) {
        pthread_mutex_lock(&raw_mu);
        started(a);
        for (;;)
            pthread_cond_wait(&raw_cv, &raw_mu);
    } else if (strcmp(a->kind, "waiter") == 0) {
        started(a);
        pthread_mutex_lock(&held_mu);
        pthread_mutex_unlock(&held_mu);
    } else if (strcmp(a->kind, "holder") == 0) {
        pthread_mutex_lock(&held_mu);
        started(a);
        block_forever_in_read();
    } else if (strcmp(a->kind, "write") == 0) {
        int p[2];
        static char buf[4096];
        if (pipe2(p, O_NONBLOCK) != 0)
            return NULL;
        while (write(p[1], buf, sizeof buf) > 0) {
        }
        fcntl(p[1], F_SETFL, 0);
        started(a);
        for (;;)
            if (write(p[1], buf, 1) >= 0 || errno != EINTR)
                break;
    }
    return NULL;
}

static void *victim_main(void *p)
{
    struct arg *a = p;
    void *ret = NULL;
    if (strcmp(a->kind, "api") == 0) {
        ret = run_api(a);
    } else if (strcmp(a->kind, "fd") == 0) {
        ret = run_fd(a);
    } else if (strcmp(a->kind, "global") == 0) {
        started(a);
        while (!stop_global)
            nap_ms(2);
        ret = (void *)0x77;
    } else if (strcmp(a->kind, "tls") == 0) {
        started(a);
        while (!stop_tls)
            nap_ms(2);
        ret = (void *)0x78;
    } else if (strcmp(a->kind, "running") == 0) {
        started(a);
        while (keep_running)
            nap_ms(2);
        ret = (void *)0x79;
    } else if (strcmp(a->kind, "nocancel") == 0) {
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        started(a);
        while (!reenable[a->idx])
            nap_ms(2);
        say("reenabling %d", a->idx);   /* write is a cancellation point: before */
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        for (;;)
            nap_ms(2);
    } else if (strcmp(a->kind, "reporter") == 0) {
        /* The demo's reporter: cancellation off for good, it stops on its
         * own variable; a cancel asked of it stays pending. */
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        started(a);
        while (!stop_reporting)
            nap_ms(2);
        ret = (void *)0x7e;
    } else if (strncmp(a->kind, "fidget", 6) == 0) {
        if (strcmp(a->kind, "fidget") == 0)
            pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        started(a);
        struct timespec ts = {0, 20000};
        while (!stop_reporting)
            nanosleep(&ts, NULL);
        ret = (void *)0x7e;
    } else if (strcmp(a->kind, "dyntls") == 0) {
        const char *lib = getenv("KS_DYNTLS_LIB");
        void *h = lib ? dlopen(lib, RTLD_NOW) : NULL;
        int (*stop)(void) = h ? (int (*)(void))dlsym(h, "dyntls_stop_requested") : NULL;
        if (!stop) {
            say("dyntls FAIL %s", dlerror());
            return NULL;
        }
        started(a);
        while (!stop())
            nap_ms(2);
    } else if (strcmp(a->kind, "sigblock") == 0) {
        sigset_t all;
        sigfillset(&all);
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, (size_t)8);   /* past any hook */
        started(a);
        for (;;)
            nap_ms(2);
    } else if (strcmp(a->kind, "holdread") == 0) {
        static pthread_mutex_t own_mu = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&own_mu);
        started(a);
        while (!release_[a->idx])
            nap_ms(2);
        pthread_mutex_unlock(&own_mu);
        say("released %d", a->idx);
        block_forever_in_read();
    } else if (strcmp(a->kind, "racer") == 0) {
        started(a);
        while (!release_[a->idx])
            nap_ms(1);
    } else {
        ret = run_blocked(a);
    }
    free(a);
    return ret;
}

/* Keeps the shared mutex and the heap busy: "check" wants to see it move. */
static void *ticker_main(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&shared_mu);
        void *p = malloc(64 + (size_t)(ticks % 4096));
        memset(p, 1, 64);
        free(p);
        ticks++;
        pthread_mutex_unlock(&shared_mu);
        pthread_mutex_lock(&raw_mu);   /* hangs here if a condraw left it locked */
        pthread_mutex_unlock(&raw_mu);
        nap_ms(1);
    }
    return NULL;
}

static void *noop_main(void *arg) { return arg; }

static int lock_free(pthread_mutex_t *mu)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    if (pthread_mutex_timedlock(mu, &ts) != 0)
        return 0;
    pthread_mutex_unlock(mu);
    return 1;
}

static void check(void)
{
    long t0 = ticks;
    for (int i = 0; i < 5000 && ticks < t0 + 5; i++)
        nap_ms(1);
    if (ticks < t0 + 5) {
        say("check FAIL the ticker thread stopped");
        return;
    }
    if (!lock_free(&shared_mu) || !lock_free(&cond_mu) || !lock_free(&raw_mu)) {
        say("check FAIL a shared mutex is still locked");
        return;
    }
    void *blocks[512];
    for (int i = 0; i < 512; i++) {
        blocks[i] = malloc((size_t)(i * 97 % 20000) + 1);
        if (!blocks[i]) {
            say("check FAIL malloc");
            return;
        }
        memset(blocks[i], i & 0xff, 1);
    }
    for (int i = 0; i < 512; i++)
        free(blocks[i]);
    malloc_trim(0);   /* walks the arenas: a corrupt heap aborts here */
    pthread_t th;
    void *r = NULL;
    if (pthread_create(&th, NULL, noop_main, (void *)0x42) != 0 || pthread_join(th, &r) != 0 ||
        r != (void *)0x42) {
        say("check FAIL cannot create and join a thread");
        return;
    }
    say("check ok ticks=%ld", (long)ticks);
}

int main(void)
{
    say("main tid=%d", gettid());
    pthread_t ticker;
    pthread_create(&ticker, NULL, ticker_main, NULL);
    say("ready");
    char line[128];
    int n = 0;
    while (fgets(line, sizeof line, stdin)) {
        char kind[16], opt[16] = "";
        int i;
        if (sscanf(line, "spawn %15s %15s", kind, opt) >= 1 && n < MAX_THREADS) {
            struct arg *a = end_victims_args[n] = calloc(1, sizeof *a);
            a->idx = n;
            snprintf(a->kind, sizeof a->kind, "%s", kind);
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            if (strcmp(opt, "detached") == 0) {
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                detached[n] = 1;
            }
            if (pthread_create(&threads[n], &attr, victim_main, a) != 0)
                say("spawn FAIL");
            pthread_attr_destroy(&attr);
            n++;
        } else if (sscanf(line, "join %d", &i) == 1 && i >= 0 && i < n) {
            void *r = NULL;
            int rc = pthread_join(threads[i], &r);
            joined[i] = rc == 0;
            if (rc)
                say("joined %d error=%d", i, rc);
            else if (r == PTHREAD_CANCELED)
                say("joined %d canceled", i);
            else
                say("joined %d value=%p", i, r);
        } else if (sscanf(line, "reenable %d", &i) == 1 && i >= 0 && i < MAX_THREADS) {
            reenable[i] = 1;
        } else if (strncmp(line, "reset-reporting", 15) == 0) {
            stop_reporting = 0;
        } else if (sscanf(line, "release %d", &i) == 1 && i >= 0 && i < MAX_THREADS) {
            release_[i] = 1;
        } else if (strncmp(line, "check", 5) == 0) {
            check();
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    /* Threads that ended (an ending the test asked for) and were not joined
     * are joined now, as a tidy program would: ThreadSanitizer reports a
     * finished thread nobody joined as a leak. Running ones are left. */
    for (int i = 0; i < n; i++)
        if (!joined[i] && !detached[i])
            pthread_tryjoin_np(threads[i], NULL);
    return 0;
}
