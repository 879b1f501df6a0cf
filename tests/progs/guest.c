/* A program that looks at its own process every way a program can, to prove
 * the shim a guest it never notices: how the process ends when its last
 * thread does, what its signals reach, namespaces that need a lone thread,
 * its ids, its registers across the shim's doorbell. Knows nothing of
 * killshim. stdout: "ready pid=P", then one line per command.
 * stdin commands (read by main, or after mainexit by the worker):
 *   threads N       N idle workers                      -> "threads N"
 *   mainexit        a worker takes the commands over,
 *                   main calls pthread_exit             -> "mainexit"
 *   return          the reading thread returns           (atexit: "atexit ran")
 *   forkret         a worker forks; the child's only thread starts and joins
 *                   a thread, then returns from its start routine
 *                                                      -> "forkret status=S|hung"
 *   forkread        fork; the child blocks reading a pipe -> "forkread child=C"
 *   feed TEXT       writes TEXT to that pipe; the child says "child read TEXT"
 *   forkwork        fork; the child starts a worker blocked in read() and
 *                   waits in pause()                   -> "forkwork child=C worker=T"
 *   spin MS         main computes (SSE and AVX state live) for MS ms, with
 *                   no system call                     -> "spinning", "spun consistent=1 errno=1234"
 *   syscalls MS     main calls syscall(SYS_getppid) and syscall(SYS_getrandom)
 *                   in a loop for MS ms (the process is in the kernel or in
 *                   libc's stub nearly all the time)
 *                                                      -> "syscalling", "syscalled ok=1"
 *   unshare         unshare(CLONE_NEWUSER)               -> "unshare ok|failed: E"
 *   setns PATH      setns(open(PATH), 0)                 -> "setns ok|failed: E"
 *   alarm           three SIGALRMs from an interval timer, in sigsuspend -> "alarm 3"
 *   sigchld         a child exits 7, seen in sigsuspend  -> "sigchld 7"
 *   sigwait         SIGUSR2 blocked, sigwait              -> "waiting", "sigwait 12"
 *   signalfd        SIGWINCH blocked, read from a signalfd -> "waiting", "signalfd 28"
 *   ids             umask, cwd, RLIMIT_NOFILE, the next fd -> "ids ..."
 *   quit */
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void *idle(void *arg)
{
    for (;;)
        pause();
    return arg;
}

static void atexit_says(void) { say("atexit ran"); }

static void *empty(void *arg) { return arg; }

/* The child's only thread: a thread of its own (so the shim serves in the
 * child, and its thread exists there), then the return that must end it. */
