/* killshim-inject --attach: the sequence (attach.h). */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "deadline.h"
#include "injector.h"
#include "syscalls.h"

extern const unsigned char ksi_attach_code[], ksi_attach_code_end[];
extern const uint64_t ksi_attach_thread_off;

#define KSI_PAGE 4096
#define KSI_BORROW_TRIES 20

/* The path the target opens: the injector's own library, when both see the
 * same files (one mount namespace). In another (a container), *MEMFD is set:
 * the library is copied into a memfd of the target's and opened there as
 * /proc/self/fd/N, whatever its file system holds (ksi_plant_memfd). OUT
 * gets the injector's absolute path of the library either way. */
static int ksi_target_path(pid_t pid, const char *shim, char *out, size_t cap, int *memfd,
                           struct ksi_attach_err *e)
{
    char ns[64];
    struct stat a, b;
    snprintf(ns, sizeof ns, "/proc/%d/ns/mnt", (int)pid);
    e->code = KSI_EXIT_ERROR;
    *memfd = stat("/proc/self/ns/mnt", &a) == 0 && stat(ns, &b) == 0 &&
             (a.st_ino != b.st_ino || a.st_dev != b.st_dev);
    char real[PATH_MAX];
    if (!realpath(shim, real) || strlen(real) >= cap) {
        snprintf(e->msg, sizeof e->msg, "cannot find the shim %.300s: %s", shim, strerror(errno));
        return -1;
    }
    snprintf(out, cap, "%s", real);
    return 0;
}

/* Copies the library at SRC into the target's fd FD. Returns 0 or an errno. */
static int ksi_copy_into(pid_t pid, int fd, const char *src)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
    int out = open(path, O_WRONLY | O_CLOEXEC), in = open(src, O_RDONLY | O_CLOEXEC);
    struct stat st;
    int rc = out < 0 || in < 0 || fstat(in, &st) != 0 ? errno : 0;
    for (off_t off = 0; !rc && off < st.st_size;) {
        ssize_t n = sendfile(out, in, &off, (size_t)(st.st_size - off));
        if (n <= 0)
            rc = n < 0 ? errno : EIO;
    }
    if (out >= 0)
        close(out);
    if (in >= 0)
        close(in);
    return rc;
}

/* In the borrowed thread: a memfd (named after the library, so that the
 * program's maps say libkillshim.so), filled with it; BLK then names
 * /proc/self/fd/N, which the new thread closes after its dlopen. NAME_AT: a
 * spare spot of the code page for the name. */
static int ksi_plant_memfd(struct ksi_borrow *b, pid_t pid, uint64_t name_at,
                           struct ksi_attach_block *blk)
{
    static const char name[] = "/libkillshim.so";
    int64_t fd;
    uint64_t mf[6] = {name_at, MFD_CLOEXEC, 0, 0, 0, 0};
    if (ksi_mem_write(pid, name_at, name, sizeof name) != 0)
        return errno ? errno : EIO;
    int rc = ksi_borrow_syscall(b, SYS_memfd_create, mf, &fd);
    if (rc)
        return rc;
    if (fd < 0)
        return (int)-fd;
    if ((rc = ksi_copy_into(pid, (int)fd, blk->path)) != 0)
        return rc;
    blk->memfd = fd;
    snprintf(blk->path, sizeof blk->path, "/proc/self/fd/%d", (int)fd);
    return 0;
}

static int ksi_borrow_any(pid_t pid, const struct ksi_maps *m, struct ksi_borrow **out,
                          pid_t *tidp, struct ksi_attach_err *e)
{
    for (int i = 0; i < KSI_BORROW_TRIES; i++) {
        pid_t tid = *tidp = ksi_attach_pick_thread(pid, m, e);
        if (tid < 0) {
            usleep(20 * 1000);   /* threads move: a few looks before giving up */
            continue;
        }
        errno = 0;
        *out = ksi_borrow_begin(pid, tid, e);
        if (*out)
            return 0;
        if (errno != EAGAIN)
            return -1;
    }
    return -1;
}

