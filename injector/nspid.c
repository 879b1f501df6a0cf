/* See nspid.h. The kernel maps a tid only from a namespace to its
 * descendants, and says so in each task's status: "NSpid:" lists the tid in
 * every namespace from the one the /proc belongs to down to the task's own.
 * There is no reverse lookup, so the target's tasks are read one by one:
 * only where the injector reads /proc for one thread (an end's report), not
 * per listed thread. */
#include "nspid.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/common/procfs.h"

/* The last NSpid entry of /proc/PID/task/TASK/status (the task's own tid),
 * its count of entries in *LEVELS; -1 if unreadable. */
static long ksi_own_tid(pid_t pid, const char *task, int *levels)
{
    char path[96], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/task/%s/status", (int)pid, task);
    *levels = 0;
    if (ks_read_small_file(path, buf, sizeof buf) <= 0)
        return -1;
    return ks_parse_nspid(buf, levels);
}

pid_t ksi_host_tid(pid_t pid, pid_t tid)
{
    char self[16];
    int levels;
    snprintf(self, sizeof self, "%d", (int)pid);
    if (ksi_own_tid(pid, self, &levels) < 0 || levels < 2)
        return tid;   /* the injector's own namespace (or no NSpid: a kernel before 4.1) */
    char dir[48];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    pid_t host = tid;
    struct dirent *e;
    while (d && host == tid && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && ksi_own_tid(pid, e->d_name, &levels) == tid)
            host = (pid_t)atoi(e->d_name);
    if (d)
        closedir(d);
    return host;
}
