/* bench_target: the program the acting and scale benchmarks work on, run
 * under the shim like any user program. It knows nothing of killshim.
 *
 *   bench_target act
 *     A heartbeat thread wakes every millisecond and keeps the times of its
 *     last wake-ups: the largest gap over a window is how long whatever
 *     happened then held it up. Commands on
 *     stdin, one reply line each on stdout:
 *       blocked      start a thread blocked in poll()  -> "victim TID HANDLE"
 *       busy         start a thread in a CPU loop      -> "victim TID HANDLE"
 *       release TID  let that victim return by itself  -> "ok"
 *       spin N       start N more threads that spin for good (the load the
 *                    acting is measured under)          -> "ok"
 *       gap T0 T1    largest gap between heartbeats over the window [T0, T1]
 *                    (CLOCK_MONOTONIC ns, the machine's one clock), once the
 *                    heartbeat has beaten after T1     -> "gap NS"
 *   bench_target sleepers N [STACK_KIB]
 *     N threads parked three frames deep in pause(); "ready" once all run;
 *     exits at EOF on stdin.
 * HANDLE is the pthread_t in decimal, for gdb's "call pthread_cancel(...)". */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- act ---------------------------------------------------------------- */

/* The times of the last HB_RING wake-ups (16 s of history). Written only
 * by the heartbeat; hb_beats is published after the slot it counts. */
#define HB_RING 16384
static uint64_t hb_time[HB_RING];
static _Atomic uint64_t hb_beats;

static void *heartbeat(void *arg)
{
    (void)arg;
    const struct timespec period = {0, 1000000};
    for (;;) {
        uint64_t n = atomic_load_explicit(&hb_beats, memory_order_relaxed);
        hb_time[n % HB_RING] = now_ns();
        atomic_store_explicit(&hb_beats, n + 1, memory_order_release);
        clock_nanosleep(CLOCK_MONOTONIC, 0, &period, NULL);
    }
    return NULL;
}

/* Largest interval between consecutive beats that overlaps [t0, t1]. Waits
 * for a beat after t1, so a beat held up past t1 is counted. */
static uint64_t hb_gap(uint64_t t0, uint64_t t1)
{
    for (;;) {
        uint64_t n = atomic_load_explicit(&hb_beats, memory_order_acquire);
        if (n && hb_time[(n - 1) % HB_RING] > t1)
            break;
        usleep(200);
    }
    uint64_t n = atomic_load_explicit(&hb_beats, memory_order_acquire), max = 0;
    for (uint64_t i = n - 1; i > 0 && n - i < HB_RING - 1; i--) {
        uint64_t a = hb_time[(i - 1) % HB_RING], b = hb_time[i % HB_RING];
        if (b < t0)
            break;
        if (a <= t1 && b - a > max)
            max = b - a;
    }
    return max;
}

#define MAX_VICTIMS 4096

struct victim {
    _Atomic pid_t tid;
    pthread_t handle;
    int fds[2];               /* blocked: polls fds[0]; release closes fds[1] */
    _Atomic int release;      /* busy: leaves its loop when set */
    int busy;
};

static struct victim victims[MAX_VICTIMS];
static int nvictims;
static volatile uint64_t sink;

