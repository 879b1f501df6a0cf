#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats.h"

extern char **environ;

/* environ without LD_PRELOAD, plus LD_PRELOAD=PRELOAD if given. The strings
 * are shared with environ; only the array is new. */
static char **kb_env(const char *preload, char *slot, size_t slot_cap)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
            env[k++] = environ[i];
    if (preload) {
        snprintf(slot, slot_cap, "LD_PRELOAD=%s", preload);
        env[k++] = slot;
    }
    env[k] = NULL;
    return env;
}

static char *kb_slurp(int fd, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return NULL;
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return NULL;
    ssize_t got = pread(fd, buf, (size_t)st.st_size, 0);
    if (got < 0)
        got = 0;
    buf[got] = '\0';
    *len = (size_t)got;
    return buf;
}

int kb_run(char *const argv[], struct kb_run *r)
{
    char slot[4096];
    r->out = NULL;
    r->out_len = 0;
    r->err[0] = '\0';
    r->wall_ns = 0;
    r->status = -1;
    char **env = kb_env(r->preload, slot, sizeof slot);
    int out_fd = r->capture ? memfd_create("kb-out", MFD_CLOEXEC)
                            : open("/dev/null", O_WRONLY | O_CLOEXEC);
    int err_fd = memfd_create("kb-err", MFD_CLOEXEC);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int rc = -1;
    if (!env || out_fd < 0 || err_fd < 0)
        goto out;
    posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    uint64_t t0 = kb_now_ns();
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, env) != 0) {
        snprintf(r->err, sizeof r->err, "cannot start %s: %s", argv[0], strerror(errno));
        goto out;
    }
    r->t0 = t0;
    int st;
    if (r->tick) {
        for (;;) {
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid || (w < 0 && errno != EINTR))
                break;
            r->tick(r->tick_ctx, t0);
            usleep(50);
        }
    } else {
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    r->wall_ns = kb_now_ns() - t0;
    r->status = st;
    size_t elen = 0;
    char *e = kb_slurp(err_fd, &elen);
    if (e) {
        snprintf(r->err, sizeof r->err, "%s", e);
        free(e);
    }
    if (r->capture)
        r->out = kb_slurp(out_fd, &r->out_len);
    rc = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
out:
    posix_spawn_file_actions_destroy(&fa);
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    free(env);
    return rc;
}

void kb_run_free(struct kb_run *r)
{
    free(r->out);
    r->out = NULL;
}

pid_t kb_start(char *const argv[], const char *preload, int *to_child, int *from_child)
{
    char slot[4096];
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    char **env = kb_env(preload, slot, sizeof slot);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    pid_t pid = -1;
    if (!env || posix_spawnp(&pid, argv[0], &fa, NULL, argv, env) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    *to_child = in[1];
    *from_child = out[0];
    return pid;
}

int kb_read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    uint64_t deadline = kb_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (n + 1 < cap) {
        uint64_t now = kb_now_ns();
        if (now >= deadline)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return -1;
        /* One byte at a time: the child's lines are few and short, and we
         * must not read past the line into the next reply. */
        char c;
        ssize_t got = read(fd, &c, 1);
        if (got <= 0)
            return -1;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return (int)n;
}

size_t kb_count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}
