/* SPDX-License-Identifier: MIT */
/*
 * context_aarch64.S - the "asm" context switch for AArch64 (AAPCS64, ELF).
 *
 * coil__context_asm_swap(from = x0, to = x1) saves exactly what AAPCS64
 * makes a callee preserve: x19-x28, the frame pointer x29, the link
 * register x30 (where this call returns), the low halves d8-d15 of
 * v8-v15, and the FPCR (rounding mode, flush-to-zero, default NaN: the
 * control a C caller relies on keeping). They go in a 176-byte frame on
 * the running stack, sp goes to from->sp (offset 0 of struct
 * coil__context), sp comes from to->sp and the same frame is loaded from
 * the other stack. Everything else is caller-saved, including the FPSR
 * (status flags) and the upper halves of v8-v15.
 *
 * Frame, from to->sp upwards (context_asm.c builds the same by hand):
 *     +0 x19 ... x28
 *    +80 x29, x30
 *    +96 d8 ... d15
 *   +160 FPCR, padding (sp stays 16-byte aligned)
 *
 * Writing the FPCR can be slow (it may synchronise the FP unit), so the
 * swap writes it only when the two contexts' values differ.
 *
 * A made context's first swap returns (x30 in the made frame) to
 * coil__context_asm_start, inside coil__context_asm_trampoline: x19 holds
 * the context, x20 the start function. start never returns; brk traps if
 * it does. The trampoline's CFI marks the return address undefined, so
 * backtraces of a context end there.
 *
 * The swap returns with ret, unlike the x86-64 one (which jumps, to spare
 * the return predictor a certain miss): br x30 would need a BTI landing
 * pad at every call site once branch protection is on, and there is no
 * AArch64 machine here to measure the gain on.
 *
 * The swap's CFI holds on either stack (both carry the same frame).
 * The symbols are hidden: only coil_ symbols leave the shared library.
 * With branch protection (BTI), the swap starts with a landing pad since
 * it is reached through the ops table; the trampoline is reached by ret,
 * which BTI does not check.
 */
#if defined(__aarch64__) && defined(__ELF__) && defined(COIL_HAVE_ASM_CONTEXT)

    .text

    .globl  coil__context_asm_swap
    .hidden coil__context_asm_swap
    .type   coil__context_asm_swap, %function
    .p2align 4
coil__context_asm_swap:
    .cfi_startproc
#if defined(__ARM_FEATURE_BTI_DEFAULT)
    hint    #34                 /* bti c */
#endif
    sub     sp, sp, #176
    .cfi_def_cfa_offset 176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    .cfi_offset d8, -80
    .cfi_offset d9, -72
    .cfi_offset d10, -64
    .cfi_offset d11, -56
    .cfi_offset d12, -48
    .cfi_offset d13, -40
    .cfi_offset d14, -32
    .cfi_offset d15, -24
    mrs     x9, fpcr
    str     x9, [sp, #160]

    mov     x10, sp
    str     x10, [x0]           /* from->sp */
    ldr     x10, [x1]
    mov     sp, x10             /* to->sp: now on the other stack */

    ldr     x10, [sp, #160]
    cmp     x9, x10
    b.eq    1f
    msr     fpcr, x10
1:
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #176
    .cfi_def_cfa_offset 0
    .cfi_restore x19
    .cfi_restore x20
    .cfi_restore x21
    .cfi_restore x22
    .cfi_restore x23
    .cfi_restore x24
    .cfi_restore x25
    .cfi_restore x26
    .cfi_restore x27
    .cfi_restore x28
    .cfi_restore x29
    .cfi_restore x30
    .cfi_restore d8
    .cfi_restore d9
    .cfi_restore d10
    .cfi_restore d11
    .cfi_restore d12
    .cfi_restore d13
    .cfi_restore d14
    .cfi_restore d15
    ret
    .cfi_endproc
    .size   coil__context_asm_swap, . - coil__context_asm_swap

    .globl  coil__context_asm_trampoline
    .hidden coil__context_asm_trampoline
    .type   coil__context_asm_trampoline, %function
    .globl  coil__context_asm_start
    .hidden coil__context_asm_start
    .p2align 4
coil__context_asm_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    /* A made context's frame "returns" to coil__context_asm_start, and
     * unwinders look a return address up one byte back: this nop keeps
     * that byte inside the trampoline's symbol and CFI. */
    nop
coil__context_asm_start:
    mov     x0, x19             /* start(ctx) */
    blr     x20
    brk     #0
    .cfi_endproc
    .size   coil__context_asm_trampoline, . - coil__context_asm_trampoline

#endif

/* Even when empty: without this note the linker makes the stack of every
 * program linking the object executable. */
#if defined(__ELF__)
    .section .note.GNU-stack, "", %progbits
#endif
