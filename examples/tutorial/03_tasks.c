/* SPDX-License-Identifier: MIT */
/*
 * 03_tasks.c - tutorial step 3: tasks, their results and errors, and
 * futures.
 *
 *   1. Two tasks count down side by side. Each is a plain C function
 *      running on a stack of its own: its local variables stay put while
 *      it is suspended in coil_sleep. A spawned task starts only when the
 *      spawning task lets the loop run; coil_task_join waits for it and
 *      returns what its function returned.
 *   2. Results and errors: a task returns a value >= 0, or a negative
 *      errno code for an error (-ENOENT here). Richer results go back
 *      through the argument.
 *   3. A task is a future: coil_await works on coil_task_future(task).
 *   4. A plain future is a result that someone will deliver later: here
 *      a timer callback, then another task.
 *
 * Docs: docs/tutorial/03_tasks.md. Usage: 03_tasks
 */
#include <coil.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- 1. Tasks: functions on their own stacks ------------------------- */

struct countdown {
    const char *name;
    int from;
};

static int countdown(void *arg)
{
    const struct countdown *c = arg;
    int ticks = 0; /* a local: it lives on this task's own stack */
    for (int i = c->from; i > 0; i--) {
        printf("  %s: %d\n", c->name, i);
        /* Suspends this task only. i and ticks wait here, untouched,
         * while the loop runs the other task. */
        int err = coil_sleep(10 * COIL_MSEC);
        if (err)
            return err; /* -ECANCELED: somebody cancelled us */
        ticks++;
    }
    printf("  %s: liftoff\n", c->name);
    return ticks; /* the task's result */
}

static int part_spawn_and_join(coil_loop_t *loop)
{
    printf("1. two tasks, each on its own stack:\n");
    struct countdown a = {"a", 3}, b = {"b", 2};
    coil_task_t *ta, *tb;
    int err = coil_task_spawn(loop, countdown, &a, &ta);
    if (err)
        return err;
    err = coil_task_spawn(loop, countdown, &b, &tb);
    if (err) {
        /* a and b live on this stack: never return while ta may run. */
        coil_task_cancel(ta);
        coil_task_join(ta);
        coil_task_unref(ta);
        return err;
    }
    printf("  main: spawned a and b; neither has run yet\n");

    int ra = coil_task_join(ta); /* suspends main until a has finished */
    int rb = coil_task_join(tb); /* b finished first: returns at once */
    coil_task_unref(ta);
    coil_task_unref(tb);
    if (ra < 0)
        return ra;
    if (rb < 0)
        return rb;
    printf("  main: a returned %d, b returned %d\n", ra, rb);
    return 0;
}

/* ---- 2. Results and errors ------------------------------------------- */

/* The argument carries the question in and the answer out. */
struct lookup {
    const char *name; /* in */
    int uid;          /* out */
    const char *home; /* out */
};

static int look_up_user(void *arg)
{
    static const struct {
        const char *name;
        int uid;
        const char *home;
    } users[] = {{"ada", 1815, "/home/ada"}, {"alan", 1912, "/home/alan"}};

    struct lookup *q = arg;
    int err = coil_sleep(5 * COIL_MSEC); /* as if asking a server */
    if (err)
        return err;
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
        if (strcmp(users[i].name, q->name) == 0) {
            q->uid = users[i].uid;
            q->home = users[i].home;
            return 0;
        }
    return -ENOENT; /* an error: a negative errno code */
}

static int part_results_and_errors(coil_loop_t *loop)
{
    printf("2. results and errors:\n");
    const char *names[] = {"ada", "nobody"};
    for (int i = 0; i < 2; i++) {
        struct lookup q = {.name = names[i]};
        coil_task_t *t;
        int err = coil_task_spawn(loop, look_up_user, &q, &t);
        if (err)
            return err;
        int result = coil_task_join(t);
        coil_task_unref(t);
        if (result == 0)
            printf("  %s: uid %d, home %s\n", q.name, q.uid, q.home);
        else if (result == -ENOENT)
            printf("  %s: failed with %s (%s)\n", q.name,
                   coil_err_name(result), coil_strerror(result));
        else
            return result; /* anything else is unexpected here */
    }
    return 0;
}

