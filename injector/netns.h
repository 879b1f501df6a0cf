/* Reaching a control socket in another network namespace: a container with
 * its own network, seen from the host (docs/attach.md, README "In
 * containers"). */
#ifndef KSI_NETNS_H
#define KSI_NETNS_H

#include <sys/types.h>

/* In abstract mode, before connecting to WHERE, PID's socket: if PID is in
 * another network namespace, enters it (setns; CAP_SYS_ADMIN over both).
 * *BACK: the injector's own namespace to go back to (ksi_netns_leave), or
 * -1 if nothing was entered. Returns KSI_EXIT_OK, or an exit code after
 * saying why it cannot be reached and what does (nsenter --net,
 * KILLSHIM_SOCKET_DIR). */
int ksi_netns_enter(pid_t pid, const char *where, int *back);

/* Back to the namespace ksi_netns_enter left (BACK -1: nothing). A socket
 * connected meanwhile stays in the target's and keeps working. */
void ksi_netns_leave(int back);

#endif
