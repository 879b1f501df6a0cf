/* See safefile.h. */
#include "safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "deadline.h"
#include "injector.h"
#include "shim/common/procfs.h"

#define KSI_NOBODY 65534

/* "Uid:\tR\tE\tS\tFS" and the like: the fourth number (the file one). */
static int ksi_status_fs_id(const char *status, const char *key, unsigned *out)
{
    const char *p = strstr(status, key);
    unsigned v[4];
    if (!p || sscanf(p + strlen(key), "%u %u %u %u", &v[0], &v[1], &v[2], &v[3]) != 4)
        return -1;
    *out = v[3];
    return 0;
}

static int ksi_tf_read_creds(struct ksi_tf *t)
{
    char path[64], buf[8192];
    unsigned uid, gid;
    snprintf(path, sizeof path, "/proc/%d/status", (int)t->pid);
    if (ks_read_small_file(path, buf, sizeof buf) <= 0 ||
        ksi_status_fs_id(buf, "\nUid:", &uid) != 0 || ksi_status_fs_id(buf, "\nGid:", &gid) != 0)
        return -1;
    t->uid = uid;
    t->gid = gid;
    t->ngroups = 0;
    /* More groups than we keep: fewer rights, never more. */
    const char *g = strstr(buf, "\nGroups:");
    for (char *p = g ? (char *)g + 8 : NULL, *end; p && t->ngroups < KSI_MAX_GROUPS; p = end) {
        unsigned long v = strtoul(p, &end, 10);
        if (end == p)
            break;
        t->groups[t->ngroups++] = (gid_t)v;
    }
    return 0;
}

void ksi_tf_begin(struct ksi_tf *t, pid_t pid)
{
    memset(t, 0, sizeof *t);
    t->pid = pid;
    t->root = -1;
    if (geteuid() == 0) {
        /* A target whose credentials cannot be read is given nobody's. */
        if (ksi_tf_read_creds(t) != 0) {
            t->uid = KSI_NOBODY;
            t->gid = KSI_NOBODY;
            t->ngroups = 0;
        }
        t->as_target = t->uid != 0;
    }
    char root[64];
    snprintf(root, sizeof root, "/proc/%d/root", (int)pid);
    ksi_tf_enter(t);
    t->root = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ksi_tf_leave(t);
}

void ksi_tf_end(struct ksi_tf *t)
{
    if (t->root >= 0)
        close(t->root);
    t->root = -1;
}

/* Groups first and the fsuid last on the way in, the reverse on the way
 * out: CAP_SETGID and CAP_SETUID stay in force throughout, while the
 * capabilities that bypass file permissions (CAP_DAC_OVERRIDE...) leave
 * with fsuid 0 and come back with it. */
void ksi_tf_enter(struct ksi_tf *t)
{
    if (!t->as_target || t->depth++ > 0)
        return;
    t->saved_ngroups = getgroups(KSI_MAX_GROUPS, t->saved_groups);
    if (setgroups((size_t)t->ngroups, t->groups) != 0)
        setgroups(0, NULL);   /* fewer rights, never more */
    setfsgid(t->gid);
    setfsuid(t->uid);
}

void ksi_tf_leave(struct ksi_tf *t)
{
    if (!t->as_target || --t->depth > 0)
        return;
    setfsuid(0);
    setfsgid(0);
    if (t->saved_ngroups >= 0)
        setgroups((size_t)t->saved_ngroups, t->saved_groups);
}

void ksi_tf_skipped(const char *path, const char *what, const char *why)
{
    static char *seen[256];
    static int nseen;
    for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i], path) == 0)
            return;
    if (nseen < (int)(sizeof seen / sizeof seen[0]))
        seen[nseen++] = strdup(path);
    ksi_err("skipped %s (%s): %s", path, what, why);
}

/* PATH as an O_PATH fd, resolved inside the target's root if VIEW says. */
static int ksi_tf_path_fd(const struct ksi_tf *t, const char *path, enum ksi_view view)
{
    if (t->root < 0 || view == KSI_IN_OURS)
        return open(path, O_PATH | O_CLOEXEC);
    while (*path == '/')
        path++;
    struct open_how how = {.flags = O_PATH | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, t->root, *path ? path : ".", &how, sizeof how);
    if (fd < 0 && errno == ENOSYS)
        fd = openat(t->root, *path ? path : ".", O_PATH | O_CLOEXEC);
    return fd;
}

