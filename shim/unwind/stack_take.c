/* Taking the stacks of a set of threads: the protocol of stack_capture.h,
 * for the stack verb (cmd_stack.c) and cancel's check (cancel_check.c).
 *
 * From the hold to the end the dumper does not allocate, and takes no lock
 * but the registry's and the loader's (libunwind's dl_iterate_phdr; dlopen
 * holds it only while it links a library into the list): a held thread may
 * be in a signal handler that interrupted malloc with the arena lock taken. */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/core/blocking.h"
#include "shim/core/ks.h"
#include "shim/common/procfs.h"
#include "shim/core/registry.h"
#include "shim/core/signals.h"
#include "stack_capture.h"

/* C's record if it is still the same linked thread. Registry lock held. */
static struct ks_thread *ks_cap_live(const struct ks_capture *c)
{
    struct ks_thread *r = c->rec ? ks_registry_find(c->tid) : NULL;
    return r == c->rec && r && r->id == c->id ? r : NULL;
}

static void ks_cap_let_go(struct ks_capture *c, struct ks_thread *r)
{
    if (r && c->held)
        ks_reader_release(r);
    c->held = 0;
}

static struct ks_dump *ks_cap_table(struct ks_capture *const *v, int n)
{
    struct ks_dump *d = ks_dump_alloc(n);
    if (!d)
        return NULL;
    for (int i = 0; i < n; i++) {
        d->e[i].tid = v[i]->tid;   /* V is sorted by tid, so is the table */
        v[i]->e = &d->e[i];
    }
    d->n = n;
    return d;
}

/* Holds every registered thread (reader flag, blocking.h). A thread found
 * inside a wrapped call has its registers copied and stays held until it
 * is unwound; the others stay held until they answer or are given up. */
static void ks_cap_hold(struct ks_capture *const *v, int n, const struct ks_capture_opts *o)
{
    ks_registry_lock();
    /* Stack bounds first: pthread_getattr_np allocates, and nothing may
     * allocate while a thread is held. */
    for (int i = 0; i < n; i++) {
        struct ks_thread *r = v[i]->gone ? NULL : ks_cap_live(v[i]);
        if (!r)
            continue;
        ks_stack_bounds(r);
        v[i]->e->stack_lo = ks_block_of(r)->stack_lo;
        v[i]->e->stack_hi = ks_block_of(r)->stack_hi;
    }
    for (int i = 0; i < n; i++) {
        struct ks_capture *c = v[i];
        struct ks_thread *r = c->gone ? NULL : ks_cap_live(c);
        if (!r)
            continue;
        struct ks_block *b = ks_block_of(r);
        __atomic_store_n(&b->reader, 1, __ATOMIC_SEQ_CST);
        c->held = 1;
        if (__atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST)) {
            c->via = KS_VIA_CALL;
            c->call = b->call;
            c->regs = b->regs;
        }
        if (o->on_hold)
            o->on_hold(c, r, o->arg);
    }
    ks_registry_unlock();
}

static int ks_cap_syscall(pid_t tid, struct ks_syscall *sc, const struct ks_capture_opts *o)
{
    return o->dir ? ks_task_dir_syscall(o->dir, tid, sc) : ks_read_task_syscall(tid, sc);
}

/* Unwinds C, held in a wrapped call (or at its entry), from the registers
 * its wrapper saved, and unless the caller keeps it, lets it go. Its record
 * stays valid while it is held: a held thread cannot leave its wrapper. */
static void ks_cap_unwind_one(struct ks_capture *c, const struct ks_capture_opts *o)
{
    ks_unwind_regs(&c->regs, c->e);
    __atomic_store_n(&c->e->state, KS_ENTRY_DONE, __ATOMIC_RELEASE);
    if (!o->keep_call_held)
        ks_cap_let_go(c, c->rec);
}

