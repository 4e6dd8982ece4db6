/* SPDX-License-Identifier: MIT */
/*
 * stream_pingpong - two tasks bounce a 64-byte message over a Unix
 * socket pair through coil streams (write, then read_exactly, on each
 * side), ROUNDS round trips; and, for the floor, the same bytes moved by
 * bare send/recv on one thread with no loop (four system calls a round
 * trip, nothing ever waits).
 *
 *   stream_pingpong_raw     <wall ns per round trip>  ns/op
 *   stream_pingpong         <wall ns per round trip>  ns/op
 *   stream_pingpong_vs_raw  <the second over the first>  x
 *
 * The ratio of the two, in one run, is what the streams add over the
 * system calls themselves: the waits, the loop and the buffering.
 */
#include <coil.h>
#include <sys/socket.h>

#include "bench.h"

#ifndef ROUNDS
#define ROUNDS 200000
#endif

#define MSG 64

static coil_stream_t *a, *b;

static int echo(void *arg)
{
    (void)arg;
    char buf[MSG];
    for (int i = 0; i < ROUNDS; i++) {
        int err = coil_stream_read_exactly(b, buf, MSG, NULL);
        if (!err)
            err = coil_stream_write(b, buf, MSG);
        if (err)
            return err;
    }
    return 0;
}

static int ping(void *arg)
{
    int64_t *took = arg;
    char buf[MSG];
    memset(buf, 'x', sizeof(buf));
    coil_task_t *t;
    int err = coil_task_spawn(coil_running_loop(), echo, NULL, &t);
    if (err)
        return err;
    int64_t t0 = bench_wall_ns();
    for (int i = 0; i < ROUNDS && !err; i++) {
        err = coil_stream_write(a, buf, MSG);
        if (!err)
            err = coil_stream_read_exactly(a, buf, MSG, NULL);
    }
    *took = bench_wall_ns() - t0;
    int e = coil_task_join(t);
    coil_task_unref(t);
    return err ? err : e;
}

struct run {
    int sv[2];
    int64_t took;
};

static int streams(void *arg)
{
    struct run *r = arg;
    int err = coil_stream_open_fd(r->sv[0], &a);
    if (!err && (err = coil_stream_open_fd(r->sv[1], &b)) != 0)
        coil_stream_unref(a);
    if (err)
        return err;
    err = ping(&r->took);
    coil_stream_unref(a);
    coil_stream_unref(b);
    return err;
}

static int64_t raw(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        bench_fail("socketpair: %s", strerror(errno));
    char buf[MSG];
    memset(buf, 'x', sizeof(buf));
    int64_t t0 = bench_wall_ns();
    for (int i = 0; i < ROUNDS; i++) {
        if (send(sv[0], buf, MSG, 0) != MSG || recv(sv[1], buf, MSG, 0) != MSG ||
            send(sv[1], buf, MSG, 0) != MSG || recv(sv[0], buf, MSG, 0) != MSG)
            bench_fail("raw round trip %d", i);
    }
    int64_t took = bench_wall_ns() - t0;
    close(sv[0]);
    close(sv[1]);
    return took;
}

int main(void)
{
    bench_guard(120);
    int64_t floor_ns = raw();
    struct run r = {0};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, r.sv) < 0)
        bench_fail("socketpair: %s", strerror(errno));
    int err = coil_run(streams, &r);
    if (err)
        bench_fail("streams: %d", err);
    bench_print("stream_pingpong_raw", (double)floor_ns / ROUNDS, "ns/op");
    bench_print("stream_pingpong", (double)r.took / ROUNDS, "ns/op");
    bench_print("stream_pingpong_vs_raw", (double)r.took / (double)floor_ns,
                "x");
    return 0;
}
