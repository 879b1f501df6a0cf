/* ks_abort_entry: the abort's way into its exit routine from a redirected
 * context. It is entered with a jump (a signal handler set RIP, or a patched
 * return went through abort_tramp.S), with [rsp] holding a return address
 * into the application: exactly the state right after a call instruction.
 * Its CFI says so, so the unwinder sees this frame as the callee of that call
 * and runs the caller's landing pads for that call site. Optimized code does
 * not always keep the stack 16-byte aligned at a call, so the entry realigns
 * through a frame pointer. */
    .text
    .globl  ks_abort_entry
    .hidden ks_abort_entry
    .type   ks_abort_entry, @function
    .p2align 4
ks_abort_entry:
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    movq    %rsp, %rbp
    .cfi_def_cfa_register %rbp
    andq    $-16, %rsp
    call    ks_abort_exit
    ud2
    .cfi_endproc
    .size   ks_abort_entry, .-ks_abort_entry

    .section .note.GNU-stack,"",@progbits
