/* See langrt.h. */
#include "langrt.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shim/core/elf_sym.h"
#include "shim/core/ks.h"

/* X(id, name, state, lib, lib, exe, exe, marker), "" where there is none:
 *   name    what the refusal calls it
 *   state   what ending a thread would leave behind
 *   lib     a basename prefix of its libraries
 *   exe     a program name: STEM, STEM3, STEM3.11, STEM3.11d...
 *   marker  a symbol only the runtime defines */
#define KS_LANGRT_TABLE(X)                                                                    \
    X(cpython, "CPython", "its thread state and the GIL", "libpython", "", "python", "",      \
      "PyEval_SaveThread")                                                                    \
    X(java, "a Java VM", "its VM thread state", "libjvm.so", "libjli.so", "java", "",         \
      "JNI_CreateJavaVM")                                                                     \
    X(ruby, "Ruby", "its thread and the GVL", "libruby", "", "ruby", "", "ruby_init")         \
    X(perl, "Perl", "its interpreter", "libperl.so", "", "perl", "", "perl_construct")        \
    X(node, "Node.js", "its isolate and event loop", "libnode.so", "", "node", "nodejs",      \
      "napi_module_register")                                                                 \
    X(dotnet, ".NET", "its managed thread", "libcoreclr.so", "", "", "", "coreclr_initialize") \
    /* OTP 24+ on x86-64 runs Erlang code with rsp on the Erlang process's    \
     * own stack, inside its heap block: an abort that single-stepped a       \
     * scheduler from libc into that code wrote its trap frames there, and    \
     * the VM died in its garbage collector (5 of 5 runs of OTP 25). */       \
    X(beam, "Erlang's BEAM", "its scheduler and the Erlang processes it runs", "", "",        \
      "beam.smp", "beam", "erts_schedule")                                                    \
    /* A Go program with cgo, or a Go c-shared library: any name; its runtime \
     * exports _cgo_topofstack. Goroutines run on 2 KiB stacks that Go moves  \
     * and reads return addresses from: an abort that stepped into one wrote  \
     * over a goroutine's stack and the program died ("unexpected return pc   \
     * ... called from 0x0"). */                                              \
    X(go, "Go", "its scheduler and the goroutines it runs", "", "", "", "", "_cgo_topofstack") \
    /* Debian's mono-sgen has the runtime linked in; embedders load           \
     * libmonosgen-2.0.so. The sweep (tools/realprogs/runtimes.sh, Mono 6.8)  \
     * saw auto cancel Mono's own Finalizer thread, blocked in a futex, after \
     * 1 s: its finalizer queue then has no one to serve it. */               \
    X(mono, "Mono", "its managed thread (or, for its Finalizer thread, the finalizer queue)", \
      "libmonosgen-2.0.so", "libmono-2.0.so", "mono", "mono-sgen", "mono_jit_init")          \
    /* Guile 3.0 (Boehm GC) runs Scheme in JIT code without unwind          \
     * information: the sweep saw cancel of a worker refused only for that,   \
     * and an abort single-step it out of libc and stay pending. */           \
    X(guile, "Guile", "its thread state (scm_i_thread) and the Scheme code it runs",          \
      "libguile-3.0.so", "libguile-2.2.so", "guile", "", "scm_with_guile")                     \
    /* Boehm's collector (libgc: Guile, w3m, ECL, Inkscape...) starts its     \
     * marker threads, and with GC_THREADS the program's own threads, through \
     * libgc. A marker aborted while it helped a collection left the          \
     * collector waiting for it: the program hung (1 of 6 runs of a C         \
     * program that allocates in a loop, libgc 8.2). Threads registered with  \
     * it are refused too (a stack with a frame of libgc's start routine):    \
     * cancel is what libgc supports for them, and --force does it. No        \
     * marker symbol: a program linked with libgc statically is not taken for \
     * a runtime as a whole. */                                               \
    X(boehm, "the Boehm GC", "its collector (a marker's share of a collection, or the "       \
      "collection under way)", "libgc.so", "", "", "", "")

static const struct ks_langrt_strings {
    char none[1];                 /* offset 0: "", every field of row 0 */
#define KS_X(id, name, state, l0, l1, e0, e1, marker)                                         \
    char id##_name[sizeof name], id##_state[sizeof state], id##_l0[sizeof l0],               \
        id##_l1[sizeof l1], id##_e0[sizeof e0], id##_e1[sizeof e1], id##_marker[sizeof marker];
    KS_LANGRT_TABLE(KS_X)
#undef KS_X
} ks_rt_strings = {
    "",
#define KS_X(id, name, state, l0, l1, e0, e1, marker) name, state, l0, l1, e0, e1, marker,
    KS_LANGRT_TABLE(KS_X)
#undef KS_X
};

enum {
    KS_RT_NONE,
#define KS_X(id, name, state, l0, l1, e0, e1, marker) KS_RT_##id,
    KS_LANGRT_TABLE(KS_X)
#undef KS_X
    KS_NLANGRT
};

/* Offsets into ks_rt_strings, not pointers (as resolve.c's rules): as
 * pointers the table was 504 bytes of RELRO and 39 relocations, each one
 * applied in every process at load. */
