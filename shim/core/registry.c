/* Thread registry: see registry.h for the invariants. */
#include "registry.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "blocking.h"
#include "ks.h"
#include "lock.h"
#include "mutex_fast.h"

__thread struct ks_thread ks_self_rec __attribute__((tls_model("initial-exec")));

/* A plain mutex taken through the real function: the shim's own locking must
 * not be counted as the program's (interpose_lock.c). Static initializer, so
 * it works before ks_init. */
KS_LOCK_DEFINE(static, ks_reg_mu);
/* The list and the counters, in the hot data (ks.h): the main thread's
 * registration at start writes them, and that page is written at start
 * anyway. A fork child's reset writes them too (one page copied, as the
 * table's own was). */
KS_HOT_DATA static struct {
    struct ks_thread *head;
    int count;
    int starting;            /* see ks_registry_starting_add */
    unsigned exited_next;    /* ring slot = next % KS_EXITED_RING */
    unsigned gen;            /* ring entries of another (a parent's) are ignored */
    int hashed;              /* the buckets index every linked record */
} ks_reg;
/* The buckets index the list by tid: a dump of N threads looks each up
 * (stack_take.c), which a list walk made N^2/2 steps (10,000 threads: 50
 * million, seconds). Filled when a second record is linked (ks_hash_all),
 * so that a process that never starts a thread never touches their page:
 * the main thread's registration was a page fault of its own in every
 * process, exec'd children included (docs/bench.md). Until then, and in a
 * fork child until it links a second record, ks_registry_find walks the
 * list of one; buckets left from before (the parent's) are cleared then.
 * 248 of them, under 2 KiB, aligned to 2 KiB: never across a page boundary,
 * so that a fork child writes one page for them (it crossed one: two faults
 * a fork, docs/bench.md). Zero-filled, in a section of its own that the
 * linker places after .bss (.lbss, which the small code model addresses as
 * any other): in .data their alignment padded .data by up to 4 KiB, and in
 * .bss it aligned .bss's start to a page of its own that the exit then
 * touched. */
#define KS_REG_BUCKETS 248
static struct ks_thread *ks_reg_bucket[KS_REG_BUCKETS]
    __attribute__((section(".lbss.ks_reg"), aligned(2048)));
_Static_assert(sizeof ks_reg_bucket <= 2048, "the buckets must fit their 2 KiB alignment");
static _Atomic uint64_t ks_next_id = 1;

static __thread struct ks_block ks_self_block __attribute__((tls_model("initial-exec")));
/* Tids that unlinked themselves lately (see ks_registry_exiting), under
 * ks_reg_mu. A ring: the oldest are forgotten first. */
#define KS_EXITED_RING 4096   /* about 4 s of exits at 1,000 threads/s */
struct ks_exited {
    pid_t tid;
    unsigned gen;   /* ks_reg.gen when written */
    uint64_t ns;
};
/* 64 KiB, mapped before the first thread that may end exists
 * (ks_registry_prepare_exits), not in .bss (ks.h: ks_lazy). */
KS_HOT_DATA static struct ks_lazy ks_exited_map =
    KS_LAZY(sizeof(struct ks_exited) * KS_EXITED_RING, "the ring of exited threads");

KS_FORK_PATH KS_SIGSAFE struct ks_block *ks_block_self(void) { return &ks_self_block; }

/* Both variables live in this module's TLS block, whose layout is the same in
 * every thread (the block is a copy of one template): the distance from a
 * thread's record to its block state is the same for all threads. */
KS_SIGSAFE struct ks_block *ks_block_of(struct ks_thread *t)
{
    /* Each address is materialized whole (thread pointer included): folded
     * into one "t + off(block) - off(rec)", GCC emits a sub from the GOT that
     * the linker's TLS relaxation in an executable gets wrong. */
    char *blk = (char *)&ks_self_block, *rec = (char *)&ks_self_rec;
    __asm__("" : "+r"(blk));
    __asm__("" : "+r"(rec));
    return (struct ks_block *)((char *)t + (blk - rec));
}

KS_THREAD_PATH void ks_registry_starting_add(int delta) { __atomic_add_fetch(&ks_reg.starting, delta, __ATOMIC_RELEASE); }
int ks_registry_starting(void) { return __atomic_load_n(&ks_reg.starting, __ATOMIC_ACQUIRE); }

