/* SPDX-License-Identifier: MIT */
/*
 * handoff.h - the bare task hand-off that task_switch measures, shared
 * with the benchmarks that compare against it in the same run (sync.c).
 *
 * Two tasks hand a counter back and forth. Each side has a mailbox: a
 * future the other side completes. One hand-off = complete the partner's
 * future, await our own (a switch out of this task and into the other),
 * then replace the used future with a fresh one.
 */
#ifndef COIL_BENCH_HANDOFF_H
#define COIL_BENCH_HANDOFF_H

#include <coil.h>

struct handoff_mailbox {
    coil_future_t *fut;
};

struct handoff_side {
    coil_loop_t *loop;
    struct handoff_mailbox *mine, *theirs;
    bool starts; /* sends the first value */
    long limit;  /* hand-offs in all, both sides together */
};

static inline int handoff_receive(coil_loop_t *loop,
                                  struct handoff_mailbox *mb, long *value)
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

/* A task body: one side of the ping-pong (arg: struct handoff_side). */
static inline int handoff_player(void *arg)
{
    struct handoff_side *s = arg;
    long n = 0;
    if (s->starts)
        coil_future_set_result(s->theirs->fut, (void *)(intptr_t)++n);
    for (;;) {
        int err = handoff_receive(s->loop, s->mine, &n);
        if (err)
            return err;
        if (n >= s->limit) {
            coil_future_set_result(s->theirs->fut, (void *)(intptr_t)n);
            return 0;
        }
        coil_future_set_result(s->theirs->fut, (void *)(intptr_t)++n);
    }
}

#endif /* COIL_BENCH_HANDOFF_H */
