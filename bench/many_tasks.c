/* SPDX-License-Identifier: MIT */
/*
 * many_tasks - TASKS tasks alive at once, each suspended in a wait on one
 * shared future, every stack with its guard. Then the future completes
 * and they all finish.
 *
 *   many_tasks        <RSS growth per idle task>             B/task
 *   many_tasks_pte    <page-table growth per idle task>      B/task
 *   many_tasks_spawn  <wall ns per task to reach the wait>   ns/op
 *
 * RSS does not count page tables; many_tasks_pte is VmPTE's growth,
 * which a stack's guard markers (MADV_GUARD_INSTALL entries live in the
 * page tables) and its spread over the address space add to. With an
 * argument, the loop's stack size is set to that many bytes first
 * (coil_loop_set_stack_size), to compare sizes without rebuilding.
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

int main(int argc, char **argv)
{
    bench_guard(120);
    coil_loop_t *loop;
    if (coil_loop_new(&loop) || coil_future_new(loop, &gate))
        bench_fail("setup");
    if (argc > 2)
        bench_fail("usage: %s [STACK_BYTES]", argv[0]);
    if (argc == 2) {
        char *end;
        unsigned long long size = strtoull(argv[1], &end, 0);
        if (*end || coil_loop_set_stack_size(loop, (size_t)size) != 0)
            bench_fail("bad stack size: %s", argv[1]);
        fprintf(stderr, "many_tasks: stack size %llu bytes\n", size);
    }
    int64_t rss0 = bench_rss_baseline();
    int64_t pte0 = bench_status_bytes("VmPTE");
    coil_task_t *d;
    int64_t t0 = bench_wall_ns();
    if (coil_task_spawn(loop, driver, loop, &d))
        bench_fail("spawn");
    int err = coil_loop_run_until_complete(loop, coil_task_future(d));
    int64_t t1 = bench_wall_ns();
    int64_t rss1 = bench_peak_rss();
    /* Every task is alive and waiting: page tables are at their peak. */
    int64_t pte1 = bench_status_bytes("VmPTE");
    if (err)
        bench_fail("only %ld tasks could be made", waiting);
    bench_print("many_tasks", (double)(rss1 - rss0) / TASKS, "B/task");
    if (pte0 >= 0 && pte1 >= 0)
        bench_print("many_tasks_pte", (double)(pte1 - pte0) / TASKS, "B/task");
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
