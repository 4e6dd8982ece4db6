/* SPDX-License-Identifier: MIT */
/*
 * testing_explore.c - the cancellation explorer (coil/testing.h): a
 * scenario run again and again, its target task cancelled (or its
 * timeout scope expired) at each of its suspensions in turn, through the
 * tasks' test hook (task.c), on the virtual clock so that every run
 * repeats the undisturbed one up to the disturbance.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coil/testing.h"
#include "internal.h"
#include "task_internal.h"
#include "testing_internal.h"

struct coil_explore {
    coil_explore_mode_t mode;
    int k;                  /* disturb at the k-th suspension (1-based) */
    int seen;               /* the target's suspensions so far */
    bool fired;
    coil_task_t *target;
    coil_loop_t *loop;
    coil_timeout_t *scope;  /* the target's explore_scope_begin */
    int failures;           /* of this run */
    char message[256];
};

static void hook(struct coil_task *t, enum coil__task_event ev, void *arg)
{
    coil_explore_t *ex = arg;
    if (t != ex->target)
        return;
    if (ev == COIL__TASK_SUSPENDING)
        ex->seen++;
    if (ex->fired || ex->seen != ex->k)
        return;
    switch (ex->mode) {
    case COIL_EXPLORE_CANCEL_WAIT:
        if (ev == COIL__TASK_SUSPENDING) {
            ex->fired = true;
            coil_task_cancel(t);
        }
        break;
    case COIL_EXPLORE_CANCEL_WOKEN:
        if (ev == COIL__TASK_RESUMING) {
            ex->fired = true;
            coil_task_cancel(t);
        }
        break;
    case COIL_EXPLORE_TIMEOUT:
        if (ev == COIL__TASK_SUSPENDING && ex->scope) {
            ex->fired = true;
            /* Due now: expires in the next iteration, as a deadline
             * reached while the task waits does. */
            coil_timeout_reschedule(ex->scope, coil_loop_time(ex->loop));
        }
        break;
    case COIL_EXPLORE_NONE:
        break;
    }
}

void coil_explore_target(coil_explore_t *ex, coil_task_t *task)
{
    if (ex)
        ex->target = task;
}

coil_explore_mode_t coil_explore_mode(const coil_explore_t *ex)
{
    return ex ? ex->mode : COIL_EXPLORE_NONE;
}

int coil_explore_step(const coil_explore_t *ex, bool *fired)
{
    if (fired)
        *fired = ex && ex->mode != COIL_EXPLORE_NONE && ex->fired;
    return ex && ex->mode != COIL_EXPLORE_NONE ? ex->k : 0;
}

void coil_explore_fail(coil_explore_t *ex, const char *fmt, ...)
{
    if (!ex || !fmt)
        return;
    if (ex->failures++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ex->message, sizeof(ex->message), fmt, ap);
        va_end(ap);
    }
}

int coil_explore_scope_begin(coil_explore_t *ex)
{
    if (!ex)
        return -EINVAL;
    return coil_timeout_begin(COIL_NO_TIMEOUT, &ex->scope);
}

int coil_explore_scope_end(coil_explore_t *ex, int result)
{
    if (!ex)
        return -EINVAL;
    coil_timeout_t *sc = ex->scope;
    ex->scope = NULL;
    return coil_timeout_end(sc, result);
}

/* Stops the run once no task is left, or a virtual hour after it began;
 * looks at doubling intervals, so a stuck run costs a few iterations. */
struct explore_watchdog {
    coil_loop_t *loop;
    int64_t start, delay;
    coil_handle_t *h;
    bool gave_up;
};

static void watchdog_cb(void *arg)
{
    struct explore_watchdog *w = arg;
    coil_handle_unref(w->h);
    w->h = NULL;
    if (coil_loop_tasks(w->loop, NULL, 0) == 0) {
        coil_loop_stop(w->loop);
        return;
    }
    if (coil_loop_time(w->loop) - w->start >= 3600 * COIL_SEC) {
        w->gave_up = true;
        coil_loop_stop(w->loop);
        return;
    }
    w->delay *= 2;
    if (coil_loop_call_later(w->loop, w->delay, watchdog_cb, w, &w->h))
        coil_loop_stop(w->loop);
}

