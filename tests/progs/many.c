/* N threads parked in a mix of ways, for dumps at scale: a quarter each in
 * pthread_cond_wait, sleep (a wrapped call), read on a pipe, epoll_wait, and
 * SPIN (default 0) of the sleepers in a busy loop instead.
 * Usage: many N [SPIN]. stdout: "ready" once all are parked.
 * stdin: "release" wakes every one of them and prints "released N" when all
 * have returned; "quit" exits 0. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static atomic_int parked, finished, released;
static int pipe_fd[2], ep, spinners;

__attribute__((noinline)) void many_cond(void)
{
    pthread_mutex_lock(&mu);
    atomic_fetch_add(&parked, 1);
    while (!atomic_load(&released))
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

__attribute__((noinline)) void many_sleep(void)
{
    atomic_fetch_add(&parked, 1);
    while (!atomic_load(&released))
        usleep(20 * 1000);
}

__attribute__((noinline)) void many_read(void)
{
    char c;
    atomic_fetch_add(&parked, 1);
    if (read(pipe_fd[0], &c, 1) == 1 && write(pipe_fd[1], &c, 1) != 1)
        abort();   /* pass the byte on: one write wakes every reader in turn */
}

__attribute__((noinline)) void many_epoll(void)
{
    struct epoll_event ev;
    atomic_fetch_add(&parked, 1);
    while (!atomic_load(&released))
        epoll_wait(ep, &ev, 1, 100);
}

__attribute__((noinline)) void many_spin(void)
{
    atomic_fetch_add(&parked, 1);
    while (!atomic_load_explicit(&released, memory_order_relaxed)) {
    }
}

void *many_main(void *arg)
{
    long i = (long)arg;
    switch (i % 4) {
    case 0: many_cond(); break;
    case 1: i / 4 < spinners ? many_spin() : many_sleep(); break;
    case 2: many_read(); break;
    default: many_epoll(); break;
    }
    atomic_fetch_add(&finished, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    spinners = argc > 2 ? atoi(argv[2]) : 0;
    if (pipe(pipe_fd) || (ep = epoll_create1(0)) < 0)
        return 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    for (long i = 0; i < n; i++)
        if (pthread_create(&th[i], &attr, many_main, (void *)i) != 0)
            return 1;
    while (atomic_load(&parked) < n)
        usleep(1000);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "release", 7) == 0) {
            pthread_mutex_lock(&mu);
            atomic_store(&released, 1);
            pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
            if (write(pipe_fd[1], "x", 1) != 1)
                return 1;
            for (int i = 0; i < n; i++)
                pthread_join(th[i], NULL);
            printf("released %d\n", atomic_load(&finished));
            fflush(stdout);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    free(th);   /* LeakSanitizer checks this program under --config=asan */
    return 0;
}