static void *fork_and_return(void *arg)
{
    (void)arg;
    pid_t c = fork();
    if (c == 0) {
        pthread_t t;
        pthread_create(&t, NULL, empty, NULL);
        pthread_join(t, NULL);
        return NULL;
    }
    int st = 0;
    for (int i = 0; i < 500; i++) {
        if (waitpid(c, &st, WNOHANG) == c) {
            say("forkret status=%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
            return NULL;
        }
        usleep(10000);
    }
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    say("forkret status=hung");
    return NULL;
}

/* ---- spin: the doorbell may interrupt this anywhere ----------------------- */

static long long spin_end_ns;

/* CLOCK_MONOTONIC through the vDSO: no system call. */
static int spin_over(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec >= spin_end_ns;
}

/* Keeps an integer sum, a double sum in SSE registers and eight float sums
 * in an AVX register; at the end all must agree. A register the doorbell's
 * trampoline failed to restore shows as a mismatch. */
__attribute__((noinline, target("avx"))) static void guest_spin(void)
{
    errno = 1234;
    long n = 0, isum = 0;
    double dsum = 0;
    __m256 v = _mm256_setzero_ps();
    const __m256 one = _mm256_set1_ps(1.0f);
    while (!spin_over()) {
        for (int k = 0; k < 1000; k++) {
            long x = (n + k) & 7;
            isum += x;
            dsum += (double)x;
            v = _mm256_add_ps(v, one);
            v = _mm256_sub_ps(v, one);
            v = _mm256_add_ps(v, _mm256_set1_ps((float)x));
            v = _mm256_sub_ps(v, _mm256_set1_ps((float)x));
        }
        n += 1000;
    }
    float out[8];
    _mm256_storeu_ps(out, v);
    int ok = dsum == (double)isum;
    for (int i = 0; i < 8; i++)
        ok &= out[i] == 0.0f;
    say("spun consistent=%d errno=%d", ok, errno);
}

/* The same without AVX, for a CPU that has none. */
__attribute__((noinline)) static void guest_spin_sse(void)
{
    errno = 1234;
    long n = 0, isum = 0;
    double dsum = 0;
    while (!spin_over()) {
        for (int k = 0; k < 1000; k++) {
            long x = (n + k) & 7;
            isum += x;
            dsum += (double)x;
        }
        n += 1000;
    }
    say("spun consistent=%d errno=%d", dsum == (double)isum, errno);
}

/* A loop of system calls through libc's stubs, as a futex or I/O stressor
 * runs: a signal is delivered as a call returns, at the instruction after
 * libc's syscall instruction. */
__attribute__((noinline)) static void guest_syscalls(void)
{
    char buf[256];
    pid_t parent = getppid();
    int ok = 1;
    while (!spin_over()) {
        ok &= syscall(SYS_getppid) == parent;
        /* Most of the time in the kernel (up to 256 bytes are never cut
         * short by a signal): a signal nearly always finds the thread at
         * the stub's syscall instruction. */
        for (int i = 0; i < 64; i++)
            ok &= syscall(SYS_getrandom, buf, sizeof buf, 0) == (long)sizeof buf;
    }
    say("syscalled ok=%d", ok);
}

/* ---- signals ------------------------------------------------------------- */

static volatile sig_atomic_t alarms, chld;
static void on_alarm(int s) { (void)s; alarms++; }
static void on_chld(int s) { (void)s; chld = 1; }

static void alarm_cmd(void)
{
    signal(SIGALRM, on_alarm);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct itimerval it = {{0, 20000}, {0, 20000}};
    alarms = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    while (alarms < 3)
        sigsuspend(&old);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    say("alarm %d", (int)alarms);
}

static void sigchld_cmd(void)
{
    signal(SIGCHLD, on_chld);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    chld = 0;
    pid_t c = fork();
    if (c == 0)
        _exit(7);
    while (!chld)
        sigsuspend(&old);
    int st = 0;
    waitpid(c, &st, 0);
    sigprocmask(SIG_SETMASK, &old, NULL);
    signal(SIGCHLD, SIG_DFL);
    say("sigchld %d", WEXITSTATUS(st));
}

static void sigwait_cmd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    say("waiting");
    int sig = 0;
    sigwait(&set, &sig);
    say("sigwait %d", sig);
}

static void signalfd_cmd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    say("waiting");
    struct signalfd_siginfo si;
    ssize_t r = read(fd, &si, sizeof si);
    close(fd);
    say("signalfd %d", r == (ssize_t)sizeof si ? (int)si.ssi_signo : -1);
}

/* ---- the rest ------------------------------------------------------------ */

static void ids_cmd(void)
{
    mode_t m = umask(022);
    umask(m);
    char cwd[512];
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    say("ids umask=%03o cwd=%s nofile=%llu fd=%d", (unsigned)m, getcwd(cwd, sizeof cwd) ? cwd : "?",
        (unsigned long long)rl.rlim_cur, fd);
    close(fd);
}

static int feed_fd = -1;

static void forkread_cmd(void)
{
    int p[2];
    if (pipe(p) != 0) {
        say("forkread failed: %s", strerror(errno));
        return;
    }
    pid_t c = fork();
    if (c == 0) {
        close(p[1]);
        char buf[128];
        ssize_t r = read(p[0], buf, sizeof buf - 1);
        buf[r > 0 ? r : 0] = '\0';
        say("child read %s", buf);
        _exit(0);
    }
    close(p[0]);
    feed_fd = p[1];
    say("forkread child=%d", c);
}

