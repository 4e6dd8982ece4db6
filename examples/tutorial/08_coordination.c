/* SPDX-License-Identifier: MIT */
/*
 * 08_coordination.c - tutorial step 8: coordinating tasks.
 *
 * Tasks of one loop never run at the same instant, but they do take
 * turns at every wait, and that is where they can get in each other's
 * way. coil's locks, semaphores, events and queues (coil/sync.h,
 * coil/queue.h) coordinate them; each wait suspends one task, never the
 * loop.
 *
 * 1. A lock: three tasks update one balance with a wait between reading
 *    and writing it. Without the lock, updates are lost.
 * 2. A semaphore: six downloads, at most two at a time.
 * 3. An event: one task tells several that they may go.
 * 4. A queue: a producer/consumer pipeline. The producer waits when the
 *    queue is full (backpressure), three workers take items, the
 *    producer waits until every item is done (task_done / join) and
 *    shuts the queue down, which ends the workers.
 *
 * Docs: docs/tutorial/08_coordination.md. Usage: 08_coordination
 */
#include <coil.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

/* Run n tasks of fn(arg) in a task group (asyncio.TaskGroup, step 5)
 * and wait for them all; if one fails, the group cancels the others. */
static int run_together(coil_task_fn fn, void *arg, int n)
{
    coil_group_t *g;
    int err = coil_group_new(&g);
    if (err)
        return err;
    for (int i = 0; i < n && !err; i++)
        err = coil_group_spawn(g, fn, arg, NULL, NULL);
    if (err)
        coil_group_cancel(g); /* those spawned finish first */
    int werr = coil_group_wait(g);
    coil_group_unref(g);
    return err ? err : werr;
}

/* ---- 1. A lock ------------------------------------------------------- */

struct account {
    int balance;
    coil_lock_t *lock; /* NULL: no locking */
};

/* Ten deposits of 1. Reading the balance and writing it back are
 * separated by a wait (coil_yield stands for a call to a database):
 * another task can run in between and read the same old balance. */
static int depositor(void *arg)
{
    struct account *acct = arg;
    for (int i = 0; i < 10; i++) {
        int err = acct->lock ? coil_lock_acquire(acct->lock) : 0;
        if (err)
            return err; /* -ECANCELED: we do not hold the lock */
        int seen = acct->balance;
        err = coil_yield();
        if (!err)
            acct->balance = seen + 1;
        if (acct->lock)
            coil_lock_release(acct->lock); /* on every path */
        if (err)
            return err;
    }
    return 0;
}

static int locks(void)
{
    printf("1. a lock\n");
    for (int with_lock = 0; with_lock < 2; with_lock++) {
        struct account acct = {0};
        if (with_lock) {
            int err = coil_lock_new(coil_running_loop(), &acct.lock);
            if (err)
                return err;
        }
        int err = run_together(depositor, &acct, 3);
        coil_lock_unref(acct.lock); /* accepts NULL */
        if (err)
            return err;
        printf("  %s: 30 deposits, balance %d\n",
               with_lock ? "with a lock" : "without a lock", acct.balance);
        if (with_lock && acct.balance != 30)
            return -EPROTO;
    }
    return 0;
}

/* ---- 2. A semaphore -------------------------------------------------- */

struct downloads {
    coil_semaphore_t *slots;
    int running, peak;
};

static int download(void *arg)
{
    struct downloads *dl = arg;
    int err = coil_semaphore_acquire(dl->slots); /* waits for a slot */
    if (err)
        return err;
    if (++dl->running > dl->peak)
        dl->peak = dl->running;
    err = coil_sleep(10 * COIL_MSEC); /* the download itself */
    dl->running--;
    coil_semaphore_release(dl->slots); /* on every path */
    return err;
}

static int semaphores(void)
{
    printf("2. a semaphore\n");
    struct downloads dl = {0};
    int err = coil_semaphore_new(coil_running_loop(), 2, &dl.slots);
    if (err)
        return err;
    err = run_together(download, &dl, 6);
    coil_semaphore_unref(dl.slots);
    if (err)
        return err;
    printf("  6 downloads, at most %d at a time\n", dl.peak);
    return dl.peak == 2 ? 0 : -EPROTO;
}

/* ---- 3. An event ----------------------------------------------------- */

struct runner {
    int number;
    coil_event_t *start;
};

