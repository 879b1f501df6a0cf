/* A program that cancels its own threads, many times over: deferred
 * cancellation in a condition wait and in sleep, asynchronous cancellation
 * in a busy loop, and cancellation of threads that hold a cleanup handler.
 * Knows nothing of killshim.
 * stdout: "ready"; on "go" runs ROUNDS (argv[1], default 200) rounds of 4
 * threads each, checks every join returned PTHREAD_CANCELED and every
 * cleanup handler ran, then prints "done rounds=R canceled=C cleanups=K";
 * stdin: "go", "quit". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static _Atomic int running, cleanups;

static void unlock_mu(void *arg) { pthread_mutex_unlock(arg); }
static void count_cleanup(void *arg) { (void)arg; atomic_fetch_add(&cleanups, 1); }

void *cancel_in_condwait(void *arg)
{
    (void)arg;
    pthread_cleanup_push(count_cleanup, NULL);
    pthread_mutex_lock(&mu);
    pthread_cleanup_push(unlock_mu, &mu);
    atomic_fetch_add(&running, 1);
    for (;;)
        pthread_cond_wait(&never, &mu);
    pthread_cleanup_pop(1);
    pthread_cleanup_pop(1);
    return NULL;
}

void *cancel_in_sleep(void *arg)
{
    (void)arg;
    pthread_cleanup_push(count_cleanup, NULL);
    atomic_fetch_add(&running, 1);
    for (;;)
        usleep(100000);
    pthread_cleanup_pop(1);
    return NULL;
}

void *cancel_async(void *arg)
{
    (void)arg;
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    atomic_fetch_add(&running, 1);
    volatile unsigned long spin = 0;
    for (;;)
        spin++;
    return NULL;
}

void *cancel_before_start(void *arg)
{
    (void)arg;
    atomic_fetch_add(&running, 1);
    pthread_testcancel();
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    void *(*fns[])(void *) = {cancel_in_condwait, cancel_in_sleep, cancel_async, cancel_before_start};
    int canceled = 0;
    for (int r = 0; r < rounds; r++) {
        pthread_t t[4];
        atomic_store(&running, 0);
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, fns[i], NULL);
        while (atomic_load(&running) < 3)   /* the 4th may be cancelled before it counts */
            usleep(100);
        for (int i = 0; i < 4; i++)
            pthread_cancel(t[i]);
        for (int i = 0; i < 4; i++) {
            void *ret = NULL;
            pthread_join(t[i], &ret);
            canceled += ret == PTHREAD_CANCELED;
        }
    }
    printf("done rounds=%d canceled=%d cleanups=%d\n", rounds, canceled, atomic_load(&cleanups));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "quit", 4) == 0)
            break;
    return 0;
}
