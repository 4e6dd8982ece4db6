/* SPDX-License-Identifier: MIT */
/**
 * @file coil/executor.h
 * running blocking calls on threads (asyncio's
 * to_thread, run_in_executor and ThreadPoolExecutor), and reaching a loop
 * from other threads (run_coroutine_threadsafe, completing a future).
 *
 * A job is a function that may block: int fn(void *arg), returning a
 * result (>= 0) or a negative errno, like a task's body. It runs on a
 * worker thread of an executor, a pool of threads started as jobs need
 * them. Every loop has a default executor, made on first use and shut
 * down when the loop closes (and by coil_run before it closes the loop);
 * executors a program makes itself may be shared by several loops.
 *
 * Who owns arg. While the job may run, arg is the job's. When the waiting
 * call returns the job's outcome (its result or error, or -ESHUTDOWN if
 * it never ran), arg is the caller's again. When the wait ends without
 * the outcome (the waiting task was cancelled: -ECANCELED), the job keeps
 * arg until it is done with it, and then calls dispose(arg, result)
 * exactly once (result is -ECANCELED, or -ESHUTDOWN, if the job never
 * started), on the
 * worker thread or on the loop's, whichever finishes with it; a NULL
 * dispose means arg needs nothing done (it is static, say). So a
 * cancelled call never leaves a running thread pointing into a stack
 * that has gone.
 *
 * Cancellation. A job not started yet is dropped (also when its loop
 * closes). A running one cannot be stopped: coil_job_cancelled() becomes
 * true for it (a cooperative flag the job may poll), the waiter is
 * released at once, and the result is handed to dispose when the job
 * returns. A job that returns -ECANCELED itself counts as cancelled: its
 * arg goes to dispose too, so that -ECANCELED always means "dispose has
 * arg". A future of a job dropped unawaited is no cancel: the job still
 * runs to its end (fire and forget), and its result goes to dispose.
 *
 * Worker threads block every asynchronous signal: signals are for the
 * program's own threads.
 */
#ifndef COIL_EXECUTOR_H
#define COIL_EXECUTOR_H

#include "common.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An executor: a pool of worker threads for jobs that may block. */
typedef struct coil_executor coil_executor_t;

/** A job: runs on a worker thread; returns a result (>= 0) or -errno. */
typedef int (*coil_job_fn)(void *arg);

/** Frees what a job that nobody waits for any more was given. */
typedef void (*coil_job_dispose_fn)(void *arg, int result);

/** Options for coil_executor_new; zero-initialise, then set fields. */
typedef struct coil_executor_options {
    /** At most this many worker threads; 0: the number of CPUs plus 4,
     * at most 32 (Python's ThreadPoolExecutor default). */
    unsigned max_threads;
    /** At most this many jobs waiting for a thread (submitting more gives
     * -EAGAIN); 0: no limit. */
    size_t max_queued;
} coil_executor_options_t;

/**
 * Make an executor (opts NULL: the defaults). Threads start only as jobs
 * come. Thread-safe. Errors: -EINVAL (out NULL), -ENOMEM, and
 * pthread's errors.
 */
COIL_API int coil_executor_new(const coil_executor_options_t *opts,
                               coil_executor_t **out);

/** Take a reference; returns ex (NULL for NULL). Thread-safe. */
COIL_API coil_executor_t *coil_executor_ref(coil_executor_t *ex);

/** Drop a reference. The last one shuts the executor down without waiting
 * (coil_executor_shutdown with a timeout of 0); the memory goes when the
 * last running job has returned. Accepts NULL. Thread-safe. */
COIL_API void coil_executor_unref(coil_executor_t *ex);

/**
 * Submit fn(arg) to ex on behalf of the calling thread's running loop
 * (or loop, if given: then from the loop's thread, running or not) and
 * make a future of its outcome: done with (void *)(intptr_t)result, or
 * failed with the job's error, or -ESHUTDOWN if the executor was shut
 * down before the job started. Cancelling the future cancels the job (see
 * the top of this file; dispose then gets arg). The future is the
 * caller's reference. Does not suspend.
 * Errors: -EINVAL (ex, fn or fut_out NULL, no loop), -EBADF (loop
 * closed), -ESHUTDOWN (ex shut down), -EAGAIN (max_queued jobs wait
 * already, or no thread could be started and none runs), -ENOMEM.
 */
COIL_API int coil_executor_submit(coil_executor_t *ex, coil_loop_t *loop,
                                  coil_job_fn fn, void *arg,
                                  coil_job_dispose_fn dispose,
                                  coil_future_t **fut_out);

