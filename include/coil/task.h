/* SPDX-License-Identifier: MIT */
/**
 * @file coil/task.h
 * tasks: functions that run as stackful coroutines on the
 * loop, and the waits that suspend them (asyncio.Task, await, sleep).
 *
 * A task runs fn(arg) on a stack of its own. Whenever it waits (await,
 * sleep, yield, and every other call documented "may suspend"), it gives
 * the thread back to the loop, which runs other callbacks and tasks until
 * the wait is over. Only the running task is ever suspended; the loop never
 * blocks on a task's behalf.
 *
 * A task is a future: coil_task_future() gives the future inside it, and
 * every coil_future_* query and coil_await work on it. Its outcome is what
 * fn returned: a value >= 0 is the task's result (the future's value,
 * as (void *)(intptr_t)), a negative errno is its error, and -ECANCELED
 * makes it a cancelled task.
 *
 * Cancellation (asyncio's CancelledError, as an error code):
 *  - coil_task_cancel() makes the wait the task is suspended in return
 *    -ECANCELED. A running task gets -ECANCELED from its next wait
 *    instead. A task whose wait has completed but which has not resumed
 *    yet gets it from that wait if the wait carries no data (sleep,
 *    yield), else from its next wait (see the last point). The task then
 *    cleans up (it may wait again: only one wait sees each cancellation)
 *    and returns, usually -ECANCELED.
 *  - A task cancelled before it started never runs fn.
 *  - Cancelling a task that awaits a future cancels that future too (as in
 *    asyncio); coil_shield() prevents that.
 *  - Unlike asyncio, a wait that has already completed when the cancel
 *    arrives (its result is in, the task has not resumed yet) returns its
 *    result, and the cancel is delivered at the next wait. A completed
 *    result is never dropped by a racing cancel.
 *
 * Calls that may suspend return -EPERM when called outside a task.
 */
#ifndef COIL_TASK_H
#define COIL_TASK_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A task's body: returns its result (>= 0) or a negative errno. */
typedef int (*coil_task_fn)(void *arg);

/** Options for coil_task_spawn_opts; zero-initialise, then set fields. */
typedef struct coil_task_options {
    const char *name;  /**< copied; NULL gives "Task-<id>" */
    size_t stack_size; /**< usable stack bytes; 0: the loop's default (256 KiB
                          unless changed: coil_loop_set_stack_size) */
    /** If not NULL, called with arg, on the loop's thread, when fn never
     * runs: the task was cancelled, or its loop closed, before its first
     * step (what arg holds, an fd, memory, would otherwise be lost). Not
     * called once fn has started (fn owns arg then), nor when the spawn
     * fails (arg stays the caller's). */
    void (*dispose)(void *arg);
} coil_task_options_t;

/* ------------------------------------------------------------------ */
/* Creating and inspecting tasks                                        */
/* ------------------------------------------------------------------ */

/**
 * Create a task that runs fn(arg) on loop, starting in the loop's next
 * iteration (like asyncio.create_task). The loop holds the task until it
 * finishes. If task_out is not NULL it receives a reference the caller
 * must drop with coil_task_unref().
 *
 * Errors: -EINVAL (loop or fn NULL), -EBADF (loop closed), -ENOMEM (memory
 * or stack mappings exhausted). Does not suspend.
 */
COIL_API int coil_task_spawn(coil_loop_t *loop, coil_task_fn fn, void *arg,
                             coil_task_t **task_out);

/**
 * As coil_task_spawn, with a name and a stack size (at least 16 KiB, at
 * most 1 GiB; rounded up so that the stack and its bookkeeping fill whole
 * pages, so coil_task_stack_size may report a little more). Errors as
 * coil_task_spawn, and -EINVAL for a stack size out of range.
 */
COIL_API int coil_task_spawn_opts(coil_loop_t *loop, coil_task_fn fn, void *arg,
                                  const coil_task_options_t *opts,
                                  coil_task_t **task_out);

/** Take a reference; returns task. NULL gives NULL. */
COIL_API coil_task_t *coil_task_ref(coil_task_t *task);

/** Drop a reference. Accepts NULL. A running task is not stopped by this:
 * the loop keeps its own reference until the task finishes. */
COIL_API void coil_task_unref(coil_task_t *task);

/** The future inside the task (no new reference). NULL for NULL. */
COIL_API coil_future_t *coil_task_future(coil_task_t *task);

/** The task's name; valid while the task is. NULL for NULL. */
COIL_API const char *coil_task_name(coil_task_t *task);

