/* SPDX-License-Identifier: MIT */
/*
 * pipeline.c - a producer/consumer pipeline over two queues (coil/queue.h):
 *
 *   producer --[work, at most 4]--> 3 workers --[results]--> collector
 *
 * The producer puts numbered work items (heap-allocated: whoever holds an
 * item owns it, and a put or get hands it on) and waits whenever 4 are
 * queued. Each worker takes an item, "processes" it (a short sleep), and
 * puts the result on the second queue; the collector adds the results up.
 *
 * Shutdown is graceful: the producer shuts the work queue down when it has
 * put everything; workers finish what is left and then get -ESHUTDOWN.
 * Meanwhile main waits with coil_queue_join until every item has been
 * marked done, and then shuts the result queue down the same way, which
 * ends the collector. Each queue's drop function frees the items it would
 * discard (an immediate shutdown on an error, or the last unref), so
 * nothing leaks whichever way the program ends.
 *
 * Usage: pipeline
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define N_ITEMS 20
#define N_WORKERS 3
#define QUEUE_SIZE 4
#define WORK_TIME (5 * COIL_MSEC)

struct item {
    int id;
    long value; /* the result, once processed */
};

struct pipeline {
    coil_queue_t *work;    /* items to process */
    coil_queue_t *results; /* processed items */
    long sum;              /* the collector's */
    int collected;
};

/* The queues' drop function: the queue owned the item, so it frees it. */
static void drop_item(void *item, void *arg)
{
    (void)arg;
    free(item);
}

static int producer(void *arg)
{
    struct pipeline *p = arg;
    int err = 0;
    for (int i = 1; i <= N_ITEMS && !err; i++) {
        struct item *it = malloc(sizeof(*it));
        if (!it) {
            err = -ENOMEM;
            break;
        }
        *it = (struct item){.id = i};
        err = coil_queue_put(p->work, it); /* waits while the queue is full */
        if (err)
            free(it); /* a failed put leaves the item with us */
    }
    if (err == -ESHUTDOWN)
        return 0; /* a worker failed and stopped the pipeline: its error */
    /* No more work: getters take what is left, then get -ESHUTDOWN. */
    coil_queue_shutdown(p->work, false);
    return err;
}

/* Returns how many items this worker processed. */
static int worker(void *arg)
{
    struct pipeline *p = arg;
    int done = 0;
    for (;;) {
        void *got;
        int err = coil_queue_get(p->work, &got);
        if (err == -ESHUTDOWN)
            return done; /* shut down and drained: finished */
        if (err)
            return err;
        struct item *it = got;
        err = coil_sleep(WORK_TIME); /* "process" it */
        it->value = (long)it->id * it->id;
        if (!err)
            err = coil_queue_put(p->results, it); /* the item moves on */
        if (err)
            free(it);
        coil_queue_task_done(p->work); /* counted for coil_queue_join */
        if (err) {
            /* Stop the pipeline: the queued items are dropped (and
             * counted as done, so main's join returns). */
            coil_queue_shutdown(p->work, true);
            return err;
        }
        done++;
    }
}

static int collector(void *arg)
{
    struct pipeline *p = arg;
    for (;;) {
        void *got;
        int err = coil_queue_get(p->results, &got);
        if (err == -ESHUTDOWN)
            return 0;
        if (err)
            return err;
        struct item *it = got;
        p->sum += it->value;
        p->collected++;
        free(it);
    }
}

/* Start the tasks (workers first, so that they wait in line for the
 * first items), wait for the work to be done, shut down, join them all. */
static int run_pipeline(struct pipeline *p)
{
    coil_loop_t *loop = coil_running_loop();
    coil_task_fn fns[N_WORKERS + 2] = {collector, worker, worker, worker,
                                       producer};
    coil_task_t *tasks[N_WORKERS + 2];
    int n = 0, err = 0;
    for (; n < N_WORKERS + 2 && !err; n++)
        err = coil_task_spawn(loop, fns[n], p, &tasks[n]);
    if (err)
        n--; /* the failed spawn made no task */

    /* Once the producer has put every item, join waits until the workers
     * have marked each one done. (Joining earlier could return at once:
     * nothing put yet is nothing unfinished.) */
    if (!err)
        err = coil_task_join(tasks[N_WORKERS + 1]);
    if (!err)
        err = coil_queue_join(p->work);
    /* Each worker put its result before marking the item done, so every
     * result is queued: let the collector drain them (or, on an error,
     * stop everything now, dropping what is queued). */
    coil_queue_shutdown(p->results, err != 0);
    coil_queue_shutdown(p->work, err != 0);

    for (int i = 0; i < n; i++) {
        int r = coil_task_join(tasks[i]);
        if (r < 0 && !err)
            err = r;
        if (r >= 0 && fns[i] == worker)
            printf("  worker %d processed %d items\n", i, r);
        coil_task_unref(tasks[i]);
    }
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    struct pipeline p = {0};
    coil_queue_options_t work_opts = {.maxsize = QUEUE_SIZE, .drop = drop_item};
    coil_queue_options_t result_opts = {.drop = drop_item};
    int err = coil_queue_new(loop, &work_opts, &p.work);
    if (!err)
        err = coil_queue_new(loop, &result_opts, &p.results);
    if (!err) {
        printf("%d items, a queue of %d, %d workers\n", N_ITEMS, QUEUE_SIZE,
               N_WORKERS);
        err = run_pipeline(&p);
    }
    coil_queue_unref(p.work); /* both empty by now; if not, drop_item */
    coil_queue_unref(p.results);
    if (err) {
        fprintf(stderr, "pipeline: %s\n", coil_strerror(err));
        return err;
    }
    printf("processed %d items, sum of squares %ld\n", p.collected, p.sum);
    return p.collected == N_ITEMS ? 0 : -EPROTO;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: pipeline\n");
        return 2;
    }
    return coil_run(main_task, NULL) < 0;
}
