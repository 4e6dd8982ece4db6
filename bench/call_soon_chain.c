/* SPDX-License-Identifier: MIT */
/*
 * call_soon_chain - the cost of one hop of a callback that re-schedules
 * itself with coil_loop_call_soon: each hop is one loop iteration (a callback
 * scheduled by a callback runs in the next iteration), so this measures
 * the per-iteration overhead of the loop plus one call_soon.
 *
 * A callback re-schedules itself HOPS times, then stops the loop. The run
 * is repeated REPS times, each on a fresh loop, and the best is printed:
 *
 *   call_soon_chain <wall ns per hop> ns/op
 */
#include <coil/loop.h>

#include "bench.h"

#ifndef HOPS
#define HOPS 5000000L
#endif
#ifndef REPS
#define REPS 3
#endif

struct chain {
    coil_loop_t *loop;
    long left;
};

static void hop(void *arg)
{
    struct chain *c = arg;
    if (--c->left == 0) {
        coil_loop_stop(c->loop);
        return;
    }
    if (coil_loop_call_soon(c->loop, hop, c, NULL) != 0)
        bench_fail("call_soon failed");
}

static double run_once(void)
{
    struct chain c = {NULL, HOPS};
    int err = coil_loop_new(&c.loop);
    if (err)
        bench_fail("coil_loop_new: %d", err);
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    if (coil_loop_call_soon(c.loop, hop, &c, NULL) != 0)
        bench_fail("call_soon failed");
    err = coil_loop_run_forever(c.loop);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    if (err)
        bench_fail("coil_loop_run_forever: %d", err);
    if (c.left != 0)
        bench_fail("chain stopped %ld hops early", c.left);
    coil_loop_unref(c.loop);
    return (double)(t1 - t0) / HOPS;
}

int main(void)
{
    bench_guard(60);
    bench_print("call_soon_chain", bench_best_of(REPS, run_once), "ns/op");
    return 0;
}
