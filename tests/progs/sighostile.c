/* A program hostile to the shim's signals. Knows nothing of killshim; it
 * just happens to use the same real-time signals (SIGRTMAX-3, SIGRTMAX-2),
 * or to block every signal.
 * argv[1] (mode):
 *   handler    sigaction(SA_SIGINFO) handlers on both signals
 *   signal     signal() handlers on both signals
 *   block      every signal blocked (pthread_sigmask and sigprocmask) in
 *              every thread, before any worker starts
 *   rawblock   like block, but worker 0 blocks through the raw syscall
 *   rawaction  a raw rt_sigaction syscall puts the program's handler on
 *              SIGRTMAX-3 over whatever the shim installed (and
 *              sigaction on SIGRTMAX-2)
 *   rawdfl     a raw rt_sigaction syscall resets SIGRTMAX-2 to SIG_DFL (a
 *              signal there would end the process)
 * stdout: "worker I tid=T" per worker (argv[2], default 2), then "ready".
 * stdin: "count" -> "count a=N b=M code=C value=V" (signals seen on
 *        SIGRTMAX-3 and SIGRTMAX-2, si_code and value of the last queued one on a),
 *        "selfsend" (raise, sigqueue and pthread_kill to itself; prints
 *        "selfsend" once sent), "quit". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_WORKERS 16

/* Written by handlers on whichever thread takes the signal (process-directed
 * signals go to any thread), read by main: atomics, not just volatile. */
static int count_a, count_b, last_code, last_value;
#define BUMP(v) __atomic_fetch_add(&(v), 1, __ATOMIC_RELAXED)
#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELAXED)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
static pthread_t workers[MAX_WORKERS];
static int nworkers = 2;
static const char *mode = "handler";
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int started, quitting;

static void on_info(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig == SIGRTMAX - 3) {
        BUMP(count_a);
        /* Process-directed signals may run on two threads at once, in
         * either order: keep what the queued one carried, not the last. */
        if (si->si_code == SI_QUEUE) {
            SET(last_code, si->si_code);
            SET(last_value, si->si_value.sival_int);
        }
    } else {
        BUMP(count_b);
    }
}

static void on_plain(int sig)
{
    if (sig == SIGRTMAX - 3)
        BUMP(count_a);
    else
        BUMP(count_b);
}

/* The kernel's struct for rt_sigaction, as glibc's sigaction would build it. */
struct kernel_sigaction {
    void (*handler)(int, siginfo_t *, void *);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};
extern void restore_rt(void) __asm__("__restore_rt_prog");
__asm__(".text\n__restore_rt_prog:\n movq $15, %rax\n syscall\n");

static void install(void)
{
    if (strcmp(mode, "handler") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_info;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGRTMAX - 3, &sa, NULL);
        sigaction(SIGRTMAX - 2, &sa, NULL);
    } else if (strcmp(mode, "signal") == 0) {
        signal(SIGRTMAX - 3, on_plain);
        signal(SIGRTMAX - 2, on_plain);
    } else if (strcmp(mode, "block") == 0 || strcmp(mode, "rawblock") == 0) {
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    } else if (strcmp(mode, "rawaction") == 0) {
        struct kernel_sigaction ka = {on_info, SA_SIGINFO | SA_RESTART | 0x04000000 /* SA_RESTORER */,
                                      restore_rt, 0};
        syscall(SYS_rt_sigaction, SIGRTMAX - 3, &ka, NULL, 8);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_info;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGRTMAX - 2, &sa, NULL);
    } else if (strcmp(mode, "rawdfl") == 0) {
        struct kernel_sigaction ka = {(void (*)(int, siginfo_t *, void *))SIG_DFL, 0, NULL, 0};
        syscall(SYS_rt_sigaction, SIGRTMAX - 2, &ka, NULL, 8);
    }
}

void *hostile_worker(void *arg)
{
    int i = (int)(long)arg;
    if (i == 0 && strcmp(mode, "rawblock") == 0) {
        unsigned long all = ~0UL;
        syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);
    }
    pthread_mutex_lock(&mu);
    printf("worker %d tid=%d\n", i, gettid());
    fflush(stdout);
    started++;
    pthread_cond_broadcast(&cv);
    while (!quitting)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        mode = argv[1];
    if (argc > 2)
        nworkers = atoi(argv[2]) > MAX_WORKERS ? MAX_WORKERS : atoi(argv[2]);
    install();
    for (int i = 0; i < nworkers; i++)
        pthread_create(&workers[i], NULL, hostile_worker, (void *)(long)i);
    pthread_mutex_lock(&mu);
    while (started < nworkers)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    printf("ready\n");
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        if (strcmp(line, "count\n") == 0) {
            printf("count a=%d b=%d code=%d value=%d\n", GET(count_a), GET(count_b),
                   GET(last_code), GET(last_value));
            fflush(stdout);
        } else if (strcmp(line, "selfsend\n") == 0) {
            union sigval v = {.sival_int = 99};
            raise(SIGRTMAX - 2);
            sigqueue(getpid(), SIGRTMAX - 3, v);
            pthread_kill(workers[0], SIGRTMAX - 2);
            printf("selfsend\n");
            fflush(stdout);
        } else if (strcmp(line, "quit\n") == 0) {
            break;
        }
    }
    pthread_mutex_lock(&mu);
    quitting = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i], NULL);
    return 0;
}
