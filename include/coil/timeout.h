/* SPDX-License-Identifier: MIT */
/**
 * @file coil/timeout.h
 * timeout scopes (asyncio.timeout, Trio's cancel scopes)
 * and wait_for.
 *
 * A scope puts a deadline on every wait of the running task between
 * coil_timeout_begin and coil_timeout_end. When the deadline passes, the
 * task is cancelled: its current (or next) wait returns -ECANCELED, the
 * code unwinds as it would for any cancellation, and coil_timeout_end
 * turns that -ECANCELED into -ETIMEDOUT. A cancellation from anywhere
 * else stays -ECANCELED. Scopes nest; end them in reverse order of
 * beginning, before the task returns.
 *
 *     coil_timeout_t *t;
 *     int err = coil_timeout_begin(2 * COIL_SEC, &t);
 *     if (err) return err;
 *     err = fetch_everything();          // waits inside may be cut short
 *     err = coil_timeout_end(t, err);    // -ETIMEDOUT if the deadline hit
 */
#ifndef COIL_TIMEOUT_H
#define COIL_TIMEOUT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A timeout scope, from coil_timeout_begin to coil_timeout_end. */
typedef struct coil_timeout coil_timeout_t;

/**
 * Begin a scope ending delay_ns from now (the loop's time); a negative or
 * zero delay expires at the next wait. COIL_NO_TIMEOUT means no deadline
 * (one can be set later with coil_timeout_reschedule).
 * Errors: -EINVAL (scope_out NULL), -EPERM (not in a task), -ENOMEM.
 * Does not suspend.
 */
COIL_API int coil_timeout_begin(int64_t delay_ns, coil_timeout_t **scope_out);

/** As coil_timeout_begin, with an absolute deadline in loop time. */
COIL_API int coil_timeout_begin_at(int64_t when_ns, coil_timeout_t **scope_out);

/**
 * End the scope and free it. Pass the result of the code inside; returns
 * it, except that -ECANCELED caused by this scope's deadline (and by
 * nothing else: the task's cancel count, coil_task_cancelling, has not
 * grown since the scope began, whatever it was then) becomes -ETIMEDOUT. A
 * deadline that passed while the code finished anyway leaves its result alone.
 * -EINVAL if scope is NULL or belongs to another task (the scope is then left
 * alone).
 */
COIL_API int coil_timeout_end(coil_timeout_t *scope, int result);

/** Move the deadline (loop time; COIL_NO_TIMEOUT: none). Errors: -EINVAL
 * (NULL), -EALREADY (the deadline has already passed: the cancel is out),
 * -ENOMEM (the old deadline stays in force). */
COIL_API int coil_timeout_reschedule(coil_timeout_t *scope, int64_t when_ns);

/** The deadline (loop time), COIL_NO_TIMEOUT if none. 0 for NULL. */
COIL_API int64_t coil_timeout_when(const coil_timeout_t *scope);

/** Whether the deadline has passed (and cancelled the task). false for
 * NULL. */
COIL_API bool coil_timeout_expired(const coil_timeout_t *scope);

/**
 * Await fut for at most timeout_ns (COIL_NO_TIMEOUT: no limit). On timeout
 * fut is cancelled and waited for, and -ETIMEDOUT returned; if fut
 * produced its result meanwhile, that result is returned instead (never
 * dropped). A timeout of zero or less has passed already: fut's outcome if
 * it is done, else fut is cancelled at once (a task that has not started
 * never runs) and waited for, as asyncio does. Otherwise as coil_await.
 * The timeout counts as expired only if nothing else cancelled the task
 * since the call began (its cancel count against its level then). May
 * suspend; -EPERM outside a task; -EDEADLK (fut is the calling task's
 * own; nothing is cancelled); -ENOMEM.
 */
COIL_API int coil_wait_for(coil_future_t *fut, int64_t timeout_ns,
                           void **value_out);

#ifdef __cplusplus
}
#endif

#endif /* COIL_TIMEOUT_H */
