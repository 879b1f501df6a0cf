/* Threads for the abort tests, one kind per start command, and a main thread
 * that checks the program's health afterwards. Knows nothing of killshim.
 *
 * stdin:  "start KIND"   starts a victim; prints "victim I tid=T kind=KIND"
 *                        once it runs its loop
 *         "join I"       joins victim I; prints "joined I canceled|value"
 *         "release"      lets lockspin/deadlock/hold_* victims move on
 *         "release2"     lets a hold_recursive victim drop its last level
 *         "check"        prints "healthy beats=N" or "unhealthy: why"
 *         "check but spin_mu"  the same, not counting spin_mu
 *         "trylock NAME" main tries the lock NAME (spin_mu, cond_mu,
 *                        storm_mu, hold_mu, rec_mu; hold_rw and rw for
 *                        writing): prints "trylock NAME free|busy"
 *         "quit"
 * stdout: also "cleanup I ..." from victims' cleanup handlers.
 * KINDs: spin calls printf malloc read accept poll cond cond_nocleanup sleep
 *        nocancel lockspin deadlock rwspin exitsoon storm forker detached
 *        hold_HOW: takes a lock one way, spins until "release", unlocks,
 *        prints "unlocked I" and spins on. HOW: trylock timedlock clocklock
 *        (hold_mu), wrlock trywrlock timedwrlock clockwrlock (hold_rw),
 *        recursive (rec_mu, a recursive mutex locked twice; "release"
 *        unlocks once and prints "unlocked-once I", "release2" the last)
 *        fail_HOW: a lock call that fails (trylock, timedlock: dead_mu,
 *        which main holds), then spins holding nothing */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "tests/progs/abort_victims.h"

#define MAXV 4096

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cond_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond_cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t spin_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t dead_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t storm_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
int released, released2;             /* main sets them; victims poll them */
static _Atomic unsigned long beats;   /* heartbeat writes, check reads */
static __thread volatile unsigned long sink;   /* per thread: no victim races another */
static long storm_total;
static int pipes[2];
static int listen_fd = -1;
static FILE *devnull;

static struct victim victims[MAXV];
static int nvictims;

void say(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&out_mu);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

void announce(struct victim *v) { say("victim %d tid=%d kind=%s\n", v->idx, gettid(), v->kind); }

static void cleanup_say(void *arg)
{
    struct victim *v = arg;
    say("cleanup %d %s\n", v->idx, v->kind);
}

static void cleanup_unlock(void *arg) { pthread_mutex_unlock(arg); }

__attribute__((noinline)) static unsigned long work(unsigned long x)
{
    __asm__ volatile("" ::: "memory");
    return x * 2654435761u + 1;
}

static void run_spin(struct victim *v)
{
    volatile unsigned long n = 0;
    announce(v);
    for (;;)
        n++;
}

static void run_calls(struct victim *v)
{
    announce(v);
    for (unsigned long i = 0;; i++)
        sink = work(sink + i);
}

static void run_printf(struct victim *v)
{
    char buf[128];
    announce(v);
    for (unsigned long i = 0;; i++) {
        fprintf(devnull, "line %lu %s %f\n", i, v->kind, (double)i / 3);
        snprintf(buf, sizeof buf, "%lu-%lu", i, sink);
    }
}

static void run_malloc(struct victim *v)
{
#ifdef __SANITIZE_ADDRESS__
    /* An abort caught inside malloc fires when it returns (its return
     * address is the abort's trampoline): the block it returns is dropped
     * with the thread, as an exception thrown on the next line would drop
     * it; the loop has no cleanup for it. That block is the program's,
     * not a leak of the shim's: LeakSanitizer reported it at exit about
     * once in 80 runs. This thread's blocks are not checked. */
    __lsan_disable();
#endif
    announce(v);
    for (unsigned long i = 0;; i++) {
        char *p = malloc(16 + (i * 7919) % 4000);
        if (p) {
            p[0] = (char)i;
            sink += (unsigned char)p[0];
        }
        free(p);
    }
}

static void run_read(struct victim *v)
{
    char c;
    announce(v);
    for (;;) {
        ssize_t n = read(pipes[0], &c, 1);
        if (n < 0 && errno != EINTR)
            break;
    }
}

static void run_accept(struct victim *v)
{
    announce(v);
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd >= 0)
            close(fd);
    }
}

static void run_poll(struct victim *v)
{
    struct pollfd p = {.fd = pipes[0], .events = POLLIN};
    announce(v);
    for (;;)
        poll(&p, 1, -1);
}

/* Cancellation-safe: a cleanup handler unlocks the mutex. */
static void run_cond(struct victim *v)
{
    pthread_mutex_lock(&cond_mu);
    announce(v);
    pthread_cleanup_push(cleanup_unlock, &cond_mu);
    for (;;)
        pthread_cond_wait(&cond_cv, &cond_mu);
    pthread_cleanup_pop(1);
}

