/* See control.h. */
#include "control.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "shim/core/blocking.h"
#include "shim/common/doorbell.h"
#include "shim/core/lock.h"
#include "shim/core/mutex_fast.h"
#include "shim/common/procfs.h"
#include "shim/safepoint/redirect.h"
#include "shim/core/registry.h"
#include "shim/core/selfbind.h"
#include "server.h"
#include "shim_thread.h"

KS_HOT_DATA int ks_control_state_v;

int ks_control_state(void) { return __atomic_load_n(&ks_control_state_v, __ATOMIC_ACQUIRE); }

static int ks_cas_state(int from, int to)
{
    return __atomic_compare_exchange_n(&ks_control_state_v, &from, to, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_ACQUIRE);
}

/* From STARTING: listen and run, then RUNNING, or OFF on failure (reported
 * by the server). First every import of the shim is bound (selfbind.h):
 * what serves (the dumps' and aborts' handlers included) never meets the
 * loader's lazy resolver. */
static void ks_control_begin(void)
{
    ks_selfbind_all();
    ks_fork_arm();   /* before the shim's threads exist (init.c); bound above */
    int rc = ks_server_listen();
    if (!rc)
        rc = ks_server_run();
    if (rc)
        ks_server_close();
    __atomic_store_n(&ks_control_state_v, rc ? KS_CTL_OFF : KS_CTL_RUNNING, __ATOMIC_RELEASE);
}

KS_START_PATH void ks_control_init(void (*prepare)(void))
{
    ks_server_init(prepare);
    ks_cas_state(KS_CTL_OFF, KS_CTL_LAZY);
}

void ks_control_start_lazy(void)
{
    if (ks_cas_state(KS_CTL_LAZY, KS_CTL_STARTING))
        ks_control_begin();
}

/* How long the program's first pthread_create waits for the accept
 * thread's PREPARE. It takes well under a millisecond (loading libunwind,
 * liblzma and libgcc_s, priming); the bound is for a PREPARE that cannot
 * go on while the creator holds what it needs: a pthread_create from a
 * library constructor holds the loader's lock its dlopen waits for. Past
 * it the thread is created anyway: the order costs speed, never
 * correctness. */
#define KS_PREPARED_WAIT_MS 50

/* The accept thread's PREPARE maps libraries (and its malloc arena) into
 * the process. Mappings made after a thread's stack exists made every
 * later create+join of that (cached) stack about 2% slower, for good:
 * measured outside the shim with a thread that mmaps five 64 KiB blocks
 * 50 ms after the first pthread_create (1.022-1.028x against 1.005x for
 * the same thread without them, docs/bench.md); the same mappings made
 * before it cost nothing measurable. So the program's first thread waits
 * until they are made. */
void ks_control_start_for_create(void)
{
    if (!ks_cas_state(KS_CTL_LAZY, KS_CTL_STARTING))
        return;
    ks_control_begin();
    if (ks_control_state() == KS_CTL_RUNNING &&
        ks_server_wait_prepared((uint64_t)KS_PREPARED_WAIT_MS * 1000000u) != 0)
        ks_debug("the control thread's start took over %d ms; the program's first thread "
                 "did not wait for it", KS_PREPARED_WAIT_MS);
}

KS_FORK_PATH void ks_control_after_fork_child(void)
{
    ks_shim_threads_after_fork();
    ks_server_after_fork_child();
    /* Whatever served the parent, the child serves when it needs to; a
     * parent without control (disabled, failed) has a child without. */
    int s = ks_control_state();
    if (s != KS_CTL_OFF && s != KS_CTL_LAZY)
        __atomic_store_n(&ks_control_state_v, KS_CTL_LAZY, __ATOMIC_RELEASE);
}

/* ---- Stepping aside ----------------------------------------------------- */

/* 1 if every task of the process but the caller is a shim thread the
 * registry knows. Without /proc the registry alone decides. A thread being
 * created is a task before it registers: wait for those first (a shim
 * thread just started by ks_control_step_back, typically). */
static int ks_program_alone(void)
{
    pid_t self = ks_gettid();
    uint64_t end = ks_now_ns() + 200 * 1000000u;
    while (ks_registry_starting() > 0 && ks_now_ns() < end)
        ks_nap_ns(100 * 1000);
    int alone = 1;
    ks_registry_lock();
    for (struct ks_thread *t = ks_registry_first(); t && alone; t = t->next)
        alone = t->tid == self || t->role == KS_ROLE_SHIM;
    ks_registry_unlock();
    int n = 0;
    pid_t *tids = alone ? ks_read_ids("/proc/self/task", &n) : NULL;
    for (int i = 0; tids && i < n && alone; i++) {
        if (tids[i] == self)
            continue;
        ks_registry_lock();
        struct ks_thread *t = ks_registry_find(tids[i]);
        alone = (t && t->role == KS_ROLE_SHIM) || ks_registry_exiting(tids[i]);
        ks_registry_unlock();
    }
    free(tids);
    return alone;
}

