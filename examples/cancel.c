/* SPDX-License-Identifier: MIT */
/*
 * cancel.c - cancellation with cleanup: a worker holding a resource is
 * cancelled in the middle of a wait; it releases the resource (waiting
 * again while it does: cleanup may await) and finishes as cancelled.
 * Then a timeout scope cuts a loop of work short.
 * Usage: cancel
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>

static int worker(void *arg)
{
    int *resources = arg;
    (*resources)++;
    printf("  worker: got the resource, working\n");
    int err = 0;
    for (int step = 1; !err; step++) {
        err = coil_sleep(20 * COIL_MSEC);
        if (!err)
            printf("  worker: step %d\n", step);
    }
    printf("  worker: %s while waiting; cleaning up\n", coil_err_name(err));
    /* Cleanup can wait: the cancellation was delivered once. */
    coil_sleep(10 * COIL_MSEC);
    (*resources)--;
    printf("  worker: resource released\n");
    return err; /* -ECANCELED: finish as cancelled */
}

static int main_task(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    int resources = 0;
    coil_task_t *w;
    int err = coil_task_spawn(loop, worker, &resources, &w);
    if (err)
        return err;
    coil_sleep(70 * COIL_MSEC);
    printf("main: cancelling the worker\n");
    coil_task_cancel(w);
    err = coil_task_join(w);
    printf("main: worker finished: %s, cancelled: %s, resources held: %d\n",
           coil_err_name(err),
           coil_future_cancelled(coil_task_future(w)) ? "yes" : "no",
           resources);
    coil_task_unref(w);

    printf("main: work inside a 55 ms timeout scope\n");
    coil_timeout_t *scope;
    if ((err = coil_timeout_begin(55 * COIL_MSEC, &scope)))
        return err;
    int steps = 0;
    while (!(err = coil_sleep(20 * COIL_MSEC)))
        steps++;
    err = coil_timeout_end(scope, err);
    printf("main: %d steps, then %s\n", steps, coil_strerror(err));
    return 0;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: cancel\n");
        return 2;
    }
    return coil_run(main_task, NULL) < 0;
}
