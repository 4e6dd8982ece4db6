/* SPDX-License-Identifier: MIT */
/*
 * libuv_call_soon_chain - call_soon_chain (see call_soon_chain.c) on
 * libuv, for comparison: the cost of one "run on the next iteration" hop.
 *
 * libuv has no call_soon. The usual way to run something on every next
 * iteration is an idle handle: while one is active the loop polls without
 * blocking and calls it once per iteration. So here one uv_idle_t counts
 * HOPS calls, one per iteration, then stops itself and the loop. This is
 * the cheapest form the chain can take in libuv (no queue at all), so it
 * is a lower bound for what a libuv program pays per hop.
 *
 *   libuv_call_soon_chain <wall ns per hop> ns/op
 */
#include <uv.h>

#include "bench.h"

#ifndef HOPS
#define HOPS 5000000L
#endif
#ifndef REPS
#define REPS 3
#endif

static long left;

static void hop(uv_idle_t *idle)
{
    if (--left == 0) {
        uv_idle_stop(idle);
        uv_stop(idle->loop);
    }
}

static double run_once(void)
{
    uv_loop_t loop;
    uv_idle_t idle;
    int err = uv_loop_init(&loop);
    if (err)
        bench_fail("uv_loop_init: %s", uv_strerror(err));
    uv_idle_init(&loop, &idle);
    left = HOPS;
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    uv_idle_start(&idle, hop);
    uv_run(&loop, UV_RUN_DEFAULT);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    if (left != 0)
        bench_fail("chain stopped %ld hops early", left);
    uv_close((uv_handle_t *)&idle, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        bench_fail("uv_loop_close failed");
    return (double)(t1 - t0) / HOPS;
}

int main(void)
{
    bench_guard(60);
    bench_print("libuv_call_soon_chain", bench_best_of(REPS, run_once), "ns/op");
    return 0;
}
