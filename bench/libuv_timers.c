/* SPDX-License-Identifier: MIT */
/*
 * libuv_timers - timers (see timers.c) on libuv, for comparison: N
 * uv_timer_t with deadlines uniform in 0..100 ms (the same seeded
 * sequence), every second one stopped once all are started, then the
 * loop runs until the last live one fires.
 *
 *   libuv_timers      <wall ns per timer, first start to last fire> ns/op
 *   libuv_timers_cpu  <CPU ns per timer (user + sys), same interval> ns/op
 *   libuv_timers_mem  <(peak RSS - RSS before starting) / N>        B/timer
 *
 * Fairness notes:
 *  - libuv timers take whole milliseconds, so each delay is rounded up to
 *    the next millisecond (never earlier than asked). That leaves only 101
 *    distinct deadlines; libuv orders equal ones by start order.
 *  - In libuv the caller provides the timer's memory (uv_timer_t, which is
 *    also the handle used to stop it), where coil allocates its handles
 *    itself. So the uv_timer_t array is allocated after the RSS baseline,
 *    in one block (the cheapest way, no per-timer malloc), and counts in
 *    libuv_timers_mem and in the time: both sides then measure the memory
 *    a pending timer costs. The deadline array is allocated and touched
 *    before the baseline, as in timers.c.
 *  - Deadlines count from the loop's cached time, refreshed just before
 *    the first start (uv_update_time), as coil's count from its loop time.
 */
#include <uv.h>

#include "bench.h"

#ifndef N
#define N 1000000L
#endif
#define MAX_DELAY_NS 100000000L

static uv_timer_t *timers;
static long fired;
static long bad;

static void on_timer(uv_timer_t *t)
{
    long i = (long)(t - timers);
    if (i % 2 == 0)
        bad++; /* a stopped timer fired */
    if (++fired == N / 2)
        uv_stop(t->loop);
}

int main(void)
{
    bench_guard(60);
    int64_t *delays = bench_alloc_touched(N * sizeof(*delays));
    bench_fill_delays(delays, N, MAX_DELAY_NS);
    uv_loop_t loop;
    int err = uv_loop_init(&loop);
    if (err)
        bench_fail("uv_loop_init: %s", uv_strerror(err));

    int64_t rss0 = bench_rss_baseline();
    int64_t cpu0 = bench_cpu_ns();
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    timers = malloc(N * sizeof(*timers));
    if (!timers)
        bench_fail("out of memory");
    uv_update_time(&loop);
    for (long i = 0; i < N; i++) {
        uint64_t ms = (uint64_t)(delays[i] + 999999) / 1000000;
        uv_timer_init(&loop, &timers[i]);
        err = uv_timer_start(&timers[i], on_timer, ms, 0);
        if (err)
            bench_fail("uv_timer_start: %s", uv_strerror(err));
    }
    for (long i = 0; i < N; i += 2)
        uv_timer_stop(&timers[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    int64_t cpu1 = bench_cpu_ns();
    int64_t peak = bench_peak_rss();

    if (fired != N / 2 || bad)
        bench_fail("%ld timers fired (expected %ld), %ld of them stopped",
                   fired, N / 2, bad);
    for (long i = 0; i < N; i++)
        uv_close((uv_handle_t *)&timers[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        bench_fail("uv_loop_close failed");
    free(timers);
    free(delays);

    bench_print("libuv_timers", (double)(t1 - t0) / N, "ns/op");
    bench_print("libuv_timers_cpu", (double)(cpu1 - cpu0) / N, "ns/op");
    bench_print("libuv_timers_mem", (double)(peak - rss0) / N, "B/timer");
    return 0;
}
