/* Saying why the kernel does not let the user read or attach to a process
 * (access.h). The kernel decides (docs/security.md); this only guesses
 * which of its rules applied, from what anyone can read, to say what to do. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"
#include "injector.h"
#include "shim/common/access.h"
#include "shim/common/procfs.h"

/* PID's real, effective and saved uid (or gid: KEY "Gid:"). Returns 0 or -1. */
static int ksi_ids(pid_t pid, const char *key, int ids[3])
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (ks_read_small_file(path, buf, sizeof buf) <= 0)
        return -1;
    const char *at = strstr(buf, key);
    return at && sscanf(at + strlen(key), "%d %d %d", &ids[0], &ids[1], &ids[2]) == 3 ? 0 : -1;
}

static int ksi_yama_scope(void)
{
    char buf[16];
    if (ks_read_small_file("/proc/sys/kernel/yama/ptrace_scope", buf, sizeof buf) <= 0)
        return -1;
    return buf[0] - '0';
}

void ksi_access_why(pid_t pid, int need, char *why, size_t cap)
{
    int uid[3], gid[3], yama = ksi_yama_scope();
    struct stat st;
    char dir[48];
    /* Its files in /proc belong to root while it is not dumpable (the
     * directory itself keeps its owner on some kernels). */
    snprintf(dir, sizeof dir, "/proc/%d/status", (int)pid);
    int me = (int)getuid(), mygid = (int)getgid();
    if (ksi_ids(pid, "\nUid:", uid) != 0 || ksi_ids(pid, "\nGid:", gid) != 0)
        snprintf(why, cap, "process %d cannot be looked at", (int)pid);
    else if (need == KS_ACCESS_ATTACH && yama == 3)
        snprintf(why, cap, "kernel.yama.ptrace_scope is 3: no process may attach to another");
    else if (geteuid() == 0)
        snprintf(why, cap, "root without CAP_SYS_PTRACE here (a container?), or a security "
                 "module (AppArmor, SELinux) forbids it");
    else if (uid[0] != me || uid[1] != me || uid[2] != me || gid[0] != mygid ||
             gid[1] != mygid || gid[2] != mygid)
        snprintf(why, cap, "it runs as uid %d gid %d and you are uid %d gid %d: run the injector "
                 "as its user, or as root", uid[1], gid[1], me, mygid);
    else if (stat(dir, &st) == 0 && st.st_uid == 0 && uid[1] != 0)
        snprintf(why, cap, "it is not dumpable (it changed its user or group after it started, "
                 "or called prctl(PR_SET_DUMPABLE, 0)): only root may look inside it");
    else if (need == KS_ACCESS_ATTACH && yama >= 1)
        snprintf(why, cap, "kernel.yama.ptrace_scope is %d: only %s may attach to it", yama,
                 yama == 1 ? "its ancestors (or a process it named with PR_SET_PTRACER) and "
                             "root" : "root (CAP_SYS_PTRACE)");
    else
        snprintf(why, cap, "a security module (AppArmor, SELinux) or the kernel's other rules");
}

int ksi_access_denied(pid_t pid, int need, const struct ks_proof *p)
{
    int e = need == KS_ACCESS_ATTACH && p->level ? p->attach_errno : p->read_errno;
    if (e == ENOENT && !p->level) {
        ksi_err("process %d answered a challenge, but /proc/%d/maps shows no proof page "
                "(it exited, or this /proc is another pid namespace's)", (int)pid, (int)pid);
        return KSI_EXIT_ERROR;
    }
    char why[256];
    ksi_access_why(pid, need, why, sizeof why);
    ksi_err("permission denied: %s process %d needs %s, which the kernel does not give you "
            "(%s): %s", need == KS_ACCESS_ATTACH ? "ending a thread of" : "looking inside",
            (int)pid, need == KS_ACCESS_ATTACH ? "ptrace attach access (what gdb -p needs)"
                                               : "ptrace read access (what /proc/PID/maps needs)",
            strerror(e), why);
    return KSI_EXIT_PERMISSION;
}
