/* SPDX-License-Identifier: MIT */
/*
 * sleep_many - TASKS tasks each sleep 1 ms, ROUNDS times in a row. The
 * ideal is ROUNDS ms of wall time; everything above is the cost of the
 * timers and switches (10,000 tasks x 100 rounds = 1,000,000 sleeps).
 *
 *   sleep_many      <wall ms for the whole run>   ms
 *   sleep_many_cpu  <CPU ms for the whole run>    ms
 */
#include <coil.h>

#include "bench.h"

#ifndef TASKS
#define TASKS 10000
#endif
#ifndef ROUNDS
#define ROUNDS 100
#endif

static int sleeper(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        int err = coil_sleep(COIL_MSEC);
        if (err)
            return err;
    }
    return 0;
}

static int driver(void *arg)
{
    coil_loop_t *loop = arg;
    static coil_task_t *tasks[TASKS];
    static coil_future_t *futs[TASKS];
    for (int i = 0; i < TASKS; i++) {
        if (coil_task_spawn(loop, sleeper, NULL, &tasks[i]))
            return -ENOMEM;
        futs[i] = coil_task_future(tasks[i]);
    }
    int err = coil_gather(futs, TASKS, NULL, 0);
    for (int i = 0; i < TASKS; i++)
        coil_task_unref(tasks[i]);
    return err;
}

int main(void)
{
    bench_guard(60);
    coil_loop_t *loop;
    if (coil_loop_new(&loop))
        bench_fail("coil_loop_new");
    coil_task_t *d;
    int64_t c0 = bench_cpu_ns(), t0 = bench_wall_ns();
    bench_instr_toggle();
    if (coil_task_spawn(loop, driver, loop, &d))
        bench_fail("spawn");
    int err = coil_loop_run_until_complete(loop, coil_task_future(d));
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns(), c1 = bench_cpu_ns();
    if (err)
        bench_fail("driver: %d", err);
    bench_print("sleep_many", (double)(t1 - t0) / 1e6, "ms");
    bench_print("sleep_many_cpu", (double)(c1 - c0) / 1e6, "ms");
    coil_task_unref(d);
    coil_loop_unref(loop);
    return 0;
}
