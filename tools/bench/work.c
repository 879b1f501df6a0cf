/* bench_work: the workloads bench_ab runs with and without the shim. Each
 * measures itself and prints one number as its last line, so process
 * start-up and loading do not dilute what is measured.
 *
 *   threads N     create and join N threads one after another: ns per thread,
 *                 best of 20 batches
 *   mutex N       N uncontended lock/unlock pairs, single-threaded program:
 *                 ns per pair, best of 20 batches
 *   mutex-mt N    the same with one idle thread alive (a multithreaded program)
 *   mem-thread N  RSS added per thread with N threads alive and blocked: bytes
 *   mem-thread-malloc N  the same, each thread having used malloc once
 *   mem-fixed     RSS of an idle program: bytes
 *   fork N        fork, _exit in the child, waitpid: ns per fork, best of 20
 *                 batches (a single-threaded program: make, a shell)
 *   rate R        threads created (and joined) at R per second for 2 s, by two
 *                 creators (a server's workers): CPU time (user + system) of
 *                 the whole process per thread created, ns. Where the machine
 *                 cannot keep R up, both creators run flat out; the rate they
 *                 reached goes to stderr
 *   gen MIB       MIB MiB of deterministic text on stdout (xz's input)
 *   serve-threads N  a server for bench_pair: for each byte read from stdin,
 *                 creates and joins N threads one after another and prints
 *                 the wall time per thread, ns, one line; ends at EOF
 *   serve-threads-cpu N  the same, printing the process's CPU time (user +
 *                 system, all its threads) per thread: what other tenants
 *                 of a shared CPU took in between is not in it */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *noop(void *arg) { return arg; }