/* Unwinds the threads held in wrapped calls (ks_cap_unwind_one). */
static void ks_cap_unwind_calls(struct ks_capture *const *v, int n, const struct ks_capture_opts *o)
{
    /* libunwind blocks every signal around each frame's lookup: done once
     * for the whole loop instead (signals.h). */
    sigset_t saved;
    ks_sigmask_batch_begin(&saved);
    for (int i = 0; i < n; i++) {
        struct ks_capture *c = v[i];
        if (c->via != KS_VIA_CALL)
            continue;
        /* Held: the call it is in, or the wrapper around it (for the
         * report only; nothing is decided on it). */
        if (!o->no_proc)
            c->have_sc = ks_cap_syscall(c->tid, &c->sc, o) == 0;
        ks_cap_unwind_one(c, o);
    }
    ks_sigmask_batch_end(&saved);
}

/* Why C may not be signalled (reads /proc: not under the registry lock).
 * C is held (if registered): the system call read here is not one it left
 * since (stack_capture.h). */
static void ks_cap_look(struct ks_capture *c, const struct ks_capture_opts *o)
{
    /* Without /proc nothing says whether a signal would cut a system call
     * short: the dump stays invisible, so no signal. */
    if (o->no_proc) {
        c->why = KS_NOSTACK_NO_PROCFS;
        return;
    }
    c->have_sc = ks_cap_syscall(c->tid, &c->sc, o) == 0;
    c->why = ks_dump_why_not_signal(c->tid, c->have_sc ? &c->sc : NULL, &c->st);
    if (c->why == KS_NOSTACK_EXITED && c->st.state != 'Z')
        c->gone = 1;   /* its status vanished: it has exited since it was listed */
}

/* Sends KS_SIG_DUMP to C, or says why not. Registry lock held. Returns 1 if
 * sent. */
static int ks_cap_send(struct ks_capture *c)
{
    struct ks_thread *r = c->rec ? ks_cap_live(c) : NULL;
    if (c->rec && !r)
        c->gone = 1;
    if (c->gone || c->why) {
        ks_cap_let_go(c, r);
        return 0;
    }
    /* An unregistered thread has no record, so nothing proves its tid was
     * not recycled since /proc listed it. tgkill with our pid can only
     * reach a thread of this process; if that is a newer thread, it answers
     * for the tid it now owns (its own stack, correctly labelled) or, if it
     * has no entry, ignores the signal. */
    __atomic_store_n(&c->e->state, KS_ENTRY_WAITING, __ATOMIC_SEQ_CST);
    int rc = ks_signal_tid(c->tid, KS_SIG_DUMP);
    if (rc == 0) {
        c->via = KS_VIA_SIGNAL;
        return 1;
    }
    __atomic_store_n(&c->e->state, KS_ENTRY_IDLE, __ATOMIC_SEQ_CST);
    if (rc == ESRCH)
        c->gone = 1;
    else
        c->why = KS_NOSTACK_SEND_FAILED;
    ks_cap_let_go(c, r);
    return 0;
}

/* Signals the threads not held in a call, where that is invisible.
 * Returns how many were signalled. */
static int ks_cap_signal(struct ks_capture *const *v, int n, const struct ks_capture_opts *o)
{
    /* /proc first, outside the registry lock (pthread_create and thread
     * exits wait for that lock). */
    for (int i = 0; i < n; i++)
        if (!v[i]->gone && v[i]->via != KS_VIA_CALL)
            ks_cap_look(v[i], o);
    int sent = 0;
    ks_registry_lock();
    for (int i = 0; i < n; i++)
        if (v[i]->via != KS_VIA_CALL)
            sent += ks_cap_send(v[i]);
    ks_registry_unlock();
    return sent;
}

/* A signalled thread that has not answered but entered a wrapped call
 * since: it waits at the wrapper's entry for the reader flag (blocking.h),
 * with the dump signal blocked (a handler of the program's runs: Boehm's
 * collector stops the world with one that waits in sigsuspend). It would
 * answer only after the dump gave up, and the program's other threads
 * waited with it (the collector for its acknowledgement: 1 s for every
 * thread, each dump). Its registers are saved and it cannot move while
 * held: it is unwound from them, as a thread found in a call. Its signal,
 * once unblocked, finds the entry taken and does nothing (a wrapped call
 * it cuts short resumes, interpose_block.c). Returns how many. */
