/* SPDX-License-Identifier: MIT */
/*
 * libev_call_soon_chain - call_soon_chain (see call_soon_chain.c) on
 * libev, for comparison: the cost of one "run on the next iteration" hop.
 *
 * libev has no call_soon. Its documented way to run something on every
 * iteration is an idle watcher: while one is active the loop polls
 * without blocking and invokes it once per iteration (when nothing of
 * higher priority is pending). So here one ev_idle counts HOPS calls, one
 * per iteration, then stops itself and breaks the loop: the cheapest form
 * the chain can take in libev, a lower bound per hop. (ev_feed_event would
 * run the callback again within the same iteration, with no chance for
 * I/O in between, which is not what call_soon means.)
 *
 *   libev_call_soon_chain <wall ns per hop> ns/op
 */
#include <ev.h>

#include "bench.h"

#ifndef HOPS
#define HOPS 5000000L
#endif
#ifndef REPS
#define REPS 3
#endif

static long left;

static void hop(struct ev_loop *loop, ev_idle *idle, int revents)
{
    (void)revents;
    if (--left == 0) {
        ev_idle_stop(loop, idle);
        ev_break(loop, EVBREAK_ALL);
    }
}

static double run_once(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop)
        bench_fail("ev_loop_new failed");
    ev_idle idle;
    ev_idle_init(&idle, hop);
    left = HOPS;
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    ev_idle_start(loop, &idle);
    ev_run(loop, 0);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    if (left != 0)
        bench_fail("chain stopped %ld hops early", left);
    ev_loop_destroy(loop);
    return (double)(t1 - t0) / HOPS;
}

int main(void)
{
    bench_guard(60);
    bench_print("libev_call_soon_chain", bench_best_of(REPS, run_once), "ns/op");
    return 0;
}
