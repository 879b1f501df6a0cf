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

/* The numeric names in directory PATH (e.g. the tids in /proc/self/task),
 * in directory order, in a malloc'd array of *N. NULL and errno on failure
 * (EBADF: the program took the fd's number while it was being read). */
pid_t *ks_read_ids(const char *path, int *n);

/* Reads a small file whole into BUF (NUL-terminated). Returns its length or
 * -1. The fd is checked before each read (see procfs.c). */
ssize_t ks_read_small_file(const char *path, char *buf, size_t cap);

/* Reads /proc/PID/task/TID/stat (PID 0: self). Returns 0 or -1 (errno set). */
int ks_read_task_stat(pid_t pid, pid_t tid, struct ks_taskstat *out);

/* A task of process PID that still shows the process's memory and fds in
 * /proc (maps, fd) and through process_vm_readv: PID itself, unless its
 * main thread has exited (a zombie leader shows neither), then one of its
 * live threads; PID if none is found. */
pid_t ks_live_task(pid_t pid);

/* Milliseconds since boot, from /proc/uptime; 0 if unreadable. */
unsigned long long ks_uptime_ms(void);
/* How long ago thread TID of the calling process started, in ms (10 ms
 * resolution); 0 if unknown. */
unsigned long long ks_task_age_ms(pid_t tid);
/* The same from a stat line's STARTTIME (clock ticks since boot), HZ ticks
 * a second (100 if not positive) and UPTIME_MS (ks_uptime_ms); 0 if the
 * task seems to start after now. */
unsigned long long ks_age_ms(unsigned long long starttime, long hz, unsigned long long uptime_ms);

/* /proc/PID/task/TID/syscall: the system call a blocked thread is in. */
#define KS_SYSCALL_NONE (-1L)      /* blocked, but not in a system call */
#define KS_SYSCALL_RUNNING (-2L)   /* running: the kernel shows nothing */
struct ks_syscall {
    long nr;                       /* number, or KS_SYSCALL_NONE / _RUNNING */
    unsigned long long args[6];    /* valid when nr >= 0 */
    unsigned long long sp, pc;     /* user stack and instruction pointers (nr != RUNNING) */
};
/* Parses the contents of that file. Returns 0 or -1. */
int ks_parse_syscall(const char *buf, struct ks_syscall *out);
/* Reads it for TID of the calling process. Returns 0 or -1 (errno set). */
int ks_read_task_syscall(pid_t tid, struct ks_syscall *out);

/* The calling process's /proc/self/task held open for a listing's many
 * reads: each file is opened relative to it (one path step instead of four)
 * and read with fewer checks (ks_task_dir_read in procfs.c). FD -1: not
 * open, or given up (the program took its number); the readers then use
 * the absolute paths, as ks_read_task_stat does. */
struct ks_task_dir {
    int fd;
    dev_t dev;       /* procfs's st_dev: what every file opened under it has */
    ino_t ino;
};
void ks_task_dir_open(struct ks_task_dir *d);
void ks_task_dir_close(struct ks_task_dir *d);
/* As ks_read_task_stat and ks_read_task_syscall, for the calling process. */
int ks_task_dir_stat(struct ks_task_dir *d, pid_t tid, struct ks_taskstat *out);
int ks_task_dir_syscall(struct ks_task_dir *d, pid_t tid, struct ks_syscall *out);

/* The lines of /proc/PID/task/TID/status that the stack dump uses. */
struct ks_taskstatus {
    char name[64];                 /* as the kernel escapes it */
    char state;                    /* R, S, D, T, t, Z, X, I */
    unsigned long long sigblk;     /* blocked signals: bit N-1 is signal N */
    unsigned long long sigpnd;     /* signals pending for this thread alone */
};
/* Parses the contents of that file. Returns 0, or -1 if a field is missing. */
int ks_parse_status(const char *buf, struct ks_taskstatus *out);
/* Reads it for TID of the calling process. Returns 0 or -1 (errno set). */
int ks_read_task_status(pid_t tid, struct ks_taskstatus *out);

/* The "NSpid:" line of a status file's contents BUF: one id per pid
 * namespace, from the one the /proc belongs to down to the task's own.
 * Returns the last (the id the task sees itself as) and their count in
 * *LEVELS, or -1 (and 0) if the line is missing (a kernel before 4.1). */
long ks_parse_nspid(const char *buf, int *levels);

#ifdef __cplusplus
}
#endif
#endif
