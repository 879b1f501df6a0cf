/* Return-address trampolines: the abort's way to leave when a runtime call
 * (libc, the loader, the C++ runtime...) returns to the application.
 *
 * The abort replaces the return address of that call (the slot just below
 * the caller's stack pointer) with ks_tramp_K and keeps the original in
 * ks_tramp_slots[K]. When the call returns, ks_tramp_K pushes K into the slot
 * the address was popped from and jumps to the common part, which puts the
 * original address back into the slot and asks ks_abort_trampoline_fire(K):
 * leave (jump to ks_abort_entry: [rsp] is the original return address, as if
 * the application had called it) or carry on (return to the original
 * address with the return registers untouched).
 *
 * While a return address is replaced, something may unwind through that
 * frame: an exception thrown by a callback (qsort's comparator), a backtrace,
 * a profiler. So each trampoline has an FDE of its own, written out below,
 * that describes a frame between the runtime frame and the application
 * frame: CFA = rsp (the application frame's stack pointer), return address
 * saved in ks_tramp_ips[K]. Two constraints shape it:
 * - libgcc identifies a frame by the CFA of its callee (minus 1 for a frame
 *   below a signal frame), and its phase 2 stops at the identity phase 1
 *   found a handler at. This frame's CFA equals the runtime frame's, so the
 *   FDE is marked as a signal frame ('S'): the application frame's identity
 *   then differs by one. libunwind takes the CFA as the caller's stack
 *   pointer, so the CFA itself must stay rsp.
 * - Below a signal frame the unwinder takes the caller's IP as exact, not as
 *   a return address: ks_tramp_ips[K] holds the return address minus 1, which
 *   lies in the call instruction, where a call site is looked up anyway.
 * DWARF has no access to thread-local storage and an absolute address would
 * need a text relocation, so the expression finds the slot from the frame's
 * own IP (which is ks_tramp_K) and two PC-relative constants:
 *     rip + (ips_K - P1) - (ks_tramp_K - P2) - 6 = ips_K,  P2 = P1 + 6. */

#define KS_TRAMP_N 64

    .text
    .p2align 4
    .globl  ks_tramp_base
    .hidden ks_tramp_base
ks_tramp_base:

    .altmacro
    .macro KS_TRAMP k
    .p2align 4                         /* abort_tramp.h's ks_tramp_addr: 16 bytes apart */
.Lpre\k:
    nop                                /* return address - 1 lands here, inside the FDE */
.Ltramp\k:
    pushq   $\k
    jmp     ks_tramp_common
.Lend\k:
    .endm

    .set i, 0
    .rept KS_TRAMP_N
    KS_TRAMP %i
    .set i, i + 1
    .endr

    .p2align 4
ks_tramp_common:                       /* [rsp] = K, in the return-address slot */
    movq    (%rsp), %rdi
    leaq    ks_tramp_slots(%rip), %rsi
    movq    (%rsi,%rdi,8), %rsi
    movq    %rsi, (%rsp)               /* the slot holds the original address again */
    pushq   %rax
    pushq   %rdx
    pushq   %rbp
    movq    %rsp, %rbp
    andq    $-16, %rsp
    subq    $32, %rsp
    movdqu  %xmm0, (%rsp)
    movdqu  %xmm1, 16(%rsp)
    call    ks_abort_trampoline_fire   /* general registers only: x87 untouched */
    movdqu  (%rsp), %xmm0
    movdqu  16(%rsp), %xmm1
    movq    %rbp, %rsp
    popq    %rbp
    popq    %rdx
    testl   %eax, %eax
    popq    %rax                       /* pop leaves the flags alone */
    jnz     ks_abort_entry
    ret

/* The original return addresses, and the same minus 1 for the unwinder. */
    .bss
    .p2align 3
    .globl  ks_tramp_slots
    .hidden ks_tramp_slots
ks_tramp_slots:
    .zero   8 * KS_TRAMP_N
    .globl  ks_tramp_ips
    .hidden ks_tramp_ips
ks_tramp_ips:
    .zero   8 * KS_TRAMP_N

/* ---- Unwind information, by hand ---------------------------------------- */
    .section .eh_frame, "a", @unwind
    .p2align 3
.Lcie:
    .long   .Lcie_end - .Lcie_id       /* length */
.Lcie_id:
    .long   0                          /* CIE id */
    .byte   1                          /* version */
    .asciz  "zRS"
    .uleb128 1                         /* code alignment */
    .sleb128 -8                        /* data alignment */
    .uleb128 16                        /* return address column: rip */
    .uleb128 1                         /* augmentation data length */
    .byte   0x1b                       /* FDE pointers: pcrel sdata4 */
    .byte   0x0c, 7, 8                 /* DW_CFA_def_cfa rsp, 8 */
    .byte   0x90, 1                    /* DW_CFA_offset rip, cfa-8 */
    .p2align 3
.Lcie_end:

    .macro KS_FDE k
.Lfde\k:
    .long   .Lfde_end\k - .Lfde_ciep\k /* length */
.Lfde_ciep\k:
    .long   .Lfde_ciep\k - .Lcie       /* CIE pointer */
    .long   .Lpre\k - .                /* pc begin */
    .long   .Lend\k - .Lpre\k          /* pc range */
    .uleb128 0                         /* augmentation data length */
    .byte   0x0e, 0                    /* DW_CFA_def_cfa_offset 0: CFA = rsp */
    .byte   0x10, 16, 16               /* DW_CFA_expression rip, 16 bytes: */
    .byte   0x80, 0                    /*   DW_OP_breg16 (rip) 0 */
    .byte   0x0d                       /*   DW_OP_const4s */
    .long   ks_tramp_ips + 8 * \k - .     /* P1 */
    .byte   0x22                       /*   DW_OP_plus */
    .byte   0x0d                       /*   DW_OP_const4s */
    .long   .Ltramp\k - .              /* P2 = P1 + 6 */
    .byte   0x1c                       /*   DW_OP_minus */
    .byte   0x36, 0x1c                 /*   DW_OP_lit6, DW_OP_minus */
    .p2align 3
.Lfde_end\k:
    .endm

    .set i, 0
    .rept KS_TRAMP_N
    KS_FDE %i
    .set i, i + 1
    .endr

    .section .note.GNU-stack,"",@progbits
