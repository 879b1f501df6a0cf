/* An event loop as redis runs one, to be dumped while it runs: the main
 * thread waits in epoll_wait (1 ms timeout) on an eventfd that a waker
 * thread writes every WAKE_US (default 500), and after each wait works (spins)
 * for WORK_US (default 300) outside any call. So it is in its wrapped call
 * about half the time and enters and leaves it a thousand times a second.
 * IDLE threads (default 16) wait on a condition variable: each dump reads
 * their /proc files and signals them.
 *
 * Usage: evloop [IDLE [WAKE_US [WORK_US]]]. stdout: "loop tid=T", "ready";
 * after "stop" on stdin: "evloop rounds=R timeouts=T events=E early=X
 * errors=F" (early: a timeout that came before 1 ms; errors: any failed
 * wait, EINTR included, or a wakeup without its event); exits 0 after
 * "quit". */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static int efd, wake_us = 500, work_us = 300;
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static long rounds, timeouts, events, early, errors;

static long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000L;
}

static void *idle_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&idle_mu);
    while (!atomic_load(&stop))
        pthread_cond_wait(&idle_cv, &idle_mu);
    pthread_mutex_unlock(&idle_mu);
    return NULL;
}

static void *waker_main(void *arg)
{
    (void)arg;
    uint64_t one = 1;
    while (!atomic_load(&stop)) {
        if (write(efd, &one, sizeof one) != sizeof one)
            break;
        usleep((useconds_t)wake_us);
    }
    return NULL;
}

/* The loop's own frame, which every dump must show. */
__attribute__((noinline)) static void ev_loop(int ep)
{
    struct epoll_event ev;
    while (!atomic_load(&stop)) {
        long t0 = now_us();
        int rc = epoll_wait(ep, &ev, 1, 1);
        rounds++;
        if (rc == 0) {
            timeouts++;
            early += now_us() - t0 < 1000;
        } else if (rc == 1) {
            uint64_t n;
            events++;
            errors += read(efd, &n, sizeof n) != sizeof n;
        } else {
            errors++;
        }
        for (long end = now_us() + work_us; now_us() < end;) {
        }
    }
}

static void *input_main(void *arg)
{
    (void)arg;
    char line[64];
    while (fgets(line, sizeof line, stdin) && strncmp(line, "stop", 4) != 0) {
    }
    atomic_store(&stop, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    int idle = argc > 1 ? atoi(argv[1]) : 16;
    wake_us = argc > 2 ? atoi(argv[2]) : wake_us;
    work_us = argc > 3 ? atoi(argv[3]) : work_us;
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    if (efd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0 || idle < 0)
        return 1;
    pthread_t *th = calloc((size_t)idle + 2, sizeof *th);
    for (int i = 0; i < idle; i++)
        pthread_create(&th[i], NULL, idle_main, NULL);
    pthread_create(&th[idle], NULL, waker_main, NULL);
    pthread_create(&th[idle + 1], NULL, input_main, NULL);
    printf("loop tid=%d\nready\n", (int)gettid());
    fflush(stdout);
    ev_loop(ep);
    pthread_mutex_lock(&idle_mu);
    pthread_cond_broadcast(&idle_cv);
    pthread_mutex_unlock(&idle_mu);
    for (int i = 0; i < idle + 2; i++)
        pthread_join(th[i], NULL);
    printf("evloop rounds=%ld timeouts=%ld events=%ld early=%ld errors=%ld\n", rounds, timeouts,
           events, early, errors);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin) && strncmp(line, "quit", 4) != 0) {
    }
    free(th);   /* LeakSanitizer checks this program under --config=asan */
    close(ep);
    close(efd);
    return 0;
}
