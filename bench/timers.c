/* SPDX-License-Identifier: MIT */
/*
 * timers - many pending timers: N timers with deadlines uniform in
 * 0..100 ms (fixed seed, the same sequence for every implementation),
 * scheduled with coil_loop_call_later; the caller keeps a handle to every
 * second one and, once all are scheduled, cancels and releases those.
 * The loop then runs until the last live timer fires (it stops the
 * loop); the program checks that exactly N/2 fired and none of the
 * cancelled ones did.
 *
 *   timers      <wall ns per timer, first schedule to last fire> ns/op
 *   timers_cpu  <CPU ns per timer (user + sys), same interval>   ns/op
 *   timers_mem  <(peak RSS - RSS before scheduling) / N>         B/timer
 *
 * Deadlines count from the loop's cached time, refreshed just before the
 * first schedule. Scheduling plus the first batch of expiries usually
 * outlast the 100 ms spread, so the loop seldom sleeps; timers minus
 * timers_cpu is roughly the time it did sleep waiting for deadlines.
 *
 * Memory: the deadline array and the array that keeps the handles are the
 * program's own; both are allocated and touched before the baseline, so
 * timers_mem counts only what the loop allocates (handles and heap).
 */
#include <coil/loop.h>

#include "bench.h"

#ifndef N
#define N 1000000L
#endif
#define MAX_DELAY (100 * COIL_MSEC)

static coil_loop_t *loop;
static long fired;
static long bad;

static void on_timer(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    if (i % 2 == 0)
        bad++; /* a cancelled timer fired */
    if (++fired == N / 2)
        coil_loop_stop(loop);
}

int main(void)
{
    bench_guard(60);
    int64_t *delays = bench_alloc_touched(N * sizeof(*delays));
    coil_handle_t **handles = bench_alloc_touched(N / 2 * sizeof(*handles));
    bench_fill_delays(delays, N, MAX_DELAY);
    int err = coil_loop_new(&loop);
    if (err)
        bench_fail("coil_loop_new: %d", err);

    int64_t rss0 = bench_rss_baseline();
    int64_t cpu0 = bench_cpu_ns();
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    coil_loop_update_time(loop);
    for (long i = 0; i < N; i++) {
        coil_handle_t **out = i % 2 == 0 ? &handles[i / 2] : NULL;
        err = coil_loop_call_later(loop, delays[i], on_timer,
                                   (void *)(uintptr_t)i, out);
        if (err)
            bench_fail("coil_loop_call_later: %d", err);
    }
    for (long i = 0; i < N / 2; i++) {
        coil_handle_cancel(handles[i]);
        coil_handle_unref(handles[i]);
    }
    err = coil_loop_run_forever(loop);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    int64_t cpu1 = bench_cpu_ns();
    int64_t peak = bench_peak_rss();

    if (err)
        bench_fail("coil_loop_run_forever: %d", err);
    if (fired != N / 2 || bad)
        bench_fail("%ld timers fired (expected %ld), %ld of them cancelled",
                   fired, N / 2, bad);
    coil_loop_unref(loop);
    free(handles);
    free(delays);

    bench_print("timers", (double)(t1 - t0) / N, "ns/op");
    bench_print("timers_cpu", (double)(cpu1 - cpu0) / N, "ns/op");
    bench_print("timers_mem", (double)(peak - rss0) / N, "B/timer");
    return 0;
}
