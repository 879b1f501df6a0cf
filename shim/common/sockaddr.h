/* Where a process's control socket lives; shared by the shim (bind) and the
 * injector (connect), so both sides always agree.
 *
 * Default: the abstract Unix socket "@killshim-PID". It has no file, so no
 * file can be stale, world-connectable or left behind; the kernel frees the
 * name when the process's socket closes (exit, crash, exec with CLOEXEC).
 * Abstract names live in the network namespace: an injector in another one
 * (a container) uses KILLSHIM_SOCKET_DIR instead.
 *
 * KILLSHIM_SOCKET_DIR=DIR (both sides): the socket file DIR/killshim-PID.sock. */
#ifndef KS_SOCKADDR_H
#define KS_SOCKADDR_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fills *ADDR and *LEN for PID. DISPLAY gets a printable form ("@killshim-42"
 * or the path). Returns 0, or -1 with errno ENAMETOOLONG. */
int ks_sockaddr_for_pid(pid_t pid, struct sockaddr_un *addr, socklen_t *len,
                        char *display, size_t display_cap);
/* Connects SOCK to PID's socket: the address above, or, for a file whose
 * path does not fit in sun_path, the same file through /proc/self/fd of its
 * opened directory. Returns 0, or -1 with errno. */
int ks_sockaddr_connect(int sock, pid_t pid);
/* The pid process PID (as the caller's /proc names it) has in its own pid
 * namespace, which its socket's name holds: the last NSpid entry of
 * /proc/PID/status. PID itself in the same namespace, or if unreadable.
 * The client's side only (ks_sockaddr_connect uses it): the shim names its
 * socket with its own getpid. */
pid_t ks_sockaddr_own_pid(pid_t pid);
/* 1 if the address is a file (KILLSHIM_SOCKET_DIR is set), else 0. */
int ks_sockaddr_is_file(void);

#ifdef __cplusplus
}
#endif
#endif