/* N threads created and joined one after the other: 0, or 1 (said why). */
static int create_join(long n)
{
    for (long i = 0; i < n; i++) {
        pthread_t th;
        if (pthread_create(&th, NULL, noop, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
        pthread_join(th, NULL);
    }
    return 0;
}

/* The best of BATCHES batches, as for the mutex below: see there. */
#define BATCHES 20
static int bench_threads(long n)
{
    long per = n / BATCHES;
    double best = 1e30;
    for (int b = -1; b < BATCHES; b++) {   /* batch -1 fills glibc's stack cache */
        uint64_t t0 = now_ns();
        if (create_join(per) != 0)
            return 1;
        double ns = (double)(now_ns() - t0) / (double)per;
        if (b >= 0 && ns < best)
            best = ns;
    }
    printf("%.1f\n", best);
    return 0;
}

/* bench_pair's side: one batch per request, so that the driver can
 * interleave batches of several processes (with and without the shim) a few
 * milliseconds apart. The first request's batch fills glibc's stack cache
 * like any other: the driver throws its warm-up rounds away. */
static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int serve_threads(long n, uint64_t (*clock)(void))
{
    char c;
    while (read(0, &c, 1) == 1) {
        uint64_t t0 = clock();
        if (create_join(n) != 0)
            return 1;
        printf("%.1f\n", (double)(clock() - t0) / (double)n);
        fflush(stdout);
    }
    return 0;
}

static int idle_fd[2];

static void *idle_thread(void *arg)
{
    char c;
    (void)arg;
    while (read(idle_fd[0], &c, 1) < 0)
        ;
    return NULL;
}

/* The calls go through the PLT like any program's, so the preloaded hooks
 * are what runs with the shim. The value is the best of BATCHES batches:
 * on a shared machine the other load comes in slices longer than a batch,
 * so the best batch is the one it did not hit. */
static int bench_mutex(long n, int mt)
{
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_t th;
    if (mt && (pipe(idle_fd) != 0 || pthread_create(&th, NULL, idle_thread, NULL) != 0))
        return 1;
    long per = n / BATCHES;
    double best = 1e30;
    for (int b = -1; b < BATCHES; b++) {   /* batch -1 warms caches and predictors */
        uint64_t t0 = now_ns();
        for (long i = 0; i < per; i++) {
            pthread_mutex_lock(&m);
            pthread_mutex_unlock(&m);
        }
        double ns = (double)(now_ns() - t0) / (double)per;
        if (b >= 0 && ns < best)
            best = ns;
    }
    printf("%.2f\n", best);
    return 0;
}

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static long gate_started;

/* ARG non-NULL: use malloc once, as most threads do; glibc then gives the
 * thread its own malloc cache (tcache), a few hundred bytes. */
static void *parked(void *arg)
{
    if (arg) {
        void *volatile p = malloc(64);
        free(p);
    }
    pthread_mutex_lock(&gate_mu);
    gate_started++;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    char c;
    for (;;)
        (void)!read(idle_fd[0], &c, 1);   /* never written: parked for good */
    return NULL;
}

/* Threads with the default attributes, as a program would make them; the
 * process exits with them still parked. */
static int bench_mem_thread(long n, int use_malloc)
{
    if (pipe(idle_fd) != 0)
        return 1;
    usleep(50 * 1000);   /* let the shim's own thread settle first */
    long before = rss_bytes();
    for (long i = 0; i < n; i++) {
        pthread_t th;
        if (pthread_create(&th, NULL, parked, use_malloc ? &th : NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    pthread_mutex_lock(&gate_mu);
    while (gate_started < n)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    long after = rss_bytes();
    printf("%.1f\n", (double)(after - before) / (double)n);
    fflush(stdout);
    _exit(0);
}

static int bench_mem_fixed(void)
{
    usleep(100 * 1000);
    printf("%ld\n", rss_bytes());
    return 0;
}

/* Words from a fixed vocabulary drawn by a fixed LCG: compressible like
 * text, identical on every machine. */
static int gen(long mib)
{
    static char vocab[4096][12];
    uint64_t x = 0x9e3779b97f4a7c15u;
#define NEXT() (x = x * 6364136223846793005u + 1442695040888963407u, (unsigned)(x >> 33))
    for (int i = 0; i < 4096; i++) {
        int len = 2 + (int)(NEXT() % 9);
        for (int k = 0; k < len; k++)
            vocab[i][k] = (char)('a' + NEXT() % 26);
        vocab[i][len] = '\0';
    }
    long want = mib * 1024 * 1024, done = 0;
    int col = 0;
    while (done < want) {
        /* Zipf-like: low indices are common. */
        unsigned r = NEXT();
        const char *w = vocab[(r % 4096) & (NEXT() % 4096)];
        int len = printf("%s", w);
        done += len;
        col += len;
        if (col > 70) {
            putchar('\n');
            col = 0;
        } else {
            putchar(' ');
        }
        done++;
    }
#undef NEXT
    return 0;
}

static int bench_fork(long n)
{
    long per = n / BATCHES;
    double best = 1e30;
    for (int b = 0; b < BATCHES; b++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < per; i++) {
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            int st;
            waitpid(c, &st, 0);
        }
        double ns = (double)(now_ns() - t0) / (double)per;
        if (ns < best)
            best = ns;
    }
    printf("%.0f\n", best);
    return 0;
}

struct rate_job {
    long per_s;   /* this creator's share of the rate */
    uint64_t until_ns;
    long made;
};

/* Creates and joins threads on a fixed schedule (absolute times: a late
 * creation does not delay the next ones). */
static void *rate_creator(void *arg)
{
    struct rate_job *j = arg;
    uint64_t start = now_ns();
    double gap = 1e9 / (double)j->per_s;
    for (long i = 0;; i++) {
        uint64_t at = start + (uint64_t)((double)i * gap);
        if (at >= j->until_ns)
            break;
        uint64_t now = now_ns();
        if (at > now) {
            struct timespec ts = {(time_t)((at - now) / 1000000000u), (long)((at - now) % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        pthread_t t;
        if (pthread_create(&t, NULL, noop, NULL) != 0)
            break;
        pthread_join(t, NULL);
        j->made++;
    }
    return NULL;
}

static double cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

static int bench_rate(long rate)
{
    struct rate_job j[2];
    pthread_t c[2];
    double c0 = cpu_ns();
    uint64_t t0 = now_ns();
    for (int i = 0; i < 2; i++) {
        j[i] = (struct rate_job){.per_s = (rate + 1) / 2, .until_ns = t0 + 2000000000u};
        if (pthread_create(&c[i], NULL, rate_creator, &j[i]) != 0)
            return 1;
    }
    for (int i = 0; i < 2; i++)
        pthread_join(c[i], NULL);
    double wall = (double)(now_ns() - t0) / 1e9;
    long made = j[0].made + j[1].made;
    if (made == 0)
        return 1;
    fprintf(stderr, "bench_work rate %ld: %.0f threads/s reached\n", rate, (double)made / wall);
    printf("%.0f\n", (cpu_ns() - c0) / (double)made);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: bench_work threads N | mutex N | mutex-mt N | mem-thread N"
              " | mem-thread-malloc N | mem-fixed | fork N"
              " | rate R | gen MIB | serve-threads[-cpu] N\n", stderr);
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 0;
    const char *m = argv[1];
    if (strcmp(m, "threads") == 0 && n > 0) return bench_threads(n);
    if (strcmp(m, "mutex") == 0 && n > 0) return bench_mutex(n, 0);
    if (strcmp(m, "mutex-mt") == 0 && n > 0) return bench_mutex(n, 1);
    if (strcmp(m, "mem-thread") == 0 && n > 0) return bench_mem_thread(n, 0);
    if (strcmp(m, "mem-thread-malloc") == 0 && n > 0) return bench_mem_thread(n, 1);
    if (strcmp(m, "mem-fixed") == 0) return bench_mem_fixed();
    if (strcmp(m, "fork") == 0 && n > 0) return bench_fork(n);
    if (strcmp(m, "rate") == 0 && n > 0) return bench_rate(n);
    if (strcmp(m, "gen") == 0 && n > 0) return gen(n);
    if (strcmp(m, "serve-threads") == 0 && n > 0) return serve_threads(n, now_ns);
    if (strcmp(m, "serve-threads-cpu") == 0 && n > 0) return serve_threads(n, process_cpu_ns);
    fprintf(stderr, "bench_work: bad arguments\n");
    return 2;
}
