/* SPDX-License-Identifier: MIT */
/*
 * task_switch - two tasks hand a counter back and forth, HANDOFFS times in
 * all. Each side has a mailbox: a future the other side completes. One
 * hand-off = complete the partner's future, await our own (a switch out
 * of this task and into the other, through the loop), then replace the
 * used future with a fresh one.
 *
 *   task_switch  <wall ns per hand-off>  ns/op
 *
 * Run with COIL_CONTEXT=ucontext to measure the portable switch.
 */
#include <coil.h>

#include "bench.h"
#include "handoff.h"

#ifndef HANDOFFS
#define HANDOFFS 10000000L
#endif

int main(void)
{
    bench_guard(120);
    coil_loop_t *loop;
    struct handoff_mailbox ma, mb;
    if (coil_loop_new(&loop) || coil_future_new(loop, &ma.fut) ||
        coil_future_new(loop, &mb.fut))
        bench_fail("setup");
    struct handoff_side a = {loop, &ma, &mb, true, HANDOFFS},
                        b = {loop, &mb, &ma, false, HANDOFFS};
    coil_task_t *ta, *tb;
    if (coil_task_spawn(loop, handoff_player, &b, &tb) ||
        coil_task_spawn(loop, handoff_player, &a, &ta))
        bench_fail("spawn");
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    int err = coil_loop_run_until_complete(loop, coil_task_future(tb));
    if (!err)
        err = coil_loop_run_until_complete(loop, coil_task_future(ta));
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    if (err)
        bench_fail("players: %d", err);
    bench_print("task_switch", (double)(t1 - t0) / HANDOFFS, "ns/op");
    coil_task_unref(ta);
    coil_task_unref(tb);
    coil_future_unref(ma.fut);
    coil_future_unref(mb.fut);
    coil_loop_unref(loop);
    return 0;
}
