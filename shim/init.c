/* The one place that starts the shim, once per process (and again in a fork
 * child). */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#include "shim/control/control.h"
#include "shim/deliver/deliver.h"
#include "shim/core/attach.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/core/mutex_fast.h"
#include "shim/core/registry.h"
#include "shim/core/selfbind.h"
#include "shim/control/server.h"
#include "shim/control/shim_thread.h"
#include "shim/core/signals.h"
#include "shim/safepoint/safepoint.h"
#include "shim/unwind/stack_capture.h"
#include "shim/unwind/unwind.h"
#include "shim/unwind/unwind_abi.h"

/* ks_init's once, the shim's own rather than pthread_once, which wakes the
 * futex of every once it completes, a system call in every process at start
 * (docs/bench.md). 0: not begun; KS_INIT_DONE; else the pid of the process
 * whose thread runs it, shifted left, with bit 0 set when a thread waits.
 * The pid keeps what pthread_once's fork generation gave: a fork child of a
 * process whose other thread was inside the init runs it again (that thread
 * is not in the child to end it). ks_init_tid is the thread that runs it: a
 * hook it calls (a pthread_create from inside the init, an allocator's
 * background thread) returns at once on that thread, where pthread_once
 * waited for itself for ever. */
#define KS_INIT_DONE (-1)
KS_HOT_DATA static int ks_init_word;
KS_HOT_DATA static pid_t ks_init_tid;

/* What libc_nonshared.a's pthread_atfork and atexit call, with the shim's
 * own handle (as they pass it): those two stubs are linked into the end of
 * the shim's .text, a 64 KB window of code that nothing else of the start
 * touches (atexit's runs at every start, pthread_atfork's where the fork
 * handlers are registered then): a page fault and 16 page mappings. */
extern void *__dso_handle __attribute__((visibility("hidden")));
extern int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void),
                             void *dso);
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);

/* A stack dump unwinds in every program thread's signal handler, and
 * libunwind finds unwind tables through dl_iterate_phdr, whose lock glibc
 * does not reset in a fork child: a fork in the middle of a dump could
 * leave it held there, and the child's first dump would hang. So a fork
 * waits for the dump in flight to end, and none starts before the fork is
 * done. A process that does not serve has none in flight: nothing taken. */
static __thread int ks_fork_holds_dump __attribute__((tls_model("initial-exec")));

/* Held by the accept thread while it loads what serving needs (dlopen of
 * libunwind and libgcc_s: ks_init_serving_once). A fork in the middle of a
 * dlopen copies the loader's state half done: the child found libunwind on
 * the loader's list unrelocated and jumped to an offset (SIGSEGV), or
 * failed ld.so's "r_state == RT_CONSISTENT" assertion (exit 127), in 3 of
 * 200 runs of invisible_test's fork child, whose fork races the parent's
 * first serving. So a fork waits for the load, KS_FORK_LOAD_WAIT_MS at
 * most: a fork from a library constructor in the program's own dlopen
 * holds the loader's lock the load waits for, and must not wait for ever.
 * A child forked without it does not load (ks_load_torn). */
KS_LOCK_DEFINE(static, ks_load_mu);
#define KS_FORK_LOAD_WAIT_MS 2000
static __thread int ks_fork_holds_load __attribute__((tls_model("initial-exec")));
static int ks_load_torn;   /* in a child forked during the load */
/* The load: not begun, under way (ks_load_mu held), done. Once done it
 * never runs again (a fork child inherits it done), so a fork stops
 * waiting for it. */
enum { KS_LOAD_NONE, KS_LOAD_RUNNING, KS_LOAD_DONE };
static int ks_load_state;

/* Single-threaded, no other thread can be loading or start to: the lock is
 * not taken (a fork + exec of a single-threaded program, the common case,
 * then writes none of the parent's pages that fork made copy-on-write). */
