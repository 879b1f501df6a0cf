/* A daemon-like program: it closes every fd above 2 that it inherited (the
 * shim's included), then opens its own files, which get numbers 3 and 4, and
 * copies one into the other while it is dumped. Any read or write the shim
 * (or a library inside it) makes on 3 or 4 shows up as a moved offset, a
 * changed log, or a file that is no longer the one it opened.
 *
 * argv: INPUT LOG [PACE_US]
 * stdout:
 *   "first-open fd=N"   what the very first open() of main returned
 *   then, after "start" on stdin (so that the shim's control thread is
 *   already waiting in accept, see fdreuse_test):
 *   "files in=N log=M"  the numbers its own files got after the close
 *   "stopfd fd=N tid=T" the copier's killshim_stop_fd() (-1 without the shim)
 *   "ready"
 *   then, when the copy is done:
 *   "copied records=N bad_offsets=K write_errors=W replaced=R"
 *     bad_offsets: reads that did not start where the previous one ended;
 *     write_errors: writes that failed or came back short; replaced: 1 if fd
 *     3 or 4 no longer names the file opened there (dev/inode changed)
 * stdin:
 *   "step K"   lets the copier copy K more records (it starts with none)
 *   "finish"   lets it copy the rest
 *   "clobber"  puts the log on the number of the copier's stop fd (dup2),
 *              as a program that reuses numbers might; prints "clobbered"
 *   "clobber-eventfd"  the same with an eventfd of its own (all eventfds share
 *              one inode); prints "clobbered"
 *   "count"    prints "count=N", what that eventfd of its own was written
 *   "quit"     waits for the copier and exits 0
 *
 * The copier reads 7-byte records and appends "NNNNN:record\n" to the log;
 * between records it sleeps PACE_US (default 1000) in nanosleep, so a dump
 * finds it both inside a blocking call and running. The output depends only
 * on the input, whatever the timing. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shim/killshim.h"

#define RECORD 7

static int in_fd = -1, log_fd = -1;
static struct stat in_st, log_st;
static long pace_us = 1000;
static atomic_long allowed;   /* records the copier may have copied */
static atomic_int stop_fd = -2;
static int own_efd = -1;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    vprintf(fmt, ap);
    __builtin_va_end(ap);
    fflush(stdout);
}

static int same_file(int fd, const struct stat *want)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_dev == want->st_dev && st.st_ino == want->st_ino;
}

static void *copier(void *arg)
{
    (void)arg;
    long records = 0, bad_offsets = 0, write_errors = 0;
    off_t expect = 0;
    char rec[RECORD], line[32];
    int sfd = killshim_stop_fd();
    say("stopfd fd=%d tid=%d\n", sfd, gettid());
    atomic_store(&stop_fd, sfd);
    for (;;) {
        while (records >= atomic_load(&allowed)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        off_t at = lseek(in_fd, 0, SEEK_CUR);
        if (at != expect)
            bad_offsets++;
        ssize_t n = read(in_fd, rec, RECORD);
        if (n <= 0)
            break;
        expect = at + n;
        int len = snprintf(line, sizeof line, "%05ld:%.*s\n", records, (int)n, rec);
        if (write(log_fd, line, (size_t)len) != len)
            write_errors++;
        records++;
        struct timespec ts = {0, pace_us * 1000};
        nanosleep(&ts, NULL);
    }
    int replaced = !same_file(in_fd, &in_st) || !same_file(log_fd, &log_st);
    say("copied records=%ld bad_offsets=%ld write_errors=%ld replaced=%d\n", records, bad_offsets,
        write_errors, replaced);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fdreuse INPUT LOG [PACE_US]\n");
        return 2;
    }
    if (argc > 3)
        pace_us = atol(argv[3]);
    int first = open("/dev/null", O_RDONLY);
    say("first-open fd=%d\n", first);
    char cmd[64];
    if (!fgets(cmd, sizeof cmd, stdin) || strncmp(cmd, "start", 5) != 0)
        return 2;
    /* What daemons do: drop everything inherited above stderr. */
    syscall(SYS_close_range, 3u, ~0u, 0u);
    in_fd = open(argv[1], O_RDONLY);
    log_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in_fd < 0 || log_fd < 0 || fstat(in_fd, &in_st) != 0 || fstat(log_fd, &log_st) != 0) {
        fprintf(stderr, "fdreuse: cannot open its files: %s\n", strerror(errno));
        return 1;
    }
    say("files in=%d log=%d\n", in_fd, log_fd);
    pthread_t th;
    if (pthread_create(&th, NULL, copier, NULL) != 0)
        return 1;
    while (atomic_load(&stop_fd) == -2)
        usleep(1000);
    say("ready\n");
    while (fgets(cmd, sizeof cmd, stdin)) {
        if (strncmp(cmd, "step ", 5) == 0)
            atomic_fetch_add(&allowed, atol(cmd + 5));
        else if (strncmp(cmd, "finish", 6) == 0)
            atomic_store(&allowed, LONG_MAX);
        else if (strncmp(cmd, "clobber-eventfd", 15) == 0 && atomic_load(&stop_fd) >= 0 &&
                 (own_efd = eventfd(0, EFD_NONBLOCK)) >= 0 &&
                 dup2(own_efd, atomic_load(&stop_fd)) >= 0)
            say("clobbered\n");
        else if (strncmp(cmd, "clobber", 7) == 0 && atomic_load(&stop_fd) >= 0 &&
                 dup2(log_fd, atomic_load(&stop_fd)) >= 0)
            say("clobbered\n");
        else if (strncmp(cmd, "count", 5) == 0) {
            eventfd_t v = 0;
            say("count=%llu\n", own_efd >= 0 && eventfd_read(own_efd, &v) == 0 ? (unsigned long long)v : 0ull);
        }
        else if (strncmp(cmd, "quit", 4) == 0)
            break;
    }
    atomic_store(&allowed, LONG_MAX);
    pthread_join(th, NULL);
    return 0;
}