#define KS_ASIDE_WAIT_MS 2000

int ks_control_step_aside(void)
{
    if (ks_control_state() != KS_CTL_RUNNING || !ks_program_alone())
        return 0;
    if (!ks_cas_state(KS_CTL_RUNNING, KS_CTL_ASIDE))
        return 0;
    ks_server_stop();
    uint64_t end = ks_now_ns() + (uint64_t)KS_ASIDE_WAIT_MS * 1000000u;
    for (int i = 0; ks_shim_threads_alive() > 0 && ks_now_ns() < end; i++) {
        ks_nap_ns(100 * 1000);
        if (i % 20 == 19)
            ks_server_wake();   /* a wake lost before the accept began */
    }
    if (ks_shim_threads_alive() > 0)
        ks_debug("%d shim threads still busy after %d ms: the call may fail as it would "
                 "in a multi-threaded program", ks_shim_threads_alive(), KS_ASIDE_WAIT_MS);
    return 1;
}

void ks_control_step_back(void)
{
    if (!ks_cas_state(KS_CTL_ASIDE, KS_CTL_STARTING))
        return;
    ks_control_begin();
}

/* ---- The doorbell ------------------------------------------------------- */

/* System calls that block and that the kernel restarts after a handler
 * installed with SA_RESTART (the dump signal's): the interrupted thread sits
 * at the syscall instruction again, with the call's number in rax. */
static int ks_restartable_wait(long nr)
{
    switch (nr) {
    case SYS_read: case SYS_write: case SYS_readv: case SYS_writev:
    case SYS_pread64: case SYS_pwrite64: case SYS_preadv: case SYS_pwritev:
    case SYS_recvfrom: case SYS_sendto: case SYS_recvmsg: case SYS_sendmsg:
    case SYS_recvmmsg: case SYS_sendmmsg: case SYS_accept: case SYS_accept4:
    case SYS_connect: case SYS_wait4: case SYS_waitid: case SYS_flock:
    case SYS_fcntl: case SYS_open: case SYS_openat: case SYS_futex:
    case SYS_ioctl: case SYS_splice: case SYS_tee: case SYS_sendfile:
        return 1;
    default:
        return 0;
    }
}

/* Did the signal find this thread waiting in a system call? Either in one of
 * the shim's wrapped calls (blocking.h), or at a syscall instruction the
 * kernel is about to restart, or just after one it cut short with EINTR.
 * Such a thread is not inside libc's allocator, loader or thread code
 * (none of their locks is held across a blocking call), so pthread_create
 * from here cannot deadlock on, or corrupt, what the thread was doing. */
static KS_SIGSAFE int ks_waits_in_syscall(const ucontext_t *uc)
{
    struct ks_block *b = ks_block_self();
    if (b->depth == 1 && __atomic_load_n(&b->in_call, __ATOMIC_RELAXED))
        return 1;
    uintptr_t ip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    long ax = (long)uc->uc_mcontext.gregs[REG_RAX];
    if (!ks_uc_at_syscall(uc))
        return 0;
    if (ks_pc_at_syscall(ip))
        return ks_restartable_wait(ax);
    return ax == -EINTR;
}

static void ks_control_begin_redirected(void) { ks_control_begin(); }

KS_SIGSAFE void ks_control_doorbell(siginfo_t *si, ucontext_t *uc, int *err)
{
    if (ks_redirect_resume(si, uc, err) || si->si_value.sival_int != KS_DOORBELL_COOKIE ||
        ks_control_state() != KS_CTL_LAZY || ks_fork_arming())
        return;
    /* A vfork child (or a raw clone sharing this thread's TLS) runs in its
     * parent's memory until it execs: nothing may start there. Its thread
     * descriptor is its parent's, whose tid glibc's copy still holds; a
     * fork child's is its own (the kernel wrote it at the fork), while its
     * record may still hold the parent's tid (init.c: a fork before the
     * fork handlers were registered). Without glibc's copy (the probe off)
     * the handlers were registered at start and the record is right. */
    pid_t self = ks_mutex_self_tid();
    if (!self)
        self = ks_self()->tid;
    if (self && self != (pid_t)syscall(SYS_gettid))
        return;
    if (ks_waits_in_syscall(uc)) {
        /* A wrapped call cut short by this signal resumes, as after a dump. */
        __atomic_add_fetch(&ks_block_self()->dumps, 1, __ATOMIC_SEQ_CST);
        ks_control_start_lazy();
        return;
    }
    /* Running: only if what it runs is the program's own code, from a
     * trampoline once this handler has returned. The walk that tells looks
     * frames up in the module table, whose first is built here. */
    if (ks_redirect_table(uc) != 0 || !ks_redirect_safe(uc) ||
        !ks_cas_state(KS_CTL_LAZY, KS_CTL_STARTING))
        return;
    if (ks_redirect(uc, ks_control_begin_redirected, *err) != 0)
        __atomic_store_n(&ks_control_state_v, KS_CTL_LAZY, __ATOMIC_RELEASE);
}
