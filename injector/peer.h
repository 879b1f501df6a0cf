/* Who answers on a control socket. Anyone may bind an abstract name, and
 * SO_PEERCRED names whoever called listen(), even long after that process
 * exited and its pid went to another: so before the injector sends anything
 * that proves its rights (docs/security.md), it checks that the server end
 * of its connection is held by the target process itself. The kernel says
 * which socket that server end is (sock_diag's UNIX_DIAG_PEER) and which
 * sockets the target holds (/proc/PID/fd). */
#ifndef KSI_PEER_H
#define KSI_PEER_H

#include <sys/types.h>

/* FD: connected to WHERE, which should be served by PID. Returns KSI_EXIT_OK,
 * or an exit code after printing what answers instead (an impostor's uid
 * and pid) or why it cannot be checked. */
int ksi_peer_check(int fd, pid_t pid, const char *where);

#endif
