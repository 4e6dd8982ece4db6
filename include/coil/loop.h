/* SPDX-License-Identifier: MIT */
/**
 * @file coil/loop.h
 * the event loop: lifecycle, running, time, and scheduling of
 * callbacks (call_soon / call_later / call_at / call_soon_threadsafe).
 *
 * One iteration of the loop runs every callback that was ready when the
 * iteration began; a callback scheduled by a callback runs in the next
 * iteration, as in asyncio. Between iterations the loop collects I/O
 * readiness and expired timers. While callbacks are ready the loop checks
 * I/O and timers without blocking at least every 64 iterations, so ready
 * work can never starve them (docs/architecture.md explains the choice).
 *
 * A loop belongs to the thread that runs it. Every function here must be
 * called from that thread, except coil_loop_call_soon_threadsafe.
 */
#ifndef COIL_LOOP_H
#define COIL_LOOP_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */
/* ------------------------------------------------------------------ */

/**
 * Create a loop with the default poller backend: the one named by the
 * COIL_BACKEND environment variable if set ("epoll", "io_uring", "kqueue",
 * "poll"), else the best one compiled in (epoll on Linux, kqueue on
 * BSD/macOS, poll elsewhere). io_uring is chosen only by name: see
 * coil_loop_options_t's backend.
 *
 * Errors: -EINVAL (loop_out NULL, or COIL_BACKEND names no backend),
 * -ENOSYS (COIL_BACKEND names a backend not built on this system),
 * -ENOMEM, -EMFILE/-ENFILE (no fd for the poller or wake-up channel).
 */
COIL_API int coil_loop_new(coil_loop_t **loop_out);

/** Options for coil_loop_new_opts; zero-initialise, then set fields. */
typedef struct coil_loop_options {
    /** The poller backend ("epoll", "io_uring", "kqueue", "poll"); NULL:
     * as coil_loop_new (COIL_BACKEND, else the best). When the kernel
     * refuses io_uring (seccomp, kernel.io_uring_disabled, older than
     * 5.11, the ring's locked memory over RLIMIT_MEMLOCK), the loop uses
     * epoll and a warning says why. */
    const char *backend;
    /** The context switch of its tasks ("asm", "ucontext"); NULL:
     * COIL_CONTEXT, else the best built here. */
    const char *context;
    /** The default usable stack size of its tasks; 0: the built-in
     * default (see coil_loop_set_stack_size). */
    size_t stack_size;
} coil_loop_options_t;

/**
 * Create a loop with options (NULL: the defaults, as coil_loop_new).
 * Errors as coil_loop_new; -EINVAL also for an unknown backend or context
 * name or a stack size out of range (at least 16 KiB, at most 1 GiB),
 * -ENOSYS for a backend or a context switch not built here.
 */
COIL_API int coil_loop_new_opts(const coil_loop_options_t *opts,
                                coil_loop_t **loop_out);

/** Whether a backend of that name is compiled in and usable here (for
 * io_uring: the kernel lets this process set up a ring). */
COIL_API bool coil_backend_available(const char *backend);

/** The name of the loop's backend ("epoll", "io_uring", "kqueue", "poll"):
 * the one in use, epoll after a fallback from io_uring. */
COIL_API const char *coil_loop_backend(const coil_loop_t *loop);

/**
 * Close the loop: drop every pending callback and timer (they never run),
 * abandon every task still suspended (it completes as cancelled, without
 * resuming: what its own code allocated is lost, so cancel and await
 * tasks first, as coil_run does), forget every fd watcher (fds given to
 * coil_loop_add_reader and coil_sock_* are the caller's and stay open),
 * close every stream, server and UDP endpoint of the loop, and release
 * the loop's own fds. Closing twice is harmless.
 *
 * Every object of the loop outlives the close: what the caller holds
 * (futures, tasks, handles, streams, servers, endpoints, groups) stays
 * valid to query and to unref, and the loop's memory goes with the last
 * of them. A future completed after the close runs no callbacks; calls
 * that need the loop return -EBADF (scheduling, spawning) or -EPERM (the
 * waits: no task can run); streams keep what they had received readable.
 *
 * Errors: -EINVAL (NULL), -EBUSY (the loop is running).
 */
COIL_API int coil_loop_close(coil_loop_t *loop);

/**
 * Take another reference for the caller; returns loop. NULL gives NULL.
 * Only while the caller holds a reference: on a loop whose last one was
 * dropped (still reachable through one of its objects, coil_future_loop)
 * it reports the misuse through the exception handler and returns NULL.
 * References are counted without atomics: the loop's thread only.
 */
