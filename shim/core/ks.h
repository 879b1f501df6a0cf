/* Internal header of libkillshim: what every shim file shares.
 *
 * Naming: the public API (killshim.h) uses killshim_*; everything internal
 * uses ks_* and has hidden visibility (the library is built with
 * -fvisibility=hidden, so only KS_EXPORT symbols leave the .so). */
#ifndef KS_H
#define KS_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "real.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KS_EXPORT __attribute__((visibility("default")))
#define KS_LIKELY(x) __builtin_expect(!!(x), 1)
#define KS_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Happens-before edges told to ThreadSanitizer directly. The shim's own
 * locks: a thread cancelled inside one of TSan's blocking interceptors
 * (nanosleep, read...) unwinds past the interceptor's bookkeeping, and from
 * then on TSan ignores that thread's lock calls, but its cleanup still takes
 * the registry's and the graveyard's locks. And an edge between two
 * instrumented threads that passes through code built without TSan's
 * instrumentation (SIGCTX_COPTS, shim/defs.bzl), which TSan cannot see. KS_TSAN
 * (.bazelrc, --config=tsan) is defined there too, where __SANITIZE_THREAD__
 * is not. Nothing outside TSan builds. */
#if defined(__SANITIZE_THREAD__) || defined(KS_TSAN)
#include <sanitizer/tsan_interface.h>
#define KS_TSAN_ACQUIRE(addr) __tsan_acquire((void *)(addr))
#define KS_TSAN_RELEASE(addr) __tsan_release((void *)(addr))
#else
#define KS_TSAN_ACQUIRE(addr) ((void)0)
#define KS_TSAN_RELEASE(addr) ((void)0)
#endif
/* A function outside the signal-context libraries (SIGCTX_COPTS,
 * shim/defs.bzl) that the signal handlers call: left out of
 * ThreadSanitizer's instrumentation like theirs. */
#define KS_SIGSAFE __attribute__((no_sanitize("thread")))

/* ---- Real functions: real.h (KS_REAL(name), resolve.c) ----------------- */

/* ---- Logging (log.c) -----------------------------------------------------
 * The shim never writes to stdout. It writes to stderr only when
 * KILLSHIM_DEBUG=1, except ks_warn, which reports a failure that disables
 * part of the shim, once per distinct message site. */
void ks_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ks_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int ks_debug_enabled;

/* ---- Time and small helpers (util.c) ------------------------------------ */
/* Data every process under the shim writes at start (the constructor, the
 * first lookups, the module table's counters): kept together in .data, in
 * the page the loader has already written (it zeroes the end of .data's last
 * page, where .bss begins), so that each does not cost a page fault of its
 * own in every process, exec'd children included (docs/bench.md). Only for
 * small variables: .data must stay within that page. */
#define KS_HOT_DATA __attribute__((section(".data.ks_hot")))

/* What every thread the program creates runs on its way in and out (the
 * pthread_create hook, the start trampoline, registering, the grave):
 * together with the fork path in .text.hot, so that a create+join touches
 * two or three of the shim's code pages, not nine. Between a thread's
 * start and its end the kernel's clone and exit have run, and on a VM each
 * page touched again is likely a TLB miss (a nested page walk) and each
 * line a cache miss: measured, they cost more than the path's 690
 * instructions (docs/bench.md). */
#define KS_THREAD_PATH __attribute__((section(".text.hot.ks_thread")))

/* What a fork child runs: one text section, so that it touches as few
 * code pages as it can (each first touch in a child is a page fault). */
#define KS_FORK_PATH __attribute__((section(".text.hot.ks_fork"), noinline))

/* What every process runs at start (the constructor, the first lookups, the
 * module table): one text section beside the fork path's at the start of
 * .text, whose page the loader reads anyway, so that starting faults in one
 * or two 64 KB windows of the shim's code (the kernel's fault-around) instead
 * of one for each place that code was spread over (docs/bench.md). */
#define KS_START_PATH __attribute__((section(".text.hot.ks_start")))

uint64_t ks_now_ns(void);           /* CLOCK_MONOTONIC */
uint64_t ks_process_started_ns(void);   /* CLOCK_MONOTONIC, from /proc; 0: unknown */
const char *ks_env(const char *name);   /* getenv(NAME), without libc's */
int ks_env_on(const char *name);        /* NAME set, not empty, not "0" */
pid_t ks_gettid(void);

/* strcmp(A, B) == 0, a prefix test and the part after a path's last '/',
 * without libc's: the start path and the loader-side lookups call them
 * before anything is bound (libc's names are interposable: a sanitizer's
 * runtime intercepts them). Inline: they sit in the start's inner loops.
 * Async-signal-safe. */
