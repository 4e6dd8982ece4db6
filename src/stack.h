/* SPDX-License-Identifier: MIT */
/*
 * stack.h - coroutine stacks: mmap'd (MAP_NORESERVE, so only touched
 * pages cost memory), a guard below each, pooled for reuse.
 *
 * Guard: MADV_GUARD_INSTALL where the kernel has it (Linux 6.13+), which
 * adds no mapping; else an mprotect(PROT_NONE) page, which splits the
 * mapping in two and so counts against vm.max_map_count. When the kernel
 * refuses a mapping, allocation fails with -ENOMEM (the reason goes to the
 * debug log) — the guard is never silently dropped.
 *
 * Overflow: the first stack allocation installs a SIGSEGV/SIGBUS handler
 * running on an alternate signal stack (one per thread that runs tasks); a
 * fault inside the guard of coil__stack_running prints which stack (the
 * owner's name, set with coil__stack_set_owner) overflowed and its size,
 * then aborts. Faults elsewhere go to the
 * previously installed handler (or the default action).
 *
 * Valgrind: each stack is registered (VALGRIND_STACK_REGISTER) while it
 * exists.
 */
#ifndef COIL_STACK_H
#define COIL_STACK_H

#include <stdbool.h>
#include <stddef.h>

struct coil__stack {
    void *base;      /* lowest usable byte (just above the guard) */
    size_t size;     /* usable bytes */
    void *mapping;   /* what was mmap'd: guard + usable */
    size_t map_size;
    unsigned valgrind_id;
    const char *owner; /* for the overflow report; may be NULL */
    struct coil__stack *next_free; /* in a pool's free list */
};

/* A per-loop pool of stacks of one size. */
struct coil__stack_pool {
    size_t size;                 /* usable size of the stacks it hands out */
    struct coil__stack *free;    /* LIFO of reusable stacks */
    size_t nfree, max_free;      /* how many are kept, at most */
    size_t live;                 /* handed out and not yet returned */
};

/* Default usable size (64 KiB) and the bounds accepted for a stack size. */
#define COIL__STACK_DEFAULT (64 * 1024)
#define COIL__STACK_MIN (16 * 1024)
#define COIL__STACK_MAX ((size_t)1 << 30)

void coil__stack_pool_init(struct coil__stack_pool *p, size_t size);
/* Unmap every pooled stack; all stacks must have been returned. */
void coil__stack_pool_term(struct coil__stack_pool *p);

/*
 * A stack of the pool's size: the usable size is the request rounded up
 * so that it and the struct coil__stack kept at the top of the mapping
 * fill whole pages (64 KiB asked gives 69,568 usable bytes).
 * Errors: -ENOMEM (memory, or the map count limit with mprotect guards).
 */
int coil__stack_get(struct coil__stack_pool *p, struct coil__stack **out);

/* Give a stack back to the pool (or unmap it if the pool is full). */
void coil__stack_put(struct coil__stack_pool *p, struct coil__stack *s);

/* Name the current user of a stack for the overflow report. */
static inline void coil__stack_set_owner(struct coil__stack *s,
                                         const char *owner)
{
    s->owner = owner;
}

/*
 * The stack the running thread is executing on (NULL: its own). The task
 * switch sets it; the overflow handler reads it, since an overflow happens
 * on the running stack.
 */
extern _Thread_local __attribute__((tls_model("initial-exec"))) struct coil__stack
    *coil__stack_running;

/*
 * Give the calling thread an alternate signal stack (once per thread), so
 * the overflow report can run when the faulting stack is exhausted. The
 * loop calls it when it starts running tasks on a thread.
 * Errors: -ENOMEM.
 */
int coil__stack_thread_init(void);

/* Which guard mechanism this process uses: "madvise" or "mprotect". */
const char *coil__stack_guard_kind(void);

#endif /* COIL_STACK_H */
