/* See unwind_mem.h. Runs inside signal handlers of program threads (the
 * dump, the abort's walk): no locks, no allocation, errno kept. */
#include "unwind_mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/core/real.h"

KS_LOCK_DEFINE(static, ks_mem_mu);
static int ks_mem_ok;
static pid_t ks_mem_init_tid;   /* the thread inside libunwind's init, or 0 */

KS_SIGSAFE int ks_mem_readable(uintptr_t addr)
{
    if (addr < 4096 || addr > UINTPTR_MAX - 8)
        return 0;
    /* rt_sigprocmask copies the 8-byte set at ADDR before it looks at HOW:
     * an unreadable byte fails the copy (EFAULT); a readable set then meets
     * an invalid HOW (EINVAL) and nothing changes. No fd, no side effect.
     * Abseil probes addresses the same way, for the same reason (its
     * absl/debugging/internal/address_is_readable.cc used a pipe before). */
    int saved = errno;
    long rc = syscall(SYS_rt_sigprocmask, ~0, (void *)addr, (void *)0, (size_t)8);
    int ok = rc != 0 && errno == EINVAL;
    errno = saved;
    return ok;
}

static int ks_mem_vm_refused;   /* process_vm_readv refused once: probe and copy */

__attribute__((no_sanitize("address", "undefined"))) KS_SIGSAFE static int
ks_mem_copy_probed(void *dst, const void *src, size_t n)
{
    uintptr_t a = (uintptr_t)src;
    for (size_t done = 0; done < n;) {
        size_t chunk = 4096 - ((a + done) & 4095);
        if (chunk > n - done)
            chunk = n - done;
        /* The last 8 bytes of the chunk lie on its page too. */
        uintptr_t probe = a + done + (chunk >= 8 ? chunk - 8 : 0);
        if (!ks_mem_readable(a + done) || !ks_mem_readable(probe))
            return EFAULT;
        __builtin_memcpy((char *)dst + done, (const char *)src + done, chunk);
        done += chunk;
    }
    return 0;
}

KS_SIGSAFE int ks_mem_copy(void *dst, const void *src, size_t n)
{
    if (n == 0)
        return 0;
    if ((uintptr_t)src < 4096 || (uintptr_t)src > UINTPTR_MAX - n)
        return EFAULT;
    int saved = errno, rc = EFAULT;
    if (!__atomic_load_n(&ks_mem_vm_refused, __ATOMIC_RELAXED)) {
        struct iovec l = {dst, n}, r = {(void *)(uintptr_t)src, n};
        ssize_t got = syscall(SYS_process_vm_readv, ks_getpid(), &l, 1UL, &r, 1UL, 0UL);
        if (got == (ssize_t)n)
            rc = 0;
        else if (got < 0 && (errno == ENOSYS || errno == EPERM))
            __atomic_store_n(&ks_mem_vm_refused, 1, __ATOMIC_RELAXED);
    }
    if (rc && __atomic_load_n(&ks_mem_vm_refused, __ATOMIC_RELAXED))
        rc = ks_mem_copy_probed(dst, src, n);
    errno = saved;
    return rc;
}

/* The local address space's access_mem. libunwind 1.6.2 marks the reads it
 * wants validated with bit 0 of ARG (the cursor's packed ucontext pointer,
 * AS_ARG_VALIDATE_MASK); every read is checked here regardless, so the
 * accessor stays safe with a libunwind that passes ARG differently. The
 * probe and the load are two steps: a page unmapped between them (another
 * thread's munmap of the very stack being walked) still faults, as it did
 * with libunwind's own check. Not instrumented: it reads any stack slot,
 * ASan's redzones included, and unaligned words. */
__attribute__((no_sanitize("address", "undefined"))) KS_SIGSAFE static int
ks_unw_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
    (void)as;
    (void)arg;
    if (write) {
        __builtin_memcpy((void *)(uintptr_t)addr, val, sizeof *val);
        return 0;
    }
    if (!ks_mem_readable((uintptr_t)addr))
        return -1;   /* what libunwind's own check returns */
    __builtin_memcpy(val, (const void *)(uintptr_t)addr, sizeof *val);
    return 0;
}

int ks_unw_mem_install(unw_accessors_t *(*get_accessors)(unw_addr_space_t), unw_addr_space_t local)
{
    if (__atomic_load_n(&ks_mem_ok, __ATOMIC_ACQUIRE))
        return 0;
    int saved = errno, rc = 0;
    ks_lock(&ks_mem_mu);
    if (!ks_mem_ok) {
        /* The first call into libunwind runs its init, pipe included, unless
         * a library of the program used libunwind before the shim's init:
         * then the pipe exists and is the program's business; libunwind
         * never touches it again once its accessor is replaced. */
        __atomic_store_n(&ks_mem_init_tid, ks_gettid(), __ATOMIC_SEQ_CST);
        unw_accessors_t *acc = get_accessors(local);
        __atomic_store_n(&ks_mem_init_tid, 0, __ATOMIC_SEQ_CST);
        if (!acc) {
            rc = ENOSYS;
        } else {
            /* An aligned pointer store: an unwind running in another thread
             * right now (the program's own use of libunwind) calls either
             * the old accessor or the new one, both complete. */
            __atomic_store_n(&acc->access_mem, ks_unw_access_mem, __ATOMIC_RELEASE);
            __atomic_store_n(&ks_mem_ok, 1, __ATOMIC_RELEASE);
        }
    }
    ks_unlock(&ks_mem_mu);
    errno = saved;
    return rc;
}

int ks_unw_mem_installed(void) { return __atomic_load_n(&ks_mem_ok, __ATOMIC_ACQUIRE); }

int ks_unw_mem_in_init(void)
{
    pid_t t = __atomic_load_n(&ks_mem_init_tid, __ATOMIC_SEQ_CST);
    return t != 0 && t == ks_gettid();
}