KS_THREAD_PATH void ks_registry_prepare_exits(void) { (void)ks_lazy_get(&ks_exited_map); }

int ks_registry_exiting(pid_t tid)
{
    const struct ks_exited *ks_exited = ks_lazy_peek(&ks_exited_map);
    if (!ks_exited)
        return 0;
    uint64_t now = ks_now_ns();
    for (unsigned i = 0; i < KS_EXITED_RING; i++)
        if (ks_exited[i].tid == tid && ks_exited[i].gen == ks_reg.gen &&
            now - ks_exited[i].ns < (uint64_t)KS_EXITING_MS * 1000000u)
            return 1;
    return 0;
}

void ks_registry_lock(void) { ks_lock(&ks_reg_mu); }
void ks_registry_unlock(void) { ks_unlock(&ks_reg_mu); }

struct ks_thread *ks_registry_first(void) { return ks_reg.head; }
int ks_registry_count(void) { return ks_reg.count; }
/* Only remove_self unlinks (each bumps exited_next); a fork child's reset
 * bumps gen. Both only grow. */
unsigned ks_registry_unlinks(void) { return ks_reg.exited_next + ks_reg.gen; }

static inline struct ks_thread **ks_bucket(pid_t tid)
{
    return &ks_reg_bucket[(unsigned)tid % KS_REG_BUCKETS];
}

struct ks_thread *ks_registry_find(pid_t tid)
{
    for (struct ks_thread *t = ks_reg.hashed ? *ks_bucket(tid) : ks_reg.head; t;
         t = ks_reg.hashed ? t->hnext : t->next)
        if (t->tid == tid)
            return t;
    return NULL;
}

/* Lock held: T joins its tid's bucket. */
static inline void ks_hash_in(struct ks_thread *t)
{
    struct ks_thread **b = ks_bucket(t->tid);
    t->hnext = *b;
    *b = t;
}

/* Lock held: the buckets start indexing the list (a second record is being
 * linked). Those still set are a fork parent's: cleared, read first (a read
 * copies nothing in a fork child). */
KS_THREAD_PATH __attribute__((noinline)) static void ks_hash_all(void)
{
    for (int i = 0; i < KS_REG_BUCKETS; i++)
        if (ks_reg_bucket[i])
            ks_reg_bucket[i] = NULL;
    for (struct ks_thread *t = ks_reg.head; t; t = t->next)
        ks_hash_in(t);
    ks_reg.hashed = 1;
}

/* Lock held; T->tid set. */
KS_FORK_PATH static void ks_link(struct ks_thread *t)
{
    if (!ks_reg.hashed && ks_reg.head)
        ks_hash_all();
    ks_reg.count++;
    t->prev = NULL;
    t->next = ks_reg.head;
    if (ks_reg.head)
        ks_reg.head->prev = t;
    ks_reg.head = t;
    t->hnext = NULL;
    if (ks_reg.hashed)
        ks_hash_in(t);
    t->linked = 1;
}

/* The caller's tid: glibc's own copy in struct pthread where the mutex
 * probe found it (mutex_fast.h), else the system call. The kernel writes
 * that copy before the thread first runs (CLONE_PARENT_SETTID), and in a
 * fork child before any atfork handler; glibc's own mutexes read it from
 * the thread's first instruction on. A gettid was a system call in every
 * create+join (90 ns here) and every fork. */
static inline pid_t ks_self_tid(void)
{
    pid_t tid = ks_mutex_self_tid();
    return tid > 0 ? tid : ks_gettid();
}

/* In the start path's text (the main thread registers at start), which is
 * in .text.hot beside the thread path's. */
KS_START_PATH void ks_registry_add_self(enum ks_role role, void *start)
{
    struct ks_thread *t = &ks_self_rec;
    if (t->linked)
        return;
    t->tid = ks_self_tid();
    t->role = (uint8_t)role;
    t->handle = ks_pthread_self();
    t->start_routine = start;
    t->id = atomic_fetch_add(&ks_next_id, 1);
    /* The main thread's start is the process's, which /proc shows
     * (ks_process_started_ns) to whoever needs it: a clock read here was a
     * system call at every start (the vDSO's would fault its page in). */
    t->created_ns = role == KS_ROLE_MAIN ? 0 : ks_now_ns();
    ks_registry_lock();
    ks_link(t);
    ks_registry_unlock();
}