/* In the borrowed thread: two pages (code, then the block), filled, the
 * code made executable, and pthread_create called. *THREAD_RC: its result. */
static int ksi_plant(struct ksi_borrow *b, pid_t pid, const struct ksi_libc *libc,
                     struct ksi_attach_block *blk, int memfd, uint64_t *block_addr,
                     uint64_t *thread_rc)
{
    int64_t page;
    uint64_t mm[6] = {0, 2 * KSI_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      (uint64_t)-1, 0};
    int rc = ksi_borrow_syscall(b, SYS_mmap, mm, &page);
    if (rc)
        return rc;
    if (page < 0 && page > -4096)
        return (int)-page;
    uint64_t code = (uint64_t)page, data = code + KSI_PAGE;
    size_t len = (size_t)(ksi_attach_code_end - ksi_attach_code);
    if (memfd && (rc = ksi_plant_memfd(b, pid, code + KSI_PAGE / 2, blk)) != 0)
        return rc;
    if (ksi_mem_write(pid, code, ksi_attach_code, len) != 0 ||
        ksi_mem_write(pid, data, blk, sizeof *blk) != 0)
        return errno ? errno : EIO;
    int64_t r;
    uint64_t mp[6] = {code, KSI_PAGE, PROT_READ | PROT_EXEC, 0, 0, 0};
    if ((rc = ksi_borrow_syscall(b, SYS_mprotect, mp, &r)) != 0)
        return rc;
    if (r != 0)
        return (int)-r;
    uint64_t args[4] = {data + offsetof(struct ksi_attach_block, thread), 0,
                        code + ksi_attach_thread_off, data};
    *block_addr = data;
    return ksi_borrow_call(b, libc->pthread_create, args, code, thread_rc);
}

/* Waits for the new thread's verdict in the block. */
static int ksi_wait_loaded(pid_t pid, uint64_t data, int timeout_ms, struct ksi_attach_err *e)
{
    double t0 = ksi_now();
    struct ksi_attach_block blk;
    for (;;) {
        if (ksi_mem_read(pid, data, &blk, 64) != 0) {
            e->code = KSI_EXIT_NO_PROCESS;
            snprintf(e->msg, sizeof e->msg, "process %d went away during the attach", (int)pid);
            return -1;
        }
        if (blk.status >= 0x100 && blk.status - 0x100 == 0)
            return 0;
        e->code = KSI_EXIT_ERROR;
        if (blk.status >= 0x100) {
            snprintf(e->msg, sizeof e->msg, "the shim loaded but could not start: %s",
                     strerror((int)(blk.status - 0x100)));
            return -1;
        }
        if (blk.status == 1) {
            char msg[400] = "(no message)";
            if (blk.error && ksi_mem_read(pid, blk.error, msg, sizeof msg - 1) != 0)
                snprintf(msg, sizeof msg, "(unreadable message)");
            msg[sizeof msg - 1] = 0;
            snprintf(e->msg, sizeof e->msg, "the target could not load the shim: %s", msg);
            return -1;
        }
        if ((ksi_now() - t0) * 1e3 > timeout_ms) {
            snprintf(e->msg, sizeof e->msg, "the loader in %d did not finish within %d ms "
                     "(another thread holds its lock: a slow library constructor?). The "
                     "program runs on untouched; the shim loads when the loader is free",
                     (int)pid, timeout_ms);
            return -1;
        }
        usleep(1000);
    }
}

