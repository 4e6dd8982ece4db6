/* SPDX-License-Identifier: MIT */
/*
 * internal.h - the few macros and helpers every coil source file shares:
 * container_of, branch hints, the always-on COIL__MUST check, and the
 * allocation wrappers over the replaceable allocator. Concept-specific
 * declarations live in each concept's own header, not here.
 */
#ifndef COIL_INTERNAL_H
#define COIL_INTERNAL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coil.h"

#define coil__container_of(ptr, type, member)                                  \
    ((type *)((char *)(ptr)-offsetof(type, member)))

/* Thread-locals of the library: initial-exec, so reaching them in the
 * shared library is a register-relative load, not a __tls_get_addr call
 * (glibc reserves static TLS room for libraries loaded at startup and a
 * little for dlopen). */
#define COIL__TLS _Thread_local __attribute__((tls_model("initial-exec")))

#define COIL__COLD __attribute__((noinline, cold))

#define coil__likely(x) __builtin_expect(!!(x), 1)
#define coil__unlikely(x) __builtin_expect(!!(x), 0)

/*
 * A condition that, if false, makes continuing unsafe (the poller failing
 * on an fd coil registered, a context switch returning where it must not).
 * Checked in every build; prints the condition, file:line and errno, then
 * aborts. Never used for bad input or for run-time conditions such as a
 * peer reset or running out of memory.
 */
#define COIL__MUST(cond)                                                       \
    do {                                                                       \
        if (coil__unlikely(!(cond)))                                           \
            coil__panic(#cond, __FILE__, __LINE__);                            \
    } while (0)

_Noreturn void coil__panic(const char *what, const char *file, int line);

/* How debug mode's slow-step report begins (debug.c): those who let such
 * reports through (they measure the machine, not the code) match it. */
#define COIL__SLOW_STEP_REPORT "slow step: "

/* The log hook (log.c; coil/debug.h): report through it, a no-op below
 * its level. loop may be NULL. */
void coil__log(struct coil_loop *loop, coil_log_level_t level,
               const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void coil__vlog(struct coil_loop *loop, coil_log_level_t level,
                const char *fmt, va_list ap);
/* Whether a report at level would be delivered. */
bool coil__log_enabled(coil_log_level_t level);
/* A misuse: reported at COIL_LOG_FATAL, then abort(). */
_Noreturn void coil__misuse(struct coil_loop *loop, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The hook installed now, to put it back later (the testing kit). */
void coil__log_hook_get(coil_log_fn *fn, void **arg, coil_log_level_t *level);
/* Whether COIL_DEBUG asks for debug mode (read once). */
bool coil__debug_env(void);

/* Allocation through the replaceable allocator (alloc.c). */
void *coil__malloc(size_t size);
void *coil__calloc(size_t n, size_t size);
void *coil__realloc(void *ptr, size_t size);
void coil__free(void *ptr);
/* Blocks from coil__malloc not freed yet. */
long coil__alloc_live(void);

/*
 * A table indexed by fd number (fd.c): table, of *len entries of size
 * bytes, grown to hold entry fd, doubling from 64; the new entries are
 * zero. Returns the table (moved, maybe), or NULL when out of memory
 * (table and *len unchanged).
 */
void *coil__fd_table_grow(void *table, int *len, int fd, size_t size);

/* Make fd non-blocking and close-on-exec (fd.c). Returns 0 or -errno. */
int coil__fd_nonblock_cloexec(int fd);
/* How many fds the process has open (the testing kit's leak counts). */
long coil__fd_count(void);
/* A pipe whose two ends are close-on-exec (pipe2 where there is one).
 * Returns 0 or -errno. */
int coil__pipe_cloexec(int fds[2]);
/* A wake-up channel: an eventfd (*rfd == *wfd), or a non-blocking,
 * close-on-exec pipe where there is none. Returns 0 or -errno (-EMFILE,
 * -ENFILE...). Its close takes either kind and sets both to -1. */
int coil__wake_channel_open(int *rfd, int *wfd);
void coil__wake_channel_close(int *rfd, int *wfd);

/*
 * Choose an implementation (pick.c): name, else the environment variable
 * env, else built[0] (the best). built[] are ops tables whose first member
 * is their name; known[] every name that exists anywhere. Errors: -EINVAL
 * (unknown name), -ENOSYS (known, not built here).
 */
int coil__pick(const char *name, const char *env, const void *const *built,
               size_t nbuilt, const char *const *known, size_t nknown,
               const void **out);

/* The monotonic clock in ns (clock.c): the virtual one in the test build
 * when a test turned it on. */
int64_t coil__clock_now(void);
/* The real monotonic clock, always (for deadlines other threads keep). */
int64_t coil__clock_real(void);

#ifdef COIL_TESTING
/* Test build only: a virtual clock (clock.c). */
extern bool coil__clock_autojump;
void coil__clock_fake(bool on, bool autojump);
void coil__clock_advance(int64_t ns);
/* Test build only: make the nth allocation from now fail (0: off), and
 * whether it did (alloc.c). */
void coil__alloc_fail_after(long nth);
void coil__alloc_fail_random(unsigned per_million, unsigned long seed);
bool coil__alloc_failed(void);

/* Test build only: told when a task suspends (its wait armed, before it
 * switches away) and when a suspended task is about to resume (before
 * its wait's result is settled), so that a test can cancel it at exactly
 * those points (task.c; tests/explore.c). */
enum coil__task_event { COIL__TASK_SUSPENDING, COIL__TASK_RESUMING };
struct coil_task;
extern void (*coil__task_test_hook)(struct coil_task *t,
                                    enum coil__task_event ev, void *arg);
extern void *coil__task_test_hook_arg;
#endif

/* Saturating a + b for deadlines. */
static inline int64_t coil__add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

#endif /* COIL_INTERNAL_H */
