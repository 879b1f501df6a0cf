/* Flag mode: the cooperative stop. The thread's stop flag (read through
 * killshim.h), its eventfd, and optionally the program's own stop variable
 * (--flag-symbol) are set; then the thread is woken once from an
 * interruptible blocking call by KS_SIG_ACT (no SA_RESTART: the call returns
 * EINTR and the thread gets to look at its flag). See deliver.h. */
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "deliver.h"
#include "ks.h"
#include "registry.h"
#include "signals.h"

/* ---- The public API (killshim.h finds these with dlsym) ---------------- */

KS_EXPORT int killshim_stop_requested_v1(void)
{
    return __atomic_load_n(&ks_self()->stop_requested, __ATOMIC_ACQUIRE) != 0;
}

/* Only the owner creates its eventfd, so it reads stop_fd without the lock;
 * it publishes the fd under the lock, where the control side reads it. A
 * stop requested before the fd existed is carried over, so the fd is
 * readable whenever the flag is set. */
KS_EXPORT int killshim_stop_fd_v1(void)
{
    struct ks_thread *t = ks_self();
    if (t->stop_fd)
        return t->stop_fd - 1;
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -1;
    ks_registry_lock();
    t->stop_fd = fd + 1;
    if (__atomic_load_n(&t->stop_requested, __ATOMIC_ACQUIRE))
        eventfd_write(fd, 1);
    ks_registry_unlock();
    return fd;
}

void ks_flag_release(struct ks_thread *t)
{
    /* T is unlinked: no control thread can reach its fd any more. The raw
     * system call, because close() is a cancellation point: a cancel that
     * arrives while T returns must not turn its return into a cancellation
     * after its grave said "returned". */
    if (t->stop_fd) {
        syscall(SYS_close, t->stop_fd - 1);
        t->stop_fd = 0;
    }
}

/* ---- The program's own stop variable ----------------------------------- */

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
    "%s lives in dynamic TLS (%s was loaded with dlopen): only static TLS (the "      \
    "program and the libraries loaded at startup) can be written"

int ks_flag_prepare(struct ks_flag_var *v, char *why, size_t cap)
{
    if (!v->set)
        return 0;
    if (v->size != 1 && v->size != 2 && v->size != 4 && v->size != 8) {
        snprintf(why, cap, "%s is %d bytes: only 1, 2, 4 or 8-byte variables can be written",
                 v->name, v->size);
        return EINVAL;
    }
    if (!v->is_tls)
        return 0;
    struct ks_tls_find f = {.inside = (uintptr_t)v->module_base};
    dl_iterate_phdr(ks_tls_module_cb, &f);
    if (!f.found) {
        snprintf(why, cap, "no module of the process maps 0x%llx, where %s should be",
                 (unsigned long long)v->module_base, v->name);
        return ENOENT;
    }
    if (f.memsz == 0 || v->addr + (uint64_t)v->size > f.memsz) {
        snprintf(why, cap, "%s is not inside the thread-local block of %s", v->name, f.name);
        return EINVAL;
    }
    /* No block for the calling thread: the module's TLS is dynamic, and
     * allocated per thread on first use (never in the shim's threads). */
    if (!f.data) {
        snprintf(why, cap, KS_DYNAMIC_TLS_MSG, v->name, f.name);
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
        snprintf(why, cap, KS_DYNAMIC_TLS_MSG, v->name, f.name);
        return ENOTSUP;
    }
    v->tls_from_tp = (intptr_t)(data - tp);
    return 0;
}

/* Writes through the kernel, so that a wrong address (a stale symbol, a
 * read-only variable) is an error (EFAULT), never a fault in the program.
 * A variable of at most 8 bytes changes from 0 to nonzero, so a write that
 * the kernel splits is still read as "set" by the program. */
static int ks_write_var(uintptr_t addr, int size, uint64_t value)
{
    unsigned char buf[8];
    memcpy(buf, &value, sizeof buf);   /* little-endian: the low SIZE bytes */
    struct iovec local = {buf, (size_t)size};
    struct iovec remote = {(void *)addr, (size_t)size};
    ssize_t n = process_vm_writev(ks_getpid(), &local, 1, &remote, 1, 0);
    if (n < 0)
        return errno;
    return n == size ? 0 : EFAULT;
}

int ks_flag_request(struct ks_thread *t, const struct ks_flag_var *v, char *why, size_t cap)
{
    /* The flag is set before the program's variable is written: the thread
     * may see the variable and end at once, and its exit path must already
     * know that flag mode asked (else the report says it ended by itself). */
    int was = __atomic_exchange_n(&t->stop_requested, 1, __ATOMIC_ACQ_REL);
    if (v && v->set) {
        /* T is linked, so it has not exited and its TLS is still mapped. */
        uintptr_t addr = v->is_tls ? (uintptr_t)t->handle + (uintptr_t)v->tls_from_tp + v->addr
                                   : (uintptr_t)v->addr;
        int rc = ks_write_var(addr, v->size, v->value);
        if (rc) {
            __atomic_store_n(&t->stop_requested, was, __ATOMIC_RELEASE);
            snprintf(why, cap, "cannot write %s at 0x%llx (%d bytes): %s", v->name,
                     (unsigned long long)addr, v->size, strerror(rc));
            return rc;
        }
    }
    if (t->stop_fd)
        eventfd_write(t->stop_fd - 1, 1);
    /* A failed wake still leaves the flag set: the thread notices it at its
     * next check, so the request stands. */
    int rc = ks_signal_thread_locked(t, KS_SIG_ACT);
    if (rc)
        ks_debug("flag mode: cannot wake thread %d: %s", (int)t->tid, strerror(rc));
    return 0;
}