static void ks_fork_take_load(void)
{
    if (__libc_single_threaded ||
        __atomic_load_n(&ks_load_state, __ATOMIC_ACQUIRE) == KS_LOAD_DONE)
        return;
    for (unsigned ms = 0; ms < KS_FORK_LOAD_WAIT_MS; ms++) {
        if (ks_trylock(&ks_load_mu) == 0) {
            ks_fork_holds_load = 1;
            return;
        }
        ks_nap_ms(1);
    }
}

static void ks_fork_prepare(void)
{
    ks_fork_take_load();
    /* Threads started around the pthread_create hook (a raw clone, a
     * sanitizer's runtime) leave the table incomplete in a process that has
     * threads: complete it here, in the parent, where the loader's lock is
     * a lock like any other, so that the child never needs it (resolve.c). */
    if (!__libc_single_threaded)
        ks_real_resolve_all();
    if (ks_control_state() != KS_CTL_RUNNING)
        return;
    ks_dump_lock();
    ks_fork_holds_dump = 1;
}

/* Unlocks what ks_fork_prepare took, in the parent and in the child: there
 * the same thread holds them (unlocked, not reset: ThreadSanitizer, which
 * cannot see a reset, reported a double lock at the child's load). */
KS_FORK_PATH static void ks_fork_release(void)
{
    if (ks_fork_holds_load) {
        ks_fork_holds_load = 0;
        ks_unlock(&ks_load_mu);
    }
    if (ks_fork_holds_dump) {
        ks_fork_holds_dump = 0;
        ks_dump_unlock();
    }
}

static void ks_fork_parent(void) { ks_fork_release(); }

/* Only the forking thread lives on in the child. The shim's locks first:
 * those this thread took in prepare are unlocked, then every other is reset
 * (a parent thread may have held one at fork), and the rest take them. */
KS_FORK_PATH static void ks_after_fork_child(void)
{
    if (!ks_fork_holds_load &&
        __atomic_load_n(&ks_load_state, __ATOMIC_ACQUIRE) == KS_LOAD_RUNNING)
        ks_load_torn = 1;
    ks_fork_release();
    ks_locks_after_fork();
    ks_registry_reset_after_fork();
    ks_abort_after_fork_child();
    ks_stack_after_fork_child();
    ks_control_after_fork_child();
}

/* ---- When the fork handlers are registered ------------------------------
 * A fork child runs its handlers in the shim's text, which fork does not
 * map in the child (each first touch of a code page is a fault) and which
 * write the registry's page (a copy): two page faults and a fifth of a
 * fork+_exit+wait in a program that forks and never started a thread, a
 * shell or make, whose children have nothing to reset (docs/bench.md:
 * fork). So the handlers are registered when the process first needs
 * them: before its first thread (the pthread_create hook) and before
 * control starts (ks_control_begin), whichever comes first; a fork child
 * inherits them registered. Until then a fork's child runs no shim code;
 * its registry (the forking thread's record, with the parent's tid) is the
 * parent's, and is reset when the child registers them (ks_fork_arm_once:
 * its pid is not the one that loaded the shim). The doorbell's check for a
 * vfork child compares glibc's tid, not the record's (control.c). Without
 * glibc's tid (the mutex probe off: ThreadSanitizer and AddressSanitizer
 * builds, lock functions that are not libc's) they are registered at start,
 * as always. 1: registered, or never to be (KILLSHIM_DISABLE). */
KS_HOT_DATA static pthread_once_t ks_fork_once = PTHREAD_ONCE_INIT;
KS_HOT_DATA static pid_t ks_start_pid;   /* the process that ran ks_init */
/* This thread is inside ks_fork_arm_once: the doorbell must not start
 * control here (its ks_fork_arm would wait for this same once). */
static __thread int ks_arming __attribute__((tls_model("initial-exec")));

static void ks_fork_arm_once(void)
{
    ks_arming = 1;
    if (ks_getpid() != ks_start_pid)   /* a child of a fork before this */
        ks_registry_reset_after_fork();
    __register_atfork(ks_fork_prepare, ks_fork_parent, ks_after_fork_child, __dso_handle);
    __atomic_store_n(&ks_fork_armed, 1, __ATOMIC_RELEASE);
    ks_arming = 0;
}

KS_SIGSAFE int ks_fork_arming(void) { return ks_arming; }

