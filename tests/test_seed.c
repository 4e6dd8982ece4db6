/* SPDX-License-Identifier: MIT */
/*
 * test_seed.c - the testing kit's seeds and traces (coil/testing.h):
 *
 *  - the replay proof: a racy test (two clients of a server, the first
 *    one's line expected first) passes without a seed; over many seeds
 *    coil_test_run_seeds finds one that breaks it and names it; that
 *    seed rerun 100 times fails the same way with the same trace hash
 *    every time, while a passing seed's trace differs;
 *  - the seed's other choices: timers due before or after the I/O of the
 *    same iteration (both orders occur over seeds, each seed keeps its
 *    own), virtual-clock jumps landing up to 1 ms late (exact without a
 *    seed);
 *  - COIL_TEST_SEED reruns a named seed; the arguments are checked.
 *
 * The race runs over Unix-domain sockets: their data and connections
 * reach the peer within the sending call, so the only freedom left in
 * the run is the seed's. (On TCP loopback the kernel may finish a
 * delivery later under load, a choice no seed makes.)
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil/testing.h"
#include "helpers.h"

/* ------------------------------------------------------------------ */
/* The replay proof                                                     */
/* ------------------------------------------------------------------ */

struct race {
    char path[64];
    char order[4]; /* the first byte of each line, in arrival order */
    int arrived;
    int connected;
    coil_event_t *all_in;  /* both handlers are reading */
    coil_event_t *all_got; /* both lines arrived */
};

static int handler(coil_stream_t *s, void *arg)
{
    struct race *r = arg;
    if (++r->connected == 2)
        coil_event_set(r->all_in);
    char line[16];
    size_t len = 0;
    int err = coil_stream_readline(s, line, sizeof(line), &len);
    if (err)
        return err;
    if (r->arrived < 2)
        r->order[r->arrived] = line[0];
    if (++r->arrived == 2)
        coil_event_set(r->all_got);
    return 0;
}

/* The racy body: client A writes its line, then client B; the server is
 * expected to see A's first. Both lines are in the sockets before the
 * server's readers run, so which reader runs first is the order of one
 * batch of ready fds: the kernel's, or under a seed the seed's. */
static int racy(void *arg)
{
    struct race *r = arg;
    coil_loop_t *loop = coil_running_loop();
    memset(r->order, 0, sizeof(r->order));
    r->arrived = r->connected = 0;
    coil_server_t *srv = NULL;
    coil_stream_t *a = NULL, *b = NULL;
    int err = coil_event_new(loop, &r->all_in);
    if (!err && (err = coil_event_new(loop, &r->all_got)) != 0) {
        coil_event_unref(r->all_in);
        return err;
    }
    if (err)
        return err;
    if (!(err = coil_server_open_unix(r->path, handler, r, NULL, &srv)) &&
        !(err = coil_stream_open_unix(r->path, &a)) &&
        !(err = coil_stream_open_unix(r->path, &b)) &&
        !(err = coil_event_wait(r->all_in)) &&
        !(err = coil_stream_write(a, "A\n", 2)) &&
        !(err = coil_stream_write(b, "B\n", 2)))
        err = coil_event_wait(r->all_got);
    coil_stream_unref(a);
    coil_stream_unref(b);
    if (srv) {
        coil_server_close(srv);
        int e = coil_server_wait_closed(srv);
        err = err ? err : e;
        coil_server_unref(srv);
    }
    coil_event_unref(r->all_in);
    coil_event_unref(r->all_got);
    if (!err && strcmp(r->order, "AB") != 0)
        err = -EPROTO; /* the race lost */
    return err;
}

static void race_init(struct race *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->path, sizeof(r->path), "/tmp/coil-seed-%d.sock",
             (int)getpid());
}

static void test_replay_proof(void **state)
{
    (void)state;
    struct race r;
    race_init(&r);
    coil_test_result_t res;

    /* Without a seed the kernel's order holds: A, then B. */
    assert_int_equal(coil_test_run(racy, &r, NULL, &res), 0);
    assert_string_equal(r.order, "AB");

    /* Seeds until one breaks it: found, and named. */
    int err = coil_test_run_seeds(racy, &r, NULL, 1, 64, &res);
    assert_int_equal(err, -EPROTO);
    assert_int_equal(res.outcome, -EPROTO);
    assert_string_equal(r.order, "BA");
    unsigned long bad = res.seed;
    assert_true(bad >= 1 && bad <= 64);
    char want[64];
    snprintf(want, sizeof(want), "COIL_TEST_SEED=%lu", bad);
    assert_non_null(strstr(res.message, want));
    uint64_t hash = res.trace_hash, events = res.trace_events;
    assert_true(events > 10);

    /* The failing seed, 100 times: the same failure, the same trace. */
    coil_test_options_t o = {.seed = bad};
    for (int i = 0; i < 100; i++) {
        coil_test_result_t again;
        assert_int_equal(coil_test_run(racy, &r, &o, &again), -EPROTO);
        assert_string_equal(r.order, "BA");
        assert_int_equal(again.seed, bad);
        assert_true(again.trace_hash == hash);
        assert_true(again.trace_events == events);
    }

    /* A seed that passes ran another schedule: the hash tells them
     * apart (it is no constant). */
    unsigned long good = 0;
    for (unsigned long s = 1; s <= 64 && !good; s++) {
        o.seed = s;
        if (coil_test_run(racy, &r, &o, &res) == 0)
            good = s;
    }
    assert_true(good != 0);
    assert_true(res.trace_hash != hash);
}

