/* SPDX-License-Identifier: MIT */
/*
 * many_tasks - TASKS tasks alive at once, each suspended in a wait on one
 * shared future, every stack with its guard. Then the future completes
 * and they all finish.
 *
 *   many_tasks        <RSS growth per idle task>             B/task
 *   many_tasks_spawn  <wall ns per task to reach the wait>   ns/op
 *
 * The guard kind (madvise guards or mprotect'd pages) is reported on
 * stderr; with mprotect guards the kernel's vm.max_map_count caps the
 * count near 32,000 and the benchmark says so.
 */
#include <coil.h>

#include "bench.h"

#define TASKS 1000000L

static coil_future_t *gate;
static long waiting, woke;

static int idle(void *arg)
{
    (void)arg;
    waiting++;
    int err = coil_await(gate, NULL);
    woke++;
    return err;
}

static int driver(void *arg)
{
    coil_loop_t *loop = arg;
    long made = 0;
    int err = 0;
    for (; made < TASKS; made++)
        if ((err = coil_task_spawn(loop, idle, NULL, NULL)) != 0)
            break;
    if (err)
        fprintf(stderr, "many_tasks: spawn stopped at %ld tasks: %s\n", made,
                coil_strerror(err));
    /* Let every task reach its wait. */
    while (waiting < made)
        coil_yield();
    return (int)(made == TASKS ? 0 : -ENOMEM);
}

int main(void)
{
    bench_guard(120);
    coil_loop_t *loop;
    if (coil_loop_new(&loop) || coil_future_new(loop, &gate))
        bench_fail("setup");
    int64_t rss0 = bench_rss_baseline();
    coil_task_t *d;
    int64_t t0 = bench_wall_ns();
    if (coil_task_spawn(loop, driver, loop, &d))
        bench_fail("spawn");
    int err = coil_loop_run_until_complete(loop, coil_task_future(d));
    int64_t t1 = bench_wall_ns();
    int64_t rss1 = bench_peak_rss();
    if (err)
        bench_fail("only %ld tasks could be made", waiting);
    bench_print("many_tasks", (double)(rss1 - rss0) / TASKS, "B/task");
    bench_print("many_tasks_spawn", (double)(t1 - t0) / TASKS, "ns/op");
    coil_future_set_result(gate, NULL);
    coil_task_unref(d);
    /* Run until all have finished. */
    coil_future_t *end;
    coil_future_new(loop, &end);
    coil_future_set_result(end, NULL);
    while (woke < TASKS)
        coil_loop_run_until_complete(loop, end);
    coil_future_unref(end);
    coil_future_unref(gate);
    coil_loop_unref(loop);
    return 0;
}
