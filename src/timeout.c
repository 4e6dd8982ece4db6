/* SPDX-License-Identifier: MIT */
/*
 * timeout.c - timeout scopes and wait_for.
 *
 * A scope is a timer that cancels its task. The cancellation is an
 * ordinary one (coil_task_cancel), so every wait already knows how to be
 * interrupted by it; the scope only remembers that it fired. At the end
 * it withdraws its own request (coil_task_uncancel) and, if nothing else
 * cancelled the task, turns the -ECANCELED that came out of the scope's
 * code into -ETIMEDOUT. Because requests are counted, nested scopes and
 * outside cancellations each keep their meaning: an outer scope or a
 * caller's cancel that arrived too is still -ECANCELED at this scope's
 * end, and the outer scope converts its own.
 *
 * Scopes of a task form a stack (task->scope, innermost first) so that a
 * task that returns with scopes still open can have them cleaned up.
 */
#include "task.h"

struct coil_timeout {
    struct coil_task *task;
    struct coil_timeout *outer; /* the scope around this one */
    coil_handle_t *timer;       /* NULL when there is no deadline */
    int64_t when;
    bool expired;
};

static void expire(void *arg)
{
    struct coil_timeout *sc = arg;
    sc->expired = true;
    coil_handle_release(sc->timer);
    sc->timer = NULL;
    coil_task_cancel(sc->task);
}

static int arm(struct coil_timeout *sc, int64_t when)
{
    sc->when = when;
    if (when == INT64_MAX)
        return 0;
    /* Already past: expire in the next iteration, ahead of anything the
     * task queues after this (a yield), so its next wait is cut short. */
    if (when <= coil_loop_time(sc->task->fut.loop))
        return coil_call_soon(sc->task->fut.loop, expire, sc, &sc->timer);
    return coil_call_at(sc->task->fut.loop, when, expire, sc, &sc->timer);
}

static void disarm(struct coil_timeout *sc)
{
    if (sc->timer) {
        coil_handle_cancel(sc->timer);
        coil_handle_release(sc->timer);
        sc->timer = NULL;
    }
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
    int err = arm(sc, when_ns);
    if (err) {
        coil__free(sc);
        return err;
    }
    sc->outer = t->scope;
    t->scope = sc;
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
    int64_t when = delay_ns == INT64_MAX
                       ? INT64_MAX
                       : coil__add_sat(coil_loop_time(t->fut.loop), delay_ns);
    return coil_timeout_begin_at(when, scope_out);
}

/* Take sc out of its task's stack of scopes, wherever it is. */
static void unlink_scope(struct coil_timeout *sc)
{
    struct coil_timeout **p = &sc->task->scope;
    while (*p && *p != sc)
        p = &(*p)->outer;
    if (*p)
        *p = sc->outer;
}

int coil_timeout_end(coil_timeout_t *sc, int result)
{
    if (!sc || sc->task != coil__task_current())
        return -EINVAL;
    disarm(sc);
    unlink_scope(sc);
    if (sc->expired && coil_task_uncancel(sc->task) == 0 &&
        result == -ECANCELED)
        result = -ETIMEDOUT;
    coil__free(sc);
    return result;
}

int coil_timeout_reschedule(coil_timeout_t *sc, int64_t when_ns)
{
    if (!sc)
        return -EINVAL;
    if (sc->expired)
        return -EALREADY;
    disarm(sc);
    return arm(sc, when_ns);
}

int64_t coil_timeout_when(const coil_timeout_t *sc)
{
    return sc ? sc->when : 0;
}

bool coil_timeout_expired(const coil_timeout_t *sc)
{
    return sc && sc->expired;
}

void coil__timeouts_drop(struct coil_task *t)
{
    while (t->scope) {
        struct coil_timeout *sc = t->scope;
        coil__loop_report(t->fut.loop, -EINVAL,
                          "task '%s' finished inside a timeout scope that "
                          "was never ended",
                          coil_task_name(t));
        disarm(sc);
        t->scope = sc->outer;
        coil__free(sc);
    }
}

int coil_wait_for(coil_future_t *fut, int64_t timeout_ns, void **value_out)
{
    if (timeout_ns < 0)
        return coil_await(fut, value_out);
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    if (!fut || fut->loop != t->fut.loop)
        return -EINVAL;
    coil_timeout_t *sc;
    int err = coil_timeout_begin(timeout_ns, &sc);
    if (err)
        return err;
    /* On expiry the await cancels fut and waits for it to finish. */
    err = coil_await(fut, value_out);
    return coil_timeout_end(sc, err);
}
