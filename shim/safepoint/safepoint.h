/* Where a PC is: the modules of the process, classified when first needed
 * (the doorbell's start of control, redirect.h, or control's own)
 * and refreshed on demand by the control side (dl_iterate_phdr takes the
 * loader's lock, so not in a signal handler but for that first table);
 * looked up from signal handlers through a sequence lock, without locking
 * or allocating. Until the first table exists every lookup finds no module
 * (KS_MOD_NONE).
 *
 * "Runtime" modules are where an abort never fires: libc and the rest of
 * glibc, the dynamic loader, libgcc_s and libunwind, the C++ runtime, the
 * vDSO and the shim itself. Everything else is the application. */
#ifndef KS_SAFEPOINT_H
#define KS_SAFEPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "cfi_step.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ks_mod_kind {
    KS_MOD_APP = 0,      /* the program and its own libraries */
    KS_MOD_LIBC,         /* libc.so.6, libm, libpthread... (glibc) */
    KS_MOD_LOADER,       /* ld-linux-x86-64.so.2 */
    KS_MOD_UNWINDER,     /* libgcc_s.so.1, libunwind */
    KS_MOD_CXXRT,        /* libstdc++.so.6 */
    KS_MOD_SHIM,         /* libkillshim.so */
    KS_MOD_VDSO,
    KS_MOD_SANRT,        /* libasan, libtsan, libubsan...: their malloc and
                            interceptors take internal locks like libc's */
    KS_MOD_ALLOC,        /* the program's malloc when a library of its own
                            defines it (jemalloc, tcmalloc, mimalloc): its
                            fast paths update per-thread lists without a
                            lock the shim could see */
    KS_MOD_NONE,         /* in no module known (JIT code, or loaded since) */
};

struct ks_pc_info {
    int kind;            /* enum ks_mod_kind */
    uintptr_t bias;      /* load address (dlpi_addr) */
    uintptr_t seg_lo, seg_hi;   /* the loaded segment that holds the address */
    char name[40];       /* basename, truncated */
};

/* Rebuilds the table if a module was loaded or unloaded since the last time.
 * Not in signal context. Returns 0 or an errno. */
int ks_safepoint_refresh(void);

/* 1 once a table is published (ks_safepoint_refresh has run). A process
 * that never serves never builds one: at start it cost every process (every
 * exec'd child of a program under the shim) about 7,700 instructions
 * (docs/bench.md); the doorbell builds the first in its handler where that
 * is safe (redirect.h), control's start otherwise. Async-signal-safe. */
int ks_safepoint_built(void);

/* Where PC is, without the table: its module's kind by name (or
 * KS_MOD_SHIM, or KS_MOD_NONE outside every object), and, if CFI is not
 * NULL, that module's .eh_frame_hdr and the bounds for cfi_step.h: the
 * object's range as _dl_find_object gives it (all its segments, or for an
 * object whose segments are not contiguous its first code segment only),
 * and for the reads of the CFI the segment that holds the header where that
 * range leaves it out. Lock-free: glibc's
 * _dl_find_object. Never KS_MOD_ALLOC (that needs the table's malloc
 * lookup). Async-signal-safe. */
int ks_safepoint_kind_now(uintptr_t pc, struct ks_cfi_module *cfi);

/* ks_safepoint_refresh, then each application module's GOT slots for the
 * landing pad scan (ks_safepoint_got_kind), which every process would
 * otherwise pay for at start: before an abort or a cancel check. Not in
 * signal context. Returns 0 or an errno. */
int ks_safepoint_refresh_pads(void);

/* Fills OUT for ADDR. Async-signal-safe. Returns OUT->kind. */
int ks_safepoint_lookup(uintptr_t addr, struct ks_pc_info *out);

/* The CFI of PC's module for cfi_step.h (its env's find): the module's
 * .eh_frame_hdr (0 if it has none) with the segment that holds it, and the
 * segment that holds PC. Returns 0, or ENOENT if PC lies in no loaded
 * segment of the table. Async-signal-safe. */
int ks_safepoint_cfi(uintptr_t pc, struct ks_cfi_module *out);

/* What the function whose GOT slot is SLOT is, for the landing pad scan:
 * enum ks_lp_target (gotsym.h names them). Async-signal-safe. */
int ks_safepoint_got_kind(uintptr_t slot);

/* 1 if [ADDR, ADDR+LEN) lies inside one loaded segment. Async-signal-safe. */
int ks_safepoint_readable(uintptr_t addr, size_t len);

/* 1 if the executable defines the program's malloc (the first definition in
 * the loader's order, as found by the first table's build): its allocator
 * is its own code. Async-signal-safe. */
int ks_safepoint_own_malloc(void);

/* 1 for the kinds an abort never fires in. */
static inline int ks_mod_is_runtime(int kind) { return kind != KS_MOD_APP; }

const char *ks_mod_kind_name(int kind);

#ifdef __cplusplus
}
#endif
#endif