/* ---- 3. A task is a future ------------------------------------------- */

static int part_task_is_a_future(coil_loop_t *loop)
{
    printf("3. a task is a future:\n");
    struct countdown c = {"c", 1};
    coil_task_t *t;
    int err = coil_task_spawn(loop, countdown, &c, &t);
    if (err)
        return err;
    /* The same wait as coil_task_join, through the task's future: the
     * result travels as a pointer-sized value. */
    void *value;
    err = coil_await(coil_task_future(t), &value);
    coil_task_unref(t);
    if (err)
        return err;
    printf("  main: awaited c's future: value %d\n", (int)(intptr_t)value);
    return 0;
}

/* ---- 4. Plain futures ------------------------------------------------- */

/* A timer callback: it cannot wait, but it can complete a future. */
static void deliver_from_timer(void *arg)
{
    static char message[] = "hello from a timer callback";
    coil_future_t *fut = arg;
    int err = coil_future_set_result(fut, message);
    if (err)
        fprintf(stderr, "set_result: %s\n", coil_strerror(err));
}

struct handoff {
    coil_future_t *fut; /* where to deliver */
    int answer;         /* the result lives here; the future points to it */
};

/* A task that completes a future another task waits for. */
static int producer(void *arg)
{
    struct handoff *h = arg;
    int err = coil_sleep(10 * COIL_MSEC);
    if (err)
        return err;
    h->answer = 6 * 7;
    printf("  producer: the answer is ready, completing the future\n");
    return coil_future_set_result(h->fut, &h->answer);
}

static int part_plain_futures(coil_loop_t *loop)
{
    printf("4. plain futures:\n");

    /* A future completed by a callback, 10 ms from now. */
    coil_future_t *fut;
    int err = coil_future_new(loop, &fut);
    if (err)
        return err;
    coil_handle_t *timer;
    err = coil_loop_call_later(loop, 10 * COIL_MSEC, deliver_from_timer, fut,
                               &timer);
    if (err) {
        coil_future_unref(fut);
        return err;
    }
    void *value = NULL;
    err = coil_await(fut, &value); /* suspends until the timer fires */
    /* If the await ended early (we were cancelled), the timer must not
     * fire at a future we no longer hold: cancel it (harmless if it has
     * run already), then let go of the handle and the future. */
    coil_handle_cancel(timer);
    coil_handle_unref(timer);
    coil_future_unref(fut);
    if (err)
        return err;
    printf("  main: got \"%s\"\n", (const char *)value);

    /* A future completed by another task. */
    struct handoff h = {0};
    if ((err = coil_future_new(loop, &h.fut)))
        return err;
    coil_task_t *t;
    if ((err = coil_task_spawn(loop, producer, &h, &t))) {
        coil_future_unref(h.fut);
        return err;
    }
    err = coil_await(h.fut, &value);
    /* Join the producer too: it must be done with h before we return. */
    int perr = coil_task_join(t);
    coil_task_unref(t);
    coil_future_unref(h.fut);
    if (err)
        return err;
    if (perr < 0)
        return perr;
    printf("  main: got %d from the producer task\n", *(int *)value);
    return 0;
}

/* ---- The main task ---------------------------------------------------- */

static int main_task(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    int err;
    if ((err = part_spawn_and_join(loop)) ||
        (err = part_results_and_errors(loop)) ||
        (err = part_task_is_a_future(loop)) ||
        (err = part_plain_futures(loop)))
        return err;
    return 0;
}

int main(void)
{
    int err = coil_run(main_task, NULL);
    if (err < 0)
        fprintf(stderr, "03_tasks: %s\n", coil_strerror(err));
    return err != 0;
}
