/* See cmd_preattach.h: "end" and "status" for a thread that was there
 * before the shim was attached (docs/attach.md).
 *
 * Such a thread has no record: the shim did not see it start, so it knows
 * neither the locks it took before the attach nor its cleanup depth, and
 * nothing unregisters it when it exits. What is kept is its tid and its
 * struct pthread, found on glibc's thread list at the attach; each request
 * reads the struct's tid field again (ks_preattach_thread) and acts only if
 * it still names the thread. The one window left: the thread exits, its
 * struct pthread is reused for a thread created right then, between that
 * read and glibc's own (pthread_cancel reads the tid again and does nothing
 * for a thread that has exited). Closing it would need glibc's exit_lock,
 * which libthread_db does not describe. */
#include "cmd_preattach.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/common/procfs.h"
#include "shim/core/attach.h"
#include "shim/core/ks.h"
#include "shim/core/real.h"
#include "shim/core/registry.h"
#include "shim/safepoint/langrt.h"
#include "shim/unwind/stack_capture.h"

#define KS_SIGCANCEL 32   /* glibc's SIGCANCEL (__SIGRTMIN): not in a public header */

/* 1 if TID is a pre-attach thread the registry has no record of (a record
 * wins: a later thread that got the tid again). */
int ks_preattach_target(pid_t tid, uint64_t id)
{
    if (id || !ks_preattach_has(tid))
        return 0;
    ks_registry_lock();
    int linked = ks_registry_find(tid) != NULL;
    ks_registry_unlock();
    return !linked;
}

/* What was asked of pre-attach threads, so that "status" can say the thread
 * it was asked of has ended (how is not known: it does not pass through the
 * shim on its way out). Under the registry lock; the oldest is overwritten. */
#define KS_PRE_ASKED 32
static struct {
    pid_t tid;
    char requested[16];
} ks_pre_asked[KS_PRE_ASKED];
static unsigned ks_pre_asked_next;

static void ks_pre_remember(pid_t tid, const char *requested)
{
    ks_registry_lock();
    int slot = -1;
    for (int i = 0; i < KS_PRE_ASKED && slot < 0; i++)
        if (ks_pre_asked[i].tid == tid)
            slot = i;
    if (slot < 0)
        slot = (int)(ks_pre_asked_next++ % KS_PRE_ASKED);
    ks_pre_asked[slot].tid = tid;
    snprintf(ks_pre_asked[slot].requested, sizeof ks_pre_asked[slot].requested, "%s", requested);
    ks_registry_unlock();
}

/* What was last asked of TID into REQ ("" if nothing). */
static void ks_pre_asked_of(pid_t tid, char req[16])
{
    req[0] = '\0';
    ks_registry_lock();
    for (int i = 0; i < KS_PRE_ASKED; i++)
        if (ks_pre_asked[i].tid == tid)
            memcpy(req, ks_pre_asked[i].requested, 16);
    ks_registry_unlock();
}

/* The head of an "ok" row for pre-attach thread TID: no record, so id 0. */
static void ks_pre_head(struct ks_out *out, pid_t tid, const char *state, const char *requested)
{
    ks_out_word(out, "ok");
    ks_out_i64(out, "tid", tid);
    ks_out_i64(out, "id", 0);
    ks_out_str(out, "state", state);
    ks_out_str(out, "role", "pre-attach");
    ks_out_str(out, "requested", requested);
}

/* Gone: "ended" with what was asked if something was, else "no-thread". */
static void ks_pre_gone(struct ks_out *out, pid_t tid)
{
    char req[16];
    ks_pre_asked_of(tid, req);
    if (!req[0]) {
        ks_out_err(out, "no-thread", "thread %d (started before the attach) has ended", (int)tid);
        return;
    }
    ks_pre_head(out, tid, "ended", req);
    ks_out_eol(out);
}

