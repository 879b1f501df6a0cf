/* A program started WITHOUT the shim, for killshim-inject --attach
 * (tests/e2e/attach_test). One scenario per argument; each prints "ready"
 * once its threads are where the test wants them.
 *
 *   workers  main reads commands on stdin; a CPU loop, a reader of an
 *            internal pipe, a condition waiter and a heartbeat run beside it.
 *            Commands: beat (prints the heartbeat count), wake (writes the
 *            internal pipe), signal (signals the condition), spawn (a new
 *            sleeping thread, after the attach: prints "spawned tid=N"), quit.
 *   sleep    main sleeps 5 s in nanosleep (the only thread: the one an
 *            attach borrows) and prints "slept SECONDS".
 *   pipe     main blocks in read(stdin) and prints "got LINE".
 *   vector   main fills ymm0-15 (xmm0-15 without AVX), r12-r15 and rbx with
 *            patterns, blocks in a raw read(stdin), then checks them all:
 *            "regs ok" or "regs CHANGED ...".
 *   seccomp  installs a seccomp filter that allows everything, then reads stdin.
 *   slowload LIB  a thread dlopens LIB (whose constructor takes 3 s, holding the
 *            loader's lock); main reads stdin as pipe does, joins it, reads again.
 *   traced   as pipe (the test traces it first). */
#include <dlfcn.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void say(const char *fmt, long v)
{
    printf(fmt, v);
    putchar('\n');
    fflush(stdout);
}

/* ---- workers ------------------------------------------------------------ */

static int wake_pipe[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int signalled;
static volatile unsigned long beats, spins;

static void *spinner(void *arg)
{
    (void)arg;
    for (;;)
        spins++;
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    char buf[64];
    ssize_t n = read(wake_pipe[0], buf, sizeof buf);
    say("reader got %ld", (long)n);
    return NULL;
}

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    while (!signalled)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    say("waiter woke %ld", 1);
    return NULL;
}

static void *heartbeat(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) != 0) {}
        __atomic_add_fetch(&beats, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *late_sleeper(void *arg)
{
    (void)arg;
    say("spawned tid=%ld", (long)syscall(SYS_gettid));
    for (;;)
        sleep(100);
    return NULL;
}

/* Detached: the reader and the waiter end, and nobody joins them. */
static void start_detached(void *(*fn)(void *))
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, fn, NULL) != 0)
        exit(1);
    pthread_attr_destroy(&a);
}

static void workers(void)
{
    if (pipe(wake_pipe) != 0)
        exit(1);
    start_detached(spinner);
    start_detached(reader);
    start_detached(waiter);
    start_detached(heartbeat);
    say("ready %ld", 5);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "beat", 4) == 0) {
            say("beats %ld", (long)__atomic_load_n(&beats, __ATOMIC_RELAXED));
        } else if (strncmp(line, "wake", 4) == 0) {
            if (write(wake_pipe[1], "x", 1) != 1)
                say("write failed %ld", 0);
        } else if (strncmp(line, "signal", 6) == 0) {
            pthread_mutex_lock(&mu);
            signalled = 1;
            pthread_cond_signal(&cv);
            pthread_mutex_unlock(&mu);
        } else if (strncmp(line, "spawn", 5) == 0) {
            start_detached(late_sleeper);
        } else if (strncmp(line, "quit", 4) == 0) {
            exit(0);
        }
    }
}

/* ---- one-thread scenarios ----------------------------------------------- */

static void sleep5(void)
{
    say("ready %ld", 1);
    double t0 = now_s();
    struct timespec ts = {5, 0};
    int r = nanosleep(&ts, NULL);
    printf("slept %.3f r=%d\n", now_s() - t0, r);
    fflush(stdout);
}

static void read_line(void)
{
    char buf[128];
    ssize_t n = read(0, buf, sizeof buf - 1);
    if (n < 0)
        n = 0;
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    printf("got %s\n", buf);
    fflush(stdout);
}

#define KS_VREGS 16
/* One block, one base register: the asm below leaves the compiler few
 * registers of its own. Offsets: pat 0, got 512, gpr 1024, the byte read 1064. */
