/* unshare and setns interposition. The kernel lets a process unshare its
 * user namespace (or its thread group, signal handlers or address space),
 * and setns into a user or mount namespace, only while it is a single
 * thread whose fs is not shared: under the shim a program with one thread of
 * its own would get EINVAL (unshare --user, nsenter -m, container tools). For
 * those calls the shim steps aside (control.h): its threads leave, the call
 * runs, they come back. Every other call goes straight through. Raw
 * syscall(SYS_unshare) cannot be seen: docs/robust.md. */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "shim/control/control.h"
#include "shim/core/ks.h"
#include "shim/core/lock.h"
#include "shim/common/procfs.h"
#include "shim/core/real.h"

#define KS_LONE_UNSHARE (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)
#define KS_LONE_SETNS (CLONE_NEWUSER | CLONE_NEWNS)
#define KS_LINGER_MS 500   /* how long shim tasks may take to leave the kernel */


/* The process's task count from /proc/self/status, or -1. */
static int ks_task_count(void)
{
    char buf[2048];
    if (ks_read_small_file("/proc/self/status", buf, sizeof buf) <= 0)
        return -1;
    const char *p = strstr(buf, "\nThreads:");
    return p ? atoi(p + 9) : -1;
}

/* Runs CALL with the shim stepped aside. A shim thread back from its work
 * may still be a task for a moment (glibc's and the kernel's exit paths):
 * EINVAL is retried while more than one task is left, and once more after
 * the count says one (the task may have gone between the call and the
 * count); an EINVAL with one task left is the call's own. */
static int ks_alone(int (*call)(int, int), int a, int b)
{
    int aside = ks_control_step_aside();
    int rc = call(a, b), e = errno, last = 0;
    uint64_t end = ks_now_ns() + (uint64_t)KS_LINGER_MS * 1000000u;
    while (aside && rc != 0 && e == EINVAL && !last && ks_now_ns() < end) {
        last = ks_task_count() == 1;
        if (!last)
            ks_nap_ms(1);
        rc = call(a, b);
        e = errno;
    }
    if (aside)
        ks_control_step_back();
    errno = e;
    return rc;
}

static int ks_call_unshare(int flags, int unused)
{
    (void)unused;
    return KS_CALL_OR(unshare, (errno = ENOSYS, -1), (flags));
}

static int ks_call_setns(int fd, int nstype)
{
    return KS_CALL_OR(setns, (errno = ENOSYS, -1), (fd, nstype));
}

KS_EXPORT int unshare(int flags)
{
    if (!(flags & KS_LONE_UNSHARE))
        return ks_call_unshare(flags, 0);
    return ks_alone(ks_call_unshare, flags, 0);
}

/* NSTYPE 0 lets the fd decide (it may name a user or mount namespace), and
 * a pidfd's flags may include either. */
KS_EXPORT int setns(int fd, int nstype)
{
    if (nstype != 0 && !(nstype & KS_LONE_SETNS))
        return ks_call_setns(fd, nstype);
    return ks_alone(ks_call_setns, fd, nstype);
}
