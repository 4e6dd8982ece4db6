/* SPDX-License-Identifier: MIT */
/*
 * runner.c - coil_run, asyncio.run: a loop made for one main task, the
 * first SIGINT turned into the main task's cancellation (a second one
 * takes the default action), every other task cancelled and awaited at
 * the end, the default executor shut down, the loop closed.
 *
 * It is its own module because it composes the layers below it (tasks,
 * signals, executors), which know nothing of each other.
 */
#include <signal.h>

#include "executor_internal.h"
#include "loop_internal.h"
#include "runner_internal.h"
#include "signal_internal.h"
#include "task_internal.h"

struct sigint {
    coil_task_t *main;
};

/* The first SIGINT (a Ctrl-C): cancel the main task, which unwinds as
 * for any cancellation (asyncio's KeyboardInterrupt handling). The
 * kernel has put the default action back already (COIL__SIGNAL_ONCE). */
static void on_sigint(void *arg)
{
    struct sigint *si = arg;
    coil_task_cancel(si->main);
}

void coil__run_main_to_end(coil_loop_t *loop, coil_task_t *t)
{
    coil_future_t *fut = coil_task_future(t);
    coil_loop_run_until_complete(loop, fut);
    if (!coil_future_done(fut))
        coil_task_cancel(t); /* the loop was stopped early */
    coil__tasks_cancel_all(loop);
}

int coil__run_outcome(coil_task_t *t)
{
    void *v = NULL;
    int err = coil_future_result(coil_task_future(t), &v);
    return err ? err : (int)(intptr_t)v;
}

int coil_run(coil_task_fn main, void *arg)
{
    if (!main)
        return -EINVAL;
    if (coil_running_loop())
        return -EBUSY;
    coil_loop_t *loop;
    int err = coil_loop_new(&loop);
    if (err)
        return err;
    coil_task_t *t;
    err = coil_task_spawn(loop, main, arg, &t);
    if (err) {
        coil_loop_unref(loop);
        return err;
    }
    /* Only over SIGINT's default action: a program that ignores it (run
     * in the background) or handles it keeps its choice; and not if
     * another loop of the process has SIGINT. Either way it runs without
     * the hook. */
    struct sigint si = {t};
    (void)coil__signal_add_internal(loop, SIGINT, on_sigint, &si,
                                    COIL__SIGNAL_ONCE |
                                        COIL__SIGNAL_IF_DEFAULT |
                                        COIL__SIGNAL_QUIET);
    coil__run_main_to_end(loop, t);
    (void)coil__signal_remove_internal(loop, SIGINT);
    /* The default executor's jobs are waited for, as asyncio.run does. */
    coil__loop_shutdown_default_executor(loop);
    err = coil__run_outcome(t);
    coil_task_unref(t);
    coil_loop_unref(loop);
    return err;
}