int ksi_attach(pid_t pid, const char *shim, int timeout_ms, struct ksi_attach_info *info,
               struct ksi_attach_err *e)
{
    double t0 = ksi_now();
    memset(info, 0, sizeof *info);
    /* One look at its maps for every question below (maps_view.h). */
    struct ksi_maps maps;
    ksi_maps_read(pid, &maps);
    info->already = maps.shim;
    if (info->already)
        return 0;
    struct ksi_libc libc;
    static struct ksi_attach_block blk;
    int memfd = 0;
    memset(&blk, 0, sizeof blk);
    if (ksi_attach_check(pid, &maps, e) != 0 || ksi_attach_libc(pid, &maps, &libc, e) != 0 ||
        ksi_target_path(pid, shim, blk.path, sizeof blk.path, &memfd, e) != 0)
        return -1;
    blk.memfd = -1;
    blk.close = libc.close;
    blk.dlopen = libc.dlopen, blk.dlsym = libc.dlsym, blk.dlerror = libc.dlerror;
    blk.pthread_detach = libc.pthread_detach;
    snprintf(blk.entry, sizeof blk.entry, "killshim_attach_start");
    struct ksi_borrow *b = NULL;
    double tb = ksi_now();
    if (ksi_borrow_any(pid, &maps, &b, &info->tid, e) != 0)
        return -1;
    info->nr = ksi_borrow_nr(b);
    uint64_t data = 0, thread_rc = 0;
    int rc = ksi_plant(b, pid, &libc, &blk, memfd, &data, &thread_rc);
    int rc_end = ksi_borrow_end(b);
    info->borrowed_ms = (ksi_now() - tb) * 1e3;
    e->code = KSI_EXIT_ERROR;
    if (rc || rc_end) {
        snprintf(e->msg, sizeof e->msg, "attach failed while the thread was borrowed: %s%s",
                 strerror(rc ? rc : rc_end), rc_end ? " (putting it back failed too)" : "");
        return -1;
    }
    if (thread_rc != 0) {
        snprintf(e->msg, sizeof e->msg, "pthread_create in the target failed: %s",
                 strerror((int)thread_rc));
        return -1;
    }
    if (ksi_wait_loaded(pid, data, timeout_ms, e) != 0)
        return -1;
    info->total_ms = (ksi_now() - t0) * 1e3;
    return 0;
}

/* The library next to this program: an installed tree
 * (PREFIX/bin + PREFIX/lib/killshim), a bundle (injector/ + shim/), or
 * bazel-bin (the same). */
static int ksi_default_shim(char *out, size_t cap)
{
    const char *env = getenv("KILLSHIM_LIB");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return -1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = 0;
    static const char *const rel[] = {"/libkillshim.so", "/../lib/killshim/libkillshim.so",
                                      "/../shim/libkillshim.so"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, cap, "%s%s", exe, rel[i]);
        if (access(out, R_OK) == 0)
            return 0;
    }
    return -1;
}

int ksi_do_attach(const struct ksi_opts *o)
{
    char shim[PATH_MAX];
    if (o->shim)
        snprintf(shim, sizeof shim, "%s", o->shim);
    else if (ksi_default_shim(shim, sizeof shim) != 0) {
        ksi_err("cannot find libkillshim.so: give it with --shim PATH or KILLSHIM_LIB");
        return KSI_EXIT_USAGE;
    }
    struct ksi_attach_err e = {0};
    struct ksi_attach_info in;
    int timeout_ms = o->timeout_set ? (int)(o->timeout_s * 1000) : 10000;
    if (ksi_attach(o->pid, shim, timeout_ms, &in, &e) != 0) {
        ksi_err("attach to %d: %s", (int)o->pid, e.msg);
        return e.code ? e.code : KSI_EXIT_ERROR;
    }
    /* On stderr: stdout stays the listing's (or --json's) alone. */
    if (in.already) {
        fprintf(stderr, "killshim: %d already runs the shim: connecting\n", (int)o->pid);
    } else {
        const char *sc = ksi_syscall_name(in.nr);
        fprintf(stderr, "killshim: loaded the shim into %d in %.1f ms (borrowed thread %d, "
                "in %s, for %.2f ms)\n", (int)o->pid, in.total_ms, (int)in.tid,
                sc ? sc : "a system call", in.borrowed_ms);
    }
    return KSI_EXIT_OK;
}