static void ks_pre_refuse(struct ks_out *out, const char *fmt, pid_t tid)
{
    ks_out_word(out, "err");
    ks_out_str(out, "code", "refused");
    ks_out_fmt(out, "msg", fmt, (int)tid);
    ks_out_eol(out);
}

/* "ok" for the live thread: what can be known of it. No "locks": unknown.
 * PENDING: what was just asked, or NULL (from CH). */
static void ks_pre_view(struct ks_out *out, pid_t tid, int ch, const char *requested,
                        const char *pending)
{
    ks_pre_head(out, tid, "alive", requested);
    ks_out_str(out, "cancel", ch & KS_CANCELSTATE_BIT ? "disabled" : "enabled");
    if (pending)
        ks_out_str(out, "pending", pending);
    else if (ch & KS_CANCELED_BIT)
        ks_out_str(out, "pending", ch & KS_CANCELSTATE_BIT
                   ? "cancel asked; its cancellation is disabled: it acts once it enables it"
                   : "cancel asked: it acts at its next cancellation point");
    ks_out_eol(out);
}

/* The thread's own tid and not a zombie: the kernel cleared the struct's tid
 * at exit, but a thread between its last user instruction and that store
 * still shows as a task. */
static int ks_pre_alive(pid_t tid)
{
    struct ks_taskstat st;
    return ks_read_task_stat(0, tid, &st) == 0 && st.state != 'Z' && st.state != 'X';
}

/* Takes TID's stack as cancel's check does (a dump; never a signal that
 * would cut its system call short) and scans it. Returns as
 * ks_preattach_runtime. */
static int ks_pre_stack_runtime(pid_t tid, char *why, size_t cap, int *runtime)
{
    struct ks_capture c = {.tid = tid};
    struct ks_capture *v[1] = {&c};
    struct ks_capture_opts o = {.answer_ns = 1000ull * 1000000, .slice_ns = 20ull * 1000000,
                                .grace_ns = 50ull * 1000000};
    char module[64];
    int rc = 0;
    ks_dump_lock();
    struct ks_dump *d = ks_capture_stacks(v, 1, &o);
    if (!d) {
        snprintf(why, cap, "cannot check the stack of thread %d (out of memory); --force "
                 "goes without the check", (int)tid);
        rc = EPERM;
    } else if (c.via == KS_VIA_NONE && !c.gone) {
        snprintf(why, cap, "cannot check the stack of thread %d for a language runtime's "
                 "frames (%s); --force goes without the check", (int)tid,
                 ks_nostack_words(c.why));
        rc = EPERM;
    } else if (!c.gone) {
        int rt = ks_langrt_scan(c.e->ips, c.e->nframes, NULL, module, sizeof module);
        if (rt) {
            ks_langrt_refusal(rt, module, tid, "runs in", why, cap);
            *runtime = 1;
            rc = EPERM;
        }
    }
    if (d)
        ks_dump_release(d);
    ks_dump_unlock();
    return rc;
}

int ks_preattach_runtime(pid_t tid, char *why, size_t cap, int *runtime)
{
    char module[64];
    *runtime = 0;
    uintptr_t start = (uintptr_t)ks_preattach_start_routine(tid);
    int rt = start ? ks_langrt_scan(&start, 1, NULL, module, sizeof module) : 0;
    if (rt) {
        ks_langrt_refusal(rt, module, tid, "was started by", why, cap);
        *runtime = 1;
        return EPERM;
    }
    return ks_pre_stack_runtime(tid, why, cap, runtime);
}

void ks_preattach_status(pid_t tid, struct ks_out *out)
{
    pthread_t pd;
    int ch;
    if (ks_preattach_thread(tid, &pd, &ch) != 0 || !ks_pre_alive(tid)) {
        ks_pre_gone(out, tid);
        return;
    }
    char req[16];
    ks_pre_asked_of(tid, req);
    ks_pre_view(out, tid, ch, req, req[0] && (ch & KS_CANCELSTATE_BIT) ?
                "its cancellation is disabled: only the program's own stop variable "
                "(--flag-symbol) can end it" : NULL);
}

