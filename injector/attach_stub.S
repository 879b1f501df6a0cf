/* The code killshim-inject --attach copies into the target (attach.c): a
 * trap the hijacked thread returns to, and the start routine of the one
 * thread it creates. Position independent: everything it needs is in the
 * block its argument points to (struct ksi_attach_block, attach.h), which
 * the injector filled before the thread was created. */
    .section .rodata
    .globl ksi_attach_code
    .globl ksi_attach_code_end
    .globl ksi_attach_thread_off
    .p2align 4
ksi_attach_code:
    /* Offset 0: where the hijacked thread's call to pthread_create returns.
     * The injector sees the SIGTRAP, restores every register, detaches. */
    int3
    int3
    .p2align 4
ksi_attach_thread:
    /* void *thread(struct ksi_attach_block *b): dlopen the shim, find its
     * entry, call it; on failure keep dlerror()'s message for the injector.
     * b->status: 0 pending, 1 failed (b->error), 0x100 + entry's result. */
    push %rbx                    /* also aligns the stack for the calls */
    mov %rdi, %rbx
    mov %fs:0x10, %rdi           /* pthread_self(): the TCB's self pointer */
    call *56(%rbx)               /* b->pthread_detach: nobody joins this thread */
    lea 80(%rbx), %rdi           /* b->path */
    mov $0x1002, %esi            /* RTLD_NOW | RTLD_NODELETE: hooks outlive any dlclose */
    call *0(%rbx)                /* b->dlopen */
    mov %rax, 32(%rbx)           /* b->handle */
    mov 72(%rbx), %rdi           /* b->memfd: loaded from a memfd? */
    test %rdi, %rdi
    js 3f
    call *64(%rbx)               /* b->close: the mapping stays, the fd goes */
3:  mov 32(%rbx), %rax
    test %rax, %rax
    jz 1f
    mov %rax, %rdi
    lea 3072(%rbx), %rsi         /* b->entry */
    call *8(%rbx)                /* b->dlsym */
    test %rax, %rax
    jz 1f
    mov %rbx, %rdi
    call *%rax                   /* int killshim_attach_start(void *) */
    mov %eax, %eax
    add $0x100, %rax
    mov %rax, 24(%rbx)           /* b->status */
    jmp 2f
1:  call *16(%rbx)               /* b->dlerror */
    mov %rax, 40(%rbx)           /* b->error */
    movq $1, 24(%rbx)
2:  xor %eax, %eax
    pop %rbx
    ret
ksi_attach_code_end:
    .section .rodata
    .p2align 3
ksi_attach_thread_off:
    .quad ksi_attach_thread - ksi_attach_code
    .section .note.GNU-stack,"",@progbits
