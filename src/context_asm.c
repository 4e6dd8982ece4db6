/* SPDX-License-Identifier: MIT */
/*
 * context_asm.c - the C half of the "asm" context switch: make() and the
 * ops table. The switch itself and the first-entry trampoline are in
 * context_x86_64.S / context_aarch64.S.
 *
 * A suspended context is a frame on its own stack, exactly what
 * coil__context_asm_swap pushed before storing the stack pointer into
 * ctx->sp. make() writes the same frame by hand at the top of a fresh
 * stack, with the trampoline as the return address, the context and the
 * start function in two callee-saved registers, a zero frame pointer (so
 * frame-pointer walks stop there), and the floating-point control state
 * of the thread calling make(): a new context inherits its creator's
 * rounding mode as a new thread does, and as ucontext's getcontext does.
 * The first swap to it pops that frame and "returns" into the trampoline,
 * which calls start(ctx) with the stack aligned as the ABI requires.
 *
 * The frame layout below must match the push order in the .S file.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "context.h"
#include "internal.h"

#ifdef COIL_HAVE_ASM_CONTEXT

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "COIL_HAVE_ASM_CONTEXT is set but there is no assembly for this CPU"
#endif

#define COIL__HIDDEN __attribute__((visibility("hidden")))

COIL__HIDDEN void coil__context_asm_swap(struct coil__context *from,
                                         struct coil__context *to);
/* The trampoline's entry point, just past its first instruction. */
COIL__HIDDEN void coil__context_asm_start(void);

/* The assembly stores and loads the stack pointer at offset 0. */
_Static_assert(offsetof(struct coil__context, sp) == 0,
               "coil__context.sp must come first");

#if defined(__x86_64__)
/* Lowest address first: the swap pushes rbp first, the MXCSR last. */
struct frame {
    uint32_t mxcsr;  /* control and status; status cleared by make */
    uint16_t x87_cw; /* x87 control word */
    uint16_t pad;
    uint64_t r15, r14, r13, r12, rbx, rbp;
    uint64_t ret; /* where the swap's ret goes */
};
_Static_assert(sizeof(struct frame) == 64, "frame layout");

#define MXCSR_STATUS 0x3fu /* the sticky exception flags */

static void fill(struct frame *f, struct coil__context *ctx,
                 void (*start)(struct coil__context *ctx))
{
    __asm__ volatile("stmxcsr %0" : "=m"(f->mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(f->x87_cw));
    f->mxcsr &= ~MXCSR_STATUS;
    f->r12 = (uintptr_t)ctx;
    f->r13 = (uintptr_t)start;
    f->rbp = 0;
    f->ret = (uintptr_t)coil__context_asm_start;
}
#elif defined(__aarch64__)
/* Lowest address first, as the swap stores them. */
struct frame {
    uint64_t x19_x28[10];
    uint64_t fp, lr; /* x29, x30 */
    uint64_t d8_d15[8];
    uint64_t fpcr;
    uint64_t pad; /* keeps sp 16-byte aligned */
};
_Static_assert(sizeof(struct frame) == 176, "frame layout");

static void fill(struct frame *f, struct coil__context *ctx,
                 void (*start)(struct coil__context *ctx))
{
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    f->fpcr = fpcr;
    f->x19_x28[0] = (uintptr_t)ctx;
    f->x19_x28[1] = (uintptr_t)start;
    f->fp = 0;
    f->lr = (uintptr_t)coil__context_asm_start;
}
#endif

static void asm_make(struct coil__context *ctx, void *base, size_t size,
                     void (*start)(struct coil__context *ctx))
{
    /*
     * The trampoline starts with sp just above the frame. x86-64: it
     * calls start, so sp must be 16-byte aligned there (rsp + 8 aligned
     * at start's first instruction); aarch64: sp is always 16-aligned.
     * 16 spare bytes at the very top stay zero: a null "return address"
     * for unwinders that do not read the trampoline's CFI.
     */
    uintptr_t top = ((uintptr_t)base + size) & ~(uintptr_t)15;
    struct frame *f = (struct frame *)(top - 16 - sizeof(struct frame));
    assert((uintptr_t)f >= (uintptr_t)base);
    memset(f, 0, sizeof(*f) + 16);
    fill(f, ctx, start);
    ctx->sp = f;
}

const struct coil__context_ops coil__context_asm = {
    .name = "asm",
    .thread_storage = 0,
    .make = asm_make,
    .swap = coil__context_asm_swap,
};

#endif /* COIL_HAVE_ASM_CONTEXT */
