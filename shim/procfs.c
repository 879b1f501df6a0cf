#include "procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The comm field is "(name)" where name may hold blanks and parentheses, so
 * the fields after it are found from the last ')'. */
int ks_parse_stat(const char *buf, size_t len, struct ks_taskstat *out)
{
    memset(out, 0, sizeof *out);
    const char *open = memchr(buf, '(', len);
    const char *close = NULL;
    for (size_t i = len; i > 0; i--)
        if (buf[i - 1] == ')') { close = buf + i - 1; break; }
    if (!open || !close || close < open)
        return -1;
    size_t n = (size_t)(close - open - 1);
    if (n >= sizeof out->comm) n = sizeof out->comm - 1;
    memcpy(out->comm, open + 1, n);
    out->comm[n] = '\0';

    /* Fields from 3 (state) on, copied so strtoull stops at our NUL. */
    char rest[512];
    size_t rl = len - (size_t)(close + 1 - buf);
    if (rl >= sizeof rest) rl = sizeof rest - 1;
    memcpy(rest, close + 1, rl);
    rest[rl] = '\0';
    char *save = NULL;
    int field = 2;
    for (char *tok = strtok_r(rest, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        field++;
        switch (field) {
        case 3: if (tok[1] != '\0') return -1; out->state = tok[0]; break;
        case 14: out->utime = strtoull(tok, NULL, 10); break;
        case 15: out->stime = strtoull(tok, NULL, 10); break;
        case 22: out->starttime = strtoull(tok, NULL, 10); return 0;
        default: break;
        }
    }
    return -1;
}

ssize_t ks_read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    buf[len] = '\0';
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

pid_t ks_live_task(pid_t pid)
{
    struct ks_taskstat st;
    if (ks_read_task_stat(pid, pid, &st) != 0 || st.state != 'Z')
        return pid;
    char dir[48];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = ks_open_dir(dir);
    if (!d)
        return pid;
    pid_t live = pid;
    struct dirent *e;
    while (live == pid && (e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != pid && ks_read_task_stat(pid, tid, &st) == 0 && st.state != 'Z')
            live = tid;
    }
    closedir(d);
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

unsigned long long ks_task_age_ms(pid_t tid)
{
    struct ks_taskstat st;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    unsigned long long up = ks_uptime_ms();
    if (ks_read_task_stat(0, tid, &st) != 0)
        return 0;
    unsigned long long born = st.starttime * 1000 / (unsigned long long)hz;
    return up > born ? up - born : 0;
}

DIR *ks_open_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return d;
}