static struct {
    unsigned char pat[KS_VREGS * 32];
    unsigned char got[KS_VREGS * 32];
    uint64_t gpr[5];
    char c;
} io __attribute__((aligned(32)));
_Static_assert(__builtin_offsetof(__typeof__(io), gpr) == 1024, "asm offsets");
_Static_assert(__builtin_offsetof(__typeof__(io), c) == 1064, "asm offsets");

/* The patterns in, a raw read(0) that blocks until the test writes, the
 * registers out. Only rax, rcx and r11 may change across a syscall. */
static long vector_read_avx(void)
{
    long r;
    __asm__ volatile(
            "vmovdqu 0(%[m]), %%ymm0\n"
            "vmovdqu 32(%[m]), %%ymm1\n"
            "vmovdqu 64(%[m]), %%ymm2\n"
            "vmovdqu 96(%[m]), %%ymm3\n"
            "vmovdqu 128(%[m]), %%ymm4\n"
            "vmovdqu 160(%[m]), %%ymm5\n"
            "vmovdqu 192(%[m]), %%ymm6\n"
            "vmovdqu 224(%[m]), %%ymm7\n"
            "vmovdqu 256(%[m]), %%ymm8\n"
            "vmovdqu 288(%[m]), %%ymm9\n"
            "vmovdqu 320(%[m]), %%ymm10\n"
            "vmovdqu 352(%[m]), %%ymm11\n"
            "vmovdqu 384(%[m]), %%ymm12\n"
            "vmovdqu 416(%[m]), %%ymm13\n"
            "vmovdqu 448(%[m]), %%ymm14\n"
            "vmovdqu 480(%[m]), %%ymm15\n"
            "movabs $0x1111222233334444, %%r12\n movabs $0x5555666677778888, %%r13\n"
            "movabs $0x99990000aaaabbbb, %%r14\n movabs $0xccccddddeeeeffff, %%r15\n"
            "movabs $0x0123456789abcdef, %%rbx\n"
            "xor %%edi, %%edi\n lea 1064(%[m]), %%rsi\n mov $1, %%edx\n xor %%eax, %%eax\n syscall\n"
            "vmovdqu %%ymm0, 512(%[m])\n"
            "vmovdqu %%ymm1, 544(%[m])\n"
            "vmovdqu %%ymm2, 576(%[m])\n"
            "vmovdqu %%ymm3, 608(%[m])\n"
            "vmovdqu %%ymm4, 640(%[m])\n"
            "vmovdqu %%ymm5, 672(%[m])\n"
            "vmovdqu %%ymm6, 704(%[m])\n"
            "vmovdqu %%ymm7, 736(%[m])\n"
            "vmovdqu %%ymm8, 768(%[m])\n"
            "vmovdqu %%ymm9, 800(%[m])\n"
            "vmovdqu %%ymm10, 832(%[m])\n"
            "vmovdqu %%ymm11, 864(%[m])\n"
            "vmovdqu %%ymm12, 896(%[m])\n"
            "vmovdqu %%ymm13, 928(%[m])\n"
            "vmovdqu %%ymm14, 960(%[m])\n"
            "vmovdqu %%ymm15, 992(%[m])\n"
            "mov %%r12, 1024(%[m])\n mov %%r13, 1032(%[m])\n mov %%r14, 1040(%[m])\n"
            "mov %%r15, 1048(%[m])\n mov %%rbx, 1056(%[m])\n" "vzeroupper\n"
            : "=&a"(r)
            : [m] "r"(&io)
            : "rcx", "r11", "rdi", "rsi", "rdx", "r12", "r13", "r14", "r15", "rbx", "memory",
              "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
              "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return r;
}

static long vector_read_sse(void)
{
    long r;
    __asm__ volatile(
            "movdqu 0(%[m]), %%xmm0\n"
            "movdqu 32(%[m]), %%xmm1\n"
            "movdqu 64(%[m]), %%xmm2\n"
            "movdqu 96(%[m]), %%xmm3\n"
            "movdqu 128(%[m]), %%xmm4\n"
            "movdqu 160(%[m]), %%xmm5\n"
            "movdqu 192(%[m]), %%xmm6\n"
            "movdqu 224(%[m]), %%xmm7\n"
            "movdqu 256(%[m]), %%xmm8\n"
            "movdqu 288(%[m]), %%xmm9\n"
            "movdqu 320(%[m]), %%xmm10\n"
            "movdqu 352(%[m]), %%xmm11\n"
            "movdqu 384(%[m]), %%xmm12\n"
            "movdqu 416(%[m]), %%xmm13\n"
            "movdqu 448(%[m]), %%xmm14\n"
            "movdqu 480(%[m]), %%xmm15\n"
            "movabs $0x1111222233334444, %%r12\n movabs $0x5555666677778888, %%r13\n"
            "movabs $0x99990000aaaabbbb, %%r14\n movabs $0xccccddddeeeeffff, %%r15\n"
            "movabs $0x0123456789abcdef, %%rbx\n"
            "xor %%edi, %%edi\n lea 1064(%[m]), %%rsi\n mov $1, %%edx\n xor %%eax, %%eax\n syscall\n"
            "movdqu %%xmm0, 512(%[m])\n"
            "movdqu %%xmm1, 544(%[m])\n"
            "movdqu %%xmm2, 576(%[m])\n"
            "movdqu %%xmm3, 608(%[m])\n"
            "movdqu %%xmm4, 640(%[m])\n"
            "movdqu %%xmm5, 672(%[m])\n"
            "movdqu %%xmm6, 704(%[m])\n"
            "movdqu %%xmm7, 736(%[m])\n"
            "movdqu %%xmm8, 768(%[m])\n"
            "movdqu %%xmm9, 800(%[m])\n"
            "movdqu %%xmm10, 832(%[m])\n"
            "movdqu %%xmm11, 864(%[m])\n"
            "movdqu %%xmm12, 896(%[m])\n"
            "movdqu %%xmm13, 928(%[m])\n"
            "movdqu %%xmm14, 960(%[m])\n"
            "movdqu %%xmm15, 992(%[m])\n"
            "mov %%r12, 1024(%[m])\n mov %%r13, 1032(%[m])\n mov %%r14, 1040(%[m])\n"
            "mov %%r15, 1048(%[m])\n mov %%rbx, 1056(%[m])\n"
            : "=&a"(r)
            : [m] "r"(&io)
            : "rcx", "r11", "rdi", "rsi", "rdx", "r12", "r13", "r14", "r15", "rbx", "memory",
              "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
              "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    return r;
}

static void vector(void)
{
    int avx = __builtin_cpu_supports("avx") != 0;
    for (size_t i = 0; i < sizeof io.pat; i++)
        io.pat[i] = (unsigned char)(i * 7 + 3);
    static const uint64_t want[5] = {0x1111222233334444ull, 0x5555666677778888ull,
                                     0x99990000aaaabbbbull, 0xccccddddeeeeffffull,
                                     0x0123456789abcdefull};
    say("ready %ld", avx);
    long r = avx ? vector_read_avx() : vector_read_sse();
    int width = avx ? 32 : 16, bad = -1;
    for (int v = 0; v < KS_VREGS && bad < 0; v++)
        if (memcmp(io.pat + v * 32, io.got + v * 32, (size_t)width) != 0)
            bad = v;
    int badg = -1;
    for (int i = 0; i < 5 && badg < 0; i++)
        if (io.gpr[i] != want[i])
            badg = i;
    if (r != 1 || bad >= 0 || badg >= 0)
        printf("regs CHANGED read=%ld vreg=%d gpr=%d\n", r, bad, badg);
    else
        printf("regs ok width=%d\n", width);
    fflush(stdout);
}

static void seccomp_allow_all(void)
{
    struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {1, f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        say("seccomp failed %ld", 0);
        exit(1);
    }
}

static void *loader(void *lib)
{
    if (!dlopen(lib, RTLD_NOW))
        say("dlopen failed %ld", 0);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *s = argc > 1 ? argv[1] : "workers";
    if (strcmp(s, "workers") == 0) {
        workers();
    } else if (strcmp(s, "sleep") == 0) {
        sleep5();
        read_line();
    } else if (strcmp(s, "vector") == 0) {
        vector();
    } else if (strcmp(s, "slowload") == 0 && argc > 2) {
        pthread_t t;
        if (pthread_create(&t, NULL, loader, argv[2]) != 0)
            return 1;
        read_line();
        pthread_join(t, NULL);
        read_line();
    } else {
        if (strcmp(s, "seccomp") == 0)
            seccomp_allow_all();
        say("ready %ld", 1);
        read_line();
    }
    return 0;
}
