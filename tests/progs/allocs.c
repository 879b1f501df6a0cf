/* A threaded program that works its allocator hard while its locks are
 * busy, for running under another allocator (jemalloc, tcmalloc, mimalloc)
 * with and without the shim.
 *
 * Workers: two producers malloc items of random sizes filled with a
 * pattern and queue them under a mutex (waiting on a condition while the
 * queue is full); two consumers take them (waiting on another condition,
 * sometimes with a timeout or a trylock first), check the pattern and free
 * them; a writer reallocates the strings of a table under an rwlock's write
 * lock and a reader checks them under its read lock (timed, sometimes).
 * Two more threads exist to be ended by a test: "blocked" waits in read()
 * on a pipe nobody writes, holding a malloc'd buffer its cleanup handler
 * frees; "spinner" mallocs and frees in a loop with no cancellation point.
 *
 * stdin:  "progress" -> "progress N" (items consumed so far)
 *         "tids"     -> "blocked tid=T", "spinner tid=T"
 *         "quit"     -> stops and joins the workers, prints the summary
 *                       (lines that do not depend on timing), exits 0.
 * stdout: "ready" once every thread runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define QCAP 256
#define TABLE 64

struct item {
    size_t size;
    unsigned seed;
    unsigned char data[];
};

static pthread_mutex_t qmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;
static struct item *queue[QCAP];
static int qhead, qlen, stop;
static unsigned long produced, consumed, bad_items;

static pthread_rwlock_t tlock = PTHREAD_RWLOCK_INITIALIZER;
static char *table[TABLE];
static unsigned long table_version[TABLE], bad_table;

static pid_t blocked_tid, spinner_tid;
static int running;
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;

static void started(void)
{
    pthread_mutex_lock(&start_mu);
    running++;
    pthread_cond_broadcast(&start_cv);
    pthread_mutex_unlock(&start_mu);
}

static unsigned next_rand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static struct item *make_item(unsigned *rng)
{
    size_t size = 1 + next_rand(rng) % 4000;
    if (next_rand(rng) % 64 == 0)
        size += 200000;   /* now and then a large one (the allocator's other path) */
    struct item *it = malloc(sizeof *it + size);
    if (!it)
        return NULL;
    it->size = size;
    it->seed = next_rand(rng);
    for (size_t i = 0; i < size; i++)
        it->data[i] = (unsigned char)(it->seed + i);
    return it;
}

static int item_ok(const struct item *it)
{
    for (size_t i = 0; i < it->size; i++)
        if (it->data[i] != (unsigned char)(it->seed + i))
            return 0;
    return 1;
}

static void *producer(void *arg)
{
    unsigned rng = (unsigned)(uintptr_t)arg;
    started();
    for (;;) {
        struct item *it = make_item(&rng);
        pthread_mutex_lock(&qmu);
        while (qlen == QCAP && !stop)
            pthread_cond_wait(&not_full, &qmu);
        if (stop) {
            pthread_mutex_unlock(&qmu);
            free(it);
            return NULL;
        }
        if (it) {
            queue[(qhead + qlen) % QCAP] = it;
            qlen++;
            produced++;
            pthread_cond_signal(&not_empty);
        }
        pthread_mutex_unlock(&qmu);
    }
}

static void lock_queue(unsigned *rng)
{
    if (next_rand(rng) % 2 == 0 && pthread_mutex_trylock(&qmu) == 0)
        return;
    pthread_mutex_lock(&qmu);
}

static void *consumer(void *arg)
{
    unsigned rng = (unsigned)(uintptr_t)arg;
    started();
    for (;;) {
        lock_queue(&rng);
        while (qlen == 0 && !stop) {
            if (next_rand(&rng) % 2) {
                pthread_cond_wait(&not_empty, &qmu);
            } else {
                struct timespec t;
                clock_gettime(CLOCK_REALTIME, &t);
                t.tv_nsec += 2000000;
                if (t.tv_nsec >= 1000000000) {
                    t.tv_sec++;
                    t.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&not_empty, &qmu, &t);
            }
        }
        if (qlen == 0) {   /* stopped and drained */
            pthread_mutex_unlock(&qmu);
            return NULL;
        }
        struct item *it = queue[qhead];
        qhead = (qhead + 1) % QCAP;
        qlen--;
        consumed++;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&qmu);
        int ok = item_ok(it);
        free(it);
        if (!ok) {
            pthread_mutex_lock(&qmu);
            bad_items++;
            pthread_mutex_unlock(&qmu);
        }
    }
}

static int stopped(void)
{
    pthread_mutex_lock(&qmu);
    int s = stop;
    pthread_mutex_unlock(&qmu);
    return s;
}

/* Slot I at version V holds "I:V:" followed by V % 97 + 1 copies of 'a' + I % 26. */
static char *make_entry(char *old, int i, unsigned long v)
{
    size_t n = v % 97 + 1;
    char *s = realloc(old, 32 + n);
    if (!s)
        return old;
    int k = snprintf(s, 32, "%d:%lu:", i, v);
    memset(s + k, 'a' + i % 26, n);
    s[k + n] = '\0';
    return s;
}