static const struct ks_langrt {
    uint16_t name, state, libs[2], exes[2], marker;
} ks_langrts[KS_NLANGRT] = {
#define KS_O(f) offsetof(struct ks_langrt_strings, f)
#define KS_X(id, name, state, l0, l1, e0, e1, marker)                                         \
    [KS_RT_##id] = {KS_O(id##_name), KS_O(id##_state), {KS_O(id##_l0), KS_O(id##_l1)},       \
                    {KS_O(id##_e0), KS_O(id##_e1)}, KS_O(id##_marker)},
    KS_LANGRT_TABLE(KS_X)
#undef KS_X
#undef KS_O
};
_Static_assert(sizeof ks_rt_strings <= UINT16_MAX, "the table's offsets are 16 bits");

/* Field OFF of the table, or NULL where the runtime has none (""). */
static const char *ks_rt_str(uint16_t off)
{
    const char *s = (const char *)&ks_rt_strings + off;
    return *s ? s : NULL;
}

/* STEM followed by a version at most: "python", "python3.11", "python3.11d". */
static int ks_exe_is(const char *base, const char *stem)
{
    if (!ks_starts(base, stem))
        return 0;
    const char *s = base + strlen(stem);
    while ((*s >= '0' && *s <= '9') || *s == '.')
        s++;
    if (*s == 'd' || *s == 'm' || *s == 'u')
        s++;
    return *s == '\0';
}

int ks_langrt_of_name(const char *base)
{
    for (int rt = 1; rt < KS_NLANGRT; rt++) {
        const struct ks_langrt *r = &ks_langrts[rt];
        for (int i = 0; i < 2; i++) {
            const char *lib = ks_rt_str(r->libs[i]), *exe = ks_rt_str(r->exes[i]);
            if ((lib && ks_starts(base, lib)) || (exe && ks_exe_is(base, exe)))
                return rt;
        }
    }
    return 0;
}

/* The module of ADDR: its load address and basename. dladdr names the main
 * program by argv[0] ("python3"): the file it runs is /proc/self/exe
 * ("python3.11"). BUF holds that name. */
static int ks_module_of(uintptr_t addr, void **base, const char **name, char *buf, size_t cap)
{
    Dl_info di;
    if (!addr || !dladdr((void *)addr, &di) || !di.dli_fname)
        return -1;
    const char *path = di.dli_fname;
    if (strcmp(path, program_invocation_name) == 0) {
        ssize_t n = readlink("/proc/self/exe", buf, cap - 1);
        if (n > 0) {
            buf[n] = '\0';
            path = buf;
        }
    }
    *base = di.dli_fbase;
    *name = ks_basename(path);
    return 0;
}

/* The base of the loaded object that defines MARKER, as dladdr's
 * dli_fbase (its lowest segment), or NULL. With the shim's own ELF lookup,
 * not dlsym: a failed dlsym leaves an error string malloc'd in the asking
 * thread (a connection thread: LeakSanitizer saw it at exit). */
static void *ks_marker_base(const char *marker)
{
    struct ks_elf_loaded l;
    if (!marker || ks_elf_find_loaded(marker, NULL, &l) != 0)
        return NULL;
    uintptr_t lo = UINTPTR_MAX;
    for (size_t i = 0; i < l.phnum; i++)
        if (l.phdr[i].p_type == PT_LOAD && l.phdr[i].p_vaddr < lo)
            lo = l.phdr[i].p_vaddr;
    return (void *)((l.obj.base + (lo == UINTPTR_MAX ? 0 : lo)) & ~(uintptr_t)4095);
}

int ks_langrt_scan(const uintptr_t *addrs, int n, uintptr_t *at, char *module, size_t cap)
{
    /* The modules that define a marker (a runtime whose marker is not
     * exported is known by its name). */
    void *marked[KS_NLANGRT] = {NULL};
    for (int rt = 1; rt < KS_NLANGRT; rt++)
        marked[rt] = ks_marker_base(ks_rt_str(ks_langrts[rt].marker));
    void *last = NULL;
    for (int i = 0; i < n; i++) {
        void *base;
        const char *name;
        char buf[256];
        if (ks_module_of(addrs[i], &base, &name, buf, sizeof buf) != 0 || base == last)
            continue;
        last = base;
        int rt = ks_langrt_of_name(name);
        for (int k = 1; !rt && k < KS_NLANGRT; k++)
            if (marked[k] == base)
                rt = k;
        if (rt) {
            if (at)
                *at = addrs[i];
            snprintf(module, cap, "%s", name);
            return rt;
        }
    }
    return 0;
}

const char *ks_langrt_name(int rt)
{
    return rt > 0 && rt < KS_NLANGRT ? ks_rt_str(ks_langrts[rt].name) : "?";
}

void ks_langrt_refusal(int rt, const char *module, pid_t tid, const char *what, char *why,
                       size_t cap)
{
    const struct ks_langrt *r = &ks_langrts[rt > 0 && rt < KS_NLANGRT ? rt : 0];
    const char *name = ks_rt_str(r->name), *state = ks_rt_str(r->state);
    snprintf(why, cap, "thread %d %s %s (%s): ending it natively would strand %s, and the "
             "rest of the program would hang or break; killshim does not cancel or abort a "
             "language runtime's threads (--force does)%s", (int)tid, what,
             name ? name : "a language runtime", module, state ? state : "its state",
             rt == KS_RT_cpython ? "; -m python raises SystemExit in it instead" : "");
}
