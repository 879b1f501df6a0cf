#include "procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fdid.h"

/* The next field of [*P, END) (separated by blanks or newlines, ended by
 * a NUL): its start and *N, with *P moved past it; NULL if none is left. */
static const char *ks_stat_field(const char **p, const char *end, size_t *n)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\n'))
        s++;
    if (s == end || *s == '\0')
        return NULL;
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\n' && *e != '\0')
        e++;
    *p = e;
    *n = (size_t)(e - s);
    return s;
}

/* The decimal number at the start of [S, S+N), as strtoull reads one. */
static unsigned long long ks_stat_num(const char *s, size_t n)
{
    unsigned long long v = 0;
    for (size_t i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (unsigned long long)(s[i] - '0');
    return v;
}

/* The comm field is "(name)" where name may hold blanks and parentheses, so
 * the fields after it are found from the last ')'. */
int ks_parse_stat(const char *buf, size_t len, struct ks_taskstat *out)
{
    memset(out, 0, sizeof *out);
    const char *open = memchr(buf, '(', len);
    const char *close = memrchr(buf, ')', len);
    if (!open || !close || close < open)
        return -1;
    size_t n = (size_t)(close - open - 1);
    if (n >= sizeof out->comm) n = sizeof out->comm - 1;
    memcpy(out->comm, open + 1, n);
    out->comm[n] = '\0';

    /* Fields from 3 (state) on, separated by blanks or newlines, up to 22:
     * scanned in place (strtok_r and strtoull on a copy were a tenth of a
     * listing's time in the shim). The numbers are the kernel's %llu. */
    const char *p = close + 1, *end = buf + len;
    for (int field = 3; field <= 22; field++) {
        size_t n;
        const char *tok = ks_stat_field(&p, end, &n);
        if (!tok)
            return -1;
        switch (field) {
        case 3: if (n != 1) return -1; out->state = tok[0]; break;
        case 14: out->utime = ks_stat_num(tok, n); break;
        case 15: out->stime = ks_stat_num(tok, n); break;
        case 22: out->starttime = ks_stat_num(tok, n); return 0;
        default: break;
        }
    }
    return -1;
}

/* The fd is the caller's own for a few microseconds, but a program thread
 * may close every fd in that time (close_range) and open a file of its own
 * on the number: each read and the close first check that the number still
 * names what open() returned (fdid.h), so the program's file is never read
 * (its offset would move) nor closed. */
ssize_t ks_read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct ks_fdid id;
    size_t len = 0;
    int rc = ks_fdid_get(fd, &id);
    /* The identity was just taken: the first read needs no second look. */
    for (int first = 1; rc == 0 && len + 1 < cap; first = 0) {
        if (!first && !ks_fdid_same(fd, &id)) {
            rc = EBADF;
            break;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = errno;
        if (r <= 0) break;
        len += (size_t)r;
    }
    if (rc != EBADF)
        ks_fdid_close(fd, &id);
    buf[len] = '\0';
    if (rc == EBADF) {
        errno = EBADF;
        return -1;
    }
    errno = rc;
    return (ssize_t)len;
}

int ks_read_task_stat(pid_t pid, pid_t tid, struct ks_taskstat *out)
{
    char path[64], buf[1024];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    else
        snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    ssize_t n = ks_read_small_file(path, buf, sizeof buf);
    if (n <= 0)
        return -1;
    if (ks_parse_stat(buf, (size_t)n, out) != 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

void ks_task_dir_open(struct ks_task_dir *d)
{
    struct ks_fdid id;
    d->fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->fd >= 0 && ks_fdid_get(d->fd, &id) != 0) {
        close(d->fd);   /* fstat failed on a number just returned: still ours */
        d->fd = -1;
    }
    if (d->fd >= 0) {
        d->dev = id.dev;
        d->ino = id.ino;
    }
}

void ks_task_dir_close(struct ks_task_dir *d)
{
    struct ks_fdid id = {d->dev, d->ino};
    if (d->fd >= 0)
        ks_fdid_close(d->fd, &id);
    d->fd = -1;
}

/* REL ("TID/stat") under D into BUF: 0, or an errno (EXDEV: D's number
 * now names something else, D is given up). The directory's fd is checked
 * by what it yields instead of before each use: a file opened under it that
 * is not on procfs means the program closed the number and reused it for a
 * directory of its own (opened O_NONBLOCK, so not even a FIFO there can
 * block the listing; nothing is read from it); a failed open looks at the
 * directory's identity before it says the task is gone. A program directory
 * on procfs itself (its own /proc/self/task, or /proc, where "TID/stat" is
 * the same thread's file) yields the same records. The file's own fd is checked
 * as in ks_read_small_file, but a read that comes back short is the whole
 * file: these are one-record seq_files, which hand out all they have. Five
 * system calls a file (open, fstat, read, fstat, close) instead of eight. */
static int ks_task_dir_read(struct ks_task_dir *d, const char *rel, char *buf, size_t cap)
{
    /* Raw openat and read: glibc's, cancellation points, switch the cancel
     * type around each call (a twentieth of a listing's time in the shim). */
    int fd = (int)syscall(SYS_openat, d->fd, rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        struct ks_fdid dir = {d->dev, d->ino};
        if (ks_fdid_same(d->fd, &dir))
            return e;   /* the task is gone */
        d->fd = -1;     /* not ours any more: left alone */
        return EXDEV;
    }
    struct ks_fdid id;
    int rc = ks_fdid_get(fd, &id);
    if (rc == 0 && id.dev != d->dev) {
        ks_fdid_close(fd, &id);
        ks_task_dir_close(d);
        return EXDEV;
    }
    size_t len = 0;
    for (int first = 1; rc == 0 && len + 1 < cap; first = 0) {
        if (!first && !ks_fdid_same(fd, &id)) {
            rc = EBADF;
            break;
        }
        ssize_t r = syscall(SYS_read, fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = errno;
        if (r <= 0)
            break;
        len += (size_t)r;
        if ((size_t)r < cap - 1 - (len - (size_t)r))
            break;   /* short: the whole record */
    }
    if (rc != EBADF)
        ks_fdid_close(fd, &id);
    buf[len] = '\0';
    return rc ? rc : len ? 0 : EIO;
}

/* "TID/FILE" into REL (32 bytes): TID is positive, FILE short. Written
 * without snprintf, which cost as much as parsing the stat line. */
static void ks_task_rel(char *rel, pid_t tid, const char *file)
{
    char digits[12];
    int n = 0;
    for (unsigned v = (unsigned)tid; n == 0 || v; v /= 10)
        digits[n++] = (char)('0' + v % 10);
    char *w = rel;
    while (n)
        *w++ = digits[--n];
    *w++ = '/';
    size_t fl = strlen(file);
    memcpy(w, file, fl + 1);
}

int ks_task_dir_stat(struct ks_task_dir *d, pid_t tid, struct ks_taskstat *out)
{
    char rel[32], buf[1024];
    if (d->fd < 0)
        return ks_read_task_stat(0, tid, out);
    ks_task_rel(rel, tid, "stat");
    int rc = ks_task_dir_read(d, rel, buf, sizeof buf);
    if (rc == EXDEV)
        return ks_read_task_stat(0, tid, out);
    if (rc == 0 && ks_parse_stat(buf, strlen(buf), out) != 0)
        rc = EINVAL;
    errno = rc;
    return rc ? -1 : 0;
}

int ks_task_dir_syscall(struct ks_task_dir *d, pid_t tid, struct ks_syscall *out)
{
    char rel[32], buf[256];
    if (d->fd < 0)
        return ks_read_task_syscall(tid, out);
    ks_task_rel(rel, tid, "syscall");
    int rc = ks_task_dir_read(d, rel, buf, sizeof buf);
    if (rc == EXDEV)
        return ks_read_task_syscall(tid, out);
    if (rc == 0 && ks_parse_syscall(buf, out) != 0)
        rc = EINVAL;
    errno = rc;
    return rc ? -1 : 0;
}

pid_t ks_live_task(pid_t pid)
{
    struct ks_taskstat st;
    if (ks_read_task_stat(pid, pid, &st) != 0 || st.state != 'Z')
        return pid;
    char dir[48];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    int n = 0;
    pid_t *tids = ks_read_ids(dir, &n), live = pid;
    for (int i = 0; tids && i < n && live == pid; i++)
        if (tids[i] != pid && ks_read_task_stat(pid, tids[i], &st) == 0 && st.state != 'Z')
            live = tids[i];
    free(tids);
    return live;
}

unsigned long long ks_uptime_ms(void)
{
    char buf[128];
    if (ks_read_small_file("/proc/uptime", buf, sizeof buf) <= 0)
        return 0;
    return (unsigned long long)(strtod(buf, NULL) * 1000.0);
}

/* "running", "-1 SP PC" or "NR A1 A2 A3 A4 A5 A6 SP PC" (arguments and
 * pointers in 0x hex, the number in decimal). */
int ks_parse_syscall(const char *buf, struct ks_syscall *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(buf, "running", 7) == 0) {
        out->nr = KS_SYSCALL_RUNNING;
        return 0;
    }
    char *end;
    errno = 0;
    long nr = strtol(buf, &end, 10);
    if (end == buf || errno)
        return -1;
    unsigned long long v[8];
    int want = nr == -1 ? 2 : nr >= 0 ? 8 : -1;
    if (want < 0)
        return -1;
    for (int i = 0; i < want; i++) {
        const char *p = end;
        v[i] = strtoull(p, &end, 16);
        if (end == p)
            return -1;
    }
    out->nr = nr;
    if (want == 8)
        memcpy(out->args, v, sizeof out->args);
    out->sp = v[want - 2];
    out->pc = v[want - 1];
    return 0;
}

int ks_read_task_syscall(pid_t tid, struct ks_syscall *out)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    if (ks_read_small_file(path, buf, sizeof buf) <= 0)
        return -1;
    if (ks_parse_syscall(buf, out) != 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* Finds "KEY:\t" at the start of a line; returns what follows, or NULL. */
static const char *ks_status_field(const char *buf, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ':') {
            p += kl + 1;
            while (*p == ' ' || *p == '\t')
                p++;
            return p;
        }
    }
    return NULL;
}

long ks_parse_nspid(const char *buf, int *levels)
{
    const char *l = strstr(buf, "\nNSpid:");
    long last = -1;
    *levels = 0;
    for (char *end, *p = l ? (char *)l + 7 : NULL; p; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        last = v;
        (*levels)++;
    }
    return last;
}

int ks_parse_status(const char *buf, struct ks_taskstatus *out)
{
    memset(out, 0, sizeof *out);
    const char *name = ks_status_field(buf, "Name");
    const char *state = ks_status_field(buf, "State");
    const char *blk = ks_status_field(buf, "SigBlk");
    const char *pnd = ks_status_field(buf, "SigPnd");
    if (!name || !state || !blk || !pnd || !*state)
        return -1;
    size_t n = strcspn(name, "\n");
    if (n >= sizeof out->name)
        n = sizeof out->name - 1;
    memcpy(out->name, name, n);
    out->state = state[0];
    out->sigblk = strtoull(blk, NULL, 16);
    out->sigpnd = strtoull(pnd, NULL, 16);
    return 0;
}

int ks_read_task_status(pid_t tid, struct ks_taskstatus *out)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    if (ks_read_small_file(path, buf, sizeof buf) <= 0)
        return -1;
    if (ks_parse_status(buf, out) != 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

unsigned long long ks_age_ms(unsigned long long starttime, long hz, unsigned long long uptime_ms)
{
    unsigned long long born = starttime * 1000 / (unsigned long long)(hz > 0 ? hz : 100);
    return uptime_ms > born ? uptime_ms - born : 0;
}

unsigned long long ks_task_age_ms(pid_t tid)
{
    struct ks_taskstat st;
    long hz = sysconf(_SC_CLK_TCK);
    unsigned long long up = ks_uptime_ms();
    if (ks_read_task_stat(0, tid, &st) != 0)
        return 0;
    return ks_age_ms(st.starttime, hz, up);
}

/* The numeric names of one getdents64 batch, appended to *V. */
static int ks_take_ids(const char *b, long n, pid_t **v, int *k, int *cap)
{
    for (long off = 0; off < n;) {
        const struct dirent64 *d = (const struct dirent64 *)(b + off);
        off += d->d_reclen;
        if (d->d_name[0] < '0' || d->d_name[0] > '9')
            continue;
        if (*k == *cap) {
            int c = *cap ? *cap * 2 : 64;
            pid_t *w = realloc(*v, (size_t)c * sizeof *w);
            if (!w)
                return ENOMEM;
            *v = w;
            *cap = c;
        }
        (*v)[(*k)++] = (pid_t)atoi(d->d_name);
    }
    return 0;
}

/* Through open() and getdents64, not opendir(): ThreadSanitizer sees an
 * open() create its fd (an opendir's closedir of a reused number looked
 * like a race), and each batch is read only after the fd was checked, as in
 * ks_read_small_file. The system call, not glibc's getdents64, which needs
 * a symbol version of its own in the shim (shim/core/ks.h). */
pid_t *ks_read_ids(const char *path, int *n)
{
    *n = 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct ks_fdid id;
    int rc = ks_fdid_get(fd, &id), k = 0, cap = 0;
    pid_t *v = NULL;
    char buf[4096] __attribute__((aligned(8)));
    while (rc == 0) {
        if (!ks_fdid_same(fd, &id)) {
            rc = EBADF;
            break;
        }
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got < 0)
            rc = errno;
        if (got <= 0)
            break;
        rc = ks_take_ids(buf, got, &v, &k, &cap);
    }
    if (rc != EBADF)
        ks_fdid_close(fd, &id);
    if (rc) {
        free(v);
        errno = rc;
        return NULL;
    }
    if (!v)
        v = malloc(sizeof *v);   /* an empty list is not an error */
    *n = k;
    return v;
}
