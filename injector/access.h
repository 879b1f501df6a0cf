/* Saying why the kernel does not let the user read or attach to a process
 * (access.c): for the client (client.c) and the peer check (peer.c). */
#ifndef KSI_ACCESS_H
#define KSI_ACCESS_H

#include <stddef.h>
#include <sys/types.h>

#include "shim/common/proof.h"

/* Prints why the kernel does not give the caller NEED (enum ks_access) over
 * PID, as far as it can tell, and returns KSI_EXIT_PERMISSION. */
int ksi_access_denied(pid_t pid, int need, const struct ks_proof *p);
/* WHY gets the likeliest reason the kernel refuses NEED over PID. */
void ksi_access_why(pid_t pid, int need, char *why, size_t cap);

#endif
