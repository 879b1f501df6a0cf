#include <errno.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ks.h"
#include "shim/common/procfs.h"

extern char **environ;

/* getenv's scan, in the shim: the constructor reads its variables with it,
 * so that starting does not bind getenv and strcmp lazily and fault in
 * libc's code page that holds getenv, in every exec'd child (docs/bench.md).
 * Read only on the main thread before main, and by control: the program's
 * setenv may replace the array meanwhile, as it may under getenv. */
KS_START_PATH const char *ks_env(const char *name)
{
    for (char **e = environ; e && *e; e++) {
        const char *a = *e, *b = name;
        while (*b && *a == *b) {
            a++;
            b++;
        }
        if (!*b && *a == '=')
            return a + 1;
    }
    return NULL;
}

KS_START_PATH int ks_env_on(const char *name)
{
    const char *v = ks_env(name);
    return v && *v && !(v[0] == '0' && !v[1]);
}

KS_THREAD_PATH KS_SIGSAFE uint64_t ks_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A system call without arguments, inline: these run in every fork child
 * (ks_registry_reset_after_fork), where each code page touched for the
 * first time is a page fault (fork maps no file-backed page in the child). */
static KS_SIGSAFE long ks_syscall0(long nr)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "0"(nr) : "rcx", "r11", "memory");
    return ret;
}

/* When the process started, on CLOCK_MONOTONIC: /proc's start time of the
 * main thread (clock ticks since boot: 10 ms steps) taken from the uptime.
 * The main thread's registration time, which this stands for, was a
 * system call in every process at start (registry.c). */
uint64_t ks_process_started_ns(void)
{
    struct ks_taskstat st;
    unsigned long long up = ks_uptime_ms();
    if (!up || ks_read_task_stat(0, ks_getpid(), &st) != 0)
        return 0;
    uint64_t age_ns = ks_age_ms(st.starttime, sysconf(_SC_CLK_TCK), up) * 1000000ull;
    uint64_t now = ks_now_ns();
    return now > age_ns ? now - age_ns : 1;
}

KS_FORK_PATH KS_SIGSAFE pid_t ks_gettid(void) { return (pid_t)ks_syscall0(SYS_gettid); }

KS_FORK_PATH KS_SIGSAFE pid_t ks_getpid(void) { return (pid_t)ks_syscall0(SYS_getpid); }

KS_SIGSAFE void ks_sched_yield(void) { (void)ks_syscall0(SYS_sched_yield); }

void ks_futex_wake(int *word, int n)
{
    (void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void ks_futex_wait(int *word, int val)
{
    (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

int ks_futex_wait_set(int *word, uint64_t deadline)
{
    while (!__atomic_load_n(word, __ATOMIC_ACQUIRE)) {
        uint64_t now = ks_now_ns();
        if (now >= deadline)
            return 0;
        struct timespec left = {(time_t)((deadline - now) / 1000000000u),
                                (long)((deadline - now) % 1000000000u)};
        /* EAGAIN (set meanwhile), EINTR, ETIMEDOUT: the loop decides. */
        (void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, &left, NULL, 0);
    }
    return 1;
}

/* A map that cannot be made warns once, however often it is asked for. */
void *ks_lazy_map(struct ks_lazy *l)
{
    void *p = ks_lazy_peek(l);
    if (p)   /* made since the caller looked */
        return p;
    void *m = mmap(NULL, l->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        if (!__atomic_exchange_n(&l->warned, 1, __ATOMIC_RELAXED))
            ks_warn("cannot map %zu KiB for %s (%s): the shim goes on without it", l->len >> 10,
                    l->what, strerror(e));
        return NULL;
    }
    if (__atomic_compare_exchange_n(&l->p, &p, m, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return m;
    munmap(m, l->len);   /* another thread's map won: P is it */
    return p;
}

/* See ks.h: 1 (nothing to do) until init.c chooses to register the fork
 * handlers at the first need. */
KS_HOT_DATA int ks_fork_armed = 1;
KS_HOT_DATA void (*ks_fork_arm_fn)(void);

void ks_fork_arm(void)
{
    void (*fn)(void) = ks_fork_arm_fn;
    if (fn)
        fn();
}