static void *victim_main(void *arg)
{
    struct victim *v = arg;
    atomic_store(&v->tid, gettid());
    if (v->busy) {
        uint64_t x = 1;
        while (!atomic_load_explicit(&v->release, memory_order_relaxed))
            for (int i = 0; i < 1000; i++)
                x = x * 6364136223846793005u + 1442695040888963407u;
        sink = x;
    } else {
        struct pollfd p = {.fd = v->fds[0], .events = POLLIN};
        while (poll(&p, 1, -1) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

static int act_spawn(int busy)
{
    if (nvictims == MAX_VICTIMS)
        return -1;
    struct victim *v = &victims[nvictims++];
    v->busy = busy;
    if (!busy && pipe(v->fds) != 0)
        return -1;
    if (pthread_create(&v->handle, NULL, victim_main, v) != 0)
        return -1;
    pthread_detach(v->handle);
    while (atomic_load(&v->tid) == 0)
        usleep(100);
    printf("victim %d %lu\n", (int)v->tid, (unsigned long)v->handle);
    return 0;
}

/* Spinners wait here until all are made: 1,000 of them spinning on 2 cores
 * would starve the thread making the rest. */
static pthread_mutex_t spin_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spin_cv = PTHREAD_COND_INITIALIZER;
static int spin_go;

static void *spinner(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&spin_mu);
    while (!spin_go)
        pthread_cond_wait(&spin_cv, &spin_mu);
    pthread_mutex_unlock(&spin_mu);
    uint64_t x = 1;
    for (;;) {
        for (int i = 0; i < 1000; i++)
            x = x * 6364136223846793005u + 1442695040888963407u;
        sink = x;
    }
    return NULL;
}

static void act_spin(long n)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 << 10);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    long i = 0;
    pthread_t t;
    pthread_mutex_lock(&spin_mu);
    spin_go = 0;
    pthread_mutex_unlock(&spin_mu);
    while (i < n && pthread_create(&t, &a, spinner, NULL) == 0)
        i++;
    pthread_attr_destroy(&a);
    pthread_mutex_lock(&spin_mu);
    spin_go = 1;
    pthread_cond_broadcast(&spin_cv);
    pthread_mutex_unlock(&spin_mu);
    printf(i == n ? "ok\n" : "err spin\n");
}

static void act_release(pid_t tid)
{
    for (int i = 0; i < nvictims; i++) {
        struct victim *v = &victims[i];
        if (v->tid != tid)
            continue;
        atomic_store(&v->release, 1);
        if (!v->busy && v->fds[1] >= 0) {
            close(v->fds[1]);
            v->fds[1] = -1;
        }
    }
    printf("ok\n");
}

static int act(void)
{
    pthread_t hb;
    if (pthread_create(&hb, NULL, heartbeat, NULL) != 0)
        return 1;
    pthread_setname_np(hb, "heartbeat");
    printf("ready\n");
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "blocked", 7) == 0) {
            if (act_spawn(0)) printf("err\n");
        } else if (strncmp(line, "busy", 4) == 0) {
            if (act_spawn(1)) printf("err\n");
        } else if (strncmp(line, "spin ", 5) == 0) {
            act_spin(atol(line + 5));
        } else if (strncmp(line, "release ", 8) == 0) {
            act_release((pid_t)atoi(line + 8));
        } else if (strncmp(line, "gap ", 4) == 0) {
            unsigned long long t0, t1;
            if (sscanf(line + 4, "%llu %llu", &t0, &t1) == 2)
                printf("gap %llu\n", (unsigned long long)hb_gap(t0, t1));
            else
                printf("err gap T0 T1\n");
        } else {
            printf("err unknown command\n");
        }
        fflush(stdout);
    }
    return 0;
}

/* ---- sleepers ----------------------------------------------------------- */

static _Atomic long parked;

/* noinline and a use after the call: three real frames for the stack
 * dumpers to walk, not one folded by tail calls. */
__attribute__((noinline)) static int park3(int d)
{
    atomic_fetch_add(&parked, 1);
    for (;;)
        pause();
    return d;
}
__attribute__((noinline)) static int park2(int d) { return park3(d + 1) + 1; }
__attribute__((noinline)) static int park1(int d) { return park2(d + 1) + 1; }

static void *sleeper(void *arg)
{
    (void)arg;
    sink = (uint64_t)park1(0);
    return NULL;
}

static int sleepers(long n, long stack_kib)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)stack_kib * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (long i = 0; i < n; i++) {
        pthread_t th;
        int rc = pthread_create(&th, &attr, sleeper, NULL);
        if (rc != 0) {
            fprintf(stderr, "bench_target: thread %ld: %s\n", i, strerror(rc));
            return 1;
        }
    }
    while (atomic_load(&parked) < n)
        usleep(1000);
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (fgets(buf, sizeof buf, stdin))
        ;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "act") == 0)
        return act();
    if (argc >= 3 && strcmp(argv[1], "sleepers") == 0)
        return sleepers(atol(argv[2]), argc > 3 ? atol(argv[3]) : 256);
    fputs("usage: bench_target act | sleepers N [STACK_KIB]\n", stderr);
    return 2;
}
