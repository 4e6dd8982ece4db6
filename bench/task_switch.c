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

#ifndef HANDOFFS
#define HANDOFFS 10000000L
#endif

static coil_loop_t *loop;

struct mailbox {
    coil_future_t *fut;
};

static int receive(struct mailbox *mb, long *value)
{
    coil_future_t *f = mb->fut;
    void *v;
    int err = coil_await(f, &v);
    if (!err)
        err = coil_future_new(loop, &mb->fut);
    coil_future_unref(f);
    *value = (long)(intptr_t)v;
    return err;
}

struct side {
    struct mailbox *mine, *theirs;
    bool starts;
};

static int player(void *arg)
{
    struct side *s = arg;
    long n = 0;
    if (s->starts)
        coil_future_set_result(s->theirs->fut, (void *)(intptr_t)++n);
    for (;;) {
        int err = receive(s->mine, &n);
        if (err)
            return err;
        if (n >= HANDOFFS) {
            coil_future_set_result(s->theirs->fut, (void *)(intptr_t)n);
            return 0;
        }
        coil_future_set_result(s->theirs->fut, (void *)(intptr_t)++n);
    }
}

int main(void)
{
    bench_guard(120);
    struct mailbox ma, mb;
    if (coil_loop_new(&loop) || coil_future_new(loop, &ma.fut) ||
        coil_future_new(loop, &mb.fut))
        bench_fail("setup");
    struct side a = {&ma, &mb, true}, b = {&mb, &ma, false};
    coil_task_t *ta, *tb;
    if (coil_task_spawn(loop, player, &b, &tb) ||
        coil_task_spawn(loop, player, &a, &ta))
        bench_fail("spawn");
    int64_t t0 = bench_wall_ns();
    int err = coil_loop_run_until_complete(loop, coil_task_future(tb));
    if (!err)
        err = coil_loop_run_until_complete(loop, coil_task_future(ta));
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
