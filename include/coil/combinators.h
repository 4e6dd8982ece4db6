/* SPDX-License-Identifier: MIT */
/**
 * @file coil/combinators.h
 * waiting for many futures at once: gather, wait,
 * as_completed (asyncio's functions of the same names). Tasks are futures
 * here through coil_task_future(). Each call may suspend and returns
 * -EPERM outside a task. The futures must belong to the running task's
 * loop and stay referenced by the caller for the duration of the call.
 */
#ifndef COIL_COMBINATORS_H
#define COIL_COMBINATORS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Flags of coil_gather. */
#define COIL_GATHER_RETURN_ERRORS 1u /**< errors per slot, cancel nothing */

/**
 * Wait for every future and collect the results in argument order into
 * results[i] (if results is not NULL; a slot whose future failed gets
 * NULL).
 *
 * By default the first error (in completion order) cancels every future
 * not yet done, waits for them to finish, and is returned. With
 * COIL_GATHER_RETURN_ERRORS nothing is cancelled, the call returns 0 when
 * all are done, and each slot's outcome is coil_future_error(futs[i]).
 *
 * If the waiting task is cancelled (also by a cancel pending when the
 * call starts), every future not done is cancelled and waited for, and
 * -ECANCELED returned; but when every future is done already (their
 * results are in, the task has not resumed yet), the results are
 * returned and the cancel is delivered by the next wait, as asyncio's
 * gather refuses such a cancel.
 * Errors: -EINVAL (futs NULL with n > 0, a NULL entry, a future of another
 * loop), -EPERM, -ENOMEM.
 */
COIL_API int coil_gather(coil_future_t *const *futs, size_t n, void **results,
                         unsigned flags);

/** Modes of coil_wait. */
enum coil_wait_mode {
    COIL_ALL_COMPLETED,   /**< every future is done */
    COIL_FIRST_COMPLETED, /**< any future is done */
    COIL_FIRST_EXCEPTION, /**< any future failed (or all are done) */
};

/**
 * Wait until mode is satisfied or timeout_ns passes (COIL_NO_TIMEOUT: no
 * limit; zero or negative: only what is done by the next iteration).
 * Cancels nothing. Returns how many of the futures are done (check each
 * with coil_future_done); a timeout is not an error. With n == 0 it
 * returns 0 at once.
 * Errors: -EINVAL (as coil_gather, or a bad mode), -EPERM, -ECANCELED (the
 * waiting task was cancelled), -ENOMEM.
 */
COIL_API int coil_wait(coil_future_t *const *futs, size_t n,
                       enum coil_wait_mode mode, int64_t timeout_ns);

/** An iteration over futures as they complete (coil_as_completed_begin). */
typedef struct coil_as_completed coil_as_completed_t;

/**
 * Start iterating over futs in the order they complete, with an overall
 * timeout (COIL_NO_TIMEOUT: none; zero or negative: only what is done by
 * the next iteration). The futures are referenced by the iterator; the
 * array futs itself is not copied and must stay valid until
 * coil_as_completed_end. Errors: -EINVAL, -EPERM, -ENOMEM. Does not
 * suspend.
 */
COIL_API int coil_as_completed_begin(coil_future_t *const *futs, size_t n,
                                     int64_t timeout_ns,
                                     coil_as_completed_t **it_out);

/**
 * The next future to complete, in *fut_out (borrowed from the caller's
 * array). Returns 1 with a future, 0 when every future has been
 * delivered, -ETIMEDOUT when the timeout passed first, -ECANCELED when the
 * task was cancelled. May suspend. Errors: -EINVAL, -EPERM.
 */
COIL_API int coil_as_completed_next(coil_as_completed_t *it,
                                    coil_future_t **fut_out);

/** Finish iterating; cancels nothing. Accepts NULL. */
COIL_API void coil_as_completed_end(coil_as_completed_t *it);

#ifdef __cplusplus
}
#endif

#endif /* COIL_COMBINATORS_H */