void coil_explore_run(coil_explore_t *ex, coil_loop_t *loop)
{
    if (!ex)
        return;
    if (!loop) {
        coil_explore_fail(ex, "coil_explore_run: no loop");
        return;
    }
    ex->loop = loop;
    for (int round = 0; round < 4; round++) {
        struct explore_watchdog w = {loop, coil_loop_time(loop), COIL_MSEC,
                                     NULL, false};
        if (coil_loop_call_later(loop, w.delay, watchdog_cb, &w, &w.h)) {
            coil_explore_fail(ex, "could not arm the watchdog");
            return;
        }
        int err = coil_loop_run_forever(loop);
        if (w.h) {
            coil_handle_cancel(w.h);
            coil_handle_unref(w.h);
        }
        if (err)
            coil_explore_fail(ex, "the loop failed: %s", coil_err_name(err));
        int left = coil_loop_tasks(loop, NULL, 0);
        if (left == 0)
            return;
        if (round == 0)
            coil_explore_fail(ex,
                         "deadlock: %d task(s) still waiting after a virtual "
                         "hour",
                         left);
        coil_task_t *tasks[64];
        int n = coil_loop_tasks(loop, tasks, 64);
        for (int i = 0; i < n && i < 64; i++) {
            coil_task_cancel(tasks[i]);
            coil_task_unref(tasks[i]);
        }
    }
    coil_explore_fail(ex, "tasks left that ignore cancellation");
}

const char *coil_explore_mode_name(coil_explore_mode_t m)
{
    static const char *const names[] = {"undisturbed", "cancel-at-wait",
                                        "cancel-when-woken", "timeout"};
    return (int)m >= 0 && m <= COIL_EXPLORE_TIMEOUT ? names[m] : NULL;
}

/* One run; returns its failures (and the message in ex). */
static int run_once(coil_explore_fn fn, void *arg, coil_explore_t *ex)
{
    long allocs = coil__alloc_live();
    long fds = coil__fd_count();
    coil__clock_fake(true, true); /* every run from the same time */
    coil_loop_t *loop;
    int err = coil_loop_new(&loop);
    if (err) {
        coil_explore_fail(ex, "coil_loop_new: %s", coil_err_name(err));
        return ex->failures;
    }
    coil__task_test_hook = hook;
    coil__task_test_hook_arg = ex;
    fn(loop, ex, arg);
    coil__task_test_hook = NULL;
    coil__task_test_hook_arg = NULL;
    coil_loop_unref(loop);
    coil__test_wait_executor_threads(); /* before counting */
    if (ex->mode != COIL_EXPLORE_NONE && !ex->fired)
        coil_explore_fail(ex, "the target never reached suspension %d", ex->k);
    if (coil__alloc_live() != allocs)
        coil_explore_fail(ex, "leak: %ld allocation(s) left",
                          coil__alloc_live() - allocs);
    if (coil__fd_count() != fds)
        coil_explore_fail(ex, "leak: %ld fd(s) left", coil__fd_count() - fds);
    return ex->failures;
}

int coil_explore(const char *name, coil_explore_fn fn, void *arg,
            coil_explore_result_t *res)
{
    coil_explore_result_t r = {0};
    if (res)
        *res = r;
    if (!fn)
        return -EINVAL;
    coil_explore_t ex = {.mode = COIL_EXPLORE_NONE};
    r.runs = 1;
    if (run_once(fn, arg, &ex)) {
        r.failures = 1;
        r.first_mode = COIL_EXPLORE_NONE;
        snprintf(r.first_message, sizeof(r.first_message), "%s", ex.message);
    }
    r.suspensions = ex.seen;
    for (int m = COIL_EXPLORE_CANCEL_WAIT; m <= COIL_EXPLORE_TIMEOUT; m++) {
        for (int k = 1; k <= r.suspensions; k++) {
            ex = (coil_explore_t){.mode = (coil_explore_mode_t)m, .k = k};
            r.runs++;
            if (run_once(fn, arg, &ex) && r.failures++ == 0) {
                r.first_mode = (coil_explore_mode_t)m;
                r.first_k = k;
                snprintf(r.first_message, sizeof(r.first_message), "%s",
                         ex.message);
            }
        }
    }
    coil__clock_fake(false, false);
    const char *verbose = getenv("COIL_EXPLORE_VERBOSE");
    if (verbose && *verbose && strcmp(verbose, "0") != 0)
        fprintf(stderr, "explore %s: %d suspensions, %d runs, %d failed\n",
                name ? name : "(unnamed)", r.suspensions, r.runs,
                r.failures);
    if (res)
        *res = r;
    return r.failures;
}

