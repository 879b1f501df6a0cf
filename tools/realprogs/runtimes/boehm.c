/* Boehm's collector (libgc) with parallel marking: two worker threads,
 * registered with it (GC_pthread_create), build and check lists of
 * collected cells for SECS seconds while the main thread does too; the
 * collector's marker thread helps every collection. Prints, once all are
 * done, "ok" for each thread whose lists all checked: the same output with and without the shim
 * unless a list was corrupted or a thread hung. Declarations by hand: the
 * runtime package (libgc1) has no header. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void GC_init(void);
void GC_allow_register_threads(void);
void GC_start_mark_threads(void);
void *GC_malloc(size_t);
int GC_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
int GC_pthread_join(pthread_t, void **);

struct cell { struct cell *next; long v; char pad[48]; };

static double secs;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Builds lists of 2,000 cells and checks each one's sum, until SECS pass. */
static void *work(void *arg)
{
    int *bad_out = arg;
    double end = now() + secs;
    int bad = 0;
    while (now() < end) {
        struct cell *head = NULL;
        for (long i = 0; i < 2000; i++) {
            struct cell *c = GC_malloc(sizeof *c);
            c->next = head;
            c->v = i;
            head = c;
        }
        long sum = 0;
        for (struct cell *c = head; c; c = c->next)
            sum += c->v;
        bad |= sum != 1999L * 2000 / 2;
    }
    *bad_out = bad;
    return NULL;
}

int main(int argc, char **argv)
{
    secs = argc > 1 ? atof(argv[1]) : 5;
    GC_init();
    GC_allow_register_threads();
    GC_start_mark_threads();
    printf("pid %d\n", getpid());
    fflush(stdout);
    pthread_t t[2];
    int bad[3] = {0, 0, 0};
    for (int i = 0; i < 2; i++)
        GC_pthread_create(&t[i], NULL, work, &bad[i]);
    work(&bad[2]);
    for (int i = 0; i < 2; i++)
        GC_pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        printf("%s %s\n", i < 2 ? (i ? "worker 1" : "worker 0") : "main", bad[i] ? "CORRUPT" : "ok");
    printf("done\n");
    return 0;
}
