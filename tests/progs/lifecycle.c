/* A program that forks, execs, closes the shim's fds and ends in every way a
 * process can, on command. Knows nothing of killshim.
 * stdout: "ready pid=P" (after "fd N kind=K name=X" lines when started with
 * --fds, one per open fd >= 3), then one line per command.
 * stdin commands:
 *   threads N      start N workers that wait          -> "threads N"
 *   fork           fork; the child pauses until killed -> "forked child=C"
 *   forkexec       fork; the child execs /bin/true (no
 *                  LD_PRELOAD)                        -> "forkexec status=S"
 *   forkthread     fork from a worker thread           -> "forked child=C"
 *   forkend        fork; the child starts a thread, joins it, says
 *                  "forkend child=C thread=T" (T: that thread's tid) and
 *                  pauses until killed; the parent says nothing
 *   exec           re-exec itself with --fds
 *   closefrom | closerange | closeloop                 -> "closed"
 *   dup2null       dup2 /dev/null over every socket fd -> "dup2 fds=A,B"
 *   checkfd N      what fd N is now                     -> "fd N kind=K name=X"
 *   clone          a thread made by a raw clone(2)      -> "clone tid=T"
 *   forkheld       fork while a worker holds the loader's list lock (inside
 *                  dl_iterate_phdr's callback); the child calls functions
 *                  the shim hooks that nobody called before, then _exit(0)
 *                                                      -> "forkheld status=S"
 *                  (S -1: the child hung and was killed after 5 s)
 *   firstthread LIB  start one worker; right after pthread_create returns,
 *                  whether a library whose path contains LIB is mapped
 *                                                      -> "firstthread mapped=0|1"
 *   load PATH      dlopen PATH (RTLD_NOW), with the time it took
 *                                                      -> "load ok=0|1 ms=M"
 *   exit C | _exit C | return | threadexit C | segv | quit */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int exit_code = -1;      /* threadexit: the worker that sees it exits */
static int parked;              /* workers waiting on cv: "threads N" answers once all are */

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

void *life_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    parked++;
    pthread_cond_broadcast(&cv);
    while (exit_code < 0)
        pthread_cond_wait(&cv, &mu);
    int c = exit_code;
    pthread_mutex_unlock(&mu);
    exit(c);
}

static void describe_fd(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        say("fd %d kind=closed name=-", fd);
        return;
    }
    if (!S_ISSOCK(st.st_mode)) {
        char link[64], target[256];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        say("fd %d kind=file name=%s", fd, target);
        return;
    }
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (len > off && a.sun_path[0] == '\0')
        say("fd %d kind=socket name=@%.*s", fd, (int)(len - off - 1), a.sun_path + 1);
    else
        say("fd %d kind=socket name=%s", fd, len > off ? a.sun_path : "-");
}

static void report_fds(void)
{
    for (int fd = 3; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            describe_fd(fd);
}

/* 1 if /proc/self/maps names a file whose path contains LIB. */
static int mapped(const char *lib)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, lib) != NULL;
    if (f)
        fclose(f);
    return found;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void child_pause(void)
{
    say("child pid=%d", getpid());
    for (;;)
        pause();
}

static void *say_tid(void *arg)
{
    *(pid_t *)arg = gettid();
    return NULL;
}

static void fork_end(void)
{
    if (fork() != 0)
        return;
    pid_t tid = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, say_tid, &tid) != 0)
        _exit(1);
    pthread_join(t, NULL);
    say("forkend child=%d thread=%d", getpid(), tid);
    for (;;)
        pause();
}

void *fork_from_thread(void *arg)
{
    (void)arg;
    pid_t c = fork();
    if (c == 0)
        child_pause();
    say("forked child=%d", c);
    return NULL;
}

/* forkheld: the worker stays inside dl_iterate_phdr's callback, which holds
 * the loader's list lock (dl_load_write_lock, not reset in a fork child),
 * until main has the child's status. */
static int held_in[2], held_out[2];

