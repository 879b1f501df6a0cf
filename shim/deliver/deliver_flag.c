/* Flag mode: the cooperative stop. The thread's stop flag (read through
 * killshim.h) and its eventfd are set (the program's own stop variable,
 * --flag-symbol, the client wrote already); then the thread is woken once from an
 * interruptible blocking call by KS_SIG_ACT (no SA_RESTART: the call returns
 * EINTR and the thread gets to look at its flag). See deliver.h. */
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "deliver.h"
#include "shim/common/fdid.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"
#include "shim/core/signals.h"

/* ---- The public API (killshim.h finds these with dlsym) ---------------- */

KS_EXPORT int killshim_stop_requested_v1(void)
{
    return __atomic_load_n(&ks_self()->stop_requested, __ATOMIC_ACQUIRE) != 0;
}

/* Only the owner creates its eventfd, so it reads stop_fd without the lock;
 * it publishes the fd under the lock, where the control side reads it. A
 * stop requested before the fd existed is carried over, so the fd is
 * readable whenever the flag is set. The fd lives high (fdid.h), and a
 * private duplicate beside it lets the control side tell it from another
 * eventfd the program may have put on the number (ks_fdid_dup). */
KS_EXPORT int killshim_stop_fd_v1(void)
{
    struct ks_thread *t = ks_self();
    if (t->stop_fd)
        return t->stop_fd - 1;
    int fd = ks_fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (fd < 0)
        return -1;
    int dup = ks_fdid_dup(fd);
    ks_registry_lock();
    t->stop_fd = fd + 1;
    t->stop_dup = dup + 1;
    if (__atomic_load_n(&t->stop_requested, __ATOMIC_ACQUIRE))
        eventfd_write(fd, 1);
    ks_registry_unlock();
    return fd;
}

KS_THREAD_PATH void ks_flag_release(struct ks_thread *t)
{
    /* T is unlinked: no control thread can reach its fd any more. The raw
     * system call, because close() is a cancellation point: a cancel that
     * arrives while T returns must not turn its return into a cancellation
     * after its grave said "returned". A number that is no longer our
     * eventfd is the program's: left open, and the duplicate with it. */
    if (t->stop_fd) {
        if (ks_fdid_same_dup(t->stop_fd - 1, t->stop_dup - 1)) {
            syscall(SYS_close, t->stop_fd - 1);
            if (t->stop_dup)
                syscall(SYS_close, t->stop_dup - 1);
        }
        t->stop_fd = 0;
        t->stop_dup = 0;
    }
}

/* ---- The program's own thread-local stop variable -----------------------
 * The client writes the program's stop variable itself, through the kernel
 * (process_vm_writev: the kernel checks its right to, docs/security.md); the
 * shim never writes at an address a client names. For a thread-local
 * variable the client needs the target thread's copy: "tls" answers where
 * a module's static TLS block is in a given thread. */

struct ks_tls_find {
    uintptr_t inside;    /* an address inside the module */
    int found;
    void *data;          /* the calling thread's copy of its TLS block */
    size_t memsz;        /* size of its TLS block; 0 if it has none */
    char name[128];
};

static int ks_tls_module_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_tls_find *f = arg;
    int inside = 0;
    size_t memsz = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr) & ~(uintptr_t)4095;
        uintptr_t hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        if (ph->p_type == PT_LOAD && f->inside >= lo && f->inside < hi)
            inside = 1;
        if (ph->p_type == PT_TLS)
            memsz = ph->p_memsz;
    }
    if (!inside)
        return 0;
    f->found = 1;
    f->memsz = memsz;
    f->data = info->dlpi_tls_data;
    snprintf(f->name, sizeof f->name, "%s", info->dlpi_name[0] ? info->dlpi_name : "the program");
    return 1;
}

/* Static TLS lies at a fixed offset from the thread pointer, the same in
 * every thread (x86_64, TLS variant II: below it). glibc carves a thread's
 * static TLS out of its stack block, while a dynamic TLS block is malloc'd:
 * so a block inside the calling thread's stack block is static, and the
 * target's copy is at the same offset from the target's thread pointer,
 * which in glibc is its pthread_t. */
#define KS_DYNAMIC_TLS_MSG                                                            \
    "the thread-local block of %s is dynamic TLS (it was loaded with dlopen): only "  \
    "static TLS (the program and the libraries loaded at startup) can be located"

int ks_tls_block_offset(uint64_t inside, intptr_t *from_tp, size_t *size, char *why, size_t cap)
{
    struct ks_tls_find f = {.inside = (uintptr_t)inside};
    dl_iterate_phdr(ks_tls_module_cb, &f);
    if (!f.found) {
        snprintf(why, cap, "no module of the process maps 0x%llx", (unsigned long long)inside);
        return ENOENT;
    }
    if (f.memsz == 0) {
        snprintf(why, cap, "%s has no thread-local block", f.name);
        return ENOENT;
    }
    /* No block for the calling thread: the module's TLS is dynamic, and
     * allocated per thread on first use (never in the shim's threads). */
    if (!f.data) {
        snprintf(why, cap, KS_DYNAMIC_TLS_MSG, f.name);
        return ENOTSUP;
    }
    pthread_attr_t attr;
    void *stack;
    size_t stack_size;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) {
        snprintf(why, cap, "cannot read the control thread's stack bounds");
        return EAGAIN;
    }
    pthread_attr_getstack(&attr, &stack, &stack_size);
    pthread_attr_destroy(&attr);
    uintptr_t tp = (uintptr_t)pthread_self();
    uintptr_t lo = (uintptr_t)stack, data = (uintptr_t)f.data;
    if (data < lo || data + f.memsz > tp) {
        snprintf(why, cap, KS_DYNAMIC_TLS_MSG, f.name);
        return ENOTSUP;
    }
    *from_tp = (intptr_t)(data - tp);
    *size = f.memsz;
    return 0;
}

int ks_flag_request(struct ks_thread *t, char *why, size_t cap)
{
    (void)why;
    (void)cap;
    __atomic_store_n(&t->stop_requested, 1, __ATOMIC_RELEASE);
    /* Never 8 bytes into a file of the program's that took the number. */
    if (t->stop_fd && ks_fdid_same_dup(t->stop_fd - 1, t->stop_dup - 1))
        eventfd_write(t->stop_fd - 1, 1);
    /* A failed wake still leaves the flag set: the thread notices it at its
     * next check, so the request stands. */
    int rc = ks_signal_linked(t, KS_SIG_ACT);
    if (rc)
        ks_debug("flag mode: cannot wake thread %d: %s", (int)t->tid, strerror(rc));
    return 0;
}
