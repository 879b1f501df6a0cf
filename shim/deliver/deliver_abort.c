/* The abort mode, control side: loading what it needs at init, the request
 * (under the registry lock) and reading its progress. How the thread finds
 * its safe point is in abort_decide.c; the ways out are in abort_exit.c;
 * docs/abort.md says why it is built this way. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "abort_internal.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/common/procfs.h"
#include "shim/safepoint/safepoint.h"
#include "shim/core/signals.h"
#include "shim/unwind/unwind.h"
#include "shim/safepoint/x86_step.h"

#define KS_KICK_NS (200ull * 1000 * 1000)

static int ks_abort_ok;
/* From the last ks_abort_prepare: single-stepping is not possible (a tracer
 * would get the traps, or SIGTRAP could not be installed). */
static int ks_no_step;
static char ks_abort_off_why[96];

/* ---- Init ------------------------------------------------------------- */

static void ks_prime_cleanup(void *arg) { *(volatile int *)arg = 1; }

static void *ks_prime_thread(void *arg)
{
    pthread_cleanup_push(ks_prime_cleanup, arg);
    KS_REAL(pthread_exit)(NULL);
    pthread_cleanup_pop(0);
    return NULL;
}

/* One forced unwind in a throwaway thread: glibc dlopens libgcc_s for
 * pthread_exit the first time, and binds its unwinder then. Done here, it
 * never happens inside a thread being aborted. */
static int ks_prime_forced_unwind(void)
{
    volatile int ran = 0;
    pthread_t th;
    if (KS_REAL(pthread_create)(&th, NULL, ks_prime_thread, (void *)&ran) != 0)
        return EAGAIN;
    pthread_join(th, NULL);
    return ran ? 0 : EINVAL;
}

static pthread_once_t ks_prime_once = PTHREAD_ONCE_INIT;
static int ks_prime_rc;

static void ks_prime_run(void) { ks_prime_rc = ks_prime_forced_unwind(); }

/* Not at start-up, where it would cost every program a thread and a join
 * (the start-up benchmark saw 6 context switches and up to ms under load):
 * on the control side, at the first request that may unwind a thread (cancel
 * or abort), before the request is made, so still never inside a victim. */
int ks_unwind_prime(void)
{
    pthread_once(&ks_prime_once, ks_prime_run);
    return ks_prime_rc;
}

static int ks_abort_off(const char *why)
{
    snprintf(ks_abort_off_why, sizeof ks_abort_off_why, "%s", why);
    ks_debug("abort mode unavailable: %s", why);
    return ENOSYS;
}

/* ks_abort_init succeeded: ks_abort_init_serving may finish the job. */
KS_HOT_DATA static int ks_abort_loaded;

/* At load: the stepper's callback. The module table the doorbell's safety
 * walk needs (redirect.c walks an interrupted stack with its own CFI
 * stepper and looks its frames up in it) is built at the doorbell's first
 * ring (ks_redirect_table), not here: most processes are never asked.
 * libunwind is loaded when control starts (ks_init_serving). The SIGTRAP
 * handler is installed by each ks_abort_prepare, before the request that
 * may step a thread: at load it cost every process four system calls (two
 * sigactions between two sigprocmasks) for an abort that most never see,
 * and the program saw SIGTRAP caught from its start, not only from its
 * first abort. */
KS_START_PATH int ks_abort_init(void)
{
    ks_step_set_callback(ks_abort_on_trap);
    ks_abort_loaded = 1;
    return 0;
}

/* The rest when control starts, on the accept thread before its first
 * accept: no request is served before it is done, and a process nobody
 * asks pays nothing for it (docs/bench.md). */
int ks_abort_init_serving(void)
{
    uint64_t t0 = ks_now_ns();
    if (!ks_abort_loaded)
        return ENOSYS;   /* ks_abort_init said why */
    if (!ks_unw_ready())
        return ks_abort_off("libunwind.so.8 could not be loaded");
    /* The unwinder glibc's pthread_exit uses, and libgcc's C personality. */
    void *gcc = dlopen("libgcc_s.so.1", RTLD_NOW);
    if (!gcc)
        return ks_abort_off("libgcc_s.so.1 could not be loaded");
    ks_prewalk_init(gcc);
    if (!KS_REAL(pthread_exit))
        return ks_abort_off("pthread_exit not found");
    ks_safepoint_refresh();
    __atomic_store_n(&ks_abort_ok, 1, __ATOMIC_RELEASE);
    ks_debug("abort mode ready in %llu us", (unsigned long long)((ks_now_ns() - t0) / 1000));
    return 0;
}

KS_FORK_PATH void ks_abort_after_fork_child(void)
{
    /* Only the forking thread lives on. A request aimed at it was aimed at
     * the parent's thread: forget it. A return it has patched still returns
     * through its trampoline, which then carries on: that slot stays taken. */
    struct ks_thread *self = ks_self();
    struct ks_abort_info *a = self->abort.info;
    __atomic_store_n(&self->abort.state, KS_ABORT_NONE, __ATOMIC_RELEASE);
    ks_abort_pool_after_fork(a);
    if (a)
        a->stepping = 0;
    ks_abort_tramp_after_fork(a && a->armed ? a->armed_k : -1);
}

/* ---- The request ------------------------------------------------------ */

