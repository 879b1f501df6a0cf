/* Before an attach (attach.h): what cannot be done safely is refused with
 * its reason, and the thread to borrow is chosen.
 *
 * The borrowed thread calls pthread_create, which takes libc's stack-cache
 * lock, the loader's TLS lock and the allocator's. A thread sitting in one
 * of the plain blocking calls below holds none of them (libc never blocks in
 * such a call inside its allocator, loader or thread code); a thread that
 * is running, or waits on a futex inside libc or the loader (their internal
 * locks), might: never chosen. */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "attach.h"
#include "injector.h"

static int ksi_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    int err = errno;
    close(fd);
    if (n < 0) {
        errno = err;
        return -1;
    }
    buf[n] = 0;
    return 0;
}

/* The number after "KEY:" in /proc/PID/status, or -1. */
static long ksi_status_field(pid_t pid, const char *key)
{
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (ksi_read_small(path, buf, sizeof buf) != 0)
        return -1;
    size_t kl = strlen(key);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, key, kl) == 0 && l[kl] == ':')
            return strtol(l + kl + 1, NULL, 10);
    return -1;
}

static int ksi_refuse(struct ksi_attach_err *e, int code, const char *fmt, const char *a, long n)
{
    e->code = code;
    snprintf(e->msg, sizeof e->msg, fmt, a, n);
    return -1;
}

/* x86-64 ELF, dynamically linked against glibc (its libc.so.6 and
 * ld-linux-x86-64.so.2 are mapped: a static program maps neither, a musl
 * one maps ld-musl-x86_64.so.1). */
static int ksi_check_kind(pid_t pid, const struct ksi_maps *m, struct ksi_attach_err *e)
{
    char path[64];
    unsigned char h[EI_NIDENT + 4];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, h, sizeof h) != (ssize_t)sizeof h) {
        if (fd >= 0)
            close(fd);
        return ksi_refuse(e, errno == ENOENT ? KSI_EXIT_NO_PROCESS : KSI_EXIT_PERMISSION,
                          "cannot read %s", path, 0);
    }
    close(fd);
    uint16_t machine = (uint16_t)(h[EI_NIDENT + 2] | h[EI_NIDENT + 3] << 8);
    if (memcmp(h, ELFMAG, SELFMAG) != 0 || h[EI_CLASS] != ELFCLASS64 || machine != EM_X86_64)
        return ksi_refuse(e, KSI_EXIT_REFUSED, "%s is not an x86-64 program: the shim is one",
                          "the program", 0);
    if (m->err)
        return ksi_refuse(e, KSI_EXIT_PERMISSION, "cannot read /proc/%s%ld/maps", "", pid);
    if (m->musl)
        return ksi_refuse(e, KSI_EXIT_REFUSED, "%s uses musl: the shim needs glibc", "it", 0);
    if (!m->libc)
        return ksi_refuse(e, KSI_EXIT_REFUSED, "%s is statically linked (no libc.so.6 is "
                          "mapped): there is no loader to load the shim", "it", 0);
    return 0;
}

int ksi_attach_check(pid_t pid, const struct ksi_maps *m, struct ksi_attach_err *e)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    if (access(path, F_OK) != 0)
        return ksi_refuse(e, KSI_EXIT_NO_PROCESS, "no process %s%ld", "", pid);
    if (ksi_check_kind(pid, m, e) != 0)
        return -1;
    long tracer = ksi_status_field(pid, "TracerPid");
    if (tracer > 0)
        return ksi_refuse(e, KSI_EXIT_REFUSED, "%sit is already traced by process %ld "
                          "(a debugger?): detach it first", "", tracer);
    /* Mode 1 (strict) allows four calls; a filter (2) may kill the program
     * for a call the load needs (mmap, clone3, openat...), and what it
     * allows cannot be read from here without privileges. */
    long seccomp = ksi_status_field(pid, "Seccomp");
    if (seccomp > 0)
        return ksi_refuse(e, KSI_EXIT_REFUSED, "it runs under seccomp (%s mode %ld): a call "
                          "the load needs could kill it", seccomp == 1 ? "strict" : "filter",
                          seccomp);
    return 0;
}

