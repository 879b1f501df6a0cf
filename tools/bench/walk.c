/* The doorbell's safety walk (ks_redirect_safe, shim/safepoint/redirect.c):
 * ns per walk with the shim's own CFI stepper (cfi_step.h) against the walk
 * it replaced, which stepped with libunwind (the shim's binding: uncached,
 * every checked read probed through the kernel, unwind_mem.h). Same stack,
 * same frames, same module table, same run.
 *
 * The walked stack: DEPTH frames of libwalk_chain.so (the program's code),
 * then the function of this binary that called it, registered as the
 * "thread start" (this binary holds the shim's code: the walk ends there and
 * says "safe", as on a thread the shim started). Usage: bench_walk [DEPTH]. */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "shim/core/registry.h"
#include "shim/safepoint/redirect.h"
#include "shim/safepoint/safepoint.h"
#include "shim/unwind/unwind.h"
#include "tests/unit/unw_walk.h"
#include "tools/bench/stats.h"

#define KB_BATCH 200
#define KB_RUNS 31

static struct kb_samples kb_new, kb_old;
static int kb_only_new;   /* "cfi" as the second argument: for a profiler */
static int kb_verdict_new = -1, kb_verdict_old = -1;

static void kb_measure(ucontext_t *uc)
{
    for (int run = 0; run < KB_RUNS; run++) {
        uint64_t t0 = kb_now_ns();
        for (int i = 0; i < KB_BATCH; i++)
            kb_verdict_new = ks_redirect_safe(uc);
        uint64_t t1 = kb_now_ns();
        for (int i = 0; i < KB_BATCH; i++)
            kb_verdict_old = kb_only_new ? 1 : ks_unw_walk_safe(uc);
        uint64_t t2 = kb_now_ns();
        kb_add(&kb_new, (double)(t1 - t0) / KB_BATCH);
        kb_add(&kb_old, (double)(t2 - t1) / KB_BATCH);
    }
}

static int (*kb_chain)(int, void (*)(ucontext_t *));

__attribute__((noinline)) static void kb_start(int depth)
{
    kb_chain(depth, kb_measure);
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    int depth = argc > 1 ? atoi(argv[1]) : 8;
    kb_only_new = argc > 2 && strcmp(argv[2], "cfi") == 0;
    char exe[PATH_MAX], lib[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 1;
    exe[n] = 0;
    snprintf(lib, sizeof lib, "%s/libwalk_chain.so", dirname(exe));
    void *h = dlopen(lib, RTLD_NOW);
    kb_chain = h ? (int (*)(int, void (*)(ucontext_t *)))dlsym(h, "kb_walk_chain") : NULL;
    if (!kb_chain) {
        fprintf(stderr, "bench_walk: %s\n", dlerror());
        return 1;
    }
    if (ks_safepoint_refresh() != 0 || ks_unw_load() != 0) {
        fprintf(stderr, "bench_walk: no module table or no libunwind\n");
        return 1;
    }
    ks_thread_start_set((uintptr_t)kb_start);
    kb_start(depth);
    if (kb_verdict_new != 1 || kb_verdict_old != 1) {
        fprintf(stderr, "bench_walk: the walks said %d (cfi_step) and %d (libunwind), not 1\n",
                kb_verdict_new, kb_verdict_old);
        return 1;
    }
    char what[64];
    snprintf(what, sizeof what, "doorbell safety walk, %d program frames", depth + 1);
    struct kb_target none = {KB_GOAL_NONE, 0, "-"};
    kb_row(what, KB_NS, "cfi_step", &kb_new, "libunwind", &kb_old, &none);
    return 0;
}