static int run(void *arg)
{
    struct runner *r = arg;
    printf("  runner %d: ready\n", r->number);
    int err = coil_event_wait(r->start); /* until somebody sets it */
    if (err)
        return err;
    printf("  runner %d: running\n", r->number);
    return 0;
}

/* Fires the start signal once every runner is waiting. */
static int starter(void *arg)
{
    coil_event_t *start = arg;
    int err = coil_sleep(10 * COIL_MSEC);
    if (err)
        return err;
    printf("  starter: go!\n");
    return coil_event_set(start); /* wakes every waiter at once */
}

static int events(void)
{
    printf("3. an event\n");
    coil_event_t *start;
    int err = coil_event_new(coil_running_loop(), &start);
    if (err)
        return err;
    struct runner runners[3];
    for (int i = 0; i < 3; i++)
        runners[i] = (struct runner){.number = i + 1, .start = start};
    coil_group_t *g;
    if ((err = coil_group_new(&g))) {
        coil_event_unref(start);
        return err;
    }
    for (int i = 0; i < 3 && !err; i++)
        err = coil_group_spawn(g, run, &runners[i], NULL, NULL);
    if (!err)
        err = coil_group_spawn(g, starter, start, NULL, NULL);
    if (err)
        coil_group_cancel(g);
    int werr = coil_group_wait(g);
    coil_group_unref(g);
    coil_event_unref(start);
    return err ? err : werr;
}

/* ---- 4. A queue: producer and consumers ------------------------------ */

#define ITEMS 12

struct pipeline {
    coil_queue_t *queue;
    long sum;            /* the workers' results, added up */
    int waited_for_room; /* puts that found the queue full */
};

/* Put the numbers 1..ITEMS; then wait until they are all done and shut
 * the queue down. */
static int producer(void *arg)
{
    struct pipeline *p = arg;
    for (intptr_t n = 1; n <= ITEMS; n++) {
        if (coil_queue_full(p->queue))
            p->waited_for_room++;
        /* Items are pointers; small numbers travel inside one. */
        int err = coil_queue_put(p->queue, (void *)n); /* waits if full */
        if (err)
            return err;
    }
    int err = coil_queue_join(p->queue); /* until task_done for each */
    if (err)
        return err;
    printf("  producer: all %d items done; shutting the queue down\n", ITEMS);
    coil_queue_shutdown(p->queue, false); /* getters drain, then stop */
    return 0;
}

static int worker(void *arg)
{
    struct pipeline *p = arg;
    for (;;) {
        void *item;
        int err = coil_queue_get(p->queue, &item); /* waits if empty */
        if (err == -ESHUTDOWN)
            return 0; /* shut down and empty: our work is over */
        if (err)
            return err;
        intptr_t n = (intptr_t)item;
        err = coil_sleep(5 * COIL_MSEC); /* work on it */
        if (!err)
            p->sum += (long)(n * n);    /* no wait in between: no lock */
        coil_queue_task_done(p->queue); /* counted by coil_queue_join */
        if (err)
            return err;
    }
}

static int queues(void)
{
    printf("4. a queue\n");
    struct pipeline p = {0};
    coil_queue_options_t opts = {.maxsize = 3};
    int err = coil_queue_new(coil_running_loop(), &opts, &p.queue);
    if (err)
        return err;
    coil_group_t *g;
    if ((err = coil_group_new(&g))) {
        coil_queue_unref(p.queue);
        return err;
    }
    for (int i = 0; i < 3 && !err; i++)
        err = coil_group_spawn(g, worker, &p, NULL, NULL);
    if (!err)
        err = coil_group_spawn(g, producer, &p, NULL, NULL);
    if (err)
        coil_group_cancel(g);
    int werr = coil_group_wait(g);
    coil_group_unref(g);
    coil_queue_unref(p.queue);
    if (err || werr)
        return err ? err : werr;
    printf("  %d items through a queue of 3 by 3 workers: sum of squares "
           "%ld\n",
           ITEMS, p.sum);
    printf("  the producer had to wait for room: %s\n",
           p.waited_for_room > 0 ? "yes" : "NO");
    return p.sum == 650 && p.waited_for_room > 0 ? 0 : -EPROTO;
}

static int main_task(void *arg)
{
    (void)arg;
    int err = locks();
    if (!err)
        err = semaphores();
    if (!err)
        err = events();
    if (!err)
        err = queues();
    return err;
}

int main(void)
{
    int err = coil_run(main_task, NULL);
    if (err < 0)
        fprintf(stderr, "08_coordination: %s\n", coil_strerror(err));
    return err != 0;
}
