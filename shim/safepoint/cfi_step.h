/* The shim's own x86-64 frame stepper over .eh_frame (DWARF CFI), for the
 * doorbell's safety walk (redirect.c), which runs in a signal handler of a
 * process that may have loaded no unwinder yet.
 *
 * Async-signal-safe: no lock, no allocation, no loader call. The caller's
 * find callback names, for a PC, its module's .eh_frame_hdr (the binary
 * search table of PT_GNU_EH_FRAME) and the loaded segments that hold the PC
 * and the table; every read of CFI stays inside the table's segment, every
 * code byte read inside the PC's, and every stack read is of a page the
 * caller's readable callback found readable.
 *
 * It knows what gcc, clang and glibc emit on x86-64: the CFA programs of
 * ordinary and realigned (DRAP) frames, PLT entries' CFA expression, and the
 * kernel's signal frame (glibc's __restore_rt). Anything else fails the step:
 * a caller that refuses on failure is never misled by a guess (there is no
 * frame-pointer fallback). */
#ifndef KS_CFI_STEP_H
#define KS_CFI_STEP_H

#include <stdint.h>
#include <ucontext.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where the CFI of a PC's module lies. */
struct ks_cfi_module {
    uintptr_t eh_hdr;            /* .eh_frame_hdr; 0: the module has none */
    uintptr_t hdr_lo, hdr_hi;    /* the loaded segment that holds it, and .eh_frame */
    uintptr_t pc_lo, pc_hi;      /* the loaded segment that holds the PC */
};

struct ks_cfi_env {
    /* 0 and OUT filled if PC lies in a loaded segment of a known module. */
    int (*find)(uintptr_t pc, struct ks_cfi_module *out);
    /* 1 if the 8 bytes at ADDR may be read now. */
    int (*readable)(uintptr_t addr);
};

/* DWARF's numbering: rax rdx rcx rbx rsi rdi rbp rsp r8..r15, then 16, the
 * return address column (the frame's rip). */
#define KS_CFI_NREG 17
#define KS_CFI_RSP 7
#define KS_CFI_RIP 16

struct ks_cfi_cursor {
    uintptr_t reg[KS_CFI_NREG];
    uint32_t known;              /* bit r: reg[r] holds the frame's value */
    int exact;                   /* reg[RIP] is where the frame stopped (frame 0, or
                                    interrupted by a signal), not a return address */
    int signal;                  /* the frame is the kernel's return into glibc's
                                    __restore_rt: its caller's registers are the
                                    ucontext on its stack */
    const struct ks_cfi_env *env;
    uintptr_t ok_lo, ok_hi;      /* stack pages found readable so far */
};

/* Frame 0: the interrupted registers of UC. ENV must outlive the cursor. */
void ks_cfi_init(struct ks_cfi_cursor *c, const ucontext_t *uc, const struct ks_cfi_env *env);

/* The frame's procedure start (its FDE's pc_begin) into *START. Returns 0,
 * or ENOENT if no FDE covers the frame's PC, EINVAL for malformed CFI. */
int ks_cfi_proc_start(struct ks_cfi_cursor *c, uintptr_t *start);

/* Steps C to its caller. Returns 1 (stepped), 0 (the outermost frame: its
 * CFI leaves the return address undefined, as _start and a thread's clone
 * do), or -1 (cannot step: no CFI, a rule or read it refuses; C's
 * registers are then unchanged). */
int ks_cfi_step(struct ks_cfi_cursor *c);

#ifdef __cplusplus
}
#endif
#endif