KS_THREAD_PATH static void ks_unlink(struct ks_thread *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        ks_reg.head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    for (struct ks_thread **p = ks_bucket(t->tid); ks_reg.hashed && *p; p = &(*p)->hnext)
        if (*p == t) {
            *p = t->hnext;
            break;
        }
    t->next = t->prev = t->hnext = NULL;
    t->linked = 0;
    ks_reg.count--;
}

KS_THREAD_PATH void ks_registry_remove_self(uint64_t now)
{
    struct ks_thread *t = &ks_self_rec;
    if (!t->linked)
        return;
    struct ks_exited *ring = ks_lazy_peek(&ks_exited_map);   /* NULL: not kept */
    ks_registry_lock();
    ks_unlink(t);
    if (ring) {
        struct ks_exited *e = &ring[ks_reg.exited_next % KS_EXITED_RING];
        e->tid = t->tid;
        e->ns = now;
        e->gen = ks_reg.gen;
        ks_reg.exited_next++;
        /* The next exit's entry, asked for ahead (as the next grave's,
         * graveyard.c says why): a line of the ring holds 4 of them, last
         * written 4,096 exits ago. */
        __builtin_prefetch(&ring[ks_reg.exited_next % KS_EXITED_RING], 1, 3);
    }
    ks_registry_unlock();
}

/* In the child of fork only the calling thread exists; the others' records
 * point into TLS blocks that the child still maps but whose threads are gone.
 * (The lock is reset with every shim lock, lock.h.) */
KS_FORK_PATH void ks_registry_reset_after_fork(void)
{
    struct ks_thread *self = &ks_self_rec;
    int was_linked = self->linked;
    ks_reg.head = NULL;
    ks_reg.hashed = 0;   /* the parent's buckets: cleared when a second record links */
    ks_reg.count = 0;
    ks_reg.starting = 0;   /* creations in flight were the parent's threads' */
    ks_reg.gen++;   /* the parent's exits are not the child's (no clock read: see ks.h) */
    self->next = self->prev = self->hnext = NULL;
    self->linked = 0;
    if (was_linked) {   /* its id stays: ids are unique within a process */
        self->tid = ks_self_tid();
        ks_link(self);
    }
}

int ks_registry_with_linked(pid_t tid, uint64_t id, int (*fn)(struct ks_thread *, void *),
                            void *arg)
{
    ks_registry_lock();
    struct ks_thread *t = ks_registry_find(tid);
    int rc = !t || (id && t->id != id) ? ESRCH : fn(t, arg);
    ks_registry_unlock();
    return rc;
}

#define KS_YOUNG_MS 200
#define KS_STARTING_MAX_MS 3000

enum ks_settle ks_registry_settle(pid_t tid, unsigned long long age_ms)
{
    uint64_t t0 = ks_now_ns();
    for (;;) {
        /* Read before the lookup: the task was in /proc before this read,
         * so if its creation were still in flight the count would include
         * it. Read after, a thread that registers in between would be
         * missed by both and called foreign. */
        int starting = ks_registry_starting();
        enum ks_settle v = KS_SETTLE_FOREIGN;
        ks_registry_lock();
        if (ks_registry_find(tid))
            v = KS_SETTLE_LINKED;
        else if (ks_registry_exiting(tid))
            v = KS_SETTLE_EXITING;
        ks_registry_unlock();
        unsigned long long age = age_ms + (ks_now_ns() - t0) / 1000000u;
        if (v != KS_SETTLE_FOREIGN ||
            (age >= KS_YOUNG_MS && (starting <= 0 || age >= KS_STARTING_MAX_MS)))
            return v;
        ks_nap_ms(1);
    }
}

const char *ks_role_name(int role)
{
    return role == KS_ROLE_MAIN ? "main" : role == KS_ROLE_SHIM ? "shim" : "app";
}

uintptr_t ks_thread_start_pc;   /* see registry.h */
