/* System call numbers (x86_64) to names, for "blocked in ..." lines. */
#ifndef KSI_SYSCALLS_H
#define KSI_SYSCALLS_H

/* The name of system call NR ("futex"), or NULL if unknown. */
const char *ksi_syscall_name(long nr);

#endif
