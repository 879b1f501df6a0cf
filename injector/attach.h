/* killshim-inject --attach: loading libkillshim.so into a running program
 * that was not started under it (docs/attach.md).
 *
 * ptrace is used once, on one thread, for about a millisecond: the thread
 * is seized and interrupted where it sits in a plain blocking system call,
 * made to map two pages and to call pthread_create, and put back exactly as
 * it was (every register, the vector state, the interrupted call restarted
 * as the kernel would have). The new thread dlopens the shim and calls its
 * entry, killshim_attach_start (shim/attach.c), which starts the control
 * server: from then on the injector talks to the program as to one started
 * under the shim. */
#ifndef KSI_ATTACH_H
#define KSI_ATTACH_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "maps_view.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The block the new thread reads (attach_stub.S: the offsets are fixed
 * there). Lives in the data page the injector maps in the target. */
struct ksi_attach_block {
    uint64_t dlopen, dlsym, dlerror;   /* the target's libc functions */
    uint64_t status;                   /* 0 pending, 1 failed, 0x100 + entry's result */
    uint64_t handle, error;            /* dlopen's result; dlerror()'s message */
    uint64_t thread;                   /* pthread_create's pthread_t */
    uint64_t pthread_detach;
    uint64_t close;                    /* libc's close */
    int64_t memfd;                     /* the memfd the library is in, or -1 */
    char path[3072 - 80];              /* the library, as the target opens it */
    char entry[64];                    /* "killshim_attach_start" */
};

static_assert(__builtin_offsetof(struct ksi_attach_block, pthread_detach) == 56, "attach_stub.S");
static_assert(__builtin_offsetof(struct ksi_attach_block, close) == 64, "attach_stub.S");
static_assert(__builtin_offsetof(struct ksi_attach_block, memfd) == 72, "attach_stub.S");
static_assert(__builtin_offsetof(struct ksi_attach_block, path) == 80, "attach_stub.S");
static_assert(__builtin_offsetof(struct ksi_attach_block, entry) == 3072, "attach_stub.S");
static_assert(sizeof(struct ksi_attach_block) <= 4096, "one page");

/* Why an attach failed: a sentence for the user, and the injector's exit
 * code (injector.h). */
struct ksi_attach_err {
    int code;
    char msg[512];
};

/* What an attach did, for its one line of report. */
struct ksi_attach_info {
    int already;          /* the shim was there: nothing was done */
    pid_t tid;            /* the borrowed thread */
    long nr;              /* the system call it sat in */
    double borrowed_ms;   /* from PTRACE_SEIZE to PTRACE_DETACH */
    double total_ms;      /* until the shim's control server ran */
};

/* Attaches PID (loads SHIM into it) unless it already maps the shim.
 * Returns 0 (loaded now, or already there) with INFO filled, or -1 with E
 * filled. TIMEOUT_MS bounds the wait for the loader in the target. */
int ksi_attach(pid_t pid, const char *shim, int timeout_ms, struct ksi_attach_info *info,
               struct ksi_attach_err *e);

/* ---- Between the attach files ------------------------------------------ */

/* attach_check.c: refuses what cannot be done safely (not glibc x86-64 and
 * dynamic, seccomp, traced, Yama) and picks the thread to borrow: one in a
 * plain blocking system call. */
int ksi_attach_check(pid_t pid, const struct ksi_maps *m, struct ksi_attach_err *e);
pid_t ksi_attach_pick_thread(pid_t pid, const struct ksi_maps *m, struct ksi_attach_err *e);
/* The explanation of a failed PTRACE_SEIZE (ERR), naming Yama's setting. */
void ksi_attach_seize_error(pid_t pid, int err, struct ksi_attach_err *e);
/* The same for a given ptrace_scope (-1: no Yama), for the unit test. */
void ksi_attach_seize_msg(pid_t pid, int err, long scope, struct ksi_attach_err *e);

/* attach_sym.c: the address of NAME in PID's libc, from the file's dynamic
 * symbol table and the mapping's base (0 if not found). */
struct ksi_libc {
    uint64_t pthread_create, pthread_detach, dlopen, dlsym, dlerror, close;
};
int ksi_attach_libc(pid_t pid, const struct ksi_maps *m, struct ksi_libc *out,
                    struct ksi_attach_err *e);
/* Fills the entries of OUT still 0 from the ELF file FD loaded at BIAS. */
void ksi_attach_scan_file(int fd, uint64_t bias, struct ksi_libc *out);
/* attach_lmap.c: fills OUT from the objects of PID in the loader's search
 * order (its link_map chain, from the program's DT_DEBUG): the definitions
 * the program's own calls bind to. Best effort: entries it cannot find
 * stay 0. */
void ksi_attach_link_map(pid_t pid, struct ksi_libc *out);

/* attach_ptrace.c: the borrowed thread. */
struct ksi_borrow;
struct ksi_borrow *ksi_borrow_begin(pid_t pid, pid_t tid, struct ksi_attach_err *e);
/* Runs system call NR with up to six arguments in the thread; the result
 * (a negative errno on failure) in *RET. */
int ksi_borrow_syscall(struct ksi_borrow *b, long nr, const uint64_t args[6], int64_t *ret);
/* Calls FN(ARGS[0..3]) in the thread, returning to RET_TRAP (an int3); its
 * result in *RET. */
int ksi_borrow_call(struct ksi_borrow *b, uint64_t fn, const uint64_t args[4], uint64_t ret_trap,
                    uint64_t *ret);
/* The system call the thread sat in (its orig_rax). */
long ksi_borrow_nr(const struct ksi_borrow *b);
/* Puts the thread back exactly as it was and detaches. Returns 0, or an
 * errno if that failed (the thread may then be damaged: reported). */
int ksi_borrow_end(struct ksi_borrow *b);

/* Reading and writing the target's memory (/proc/PID/mem). */
int ksi_mem_write(pid_t pid, uint64_t addr, const void *buf, size_t len);
int ksi_mem_read(pid_t pid, uint64_t addr, void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
