/* Readers of /proc files, shared by the shim and the injector. The parsers
 * take a buffer, so tests and fuzzers feed them directly. */
#ifndef KS_PROCFS_H
#define KS_PROCFS_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ks_taskstat {
    char comm[64];                 /* as the kernel shows it (at most 15 bytes) */
    char state;                    /* R, S, D, T, t, Z, X, I */
    unsigned long long utime, stime;   /* clock ticks */
    unsigned long long starttime;      /* clock ticks after boot */
};

/* Parses the contents of /proc/PID/task/TID/stat. Returns 0 or -1. */
int ks_parse_stat(const char *buf, size_t len, struct ks_taskstat *out);

/* Reads a small file whole into BUF (NUL-terminated). Returns its length or -1. */
ssize_t ks_read_small_file(const char *path, char *buf, size_t cap);

/* Reads /proc/PID/task/TID/stat (PID 0: self). Returns 0 or -1 (errno set). */
int ks_read_task_stat(pid_t pid, pid_t tid, struct ks_taskstat *out);

/* Milliseconds since boot, from /proc/uptime; 0 if unreadable. */
unsigned long long ks_uptime_ms(void);

#ifdef __cplusplus
}
#endif
#endif
