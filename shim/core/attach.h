/* A shim loaded into a running program (killshim-inject --attach,
 * docs/attach.md) rather than preloaded: what differs.
 *
 * - The threads that existed before the load never passed through the
 *   pthread_create hook: they are not in the registry. Their tids are noted
 *   once, at the load, so that a listing calls them "pre-attach" rather
 *   than "foreign"; nothing is known of the locks they hold.
 * - Every object already loaded bound pthread_create, the lock and wait
 *   functions... to libc's: ks_got_patch_all points those bindings at the
 *   shim's hooks, as a preload would have. */
#ifndef KS_ATTACH_H
#define KS_ATTACH_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 once the shim knows it was loaded late (its constructor ran on a thread
 * that is not the main one: a preload's runs on the main thread). Set
 * before the first resolution (resolve.c then also searches the objects
 * loaded before the shim). */
extern int ks_loaded_late;

/* Notes every task of the process but the caller as pre-attach. Once; the
 * set is published atomically (the control server may already run). */
void ks_preattach_note(void);
/* 1 if TID was a thread of the process when the shim was attached. */
int ks_preattach_has(pid_t tid);

/* The cancelhandling bits of glibc's struct pthread (nptl/descr.h, the
 * same since 2.3; libthread_db reads the word, not the bits). */
#define KS_CANCELSTATE_BIT 0x01   /* pthread_setcancelstate(DISABLE) */
#define KS_CANCELTYPE_BIT 0x02   /* asynchronous */
#define KS_CANCELING_BIT 0x04
#define KS_CANCELED_BIT 0x08      /* a cancel was asked */
#define KS_EXITING_BIT 0x10       /* on its way out */

/* The pthread_t of pre-attach thread TID (found on glibc's thread list at
 * the attach) and its cancelhandling word now, if the struct pthread still
 * belongs to TID: its tid field, which the kernel clears at the thread's
 * exit and a reuse for a later thread overwrites, is read (without touching
 * the memory: it may be unmapped) and must equal TID. Nothing is kept in
 * the thread's own memory, so nothing needs undoing at its exit. The answer
 * is a snapshot: the thread may exit right after (see docs/attach.md for
 * what the caller does about it). Returns 0, ESRCH (not a pre-attach
 * thread, or gone) or ENOENT (its struct pthread was not found). */
int ks_preattach_thread(pid_t tid, pthread_t *pd, int *cancelhandling);
/* The start routine glibc keeps for pre-attach thread TID (what it passed
 * to pthread_create), or NULL if unknown or gone. */
void *ks_preattach_start_routine(pid_t tid);
/* Makes PD's cancellation asynchronous and unmarks it as cancelled, for a
 * SIGCANCEL that glibc's handler then acts on (a forced abort of a
 * pre-attach thread; see preattach.c). PD: as ks_preattach_thread just gave
 * it, after a pthread_cancel of it (which installs glibc's handler).
 * Returns 0 or ESRCH (the thread is exiting). */
int ks_preattach_set_async(pthread_t pd);

/* Points the GOT slots of every loaded object (but the shim, libc and the
 * loader) that bind a function the shim interposes at the shim's hook, and
 * first (ks_defs_patch) the definitions those slots were bound to, so that
 * objects loaded later bind to the hooks themselves.
 * A slot is changed only if it holds libc's function (the one the hook
 * calls) or is still unresolved (lazy binding): a slot another interposer
 * took, or a compatibility version, is left alone. Returns the number of
 * slots changed. */
int ks_got_patch_all(void);

/* After an attach: if objects were loaded or unloaded since the last walk
 * (the loader's dlpi_adds and dlpi_subs), points the slots of the program's
 * objects (those loaded since included; never the shim's own dependencies)
 * at the hooks as ks_got_patch_all does. An object whose relocation is still
 * under way is skipped and looked at by the next call. Cheap when nothing
 * was loaded (one dl_iterate_phdr step). Called before each control
 * request. Objects loaded after the attach bind to the hooks already
 * (ks_defs_patch): this catches what that could not change (a policy that
 * refuses a writable page of code) and objects whose load raced the attach.
 * Returns the number of slots changed. */
int ks_got_patch_later(void);

/* Leads every definition of NAME, of any version, in the loaded object
 * that holds REAL (libc's function, or a sanitizer runtime's) and whose
 * address is REAL, to HOOK: its dynamic symbol's value is changed, so that
 * every later lookup of NAME (an object dlopened later, before its
 * constructors run; a lazy binding; dlsym) gives HOOK. See defs_patch.c for
 * why it is safe and what it changes. Once, at the attach, before the
 * control server starts. Returns the number of definitions changed. */
int ks_defs_patch(const char *name, void *real, void *hook);
/* What a definition ks_defs_patch changed gave before: REAL if ADDR is the
 * HOOK it put under NAME, else ADDR. For the shim's lookups that want
 * libc's function itself (dlsym now gives the hook). */
void *ks_defs_original(const char *name, void *addr);

/* In the shim's own dependencies (loaded with it, after it): pipe2 only,
 * which libunwind's init calls and the shim must refuse it
 * (interpose/interpose_pipe.c), as it does when preloaded. Before ks_init
 * (which runs that init). Returns the number of slots changed. */
int ks_got_patch_deps(void);

/* In the one loaded object whose load bias is BASE (which must be fully
 * relocated, and not unloaded meanwhile): every GOT slot of an undefined
 * function or object NAME for which TO(NAME, ARG) gives an address is
 * pointed there; TO returns NULL to leave a slot as the loader bound it.
 * TO is called after the walk of the loader's list, not under its lock (it
 * may call dlsym). Up to 256 slots. Returns the number of slots changed.
 * For the shim's own dependencies (libunwind: shim/unwind/unwind.c). */
int ks_got_rebind(uintptr_t base, void *(*to)(const char *name, void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