void ksi_attach_seize_msg(pid_t pid, int err, long scope, struct ksi_attach_err *e)
{
    e->code = err == ESRCH ? KSI_EXIT_NO_PROCESS : KSI_EXIT_PERMISSION;
    if (err == EPERM && scope >= 1)
        snprintf(e->msg, sizeof e->msg, "ptrace of %d not permitted: Yama's "
                 "kernel.yama.ptrace_scope is %ld (%s)", (int)pid, scope,
                 scope == 1 ? "only a parent may trace: run as root, or set it to 0"
                 : scope == 2 ? "only with CAP_SYS_PTRACE: run as root"
                 : "no process may be traced until the next boot");
    else
        snprintf(e->msg, sizeof e->msg, "ptrace of %d: %s (attach needs the process's "
                 "user or root)", (int)pid, strerror(err));
}

void ksi_attach_seize_error(pid_t pid, int err, struct ksi_attach_err *e)
{
    char buf[32] = "";
    long scope = -1;   /* no Yama */
    if (ksi_read_small("/proc/sys/kernel/yama/ptrace_scope", buf, sizeof buf) == 0)
        scope = strtol(buf, NULL, 10);
    ksi_attach_seize_msg(pid, err, scope, e);
}

/* ---- Which thread to borrow --------------------------------------------- */

/* 1: a plain blocking call (best); 2: a futex wait on the program's own
 * memory (a join, a condition, a mutex of the program); 0: never. */
static int ksi_rank(long nr, const unsigned long long *a, const struct ksi_range *r, int nr_r)
{
    switch (nr) {
    case SYS_read: case SYS_readv: case SYS_pread64: case SYS_nanosleep:
    case SYS_clock_nanosleep: case SYS_poll: case SYS_ppoll: case SYS_select:
    case SYS_pselect6: case SYS_epoll_wait: case SYS_epoll_pwait: case SYS_accept:
    case SYS_accept4: case SYS_recvfrom: case SYS_recvmsg: case SYS_wait4: case SYS_waitid:
    case SYS_pause:
        return 1;
    case SYS_futex: {
        int op = (int)(a[1] & 0x7f);
        if (op != 0 && op != 9)   /* FUTEX_WAIT, FUTEX_WAIT_BITSET */
            return 0;
        for (int i = 0; i < nr_r; i++)
            if (a[0] >= r[i].lo && a[0] < r[i].hi)
                return 0;
        return 2;
    }
    default:
        return 0;
    }
}

static int ksi_task_rank(pid_t pid, pid_t tid, const struct ksi_range *r, int nr_r)
{
    char path[96], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
    if (ksi_read_small(path, buf, sizeof buf) != 0)
        return 0;
    long nr;
    unsigned long long a[6];
    if (sscanf(buf, "%ld %llx %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3],
               &a[4], &a[5]) != 7)
        return 0;   /* "running", or -1: not in a system call */
    return ksi_rank(nr, a, r, nr_r);
}

pid_t ksi_attach_pick_thread(pid_t pid, const struct ksi_maps *m, struct ksi_attach_err *e)
{
    const struct ksi_range *r = m->lib;
    int nr_r = m->nlib;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) {
        ksi_refuse(e, KSI_EXIT_NO_PROCESS, "cannot read %s", path, 0);
        return -1;
    }
    pid_t best = -1;
    int best_rank = 3;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && best_rank > 1) {
        pid_t tid = (pid_t)atoi(de->d_name);
        int rank = tid > 0 ? ksi_task_rank(pid, tid, r, nr_r) : 0;
        if (rank && rank < best_rank)
            best = tid, best_rank = rank;
    }
    closedir(d);
    if (best < 0)
        ksi_refuse(e, KSI_EXIT_REFUSED, "%sno thread of it sits in a plain blocking system "
                   "call (read, poll, sleep, a wait...) that could be borrowed safely; try "
                   "again", "", 0);
    return best;
}
