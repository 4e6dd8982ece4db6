/* SPDX-License-Identifier: MIT */
/*
 * explore.c - the cancellation explorer (explore.h), on the test build's
 * task hook (coil__task_test_hook: a task suspending, a task about to
 * resume).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "explore.h"
#include "helpers.h"

struct explore {
    enum explore_mode mode;
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
    struct explore *ex = arg;
    if (t != ex->target)
        return;
    if (ev == COIL__TASK_SUSPENDING)
        ex->seen++;
    if (ex->fired || ex->seen != ex->k)
        return;
    switch (ex->mode) {
    case EXPLORE_CANCEL_WAIT:
        if (ev == COIL__TASK_SUSPENDING) {
            ex->fired = true;
            coil_task_cancel(t);
        }
        break;
    case EXPLORE_CANCEL_WOKEN:
        if (ev == COIL__TASK_RESUMING) {
            ex->fired = true;
            coil_task_cancel(t);
        }
        break;
    case EXPLORE_TIMEOUT:
        if (ev == COIL__TASK_SUSPENDING && ex->scope) {
            ex->fired = true;
            /* Due now: expires in the next iteration, as a deadline
             * reached while the task waits does. */
            coil_timeout_reschedule(ex->scope, coil_loop_time(ex->loop));
        }
        break;
    case EXPLORE_NONE:
        break;
    }
}

void explore_target(struct explore *ex, coil_task_t *task)
{
    ex->target = task;
}

enum explore_mode explore_mode(const struct explore *ex)
{
    return ex->mode;
}

void explore_fail(struct explore *ex, const char *fmt, ...)
{
    if (ex->failures++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ex->message, sizeof(ex->message), fmt, ap);
        va_end(ap);
    }
}

int explore_scope_begin(struct explore *ex)
{
    return coil_timeout_begin(COIL_NO_TIMEOUT, &ex->scope);
}

int explore_scope_end(struct explore *ex, int result)
{
    coil_timeout_t *sc = ex->scope;
    ex->scope = NULL;
    return coil_timeout_end(sc, result);
}

/* Stops the run once no task is left, or a virtual hour after it began;
 * looks at doubling intervals, so a stuck run costs a few iterations. */
struct watchdog {
    coil_loop_t *loop;
    int64_t start, delay;
    coil_handle_t *h;
    bool gave_up;
};

static void watchdog_cb(void *arg)
{
    struct watchdog *w = arg;
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

void explore_run(struct explore *ex, coil_loop_t *loop)
{
    ex->loop = loop;
    for (int round = 0; round < 4; round++) {
        struct watchdog w = {loop, coil_loop_time(loop), COIL_MSEC, NULL,
                             false};
        if (coil_loop_call_later(loop, w.delay, watchdog_cb, &w, &w.h)) {
            explore_fail(ex, "could not arm the watchdog");
            return;
        }
        int err = coil_loop_run_forever(loop);
        if (w.h) {
            coil_handle_cancel(w.h);
            coil_handle_unref(w.h);
        }
        if (err)
            explore_fail(ex, "the loop failed: %s", coil_err_name(err));
        int left = coil_loop_tasks(loop, NULL, 0);
        if (left == 0)
            return;
        if (round == 0)
            explore_fail(ex,
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
    explore_fail(ex, "tasks left that ignore cancellation");
}

static const char *mode_name(enum explore_mode m)
{
    static const char *const names[] = {"undisturbed", "cancel-at-wait",
                                        "cancel-when-woken", "timeout"};
    return names[m];
}

/* One run; returns its failures (and the message in ex). */
static int run_once(explore_scenario_fn fn, void *arg, struct explore *ex)
{
    long allocs = test_alloc_live();
    long fds = test_fd_count();
    coil__clock_fake(true, true); /* every run from the same time */
    coil_loop_t *loop;
    int err = coil_loop_new(&loop);
    if (err) {
        explore_fail(ex, "coil_loop_new: %s", coil_err_name(err));
        return ex->failures;
    }
    coil__task_test_hook = hook;
    coil__task_test_hook_arg = ex;
    fn(loop, ex, arg);
    coil__task_test_hook = NULL;
    coil__task_test_hook_arg = NULL;
    coil_loop_unref(loop);
    if (ex->mode != EXPLORE_NONE && !ex->fired)
        explore_fail(ex, "the target never reached suspension %d", ex->k);
    if (test_alloc_live() != allocs)
        explore_fail(ex, "leak: %ld allocation(s) left", test_alloc_live() -
                                                          allocs);
    if (test_fd_count() != fds)
        explore_fail(ex, "leak: %ld fd(s) left", test_fd_count() - fds);
    return ex->failures;
}

int explore(const char *name, explore_scenario_fn fn, void *arg,
            struct explore_result *res)
{
    struct explore_result r = {0};
    struct explore ex = {.mode = EXPLORE_NONE};
    r.runs = 1;
    if (run_once(fn, arg, &ex)) {
        r.failures = 1;
        r.first_mode = EXPLORE_NONE;
        snprintf(r.first_message, sizeof(r.first_message), "%s", ex.message);
    }
    r.suspensions = ex.seen;
    for (int m = EXPLORE_CANCEL_WAIT; m <= EXPLORE_TIMEOUT; m++) {
        for (int k = 1; k <= r.suspensions; k++) {
            ex = (struct explore){.mode = (enum explore_mode)m, .k = k};
            r.runs++;
            if (run_once(fn, arg, &ex) && r.failures++ == 0) {
                r.first_mode = (enum explore_mode)m;
                r.first_k = k;
                snprintf(r.first_message, sizeof(r.first_message), "%s",
                         ex.message);
            }
        }
    }
    coil__clock_fake(false, false);
    if (getenv("COIL_EXPLORE_VERBOSE"))
        fprintf(stderr, "explore %s: %d suspensions, %d runs, %d failed\n",
                name, r.suspensions, r.runs, r.failures);
    if (res)
        *res = r;
    return r.failures;
}

void explore_assert(const char *name, explore_scenario_fn fn, void *arg)
{
    struct explore_result r;
    explore(name, fn, arg, &r);
    if (r.failures)
        fail_msg("explore %s: %d of %d runs failed; first: %s at suspension "
                 "%d: %s",
                 name, r.failures, r.runs, mode_name(r.first_mode), r.first_k,
                 r.first_message);
    if (r.suspensions == 0)
        fail_msg("explore %s: the target never suspended", name);
}