/* Not cancellation-safe: nothing unlocks the mutex on the way out. */
static void run_cond_nocleanup(struct victim *v)
{
    pthread_mutex_lock(&cond_mu);
    announce(v);
    for (;;)
        pthread_cond_wait(&cond_cv, &cond_mu);
}

static void run_sleep(struct victim *v)
{
    announce(v);
    for (;;)
        sleep(1000);
}

static void run_nocancel(struct victim *v)
{
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    run_calls(v);
}

/* Spins with spin_mu held until "release", then unlocks and spins free. */
static void run_lockspin(struct victim *v)
{
    pthread_mutex_lock(&spin_mu);
    announce(v);
    while (!__atomic_load_n(&released, __ATOMIC_RELAXED))
        sink = work(sink);
    pthread_mutex_unlock(&spin_mu);
    say("unlocked %d\n", v->idx);
    for (;;)
        sink = work(sink);
}

static void run_rwspin(struct victim *v)
{
    pthread_rwlock_rdlock(&rw);
    announce(v);
    while (!__atomic_load_n(&released, __ATOMIC_RELAXED))
        sink = work(sink);
    pthread_rwlock_unlock(&rw);
    say("unlocked %d\n", v->idx);
    for (;;)
        sink = work(sink);
}

/* Blocks on dead_mu, which main holds until "release". */
static void run_deadlock(struct victim *v)
{
    announce(v);
    pthread_mutex_lock(&dead_mu);
    pthread_mutex_unlock(&dead_mu);
    say("got dead_mu %d\n", v->idx);
}

/* Holds spin_mu until "release", then forks: the child unlocks its copy,
 * prints a line and exits 7; the parent reports the child's status, then
 * unlocks. */
static void run_forker(struct victim *v)
{
    pthread_mutex_lock(&spin_mu);
    announce(v);
    while (!__atomic_load_n(&released, __ATOMIC_RELAXED))
        sink = work(sink);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_unlock(&spin_mu);
        char line[64];
        int n = snprintf(line, sizeof line, "child of %d alive\n", v->idx);
        ssize_t w = write(1, line, (size_t)n);
        (void)w;
        _exit(7);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    say("forked %d child status %d\n", v->idx, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    pthread_mutex_unlock(&spin_mu);
    say("unlocked %d\n", v->idx);
    for (;;)
        sink = work(sink);
}

static void run_exitsoon(struct victim *v)
{
    announce(v);
    /* from about a tenth of a millisecond to a few: around an abort's latency */
    for (long i = 0; i < 50000 + (v->idx * 7919L) % 1500000; i++)
        sink = work(sink);
}

static void run_storm(struct victim *v)
{
    announce(v);
    for (unsigned long i = 0;; i++) {
        size_t n = 8 + (i * 2654435761u + (unsigned long)v->idx) % 8192;
        char *p = malloc(n);
        if (p)
            memset(p, (int)i, n);
        free(p);
        if (i % 8 == 0)
            fprintf(devnull, "%d %lu\n", v->idx, i);
        pthread_mutex_lock(&storm_mu);
        storm_total++;
        pthread_mutex_unlock(&storm_mu);
    }
}

static void *victim_main(void *arg)
{
    struct victim *v = arg;
    pthread_cleanup_push(cleanup_say, v);
    const char *k = v->kind;
    if (!strcmp(k, "spin")) run_spin(v);
    else if (!strcmp(k, "calls")) run_calls(v);
    else if (!strcmp(k, "printf")) run_printf(v);
    else if (!strcmp(k, "malloc")) run_malloc(v);
    else if (!strcmp(k, "read")) run_read(v);
    else if (!strcmp(k, "accept")) run_accept(v);
    else if (!strcmp(k, "poll")) run_poll(v);
    else if (!strcmp(k, "cond")) run_cond(v);
    else if (!strcmp(k, "cond_nocleanup")) run_cond_nocleanup(v);
    else if (!strcmp(k, "sleep")) run_sleep(v);
    else if (!strcmp(k, "nocancel")) run_nocancel(v);
    else if (!strcmp(k, "lockspin")) run_lockspin(v);
    else if (!strcmp(k, "rwspin")) run_rwspin(v);
    else if (!strcmp(k, "deadlock")) run_deadlock(v);
    else if (!strcmp(k, "exitsoon")) run_exitsoon(v);
    else if (!strcmp(k, "forker")) run_forker(v);
    else if (!strcmp(k, "detached")) {
        pthread_detach(pthread_self());
        run_calls(v);
    }
    else if (!strcmp(k, "storm")) run_storm(v);
    else if (!strncmp(k, "hold_", 5)) run_hold(v, k + 5);
    else if (!strncmp(k, "fail_", 5)) run_fail(v, k + 5);
    pthread_cleanup_pop(0);
    return (void *)1;
}

static void *heartbeat(void *arg)
{
    (void)arg;
    for (;;) {
        beats++;
        usleep(1000);
    }
    return NULL;
}

static void *stress(void *arg)
{
    unsigned long seed = (unsigned long)arg;
    void *keep[64] = {0};
    for (int i = 0; i < 20000; i++) {
        seed = seed * 6364136223846793005ul + 1;
        int slot = (int)(seed >> 33) % 64;
        free(keep[slot]);
        keep[slot] = malloc(1 + (seed >> 40) % 5000);
        if (keep[slot])
            memset(keep[slot], 0x5a, 1);
    }
    for (int i = 0; i < 64; i++)
        free(keep[i]);
    return NULL;
}

/* Other threads run, the heap works under contention, no lock is left held. */
/* WHAT: "check", or "check but spin_mu" after --force left spin_mu locked. */
static void check(const char *what)
{
    unsigned long b0 = beats;
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, stress, (void *)(i + 1));
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 200 && beats == b0; i++)
        usleep(10000);
    pthread_mutex_t *mus[] = {&cond_mu, &storm_mu, &out_mu, &spin_mu};
    const char *names[] = {"cond_mu", "storm_mu", "out_mu", "spin_mu"};
    for (int i = 0; i < (strstr(what, "spin_mu") ? 3 : 4); i++) {
        if (pthread_mutex_trylock(mus[i]) != 0) {
            printf("unhealthy: %s is locked\n", names[i]);
            fflush(stdout);
            return;
        }
        pthread_mutex_unlock(mus[i]);
    }
    if (pthread_rwlock_trywrlock(&rw) != 0) {
        printf("unhealthy: rw is locked\n");
        fflush(stdout);
        return;
    }
    pthread_rwlock_unlock(&rw);
    if (beats == b0) {
        printf("unhealthy: heartbeat stopped\n");
        fflush(stdout);
        return;
    }
    say("healthy beats=%lu\n", beats);
}

