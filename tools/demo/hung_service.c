/* hung_service: a tiny HTTP service with the classic hangs, for `killshim demo`.
 *
 * It knows nothing of killshim; that is the point. Build and run it like any
 * program, then look inside it and repair it from another terminal:
 *
 *     cc -O2 -g -pthread -o hung_service hung_service.c
 *     killshim run -- ./hung_service          # prints its pid and its URL
 *     curl -s http://127.0.0.1:PORT/          # the "http" thread answers
 *     killshim inject PID                     # what are its threads doing?
 *
 * Its workers hang the way real services do, each needing a different cure:
 *
 *   cruncher  spins in a loop that calls nothing: no cancellation point, so
 *             only `--mode abort` ends it.
 *   fetcher   waits forever for an upstream that accepted the connection
 *             but never replies: read() is a cancellation point, so
 *             `--mode cancel` ends it, and its cleanup handler closes the
 *             connection.
 *   ledger-a  holds mutex A and waits for B, while ledger-b holds B and
 *   ledger-b  waits for A: a deadlock. An abort would leave a mutex locked,
 *             so killshim waits for an unlock that never comes;
 *             `--force` ends one side, whose cleanup handler unlocks its
 *             mutex, and the other side runs on.
 *   reporter  turned cancellation off around its work and polls its own
 *             stop variable: `--mode flag --flag-symbol stop_reporting`
 *             asks it to stop the way its author intended.
 *
 * The main thread joins each worker as it ends and logs how it ended (what
 * pthread_join returned), so the log shows the cleanup handlers ran.
 *
 * Usage: hung_service [--port N]     (default: a free port on 127.0.0.1) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CRUNCHER, FETCHER, LEDGER_A, LEDGER_B, REPORTER, NWORKERS };

static const char *const worker_names[NWORKERS] = {
    "cruncher", "fetcher", "ledger-a", "ledger-b", "reporter",
};

/* The reporter's own stop variable, as many programs have one. Not static,
 * not exported: killshim finds it in the ELF symbol table. */
volatile int stop_reporting;

static pthread_mutex_t account_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t account_b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold_one;      /* makes the deadlock certain */

static int upstream_port;                    /* accepts, never answers */
static unsigned long transfers;              /* work the ledgers got done (atomic) */

/* Workers count down when they reach their hang, so "ready" means it. */
static pthread_mutex_t ready_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cv = PTHREAD_COND_INITIALIZER;
static int not_ready = NWORKERS;

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    flockfile(stdout);
    fputs("hung_service: ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    funlockfile(stdout);
    va_end(ap);
}

static void reached_hang(void)
{
    pthread_mutex_lock(&ready_mu);
    if (--not_ready == 0)
        pthread_cond_signal(&ready_cv);
    pthread_mutex_unlock(&ready_mu);
}

/* ---- cruncher: a CPU loop with no calls in it ------------------------- */
static void *cruncher_main(void *arg)
{
    (void)arg;
    reached_hang();
    volatile unsigned long x = 1;
    for (;;)                                  /* a bug: the exit test is missing */
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    return NULL;
}

/* ---- fetcher: a connection that never answers -------------------------- */
static void close_fd(void *p)
{
    close(*(int *)p);
    note("fetcher: cleanup handler closed its upstream connection");
}

