/* SPDX-License-Identifier: MIT */
/**
 * @file coil/common.h
 * what every other coil header needs: the export macro,
 * time units, the opaque types, error names and the replaceable allocator.
 *
 * Conventions that hold for every coil function (docs/conventions.md has
 * the long form):
 *
 *  - A function that can fail returns int: 0 (or a non-negative count) on
 *    success, a negative errno code on failure. There is no global error
 *    state; coil never sets errno for you to read.
 *  - Bad arguments give -EINVAL (or a more precise code) and never crash.
 *  - A constructor fills an out-parameter, always its last argument, and
 *    sets it to NULL on failure.
 *  - A call that failed had no side effects, and a callback passed to a
 *    call that failed is never called.
 *  - Memory comes from one replaceable allocator (coil_set_allocator), and
 *    running out of memory gives -ENOMEM, never an abort.
 *  - A loop belongs to one thread. Only functions documented as
 *    thread-safe may be called from other threads.
 */
#ifndef COIL_COMMON_H
#define COIL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Marks every function of the API: default visibility (exported from the
 * shared library, which hides everything else) with GCC and clang;
 * nothing when COIL_STATIC_DEFINE is defined, as it is for the static
 * library (coil::coil_static, pkg-config coil-static).
 */
#if defined(COIL_STATIC_DEFINE)
#define COIL_API
#elif defined(__GNUC__) || defined(__clang__)
#define COIL_API __attribute__((visibility("default")))
#else
#define COIL_API
#endif

/* ------------------------------------------------------------------ */
/* Time: int64_t nanoseconds on the monotonic clock.                   */
/* ------------------------------------------------------------------ */

#define COIL_NSEC ((int64_t)1)          /**< A nanosecond, coil's time unit. */
#define COIL_USEC ((int64_t)1000)       /**< A microsecond, in nanoseconds. */
#define COIL_MSEC ((int64_t)1000000)    /**< A millisecond, in nanoseconds. */
#define COIL_SEC ((int64_t)1000000000)  /**< A second, in nanoseconds. */

/**
 * The value meaning "no limit", for every timeout and deadline parameter
 * (coil_wait_for, coil_wait, coil_as_completed_begin, coil_timeout_begin...).
 * Every other value is a limit: zero or a negative one has passed already.
 */
#define COIL_NO_TIMEOUT INT64_MAX

/** The current time of the monotonic clock, in nanoseconds. Never fails. */
COIL_API int64_t coil_now(void);

/* ------------------------------------------------------------------ */
/* Opaque types                                                         */
/* ------------------------------------------------------------------ */

/** An event loop (coil/loop.h). */
typedef struct coil_loop coil_loop_t;
/** A scheduled call of the loop, to cancel it (coil_loop_call_soon). */
typedef struct coil_handle coil_handle_t;
/** A future (coil/future.h). */
typedef struct coil_future coil_future_t;
/** A task (coil/task.h); its future is coil_task_future's. */
typedef struct coil_task coil_task_t;

/** A plain callback: everything it needs comes through arg. */
typedef void (*coil_callback_fn)(void *arg);

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

/**
 * A description of a coil error code (negative errno), such as
 * "Operation canceled" for -ECANCELED, "Timed out" for -ETIMEDOUT, and
 * "Success" for 0. Never NULL; the string is static. Positive codes are
 * accepted too.
 */
COIL_API const char *coil_strerror(int err);

/**
 * The symbolic name of an error code, such as "ECANCELED" for -ECANCELED;
 * "OK" for 0. Never NULL; unknown codes give "EUNKNOWN". The string is
 * static.
 */
COIL_API const char *coil_err_name(int err);

/* ------------------------------------------------------------------ */
/* The replaceable allocator                                            */
/* ------------------------------------------------------------------ */

/**
 * Every allocation coil makes goes through these three functions. They
 * follow malloc/realloc/free, plus a context pointer. realloc is only ever
 * called with a non-NULL pointer and a non-zero size. If coil is used from
 * several threads (call_soon_threadsafe, executors) they must be
 * thread-safe.
 */
typedef struct coil_allocator {
    /** As malloc(3): size bytes (never 0), or NULL. */
    void *(*malloc)(size_t size, void *ctx);
    /** As realloc(3): ptr is never NULL and size never 0. */
    void *(*realloc)(void *ptr, size_t size, void *ctx);
    /** As free(3): ptr is never NULL. */
    void (*free)(void *ptr, void *ctx);
    /** Passed to each of the three as it is. */
    void *ctx;
} coil_allocator_t;

/**
 * Replace the allocator. NULL restores the C library's malloc/realloc/free.
 * The table is copied.
 *
 * Errors: -EINVAL if a function pointer is missing; -EBUSY if memory
 * allocated by the current allocator is still live (every coil object must
 * be freed first, so that nothing is freed by the wrong allocator).
 * Not thread-safe: call it while no other thread uses coil.
 */
COIL_API int coil_set_allocator(const coil_allocator_t *allocator);

#ifdef __cplusplus
}
#endif

#endif /* COIL_COMMON_H */
