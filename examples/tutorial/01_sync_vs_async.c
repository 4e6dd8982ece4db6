/* SPDX-License-Identifier: MIT */
/*
 * 01_sync_vs_async.c - tutorial step 1: three one-second waits.
 *
 * First the blocking way: plain C, one nanosleep after another. The
 * thread can do nothing else while it sleeps, so the three waits add up
 * to three seconds.
 *
 * Then the asynchronous way: three coil tasks on one event loop, each
 * waiting one second with coil_sleep. A waiting task gives the thread
 * back to the loop, which starts the next task; the three waits overlap
 * and the whole takes about one second, still on one thread.
 *
 * Docs: docs/tutorial/01_sync_vs_async.md. Usage: 01_sync_vs_async
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <time.h>

#define POTS 3

/* ---- The blocking way ------------------------------------------------ */

/* Block the whole thread for one second. nanosleep may be cut short by a
 * signal (EINTR); it then says how much is left, and we sleep that. */
static int blocking_wait_one_second(void)
{
    struct timespec left = {.tv_sec = 1, .tv_nsec = 0};
    while (nanosleep(&left, &left) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static int blocking_version(void)
{
    printf("blocking: one wait after another\n");
    int64_t start = coil_now();
    for (int pot = 1; pot <= POTS; pot++) {
        int err = blocking_wait_one_second();
        if (err)
            return err;
        printf("  pot %d: boiled\n", pot);
    }
    double took = (double)(coil_now() - start) / COIL_SEC;
    printf("blocking: took %.2f s\n", took);
    /* A blocking sleep never returns early, so this bound cannot fail. */
    printf("blocking: at least %d s, the waits added up: %s\n", POTS,
           took >= POTS ? "yes" : "NO");
    return took >= POTS ? 0 : 1;
}

/* ---- The asynchronous way -------------------------------------------- */

/* What the three tasks share. Only one task runs at a time (one thread),
 * so plain ints are safe here: no locks, no atomics. */
struct kitchen {
    int on_stove;          /* tasks that have started their wait */
    int on_stove_at_first; /* how many had, when the first wait ended */
    int boiled;            /* tasks whose wait is over */
};

struct pot {
    int number;
    struct kitchen *kitchen;
};

/* A task: runs on its own stack. coil_sleep suspends only this task;
 * the loop runs the others meanwhile. */
static int watch_pot(void *arg)
{
    struct pot *pot = arg;
    struct kitchen *k = pot->kitchen;
    k->on_stove++;
    printf("  pot %d: on the stove\n", pot->number);

    int err = coil_sleep(1 * COIL_SEC);
    if (err)
        return err; /* -ECANCELED if somebody cancelled us */

    if (k->boiled++ == 0)
        k->on_stove_at_first = k->on_stove;
    printf("  pot %d: boiled\n", pot->number);
    return 0;
}

/* The main task (coil_run runs it): start three tasks, then wait for
 * each to finish. */
static int async_version(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    struct kitchen kitchen = {0};
    struct pot pots[POTS];
    coil_task_t *tasks[POTS];
    int spawned = 0, err = 0;

    printf("async: three tasks, one thread\n");
    int64_t start = coil_now();
    for (int i = 0; i < POTS; i++) {
        pots[i] = (struct pot){.number = i + 1, .kitchen = &kitchen};
        err = coil_task_spawn(loop, watch_pot, &pots[i], &tasks[i]);
        if (err)
            break;
        spawned++;
    }
    /* After an error, stop the tasks already started; either way, join
     * every one of them before returning: they use pots[], which lives on
     * this task's stack. */
    if (err)
        for (int i = 0; i < spawned; i++)
            coil_task_cancel(tasks[i]);
    for (int i = 0; i < spawned; i++) {
        int result = coil_task_join(tasks[i]);
        if (result < 0 && !err)
            err = result;
        coil_task_unref(tasks[i]);
    }
    if (err)
        return err;

    double took = (double)(coil_now() - start) / COIL_SEC;
    printf("async: took %.2f s\n", took);
    /* The proof of overlap does not depend on the clock: every pot was
     * already on the stove when the first one boiled. */
    bool overlapped = kitchen.on_stove_at_first == POTS;
    printf("async: the three waits overlapped: %s\n",
           overlapped ? "yes" : "NO");
    return overlapped ? 0 : 1;
}

int main(void)
{
    int err = blocking_version();
    if (err < 0)
        fprintf(stderr, "blocking version: %s\n", coil_strerror(err));
    if (err)
        return 1;
    /* coil_run makes a loop, runs async_version as its main task until
     * it returns, then cleans up and closes the loop (asyncio.run). */
    err = coil_run(async_version, NULL);
    if (err < 0)
        fprintf(stderr, "async version: %s\n", coil_strerror(err));
    return err != 0;
}