/** Rename (the string is copied). Errors: -EINVAL, -ENOMEM. */
COIL_API int coil_task_set_name(coil_task_t *task, const char *name);

/** The usable stack size of the task; 0 once it has finished (its stack is
 * gone) and for NULL. */
COIL_API size_t coil_task_stack_size(const coil_task_t *task);

/**
 * The task running now, or NULL outside a task. No new reference: the
 * pointer is valid while the task runs.
 */
COIL_API coil_task_t *coil_current_task(void);

/* ------------------------------------------------------------------ */
/* Cancellation                                                         */
/* ------------------------------------------------------------------ */

/**
 * Ask the task to stop (see the top of this file). Cancelling a task
 * again before it handled the first request does nothing more. Returns 0
 * if the request was made. Errors: -EINVAL (NULL), -EALREADY (finished).
 * Does not suspend; a task may cancel itself.
 */
COIL_API int coil_task_cancel(coil_task_t *task);

/** How many cancel requests the task has that were not withdrawn with
 * coil_task_uncancel (asyncio's Task.cancelling). 0 for NULL. */
COIL_API unsigned coil_task_cancelling(const coil_task_t *task);

/**
 * Withdraw one cancel request and return how many remain. When none
 * remain, a cancellation not yet delivered is dropped. For code that
 * turns its own cancellation into something else (timeouts do). 0 for
 * NULL.
 */
COIL_API unsigned coil_task_uncancel(coil_task_t *task);

/* ------------------------------------------------------------------ */
/* Waiting (each may suspend; -EPERM outside a task)                     */
/* ------------------------------------------------------------------ */

/**
 * Wait for fut to be done and return its outcome: 0 with *value_out (if
 * not NULL) set to the result, its error, or -ECANCELED (fut was
 * cancelled, or the waiting task was). If the waiting task is cancelled,
 * fut is cancelled too, and waited for; so is a cancellation pending when
 * the call starts, as in asyncio (a task that cancelled itself and then
 * awaits another task cancels that task and waits for it). fut must belong
 * to the running task's loop. Errors: -EPERM (not in a task), -EINVAL (fut
 * NULL or of another loop), -EDEADLK (fut is the running task itself, or
 * a task that, through the tasks, groups, gathers and waits it awaits in
 * turn, awaits the running task: the await would never end).
 */
COIL_API int coil_await(coil_future_t *fut, void **value_out);

/**
 * Wait for a task and return its outcome: its result (>= 0), its error,
 * or -ECANCELED. Errors as coil_await.
 */
COIL_API int coil_task_join(coil_task_t *task);

/**
 * As coil_await, except that cancelling the waiting task does not cancel
 * fut: the wait returns -ECANCELED and fut carries on (asyncio.shield);
 * a cancellation pending when the call starts is delivered at once.
 */
COIL_API int coil_shield(coil_future_t *fut, void **value_out);

/**
 * Suspend for delay_ns (<= 0: just yield). Returns 0, or -ECANCELED.
 * Errors: -EPERM (not in a task), -ENOMEM (no timer could be made).
 */
COIL_API int coil_sleep(int64_t delay_ns);

/**
 * Let every other ready callback and task run, then resume (asyncio's
 * sleep(0)). Returns 0 or -ECANCELED; -EPERM outside a task.
 */
COIL_API int coil_yield(void);

/* ------------------------------------------------------------------ */
/* asyncio.run                                                          */
/* ------------------------------------------------------------------ */

/**
 * Create a loop, run main(arg) as a task until it finishes, then cancel
 * every task still running and wait for them, shut the loop's default
 * executor down (its running jobs waited for, up to 300 s, as asyncio.run
 * does; coil/executor.h), close the loop and return main's outcome (its
 * result, its error, or -ECANCELED).
 *
 * Ctrl-C: while main runs, the first SIGINT cancels main (asyncio.run's
 * KeyboardInterrupt handling: main unwinds as for any cancellation and
 * coil_run returns -ECANCELED, or what main made of it), and the default
 * action is back at once, so a second SIGINT ends the process even if
 * the loop is stuck. This applies only if SIGINT's disposition was the
 * default when coil_run started (a program that ignores or handles
 * SIGINT keeps its choice) and no other loop of the process has SIGINT;
 * a handler the program adds for SIGINT on this loop takes precedence
 * (coil/signal.h).
 *
 * Errors: -EINVAL (main NULL), -EBUSY (a loop already runs in this
 * thread), and the errors of coil_loop_new and coil_task_spawn.
 */
COIL_API int coil_run(coil_task_fn main, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* COIL_TASK_H */
