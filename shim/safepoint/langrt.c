/* See langrt.h. */
#include "langrt.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shim/core/elf_sym.h"
#include "shim/core/ks.h"

struct ks_langrt {
    const char *name;
    const char *state;            /* what ending a thread would leave behind */
    const char *libs[2];          /* basename prefixes of its libraries */
    const char *exes[2];          /* program names: STEM, STEM3, STEM3.11, STEM3.11d... */
    const char *marker;           /* a symbol only the runtime defines */
};

static const struct ks_langrt ks_langrts[] = {
    {NULL, NULL, {NULL}, {NULL}, NULL},
    {"CPython", "its thread state and the GIL", {"libpython", NULL}, {"python", NULL},
     "PyEval_SaveThread"},
    {"a Java VM", "its VM thread state",
     {"libjvm.so", "libjli.so"}, {"java", NULL}, "JNI_CreateJavaVM"},
    {"Ruby", "its thread and the GVL", {"libruby", NULL}, {"ruby", NULL}, "ruby_init"},
    {"Perl", "its interpreter", {"libperl.so", NULL}, {"perl", NULL}, "perl_construct"},
    {"Node.js", "its isolate and event loop", {"libnode.so", NULL}, {"node", "nodejs"},
     "napi_module_register"},
    {".NET", "its managed thread", {"libcoreclr.so", NULL}, {NULL}, "coreclr_initialize"},
    /* OTP 24+ on x86-64 runs Erlang code with rsp on the Erlang process's
     * own stack, inside its heap block: an abort that single-stepped a
     * scheduler from libc into that code wrote its trap frames there, and
     * the VM died in its garbage collector (5 of 5 runs of OTP 25). */
    {"Erlang's BEAM", "its scheduler and the Erlang processes it runs", {NULL},
     {"beam.smp", "beam"}, "erts_schedule"},
    /* A Go program with cgo, or a Go c-shared library: any name; its runtime
     * exports _cgo_topofstack. Goroutines run on 2 KiB stacks that Go moves
     * and reads return addresses from: an abort that stepped into one wrote
     * over a goroutine's stack and the program died ("unexpected return pc
     * ... called from 0x0"). */
    {"Go", "its scheduler and the goroutines it runs", {NULL}, {NULL}, "_cgo_topofstack"},
};
#define KS_NLANGRT ((int)(sizeof ks_langrts / sizeof ks_langrts[0]))

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
        for (int i = 0; i < 2; i++)
            if ((r->libs[i] && ks_starts(base, r->libs[i])) ||
                (r->exes[i] && ks_exe_is(base, r->exes[i])))
                return rt;
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
    if (ks_elf_find_loaded(marker, NULL, &l) != 0)
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
        marked[rt] = ks_marker_base(ks_langrts[rt].marker);
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

const char *ks_langrt_name(int rt) { return rt > 0 && rt < KS_NLANGRT ? ks_langrts[rt].name : "?"; }

void ks_langrt_refusal(int rt, const char *module, pid_t tid, const char *what, char *why,
                       size_t cap)
{
    const struct ks_langrt *r = &ks_langrts[rt > 0 && rt < KS_NLANGRT ? rt : 0];
    snprintf(why, cap, "thread %d %s %s (%s): ending it natively would strand %s, and the "
             "rest of the program would hang or break; killshim does not cancel or abort a "
             "language runtime's threads (--force does)%s", (int)tid, what,
             r->name ? r->name : "a language runtime", module, r->state ? r->state : "its state",
             rt == 1 ? "; -m python raises SystemExit in it instead" : "");
}
