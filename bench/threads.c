/* SPDX-License-Identifier: MIT */
/*
 * threads - a blocking call handed to a thread and its result handed
 * back, coil's way and the bare way, in one process:
 *
 *   to_thread_roundtrip          <ns per coil_to_thread of a job that
 *                                 returns at once, one task in a loop>  ns/op
 *   pthread_eventfd_roundtrip    <ns per hand-off to a waiting pthread
 *                                 and back, over two eventfds: the
 *                                 least any thread hand-off costs>      ns/op
 *   to_thread_vs_pthread_eventfd <the first over the second>            x
 *   channel_roundtrip            <ns per item sent from a task of one
 *                                 loop to a task of another (a loop
 *                                 group of two) and sent back, through
 *                                 two coil_channels>                    ns/op
 *   channel_vs_pthread_eventfd   <that over the bare hand-off>          x
 *
 * coil's round trip: the task submits the job (the executor's queue and
 * condition variable wake an idle worker), suspends, the worker runs the
 * job and posts the result to the loop (call_soon_threadsafe's FIFO and
 * wake-up fd), the loop resumes the task. The bare one: the main thread
 * writes one eventfd and blocks reading another, which the worker,
 * blocked reading the first, writes back. Each line is the best of 5 runs,
 * alternated, so a slow stretch of the machine hits both alike.
 */
#include <coil.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>

#include "bench.h"

#ifndef ROUNDS
#define ROUNDS 100000L
#endif
#define REPS 5

/* ------------------------------------------------------------------ */
/* coil_to_thread                                                       */
/* ------------------------------------------------------------------ */

static int noop_job(void *arg)
{
    return (int)(intptr_t)arg;
}

static int64_t elapsed;

static int to_thread_main(void *arg)
{
    (void)arg;
    /* One job first: the worker thread is started outside the timing. */
    if (coil_to_thread(noop_job, (void *)1, NULL) != 1)
        return -1;
    int64_t t0 = bench_wall_ns();
    for (long i = 0; i < ROUNDS; i++)
        if (coil_to_thread(noop_job, (void *)(intptr_t)(i & 0xff), NULL) !=
            (int)(i & 0xff))
            return -1;
    elapsed = bench_wall_ns() - t0;
    return 0;
}

static double run_to_thread(void)
{
    if (coil_run(to_thread_main, NULL) != 0)
        bench_fail("to_thread: a job failed");
    return (double)elapsed / ROUNDS;
}

/* ------------------------------------------------------------------ */
/* A channel between two loops                                          */
/* ------------------------------------------------------------------ */

struct ping {
    coil_loop_group_t *g;
    coil_channel_t *there, *back;
};

static int ping_main(void *arg)
{
    struct ping *p = arg;
    void *v;
    if (coil_loop_group_index(p->g, coil_running_loop()) == 1) {
        while (coil_channel_get(p->there, &v) == 0)
            if (coil_channel_put(p->back, v) != 0)
                return -1;
        return 0;
    }
    /* One round first: both loops are running. */
    if (coil_channel_put(p->there, (void *)1) != 0 ||
        coil_channel_get(p->back, &v) != 0)
        return -1;
    int64_t t0 = bench_wall_ns();
    for (long i = 0; i < ROUNDS; i++)
        if (coil_channel_put(p->there, (void *)(intptr_t)i) != 0 ||
            coil_channel_get(p->back, &v) != 0 || (intptr_t)v != i)
            return -1;
    elapsed = bench_wall_ns() - t0;
    coil_channel_close(p->there);
    return 0;
}

static double run_channel(void)
{
    struct ping p = {0};
    if (coil_channel_new(1, &p.there) || coil_channel_new(1, &p.back))
        bench_fail("coil_channel_new");
    coil_loop_group_options_t opts = {.loops = 2};
    if (coil_loop_group_start(&opts, ping_main, &p, &p.g) != 0 ||
        coil_loop_group_join(p.g) != 0)
        bench_fail("channel: the loop group failed");
    coil_loop_group_free(p.g);
    coil_channel_unref(p.there);
    coil_channel_unref(p.back);
    return (double)elapsed / ROUNDS;
}

/* ------------------------------------------------------------------ */
/* pthread + eventfd                                                    */
/* ------------------------------------------------------------------ */

struct pair {
    int to_worker, to_main;
};

static void *echo_worker(void *arg)
{
    struct pair *p = arg;
    uint64_t v;
    for (long i = 0; i < ROUNDS + 1; i++) {
        if (read(p->to_worker, &v, sizeof(v)) != sizeof(v))
            return NULL;
        if (write(p->to_main, &v, sizeof(v)) != sizeof(v))
            return NULL;
    }
    return NULL;
}

static double run_eventfd(void)
{
    struct pair p = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)};
    if (p.to_worker < 0 || p.to_main < 0)
        bench_fail("eventfd: %s", strerror(errno));
    pthread_t th;
    if (pthread_create(&th, NULL, echo_worker, &p))
        bench_fail("pthread_create");
    uint64_t v = 1;
    /* One round first, as for coil: the thread is running. */
    if (write(p.to_worker, &v, sizeof(v)) != sizeof(v) ||
        read(p.to_main, &v, sizeof(v)) != sizeof(v))
        bench_fail("eventfd round trip");
    int64_t t0 = bench_wall_ns();
    for (long i = 0; i < ROUNDS; i++) {
        v = 1;
        if (write(p.to_worker, &v, sizeof(v)) != sizeof(v) ||
            read(p.to_main, &v, sizeof(v)) != sizeof(v))
            bench_fail("eventfd round trip");
    }
    int64_t t = bench_wall_ns() - t0;
    pthread_join(th, NULL);
    close(p.to_worker);
    close(p.to_main);
    return (double)t / ROUNDS;
}

int main(void)
{
    bench_guard(300);
    double best_coil = 0, best_raw = 0, best_chan = 0;
    for (int r = 0; r < REPS; r++) {
        double c = run_to_thread();
        double e = run_eventfd();
        double ch = run_channel();
        if (r == 0 || c < best_coil)
            best_coil = c;
        if (r == 0 || e < best_raw)
            best_raw = e;
        if (r == 0 || ch < best_chan)
            best_chan = ch;
    }
    bench_print("to_thread_roundtrip", best_coil, "ns/op");
    bench_print("pthread_eventfd_roundtrip", best_raw, "ns/op");
    bench_print("to_thread_vs_pthread_eventfd", best_coil / best_raw, "x");
    bench_print("channel_roundtrip", best_chan, "ns/op");
    bench_print("channel_vs_pthread_eventfd", best_chan / best_raw, "x");
    return 0;
}
