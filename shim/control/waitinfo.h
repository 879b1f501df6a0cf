/* What a blocked thread waits for, beyond the registry's wait_kind/wait_obj:
 * the thread that holds the lock. Shared by "list" and "stack". */
#ifndef KS_WAITINFO_H
#define KS_WAITINFO_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KS_OWNER_FREE 0       /* the lock is not held (the wait just ended) */
#define KS_OWNER_UNKNOWN (-1) /* held, but by whom is not recorded (readers,
                               * or a lock taken outside glibc's bookkeeping) */

/* The owner of the lock at OBJ of KIND (enum ks_wait_kind), read from glibc's
 * own bookkeeping (a mutex's __data.__owner, an rwlock's __cur_writer). OBJ
 * is not trusted: the memory is read with process_vm_readv, so a lock freed
 * since its waiter recorded it yields an error, not a crash. Returns a tid,
 * KS_OWNER_FREE or KS_OWNER_UNKNOWN; KS_OWNER_UNKNOWN if OBJ is unreadable. */
pid_t ks_wait_owner(int kind, const void *obj);

/* Whether TID, whose record says it waits for a lock OWNER holds, took it
 * already: OWNER is TID itself and TID is not blocked in a futex (its hook
 * has yet to clear the record; a thread stopped there by a handler, as
 * Boehm's collector stops them, was listed waiting for itself). A normal
 * mutex TID locked twice keeps it blocked in futex: that self-deadlock is
 * still one. SEEN: TID's system call as read before anything signalled it
 * (a dump's signal takes it out of the futex for a moment), or NULL to read
 * /proc now; read only when OWNER is TID. */
struct ks_syscall;
int ks_wait_is_over(pid_t tid, pid_t owner, const struct ks_syscall *seen);

/* "mutex", "rwlock" or NULL for KIND. */
const char *ks_wait_kind_name(int kind);

#ifdef __cplusplus
}
#endif
#endif
