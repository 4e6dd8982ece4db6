/* SPDX-License-Identifier: MIT */
/*
 * stack.h - coroutine stacks: mmap'd (MAP_NORESERVE, so only touched
 * pages cost memory), a 1 MiB guard below each, pooled for reuse.
 *
 * Guard: mprotect(PROT_NONE), which splits the mapping in two and so
 * counts against vm.max_map_count, or MADV_GUARD_INSTALL (Linux 6.13+),
 * which adds no mapping but puts one marker per guard page in the page
 * tables (for 1 MiB, about 2 KiB of them, and 8 us to install and
 * remove: measured in docs/architecture.md). Where both exist,
 * the first 8,192 live stacks of the process get mprotect guards, the
 * cheaper at this size, and the rest madvise ones, so a million stacks
 * still fit under the mapping limit; a failed mprotect falls back to
 * madvise. Under valgrind every guard is madvise's (a split costs its own
 * table of mappings dearly). When the kernel refuses a mapping or a
 * guard, allocation fails with -ENOMEM (the reason goes to the debug
 * log): the guard is never silently dropped.
 *
 * Overflow: the first stack allocation installs a SIGSEGV/SIGBUS handler
 * running on an alternate signal stack (one per thread that runs tasks). A
 * fault is an overflow of coil__stack_running when it hits that stack's
 * guard, when the interrupted stack pointer lies in the guard, when the
 * kernel could not write a signal frame that far down, or when the stack
 * pointer lies further below (less than COIL__STACK_REACH below the base)
 * and the faulting address between it and the base (stack.c has the
 * details). The handler then prints which stack (the owner's name, set
 * with coil__stack_set_owner) overflowed and its size, and aborts. Faults
 * elsewhere go to the previously installed handler (or the default
 * action).
 *
 * What is guaranteed, whatever flags the overflowing code was built with:
 *  - A frame (the stack pointer moving down in one step, with no access
 *    in between) of less than COIL__STACK_GUARD - 4 KiB (1020 KiB), from
 *    anywhere on the stack, is reported by name, and nothing outside the
 *    stack's own mapping is touched: every access such a frame can make
 *    (its own, down to its stack pointer less the 128-byte red zone, and
 *    a signal frame of a few KiB that the kernel may write below that)
 *    lies in the stack or its guard, so the first one below the stack
 *    faults in the guard. Whatever lies below the mapping (another
 *    task's stack, most often: the kernel places new mappings just below
 *    the last) is at least COIL__STACK_GUARD below the base.
 *  - Code built with -fstack-clash-protection touches the stack at least
 *    every 64 KiB as its frame grows (every page on x86-64; gcc assumes a
 *    64 KiB guard on aarch64), so its frames are reported whatever their
 *    size.
 * Not guaranteed: an unprobed frame of COIL__STACK_GUARD or more moves
 * the stack pointer past the guard, into whatever is mapped there. If
 * its first access there faults (an unmapped gap, another stack's guard,
 * a PROT_NONE page) it is still reported by name, from the stack pointer;
 * if it lands in writable memory (typically the top of the stack mapped
 * just below: its header and its task's frames), that memory is written
 * before anything faults.
 *
 * Sanitizers: each stack is registered with valgrind
 * (VALGRIND_STACK_REGISTER) while it exists. While a stack waits in a
 * pool, its usable range is poisoned for ASan (the top 8 MiB: all of any
 * stack up to that size) and unaddressable for memcheck, so a use of a
 * finished task's stack is reported; its header stays accessible.
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
    bool cheap_guard;  /* an mprotect guard where madvise ones exist
                          (counted in stack.c's process-wide budget) */
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

/*
 * Default usable size, and the bounds accepted for a stack size. 256 KiB
 * leaves room for the buffers C code puts on its stack; an idle task
 * touches only its top page or two whatever the size, and measured with
 * a million idle tasks (bench/many_tasks) it costs the same RSS as 64 KiB
 * did (4,417 B a task), 385 B more of page tables (2,574 B, most of it
 * the guard's) and 192 KiB more address space; 1 MiB would cost 1.9 KiB
 * more page tables a task than 64 KiB and a fifth more time to spawn.
 */
#define COIL__STACK_DEFAULT (256 * 1024)
#define COIL__STACK_MIN (16 * 1024)
#define COIL__STACK_MAX ((size_t)1 << 30)

/*
 * The guard below every stack, whole pages: as large as the kernel's gap
 * below a process's main stack (stack_guard_gap, 1 MiB since Stack
 * Clash), so that an unprobed frame of up to nearly 1 MiB faults in it
 * instead of skipping it. It costs address space (1 TiB for a million
 * stacks, of x86-64's 128 TiB) and, with madvise guards, page tables
 * (about COIL__STACK_GUARD / 512 bytes per stack) and the time to install
 * and remove the markers; an mprotect guard is one mapping whatever its
 * size.
 */
#define COIL__STACK_GUARD ((size_t)1 << 20)

/*
 * How far below a running stack's base the interrupted stack pointer may
 * be for a fault near it to count as that stack's overflow (a frame
 * larger than the guard): 64 MiB, far more than any real frame, and
 * bounded so that a fault on some unrelated stack far below is not
 * taken for one.
 */
#define COIL__STACK_REACH ((size_t)64 << 20)

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

/*
 * Debug mode's depth measure: clear gives the stack's whole pages back to
 * the kernel (they read as zeros again, and cost nothing until touched);
 * used then says how many bytes from the top have been written since, by
 * the lowest non-zero word (a frame that wrote only zeros at its very
 * bottom reads a little shallower). Pages never touched are skipped.
 */
void coil__stack_clear(struct coil__stack *s);
size_t coil__stack_used(const struct coil__stack *s);

/* Which guard mechanism this process uses: "madvise" or "mprotect". */
const char *coil__stack_guard_kind(void);

#endif /* COIL_STACK_H */
