/* SPDX-License-Identifier: MIT */
/*
 * libev_call_soon_batch - call_soon_batch (see call_soon_batch.c) on
 * libev, for comparison: N callbacks scheduled up front, then run.
 *
 * libev has no queue of callbacks; N idle watchers would be a misuse, and
 * ev_feed_event can queue a watcher only once at a time. A libev program
 * keeps its own FIFO and drains it from one idle watcher started while the
 * FIFO is not empty (soonq.h, shared with the libuv version). So this
 * measures libev's iteration plus a minimal ring-buffer queue, fresh for
 * every run. The time counts scheduling and running; the best of REPS
 * runs is printed:
 *
 *   libev_call_soon_batch <wall ns per callback> ns/op
 */
#include <ev.h>

#include "bench.h"
#include "soonq.h"

#ifndef N
#define N 1000000L
#endif
#ifndef REPS
#define REPS 3
#endif

struct soon_loop {
    struct ev_loop *loop;
    ev_idle idle;
    struct soonq q;
};

static void drain(struct ev_loop *loop, ev_idle *idle, int revents)
{
    (void)revents;
    struct soon_loop *s = idle->data;
    soonq_drain(&s->q);
    if (s->q.len == 0)
        ev_idle_stop(loop, idle);
}

/* call_soon for libev: queue fn(arg) for the next iteration. */
static void call_soon(struct soon_loop *s, void (*fn)(void *), void *arg)
{
    if (soonq_push(&s->q, fn, arg) != 0)
        bench_fail("out of memory");
    if (s->q.len == 1)
        ev_idle_start(s->loop, &s->idle);
}

static struct soon_loop sl;
static long count;

static void bump(void *arg)
{
    (void)arg;
    if (++count == N)
        ev_break(sl.loop, EVBREAK_ALL);
}

static double run_once(void)
{
    sl.loop = ev_loop_new(EVFLAG_AUTO);
    if (!sl.loop)
        bench_fail("ev_loop_new failed");
    ev_idle_init(&sl.idle, drain);
    sl.idle.data = &sl;
    soonq_init(&sl.q);
    count = 0;
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    for (long i = 0; i < N; i++)
        call_soon(&sl, bump, NULL);
    ev_run(sl.loop, 0);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    if (count != N)
        bench_fail("%ld callbacks ran, expected %ld", count, N);
    ev_loop_destroy(sl.loop);
    soonq_term(&sl.q);
    return (double)(t1 - t0) / N;
}

int main(void)
{
    bench_guard(60);
    bench_print("libev_call_soon_batch", bench_best_of(REPS, run_once), "ns/op");
    return 0;
}