static int connect_local(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *fetcher_main(void *arg)
{
    (void)arg;
    int fd = connect_local(upstream_port);
    if (fd < 0) {
        note("fetcher: cannot reach upstream: %s", strerror(errno));
        reached_hang();
        return NULL;
    }
    pthread_cleanup_push(close_fd, &fd);
    static const char req[] = "GET /quote HTTP/1.0\r\n\r\n";
    if (write(fd, req, sizeof req - 1) < 0)
        note("fetcher: write: %s", strerror(errno));
    reached_hang();
    char reply[256];
    ssize_t n = read(fd, reply, sizeof reply);   /* no timeout: the bug */
    note("fetcher: upstream replied (%zd bytes)", n);
    pthread_cleanup_pop(1);
    return NULL;
}

/* ---- ledger-a and ledger-b: two locks taken in opposite orders --------- */
static void unlock_mutex(void *m) { pthread_mutex_unlock(m); }

/* One transfer: FROM, then TO. The cleanup handler releases FROM however the
 * thread leaves while it waits for TO (cancellation, or killshim's abort). */
static void transfer(pthread_mutex_t *from, pthread_mutex_t *to, int first_round)
{
    pthread_mutex_lock(from);
    pthread_cleanup_push(unlock_mutex, from);
    if (first_round) {
        /* Both hold their first lock before either takes its second. */
        pthread_barrier_wait(&both_hold_one);
        reached_hang();
    }
    pthread_mutex_lock(to);                      /* the other one holds it */
    __atomic_fetch_add(&transfers, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(to);
    pthread_cleanup_pop(1);
}

static void *ledger_main(void *arg)
{
    int me = (int)(long)arg;
    pthread_mutex_t *first = me == LEDGER_A ? &account_a : &account_b;
    pthread_mutex_t *second = me == LEDGER_A ? &account_b : &account_a;
    transfer(first, second, 1);
    note("%s: got both accounts; transfers resume", worker_names[me]);
    for (;;) {
        transfer(first, second, 0);
        usleep(100 * 1000);
    }
    return NULL;
}

/* ---- reporter: cancellation off, stops on its own variable ------------- */
static void *reporter_main(void *arg)
{
    (void)arg;
    /* It writes reports it must never leave half-done, so its author turned
     * cancellation off; it checks stop_reporting between reports instead. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    reached_hang();
    unsigned long reports = 0;
    while (!stop_reporting) {
        reports++;
        sleep(1);
    }
    note("reporter: stop_reporting is set; stopping after %lu reports", reports);
    return (void *)reports;
}

/* ---- http: the healthy thread that answers requests -------------------- */
static pthread_t workers[NWORKERS];
static int running[NWORKERS];                /* owned by main; read by http */
static time_t started;

static void answer(int c, unsigned long served)
{
    char req[1024];
    ssize_t n = recv(c, req, sizeof req - 1, 0);   /* one small request */
    if (n <= 0)
        return;
    char body[512];
    int len = snprintf(body, sizeof body, "ok: request %lu, up %lds, transfers %lu, workers:",
                       served, (long)(time(NULL) - started),
                       __atomic_load_n(&transfers, __ATOMIC_RELAXED));
    for (int i = 0; i < NWORKERS; i++)
        if (__atomic_load_n(&running[i], __ATOMIC_RELAXED))
            len += snprintf(body + len, sizeof body - (size_t)len, " %s", worker_names[i]);
    len += snprintf(body + len, sizeof body - (size_t)len, "\n");
    char head[128];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n",
                      len);
    if (send(c, head, (size_t)hl, MSG_NOSIGNAL) == hl)
        send(c, body, (size_t)len, MSG_NOSIGNAL);
}

static void *http_main(void *arg)
{
    int lfd = (int)(long)arg;
    for (unsigned long served = 1;; served++) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        answer(c, served);
        close(c);
    }
    return NULL;
}

static int listen_local(int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("hung_service: listen");
        exit(1);
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

static void start(pthread_t *th, const char *name, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(th, NULL, fn, arg);
    if (rc != 0) {
        fprintf(stderr, "hung_service: pthread_create: %s\n", strerror(rc));
        exit(1);
    }
    pthread_setname_np(*th, name);
}

static void join_finished_workers(void)
{
    for (int i = 0; i < NWORKERS; i++) {
        void *ret;
        if (!running[i] || pthread_tryjoin_np(workers[i], &ret) != 0)
            continue;
        __atomic_store_n(&running[i], 0, __ATOMIC_RELAXED);
        if (ret == PTHREAD_CANCELED)
            note("joined %s: it ended by cancellation (PTHREAD_CANCELED)", worker_names[i]);
        else
            note("joined %s: it returned %p", worker_names[i], ret);
    }
}

int main(int argc, char **argv)
{
    int port = argc == 3 && strcmp(argv[1], "--port") == 0 ? atoi(argv[2]) : 0;
    if (argc != 1 && argc != 3) {
        fprintf(stderr, "usage: hung_service [--port N]\n");
        return 2;
    }
    started = time(NULL);
    int http_port;
    int lfd = listen_local(port, &http_port);
    int upstream_fd = listen_local(0, &upstream_port);   /* never accept()ed */
    (void)upstream_fd;
    pthread_barrier_init(&both_hold_one, NULL, 2);

    pthread_t http;
    start(&http, "http", http_main, (void *)(long)lfd);
    void *(*const mains[NWORKERS])(void *) = {
        cruncher_main, fetcher_main, ledger_main, ledger_main, reporter_main,
    };
    for (int i = 0; i < NWORKERS; i++) {
        __atomic_store_n(&running[i], 1, __ATOMIC_RELAXED);
        start(&workers[i], worker_names[i], mains[i], (void *)(long)i);
    }
    pthread_mutex_lock(&ready_mu);
    while (not_ready > 0)
        pthread_cond_wait(&ready_cv, &ready_mu);
    pthread_mutex_unlock(&ready_mu);
    note("pid %d, serving http://127.0.0.1:%d/", (int)getpid(), http_port);

    for (;;) {
        join_finished_workers();
        usleep(100 * 1000);
    }
}
