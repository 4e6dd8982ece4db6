/* SPDX-License-Identifier: MIT */
/*
 * context_ucontext.c - the portable "ucontext" context switch:
 * getcontext/makecontext/swapcontext.
 *
 * A made context's ucontext_t is carved from the top of its own stack
 * (64-byte aligned), so making a context allocates nothing; the stack
 * proper (uc_stack) is what lies below it. ctx->sp points to that
 * ucontext_t; a thread's own context keeps it in the storage the caller
 * passes to coil__context_init_thread (thread_storage bytes).
 *
 * makecontext passes only int arguments to the function it starts, so the
 * context pointer and the start function travel as two 32-bit halves each
 * and are put together again in uc_entry. (glibc happens to pass 64-bit
 * values intact on 64-bit targets; other libcs need not.)
 *
 * getcontext captures the caller's signal mask and floating-point
 * environment, so a new context inherits its creator's rounding mode, as
 * with the asm implementation. swapcontext saves and restores the signal
 * mask with a system call on every switch: that is most of its cost.
 */
#include <stdint.h>
#include <ucontext.h>

#include "context.h"
#include "internal.h"

static int high_half(uint64_t v)
{
    return (int)(uint32_t)(v >> 32);
}

static int low_half(uint64_t v)
{
    return (int)(uint32_t)v;
}

static uint64_t join(int high, int low)
{
    return ((uint64_t)(uint32_t)high << 32) | (uint32_t)low;
}

typedef void (*start_fn)(struct coil__context *ctx);

static void uc_entry(int ctx_high, int ctx_low, int start_high, int start_low)
{
    struct coil__context *ctx =
        (struct coil__context *)(uintptr_t)join(ctx_high, ctx_low);
    start_fn start = (start_fn)(uintptr_t)join(start_high, start_low);
    start(ctx);
    /* With uc_link NULL, returning would end the whole thread. */
    coil__panic("a ucontext context's start returned", __FILE__, __LINE__);
}

static void uc_make(struct coil__context *ctx, void *base, size_t size,
                    void (*start)(struct coil__context *ctx))
{
    uintptr_t top = (uintptr_t)base + size;
    uintptr_t at = (top - sizeof(ucontext_t)) & ~(uintptr_t)63;
    ucontext_t *uc = (ucontext_t *)at;
    COIL__MUST(at > (uintptr_t)base);
    COIL__MUST(getcontext(uc) == 0);
    uc->uc_link = NULL;
    uc->uc_stack.ss_sp = base;
    uc->uc_stack.ss_size = at - (uintptr_t)base;
    uc->uc_stack.ss_flags = 0;
    uint64_t c = (uintptr_t)ctx, s = (uintptr_t)start;
    makecontext(uc, (void (*)(void))uc_entry, 4, high_half(c), low_half(c),
                high_half(s), low_half(s));
    ctx->sp = uc;
}

static void uc_swap(struct coil__context *from, struct coil__context *to)
{
    COIL__MUST(swapcontext(from->sp, to->sp) == 0);
}

const struct coil__context_ops coil__context_ucontext = {
    .name = "ucontext",
    .thread_storage = sizeof(ucontext_t),
    .make = uc_make,
    .swap = uc_swap,
};
