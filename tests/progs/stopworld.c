/* A world stop as Boehm's collector makes one (libgc's pthread_stop_world.c),
 * to be dumped while it runs: the main thread stops the worker every ms with
 * SIGUSR1 and waits for its acknowledgement; the worker's handler (every
 * signal blocked, as libgc's) posts it and waits in sigsuspend for SIGUSR2,
 * which the main thread sends 200 us later, then waits for the second
 * acknowledgement. Between stops the worker computes outside any call.
 *
 * So a dump often signals the worker just before a stop: its signal stays
 * pending, blocked by the handler, and the worker enters a wrapped call
 * (sigsuspend) instead of answering. The main thread times every stop.
 *
 * stdout: "worker tid=T", "ready"; after "stop" on stdin: "stopworld
 * stops=N slowest_ms=M errors=E" (errors: a sigsuspend that returned for
 * a signal other than SIGUSR2); exits 0 after "quit". */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static sem_t ack;
static atomic_int stop;
static volatile sig_atomic_t restarted, errors;

static long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000L;
}

static void on_restart(int sig)
{
    (void)sig;
    restarted = 1;
}

/* As every handler should, and ThreadSanitizer checks: errno as it was. */

static void on_suspend(int sig)
{
    (void)sig;
    int saved = errno;
    sigset_t wait_mask;
    sigfillset(&wait_mask);
    sigdelset(&wait_mask, SIGUSR2);
    restarted = 0;
    sem_post(&ack);
    sigsuspend(&wait_mask);
    if (!restarted)
        errors++;
    sem_post(&ack);
    errno = saved;
}

static void *worker_main(void *arg)
{
    (void)arg;
    printf("worker tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    volatile unsigned long x = 0;
    while (!atomic_load(&stop))
        x++;
    return NULL;
}

static void *stopper_main(void *arg)
{
    pthread_t w = *(pthread_t *)arg;
    long stops = 0, slowest = 0;
    while (!atomic_load(&stop)) {
        long t0 = now_us();
        pthread_kill(w, SIGUSR1);
        sem_wait(&ack);
        usleep(200);
        pthread_kill(w, SIGUSR2);
        sem_wait(&ack);
        long took = now_us() - t0;
        if (took > slowest)
            slowest = took;
        stops++;
        usleep(1000);
    }
    printf("stopworld stops=%ld slowest_ms=%ld errors=%d\n", stops, slowest / 1000, (int)errors);
    fflush(stdout);
    return NULL;
}

int main(void)
{
    sem_init(&ack, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_suspend;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_restart;
    sigaction(SIGUSR2, &sa, NULL);
    pthread_t w, s;
    pthread_create(&w, NULL, worker_main, NULL);
    usleep(10000);
    pthread_create(&s, NULL, stopper_main, &w);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "stop", 4) == 0) {
            atomic_store(&stop, 1);
            pthread_join(s, NULL);
            pthread_join(w, NULL);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    return 0;
}