/* Cancel and abort: what is refused (RC, CH: from ks_preattach_thread).
 * Returns 1 if it answered. */
static int ks_pre_refused(pid_t tid, int mode, int force, int rc, int ch, struct ks_out *out)
{
    if (tid == ks_getpid()) {
        ks_pre_refuse(out, "thread %d is the main thread: its tid stays a zombie until the "
                      "process exits, so it cannot be seen to end; end the process instead, "
                      "or ask it to stop with mode=flag", tid);
        return 1;
    }
    if (rc == ENOENT) {
        ks_pre_refuse(out, "thread %d started before the shim was attached and glibc's thread "
                      "list did not show its pthread_t: it cannot be cancelled", tid);
        return 1;
    }
    if (ch & KS_CANCELSTATE_BIT) {
        ks_pre_refuse(out, "thread %d started before the shim was attached and has disabled "
                      "its cancellation (pthread_setcancelstate): neither cancel nor abort "
                      "can end it; ask it to stop with mode=flag", tid);
        return 1;
    }
    if (mode == KS_PRE_ABORT && !force) {
        ks_pre_refuse(out, "thread %d started before the shim was attached: the locks it took "
                      "before the attach cannot be seen, so an abort cannot know what it "
                      "leaves held; --force aborts it anyway (glibc's asynchronous "
                      "cancellation: its cleanup handlers and destructors run)", tid);
        return 1;
    }
    return 0;
}

void ks_preattach_end(pid_t tid, int mode, int force, struct ks_out *out)
{
    pthread_t pd;
    int ch;
    /* The client wrote the program's variable before it sent this: the
     * thread may have read it and ended already, and is then answered as
     * ended after a flag. */
    if (mode == KS_PRE_FLAG)
        ks_pre_remember(tid, "flag");
    int rc = ks_preattach_thread(tid, &pd, &ch);
    if (rc == ESRCH || (rc == 0 && !ks_pre_alive(tid))) {
        ks_pre_gone(out, tid);
        return;
    }
    if (mode == KS_PRE_FLAG) {
        ks_pre_view(out, tid, rc ? 0 : ch, "flag", "only the program's own stop variable "
                    "(--flag-symbol) reaches a thread that started before the attach");
        return;
    }
    if (ks_pre_refused(tid, mode, force, rc, ch, out))
        return;
    ks_real_pthread_cancel_t *real_cancel = KS_REAL(pthread_cancel);
    if (!real_cancel) {
        ks_pre_refuse(out, "thread %d: pthread_cancel is not available in this process", tid);
        return;
    }
    rc = real_cancel(pd);   /* also installs glibc's SIGCANCEL handler */
    if (rc) {
        ks_out_err(out, "refused", "thread %d: pthread_cancel: %s", (int)tid, strerror(rc));
        return;
    }
    /* A deferred cancel does nothing to a thread that never reaches a
     * cancellation point (a CPU loop): the forced abort makes it
     * asynchronous and signals the thread, as pthread_cancel does for a
     * thread whose cancellation is asynchronous (glibc's handler checks the
     * sender: this process, through tgkill). TID was alive just above; a
     * signal to a thread already on its way out is ignored there. */
    if (mode == KS_PRE_ABORT && ks_preattach_set_async(pd) == 0)
        syscall(SYS_tgkill, ks_getpid(), tid, KS_SIGCANCEL);
    int abort = mode == KS_PRE_ABORT;
    ks_pre_remember(tid, abort ? "abort" : "cancel");
    ks_pre_view(out, tid, ch | KS_CANCELED_BIT, abort ? "abort" : "cancel", abort
                ? "abort (forced): glibc's asynchronous cancellation; the locks it took before "
                  "the attach cannot be seen, nor whether it leaves any held"
                : "cancel asked: it acts at its next cancellation point; the locks it took "
                  "before the attach cannot be seen");
}