static int entry_ok(const char *s, int i, unsigned long v)
{
    char want[32];
    int k = snprintf(want, sizeof want, "%d:%lu:", i, v);
    size_t n = v % 97 + 1;
    if (strncmp(s, want, (size_t)k) != 0 || strlen(s) != (size_t)k + n)
        return 0;
    for (size_t j = 0; j < n; j++)
        if (s[k + j] != 'a' + i % 26)
            return 0;
    return 1;
}

static void *writer(void *arg)
{
    unsigned rng = (unsigned)(uintptr_t)arg;
    started();
    while (!stopped()) {
        int i = (int)(next_rand(&rng) % TABLE);
        pthread_rwlock_wrlock(&tlock);
        table_version[i]++;
        table[i] = make_entry(table[i], i, table_version[i]);
        pthread_rwlock_unlock(&tlock);
    }
    return NULL;
}

static void *reader(void *arg)
{
    unsigned rng = (unsigned)(uintptr_t)arg;
    started();
    while (!stopped()) {
        if (next_rand(&rng) % 2) {
            pthread_rwlock_rdlock(&tlock);
        } else {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec++;
            if (pthread_rwlock_timedrdlock(&tlock, &t) != 0)
                continue;
        }
        unsigned long bad = 0;
        for (int i = 0; i < TABLE; i++)
            bad += !entry_ok(table[i], i, table_version[i]);
        pthread_rwlock_unlock(&tlock);
        if (bad) {
            pthread_rwlock_wrlock(&tlock);
            bad_table += bad;
            pthread_rwlock_unlock(&tlock);
        }
    }
    return NULL;
}

static void *blocked(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(4096);
    pthread_cleanup_push(free, buf);
    blocked_tid = gettid();
    started();
    for (;;)
        if (read(fd, buf, 4096) == 0)
            break;
    pthread_cleanup_pop(1);
    return NULL;
}

static volatile unsigned long spin_sink;

/* The spinner's malloc, in a frame of its own (no tail call): an abort that
 * leaves when malloc returns redirects malloc's return address, and the
 * block's allocation stack then still names spin_alloc and spinner (the
 * LeakSanitizer suppression of alloc_test). */
static __attribute__((noinline)) unsigned char *spin_alloc(size_t n)
{
    unsigned char *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

static void *spinner(void *arg)
{
    unsigned rng = (unsigned)(uintptr_t)arg;
    spinner_tid = gettid();
    started();
    for (;;) {
        size_t n = 1 + next_rand(&rng) % 2000;
        unsigned char *p = spin_alloc(n);
        if (p) {
            p[0] = p[n - 1] = (unsigned char)n;
            spin_sink += p[0] + p[n - 1];
            free(p);
        }
    }
    return NULL;
}

static void summary(void)
{
    printf("queue: %s\n", produced == consumed ? "consumed == produced" : "items lost");
    printf("items: %s\n", bad_items ? "corrupted" : "intact");
    unsigned long bad = bad_table;
    for (int i = 0; i < TABLE; i++)
        bad += !entry_ok(table[i], i, table_version[i]);
    printf("table: %s\n", bad ? "corrupted" : "intact");
}

int main(void)
{
    for (int i = 0; i < TABLE; i++)
        table[i] = make_entry(NULL, i, 0);
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    void *(*fns[])(void *) = {producer, producer, consumer, consumer, writer, reader};
    enum { NWORK = sizeof fns / sizeof fns[0] };
    pthread_t th[NWORK], other;
    for (int i = 0; i < NWORK; i++)
        if (pthread_create(&th[i], NULL, fns[i], (void *)(uintptr_t)(i * 7919 + 1)) != 0)
            return 1;
    /* Detached: a test ends them, nobody joins them. */
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&other, &detached, blocked, (void *)(intptr_t)fds[0]) != 0 ||
        pthread_create(&other, &detached, spinner, (void *)(uintptr_t)4242) != 0)
        return 1;
    pthread_attr_destroy(&detached);
    pthread_mutex_lock(&start_mu);
    while (running < NWORK + 2)
        pthread_cond_wait(&start_cv, &start_mu);
    pthread_mutex_unlock(&start_mu);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "progress", 8) == 0) {
            pthread_mutex_lock(&qmu);
            unsigned long c = consumed;
            pthread_mutex_unlock(&qmu);
            printf("progress %lu\n", c);
        } else if (strncmp(line, "tids", 4) == 0) {
            printf("blocked tid=%d\nspinner tid=%d\n", blocked_tid, spinner_tid);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
        fflush(stdout);
    }
    pthread_mutex_lock(&qmu);
    stop = 1;
    pthread_cond_broadcast(&not_empty);
    pthread_cond_broadcast(&not_full);
    pthread_mutex_unlock(&qmu);
    for (int i = 0; i < NWORK; i++)
        pthread_join(th[i], NULL);
    summary();
    fflush(stdout);
    return 0;
}