COIL_API coil_loop_t *coil_loop_ref(coil_loop_t *loop);

/**
 * Drop a reference; the last one closes the loop (coil_loop_close). The
 * memory goes when every object of the loop is gone too. Accepts NULL.
 * The last reference must not be dropped while the loop runs, and one
 * unref too many is a misuse: either is reported through the exception
 * handler and ignored.
 */
COIL_API void coil_loop_unref(coil_loop_t *loop);

/** Whether the loop is running (inside run_forever/run_until_complete).
 * false for NULL. */
COIL_API bool coil_loop_is_running(const coil_loop_t *loop);

/** Whether coil_loop_close was called. false for NULL. */
COIL_API bool coil_loop_is_closed(const coil_loop_t *loop);

/* ------------------------------------------------------------------ */
/* Running                                                              */
/* ------------------------------------------------------------------ */

/**
 * Run until coil_loop_stop() is called. If stop was called before, run one
 * iteration (polling I/O without blocking) and return.
 *
 * Errors: -EINVAL (NULL), -EBADF (closed), -EBUSY (this loop, or another
 * loop in this thread, is already running), or the poller's error if
 * waiting for I/O fails in a way that cannot be retried.
 */
COIL_API int coil_loop_run_forever(coil_loop_t *loop);

/**
 * Run until fut is done, then return its outcome: 0 if it has a result
 * (read it with coil_future_result), its error if it failed, -ECANCELED if
 * it was cancelled. fut must belong to this loop.
 *
 * Errors besides fut's own: -EINVAL (NULL, or fut of another loop),
 * -EBADF (closed), -EBUSY (already running), -EINTR (coil_loop_stop was
 * called before fut was done; fut is untouched and still pending).
 * coil_future_done() tells a loop error from fut's outcome.
 */
COIL_API int coil_loop_run_until_complete(coil_loop_t *loop,
                                          coil_future_t *fut);

/**
 * Ask the loop to stop: it finishes the current iteration and returns from
 * run_forever. Called while the loop is not running, the next run does one
 * iteration and returns. Errors: -EINVAL (NULL).
 */
COIL_API int coil_loop_stop(coil_loop_t *loop);

/**
 * The loop running in the calling thread (asyncio's get_running_loop), or
 * NULL if none runs in it. No new reference.
 */
COIL_API coil_loop_t *coil_running_loop(void);

/* ------------------------------------------------------------------ */
/* Tasks of the loop (coil/task.h has the tasks themselves)             */
/* ------------------------------------------------------------------ */

/**
 * The loop's tasks that have not finished (asyncio's all_tasks): fills
 * out[0..n) with new references (drop each with coil_task_unref) and
 * returns how many tasks there are in all (which may exceed n). Errors:
 * -EINVAL (loop NULL, or out NULL with n > 0).
 */
COIL_API int coil_loop_tasks(coil_loop_t *loop, coil_task_t **out, size_t n);

/**
 * Set the default usable stack size of the loop's new tasks (initially
 * 256 KiB; at least 16 KiB, at most 1 GiB; rounded up to whole pages with
 * the stack's bookkeeping). An idle task costs only the pages it touched,
 * whatever the size. Every stack has a 1 MiB guard below it: an overflow
 * is reported by the task's name and aborts the process. Errors: -EINVAL
 * (NULL loop, size out of range).
 */
COIL_API int coil_loop_set_stack_size(coil_loop_t *loop, size_t size);

/* ------------------------------------------------------------------ */
/* Time                                                                 */
/* ------------------------------------------------------------------ */

/**
 * The loop's idea of now (monotonic ns), cached: it is refreshed each time
 * the loop polls for I/O (when it would block, and at least every 64
 * iterations while callbacks are ready) and by coil_loop_update_time().
 * call_later counts from this time. 0 for NULL.
 */
COIL_API int64_t coil_loop_time(const coil_loop_t *loop);

/** Refresh the cached time from the clock and return it. 0 for NULL. */
COIL_API int64_t coil_loop_update_time(coil_loop_t *loop);

/* ------------------------------------------------------------------ */
/* Scheduling                                                           */
/* ------------------------------------------------------------------ */

/**
 * Run fn(arg) in the next iteration, after every callback scheduled
 * before it (FIFO).
 *
 * If handle_out is not NULL it receives a handle that can cancel the call;
 * the caller owns one reference to it and must drop it with
 * coil_handle_unref(), whether or not the callback has run. Without a
 * handle, a call costs no allocation in steady state.
 *
 * Errors: -EINVAL (loop or fn NULL), -EBADF (loop closed), -ENOMEM.
 */
