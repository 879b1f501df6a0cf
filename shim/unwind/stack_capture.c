/* Stack capture (see stack_capture.h). The handler below runs inside a
 * program thread: it only unwinds into memory the dumper allocated, and
 * flags. No allocation, no locks of its own, no formatting. */
#include "stack_capture.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "shim/core/blocking.h"
#include "shim/core/elf_sym.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/common/procfs.h"
#include "shim/core/registry.h"
#include "shim/core/signals.h"
#include "unwind.h"

/* Measured: a dump uses about 6.5 KiB below the interrupted frame (the
 * kernel's signal frame, the handler, libunwind's step, the loader's
 * dl_iterate_phdr). A thread with less than this left is not unwound. */
#define KS_STACK_MARGIN (16 * 1024)

_Static_assert(sizeof(unw_context_t) == sizeof(ucontext_t),
               "libunwind's x86_64 context is the kernel's ucontext");

KS_HOT_DATA static struct ks_dump *ks_dump_cur;   /* the published table, or NULL */
KS_HOT_DATA static int ks_dump_active;   /* handlers that may hold ks_dump_cur */
KS_LOCK_DEFINE(static, ks_dump_mu);
int ks_stack_ready;

static long ks_futex(int *addr, int op, int val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* Fills E from UC, whose pc is exact (a signal frame, or saved registers at
 * a return address: both are the state at that very instruction). */
static void ks_unwind(ucontext_t *uc, struct ks_dump_entry *e)
{
    unw_cursor_t c;
    e->nframes = 0;
    if (!ks_unw_ready() || ks_unw.init_local2(&c, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) < 0) {
        e->why = KS_NOSTACK_UNWIND_FAILED;
        return;
    }
    int exact = 1;
    for (;;) {
        unw_word_t ip = 0;
        if (ks_unw.get_reg(&c, UNW_REG_IP, &ip) < 0 || ip == 0)
            break;
        if (e->nframes == KS_STACK_MAX) {
            e->truncated = 1;
            break;
        }
        int i = e->nframes++;
        e->ips[i] = ip;
        if (exact)
            e->exact[i / 64] |= 1ull << (i % 64);
        /* For a frame without unwind info libunwind guesses from rbp (each
         * read checked, unwind_mem.h); a guess can name a caller that is not
         * one. Stop here instead and say the stack was cut. */
        unw_proc_info_t pi;
        if (ks_unw.get_proc_info_by_ip(ks_unw.as, exact ? ip : ip - 1, &pi, NULL) < 0) {
            e->truncated = 1;
            break;
        }
        exact = ks_unw.is_signal_frame(&c) > 0;
        if (ks_unw.step(&c) <= 0)
            break;
    }
}

void ks_unwind_regs(const struct ks_regs *r, struct ks_dump_entry *e)
{
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    greg_t *g = uc.uc_mcontext.gregs;
    g[REG_RBX] = (greg_t)r->rbx;
    g[REG_RBP] = (greg_t)r->rbp;
    g[REG_R12] = (greg_t)r->r12;
    g[REG_R13] = (greg_t)r->r13;
    g[REG_R14] = (greg_t)r->r14;
    g[REG_R15] = (greg_t)r->r15;
    g[REG_RSP] = (greg_t)r->rsp;
    g[REG_RIP] = (greg_t)r->rip;
    ks_unwind(&uc, e);
}

static struct ks_dump_entry *ks_dump_find(struct ks_dump *d, pid_t tid)
{
    int lo = 0, hi = d->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (d->e[mid].tid == tid)
            return &d->e[mid];
        if (d->e[mid].tid < tid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* 1 if the thread was interrupted on the alternate signal stack SS (in a
 * handler of its own), or this handler has less than the margin left on it.
 * A handler the kernel moved onto it (SA_ONSTACK: signals.c) from the
 * thread's own stack unwinds there when the room allows (Go's are 32 KiB). */
static int ks_altstack_too_small(const stack_t *ss, const ucontext_t *uc, uintptr_t sp)
{
    uintptr_t lo = (uintptr_t)ss->ss_sp, hi = lo + ss->ss_size;
    uintptr_t was = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    if (was >= lo && was < hi)
        return 1;
    return !(sp >= lo && sp < hi && sp - lo >= KS_STACK_MARGIN);
}

/* Unwinds here unless the stack could overflow: on the thread's alternate
 * signal stack (often a few KiB), or near the end of its own. Any other stack
 * (a coroutine's, or a thread whose bounds are unknown) is unwound. */
static void ks_capture_here(ucontext_t *uc, struct ks_dump_entry *e)
{
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    stack_t ss;
    /* The system call, not libc's: a sanitizer's interceptor of sigaltstack
     * must not run in a handler that may have interrupted its runtime. */
    if (syscall(SYS_sigaltstack, NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK) &&
        ks_altstack_too_small(&ss, uc, sp))
        e->why = KS_NOSTACK_ALTSTACK;
    else if (e->stack_lo && sp >= e->stack_lo && sp < e->stack_hi &&
             sp - e->stack_lo < KS_STACK_MARGIN)
        e->why = KS_NOSTACK_LOWSTACK;
    else
        ks_unwind(uc, e);
}

/* KS_SIG_DUMP, in the signalled thread, with every signal blocked. */
static void ks_dump_handler(int signo, siginfo_t *si, ucontext_t *uc)
{
    (void)signo;
    (void)si;
    struct ks_thread *self = ks_self();
    self->shim_depth++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    /* Counted first, whatever happens next: a wrapped call that this signal
     * cut short retries on seeing the count change (interpose_block.c). */
    struct ks_block *b = ks_block_self();
    __atomic_add_fetch(&b->dumps, 1, __ATOMIC_SEQ_CST);
    /* Announce before looking: ks_dump_release clears ks_dump_cur, then waits
     * for ks_dump_active to drain; one of us sees the other's store. */
    __atomic_add_fetch(&ks_dump_active, 1, __ATOMIC_SEQ_CST);
    struct ks_dump *d = __atomic_load_n(&ks_dump_cur, __ATOMIC_SEQ_CST);
    struct ks_dump_entry *e = d ? ks_dump_find(d, ks_gettid()) : NULL;
    int expect = KS_ENTRY_WAITING;
    if (e && __atomic_compare_exchange_n(&e->state, &expect, KS_ENTRY_CAPTURING, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        ks_capture_here(uc, e);
        __atomic_store_n(&e->state, KS_ENTRY_DONE, __ATOMIC_RELEASE);
        __atomic_add_fetch(&d->answered, 1, __ATOMIC_SEQ_CST);
        /* The bell (blocking.h) rung here, not by a call into blocking.c:
         * this file is built without a sanitizer's instrumentation
         * (SIGCTX_COPTS), blocking.c is not, and instrumented code in a
         * thread ThreadSanitizer does not know (a foreign thread: a raw
         * clone) crashes it. */
        __atomic_add_fetch(&ks_dump_bell, 1, __ATOMIC_SEQ_CST);
        ks_futex(&ks_dump_bell, FUTEX_WAKE_PRIVATE, 1, NULL);
        /* The dump set our reader flag before it signalled us (it saw us
         * outside any wrapped call); answered, we may now enter one. If this
         * handler interrupted that very wait, the wrapper re-checks the flag
         * when its futex wait returns: no wake needed. */
        __atomic_store_n(&b->reader, 0, __ATOMIC_SEQ_CST);
    }
    __atomic_sub_fetch(&ks_dump_active, 1, __ATOMIC_SEQ_CST);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    self->shim_depth--;
}

struct ks_dump *ks_dump_alloc(int n)
{
    struct ks_dump *d = calloc(1, sizeof *d + (size_t)(n > 0 ? n : 1) * sizeof d->e[0]);
    if (d)
        d->n = n;
    return d;
}

void ks_dump_publish(struct ks_dump *d) { __atomic_store_n(&ks_dump_cur, d, __ATOMIC_SEQ_CST); }

int ks_dump_wait(struct ks_dump *d, int want, uint64_t deadline_ns, uint64_t slice_ns)
{
    int bell = __atomic_load_n(&ks_dump_bell, __ATOMIC_SEQ_CST);
    int got = __atomic_load_n(&d->answered, __ATOMIC_SEQ_CST);
    uint64_t now = ks_now_ns();
    if (got >= want || now >= deadline_ns)
        return got;
    uint64_t left = deadline_ns - now < slice_ns ? deadline_ns - now : slice_ns;
    struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
    ks_futex(&ks_dump_bell, FUTEX_WAIT_PRIVATE, bell, &ts);
    return __atomic_load_n(&d->answered, __ATOMIC_SEQ_CST);
}

int ks_dump_abandon(struct ks_dump_entry *e, uint64_t grace_ns)
{
    int expect = KS_ENTRY_WAITING;
    if (__atomic_compare_exchange_n(&e->state, &expect, KS_ENTRY_ABANDONED, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return KS_ENTRY_ABANDONED;
    uint64_t end = ks_now_ns() + grace_ns;
    while (expect == KS_ENTRY_CAPTURING && ks_now_ns() < end) {
        ks_nap_ns(200 * 1000);
        expect = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
    }
    return expect;
}

void ks_dump_release(struct ks_dump *d)
{
    __atomic_store_n(&ks_dump_cur, NULL, __ATOMIC_SEQ_CST);
    uint64_t end = ks_now_ns() + 1000000000u;
    while (__atomic_load_n(&ks_dump_active, __ATOMIC_SEQ_CST) != 0) {
        if (ks_now_ns() > end) {
            ks_debug("a stack handler did not finish (its thread is stopped?); "
                     "keeping its %d-entry table", d->n);
            return;
        }
        ks_nap_ns(200 * 1000);
    }
    free(d);
}

void ks_dump_lock(void) { ks_lock(&ks_dump_mu); }
void ks_dump_unlock(void) { ks_unlock(&ks_dump_mu); }

void ks_stack_bounds(struct ks_thread *r)
{
    struct ks_block *b = ks_block_of(r);
    if (b->stack_hi)
        return;
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(r->handle, &attr) != 0)
        return;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
        b->stack_lo = (uintptr_t)addr;
        b->stack_hi = (uintptr_t)addr + size;
    }
    pthread_attr_destroy(&attr);
}

void ks_reader_release(struct ks_thread *r)
{
    struct ks_block *b = ks_block_of(r);
    /* This file is not instrumented (SIGCTX_COPTS, shim/defs.bzl): the edge
     * from the control thread's reads of the held thread's block
     * (stack_take.c) to that thread's next writes is told to
     * ThreadSanitizer here. */
    KS_TSAN_RELEASE(&b->reader);
    __atomic_store_n(&b->reader, 0, __ATOMIC_SEQ_CST);
    ks_futex(&b->reader, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* Does the socket FD have a receive timeout? Then a blocked accept, recv or
 * read on it returns EINTR to a signal handler instead of restarting. */
static int ks_fd_times_out(unsigned long long fd)
{
    struct timeval tv = {0, 0};
    socklen_t len = sizeof tv;
    if (getsockopt((int)fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) != 0)
        return errno != ENOTSOCK;   /* not a socket: no timeout; closed: be careful */
    return tv.tv_sec || tv.tv_usec;
}

struct ks_find_text {
    uintptr_t addr, lo, hi;
};

static int ks_find_text_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_find_text *f = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (f->addr >= lo && f->addr < lo + ph->p_memsz) {
            f->lo = lo;
            f->hi = lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

/* libc.so.6's text, and its generic syscall() stub within it (a call of
 * the program's own through it is the program's), found at ks_stack_init_serving
 * (0, 0 if not found). */
static uintptr_t ks_libc_lo, ks_libc_hi, ks_stub_lo, ks_stub_hi;

static void ks_find_libc_text(void)
{
    struct ks_elf_loaded l;
    if (ks_elf_find_loaded("syscall", "libc.so.6", &l) != 0)
        return;
    for (size_t i = 0; i < l.phnum; i++)
        if (l.phdr[i].p_type == PT_LOAD && (l.phdr[i].p_flags & PF_X)) {
            ks_libc_lo = l.obj.base + l.phdr[i].p_vaddr;
            ks_libc_hi = ks_libc_lo + l.phdr[i].p_memsz;
            break;
        }
    ks_stub_lo = (uintptr_t)ks_elf_addr(&l.obj, l.sym);
    ks_stub_hi = ks_stub_lo + l.sym->st_size;
}

/* A futex wait without a timeout is restarted under SA_RESTART; one with a
 * timeout returns EINTR to its caller. glibc's own waits (in libc's text)
 * take that for a spurious wakeup and wait again (its semaphores, which
 * return EINTR, are wrapped calls of the shim's); a program's own futex
 * may not, even through libc's syscall(): GLib's g_cond_wait_until returns
 * TRUE, "signalled", for it. */
static int ks_futex_restarts(const struct ks_syscall *sc)
{
    int cmd = (int)(sc->args[1] & FUTEX_CMD_MASK);
    if ((cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) && sc->args[3] == 0)
        return 1;
    return sc->pc >= ks_libc_lo && sc->pc < ks_libc_hi &&
           !(sc->pc >= ks_stub_lo && sc->pc < ks_stub_hi);
}

/* Would a handler run during system call SC be invisible? The kernel
 * restarts these under SA_RESTART without anything having been transferred;
 * everything else (sleeps, waits with timeouts, writes that could come back
 * short, calls not known here) is left alone. */
static int ks_syscall_restarts(const struct ks_syscall *sc)
{
    switch (sc->nr) {
    case SYS_futex:
        return ks_futex_restarts(sc);
    case SYS_wait4:
    case SYS_waitid:
    case SYS_flock:
    case SYS_fcntl:
    case SYS_open:
    case SYS_openat:
    case SYS_getrandom:
        return 1;
    case SYS_read:
    case SYS_readv:
    case SYS_pread64:
    case SYS_preadv:
    case SYS_preadv2:
    case SYS_accept:
    case SYS_accept4:
        return !ks_fd_times_out(sc->args[0]);
    case SYS_recvfrom:
        return !(sc->args[3] & MSG_WAITALL) && !ks_fd_times_out(sc->args[0]);
    case SYS_recvmsg:
        return !(sc->args[2] & MSG_WAITALL) && !ks_fd_times_out(sc->args[0]);
    default:
        return 0;
    }
}

int ks_dump_why_not_signal(pid_t tid, const struct ks_syscall *sc, struct ks_taskstatus *st)
{
    if (ks_read_task_status(tid, st) != 0)
        return KS_NOSTACK_EXITED;
    switch (st->state) {
    case 'Z':
    case 'X': return KS_NOSTACK_EXITED;
    case 'T':
    case 't': return KS_NOSTACK_STOPPED;
    case 'D': return KS_NOSTACK_UNINTERRUPTIBLE;
    default: break;
    }
    unsigned long long bit = 1ull << (ks_signo(KS_SIG_DUMP) - 1);
    if (st->sigblk & bit)
        return KS_NOSTACK_SIGNALS_BLOCKED;
    if (st->sigpnd & bit)
        return KS_NOSTACK_SIGNAL_PENDING;   /* an earlier dump's signal is still queued */
    if (sc && sc->nr >= 0 && !ks_syscall_restarts(sc))
        return KS_NOSTACK_SYSCALL;
    return KS_NOSTACK_NONE;
}

static const struct {
    const char *token, *words;
} ks_nostack_names[KS_NOSTACK_N] = {
    [KS_NOSTACK_ALTSTACK] = {"altstack", "it runs on its alternate signal stack"},
    [KS_NOSTACK_LOWSTACK] = {"low-stack", "too little of its stack is left to walk it"},
    [KS_NOSTACK_UNWIND_FAILED] = {"unwind-failed", "libunwind could not start from its registers"},
    [KS_NOSTACK_EXITED] = {"exited", "it exited"},
    [KS_NOSTACK_STOPPED] = {"stopped", "it is stopped"},
    [KS_NOSTACK_UNINTERRUPTIBLE] = {"uninterruptible", "it stays in uninterruptible sleep"},
    [KS_NOSTACK_SIGNALS_BLOCKED] = {"signals-blocked", "it blocks the shim's signals"},
    [KS_NOSTACK_SIGNAL_PENDING] = {"signal-pending",
                                   "an earlier signal of the shim is still pending on it"},
    [KS_NOSTACK_SYSCALL] = {"syscall", "it is blocked in a system call a signal would cut short"},
    [KS_NOSTACK_NO_PROCFS] = {"no-procfs", "/proc cannot be read"},
    [KS_NOSTACK_SEND_FAILED] = {"send-failed", "the shim's signal could not be sent"},
    [KS_NOSTACK_NO_ANSWER] = {"no-answer", "it did not answer the shim's signal in time"},
};

const char *ks_nostack_token(int why)
{
    return why > 0 && why < KS_NOSTACK_N ? ks_nostack_names[why].token : NULL;
}

const char *ks_nostack_words(int why)
{
    return why > 0 && why < KS_NOSTACK_N ? ks_nostack_names[why].words : "";
}

/* Runs every libunwind path the handler uses once, here, so that its one-time
 * setup and the lazy binding of its calls never happen in a victim. */
static void ks_prime(void)
{
    struct ks_dump_entry *e = calloc(1, sizeof *e);
    if (!e)
        return;
    ucontext_t uc;
    ks_unw.getcontext((unw_context_t *)&uc);
    ks_unwind(&uc, e);
    struct ks_regs r;
    ks_save_regs(&r);
    ks_unwind_regs(&r, e);
    free(e);
}

void ks_stack_init_serving(void)
{
    /* libunwind was loaded just before (ks_unw_load, with its memory
     * accessor replaced and its cache off): its masking must pass through
     * the shim's sigprocmask hook from now on (signals.h). */
    if (!ks_unw_ready())
        return;
    struct ks_find_text f = {(uintptr_t)(void *)ks_unw.step, 0, 0};
    if (dl_iterate_phdr(ks_find_text_cb, &f) && f.hi)
        ks_signals_pass_mask_from(f.lo, f.hi);
    ks_prime();
    ks_find_libc_text();
    ks_signals_set_handler(KS_SIG_DUMP, ks_dump_handler);
    __atomic_store_n(&ks_stack_ready, 1, __ATOMIC_RELEASE);
}

KS_FORK_PATH void ks_stack_after_fork_child(void)
{
    /* Written only where it changes anything: each page the child writes is
     * copied, and most forks exec or exit at once. */
    if (ks_dump_cur)
        ks_dump_cur = NULL;
    if (ks_dump_active)
        ks_dump_active = 0;
    /* A dump in the parent may have held this thread's flag; the child has
     * no dumper to clear it. */
    ks_block_self()->reader = 0;
}