static inline KS_SIGSAFE int ks_streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static inline KS_SIGSAFE int ks_starts(const char *s, const char *prefix)
{
    while (*prefix && *s == *prefix) {
        s++;
        prefix++;
    }
    return !*prefix;
}

static inline KS_SIGSAFE const char *ks_basename(const char *path)
{
    const char *base = path;
    for (const char *p = path; *p; p++)
        if (*p == '/')
            base = p + 1;
    return base;
}

/* Where an interrupted thread's PC is against x86-64's `syscall`
 * instruction (0f 05). At one: the kernel restarts the call there after a
 * handler (SA_RESTART, a call it restarts). Just after one: the call
 * returned, or was cut short (rax -EINTR). Both read the text around IP,
 * which a signal context's PC always has mapped. */
static inline KS_SIGSAFE int ks_pc_at_syscall(uintptr_t ip)
{
    const uint8_t *p = (const uint8_t *)ip;
    return p[0] == 0x0f && p[1] == 0x05;
}

static inline KS_SIGSAFE int ks_pc_after_syscall(uintptr_t ip)
{
    const uint8_t *p = (const uint8_t *)ip;
    return p[-2] == 0x0f && p[-1] == 0x05;
}

/* The thread a signal interrupted at UC is returning from a system call,
 * or about to make it again (the kernel restarts it there): its pc is just
 * after a `syscall` instruction, or at one, and rcx holds what that
 * instruction left there, the address after it (the kernel's entry saves
 * rcx and the signal frame keeps it). Bytes 0f 05 that merely end another
 * instruction before the pc do not pass: a thread computing in libc's
 * memset matched those by chance (safepoint_first_test, in the sanitizer
 * builds), and rcx is then whatever that code put there. */
static inline KS_SIGSAFE int ks_uc_at_syscall(const ucontext_t *uc)
{
    uintptr_t ip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    uintptr_t cx = (uintptr_t)uc->uc_mcontext.gregs[REG_RCX];
    return (cx == ip && ks_pc_after_syscall(ip)) || (cx == ip + 2 && ks_pc_at_syscall(ip));
}

/* pthread_self(), inline: glibc's thread pointer (%fs:0) is its struct
 * pthread, which begins with the x86-64 TLS ABI's tcbhead_t, whose third
 * word (header.self, %fs:16) is the pointer pthread_self returns. The call
 * was a lazy binding in every process at start, the main thread's
 * registration (docs/bench.md). registry_test compares the two. */
static inline pthread_t ks_pthread_self(void)
{
    pthread_t t;
    __asm__("movq %%fs:16, %0" : "=r"(t));
    return t;
}

/* ---- Signal sets and copies, without libc's ------------------------------
 * glibc's sigfillset, sigdelset, sigaddset and memcpy, inline: the start
 * and the doorbell's handler (which runs before control has bound the
 * shim's imports) use them, and each libc function the start calls is a
 * lazy binding and often a page of libc's code that a program such as
 * /bin/true never touches: three page faults in every exec'd process
 * (docs/bench.md: exec). Same semantics as glibc's: a full set leaves out
 * glibc's two internal signals (32, SIGCANCEL; 33, SIGSETXID), which
 * sigaddset refuses and sigdelset takes. Async-signal-safe. */
static inline KS_SIGSAFE int ks_sig_internal(int signo) { return signo == 32 || signo == 33; }

static inline KS_SIGSAFE void ks_sigdel(sigset_t *s, int signo)
{
    unsigned long *w = (unsigned long *)s;
    w[(signo - 1) / 64] &= ~(1ul << ((signo - 1) % 64));
}

static inline KS_SIGSAFE void ks_sigadd(sigset_t *s, int signo)
{
    if (!ks_sig_internal(signo))
        ((unsigned long *)s)[(signo - 1) / 64] |= 1ul << ((signo - 1) % 64);
}

/* Takes glibc's two out of S, as its sigfillset and sigprocmask do. */
static inline KS_SIGSAFE void ks_sigdel_internal(sigset_t *s)
{
    ks_sigdel(s, 32);   /* SIGCANCEL */
    ks_sigdel(s, 33);   /* SIGSETXID */
}

static inline KS_SIGSAFE void ks_sigfill(sigset_t *s)
{
    __builtin_memset(s, 0xff, sizeof *s);   /* a constant size: stores, no call */
    ks_sigdel_internal(s);
}

static inline KS_SIGSAFE void ks_sigempty(sigset_t *s) { __builtin_memset(s, 0, sizeof *s); }

/* memcpy(DST, SRC, N) for a length known only at run time (GCC calls
 * libc's for those), by the string instruction: the direction flag is
 * clear in a signal handler as at any call (the ABI, the kernel). */
