/* SPDX-License-Identifier: MIT */
/*
 * context.h - the context-switch contract: prepare a context that will run
 * entry(arg) on a given stack, and switch from one context to another.
 *
 * Two implementations, chosen per loop at run time (like pollers):
 *   "asm"       context_x86_64.S / context_aarch64.S: saves only what the
 *               ABI says a callee must preserve (x86-64: rbx, rbp, r12-r15,
 *               rsp, the MXCSR and the x87 control word;
 *               aarch64: x19-x30, sp, d8-d15, FPCR), a few ns;
 *   "ucontext"  context_ucontext.c: makecontext/swapcontext, portable,
 *               slower (swapcontext saves the signal mask with a syscall).
 * COIL_CONTEXT=ucontext|asm picks one (default: asm where built); the
 * build option COIL_FORCE_UCONTEXT leaves the assembly out.
 *
 * coil__context_switch is the one place that switches, so it is also the
 * one place that tells the sanitizers: ASan's fiber annotations
 * (__sanitizer_start/finish_switch_fiber) and TSan's fibers. Stacks are
 * registered with valgrind by stack.c.
 *
 * A task's memory, top of the stack downwards:
 *
 *    base + size  +---------------------------+  high addresses
 *                 | (ucontext: its ucontext_t)|
 *                 | first frame: the entry    |
 *                 | trampoline calls entry()  |
 *                 | ... the task's frames ... |
 *                 |        grows down         |
 *    base         +---------------------------+
 *                 | guard: no access          |  a hit is an overflow:
 *    mapping      +---------------------------+  reported, then abort
 *
 * A context that is not running keeps its registers on its own stack
 * (asm: ctx->sp is the saved stack pointer) or in a ucontext_t (ucontext:
 * ctx->sp points to it).
 */
#ifndef COIL_CONTEXT_H
#define COIL_CONTEXT_H

#include <stddef.h>

typedef void (*coil__context_entry)(void *arg);

struct coil__context {
    void *sp;          /* asm: saved stack pointer; ucontext: ucontext_t * */
    void *stack_base;  /* lowest usable address; NULL: a thread's stack
                          (learned at the first switch away from it) */
    size_t stack_size; /* usable bytes above stack_base */
    void *asan_fake;   /* ASan's fake-stack handle while switched away */
    void *tsan_fiber;  /* TSan's fiber for this context */
    coil__context_entry entry; /* what to run first, and with what */
    void *arg;
};

struct coil__context_ops {
    const char *name; /* "asm" or "ucontext"; first (pick.c) */
    /*
     * Bytes the implementation needs for a thread's own context (one that
     * is never made, only switched away from): sizeof(ucontext_t) for
     * ucontext, 0 for asm. The caller provides them, with malloc's
     * alignment (see coil__context_init_thread).
     */
    size_t thread_storage;
    /*
     * Prepare ctx->sp so that the first switch to ctx calls
     * start(ctx) on [base, base + size). Cannot fail. The implementation
     * may carve what it needs (a ucontext_t) from the top of the stack.
     */
    void (*make)(struct coil__context *ctx, void *base, size_t size,
                 void (*start)(struct coil__context *ctx));
    /* Save the running context into from, resume to. */
    void (*swap)(struct coil__context *from, struct coil__context *to);
};

/*
 * The implementation of that name (NULL: COIL_CONTEXT, else the best).
 * Errors: -EINVAL (unknown name), -ENOSYS (not built here).
 */
int coil__context_find(const char *name,
                       const struct coil__context_ops **out);

/* Make ctx the running thread's own context; storage has
 * ops->thread_storage bytes (may be NULL when that is 0) and must outlive
 * the context. */
void coil__context_init_thread(const struct coil__context_ops *ops,
                               struct coil__context *ctx, void *storage);

/*
 * Prepare ctx to run entry(arg) on the stack [base, base + size) the first
 * time it is switched to. entry must never return: it ends with
 * coil__context_exit.
 */
void coil__context_make(const struct coil__context_ops *ops,
                        struct coil__context *ctx, void *base, size_t size,
                        coil__context_entry entry, void *arg);

/* Switch from the running context (saved into from) to to; returns when
 * something switches back to from. Annotates sanitizers. */
void coil__context_switch(const struct coil__context_ops *ops,
                          struct coil__context *from,
                          struct coil__context *to);

/* Leave ctx for good and switch to to; ctx's stack may be freed once to
 * runs (ASan is told the fiber ends). Never returns. */
_Noreturn void coil__context_exit(const struct coil__context_ops *ops,
                                  struct coil__context *ctx,
                                  struct coil__context *to);

/* Release what the sanitizers keep for a context (TSan fiber) once it
 * will never run again. */
void coil__context_destroy(struct coil__context *ctx);

#endif /* COIL_CONTEXT_H */
