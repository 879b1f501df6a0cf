/* Opening the files a target process names: its mapped objects, their debug
 * files, the dwz files those name. Every path and every byte of them comes
 * from the target, and the injector may run as root; see docs/security.md,
 * "Files the injector reads".
 *
 * - Only regular files are opened: a path is first opened O_PATH (which
 *   opens nothing: no FIFO wait, no device's open), checked with fstat, and
 *   only then reopened for reading, through the same inode.
 * - Files over KSI_FILE_MAX are skipped.
 * - A path the target chose (an object it maps, a debug file named next to
 *   it) resolves inside the target's root (/proc/PID/root, openat2
 *   RESOLVE_IN_ROOT), so a chroot or container target gets its own files;
 *   the injector's own debug directory (/usr/lib/debug) is the injector's.
 * - A more privileged injector (root, for a target that is not) opens them
 *   with the target's file credentials (fsuid, fsgid, groups): what the
 *   target's user could not read, through any symlink, stays unread. And a
 *   file that user could change while it is being parsed (one they own, or
 *   can write) is read through a private copy (at most KSI_COPY_MAX): what
 *   is parsed is what was checked, and no truncation under a mapping can
 *   crash the injector (SIGBUS).
 * - Whatever is skipped is said once on stderr, with why.
 *
 * The injector is single-threaded: the file credentials are switched for
 * the calling process around the work that opens files (ksi_tf_enter). */
#ifndef KSI_SAFEFILE_H
#define KSI_SAFEFILE_H

#include <stdint.h>
#include <sys/types.h>

#define KSI_FILE_MAX (4ull << 30)    /* any file: 4 GiB */
#define KSI_COPY_MAX (256ull << 20)  /* a private copy: 256 MiB */
#define KSI_MAX_GROUPS 256

struct ksi_tf {
    pid_t pid;
    int root;              /* O_PATH fd of /proc/PID/root, or -1: paths as given */
    int as_target;         /* open with the target's credentials (below) */
    uid_t uid;             /* the target's fsuid and fsgid */
    gid_t gid;
    int ngroups;
    gid_t groups[KSI_MAX_GROUPS];
    int saved_ngroups;     /* ours, while switched (ksi_tf_enter) */
    gid_t saved_groups[KSI_MAX_GROUPS];
    int depth;             /* ksi_tf_enter nesting */
};

/* Reads PID's credentials and opens its root. Never fails: what cannot be
 * had falls back to the safer choice (no root: paths as given; unknown
 * credentials for a root injector: nothing is opened as root). */
void ksi_tf_begin(struct ksi_tf *t, pid_t pid);
void ksi_tf_end(struct ksi_tf *t);

/* Switch the process's file credentials to the target's (if as_target), and
 * back. Nested calls count. */
void ksi_tf_enter(struct ksi_tf *t);
void ksi_tf_leave(struct ksi_tf *t);

/* Where ksi_tf_open resolves a path. */
enum ksi_view {
    KSI_IN_TARGET,   /* inside the target's root: a path the target chose */
    KSI_IN_OURS,     /* as the injector sees it: its own debug directory */
};

/* Opens PATH (as VIEW says) for reading, within ksi_tf_enter.
 * WHAT says what it is for ("debug info of libfoo.so"), for the message if
 * it is skipped; a file that does not exist is skipped silently if
 * QUIET_MISSING. Returns an fd (read-only, close-on-exec: the file, or a
 * private copy of it) or -1. */
int ksi_tf_open(struct ksi_tf *t, const char *path, enum ksi_view view, const char *what,
                int quiet_missing);

/* Says once on stderr that PATH (for WHAT) was skipped, and WHY. */
void ksi_tf_skipped(const char *path, const char *what, const char *why);

#endif
