/* SPDX-License-Identifier: MIT */
/*
 * libev_timers - timers (see timers.c) on libev, for comparison: N
 * ev_timer with deadlines uniform in 0..100 ms (the same seeded sequence),
 * every second one stopped once all are started, then the loop runs until
 * the last live one fires.
 *
 *   libev_timers      <wall ns per timer, first start to last fire> ns/op
 *   libev_timers_cpu  <CPU ns per timer (user + sys), same interval> ns/op
 *   libev_timers_mem  <(peak RSS - RSS before starting) / N>        B/timer
 *
 * Fairness notes:
 *  - libev takes deadlines as double seconds; the nanosecond delays
 *    convert exactly enough (no rounding to a coarser unit).
 *  - In libev the caller provides the watcher's memory (ev_timer, which is
 *    also the handle used to stop it), where coil allocates its handles
 *    itself. So the ev_timer array is allocated after the RSS baseline, in
 *    one block (the cheapest way, no per-timer malloc), and counts in
 *    libev_timers_mem and in the time: both sides then measure the memory
 *    a pending timer costs. The deadline array is allocated and touched
 *    before the baseline, as in timers.c.
 *  - Deadlines count from the loop's cached time, refreshed just before
 *    the first start (ev_now_update), as coil's count from its loop time.
 */
#include <ev.h>

#include "bench.h"

#ifndef N
#define N 1000000L
#endif
#define MAX_DELAY_NS 100000000L

static ev_timer *timers;
static long fired;
static long bad;

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    long i = (long)(w - timers);
    if (i % 2 == 0)
        bad++; /* a stopped timer fired */
    if (++fired == N / 2)
        ev_break(loop, EVBREAK_ALL);
}

int main(void)
{
    bench_guard(60);
    int64_t *delays = bench_alloc_touched(N * sizeof(*delays));
    bench_fill_delays(delays, N, MAX_DELAY_NS);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop)
        bench_fail("ev_loop_new failed");

    int64_t rss0 = bench_rss_baseline();
    int64_t cpu0 = bench_cpu_ns();
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    timers = malloc(N * sizeof(*timers));
    if (!timers)
        bench_fail("out of memory");
    ev_now_update(loop);
    for (long i = 0; i < N; i++) {
        ev_timer_init(&timers[i], on_timer, (double)delays[i] * 1e-9, 0.);
        ev_timer_start(loop, &timers[i]);
    }
    for (long i = 0; i < N; i += 2)
        ev_timer_stop(loop, &timers[i]);
    ev_run(loop, 0);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    int64_t cpu1 = bench_cpu_ns();
    int64_t peak = bench_peak_rss();

    if (fired != N / 2 || bad)
        bench_fail("%ld timers fired (expected %ld), %ld of them stopped",
                   fired, N / 2, bad);
    ev_loop_destroy(loop);
    free(timers);
    free(delays);

    bench_print("libev_timers", (double)(t1 - t0) / N, "ns/op");
    bench_print("libev_timers_cpu", (double)(cpu1 - cpu0) / N, "ns/op");
    bench_print("libev_timers_mem", (double)(peak - rss0) / N, "B/timer");
    return 0;
}
