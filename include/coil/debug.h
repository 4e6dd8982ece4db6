/* SPDX-License-Identifier: MIT */
/**
 * @file coil/debug.h
 * debug mode, the log hook, the task dump and the loop's
 * metrics.
 *
 * Debug mode (asyncio's loop.set_debug) is off by default and turned on
 * for every new loop by the environment variable COIL_DEBUG=1, or for one
 * loop by coil_loop_set_debug. In debug mode a loop reports, through the
 * log hook, each naming the task concerned (its name, id, and the
 * function that spawned it):
 *
 *   - a callback or task step that ran longer than the slow threshold
 *     (100 ms unless set): a watchdog thread notices the stall while it
 *     happens and samples the loop thread's native backtrace, so the
 *     report names the function that blocked the loop;
 *   - a future or task that failed and whose last reference went without
 *     anyone reading its error;
 *   - a task that saw its cancellation (a wait returned -ECANCELED) and
 *     then returned a result without coil_task_uncancel while another
 *     task awaited it (a swallowed cancellation: the awaiter cannot tell);
 *   - tasks, callbacks and timers still pending when the loop closes;
 *   - a task that came within 10% of its stack size, with a size to give
 *     it instead (debug mode clears each stack before a task uses it and
 *     measures how deep it went);
 *   - a loop that would sleep forever: tasks wait, and nothing (no timer,
 *     no watched fd, no thread that holds the loop, no executor job) can
 *     wake them. The stuck tasks are dumped and the run returns -EDEADLK
 *     instead of hanging.
 *
 * Misuse is reported at level COIL_LOG_FATAL and aborts the process, in
 * debug mode, instead of corrupting memory silently: a future or task
 * unref'd once too often or used after its last unref (debug mode keeps
 * freed ones poisoned in a quarantine instead of reusing them at once),
 * and a loop-only call made from a thread other than the loop's.
 *
 * In debug mode every task also counts the time it ran (coil_task_cpu_time)
 * and the loop records its longest step; tasks do not hand over directly
 * to each other (each step goes back to the loop, which times it). Debug
 * mode costs time; off, it costs a flag test per batch of callbacks and a
 * few per task hand-off. docs/debugging.md shows every report.
 *
 * In every mode, an await that would close a cycle (a task awaiting a
 * task that, through the tasks, groups and combinators it waits on,
 * awaits the first) returns -EDEADLK.
 *
 * The watchdog samples the loop thread with SIGURG (ignored by default,
 * and by coil's own code): a blocking call interrupted by the sample that
 * is never restarted (nanosleep, poll...) returns early with EINTR, once
 * per slow step. If the program has its own SIGURG handler, the sample
 * is skipped and the report says so.
 */
#ifndef COIL_DEBUG_H
#define COIL_DEBUG_H

#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* The log hook                                                         */
/* ------------------------------------------------------------------ */

/** The level of a report (coil_log_fn, coil_set_log_hook). */
typedef enum coil_log_level {
    COIL_LOG_DEBUG = 10,   /**< detail, below the default minimum */
    COIL_LOG_INFO = 20,    /**< information; the default minimum */
    COIL_LOG_WARNING = 30, /**< a problem that may be a bug */
    COIL_LOG_ERROR = 40,   /**< an error: a loop stuck for good, say */
    COIL_LOG_FATAL = 50, /**< a misuse; the process aborts after the hook */
} coil_log_level_t;

/**
 * Receives every report. loop is the loop concerned (NULL if none);
 * message is one line without a newline, valid during the call only. A
 * hook runs on the loop's thread, except for the reports of misuse made
 * from a foreign thread (on that thread); it must not call back into the
 * loop.
 */
typedef void (*coil_log_fn)(coil_log_level_t level, coil_loop_t *loop,
                            const char *message, void *arg);

/**
 * Install the process-wide log hook (fn NULL: the default, which writes
 * "coil[<level>]: <message>" and a newline to stderr, one write per
 * report). Reports below min_level are dropped before any formatting
 * (the default minimum is COIL_LOG_INFO; COIL_LOG_LEVEL=debug|info|
 * warning|error sets it for the process). Thread-safe: a report made at
 * the same time goes to the old hook or the new one, each with its own
 * argument, and once this returns the old hook is never called again. A
 * hook must not call coil_set_log_hook itself. Errors: -EINVAL (min_level
 * not a level).
 */
COIL_API int coil_set_log_hook(coil_log_fn fn, void *arg,
                               coil_log_level_t min_level);

/** The name of level: "debug", "info", "warning", "error", "fatal"; NULL
 * for anything else. */
COIL_API const char *coil_log_level_name(coil_log_level_t level);

/** The default hook (for a hook that adds to it). */
COIL_API void coil_log_default(coil_log_level_t level, coil_loop_t *loop,
                               const char *message, void *arg);

/* ------------------------------------------------------------------ */
/* Debug mode                                                           */
/* ------------------------------------------------------------------ */

/**
 * Turn debug mode on or off for loop, on the loop's thread (or while no
 * thread runs it). Takes effect at once, except that the quarantine and
 * stack measurements apply to what is made or freed from then on.
 * Turning it on while the loop runs also starts the watchdog. Errors:
 * -EINVAL (NULL), -EBADF (closed), -ENOMEM, -EAGAIN (the watchdog thread
 * could not be started; debug mode stays off).
 */