static const char *ksi_kind(mode_t m)
{
    if (S_ISFIFO(m)) return "a FIFO, not a regular file";
    if (S_ISCHR(m) || S_ISBLK(m)) return "a device, not a regular file";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISSOCK(m)) return "a socket, not a regular file";
    return "not a regular file";
}

static int ksi_in_groups(const struct ksi_tf *t, gid_t g)
{
    if (g == t->gid)
        return 1;
    for (int i = 0; i < t->ngroups; i++)
        if (t->groups[i] == g)
            return 1;
    return 0;
}

/* Could the target's user change the file's bytes while they are parsed? */
static int ksi_target_can_write(const struct ksi_tf *t, const struct stat *st)
{
    return st->st_uid == t->uid || (st->st_mode & S_IWOTH) ||
           ((st->st_mode & S_IWGRP) && ksi_in_groups(t, st->st_gid));
}

/* A private copy of FD's SIZE bytes: what is parsed can no longer change.
 * Returns the copy's fd (FD closed), or -1 (FD closed too). */
static int ksi_frozen_copy(int fd, off_t size)
{
    int m = memfd_create("killshim-inject-copy", MFD_CLOEXEC);
    char buf[65536];
    off_t done = 0;
    while (m >= 0 && done < size) {
        size_t want = size - done < (off_t)sizeof buf ? (size_t)(size - done) : sizeof buf;
        ssize_t r = read(fd, buf, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;   /* shortened meanwhile: the copy is what was there */
        if (write(m, buf, (size_t)r) != r) {
            close(m);
            m = -1;
        }
        done += r;
    }
    close(fd);
    if (m >= 0 && lseek(m, 0, SEEK_SET) != 0) {
        close(m);
        m = -1;
    }
    return m;
}

/* The checks of ksi_tf_open; WHY says what failed. *MISSING: it does not exist. */
static int ksi_tf_open_checked(const struct ksi_tf *t, const char *path, enum ksi_view view,
                               char *why, size_t cap, int *missing)
{
    int p = ksi_tf_path_fd(t, path, view);
    if (p < 0) {
        int e = errno;
        *missing = e == ENOENT || e == ENOTDIR;
        if ((e == EACCES || e == EPERM) && t->as_target)
            snprintf(why, cap, "not reachable for uid %u, the target's user", (unsigned)t->uid);
        else
            snprintf(why, cap, "%s", strerror(e));
        return -1;
    }
    struct stat st, st2;
    struct statfs sf;
    int fd = -1;
    if (fstat(p, &st) != 0) {
        snprintf(why, cap, "%s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(why, cap, "%s", ksi_kind(st.st_mode));
    } else if ((unsigned long long)st.st_size > KSI_FILE_MAX) {
        snprintf(why, cap, "%llu MiB, over the %llu MiB limit",
                 (unsigned long long)st.st_size >> 20, KSI_FILE_MAX >> 20);
    } else if (t->as_target && fstatfs(p, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC) {
        snprintf(why, cap, "on a FUSE file system, whose server could stall every read");
    } else {
        /* Reopened through the O_PATH fd: the inode just checked, with the
         * read permission checked now, against the credentials in force. */
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", p);
        fd = open(self, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0 && (errno == EACCES || errno == EPERM) && t->as_target)
            snprintf(why, cap, "not readable by uid %u, the target's user", (unsigned)t->uid);
        else if (fd < 0)
            snprintf(why, cap, "%s", strerror(errno));
        else if (fstat(fd, &st2) != 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
            snprintf(why, cap, "changed while it was opened");
            close(fd);
            fd = -1;
        }
    }
    close(p);
    if (fd >= 0 && t->as_target && ksi_target_can_write(t, &st)) {
        if ((unsigned long long)st.st_size > KSI_COPY_MAX) {
            snprintf(why, cap, "uid %u can change it while it is read, and it is over the %llu MiB "
                     "a private copy may take", (unsigned)t->uid, KSI_COPY_MAX >> 20);
            close(fd);
            return -1;
        }
        fd = ksi_frozen_copy(fd, st.st_size);
        if (fd < 0)
            snprintf(why, cap, "cannot make a private copy: %s", strerror(errno));
    }
    return fd;
}

int ksi_tf_open(struct ksi_tf *t, const char *path, enum ksi_view view, const char *what,
                int quiet_missing)
{
    ksi_phase("opening %s (%s)", path, what);
    char why[200] = "";
    int missing = 0;
    int fd = ksi_tf_open_checked(t, path, view, why, sizeof why, &missing);
    if (fd < 0 && !(quiet_missing && missing))
        ksi_tf_skipped(path, what, why);
    return fd;
}
