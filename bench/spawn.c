/* SPDX-License-Identifier: MIT */
/*
 * spawn - tasks created, run and finished. A driver task spawns TASKS
 * tasks in waves of WAVE (each returns at once) and waits for each wave:
 * the steady state of a program that keeps starting short tasks, with
 * stacks coming back from the loop's pool.
 *
 *   spawn      <wall ns per task: spawn + first switch + finish>  ns/op
 *   spawn_mem  <peak RSS growth / tasks alive at once>            B/task
 *
 * spawn_mem divides by WAVE, the number of tasks alive at the peak.
 */
#include <coil.h>

#include "bench.h"

#define TASKS 100000L
#define WAVE 50 /* within the loop's pool of 64 stacks */

static long finished;

static int child(void *arg)
{
    (void)arg;
    finished++;
    return 0;
}

static int driver(void *arg)
{
    coil_loop_t *loop = arg;
    coil_task_t *wave[WAVE];
    for (long done = 0; done < TASKS; done += WAVE) {
        for (int i = 0; i < WAVE; i++)
            if (coil_task_spawn(loop, child, NULL, &wave[i]) != 0)
                return -ENOMEM;
        for (int i = 0; i < WAVE; i++) {
            coil_task_join(wave[i]);
            coil_task_unref(wave[i]);
        }
    }
    return 0;
}

int main(void)
{
    bench_guard(60);
    coil_loop_t *loop;
    if (coil_loop_new(&loop))
        bench_fail("coil_loop_new");
    int64_t rss0 = bench_rss_baseline();
    coil_task_t *d;
    int64_t t0 = bench_wall_ns();
    if (coil_task_spawn(loop, driver, loop, &d))
        bench_fail("spawn");
    int err = coil_loop_run_until_complete(loop, coil_task_future(d));
    int64_t t1 = bench_wall_ns();
    if (err || finished != TASKS)
        bench_fail("driver: %d, %ld finished", err, finished);
    int64_t rss1 = bench_peak_rss();
    bench_print("spawn", (double)(t1 - t0) / TASKS, "ns/op");
    bench_print("spawn_mem", (double)(rss1 - rss0) / WAVE, "B/task");
    coil_task_unref(d);
    coil_loop_unref(loop);
    return 0;
}