static inline KS_SIGSAFE void ks_copy(void *dst, const void *src, size_t n)
{
    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* ---- glibc's newer wrappers, avoided --------------------------------------
 * Each libc symbol version the shim needs is checked by the loader in every
 * process the shim is preloaded into, exec'd children included: about 300
 * instructions a version (docs/bench.md). Calls that alone needed a version
 * (process_vm_readv GLIBC_2.15, getrandom and explicit_bzero 2.25,
 * memfd_create 2.27, sched_getaffinity 2.3.4 and CPU_COUNT's
 * __sched_cpucount 2.6, getdents64 2.30) are made through syscall()
 * (GLIBC_2.2.5, -1 and errno as the wrappers give), or here. Not the
 * fd-creating calls ThreadSanitizer intercepts to order threads (accept4,
 * eventfd). */

/* explicit_bzero(P, N): a memset the compiler may not drop as a dead store
 * (before free, or of a buffer that goes out of scope): the empty asm takes
 * P and clobbers memory, so GCC must assume it reads the N bytes just
 * written. glibc's explicit_bzero and Linux's memzero_explicit do the same;
 * a memset, unlike a loop of volatile byte stores, keeps its wide stores. */
static inline void ks_wipe(void *p, size_t n)
{
    __builtin_memset(p, 0, n);
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* ---- Futex words (util.c) -----------------------------------------------
 * A process-private word that one thread sets from 0 (with release) and
 * others sleep on until it is set. Not for signal handlers. */
void ks_futex_wake(int *word, int n);   /* wakes up to N sleepers */
/* Sleeps while *WORD is VAL; returns on any wake-up or signal (or at once if
 * it is not VAL): the caller looks again. */
void ks_futex_wait(int *word, int val);
/* Sleeps until *WORD is not 0 (read with acquire) or CLOCK_MONOTONIC time
 * DEADLINE (ns) has come. Returns 1 if it is set, 0 if the deadline came
 * first. */
int ks_futex_wait_set(int *word, uint64_t deadline);

/* ---- Arrays mapped on first use (util.c) --------------------------------
 * A large array the shim needs only once something happened (a thread
 * ended, the module table was rebuilt) is an anonymous map made then, not
 * .bss: every fork copies the page tables over the span of the shim's
 * written pages, and .bss's far end is written in every process
 * (docs/bench.md: fork). One map wins when two threads race to make it (the
 * other is unmapped); it is never unmapped (readers keep its address; a fork
 * child inherits it). Maps with mmap: never from a signal handler, so each
 * user maps at a moment it knows is safe and its writers only peek. */
struct ks_lazy {
    void *p;            /* the map, once published (acquire/release) */
    size_t len;
    const char *what;   /* for the warning if it cannot be mapped */
    int warned;
};
#define KS_LAZY(LEN, WHAT) {.p = NULL, .len = (LEN), .what = (WHAT), .warned = 0}
/* The map if it was made, else NULL: async-signal-safe. */
static inline KS_SIGSAFE void *ks_lazy_peek(struct ks_lazy *l)
{
    return __atomic_load_n(&l->p, __ATOMIC_ACQUIRE);
}
/* Makes the map (util.c; out of line: it runs once a process). */
void *ks_lazy_map(struct ks_lazy *l);
/* The map, made now if it is not yet; NULL, with a warning the first time,
 * if it cannot be made (the user does without: it must never fail the
 * program's call). Once made, one load. */
static inline void *ks_lazy_get(struct ks_lazy *l)
{
    void *p = ks_lazy_peek(l);
    return KS_LIKELY(p != NULL) ? p : ks_lazy_map(l);
}

/* ---- Life cycle (init.c) ------------------------------------------------ */
void ks_init(void);                 /* runs once; safe to call from any hook */
/* Registers the shim's fork handlers if they are not yet (init.c says
 * when): before the process's first thread and before control starts.
 * Through ks_fork_arm_fn, which init.c sets (util.c: the libraries the unit
 * tests link have no init.c; there ks_fork_armed stays 1). */
void ks_fork_arm(void);
extern void (*ks_fork_arm_fn)(void) __attribute__((visibility("hidden")));
extern int ks_fork_armed __attribute__((visibility("hidden")));
/* 1 while the calling thread registers them (async-signal-safe). */
int ks_fork_arming(void);
static inline void ks_fork_need(void)
{
    if (KS_UNLIKELY(!__atomic_load_n(&ks_fork_armed, __ATOMIC_ACQUIRE)))
        ks_fork_arm();
}
/* getpid(), through the system call: right in a fork child without any
 * after-fork update (a global updated there would cost the child a page
 * copy), and async-signal-safe. */
pid_t ks_getpid(void);
/* sched_yield(), through the system call: the safepoint table's and the
 * abort slots' waits run in signal handlers before control starts, where
 * no import of the shim may be bound lazily (selfbind.h), and libc's would
 * be one more import to bind at start. */
void ks_sched_yield(void);

#ifdef __cplusplus
}
#endif

#endif
