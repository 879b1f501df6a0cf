/* A thread that runs on a small stack of its own, the way Go runs goroutines:
 * the thread has an alternate signal stack of 32 KiB, and every real-time
 * signal's handler, the shim's two numbers included, is installed with
 * SA_ONSTACK (Go's runtime installs all its handlers so, and its goroutine
 * stacks start at 2 KiB). Below the small stack lies a canary region, filled
 * with a pattern, then an inaccessible page: a signal handled on the small
 * stack writes over the canary (what a goroutine's neighbour would suffer).
 * argv: "lib [PATH]": the program installs no handler itself (a C program
 * with a Go c-shared library: gort_lib.c stands in for it, preloaded, or
 * loaded from PATH with dlopen before the thread starts). "rust": as a
 * Rust program, SIGSEGV's handler with SA_ONSTACK and alternate stacks of
 * 8 KiB, too small to unwind on; the thread spins on its own stack.
 * stdout: "ready tid=T" (T runs small_spin on the small stack).
 * stdin:
 *   "check"     prints "canary intact" or "canary overwritten N bytes"
 *   "progress"  prints "progress spin=N"
 *   "quit"      stops the thread, joins it, exits 0 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SMALL (4 * 1024)     /* the small stack: two goroutine minimums */
#define CANARY (64 * 1024)   /* more than a dump's 6.5 KiB, many times */
#define PATTERN 0x5a

static unsigned char *region;   /* guard page, canary, small stack */
static atomic_int stop;
static atomic_long spins;
static atomic_int tid;
static long page;
static int lib;    /* "lib" mode: no handler of the program's */
static int rust;   /* "rust" mode */

static void on_rt(int s, siginfo_t *si, void *uc)
{
    (void)s;
    (void)si;
    (void)uc;
}

/* The whole life on the small stack: a leaf loop that touches only globals. */
__attribute__((noinline, no_sanitize("address", "thread", "undefined"))) void small_spin(void)
{
    while (!atomic_load_explicit(&stop, memory_order_relaxed))
        atomic_fetch_add_explicit(&spins, 1, memory_order_relaxed);
}

/* Calls small_spin with rsp at TOP, and comes back to the thread's stack. */
__attribute__((noinline)) static void run_on(void *top)
{
    __asm__ volatile(
        "mov %%rsp, %%rbx\n\t"
        "mov %0, %%rsp\n\t"
        "call small_spin\n\t"
        "mov %%rbx, %%rsp\n\t"
        :
        : "r"(top)
        : "rbx", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc");
}

static void *worker(void *a)
{
    (void)a;
    size_t alt = rust ? 8 * 1024 : 32 * 1024;
    stack_t ss = {.ss_sp = malloc(alt), .ss_size = alt};
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0) {
        perror("sigaltstack");
        exit(1);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigfillset(&sa.sa_mask);
    for (int s = SIGRTMIN; s <= SIGRTMAX && !lib && !rust; s++)
        sigaction(s, &sa, NULL);
    if (rust)
        sigaction(SIGSEGV, &sa, NULL);
    atomic_store(&tid, gettid());
    if (rust)
        small_spin();
    else
        run_on(region + page + CANARY + SMALL);
    /* Back on the thread's own stack: the alternate stack may go. */
    stack_t off = {.ss_flags = SS_DISABLE};
    sigaltstack(&off, NULL);
    free(ss.ss_sp);
    return NULL;
}

static size_t canary_damage(void)
{
    size_t bad = 0;
    for (size_t i = 0; i < CANARY; i++)
        bad += region[page + i] != PATTERN;
    return bad;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    lib = argc > 1 && strcmp(argv[1], "lib") == 0;
    rust = argc > 1 && strcmp(argv[1], "rust") == 0;
    if (lib && argc > 2 && !dlopen(argv[2], RTLD_NOW)) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    page = sysconf(_SC_PAGESIZE);
    region = mmap(NULL, page + CANARY + SMALL, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || mprotect(region, page, PROT_NONE) != 0) {
        perror("mmap");
        return 1;
    }
    memset(region + page, PATTERN, CANARY);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    while (!atomic_load(&tid) || !atomic_load(&spins))
        usleep(1000);
    printf("ready tid=%d\n", atomic_load(&tid));
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "check", 5) == 0) {
            size_t bad = canary_damage();
            if (bad)
                printf("canary overwritten %zu bytes\n", bad);
            else
                printf("canary intact\n");
        } else if (strncmp(line, "progress", 8) == 0) {
            printf("progress spin=%ld\n", atomic_load(&spins));
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    munmap(region, page + CANARY + SMALL);
    return 0;
}