/* ------------------------------------------------------------------ */
/* Timers against I/O, and the clock's jumps                            */
/* ------------------------------------------------------------------ */

struct order {
    int sv[2];
    char seen[4];
    int n;
};

static void note_timer(void *arg)
{
    struct order *o = arg;
    o->seen[o->n++] = 'T';
}

static int reader(void *arg)
{
    struct order *o = arg;
    char c;
    ssize_t r = coil_sock_recv(o->sv[0], &c, 1);
    if (r < 0)
        return (int)r;
    o->seen[o->n++] = 'R';
    return 0;
}

/* A reader waits on a socket; then, in one step, a byte is sent to it
 * and a timer of no delay is set. The next iteration finds both: the
 * reader's step and the timer, in an order the contract leaves open. */
static int timer_and_io(void *arg)
{
    struct order *o = arg;
    memset(o->seen, 0, sizeof(o->seen));
    o->n = 0;
    coil_loop_t *loop = coil_running_loop();
    coil_task_t *t;
    int err = coil_task_spawn(loop, reader, o, &t);
    if (err)
        return err;
    for (int i = 0; i < 3 && !err; i++)
        err = coil_yield(); /* the reader is waiting on its socket */
    coil_handle_t *h = NULL;
    if (!err && send(o->sv[1], "x", 1, 0) != 1)
        err = -errno;
    if (!err)
        err = coil_loop_call_later(loop, 0, note_timer, o, &h);
    int e = coil_task_join(t);
    coil_task_unref(t);
    for (int i = 0; i < 3 && !err && o->n < 2; i++)
        err = coil_yield();
    coil_handle_unref(h);
    return err ? err : e;
}

static void test_timers_against_io(void **state)
{
    (void)state;
    struct order o;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
                                o.sv),
                     0);
    coil_test_result_t res;
    /* Without a seed: what the I/O woke runs first. */
    assert_int_equal(coil_test_run(timer_and_io, &o, NULL, &res), 0);
    assert_string_equal(o.seen, "RT");

    int timers_first = 0, io_first = 0;
    for (unsigned long s = 1; s <= 32; s++) {
        coil_test_options_t opts = {.seed = s};
        assert_int_equal(coil_test_run(timer_and_io, &o, &opts, &res), 0);
        char first[4];
        memcpy(first, o.seen, sizeof(first));
        uint64_t hash = res.trace_hash;
        assert_int_equal(coil_test_run(timer_and_io, &o, &opts, &res), 0);
        assert_string_equal(o.seen, first); /* the seed keeps its order */
        assert_true(res.trace_hash == hash);
        if (strcmp(first, "TR") == 0)
            timers_first++;
        else if (strcmp(first, "RT") == 0)
            io_first++;
        else
            fail_msg("seen \"%s\"", first);
    }
    assert_true(timers_first > 0);
    assert_true(io_first > 0);
    close(o.sv[0]);
    close(o.sv[1]);
}

/* The same with a task woken by a timer: the sleeper's step and the
 * reader's come in either order, seed by seed. */
static int sleeper(void *arg)
{
    struct order *o = arg;
    int err = coil_sleep(5 * COIL_MSEC);
    if (!err)
        o->seen[o->n++] = 'S';
    return err;
}

static int sleeper_and_io(void *arg)
{
    struct order *o = arg;
    memset(o->seen, 0, sizeof(o->seen));
    o->n = 0;
    coil_loop_t *loop = coil_running_loop();
    coil_task_t *r = NULL, *z = NULL;
    int err = coil_task_spawn(loop, reader, o, &r);
    if (!err)
        err = coil_task_spawn(loop, sleeper, o, &z);
    for (int i = 0; i < 3 && !err; i++)
        err = coil_yield(); /* both wait: on the socket, on the timer */
    /* The byte and the deadline, both there at the next poll. */
    if (!err && send(o->sv[1], "x", 1, 0) != 1)
        err = -errno;
    coil_test_clock_advance(5 * COIL_MSEC);
    int e1 = r ? coil_task_join(r) : 0, e2 = z ? coil_task_join(z) : 0;
    coil_task_unref(r);
    coil_task_unref(z);
    return err ? err : e1 ? e1 : e2;
}

