/* SPDX-License-Identifier: MIT */
/*
 * 05_many_at_once.c - tutorial step 5: waiting for many things at once.
 *
 *   1. coil_gather: every result, in the order asked;
 *   2. coil_as_completed: each one as it finishes;
 *   3. coil_wait: until the first is done (a race); the rest are ours
 *      to cancel;
 *   4. coil_wait_for: one wait with a time limit;
 *   5. a timeout scope: a time limit on a whole stretch of code;
 *   6. a task group: children that live and die together.
 *
 * Every "fetch" here is a sleep of a few milliseconds standing for a
 * request to some server; its result is its delay in ms.
 *
 * Docs: docs/tutorial/05_many_at_once.md. Usage: 05_many_at_once
 */
#include <coil.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

struct fetch {
    const char *name;
    int64_t delay; /* how long the "request" takes */
    int fail;      /* 0, or the error it fails with */
};

static int fetch(void *arg)
{
    const struct fetch *f = arg;
    int err = coil_sleep(f->delay);
    if (err) {
        printf("    %s: stopped (%s)\n", f->name, coil_err_name(err));
        return err;
    }
    if (f->fail) {
        printf("    %s: failed (%s)\n", f->name, coil_err_name(f->fail));
        return f->fail;
    }
    return (int)(f->delay / COIL_MSEC);
}

/* The cleanup every section ends with: a task still running is
 * cancelled, each is waited for (their fetch structs live on our stack),
 * and our references are dropped. On finished tasks cancel does nothing
 * and join returns at once. */
static void cancel_join_unref(coil_task_t **tasks, int n)
{
    for (int i = 0; i < n; i++)
        coil_task_cancel(tasks[i]);
    for (int i = 0; i < n; i++) {
        coil_task_join(tasks[i]);
        coil_task_unref(tasks[i]);
    }
}

/* Spawn a task per fetch; tasks[i]'s future goes to futs[i]. On failure
 * nothing is left running. */
static int spawn_all(struct fetch *f, int n, coil_task_t **tasks,
                     coil_future_t **futs)
{
    coil_loop_t *loop = coil_running_loop();
    for (int i = 0; i < n; i++) {
        int err = coil_task_spawn(loop, fetch, &f[i], &tasks[i]);
        if (err) {
            cancel_join_unref(tasks, i);
            return err;
        }
        futs[i] = coil_task_future(tasks[i]);
    }
    return 0;
}

/* ---- 1. gather --------------------------------------------------------- */

static int show_gather(void)
{
    printf("1. gather: a (30 ms), b (10 ms), c (20 ms)\n");
    struct fetch f[3] = {{"a", 30 * COIL_MSEC, 0},
                         {"b", 10 * COIL_MSEC, 0},
                         {"c", 20 * COIL_MSEC, 0}};
    coil_task_t *tasks[3];
    coil_future_t *futs[3];
    void *results[3];
    int err = spawn_all(f, 3, tasks, futs);
    if (err)
        return err;
    /* Waits for all three; the first error would cancel the others. */
    err = coil_gather(futs, 3, results, 0);
    if (!err)
        printf("  results in the order asked: a=%d b=%d c=%d\n",
               (int)(intptr_t)results[0], (int)(intptr_t)results[1],
               (int)(intptr_t)results[2]);
    cancel_join_unref(tasks, 3);
    return err;
}

/* ---- 2. as_completed ---------------------------------------------------- */

static int show_as_completed(void)
{
    printf("2. as_completed: the same three\n");
    struct fetch f[3] = {{"a", 30 * COIL_MSEC, 0},
                         {"b", 10 * COIL_MSEC, 0},
                         {"c", 20 * COIL_MSEC, 0}};
    coil_task_t *tasks[3];
    coil_future_t *futs[3];
    int err = spawn_all(f, 3, tasks, futs);
    if (err)
        return err;

    coil_as_completed_t *it;
    err = coil_as_completed_begin(futs, 3, COIL_NO_TIMEOUT, &it);
    if (!err) {
        coil_future_t *next;
        int more;
        /* 1: a future is done; 0: all were delivered; < 0: an error. */
        while ((more = coil_as_completed_next(it, &next)) == 1) {
            void *value;
            int outcome = coil_future_result(next, &value);
            for (int i = 0; i < 3; i++)
                if (futs[i] == next)
                    printf("  %s finished: %s %d\n", f[i].name,
                           outcome ? "error" : "result",
                           outcome ? outcome : (int)(intptr_t)value);
        }
        coil_as_completed_end(it);
        err = more;
    }
    cancel_join_unref(tasks, 3);
    return err;
}

/* ---- 3. wait: the first one wins ---------------------------------------- */

