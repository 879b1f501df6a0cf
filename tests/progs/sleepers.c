/* Threads that do nothing but short timed waits, to be dumped while they do:
 * each of THREADS threads (default 8) makes ROUNDS (default 300) rounds of
 * poll 4 ms, nanosleep 3 ms, usleep 2 ms, epoll_wait 4 ms, select 3 ms,
 * pselect 2 ms (the waits on an empty pipe), then epoll_pwait, sigtimedwait,
 * sem_timedwait and semtimedop of 2 ms each (10 calls a round), and
 * counts every call that returned early or failed. stdout: "ready", then "sleepers early=E
 * errors=F calls=C" when all are done. Exits 0 after "quit". */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <time.h>
#include <unistd.h>

static int rounds = 300, empty[2], semid = -1;
static atomic_long early, errors, calls;
/* Which calls returned early, for the report (in the order of a round). */
static const char *const kinds[] = {"poll", "nanosleep", "usleep", "epoll_wait", "select",
                                    "pselect", "epoll_pwait", "sigtimedwait", "sem_timedwait",
                                    "semtimedop"};
static atomic_long early_kind[sizeof kinds / sizeof kinds[0]];

static long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000L;
}

/* RC as the call returned, WANT_RC what a full wait returns; MS how long it
 * should have lasted at least. */
static void check(int kind, long t0, long ms, int rc, int want_rc)
{
    atomic_fetch_add(&calls, 1);
    if (rc != want_rc) {
        atomic_fetch_add(&errors, 1);
    } else if (now_us() - t0 < ms * 1000) {
        atomic_fetch_add(&early, 1);
        atomic_fetch_add(&early_kind[kind], 1);
    }
}

void *sleeper_main(void *arg)
{
    (void)arg;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, empty[0], &ev);
    sigset_t winch;   /* blocked here, never sent: sigtimedwait times out */
    sigemptyset(&winch);
    sigaddset(&winch, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &winch, NULL);
    sem_t sem;        /* never posted */
    sem_init(&sem, 0, 0);
    for (int i = 0; i < rounds; i++) {
        struct pollfd p = {empty[0], POLLIN, 0};
        long t0 = now_us();
        check(0, t0, 4, poll(&p, 1, 4), 0);
        struct timespec ts = {0, 3000000};
        t0 = now_us();
        check(1, t0, 3, nanosleep(&ts, NULL), 0);
        t0 = now_us();
        check(2, t0, 2, usleep(2000), 0);
        t0 = now_us();
        check(3, t0, 4, epoll_wait(ep, &ev, 1, 4), 0);
        fd_set r;
        FD_ZERO(&r);
        FD_SET(empty[0], &r);
        struct timeval tv = {0, 3000};
        t0 = now_us();
        check(4, t0, 3, select(empty[0] + 1, &r, NULL, NULL, &tv), 0);
        FD_ZERO(&r);
        FD_SET(empty[0], &r);
        struct timespec pts = {0, 2000000};
        t0 = now_us();
        check(5, t0, 2, pselect(empty[0] + 1, &r, NULL, NULL, &pts, NULL), 0);
        t0 = now_us();
        check(6, t0, 2, epoll_pwait(ep, &ev, 1, 2, NULL), 0);
        struct timespec two = {0, 2000000};
        t0 = now_us();
        check(7, t0, 2, sigtimedwait(&winch, NULL, &two) == -1 && errno == EAGAIN ? 0 : -1, 0);
        /* t0 before the deadline is computed: taken after, a thread
         * preempted between the two (TSan, a loaded machine) would see a
         * full wait as an early one. */
        t0 = now_us();
        struct timespec abs;
        clock_gettime(CLOCK_REALTIME, &abs);
        abs.tv_nsec += 2000000;
        if (abs.tv_nsec >= 1000000000L) {
            abs.tv_sec++;
            abs.tv_nsec -= 1000000000L;
        }
        check(8, t0, 2, sem_timedwait(&sem, &abs) == -1 && errno == ETIMEDOUT ? 0 : -1, 0);
        struct sembuf down = {0, -1, 0};
        t0 = now_us();
        check(9, t0, 2, semtimedop(semid, &down, 1, &two) == -1 && errno == EAGAIN ? 0 : -1, 0);
    }
    sem_destroy(&sem);
    close(ep);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 8;
    rounds = argc > 2 ? atoi(argv[2]) : 300;
    semid = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);   /* at 0: semtimedop times out */
    if (pipe(empty) || semid < 0)
        return 1;
    pthread_t *th = calloc((size_t)n, sizeof *th);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, sleeper_main, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    semctl(semid, 0, IPC_RMID);
    printf("sleepers early=%ld errors=%ld calls=%ld early_in=", atomic_load(&early),
           atomic_load(&errors), atomic_load(&calls));
    const char *sep = "";
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (atomic_load(&early_kind[k])) {
            printf("%s%s:%ld", sep, kinds[k], atomic_load(&early_kind[k]));
            sep = ",";
        }
    printf("%s\n", *sep ? "" : "none");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "quit", 4) == 0)
            break;
    free(th);   /* LeakSanitizer checks this program under --config=asan */
    return 0;
}
