/* SPDX-License-Identifier: MIT */
/*
 * 06_cancellation.c - tutorial step 6: cancellation.
 *
 * 1. A cancel is a request. The task is suspended in a wait; the cancel
 *    makes that wait return -ECANCELED. The task then cleans up (it may
 *    wait again while it does) and returns -ECANCELED itself.
 * 2. Shielding. Cancelling a task that awaits another task cancels that
 *    one too, unless the await is a coil_shield: then only the waiting
 *    task is cancelled and the work it waited for goes on.
 * 3. Timeouts are cancellations with a deadline: a timeout scope cancels
 *    the task when the deadline passes, the code unwinds as for any
 *    cancel, and the scope's end turns -ECANCELED into -ETIMEDOUT.
 *    coil_wait_for does the same around one future.
 *
 * Docs: docs/tutorial/06_cancellation.md. Usage: 06_cancellation
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- 1. A cancel interrupts a wait ----------------------------------- */

/* Holds a buffer while it waits for data that never comes. Whatever way
 * the wait ends, the buffer is freed before the task returns. */
static int reader(void *arg)
{
    int *buffers_held = arg;
    char *buffer = malloc(4096);
    if (!buffer)
        return -ENOMEM;
    (*buffers_held)++;
    printf("  reader: holding a buffer, waiting for data\n");

    int err = coil_sleep(10 * COIL_SEC); /* stands for a read */
    printf("  reader: the wait returned %s\n", coil_err_name(err));

    /* Cleanup. It may wait: the cancel was delivered once, to the wait
     * above, and does not strike again. */
    int flush = coil_sleep(10 * COIL_MSEC);
    printf("  reader: flushed (%s), freeing the buffer\n",
           coil_err_name(flush));
    free(buffer);
    (*buffers_held)--;
    return err; /* -ECANCELED: the task ends as cancelled */
}

static int cancel_a_wait(void)
{
    printf("1. cancelling a task in a wait\n");
    int buffers_held = 0;
    coil_task_t *t;
    int err = coil_task_spawn(coil_running_loop(), reader, &buffers_held, &t);
    if (err)
        return err;
    if ((err = coil_sleep(20 * COIL_MSEC))) { /* let it start waiting */
        coil_task_cancel(t);
        coil_task_join(t);
        coil_task_unref(t);
        return err;
    }

    printf("  main: cancel the reader\n");
    coil_task_cancel(t); /* does not suspend: a request, nothing more */
    int result = coil_task_join(t);
    printf("  main: the reader ended with %s, cancelled: %s, buffers "
           "held: %d\n",
           coil_err_name(result),
           coil_future_cancelled(coil_task_future(t)) ? "yes" : "no",
           buffers_held);
    coil_task_unref(t);
    return result == -ECANCELED && buffers_held == 0 ? 0 : -EPROTO;
}

/* ---- 2. Shielding ---------------------------------------------------- */

/* Work that must not stop halfway: writing a file, committing... */
static int save(void *arg)
{
    (void)arg;
    int err = coil_sleep(500 * COIL_MSEC); /* far longer than the 20 ms
                                              before the cancel */
    printf("    save: %s\n", err ? "interrupted" : "written");
    return err;
}

struct request {
    bool shielded;
    int save_result; /* how the save ended */
};

/* Starts a save and waits for it, with or without a shield. */
static int requester(void *arg)
{
    struct request *r = arg;
    coil_task_t *s;
    int err = coil_task_spawn(coil_running_loop(), save, NULL, &s);
    if (err)
        return err;
    coil_future_t *f = coil_task_future(s);
    err = r->shielded ? coil_shield(f, NULL) : coil_await(f, NULL);
    if (err == -ECANCELED && !coil_future_done(f))
        printf("    requester: cancelled; the save goes on, waiting for "
               "it\n");
    /* Either way, never leave the save behind: wait for its end. This
     * second wait is not interrupted: the cancel was delivered above. */
    r->save_result = coil_task_join(s);
    coil_task_unref(s);
    return err;
}

static int shielding(void)
{
    printf("2. shielding\n");
    for (int i = 0; i < 2; i++) {
        struct request r = {.shielded = i == 1};
        printf("  %s:\n", r.shielded ? "with coil_shield" : "with coil_await");
        coil_task_t *t;
        int err = coil_task_spawn(coil_running_loop(), requester, &r, &t);
        if (err)
            return err;
        err = coil_sleep(20 * COIL_MSEC); /* the save is under way */
        coil_task_cancel(t);
        int result = coil_task_join(t);
        coil_task_unref(t);
        if (err)
            return err; /* we were cancelled ourselves, during the sleep */
        printf("    requester: %s, the save: %s\n", coil_err_name(result),
               coil_err_name(r.save_result));
        /* The cancel reaches the save only without the shield. */
        if (result != -ECANCELED ||
            r.save_result != (r.shielded ? 0 : -ECANCELED))
            return -EPROTO;
    }
    return 0;
}

/* ---- 3. Timeouts ----------------------------------------------------- */

/* A slow operation that notices how it was stopped. */
static int slow_fetch(void *arg)
{
    const char *who = arg;
    int err = coil_sleep(2 * COIL_SEC);
    printf("  %s: the fetch saw %s\n", who, coil_err_name(err));
    return err;
}

static int timeouts(void)
{
    printf("3. timeouts are cancellations\n");
    coil_loop_t *loop = coil_running_loop();

    /* A scope: every wait between begin and end has a deadline. */
    int64_t start = coil_loop_update_time(loop);
    coil_timeout_t *scope;
    int err = coil_timeout_begin(50 * COIL_MSEC, &scope);
    if (err)
        return err;
    char scoped[] = "scope";
    err = slow_fetch(scoped); /* any wait in here may be cut short */
    err = coil_timeout_end(scope, err);
    int64_t took = coil_loop_update_time(loop) - start;
    printf("  scope: the scope's end says %s, after at least 50 ms: %s\n",
           coil_err_name(err), took >= 50 * COIL_MSEC ? "yes" : "NO");
    if (err != -ETIMEDOUT || took < 50 * COIL_MSEC)
        return -EPROTO;

    /* wait_for: a deadline on one future (here, a task's). On timeout the
     * task is cancelled and waited for before wait_for returns. */
    char waited[] = "wait_for";
    coil_task_t *t;
    if ((err = coil_task_spawn(loop, slow_fetch, waited, &t)))
        return err;
    err = coil_wait_for(coil_task_future(t), 50 * COIL_MSEC, NULL);
    printf("  wait_for: returned %s, the task is done: %s\n",
           coil_err_name(err),
           coil_future_done(coil_task_future(t)) ? "yes" : "no");
    coil_task_unref(t);
    return err == -ETIMEDOUT ? 0 : -EPROTO;
}

static int main_task(void *arg)
{
    (void)arg;
    int err = cancel_a_wait();
    if (!err)
        err = shielding();
    if (!err)
        err = timeouts();
    return err;
}

int main(void)
{
    int err = coil_run(main_task, NULL);
    if (err < 0)
        fprintf(stderr, "06_cancellation: %s\n", coil_strerror(err));
    return err != 0;
}
