/* See list_walk.h. Chunks are taken with one atomic increment of next, so
 * each is written by exactly one walker, in increasing order; a chunk's
 * state (a futex word) goes 0 -> 2 once its rows are in its buffer, stored
 * with release by its writer and loaded with acquire by the connection
 * thread, which alone reads, hands on and frees the buffers. The job is
 * shared by reference count; the second walker stays until the caller is
 * through with its own chunks (joined): a thread's end unlinks it from the
 * registry, and the caller's remaining rows would each look their record up
 * again (cmd_list.c's ks_list_in_call). */
#include "list_walk.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#include "shim/core/ks.h"
#include "shim_thread.h"

/* Rows a chunk: about 25 KiB of reply, a fraction of a part, and 40 chunks
 * for 10,000 threads. */
#define KS_WALK_CHUNK 256
/* The second walker's stack: a row needs a few KiB. */
#define KS_WALK_STACK (128 * 1024)

struct ks_walk_chunk {
    int state;   /* 0 being written or not taken yet, 2 done (a futex word) */
    int count;
    struct ks_out out;
};

struct ks_walk_job {
    int refs;     /* the caller and the walker: the last frees it */
    int joined;   /* 1 once the caller is through (a futex word) */
    int next;     /* the next chunk to take */
    int n, nchunks;
    ks_walk_fn *fn;
    void *arg;
    struct ks_walk_chunk chunk[];
};

static void ks_walk_put(struct ks_walk_job *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (int i = 0; i < j->nchunks; i++)
        ks_out_free(&j->chunk[i].out);
    free(j);
}

/* Takes the next free chunk and writes it for WHO: 0 if none was left. */
static int ks_walk_take(struct ks_walk_job *j, int who)
{
    int k = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
    if (k >= j->nchunks)
        return 0;
    struct ks_walk_chunk *c = &j->chunk[k];
    int from = k * KS_WALK_CHUNK, to = from + KS_WALK_CHUNK < j->n ? from + KS_WALK_CHUNK : j->n;
    c->count = j->fn(j->arg, who, &c->out, from, to);
    __atomic_store_n(&c->state, 2, __ATOMIC_RELEASE);
    ks_futex_wake(&c->state, 1);
    return 1;
}

static void *ks_walk_second(void *arg)
{
    struct ks_walk_job *j = arg;
    while (ks_walk_take(j, 1))
        ;
    while (!__atomic_load_n(&j->joined, __ATOMIC_ACQUIRE))
        ks_futex_wait(&j->joined, 0);
    ks_walk_put(j);
    return NULL;
}

/* How many CPUs this thread may run on; 0 if unknown. sched_getaffinity and
 * CPU_COUNT as the system call and a popcount: glibc's need two symbol
 * versions of their own (shim/core/ks.h). The kernel returns the bytes it
 * wrote (its mask's size), not 0; the rest of the set is zeroed, as glibc's
 * wrapper does. */
static int ks_cpus_allowed(void)
{
    unsigned long set[sizeof(cpu_set_t) / sizeof(unsigned long)];
    long got = syscall(SYS_sched_getaffinity, 0L, sizeof set, set);
    if (got < 0)
        return 0;
    memset((char *)set + got, 0, sizeof set - (size_t)got);
    int n = 0;
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
        n += __builtin_popcountl(set[i]);
    return n;
}

static struct ks_walk_job *ks_walk_start(int n, ks_walk_fn *fn, void *arg)
{
    if (n < KS_WALK_MIN || ks_cpus_allowed() < 2)
        return NULL;
    int nchunks = (n + KS_WALK_CHUNK - 1) / KS_WALK_CHUNK;
    struct ks_walk_job *j = calloc(1, sizeof *j + (size_t)nchunks * sizeof j->chunk[0]);
    if (!j)
        return NULL;
    j->refs = 2;
    j->n = n;
    j->nchunks = nchunks;
    j->fn = fn;
    j->arg = arg;
    if (ks_spawn_shim_thread("killshim-list", ks_walk_second, j, KS_WALK_STACK) != 0) {
        free(j);
        return NULL;
    }
    ks_debug("list: a second walker shares %d tasks in %d chunks", n, nchunks);
    return j;
}

/* Hands chunk C's rows on to OUT in parts and frees its buffer. */
static void ks_walk_emit(struct ks_out *out, struct ks_walk_chunk *c)
{
    if (c->out.oom)
        out->oom = 1;   /* rows lost: the reply must not claim to be whole */
    size_t at = 0;
    while (at < c->out.len && !out->oom) {
        size_t len = c->out.len - at;
        if (len > KS_OUT_PART) {
            const char *eol = memrchr(c->out.buf + at, '\n', KS_OUT_PART);
            len = eol ? (size_t)(eol - (c->out.buf + at)) + 1 : len;
        }
        ks_out_raw(out, c->out.buf + at, len);
        ks_out_part(out);
        at += len;
    }
    ks_out_free(&c->out);
}

int ks_walk_ordered(struct ks_out *out, int n, ks_walk_fn *fn, void *arg)
{
    struct ks_walk_job *j = ks_walk_start(n, fn, arg);
    if (!j)
        return fn(arg, 0, out, 0, n);
    int count = 0;
    for (int e = 0; e < j->nchunks; e++) {
        struct ks_walk_chunk *c = &j->chunk[e];
        for (;;) {
            if (__atomic_load_n(&c->state, __ATOMIC_ACQUIRE) == 2)
                break;
            if (!ks_walk_take(j, 0))   /* all taken: the second walker writes this one */
                ks_futex_wait(&c->state, 0);
        }
        count += c->count;
        ks_walk_emit(out, c);
    }
    __atomic_store_n(&j->joined, 1, __ATOMIC_RELEASE);
    ks_futex_wake(&j->joined, 1);
    ks_walk_put(j);
    return count;
}