static void test_timer_tasks_against_io(void **state)
{
    (void)state;
    struct order o;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
                                o.sv),
                     0);
    coil_test_result_t res;
    coil_test_options_t opts = {.virtual_clock = true};
    assert_int_equal(coil_test_run(sleeper_and_io, &o, &opts, &res), 0);
    assert_string_equal(o.seen, "RS"); /* no seed: I/O first */
    int sleeper_first = 0, reader_first = 0;
    for (unsigned long s = 1; s <= 32; s++) {
        opts.seed = s;
        assert_int_equal(coil_test_run(sleeper_and_io, &o, &opts, &res), 0);
        if (strcmp(o.seen, "SR") == 0)
            sleeper_first++;
        else if (strcmp(o.seen, "RS") == 0)
            reader_first++;
        else
            fail_msg("seen \"%s\"", o.seen);
    }
    assert_true(sleeper_first > 0);
    assert_true(reader_first > 0);
    close(o.sv[0]);
    close(o.sv[1]);
}

static int sleeps(void *arg)
{
    int64_t *took = arg;
    int64_t t0 = coil_loop_time(coil_running_loop());
    int err = coil_sleep(10 * COIL_MSEC);
    *took = coil_loop_time(coil_running_loop()) - t0;
    return err;
}

static void test_clock_jumps_late(void **state)
{
    (void)state;
    int64_t took;
    coil_test_options_t o = {.virtual_clock = true};
    assert_int_equal(coil_test_run(sleeps, &took, &o, NULL), 0);
    assert_int_equal(took, 10 * COIL_MSEC); /* exact without a seed */

    int64_t first = -1;
    bool differs = false;
    for (unsigned long s = 1; s <= 8; s++) {
        o.seed = s;
        assert_int_equal(coil_test_run(sleeps, &took, &o, NULL), 0);
        assert_true(took >= 10 * COIL_MSEC);
        assert_true(took < 11 * COIL_MSEC);
        int64_t again;
        assert_int_equal(coil_test_run(sleeps, &again, &o, NULL), 0);
        assert_int_equal(again, took);
        if (first < 0)
            first = took;
        else if (took != first)
            differs = true;
    }
    assert_true(differs);
}

/* ------------------------------------------------------------------ */
/* Rerunning a seed, arguments                                          */
/* ------------------------------------------------------------------ */

static int fails(void *arg)
{
    (void)arg;
    return -EIO;
}

static int ok(void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static void test_env_seed_and_arguments(void **state)
{
    (void)state;
    coil_test_result_t res;
    /* The environment's seed replaces the options'. */
    assert_int_equal(setenv("COIL_TEST_SEED", "4242", 1), 0);
    coil_test_options_t o = {.seed = 5};
    assert_int_equal(coil_test_run(fails, NULL, &o, &res), -EIO);
    assert_int_equal(res.seed, 4242);
    assert_non_null(strstr(res.message, "COIL_TEST_SEED=4242"));
    /* ... and coil_test_run_seeds runs that seed alone. */
    int runs = 0;
    assert_int_equal(coil_test_run_seeds(ok, &runs, NULL, 1, 10, &res), 0);
    assert_int_equal(runs, 1);
    assert_int_equal(unsetenv("COIL_TEST_SEED"), 0);
    runs = 0;
    assert_int_equal(coil_test_run_seeds(ok, &runs, NULL, 1, 10, &res), 0);
    assert_int_equal(runs, 10);
    /* No seed, no seed named. */
    assert_int_equal(coil_test_run(fails, NULL, NULL, &res), -EIO);
    assert_int_equal(res.seed, 0);
    assert_null(strstr(res.message, "COIL_TEST_SEED"));

    assert_int_equal(coil_test_run_seeds(NULL, NULL, NULL, 1, 1, &res),
                     -EINVAL);
    assert_int_equal(coil_test_run_seeds(ok, &runs, NULL, 0, 1, NULL),
                     -EINVAL);
    assert_int_equal(coil_test_run_seeds(ok, &runs, NULL, 1, 0, NULL),
                     -EINVAL);
    assert_int_equal(coil_test_run_seeds(ok, &runs, NULL, ULONG_MAX, 2,
                                         NULL),
                     -EINVAL);

    /* The trace outside a run: reset, and counted per thread. */
    coil_test_trace_reset();
    uint64_t events = 1;
    uint64_t h0 = coil_test_trace_hash(&events);
    assert_int_equal(events, 0);
    assert_true(coil_test_trace_hash(NULL) == h0);
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_proof, test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_timers_against_io,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_timer_tasks_against_io,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_clock_jumps_late,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_env_seed_and_arguments,
                                        test_setup_noloop,
                                        test_teardown_noloop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
