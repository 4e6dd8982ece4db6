/* SPDX-License-Identifier: MIT */
/*
 * call_soon_batch - the cost of a callback scheduled with coil_loop_call_soon
 * and run, when many are queued at once: N callbacks are scheduled up
 * front (each increments a counter; the last one stops the loop), then
 * the loop runs them all in one iteration. The time counts scheduling and
 * running, on a fresh loop (so the record pool grows from empty). The run
 * is repeated REPS times and the best is printed:
 *
 *   call_soon_batch <wall ns per callback> ns/op
 */
#include <coil/loop.h>

#include "bench.h"

#ifndef N
#define N 1000000L
#endif
#ifndef REPS
#define REPS 3
#endif

struct batch {
    coil_loop_t *loop;
    long count;
};

static void bump(void *arg)
{
    struct batch *b = arg;
    if (++b->count == N)
        coil_loop_stop(b->loop);
}

static double run_once(void)
{
    struct batch b = {NULL, 0};
    int err = coil_loop_new(&b.loop);
    if (err)
        bench_fail("coil_loop_new: %d", err);
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    for (long i = 0; i < N; i++)
        if (coil_loop_call_soon(b.loop, bump, &b, NULL) != 0)
            bench_fail("call_soon failed");
    err = coil_loop_run_forever(b.loop);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    if (err)
        bench_fail("coil_loop_run_forever: %d", err);
    if (b.count != N)
        bench_fail("%ld callbacks ran, expected %ld", b.count, N);
    coil_loop_unref(b.loop);
    return (double)(t1 - t0) / N;
}

int main(void)
{
    bench_guard(60);
    bench_print("call_soon_batch", bench_best_of(REPS, run_once), "ns/op");
    return 0;
}
