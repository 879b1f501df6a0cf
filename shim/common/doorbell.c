/* See doorbell.h. */
#include "doorbell.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sockaddr.h"

/* Reads /proc/PID/NAME whole into BUF (NUL-terminated, cut at CAP-1).
 * Returns its length or -1 with errno. */
static ssize_t ks_db_read(pid_t pid, const char *name, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        errno = EIO;
        return -1;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Does PID map libkillshim.so? Line by line: maps can be long. */
static int ks_db_maps_shim(pid_t pid)
{
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "/libkillshim.so") != NULL;
    fclose(f);
    return found;
}

/* The value of NAME in an environ block (NUL-separated), or NULL. */
static const char *ks_db_env(const char *env, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = env; p < env + len; p += strlen(p) + 1)
        if (strncmp(p, name, nl) == 0 && p[nl] == '=')
            return p + nl + 1;
    return NULL;
}

/* The shim's dump signal in a process whose environment is ENV: as the
 * shim picks it (signals.c): KILLSHIM_SIGNAL if it is a whole number in
 * SIGRTMIN..SIGRTMAX-1, else SIGRTMAX-3. */
static int ks_db_signo(const char *env, size_t len)
{
    const char *v = ks_db_env(env, len, "KILLSHIM_SIGNAL");
    if (v && *v) {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (!errno && !*end && n >= SIGRTMIN && n + 1 <= SIGRTMAX)
            return (int)n;
    }
    return SIGRTMAX - 3;
}

/* 1 if /proc/PID/status says the process catches SIGNO. */
static int ks_db_catches(pid_t pid, int signo)
{
    char buf[4096];
    if (ks_db_read(pid, "status", buf, sizeof buf) < 0)
        return -1;
    const char *p = strstr(buf, "\nSigCgt:");
    if (!p)
        return 0;
    unsigned long long mask = strtoull(p + 8, NULL, 16);
    return (int)((mask >> (signo - 1)) & 1);
}

int ks_doorbell_ring(pid_t pid)
{
    int m = ks_db_maps_shim(pid);
    if (m <= 0)
        return m < 0 ? errno : ENOENT;
    size_t cap = 65536;
    char *env = malloc(cap);
    if (!env)
        return ENOMEM;
    ssize_t len = ks_db_read(pid, "environ", env, cap);
    int e = errno;
    const char *off = len < 0 ? NULL : ks_db_env(env, (size_t)len, "KILLSHIM_DISABLE");
    int disabled = off && *off && strcmp(off, "0") != 0;
    int signo = len < 0 ? 0 : ks_db_signo(env, (size_t)len);
    free(env);
    if (len < 0)
        return e;
    if (disabled)
        return ENOENT;
    int c = ks_db_catches(pid, signo);
    if (c <= 0)   /* mapped, not caught: its constructor has not run yet */
        return c < 0 ? errno : EAGAIN;
    union sigval v = {.sival_int = KS_DOORBELL_COOKIE};
    return sigqueue(pid, signo, v) == 0 ? 0 : errno;
}

static long ks_db_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

#define KS_RING_EVERY_MS 50

int ks_control_connect(pid_t pid, int timeout_ms, int *rung)
{
    if (rung)
        *rung = 0;
    long deadline = ks_db_now_ms() + timeout_ms, next_ring = 0;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (ks_sockaddr_connect(fd, pid) == 0)
            return fd;
        int e = errno;
        close(fd);
        long now = ks_db_now_ms();
        if ((e != ECONNREFUSED && e != ENOENT) || now >= deadline) {
            errno = e;
            return -1;
        }
        if (now >= next_ring) {
            /* EAGAIN: the shim is being loaded (an attach under way):
             * rung once it catches the signal, until the deadline. */
            int r = ks_doorbell_ring(pid);
            if (r && r != EAGAIN) {
                errno = r == ENOENT ? e : r;
                return -1;
            }
            if (!r && rung)
                *rung = 1;
            next_ring = now + KS_RING_EVERY_MS;
        }
        struct timespec nap = {0, 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}