/* Main takes the lock NAME (for writing, if a rwlock) and lets it go: 0 if
 * it was free. Another thread's independent view of whether a lock is held. */
static int try_named(const char *name)
{
    struct { const char *name; pthread_mutex_t *mu; pthread_rwlock_t *rw; } locks[] = {
        {"spin_mu", &spin_mu, NULL}, {"cond_mu", &cond_mu, NULL}, {"storm_mu", &storm_mu, NULL},
        {"rw", NULL, &rw},
    };
    for (size_t i = 0; i < sizeof locks / sizeof locks[0]; i++) {
        if (strcmp(locks[i].name, name) != 0)
            continue;
        int rc = locks[i].mu ? pthread_mutex_trylock(locks[i].mu) : pthread_rwlock_trywrlock(locks[i].rw);
        if (rc == 0 && locks[i].mu)
            pthread_mutex_unlock(locks[i].mu);
        else if (rc == 0)
            pthread_rwlock_unlock(locks[i].rw);
        return rc;
    }
    return EINVAL;
}

int main(void)
{
    devnull = fopen("/dev/null", "w");
    if (pipe(pipes) != 0)
        return 1;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(listen_fd, (struct sockaddr *)&a, sizeof a);
    listen(listen_fd, 4);
    pthread_mutex_lock(&dead_mu);
    pthread_t hb;
    pthread_create(&hb, NULL, heartbeat, NULL);
    say("ready pid=%d spin_mu=%p cond_mu=%p dead_mu=%p\n", getpid(), (void *)&spin_mu,
        (void *)&cond_mu, (void *)&dead_mu);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        char kind[32];
        int i;
        if (sscanf(line, "start %31s", kind) == 1 && nvictims < MAXV) {
            struct victim *v = &victims[nvictims];
            v->idx = nvictims++;
            snprintf(v->kind, sizeof v->kind, "%s", kind);
            pthread_create(&v->th, NULL, victim_main, v);
        } else if (sscanf(line, "join %d", &i) == 1 && i >= 0 && i < nvictims) {
            void *r;
            pthread_join(victims[i].th, &r);
            say("joined %d %s\n", i, r == PTHREAD_CANCELED ? "canceled" : "value");
        } else if (!strncmp(line, "release2", 8)) {
            __atomic_store_n(&released2, 1, __ATOMIC_RELAXED);
        } else if (!strncmp(line, "release", 7)) {
            __atomic_store_n(&released, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&dead_mu);
        } else if (sscanf(line, "trylock %31s", kind) == 1) {
            int rc = try_named(kind);
            if (rc == EINVAL)
                rc = hold_try(kind);
            say("trylock %s %s\n", kind, rc == 0 ? "free" : "busy");
        } else if (!strncmp(line, "check", 5)) {
            check(line);
        } else if (!strncmp(line, "quit", 4)) {
            break;
        }
    }
    return 0;
}
