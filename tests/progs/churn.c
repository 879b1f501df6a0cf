/* Creates and joins threads as fast as it can: CREATORS threads each create
 * and join TOTAL/CREATORS short-lived workers. Prints "ready" first (after a
 * line on stdin, "go", it starts), "done N" when all have been joined, then
 * waits for "quit". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Atomic long joined;
static int per_creator;

void *churn_worker(void *arg)
{
    volatile long x = (long)arg;
    for (int i = 0; i < 1000; i++) x += i;
    return NULL;
}

void *churn_creator(void *arg)
{
    (void)arg;
    for (int i = 0; i < per_creator; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, churn_worker, (void *)(long)i) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
        pthread_join(t, NULL);
        atomic_fetch_add(&joined, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int total = argc > 1 ? atoi(argv[1]) : 1000;
    int creators = argc > 2 ? atoi(argv[2]) : 4;
    per_creator = total / creators;
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    pthread_t c[64];
    for (int i = 0; i < creators && i < 64; i++)
        pthread_create(&c[i], NULL, churn_creator, NULL);
    for (int i = 0; i < creators && i < 64; i++)
        pthread_join(c[i], NULL);
    printf("done %ld\n", atomic_load(&joined));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "quit", 4) == 0) break;
    return 0;
}