COIL_API int coil_loop_set_debug(coil_loop_t *loop, bool on);

/** Whether loop is in debug mode. false for NULL. */
COIL_API bool coil_loop_debug(const coil_loop_t *loop);

/**
 * The slow threshold (asyncio's slow_callback_duration): a callback or
 * task step that runs at least this long is reported in debug mode.
 * Default 100 ms. Errors: -EINVAL (NULL, or ns <= 0).
 */
COIL_API int coil_loop_set_slow_duration(coil_loop_t *loop, int64_t ns);
/** @copydoc coil_loop_set_slow_duration */
COIL_API int64_t coil_loop_slow_duration(const coil_loop_t *loop);

/**
 * The signal that makes every loop running in debug mode print its task
 * dump to stderr (process-wide; default SIGQUIT; 0: none). The dump runs
 * on each loop's thread, between callbacks. The handler is installed
 * when the first loop in debug mode starts running, only if the signal
 * has its default disposition then (a program that handles or ignores it
 * keeps it), and the disposition is put back when the last one stops;
 * a change applies from the next such installation. Errors: -EINVAL (not
 * a signal, SIGKILL, SIGSTOP, or SIGURG, which the watchdog uses).
 */
COIL_API int coil_set_dump_signal(int signum);

/* ------------------------------------------------------------------ */
/* Holding a loop for another thread                                    */
/* ------------------------------------------------------------------ */

/**
 * Tell the loop that some thread will call into it later (a *_threadsafe
 * function), so that the stuck-loop detection of debug mode does not take
 * tasks waiting for that thread as stuck. Executors, name lookups,
 * signals and children hold their loop on their own; a thread of the
 * program that feeds a loop holds it from before the loop could wait for
 * it until its last call. A loop that was ever called from another
 * thread is never called stuck either. Thread-safe. Errors: -EINVAL
 * (NULL), -EALREADY (coil_loop_release without a hold).
 */
COIL_API int coil_loop_hold(coil_loop_t *loop);
/** @copydoc coil_loop_hold */
COIL_API int coil_loop_release(coil_loop_t *loop);

/* ------------------------------------------------------------------ */
/* The task dump                                                        */
/* ------------------------------------------------------------------ */

/**
 * Write every unfinished task of loop to out: its id, name, state, what
 * it waits on (sleep until T, fd N readable, future F, join of task X,
 * group G, lock, queue...), its age and the time since it last ran, the
 * CPU time it ran (debug mode), its stack use (debug mode), the tasks
 * that await it (the await tree), the function that spawned it, and the
 * native backtrace of each suspended task (taken on its own stack).
 * docs/debugging.md describes the format. Call it on the loop's thread,
 * from a callback, a task, or while the loop is not running.
 * Errors: -EINVAL (NULL), -EBADF (closed), -EPERM (another thread's loop
 * while it runs), -ENOMEM, -EIO (writing to out failed).
 */
COIL_API int coil_loop_dump_tasks(coil_loop_t *loop, FILE *out);

/** The dump of the loop running in this thread. Errors as above, and
 * -ESRCH (no loop runs in this thread). */
COIL_API int coil_dump_tasks(FILE *out);

/* ------------------------------------------------------------------ */
/* Per-task and per-loop measurements                                   */
/* ------------------------------------------------------------------ */

/** The time task ran (between its resumes and suspends), ns, counted while
 * its loop was in debug mode. 0 for NULL. */
COIL_API int64_t coil_task_cpu_time(const coil_task_t *task);

/**
 * How deep task's stack has gone so far (bytes), measured on stacks that
 * debug mode cleared; for a finished task, the depth it reached. Errors:
 * -EINVAL (NULL), -ENODATA (not measured: the task was spawned with debug
 * mode off).
 */
COIL_API int coil_task_stack_used(const coil_task_t *task, size_t *used_out);

/** What a loop has done since it was made. */
typedef struct coil_loop_metrics {
    uint64_t iterations;   /**< batches of ready callbacks run */
    uint64_t polls;        /**< I/O polls (blocking or not) */
    uint64_t events;       /**< fd events dispatched by the polls */
    int64_t poll_ns;       /**< time spent in polls that could sleep */
    int64_t run_ns;        /**< time spent running, outside those polls */
    /* Debug mode only (counting them would cost the hot paths): */
    uint64_t callbacks;    /**< callbacks run (timers', task steps too);
                                debug mode only */
    uint64_t task_steps;   /**< task steps run; debug mode only */
    /** Debug mode only (0 otherwise): the longest callback or step, and
     * what ran it ("task 'name' (id N, ...)" or a callback's function). */
    int64_t longest_step_ns;
    char longest_step_what[96]; /**< what ran the longest step (see
                                     longest_step_ns); debug mode only */
} coil_loop_metrics_t;

/** Fill *out. Errors: -EINVAL (NULL). */
COIL_API int coil_loop_metrics(const coil_loop_t *loop,
                               coil_loop_metrics_t *out);

#ifdef __cplusplus
}
#endif

#endif /* COIL_DEBUG_H */