COIL_API int coil_loop_call_soon(coil_loop_t *loop, coil_callback_fn fn,
                                 void *arg, coil_handle_t **handle_out);

/**
 * Run fn(arg) once delay_ns have passed, counted from coil_loop_time().
 * A zero or negative delay means "as soon as possible" (after callbacks
 * already ready). Timers with the same deadline run in the order they were
 * scheduled. Deadlines saturate at INT64_MAX instead of overflowing.
 * handle_out and errors as coil_loop_call_soon.
 */
COIL_API int coil_loop_call_later(coil_loop_t *loop, int64_t delay_ns,
                                  coil_callback_fn fn, void *arg,
                                  coil_handle_t **handle_out);

/**
 * Run fn(arg) at loop time when_ns (the coil_loop_time() scale). A time in
 * the past means as soon as possible. handle_out and errors as
 * coil_loop_call_soon.
 */
COIL_API int coil_loop_call_at(coil_loop_t *loop, int64_t when_ns,
                               coil_callback_fn fn, void *arg,
                               coil_handle_t **handle_out);

/**
 * Thread-safe: schedule fn(arg) on loop from any thread and wake the loop
 * if it sleeps. Calls made by one thread run in the order made. It
 * allocates, so it is not async-signal-safe. The loop must not be freed
 * while other threads may still call this.
 *
 * Errors: -EINVAL (loop or fn NULL), -EBADF (loop closed), -ENOMEM.
 */
COIL_API int coil_loop_call_soon_threadsafe(coil_loop_t *loop,
                                            coil_callback_fn fn, void *arg);

/* ------------------------------------------------------------------ */
/* Handles                                                              */
/* ------------------------------------------------------------------ */

/**
 * Cancel the call: if it has not run yet it never will (a timer leaves the
 * heap at once). Cancelling twice, or after the call ran, does nothing.
 * Does not release the caller's reference.
 * Errors: -EINVAL (NULL).
 */
COIL_API int coil_handle_cancel(coil_handle_t *handle);

/** Whether coil_handle_cancel was called on it. false for NULL. */
COIL_API bool coil_handle_cancelled(const coil_handle_t *handle);

/**
 * The deadline of a timer handle (loop time, ns); for a call_soon handle,
 * the loop time at which it was scheduled. 0 for NULL.
 */
COIL_API int64_t coil_handle_when(const coil_handle_t *handle);

/**
 * Drop the caller's reference; does not cancel. Accepts NULL. A handle has
 * exactly two holders, the loop while the call is pending and the caller
 * who asked for it, so it has no coil_handle_ref: a timer handle stays 48
 * bytes, the size a million pending timers are multiplied by.
 */
COIL_API void coil_handle_unref(coil_handle_t *handle);

/* ------------------------------------------------------------------ */
/* Error reporting                                                      */
/* ------------------------------------------------------------------ */

/**
 * Called with problems that have no caller to return them to: a watched fd
 * that was closed behind the loop's back, a failing poller, an error of a
 * task nobody awaited. error is a negative errno code; message is only
 * valid during the call.
 */
typedef void (*coil_exception_handler_fn)(coil_loop_t *loop, int error,
                                          const char *message, void *arg);

/**
 * Install handler (NULL restores the default, which prints one line to
 * stderr). Errors: -EINVAL (loop NULL).
 */
COIL_API int coil_loop_set_exception_handler(coil_loop_t *loop,
                                             coil_exception_handler_fn fn,
                                             void *arg);

/**
 * The handler installed with coil_loop_set_exception_handler and, in
 * *arg_out (if not NULL), its arg (asyncio's loop.get_exception_handler).
 * NULL (and arg NULL) while the default is in place, and for a NULL loop.
 */
COIL_API coil_exception_handler_fn
coil_loop_exception_handler(const coil_loop_t *loop, void **arg_out);

/**
 * Report a problem through the loop's handler.
 * Errors: -EINVAL (loop or message NULL).
 */
COIL_API int coil_loop_call_exception_handler(coil_loop_t *loop, int error,
                                              const char *message);

/** The default handler: prints "coil: <message>: <strerror>" to stderr. */
COIL_API void coil_loop_default_exception_handler(coil_loop_t *loop, int error,
                                                  const char *message,
                                                  void *arg);

#ifdef __cplusplus
}
#endif

#endif /* COIL_LOOP_H */
