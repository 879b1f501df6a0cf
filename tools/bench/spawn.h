/* Running the programs a benchmark measures: with or without the shim
 * preloaded, timed from just before the spawn to the reaped exit. */
#ifndef KB_SPAWN_H
#define KB_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kb_run {
    /* In */
    const char *preload;      /* LD_PRELOAD for the child; NULL: none at all */
    int capture;              /* keep stdout in out (else /dev/null) */
    /* If set, called about every 50 µs while the command runs (the wait
     * polls instead of blocking), with the start time t0 of the run. */
    void (*tick)(void *ctx, uint64_t t0);
    void *tick_ctx;
    /* Out */
    char *out;                /* stdout, NUL-terminated (malloc'd; kb_run_free) */
    size_t out_len;
    char err[512];            /* start of stderr, NUL-terminated */
    uint64_t t0;              /* CLOCK_MONOTONIC just before the spawn */
    uint64_t wall_ns;
    int status;               /* waitpid status; -1 if it could not start */
};

/* Runs ARGV to its end. Returns 0 if it exited with status 0, else -1 (see
 * R->status and R->err). Output goes to memory files, so how fast we read it
 * never shows in the timing. */
int kb_run(char *const argv[], struct kb_run *r);
void kb_run_free(struct kb_run *r);

/* Starts ARGV (LD_PRELOAD=PRELOAD if not NULL) with pipes to its stdin and
 * from its stdout; stderr is inherited. Returns the pid, or -1. */
pid_t kb_start(char *const argv[], const char *preload, int *to_child, int *from_child);

/* Reads one line from FD into BUF (no newline) within TIMEOUT_MS.
 * Returns its length, or -1 on EOF, error or timeout. */
int kb_read_line(int fd, char *buf, size_t cap, int timeout_ms);

/* Number of '\n' in the NUL-terminated S. */
size_t kb_count_lines(const char *s);

#endif