/**
 * asyncio's loop.run_in_executor: submit fn(arg) to ex (NULL: the running
 * loop's default executor) and wait for its outcome, which is returned.
 * May suspend; -EPERM outside a task; -ECANCELED if the waiting task was
 * cancelled (the job keeps arg and disposes of it); the errors of
 * coil_executor_submit.
 */
COIL_API int coil_executor_run(coil_executor_t *ex, coil_job_fn fn, void *arg,
                               coil_job_dispose_fn dispose);

/** asyncio.to_thread: coil_executor_run on the default executor. */
COIL_API int coil_to_thread(coil_job_fn fn, void *arg,
                            coil_job_dispose_fn dispose);

/** Inside a job: whether whoever waited for it has let go (the job may
 * stop early: its result will be disposed of). false outside a job. */
COIL_API bool coil_job_cancelled(void);

/**
 * Shut ex down: later submissions fail with -ESHUTDOWN, jobs still
 * waiting for a thread fail with -ESHUTDOWN (their futures complete with
 * it), and the running ones are waited for, at most timeout_ns
 * (COIL_NO_TIMEOUT: as long as they take; 0: not at all). Called in a
 * task it suspends the task (the loop goes on); called from any other
 * thread it blocks that thread. Returns 0 when no job runs any more and,
 * if it waited, every worker thread has exited (joined); or -ETIMEDOUT
 * (the jobs still running finish on their own, and their
 * results are delivered or disposed of as usual). Shutting down again
 * waits again. Errors: -EINVAL (NULL), -ECANCELED (the waiting task was
 * cancelled; the shutdown itself stands), -EDEADLK (called from a job of
 * ex with a timeout other than 0: it would wait for itself), -EPERM
 * (called from a callback of a running loop, which may not block, with a
 * timeout other than 0; call it from a task). With -ECANCELED, -EDEADLK
 * and -EPERM the shutdown stands too: only the wait is refused.
 */
COIL_API int coil_executor_shutdown(coil_executor_t *ex, int64_t timeout_ns);

/**
 * The loop's default executor (no new reference: it lives as long as the
 * loop is open), made with the defaults on first use. Errors: -EINVAL,
 * -EBADF (loop closed), -ENOMEM. From the loop's thread only.
 */
COIL_API int coil_loop_default_executor(coil_loop_t *loop,
                                        coil_executor_t **ex_out);

/**
 * Make ex (a new reference is taken) the loop's default executor from now
 * on; the previous one, if any, is let go (unref'd, so shut down if it
 * was the last reference). NULL: back to "made on first use". Errors:
 * -EINVAL (loop NULL), -EBADF (loop closed). From the loop's thread.
 */
COIL_API int coil_loop_set_default_executor(coil_loop_t *loop,
                                            coil_executor_t *ex);

/* ------------------------------------------------------------------ */
/* From other threads                                                   */
/* ------------------------------------------------------------------ */

/**
 * asyncio.run_coroutine_threadsafe(...).result(timeout): from a thread
 * that is not loop's, run fn(arg) as a task on loop and block until it
 * finishes; returns its outcome (result >= 0, error, or -ECANCELED). If
 * timeout_ns passes first (COIL_NO_TIMEOUT: no limit), the task is
 * cancelled and waited for (so arg is free to go when this returns), and
 * -ETIMEDOUT is returned. Errors: -EINVAL (NULL), -EDEADLK (called on
 * loop's own thread, where blocking would stop it), -EBADF (loop closed,
 * or closed before the task finished), -ENOMEM.
 */
COIL_API int coil_loop_run_task_threadsafe(coil_loop_t *loop, coil_task_fn fn,
                                           void *arg, int64_t timeout_ns);

/**
 * Complete fut from any thread: as coil_future_set_result /
 * coil_future_set_error, carried out on fut's loop. The call consumes one
 * reference to fut, which the caller must have taken (coil_future_ref) on
 * the loop's thread before handing fut over: the loop drops it after
 * completing fut, so fut cannot go away in between. A future done by
 * then is left as it is. Errors: -EINVAL (NULL, error >= 0), -EBADF (the
 * loop is closed: the reference is still the caller's, to drop on the
 * loop's thread), -ENOMEM.
 */
COIL_API int coil_future_set_result_threadsafe(coil_future_t *fut,
                                               void *value);
/** @copydoc coil_future_set_result_threadsafe */
COIL_API int coil_future_set_error_threadsafe(coil_future_t *fut, int error);

#ifdef __cplusplus
}
#endif

#endif /* COIL_EXECUTOR_H */
