/* A program with N named workers that each wait until told to return.
 * stdout: "main tid=T", "worker I tid=T" per worker, then "ready".
 * stdin:  "exit I" (worker I returns; prints "exited I"), "quit". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WORKERS 64

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int should_exit[MAX_WORKERS];
static int started;

void *worker_main(void *arg)
{
    int i = (int)(long)arg;
    char name[16];
    snprintf(name, sizeof name, "worker-%d", i);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&mu);
    printf("worker %d tid=%d\n", i, gettid());
    fflush(stdout);
    started++;
    pthread_cond_broadcast(&cv);
    while (!should_exit[i])
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 3;
    if (n > MAX_WORKERS) n = MAX_WORKERS;
    pthread_t th[MAX_WORKERS];
    printf("main tid=%d\n", getpid());
    fflush(stdout);
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, worker_main, (void *)(long)i);
    pthread_mutex_lock(&mu);
    while (started < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    printf("ready\n");
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        int i;
        if (sscanf(line, "exit %d", &i) == 1 && i >= 0 && i < n) {
            pthread_mutex_lock(&mu);
            should_exit[i] = 1;
            pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
            pthread_join(th[i], NULL);
            printf("exited %d\n", i);
            fflush(stdout);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    return 0;
}
