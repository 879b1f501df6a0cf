/* Creates and destroys threads at a steady rate: RATE threads a second
 * (argv[1], default 1000) for SECONDS (argv[2], default 4), from 4 creator
 * threads. Each worker takes and releases a shared mutex a few times and
 * ends by returning, by pthread_exit, or (one in four) detached. Knows
 * nothing of killshim.
 * stdout: "ready"; after "go" on stdin, "done created=N joined=J detached=D"
 * when the time is up (N == J + D); then waits for "quit". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CREATORS 4
#define OUTSTANDING 8   /* joinable workers a creator keeps alive at once */

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static long shared_counter;
static _Atomic long created, joined, detached_done;
static double rate = 1000, seconds = 4;

void *load_worker(void *arg)
{
    long kind = (long)arg;
    for (int i = 0; i < 4; i++) {
        pthread_mutex_lock(&shared_mu);
        shared_counter++;
        pthread_mutex_unlock(&shared_mu);
    }
    struct timespec nap = {0, (kind % 3) * 200000};   /* 0..0.4 ms alive */
    nanosleep(&nap, NULL);
    if (kind % 4 == 3)
        atomic_fetch_add(&detached_done, 1);
    if (kind % 2)
        pthread_exit(NULL);
    return NULL;
}

static void add_ns(struct timespec *t, long ns)
{
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

void *load_creator(void *arg)
{
    (void)arg;
    long per = (long)(rate * seconds / CREATORS);
    long period_ns = (long)(1e9 * CREATORS / rate);
    pthread_t ring[OUTSTANDING];
    int used[OUTSTANDING] = {0};
    pthread_attr_t det;
    pthread_attr_init(&det);
    pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (long i = 0; i < per; i++) {
        long kind = i;
        int slot = (int)(i % OUTSTANDING);
        if (kind % 4 == 3) {
            pthread_t t;
            if (pthread_create(&t, &det, load_worker, (void *)kind) != 0)
                abort();
        } else {
            if (used[slot]) {
                pthread_join(ring[slot], NULL);
                atomic_fetch_add(&joined, 1);
            }
            if (pthread_create(&ring[slot], NULL, load_worker, (void *)kind) != 0)
                abort();
            used[slot] = 1;
        }
        atomic_fetch_add(&created, 1);
        add_ns(&next, period_ns);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    for (int s = 0; s < OUTSTANDING; s++)
        if (used[s]) {
            pthread_join(ring[s], NULL);
            atomic_fetch_add(&joined, 1);
        }
    pthread_attr_destroy(&det);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) rate = atof(argv[1]);
    if (argc > 2) seconds = atof(argv[2]);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    pthread_t c[CREATORS];
    for (int i = 0; i < CREATORS; i++)
        pthread_create(&c[i], NULL, load_creator, NULL);
    for (int i = 0; i < CREATORS; i++)
        pthread_join(c[i], NULL);
    long total = atomic_load(&created);
    while (atomic_load(&joined) + atomic_load(&detached_done) < total)
        usleep(1000);   /* detached workers finish on their own */
    printf("done created=%ld joined=%ld detached=%ld\n", total, atomic_load(&joined),
           atomic_load(&detached_done));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "quit", 4) == 0)
            break;
    return shared_counter == total * 4 ? 0 : 3;
}
