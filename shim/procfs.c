#include "procfs.h"

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

unsigned long long ks_uptime_ms(void)
{
    char buf[128];
    if (ks_read_small_file("/proc/uptime", buf, sizeof buf) <= 0)
        return 0;
    return (unsigned long long)(strtod(buf, NULL) * 1000.0);
}