static int work_pipe[2];
static volatile pid_t work_tid;

static void *child_worker(void *arg)
{
    (void)arg;
    work_tid = gettid();
    char c;
    ssize_t r = read(work_pipe[0], &c, 1);   /* a cancellation point, never fed */
    (void)r;
    return NULL;
}

static void forkwork_cmd(void)
{
    if (pipe(work_pipe) != 0) {
        say("forkwork failed: %s", strerror(errno));
        return;
    }
    int report[2];
    if (pipe(report) != 0) {
        say("forkwork failed: %s", strerror(errno));
        return;
    }
    pid_t c = fork();
    if (c == 0) {
        pthread_t t;
        pthread_create(&t, NULL, child_worker, NULL);
        while (!work_tid)
            usleep(1000);
        pid_t tid = work_tid;
        ssize_t w = write(report[1], &tid, sizeof tid);
        (void)w;
        for (;;)
            pause();
    }
    close(work_pipe[0]);
    close(work_pipe[1]);
    pid_t tid = 0;
    ssize_t r = read(report[0], &tid, sizeof tid);
    close(report[0]);
    close(report[1]);
    say("forkwork child=%d worker=%d", c, r == (ssize_t)sizeof tid ? (int)tid : -1);
}

static void *commands(void *arg);

static int command(const char *line, int on_main)
{
    int n = 0;
    char path[256];
    if (sscanf(line, "threads %d", &n) == 1) {
        for (int i = 0; i < n; i++) {
            pthread_t t;
            pthread_create(&t, NULL, idle, NULL);
        }
        say("threads %d", n);
    } else if (strcmp(line, "mainexit\n") == 0 && on_main) {
        pthread_t t;
        pthread_create(&t, NULL, commands, NULL);
        say("mainexit");
        pthread_exit(NULL);
    } else if (strcmp(line, "forkret\n") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, fork_and_return, NULL);
        pthread_join(t, NULL);
    } else if (strcmp(line, "forkread\n") == 0) {
        forkread_cmd();
    } else if (strcmp(line, "forkwork\n") == 0) {
        forkwork_cmd();
    } else if (strncmp(line, "feed ", 5) == 0) {
        ssize_t w = write(feed_fd, line + 5, strcspn(line + 5, "\n"));
        (void)w;
    } else if (sscanf(line, "syscalls %d", &n) == 1) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        spin_end_ns = ts.tv_sec * 1000000000LL + ts.tv_nsec + n * 1000000LL;
        say("syscalling");
        guest_syscalls();
    } else if (sscanf(line, "spin %d", &n) == 1) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        spin_end_ns = ts.tv_sec * 1000000000LL + ts.tv_nsec + n * 1000000LL;
        say("spinning");
        if (__builtin_cpu_supports("avx"))
            guest_spin();
        else
            guest_spin_sse();
    } else if (strcmp(line, "unshare\n") == 0) {
        if (unshare(CLONE_NEWUSER) == 0)
            say("unshare ok");
        else
            say("unshare failed: %s", strerror(errno));
    } else if (sscanf(line, "setns %255s", path) == 1) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && setns(fd, 0) == 0)
            say("setns ok");
        else
            say("setns failed: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
    } else if (strcmp(line, "alarm\n") == 0) {
        alarm_cmd();
    } else if (strcmp(line, "sigchld\n") == 0) {
        sigchld_cmd();
    } else if (strcmp(line, "sigwait\n") == 0) {
        sigwait_cmd();
    } else if (strcmp(line, "signalfd\n") == 0) {
        signalfd_cmd();
    } else if (strcmp(line, "ids\n") == 0) {
        ids_cmd();
    } else if (strcmp(line, "return\n") == 0 || strcmp(line, "quit\n") == 0) {
        return 1;
    }
    return 0;
}

static void *commands(void *arg)
{
    char line[512];
    while (fgets(line, sizeof line, stdin))
        if (command(line, arg != NULL))
            break;
    return NULL;
}

int main(void)
{
    atexit(atexit_says);
    say("ready pid=%d", getpid());
    commands((void *)1);
    return 0;
}