static int show_wait_first(void)
{
    printf("3. wait for the first: mirror1 (1 s), mirror2 (15 ms)\n");
    struct fetch f[2] = {{"mirror1", 1 * COIL_SEC, 0},
                         {"mirror2", 15 * COIL_MSEC, 0}};
    coil_task_t *tasks[2];
    coil_future_t *futs[2];
    int err = spawn_all(f, 2, tasks, futs);
    if (err)
        return err;
    /* Returns how many are done; cancels nothing. */
    int done = coil_wait(futs, 2, COIL_FIRST_COMPLETED, COIL_NO_TIMEOUT);
    if (done < 0) {
        err = done;
    } else {
        for (int i = 0; i < 2; i++)
            printf("  %s: %s\n", f[i].name,
                   coil_future_done(futs[i]) ? "done" : "still running");
        printf("  cancelling the loser:\n");
    }
    cancel_join_unref(tasks, 2); /* the loser is cancelled here */
    return err;
}

/* ---- 4. wait_for: one wait with a limit ---------------------------------- */

static int show_wait_for(void)
{
    printf("4. wait_for: slow (1 s), with a 50 ms limit\n");
    struct fetch f = {"slow", 1 * COIL_SEC, 0};
    coil_task_t *t;
    int err = coil_task_spawn(coil_running_loop(), fetch, &f, &t);
    if (err)
        return err;
    /* On timeout wait_for cancels the task and waits for it to end. */
    err = coil_wait_for(coil_task_future(t), 50 * COIL_MSEC, NULL);
    printf("  wait_for: %s (%s)\n", coil_err_name(err), coil_strerror(err));
    cancel_join_unref(&t, 1);
    return err == -ETIMEDOUT ? 0 : err; /* the timeout was the point */
}

/* ---- 5. a timeout scope ------------------------------------------------- */

static int show_timeout_scope(void)
{
    printf("5. a 250 ms timeout scope around fetches of 50, 50 and 1000 ms"
           " in a row\n");
    /* The deadline falls 150 ms into page 3: far from any fetch's end,
     * so that a late wake-up on a busy machine cannot change the story. */
    struct fetch pages[3] = {{"page1", 50 * COIL_MSEC, 0},
                             {"page2", 50 * COIL_MSEC, 0},
                             {"page3", 1000 * COIL_MSEC, 0}};
    coil_timeout_t *scope;
    int err = coil_timeout_begin(250 * COIL_MSEC, &scope);
    if (err)
        return err;
    /* Plain calls in this task, no new tasks: every wait in here is
     * under the deadline. */
    for (int i = 0; i < 3 && err >= 0; i++) {
        err = fetch(&pages[i]);
        if (err >= 0)
            printf("  %s: done\n", pages[i].name);
    }
    err = coil_timeout_end(scope, err < 0 ? err : 0);
    printf("  the scope ended with: %s\n", coil_err_name(err));
    return err == -ETIMEDOUT ? 0 : err;
}

/* ---- 6. a task group ---------------------------------------------------- */

static int show_group(void)
{
    printf("6. a group: a (50 ms), b (fails at 10 ms), c (100 ms)\n");
    struct fetch f[3] = {{"a", 50 * COIL_MSEC, 0},
                         {"b", 10 * COIL_MSEC, -ECONNRESET},
                         {"c", 100 * COIL_MSEC, 0}};
    coil_group_t *g;
    int err = coil_group_new(&g);
    if (err)
        return err;
    for (int i = 0; i < 3 && !err; i++)
        err = coil_group_spawn(g, fetch, &f[i], NULL, NULL);
    if (err)
        coil_group_cancel(g); /* stop those already spawned */
    /* Always wait: the children use f[], on this stack. The first
     * failure cancelled the others; wait returns that error. */
    int werr = coil_group_wait(g);
    int nerrors = coil_group_errors(g, NULL, 0);
    coil_group_unref(g);
    if (err)
        return err;
    printf("  group wait: %s, %d child failed\n", coil_err_name(werr),
           nerrors);
    return werr == -ECONNRESET ? 0 : werr; /* the failure was the point */
}

/* ---- main --------------------------------------------------------------- */

static int main_task(void *arg)
{
    (void)arg;
    int err;
    if ((err = show_gather()) || (err = show_as_completed()) ||
        (err = show_wait_first()) || (err = show_wait_for()) ||
        (err = show_timeout_scope()) || (err = show_group()))
        return err;
    return 0;
}

int main(void)
{
    int err = coil_run(main_task, NULL);
    if (err < 0)
        fprintf(stderr, "05_many_at_once: %s\n", coil_strerror(err));
    return err != 0;
}
