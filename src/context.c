/* SPDX-License-Identifier: MIT */
/*
 * context.c - the table of context-switch implementations built here, the
 * choice among them (an explicit name, else COIL_CONTEXT, else the best),
 * and the generic layer every switch goes through (context.h).
 *
 * The implementations (context_asm.c with context_<arch>.S, and
 * context_ucontext.c) only move registers. What the sanitizers must be
 * told about a switch is told here and nowhere else:
 *
 *  - ASan tracks which stack the thread runs on (for its fake stacks, and
 *    to unpoison the right range when a function does not return). Before
 *    every swap, start_switch_fiber gets the bounds of the stack we go
 *    to; the first code that runs on the other side calls
 *    finish_switch_fiber: the swap returning into a suspended context, or
 *    start() on a context's first entry. A thread's own stack has no
 *    bounds we know in advance: finish_switch_fiber reports them on the
 *    other side of the first switch away from it, and they are recorded
 *    in the thread's context, so switching back to it later passes them.
 *    Leaving a context for good passes no fake-stack slot, which tells
 *    ASan to free that context's fake stack.
 *  - TSan gets one fiber per made context (created by make, destroyed by
 *    destroy) and the thread's own fiber for a thread context. Every
 *    switch announces the fiber it goes to, with synchronisation: what one
 *    context did before switching happens-before what the next does.
 *
 * Without sanitizers all of that compiles away: coil__context_switch is
 * a tail call to ops->swap and nothing else, so the asm swap's jump back
 * lands directly in the resumed context's caller.
 *
 * Invariants: a thread context (coil__context_init_thread) has no entry;
 * a made context always has one, which is how destroy tells them apart.
 * A context is resumed on the thread it last ran on: the sanitizers'
 * bookkeeping is per thread.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "internal.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL__ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define COIL__TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(COIL__ASAN)
#define COIL__ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(COIL__TSAN)
#define COIL__TSAN 1
#endif

#ifdef COIL__ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef COIL__TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifdef COIL_HAVE_ASM_CONTEXT
extern const struct coil__context_ops coil__context_asm;
#endif
extern const struct coil__context_ops coil__context_ucontext;

/* Best first. */
static const struct coil__context_ops *const impls[] = {
#ifdef COIL_HAVE_ASM_CONTEXT
    &coil__context_asm,
#endif
    &coil__context_ucontext,
};

static const char *const known[] = {"asm", "ucontext"};

int coil__context_find(const char *name, const struct coil__context_ops **out)
{
    return coil__pick(name, "COIL_CONTEXT", (const void *const *)impls,
                      sizeof(impls) / sizeof(*impls), known,
                      sizeof(known) / sizeof(*known), (const void **)out);
}

/* ------------------------------------------------------------------ */
/* Sanitizer annotations: empty functions unless built with one         */
/* ------------------------------------------------------------------ */

/*
 * Always inlined, even at -O0: TSan keeps a shadow call stack per fiber,
 * and a helper that switched fibers and then returned would pop its own
 * frame off the other fiber's shadow stack (underflowing a new fiber's).
 */
#define HOOK static inline __attribute__((always_inline))

#ifdef COIL__ASAN
/*
 * The context that began the switch now landing on this thread. Its
 * bounds are what finish_switch_fiber reports, which is how a thread
 * context learns them.
 */
static _Thread_local struct coil__context *asan_leaving;

/* Before a swap. fake_save is NULL when from is left for good. */
HOOK void asan_leave(struct coil__context *from, void **fake_save,
                     const struct coil__context *to)
{
    asan_leaving = from;
    __sanitizer_start_switch_fiber(fake_save, to->stack_base, to->stack_size);
}

/* First thing on the other side; fake is the landing context's saved
 * fake stack (NULL on a first entry). */
HOOK void asan_landed(void *fake)
{
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    struct coil__context *prev = asan_leaving;
    if (prev && !prev->stack_base) {
        prev->stack_base = (void *)(uintptr_t)bottom;
        prev->stack_size = size;
    }
}
#else
HOOK void asan_leave(struct coil__context *from, void **fake_save,
                     const struct coil__context *to)
{
    (void)from;
    (void)fake_save;
    (void)to;
}

HOOK void asan_landed(void *fake)
{
    (void)fake;
}
#endif

#ifdef COIL__TSAN
HOOK void *tsan_thread_fiber(void)
{
    return __tsan_get_current_fiber();
}

HOOK void *tsan_new_fiber(void)
{
    return __tsan_create_fiber(0);
}

HOOK void tsan_free_fiber(void *fiber)
{
    __tsan_destroy_fiber(fiber);
}

/* Flags 0: the switch synchronises the two fibers. */
HOOK void tsan_leave(const struct coil__context *to)
{
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
}
#else
HOOK void *tsan_thread_fiber(void)
{
    return NULL;
}

HOOK void *tsan_new_fiber(void)
{
    return NULL;
}

HOOK void tsan_free_fiber(void *fiber)
{
    (void)fiber;
}

HOOK void tsan_leave(const struct coil__context *to)
{
    (void)to;
}
#endif

/* ------------------------------------------------------------------ */
/* The generic layer                                                    */
/* ------------------------------------------------------------------ */

void coil__context_init_thread(const struct coil__context_ops *ops,
                               struct coil__context *ctx, void *storage)
{
    memset(ctx, 0, sizeof(*ctx));
    /* Zeroed so that nothing reads garbage from it before the first save
     * (ASan's swapcontext interceptor reads the target's uc_stack). */
    if (ops->thread_storage) {
        assert(storage);
        memset(storage, 0, ops->thread_storage);
    }
    ctx->sp = storage;
    ctx->tsan_fiber = tsan_thread_fiber();
}

/*
 * Every made context starts here, on its own stack, called by the
 * implementation's trampoline.
 */
static void start(struct coil__context *ctx)
{
    asan_landed(NULL);
    ctx->entry(ctx->arg);
    coil__panic("a context's entry returned instead of calling "
                "coil__context_exit",
                __FILE__, __LINE__);
}

void coil__context_make(const struct coil__context_ops *ops,
                        struct coil__context *ctx, void *base, size_t size,
                        coil__context_entry entry, void *arg)
{
    assert(entry && base && size);
    ctx->stack_base = base;
    ctx->stack_size = size;
    ctx->asan_fake = NULL;
    ctx->entry = entry;
    ctx->arg = arg;
    ctx->tsan_fiber = tsan_new_fiber();
    ops->make(ctx, base, size, start);
}

void coil__context_switch(const struct coil__context_ops *ops,
                          struct coil__context *from, struct coil__context *to)
{
    asan_leave(from, &from->asan_fake, to);
    tsan_leave(to);
    ops->swap(from, to);
    asan_landed(from->asan_fake);
}

_Noreturn void coil__context_exit(const struct coil__context_ops *ops,
                                  struct coil__context *ctx,
                                  struct coil__context *to)
{
    asan_leave(ctx, NULL, to);
    tsan_leave(to);
    ops->swap(ctx, to);
    coil__panic("a context was resumed after coil__context_exit", __FILE__,
                __LINE__);
}

void coil__context_destroy(struct coil__context *ctx)
{
    /* A thread context's fiber is the thread's: TSan owns it. */
    if (ctx->entry && ctx->tsan_fiber)
        tsan_free_fiber(ctx->tsan_fiber);
    ctx->tsan_fiber = NULL;
}

_Static_assert(offsetof(struct coil__context_ops, name) == 0,
               "coil__pick reads an ops table's name as its first member");
