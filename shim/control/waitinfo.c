/* See waitinfo.h. */
#include "waitinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shim/common/fdid.h"
#include "shim/common/procfs.h"
#include "shim/core/ks.h"
#include "shim/core/registry.h"

/* Copies LEN bytes at ADDR of this process into BUF without touching ADDR
 * directly. process_vm_readv first; some seccomp profiles refuse it, and
 * /proc/self/mem says the same. Returns 0 or an errno. */
static int ks_peek(const void *addr, void *buf, size_t len)
{
    struct iovec local = {buf, len}, remote = {(void *)addr, len};
    ssize_t n = syscall(SYS_process_vm_readv, ks_getpid(), &local, 1UL, &remote, 1UL, 0UL);
    if (n == (ssize_t)len)
        return 0;
    if (n < 0 && errno != ENOSYS && errno != EPERM)
        return errno;
    int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    /* Read only if the number is still ours (fdid.h): the program may have
     * closed it and opened a file of its own there in between. */
    struct ks_fdid id;
    int rc = ks_fdid_get(fd, &id);
    if (rc)
        return rc;
    n = ks_fdid_same(fd, &id) ? pread(fd, buf, len, (off_t)(uintptr_t)addr) : -1;
    rc = n == (ssize_t)len ? 0 : EFAULT;
    ks_fdid_close(fd, &id);
    return rc;
}

pid_t ks_wait_owner(int kind, const void *obj)
{
    if (kind == KS_WAIT_MUTEX) {
        pthread_mutex_t m;
        if (ks_peek(obj, &m, sizeof m) != 0)
            return KS_OWNER_UNKNOWN;
        if (m.__data.__lock == 0)
            return KS_OWNER_FREE;
        /* PI and robust mutexes keep the owner in the lock word too. */
        if (m.__data.__owner > 0)
            return m.__data.__owner;
        return KS_OWNER_UNKNOWN;
    }
    if (kind == KS_WAIT_RWLOCK) {
        pthread_rwlock_t rw;
        if (ks_peek(obj, &rw, sizeof rw) != 0)
            return KS_OWNER_UNKNOWN;
        if (rw.__data.__cur_writer > 0)
            return rw.__data.__cur_writer;
        return KS_OWNER_UNKNOWN;   /* readers hold it: glibc does not name them */
    }
    return KS_OWNER_UNKNOWN;
}

int ks_wait_is_over(pid_t tid, pid_t owner, const struct ks_syscall *seen)
{
    struct ks_syscall sc;
    if (owner != tid)
        return 0;
    if (!seen && ks_read_task_syscall(tid, &sc) == 0)
        seen = &sc;
    return seen && seen->nr != SYS_futex;
}

const char *ks_wait_kind_name(int kind)
{
    switch (kind) {
    case KS_WAIT_MUTEX: return "mutex";
    case KS_WAIT_RWLOCK: return "rwlock";
    default: return NULL;
    }
}
