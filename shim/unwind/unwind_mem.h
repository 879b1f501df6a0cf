/* libunwind's memory reads, checked without a file descriptor.
 *
 * libunwind 1.6.2 (Debian's, built with CONSERVATIVE_CHECKS) asks for every
 * stack read of unw_step to be validated, and validates an address by
 * writing its byte into a pipe it opens at its one-time init: the pipe takes
 * the program's lowest free numbers (3 and 4 in most programs, so the
 * program's first open() returned 5), and a program that closes its fds and
 * opens its own files there gets one byte read from its input and one byte
 * of memory written into its output per check; a failed read makes libunwind
 * close both numbers, the program's files, and open a new pipe. Upstream
 * still works that way (a per-thread pipe, src/mi/Gaddress_validator.c).
 *
 * So the shim replaces the read accessor of libunwind's local address space
 * (unw_get_accessors returns the live table) with one that asks the kernel
 * whether the 8 bytes are readable through a system call that needs no fd,
 * and it keeps libunwind's init from creating the pipe at all (pipe2, see
 * interpose_pipe.c). Nothing else of libunwind changes: reads it does not
 * ask to validate are plain loads, as before, and writes (unw_set_reg on a
 * saved register) are stores, as before. */
#ifndef KS_UNWIND_MEM_H
#define KS_UNWIND_MEM_H

#ifndef UNW_LOCAL_ONLY
#define UNW_LOCAL_ONLY
#endif
#include <libunwind.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs libunwind's one-time init (if nothing ran it yet) without letting it
 * open its pipe, then installs the fd-free read accessor into LOCAL, the
 * local address space, through GET_ACCESSORS (unw_get_accessors): both from
 * the caller's binding to libunwind.so.8, the linked one (stack_capture.c)
 * or the private one (unwind.c), which are the same loaded library.
 * Idempotent and thread-safe; call before the shim's first unwind (both
 * bindings do, at init). Returns 0, or an errno if the table could not be
 * had (libunwind then keeps validating through its own pipe). */
int ks_unw_mem_install(unw_accessors_t *(*get_accessors)(unw_addr_space_t),
                       unw_addr_space_t local);

/* 1 once the accessor is installed. */
int ks_unw_mem_installed(void);

/* 1 if the calling thread is inside ks_unw_mem_install's call into
 * libunwind's init: interpose_pipe.c then fails pipe2 (EMFILE), which
 * libunwind ignores, so its validation pipe is never created. */
int ks_unw_mem_in_init(void);

/* 1 if the 8 bytes at ADDR can be read now, asked of the kernel without an
 * fd and without touching them. Async-signal-safe; errno kept. */
int ks_mem_readable(uintptr_t addr);

/* Copies N bytes at SRC, an address of this process that another thread may
 * unmap or rewrite meanwhile, into DST, without ever faulting:
 * process_vm_readv on the own process (the kernel copies, and an unmapped
 * page is an error, not a SIGSEGV; same thread group, so no ptrace
 * permission is asked), else, where that call is refused (a seccomp
 * filter), each page probed with ks_mem_readable then copied (a page
 * unmapped between the two still faults: the fallback is weaker). Returns
 * 0, or EFAULT if any byte could not be read (DST then holds garbage).
 * The bytes of a region that changes during the copy may be torn: callers
 * validate what they read. Async-signal-safe; errno kept. */
int ks_mem_copy(void *dst, const void *src, size_t n);

#ifdef __cplusplus
}
#endif
#endif
