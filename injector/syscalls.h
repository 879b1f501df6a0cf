/* System call numbers (x86_64) to names, for "blocked in ..." lines. */
#ifndef KSI_SYSCALLS_H
#define KSI_SYSCALLS_H

#ifdef __cplusplus
extern "C" {
#endif

/* The name of system call NR ("futex"), or NULL if unknown. */
const char *ksi_syscall_name(long nr);

#ifdef __cplusplus
}
#endif

#endif
