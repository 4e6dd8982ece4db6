/* SPDX-License-Identifier: MIT */
/*
 * libuv_call_soon_batch - call_soon_batch (see call_soon_batch.c) on
 * libuv, for comparison: N callbacks scheduled up front, then run.
 *
 * libuv has no queue of callbacks, and N idle handles would be a misuse
 * (each is a handle the loop walks every iteration). What libuv programs
 * do is keep their own FIFO and drain it from one idle handle started
 * while the FIFO is not empty (soonq.h; Node.js's setImmediate works this
 * way). So this measures libuv's iteration plus a minimal ring-buffer
 * queue, fresh for every run like coil's pool. The time counts scheduling
 * and running; the best of REPS runs is printed:
 *
 *   libuv_call_soon_batch <wall ns per callback> ns/op
 */
#include <uv.h>

#include "bench.h"
#include "soonq.h"

#ifndef N
#define N 1000000L
#endif
#ifndef REPS
#define REPS 3
#endif

struct soon_loop {
    uv_loop_t loop;
    uv_idle_t idle;
    struct soonq q;
};

static void drain(uv_idle_t *idle)
{
    struct soon_loop *s = idle->data;
    soonq_drain(&s->q);
    if (s->q.len == 0)
        uv_idle_stop(idle);
}

/* call_soon for libuv: queue fn(arg) for the next iteration. */
static void call_soon(struct soon_loop *s, void (*fn)(void *), void *arg)
{
    if (soonq_push(&s->q, fn, arg) != 0)
        bench_fail("out of memory");
    if (s->q.len == 1)
        uv_idle_start(&s->idle, drain);
}

static struct soon_loop sl;
static long count;

static void bump(void *arg)
{
    (void)arg;
    if (++count == N)
        uv_stop(&sl.loop);
}

static double run_once(void)
{
    int err = uv_loop_init(&sl.loop);
    if (err)
        bench_fail("uv_loop_init: %s", uv_strerror(err));
    uv_idle_init(&sl.loop, &sl.idle);
    sl.idle.data = &sl;
    soonq_init(&sl.q);
    count = 0;
    int64_t t0 = bench_wall_ns();
    bench_instr_toggle();
    for (long i = 0; i < N; i++)
        call_soon(&sl, bump, NULL);
    uv_run(&sl.loop, UV_RUN_DEFAULT);
    bench_instr_toggle();
    int64_t t1 = bench_wall_ns();
    if (count != N)
        bench_fail("%ld callbacks ran, expected %ld", count, N);
    uv_close((uv_handle_t *)&sl.idle, NULL);
    uv_run(&sl.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&sl.loop) != 0)
        bench_fail("uv_loop_close failed");
    soonq_term(&sl.q);
    return (double)(t1 - t0) / N;
}

int main(void)
{
    bench_guard(60);
    bench_print("libuv_call_soon_batch", bench_best_of(REPS, run_once), "ns/op");
    return 0;
}
