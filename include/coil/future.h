/* SPDX-License-Identifier: MIT */
/**
 * @file coil/future.h
 * futures: a result or an error that arrives later, with
 * callbacks run when it does (asyncio.Future).
 *
 * A future is reference counted: coil_future_new gives the caller one
 * reference, coil_future_ref takes another, coil_future_unref drops one.
 * A pending done callback holds a reference of its own, so a future stays
 * alive until its callbacks have run.
 *
 * Outcome codes, used by coil_future_result/coil_future_error and
 * coil_loop_run_until_complete: 0 for a result, the negative error for a
 * failure, -ECANCELED for a cancelled future, -EINPROGRESS while pending.
 */
#ifndef COIL_FUTURE_H
#define COIL_FUTURE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Called once the future is done, through the loop (never re-entrantly). */
typedef void (*coil_done_fn)(coil_future_t *fut, void *arg);

/**
 * A new pending future on loop.
 * Errors: -EINVAL (NULL argument), -EBADF (loop closed), -ENOMEM.
 */
COIL_API int coil_future_new(coil_loop_t *loop, coil_future_t **fut_out);

/** Take another reference; returns fut. NULL gives NULL. */
COIL_API coil_future_t *coil_future_ref(coil_future_t *fut);

/** Drop a reference; the last one frees the future. Accepts NULL. */
COIL_API void coil_future_unref(coil_future_t *fut);

/**
 * Complete with a result (an opaque pointer; coil never dereferences it).
 * Done callbacks are scheduled with call_soon, in registration order.
 * Errors: -EINVAL (NULL), -EALREADY (already done; nothing changes),
 * -EPERM (the future of a task: only the task completes it).
 */
COIL_API int coil_future_set_result(coil_future_t *fut, void *value);

/**
 * Complete with an error: a negative errno code other than -ECANCELED
 * (use coil_future_cancel for that).
 * Errors: -EINVAL (NULL, error >= 0, or -ECANCELED), -EALREADY, -EPERM
 * (a task's future).
 */
COIL_API int coil_future_set_error(coil_future_t *fut, int error);

/**
 * Cancel: a pending future becomes done with -ECANCELED and its callbacks
 * are scheduled. On a task's future this is coil_task_cancel (a request
 * the task handles). Errors: -EINVAL (NULL), -EALREADY (already done).
 */
COIL_API int coil_future_cancel(coil_future_t *fut);

/** Whether it is done (result, error or cancelled). false for NULL. */
COIL_API bool coil_future_done(const coil_future_t *fut);

/** Whether it was cancelled. false for NULL. */
COIL_API bool coil_future_cancelled(const coil_future_t *fut);

/**
 * The outcome; on 0, *value_out (if not NULL) receives the result.
 * Returns -EINPROGRESS while pending, -EINVAL for NULL fut.
 */
COIL_API int coil_future_result(const coil_future_t *fut, void **value_out);

/** The outcome code alone (see the top of this file). -EINVAL for NULL. */
COIL_API int coil_future_error(const coil_future_t *fut);

/** The loop the future belongs to. NULL for NULL. */
COIL_API coil_loop_t *coil_future_loop(const coil_future_t *fut);

/**
 * Call fn(fut, arg) through the loop once fut is done; if it is done
 * already the call is scheduled at once. Callbacks run in the order they
 * were added. If the loop is closed before they run they never run.
 * Errors: -EINVAL (NULL fut or fn), -ENOMEM.
 */
COIL_API int coil_future_add_done_callback(coil_future_t *fut, coil_done_fn fn,
                                           void *arg);

/**
 * Remove every not-yet-scheduled callback equal to (fn, arg). Returns how
 * many were removed (0 or more); -EINVAL for NULL fut or fn.
 */
COIL_API int coil_future_remove_done_callback(coil_future_t *fut,
                                              coil_done_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* COIL_FUTURE_H */
