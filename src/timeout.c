/* SPDX-License-Identifier: MIT */
/*
 * timeout.c - timeout scopes and wait_for.
 *
 * A scope is a timer that cancels its task. The cancellation is an
 * ordinary one (coil_task_cancel), so every wait already knows how to be
 * interrupted by it; the scope only remembers that it fired. At the end
 * it withdraws its own request (coil_task_uncancel) and, if nothing else
 * cancelled the task since the scope began, turns the -ECANCELED that
 * came out of the scope's code into -ETIMEDOUT. "Since the scope began"
 * is measured against the task's cancel count then (its level), not
 * against zero: a task that once handled a cancellation without
 * withdrawing it still gets -ETIMEDOUT from a later scope (asyncio's
 * gh-102780). Because requests are counted, nested scopes and outside
 * cancellations each keep their meaning: an outer scope or a caller's
 * cancel that arrived too is still -ECANCELED at this scope's end, and
 * the outer scope converts its own.
 *
 * A scope is a hook of its task (task_internal.h), so that one a task
 * leaves open when it returns is reported and freed.
 */
#include "loop_internal.h"
#include "task_internal.h"

struct coil_timeout {
    struct coil__task_hook hook; /* in the task while the scope is open */
    struct coil_task *task;
    coil_handle_t *timer;        /* NULL when there is no deadline */
    int64_t when;
    unsigned level;              /* the task's cancel count at begin */
    bool pending_at_begin;       /* a cancel was pending at begin */
    bool expired;
};

static void expire(void *arg)
{
    struct coil_timeout *sc = arg;
    sc->expired = true;
    coil_handle_unref(sc->timer);
    sc->timer = NULL;
    coil_task_cancel(sc->task);
}

static int arm(struct coil_timeout *sc, int64_t when)
{
    struct coil_loop *loop = coil__task_loop(sc->task);
    sc->when = when;
    if (when == COIL_NO_TIMEOUT)
        return 0;
    /* Already past: expire in the next iteration, ahead of anything the
     * task queues after this (a yield), so its next wait is cut short. */
    if (when <= coil_loop_time(loop))
        return coil_loop_call_soon(loop, expire, sc, &sc->timer);
    return coil_loop_call_at(loop, when, expire, sc, &sc->timer);
}

static void disarm(struct coil_timeout *sc)
{
    if (sc->timer) {
        coil_handle_cancel(sc->timer);
        coil_handle_unref(sc->timer);
        sc->timer = NULL;
    }
}

/* The task finished inside the scope. */
static void left_open(struct coil__task_hook *hook, struct coil_task *t)
{
    struct coil_timeout *sc =
        coil__container_of(hook, struct coil_timeout, hook);
    struct coil_loop *loop = coil__task_loop(t);
    if (!coil__loop_closed(loop))
        coil__loop_report(loop, 0,
                          "task '%s' returned inside a timeout scope it never "
                          "ended (coil_timeout_end); the scope was dropped",
                          coil_task_name(t));
    disarm(sc);
    coil__free(sc);
}

int coil_timeout_begin_at(int64_t when_ns, coil_timeout_t **scope_out)
{
    if (!scope_out)
        return -EINVAL;
    *scope_out = NULL;
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    struct coil_timeout *sc = coil__malloc(sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    sc->task = t;
    sc->timer = NULL;
    sc->expired = false;
    sc->level = coil_task_cancelling(t);
    sc->pending_at_begin = coil__task_cancel_pending(t);
    int err = arm(sc, when_ns);
    if (err) {
        coil__free(sc);
        return err;
    }
    sc->hook.on_finish = left_open;
    coil__task_hook_add(t, &sc->hook);
    *scope_out = sc;
    return 0;
}

int coil_timeout_begin(int64_t delay_ns, coil_timeout_t **scope_out)
{
    struct coil_task *t = coil__task_current();
    if (!t) {
        if (scope_out)
            *scope_out = NULL;
        return scope_out ? -EPERM : -EINVAL;
    }
    int64_t when = delay_ns == COIL_NO_TIMEOUT
                       ? COIL_NO_TIMEOUT
                       : coil__add_sat(coil_loop_time(coil__task_loop(t)),
                                       delay_ns);
    return coil_timeout_begin_at(when, scope_out);
}

int coil_timeout_end(coil_timeout_t *sc, int result)
{
    if (!sc || sc->task != coil__task_current())
        return -EINVAL;
    disarm(sc);
    coil__task_hook_remove(&sc->hook);
    if (sc->expired && coil_task_uncancel(sc->task) <= sc->level) {
        /* Nobody else cancelled the task meanwhile: the cancellation was
         * this scope's. If it was never delivered (the code finished
         * without waiting again), it must not reach the next wait. */
        if (!sc->pending_at_begin)
            (void)coil__task_take_cancel(sc->task);
        if (result == -ECANCELED)
            result = -ETIMEDOUT;
    }
    coil__free(sc);
    return result;
}

int coil_timeout_reschedule(coil_timeout_t *sc, int64_t when_ns)
{
    if (!sc)
        return -EINVAL;
    if (sc->expired)
        return -EALREADY;
    /* The new timer first: if it cannot be had, the old one stays. */
    coil_handle_t *old = sc->timer;
    int64_t old_when = sc->when;
    sc->timer = NULL;
    int err = arm(sc, when_ns);
    if (err) {
        sc->timer = old;
        sc->when = old_when;
        return err;
    }
    if (old) {
        coil_handle_cancel(old);
        coil_handle_unref(old);
    }
    return 0;
}

int64_t coil_timeout_when(const coil_timeout_t *sc)
{
    return sc ? sc->when : 0;
}

bool coil_timeout_expired(const coil_timeout_t *sc)
{
    return sc && sc->expired;
}

/* wait_for with no time left (timeout <= 0), as asyncio's: the result if
 * fut is done already; otherwise fut is cancelled (a task that has not
 * started never runs) and waited for, and what it came to is returned,
 * -ETIMEDOUT if it was cancelled. */
static int wait_for_now(coil_future_t *fut, void **value_out)
{
    if (coil_future_done(fut))
        return coil_future_result(fut, value_out); /* as it is */
    (void)coil_future_cancel(fut);
    int err = coil_shield(fut, value_out);
    if (!coil_future_done(fut))
        return err; /* our own cancellation, while fut finishes */
    err = coil_future_result(fut, value_out);
    return err == -ECANCELED ? -ETIMEDOUT : err; /* we cancelled it */
}

int coil_wait_for(coil_future_t *fut, int64_t timeout_ns, void **value_out)
{
    if (timeout_ns == COIL_NO_TIMEOUT)
        return coil_await(fut, value_out);
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    if (!fut || coil_future_loop(fut) != coil__task_loop(t))
        return -EINVAL;
    if (fut == coil_task_future(t))
        return -EDEADLK; /* before anything cancels fut: it is t */
    if (timeout_ns <= 0)
        return wait_for_now(fut, value_out);
    coil_timeout_t *sc;
    int err = coil_timeout_begin(timeout_ns, &sc);
    if (err)
        return err;
    /* On expiry the await cancels fut and waits for it to finish. */
    err = coil_await(fut, value_out);
    return coil_timeout_end(sc, err);
}