void ks_abort_prepare(void)
{
    if (!ks_abort_ok)
        return;
    if (ks_unwind_prime() != 0) {
        ks_abort_off("a test forced unwind failed");
        ks_abort_ok = 0;
        return;
    }
    ks_safepoint_refresh_pads();
    int no_step = ks_step_install() != 0 || ks_step_tracer() != 0;
    __atomic_store_n(&ks_no_step, no_step, __ATOMIC_RELAXED);
}

#define KS_REACH_TRIES 10
#define KS_REACH_NAP_NS (5ull * 1000 * 1000)

int ks_abort_reachable(pid_t tid, char *why, size_t cap)
{
    unsigned long long bit = 1ull << (ks_signo(KS_SIG_ACT) - 1);
    struct ks_taskstatus st;
    for (int i = 0; i < KS_REACH_TRIES; i++) {
        if (ks_read_task_status(tid, &st) != 0 || !(st.sigblk & bit))
            return 0;
        ks_nap_ns(KS_REACH_NAP_NS);
    }
    snprintf(why, cap, "thread %d blocks every signal, the shim's too (with the rt_sigprocmask "
             "system call, past the shim's sigmask hooks): the abort's signal cannot reach it; "
             "nothing was done to it", (int)tid);
    return EPERM;
}

/* Wakes T if it sleeps in pthread_cond_*wait (a spurious wakeup for the
 * cond's other waiters, which POSIX allows). T's wait_lock keeps the cond
 * alive: T clears it under the same lock before it returns. */
static void ks_abort_wake_cond(struct ks_thread *t)
{
    ks_spin_lock(&t->wait_lock);
    if (__atomic_load_n(&t->wait_kind, __ATOMIC_RELAXED) == KS_WAIT_COND && t->wait_obj)
        pthread_cond_broadcast((pthread_cond_t *)t->wait_obj);
    ks_spin_unlock(&t->wait_lock);
}

static int ks_abort_refuse(char *why, size_t cap, int rc, const char *msg)
{
    if (cap)
        snprintf(why, cap, "%s", msg);
    return rc;
}

/* A new request: the thread is not acting on one (NONE, or REFUSED). */
static void ks_abort_fresh(struct ks_thread *t, int force, int no_step, uint64_t now)
{
    struct ks_abort_info *a = t->abort.info;
    unsigned seq = a->seq;
    int armed = a->armed, armed_k = a->armed_k;
    uintptr_t armed_slot = a->armed_slot;
    memset(a, 0, sizeof *a);
    a->seq = seq;
    a->armed = armed;   /* a patch left from before stays the thread's to drop */
    a->armed_k = armed_k;
    a->armed_slot = armed_slot;
    a->no_step = no_step;
    a->requested_ns = now;
    a->how = KS_ABORT_HOW_SIGNALLED;
    snprintf(a->reason, sizeof a->reason, "signalled; waiting for the thread to run");
    t->abort.site = 0;
    __atomic_store_n(&t->abort.force, force, __ATOMIC_RELEASE);
    __atomic_store_n(&t->abort.state, KS_ABORT_PENDING, __ATOMIC_RELEASE);
}

int ks_abort_request(struct ks_thread *t, int force, char *why, size_t cap)
{
    if (!ks_abort_ok) {
        if (cap)
            snprintf(why, cap, "abort mode unavailable: %s",
                     ks_abort_off_why[0] ? ks_abort_off_why : "not initialized");
        return ENOSYS;
    }
    if (t->role == KS_ROLE_MAIN)
        return ks_abort_refuse(why, cap, EPERM,
                         "the main thread is not aborted: pthread_exit there leaves the process "
                         "running under a zombie leader; use flag or cancel mode");
    if (t->role != KS_ROLE_APP)
        return ks_abort_refuse(why, cap, EPERM, "not an application thread");
    if (!t->abort.info && !(t->abort.info = ks_abort_info_take()))
        return ks_abort_refuse(why, cap, EBUSY,
                               "too many aborts in flight in this process (or no memory for "
                               "their blocks)");
    int no_step = __atomic_load_n(&ks_no_step, __ATOMIC_RELAXED);
    uint64_t now = ks_now_ns();
    struct ks_abort_info *a = t->abort.info;
    int st = __atomic_load_n(&t->abort.state, __ATOMIC_ACQUIRE);
    if (st == KS_ABORT_FIRING)
        return 0;
    if (st == KS_ABORT_REFUSED) {
        /* The answer to the last request: give it once, then forget it so
         * that the next request starts afresh. */
        struct ks_abort_report snap;
        ks_abort_snapshot(t, &snap);
        if (cap)
            snprintf(why, cap, "%s", snap.reason);
        __atomic_store_n(&t->abort.state, KS_ABORT_NONE, __ATOMIC_RELEASE);
        return ECANCELED;
    }
    if (st != KS_ABORT_PENDING) {
        ks_abort_fresh(t, force, no_step, now);
    } else if (force && !__atomic_load_n(&t->abort.force, __ATOMIC_RELAXED)) {
        __atomic_store_n(&t->abort.force, 1, __ATOMIC_RELEASE);
    } else if (now - a->kicked_ns < KS_KICK_NS) {
        return 0;
    }
    a->kicked_ns = now;
    ks_abort_wake_cond(t);
    int rc = ks_signal_linked(t, KS_SIG_ACT);
    if (rc && cap)
        snprintf(why, cap, "cannot signal thread %d: %s", (int)t->tid, strerror(rc));
    return rc;
}