static int hold_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)info, (void)size, (void)arg;
    char c = 'h';
    if (write(held_in[1], &c, 1) != 1 || read(held_out[0], &c, 1) != 1)
        return 1;
    return 1;
}

void *hold_loader_lock(void *arg)
{
    (void)arg;
    dl_iterate_phdr(hold_cb, NULL);
    return NULL;
}

/* In the fork child: the first calls of hooked functions (a lookup, if the
 * shim still had to make one, would wait for the lock forever). */
static void __attribute__((noreturn)) first_calls(void)
{
    struct timespec zero = {0, 0};
    struct timeval tv = {0, 0};
    poll(NULL, 0, 0);
    select(0, NULL, NULL, NULL, &tv);
    clock_nanosleep(CLOCK_MONOTONIC, 0, &zero, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigtimedwait(&none, NULL, &zero);
    pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
    if (pthread_rwlock_tryrdlock(&rw) == 0)
        pthread_rwlock_unlock(&rw);
    int ep = epoll_create1(0);
    struct epoll_event ev;
    if (ep >= 0)
        epoll_wait(ep, &ev, 1, 0);
    _exit(0);
}

static void fork_held(void)
{
    pthread_t t;
    char c;
    if (pipe(held_in) != 0 || pipe(held_out) != 0 ||
        pthread_create(&t, NULL, hold_loader_lock, NULL) != 0 || read(held_in[0], &c, 1) != 1) {
        say("forkheld failed: %s", strerror(errno));
        return;
    }
    pid_t child = fork();
    if (child == 0)
        first_calls();
    int st = 0, done = 0;
    for (int i = 0; i < 500 && !done; i++) {   /* 5 s */
        done = waitpid(child, &st, WNOHANG) == child;
        if (!done)
            usleep(10000);
    }
    if (!done) {
        kill(child, SIGKILL);
        waitpid(child, &st, 0);
    }
    if (write(held_out[1], "x", 1) != 1)
        say("forkheld failed: %s", strerror(errno));
    pthread_join(t, NULL);
    say("forkheld status=%d", done && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static char clone_stack[64 * 1024] __attribute__((aligned(16)));
static volatile int clone_tid;

/* A thread libc does not know: raw syscalls only (it shares the creator's
 * TLS pointer, so errno and anything thread-local are off limits, and so is
 * a sanitizer's per-thread state: no instrumentation). */
__attribute__((no_sanitize("thread")))
static int clone_main(void *arg)
{
    (void)arg;
    clone_tid = (int)syscall(SYS_gettid);
    struct timespec ts = {1, 0};
    for (;;)
        syscall(SYS_nanosleep, &ts, NULL);
    return 0;
}

/* close_loop and dup2null are named in lifecycle_test's ThreadSanitizer
 * suppressions: they close or replace fds other threads use, on purpose. */
static void __attribute__((noinline)) close_loop(void)
{
    for (int fd = 3; fd < 65536; fd++)
        close(fd);
}

static void __attribute__((noinline)) dup2null(void)
{
    int null = open("/dev/null", O_RDWR);
    char list[256] = "";
    for (int fd = 3; fd < 1024; fd++) {
        struct stat st;
        if (fd == null || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            continue;
        dup2(null, fd);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", *list ? "," : "", fd);
    }
    close(null);
    say("dup2 fds=%s", list);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--fds") == 0)
        report_fds();
    say("ready pid=%d", getpid());
    char line[256];
    int want = 0;
    while (fgets(line, sizeof line, stdin)) {
        int n = 0;
        if (sscanf(line, "threads %d", &n) == 1) {
            for (int i = 0; i < n; i++) {
                pthread_t t;
                pthread_create(&t, NULL, life_worker, NULL);
            }
            /* Answer once the workers wait: a fork right after must not
             * find one still starting (under ASan its start allocates, and
             * GCC 12's ASan leaves an allocator lock held at fork locked in
             * the child, where the shim's control thread then allocates). */
            pthread_mutex_lock(&mu);
            want += n;
            while (parked < want)
                pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
            say("threads %d", n);
        } else if (strncmp(line, "firstthread ", 12) == 0) {
            line[strcspn(line, "\n")] = '\0';
            pthread_t t;
            int rc = pthread_create(&t, NULL, life_worker, NULL);
            int m = mapped(line + 12);   /* before anything else runs here */
            say(rc == 0 ? "firstthread mapped=%d" : "firstthread failed", m);
        } else if (strncmp(line, "load ", 5) == 0) {
            line[strcspn(line, "\n")] = '\0';
            long t0 = now_ms();
            void *lib = dlopen(line + 5, RTLD_NOW);
            say("load ok=%d ms=%ld", lib != NULL, now_ms() - t0);
        } else if (strcmp(line, "fork\n") == 0) {
            pid_t c = fork();
            if (c == 0)
                child_pause();
            say("forked child=%d", c);
        } else if (strcmp(line, "forkend\n") == 0) {
            fork_end();
        } else if (strcmp(line, "forkheld\n") == 0) {
            fork_held();
        } else if (strcmp(line, "forkthread\n") == 0) {
            pthread_t t;
            pthread_create(&t, NULL, fork_from_thread, NULL);
            pthread_join(t, NULL);
        } else if (strcmp(line, "exec\n") == 0) {
            char *args[] = {argv[0], "--fds", NULL};
            execv("/proc/self/exe", args);
            say("exec failed: %s", strerror(errno));
        } else if (strcmp(line, "closefrom\n") == 0) {
            closefrom(3);
            say("closed");
        } else if (strcmp(line, "closerange\n") == 0) {
            say(close_range(3, ~0U, 0) == 0 ? "closed" : "close_range failed");
        } else if (strcmp(line, "closeloop\n") == 0) {
            close_loop();
            say("closed");
        } else if (strcmp(line, "dup2null\n") == 0) {
            dup2null();
        } else if (sscanf(line, "checkfd %d", &n) == 1) {
            describe_fd(n);
        } else if (strcmp(line, "clone\n") == 0) {
            int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                        CLONE_SYSVSEM;
            /* libc's clone itself: ThreadSanitizer intercepts clone as a
             * fork (its wrapper's argument lives on this stack frame). */
            typedef int clone_fn(int (*)(void *), void *, int, void *, ...);
            void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
            clone_fn *libc_clone = libc ? (clone_fn *)dlsym(libc, "clone") : NULL;
            if (!libc_clone || libc_clone(clone_main, clone_stack + sizeof clone_stack, flags, NULL) < 0) {
                say("clone failed: %s", strerror(errno));
                continue;
            }
            while (!__atomic_load_n(&clone_tid, __ATOMIC_ACQUIRE))
                usleep(1000);
            say("clone tid=%d", clone_tid);
        } else if (sscanf(line, "exit %d", &n) == 1) {
            exit(n);
        } else if (sscanf(line, "_exit %d", &n) == 1) {
            _exit(n);
        } else if (sscanf(line, "threadexit %d", &n) == 1) {
            pthread_mutex_lock(&mu);
            exit_code = n;
            pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
            for (;;)
                pause();
        } else if (strcmp(line, "segv\n") == 0) {
            struct rlimit no_core = {0, 0};
            setrlimit(RLIMIT_CORE, &no_core);
            raise(SIGSEGV);
        } else if (strcmp(line, "forkexec\n") == 0) {
            pid_t c = fork();
            if (c == 0) {
                /* Without the shim: nothing in the new image tidies up. */
                char *env[] = {"PATH=/bin:/usr/bin", NULL};
                execle("/bin/true", "true", (char *)NULL, env);
                _exit(127);
            }
            int st = 0;
            waitpid(c, &st, 0);
            say("forkexec status=%d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        } else if (strcmp(line, "return\n") == 0 || strcmp(line, "quit\n") == 0) {
            break;
        }
    }
    return 0;
}
