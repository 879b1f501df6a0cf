/* A target in another pid namespace (a container seen from the host): the
 * tids its shim reports, and the commands take, are its own; the injector's
 * /proc knows them by the host's. */
#ifndef KSI_NSPID_H
#define KSI_NSPID_H

#include <sys/types.h>

/* The tid, in the injector's pid namespace, of the thread of process PID
 * (as the injector sees it) that calls itself TID in its own namespace: the
 * task under /proc/PID/task whose NSpid line ends in TID. TID itself when
 * PID shares the injector's namespace, or no task matches (it has ended). */
pid_t ksi_host_tid(pid_t pid, pid_t tid);

#endif