/* ks_fork_arm (util.c) calls it. Not in a signal handler except the
 * doorbell's (control.c says why pthread_create, and so pthread_atfork, is
 * safe where it starts control). */
static void ks_fork_arm_now(void) { pthread_once(&ks_fork_once, ks_fork_arm_once); }

/* At exit, the socket file (file mode), as the destructor also does: not
 * redundant. glibc 2.36 runs the exit handlers in every thread that calls
 * exit at once, each taking the next entry, and the first to run out calls
 * _exit: a thread inside the loader's destructors (_dl_fini, an entry of
 * its own) may not reach the shim's before the process is gone. This entry
 * (the list's last, registered before the loader's) is a second chance:
 * without it lifecycle_test's threadexit, three threads calling exit(5),
 * left the file on a fresh machine. */
static void ks_at_exit(void *unused)
{
    (void)unused;
    ks_server_cleanup();
}

/* What serving needs but a process nobody asks should not pay for: loading
 * libunwind (and its liblzma) and libgcc_s, the personality lookups, priming
 * the dump paths (docs/bench.md: every exec'd child of a program under the
 * shim inherits the preload, and most never serve).
 * Once, on the accept thread before its first accept (a fork child inherits
 * it done); never in a signal handler or a thread being stopped. */
KS_HOT_DATA static pthread_once_t ks_serving_once = PTHREAD_ONCE_INIT;
KS_HOT_DATA static int ks_signals_ok;

static void ks_init_serving_load(void)
{
    int rc = ks_unw_load();
    if (rc)
        ks_debug("libunwind.so.8 could not be loaded (%s): no stacks, no abort", strerror(rc));
    rc = ks_abort_init_serving();
    if (rc)
        ks_debug("abort mode unavailable (%s)", strerror(rc));
    /* After the abort's dlopen of libgcc_s: no unwind through the shim's
     * frames binds its forwarders in flight from now on. */
    ks_unwind_abi_bind();
    /* The module table, built here if neither the doorbell nor the abort's
     * start (which stops early without its libraries) built it: the dumps
     * and the abort's checks look frames up in it. */
    ks_safepoint_refresh();
    if (ks_signals_ok)
        ks_stack_init_serving();
}

static void ks_init_serving_once(void)
{
    if (ks_load_torn) {
        ks_debug("forked while the parent loaded libunwind: no stacks, no abort here");
        return;
    }
    ks_lock(&ks_load_mu);
    __atomic_store_n(&ks_load_state, KS_LOAD_RUNNING, __ATOMIC_RELEASE);
    ks_init_serving_load();
    __atomic_store_n(&ks_load_state, KS_LOAD_DONE, __ATOMIC_RELEASE);
    ks_unlock(&ks_load_mu);
}

static void ks_init_serving(void) { pthread_once(&ks_serving_once, ks_init_serving_once); }

/* Notes the process that loads the shim and registers the main thread if
 * the caller is it (ks_registry_add_self does nothing the second time).
 * PID and TID are the caller's, asked of the kernel once by ks_init's
 * caller (each was asked for three times at start). */
KS_START_PATH static void ks_register_main(pid_t pid, pid_t tid)
{
    ks_start_pid = pid;
    if (tid == pid)
        ks_registry_add_self(KS_ROLE_MAIN, NULL);
}

