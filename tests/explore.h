/* SPDX-License-Identifier: MIT */
/*
 * explore.h - the cancellation explorer: run a scenario again and again,
 * cancelling a chosen task at each of its suspensions in turn, and check
 * after every run that nothing was lost, duplicated, leaked or stuck.
 *
 * A scenario makes its objects on the loop it is given, spawns its tasks,
 * names the one to cancel (explore_target), runs the loop (explore_run)
 * and checks its own conservation law, reporting a broken one with
 * explore_fail. The explorer first runs it undisturbed, counting the
 * target's suspensions (n), then once for every k in 1..n in each mode:
 *
 *  - EXPLORE_CANCEL_WAIT: coil_task_cancel as the target suspends for
 *    the k-th time (its wait is interrupted);
 *  - EXPLORE_CANCEL_WOKEN: coil_task_cancel when the k-th wait has
 *    completed, just before the target runs again (the window where a
 *    lock was handed over, a permit or an item promised);
 *  - EXPLORE_TIMEOUT: the target's timeout scope (explore_scope_begin)
 *    expires at its k-th suspension.
 *
 * After each run, besides the scenario's check: every task has finished
 * (explore_run reports a deadlock otherwise, and cancels what is left so
 * the run can end), and the leak gate: every allocation and fd made
 * during the run is gone once the loop is. Runs use the virtual clock
 * with autojump, so they are deterministic: the first k suspensions of a
 * disturbed run are those of the undisturbed one.
 *
 * Failures are collected, not asserted, so that a test can also prove the
 * explorer catches a planted bug.
 */
#ifndef COIL_TEST_EXPLORE_H
#define COIL_TEST_EXPLORE_H

#include <stdbool.h>

#include "coil.h"

enum explore_mode {
    EXPLORE_NONE,
    EXPLORE_CANCEL_WAIT,
    EXPLORE_CANCEL_WOKEN,
    EXPLORE_TIMEOUT,
};

struct explore;

/* One run of a scenario on a fresh loop. */
typedef void (*explore_scenario_fn)(coil_loop_t *loop, struct explore *ex,
                                    void *arg);

struct explore_result {
    int suspensions; /* of the target, undisturbed */
    int runs;
    int failures;
    enum explore_mode first_mode; /* of the first failing run */
    int first_k;
    char first_message[256];
};

/* Explore fn(arg) in every mode at every suspension. Returns the number
 * of failing runs; res (if not NULL) gets the details. */
int explore(const char *name, explore_scenario_fn fn, void *arg,
            struct explore_result *res);

/* As explore, and fail the cmocka test (naming the first failing run)
 * unless every run passed and the target suspended at least once. */
void explore_assert(const char *name, explore_scenario_fn fn, void *arg);

/* In a scenario: the task to disturb (no reference taken). */
void explore_target(struct explore *ex, coil_task_t *task);

/* Run the loop until every task has finished (a virtual hour at most:
 * then a deadlock is reported and the tasks left are cancelled). */
void explore_run(struct explore *ex, coil_loop_t *loop);

/* Report a broken invariant (printf-style); the run fails. */
void explore_fail(struct explore *ex, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Check cond, failing the run with what (and the values) if false. */
#define EXPLORE_CHECK(ex, cond, ...)                                           \
    do {                                                                       \
        if (!(cond))                                                           \
            explore_fail((ex), __VA_ARGS__);                                   \
    } while (0)

/* In the target task: a timeout scope the explorer can make expire
 * (EXPLORE_TIMEOUT), and its end (returns coil_timeout_end's result).
 * Without the explorer's timeout it never expires. */
int explore_scope_begin(struct explore *ex);
int explore_scope_end(struct explore *ex, int result);

/* The mode of the current run (scenarios may use it in checks). */
enum explore_mode explore_mode(const struct explore *ex);

#endif /* COIL_TEST_EXPLORE_H */