static int ks_cap_take_parked(struct ks_capture *const *v, int n, struct ks_dump *d,
                              const struct ks_capture_opts *o)
{
    int taken = 0;
    ks_registry_lock();
    for (int i = 0; i < n; i++) {
        struct ks_capture *c = v[i];
        if (c->via != KS_VIA_SIGNAL || c->gone || !c->held ||
            __atomic_load_n(&c->e->state, __ATOMIC_ACQUIRE) != KS_ENTRY_WAITING)
            continue;
        struct ks_thread *r = ks_cap_live(c);
        struct ks_block *b = r ? ks_block_of(r) : NULL;
        int expect = KS_ENTRY_WAITING;
        if (b && __atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST) &&
            __atomic_compare_exchange_n(&c->e->state, &expect, KS_ENTRY_CAPTURING, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            c->via = KS_VIA_CALL;   /* and CAPTURING: claimed here */
            c->call = b->call;
            c->regs = b->regs;
            c->have_sc = 0;   /* read before it entered: not the call it is in */
            taken++;
        }
    }
    ks_registry_unlock();
    if (!taken)
        return 0;
    sigset_t saved;
    ks_sigmask_batch_begin(&saved);
    for (int i = 0; i < n; i++)
        if (v[i]->via == KS_VIA_CALL &&
            __atomic_load_n(&v[i]->e->state, __ATOMIC_ACQUIRE) == KS_ENTRY_CAPTURING) {
            ks_cap_unwind_one(v[i], o);
            __atomic_add_fetch(&d->answered, 1, __ATOMIC_SEQ_CST);
        }
    ks_sigmask_batch_end(&saved);
    return taken;
}

/* Waits for the signalled threads, noticing those that exit meanwhile (a
 * thread on its way out blocks every signal and never answers) and taking
 * those that entered a wrapped call instead of answering. */
static void ks_cap_wait(struct ks_capture *const *v, int n, struct ks_dump *d, int sent,
                        const struct ks_capture_opts *o)
{
    uint64_t deadline = ks_now_ns() + o->answer_ns;
    int gone = 0;
    while (ks_dump_wait(d, sent - gone, deadline, o->slice_ns) < sent - gone &&
           ks_now_ns() < deadline) {
        if (ks_cap_take_parked(v, n, d, o))
            continue;
        gone = 0;
        for (int i = 0; i < n; i++) {
            struct ks_capture *c = v[i];
            if (c->via != KS_VIA_SIGNAL)
                continue;
            if (!c->gone && __atomic_load_n(&c->e->state, __ATOMIC_ACQUIRE) == KS_ENTRY_WAITING &&
                syscall(SYS_tgkill, ks_getpid(), c->tid, 0) != 0 && errno == ESRCH)
                c->gone = 1;
            gone += c->gone && __atomic_load_n(&c->e->state, __ATOMIC_ACQUIRE) != KS_ENTRY_DONE;
        }
    }
}

/* Gives up on threads that did not answer and lets every held thread go
 * (but those the caller keeps). */
static void ks_cap_finish(struct ks_capture *const *v, int n, const struct ks_capture_opts *o)
{
    for (int i = 0; i < n; i++) {
        struct ks_capture *c = v[i];
        if (c->via == KS_VIA_SIGNAL && ks_dump_abandon(c->e, o->grace_ns) != KS_ENTRY_DONE) {
            c->via = KS_VIA_NONE;
            if (!c->why)
                c->why = KS_NOSTACK_NO_ANSWER;
        }
    }
    ks_registry_lock();
    for (int i = 0; i < n; i++) {
        struct ks_capture *c = v[i];
        if (c->held && !(o->keep_call_held && c->via == KS_VIA_CALL))
            ks_cap_let_go(c, ks_cap_live(c));
    }
    ks_registry_unlock();
}

struct ks_dump *ks_capture_stacks(struct ks_capture *const *v, int n,
                                  const struct ks_capture_opts *o)
{
    struct ks_dump *d = ks_cap_table(v, n);
    if (!d)
        return NULL;
    ks_dump_publish(d);
    ks_cap_hold(v, n, o);
    ks_cap_unwind_calls(v, n, o);
    int sent = ks_cap_signal(v, n, o);
    if (sent)
        ks_cap_wait(v, n, d, sent, o);
    ks_cap_finish(v, n, o);
    return d;
}