KS_START_PATH static void ks_init_once(pid_t pid, pid_t tid)
{
    ks_debug_enabled = ks_env_on("KILLSHIM_DEBUG");
    ks_real_resolve_init();
    ks_mutex_fast_init_as(tid);
    ks_register_main(pid, tid);
    if (ks_env_on("KILLSHIM_DISABLE")) {
        ks_debug("KILLSHIM_DISABLE is set: no control socket");
        return;
    }
    ks_selfbind_init();   /* before the handlers: what they call is bound */
    ks_deliver_init();
    int rc = ks_abort_init();
    if (rc)
        ks_debug("abort mode unavailable (%s)", strerror(rc));
    rc = ks_signals_install();
    if (rc)
        ks_warn("cannot install the shim's signal handlers (%s): stacks and aborts will not work",
                strerror(rc));
    ks_signals_ok = rc == 0;
#ifdef __SANITIZE_THREAD__
    /* Under ThreadSanitizer only (a test build): libunwind loaded here, on
     * the main thread before any other, as it was before it moved to
     * ks_init_serving. Its state (mutexes, the signal mask it blocks with),
     * set up by the accept thread, is used in the dump handlers of program
     * threads that existed before; the kernel orders the two (the signal is
     * sent after the load), TSan cannot see that and reports races. */
    ks_unw_load();
#endif
    ks_signals_set_doorbell(ks_control_doorbell);
    ks_fork_arm_fn = ks_fork_arm_now;
    if (ks_mutex_tid_off)
        __atomic_store_n(&ks_fork_armed, 0, __ATOMIC_RELEASE);   /* at first need */
    else
        ks_fork_arm_now();
    __cxa_atexit(ks_at_exit, NULL, __dso_handle);
    ks_control_init(ks_init_serving);
}

/* Runs ks_init_once once (see ks_init_word); PID and TID are the caller's.
 * Uncontended, no system call; a thread that finds another inside the init
 * waits on the futex. */
KS_START_PATH static void ks_init_as(pid_t pid, pid_t tid)
{
    int s = __atomic_load_n(&ks_init_word, __ATOMIC_ACQUIRE);
    while (s != KS_INIT_DONE) {
        if (s == 0 || (s >> 1) != pid) {   /* not begun, or begun in a parent */
            if (!__atomic_compare_exchange_n(&ks_init_word, &s, (pid << 1) | (s & 1), 0,
                                             __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
                continue;
            __atomic_store_n(&ks_init_tid, tid, __ATOMIC_RELAXED);
            ks_init_once(pid, tid);
            if (__atomic_exchange_n(&ks_init_word, KS_INIT_DONE, __ATOMIC_RELEASE) & 1)
                ks_futex_wake(&ks_init_word, INT_MAX);
            return;
        }
        if (__atomic_load_n(&ks_init_tid, __ATOMIC_RELAXED) == tid)
            return;   /* a hook called from inside the init, on its thread */
        if (!(s & 1) && !__atomic_compare_exchange_n(&ks_init_word, &s, s | 1, 0,
                                                     __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
            continue;
        ks_futex_wait(&ks_init_word, s | 1);
        s = __atomic_load_n(&ks_init_word, __ATOMIC_ACQUIRE);
    }
}

/* From the hooks (a thread created before our constructor) and attach.c:
 * the system calls only until the init is done. */
KS_START_PATH void ks_init(void)
{
    if (__atomic_load_n(&ks_init_word, __ATOMIC_ACQUIRE) != KS_INIT_DONE)
        ks_init_as(ks_getpid(), ks_gettid());
}

/* ks_init may first run on a thread that is not the main one (a thread a
 * library started before our constructor, calling pthread_create): the
 * constructor always runs on the main thread and registers it then. */
__attribute__((constructor)) static void ks_constructor(void)
{
    /* A preload's constructor runs on the main thread before main; a dlopen
     * by killshim-inject --attach runs it on a thread of its own (attach.c). */
    pid_t pid = ks_getpid(), tid = ks_gettid();
    if (tid != pid) {
        __atomic_store_n(&ks_loaded_late, 1, __ATOMIC_RELEASE);
        ks_got_patch_deps();
    }
    ks_init_as(pid, tid);
    ks_register_main(pid, tid);
}

__attribute__((destructor)) static void ks_destructor(void) { ks_server_cleanup(); }

/* The shim's DT_FINI (shim/BUILD: -Wl,-fini=ks_fini), which the loader
 * calls at exit after the destructors. The default, crti.o's _fini, does
 * nothing on x86-64 (destructors run from .fini_array) and lies after the
 * end of .text: its call was the one touch of that 64 KB window of code at
 * exit, a page fault and 16 page mappings in every process. */
KS_START_PATH void ks_fini(void);
KS_START_PATH void ks_fini(void) {}
