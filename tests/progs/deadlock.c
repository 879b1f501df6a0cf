/* N threads in a lock cycle: thread I locks mutex I, waits until every
 * thread holds its own, then locks mutex (I+1)%N and never gets it (N = 1: a
 * thread that locks its own normal mutex twice).
 * stdout: "locker I tid=T holds=0xADDR wants=0xADDR" per thread, then "ready"
 * (all hold their first mutex; the second lock follows at once).
 * stdin: "quit" exits 0 without unwinding the deadlocked threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX 16

static pthread_mutex_t mu[MAX];
static pthread_barrier_t all_hold;
static int n;

__attribute__((noinline)) void take_second(int i)
{
    pthread_mutex_lock(&mu[(i + 1) % n]);
    pthread_mutex_unlock(&mu[(i + 1) % n]);
}

void *locker_main(void *arg)
{
    int i = (int)(long)arg;
    pthread_mutex_lock(&mu[i]);
    printf("locker %d tid=%d holds=%p wants=%p\n", i, gettid(), (void *)&mu[i],
           (void *)&mu[(i + 1) % n]);
    fflush(stdout);
    pthread_barrier_wait(&all_hold);
    take_second(i);
    pthread_mutex_unlock(&mu[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atoi(argv[1]) : 2;
    if (n < 1 || n > MAX)
        return 2;
    for (int i = 0; i < n; i++)
        pthread_mutex_init(&mu[i], NULL);
    pthread_barrier_init(&all_hold, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        pthread_create(&t, NULL, locker_main, (void *)(long)i);
        pthread_detach(t);
    }
    pthread_barrier_wait(&all_hold);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "quit", 4) == 0)
            break;
    return 0;
}
