/* A program started WITHOUT the shim whose threads are then ended after an
 * attach (tests/e2e/attach_test, "pre-attach" threads). Prints "ready
 * creader=TID nocancel=TID spinner=TID polite=TID", then reads commands on stdin: beat
 * (prints the heartbeat count), heap (mallocs and frees, prints "heap ok"),
 * load LIB (dlopens it: "loaded", then "ctor tid=N" for latelib's constructor's
 * thread), start (latelib_start: "late tid=N"),
 * try (latelib_try: "late free 0|1"), quit.
 *
 *   creader   blocked in read() of a pipe nobody writes, cancellation
 *             enabled, a cleanup handler that prints "cleanup creader"
 *   nocancel  blocked in read() too, cancellation disabled
 *   spinner   a CPU loop (deferred cancellation: a cancel alone never
 *             acts), a cleanup handler that prints "cleanup spinner"
 *   polite    sleeps 10 ms at a time until stop_polite is set (--flag-symbol),
 *             then prints "polite stopped" and returns
 *   heartbeat counts every 10 ms */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int never[2];
static volatile unsigned long beats, spins;
static int started;   /* threads that noted their tid */
static long tids[4];  /* creader, nocancel, spinner, polite */
volatile int stop_polite;   /* the program's own stop variable */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, long v)
{
    pthread_mutex_lock(&out_mu);
    printf(fmt, v);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

static void cleanup(void *name)
{
    /* write(2), not stdio: a cancelled thread must not take out_mu here. */
    char line[64];
    int n = snprintf(line, sizeof line, "cleanup %s\n", (const char *)name);
    if (write(1, line, (size_t)n) != n)
        abort();
}

static void *creader(void *arg)
{
    (void)arg;
    tids[0] = (long)syscall(SYS_gettid);
    __atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
    char c;
    pthread_cleanup_push(cleanup, "creader");
    if (read(never[0], &c, 1) >= 0)
        say("creader read %ld", 1);
    pthread_cleanup_pop(0);
    return NULL;
}

static void *nocancel(void *arg)
{
    (void)arg;
    int old;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
    tids[1] = (long)syscall(SYS_gettid);
    __atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
    char c;
    if (read(never[0], &c, 1) >= 0)
        say("nocancel read %ld", 1);
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    tids[2] = (long)syscall(SYS_gettid);
    __atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
    pthread_cleanup_push(cleanup, "spinner");
    for (;;)
        spins++;
    pthread_cleanup_pop(0);
    return NULL;
}

static void *polite(void *arg)
{
    (void)arg;
    tids[3] = (long)syscall(SYS_gettid);
    __atomic_add_fetch(&started, 1, __ATOMIC_RELEASE);
    while (!stop_polite) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    say("polite stopped %ld", 1);
    return NULL;
}

static void *heartbeat(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) != 0) {}
        __atomic_add_fetch(&beats, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

int main(void)
{
    void *(*fns[])(void *) = {creader, nocancel, spinner, polite, heartbeat};
    if (pipe(never) != 0)
        return 1;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, fns[i], NULL) != 0)
            return 1;
        pthread_detach(t);
    }
    while (__atomic_load_n(&started, __ATOMIC_ACQUIRE) < 4)
        usleep(1000);
    printf("ready creader=%ld nocancel=%ld spinner=%ld polite=%ld\n", tids[0], tids[1], tids[2],
           tids[3]);
    fflush(stdout);
    char line[4096];
    void *lib = NULL;
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "beat", 4) == 0) {
            say("beats %ld", (long)__atomic_load_n(&beats, __ATOMIC_RELAXED));
        } else if (strncmp(line, "heap", 4) == 0) {
            for (int i = 0; i < 1000; i++)
                free(malloc((size_t)(16 + i)));
            say("heap ok %ld", 1);
        } else if (strncmp(line, "load ", 5) == 0) {
            line[strcspn(line, "\n")] = '\0';
            lib = dlopen(line + 5, RTLD_NOW);
            say(lib ? "loaded %ld" : "load failed %ld", 1);
            long (*ctor)(void) = lib ? (long (*)(void))dlsym(lib, "latelib_ctor_tid") : NULL;
            if (ctor)
                say("ctor tid=%ld", ctor());
        } else if (strncmp(line, "start", 5) == 0 && lib) {
            long (*start)(void) = (long (*)(void))dlsym(lib, "latelib_start");
            say("late tid=%ld", start ? start() : 0);
        } else if (strncmp(line, "try", 3) == 0 && lib) {
            int (*try)(void) = (int (*)(void))dlsym(lib, "latelib_try");
            say("late free %ld", try ? try() : -1);
        } else if (strncmp(line, "quit", 4) == 0) {
            return 0;
        }
    }
    return 0;
}
