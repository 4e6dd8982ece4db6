/* SPDX-License-Identifier: MIT */
/*
 * test_memstream.c - the testing kit's in-memory stream pair
 * (coil_test_stream_pair, coil_test_stream_reset): every run goes
 * through the kit's fixture (coil_test_run), so whatever a pair leaves
 * behind (a chunk, a future, a timer, a pending writer call) fails it.
 *
 *  - bytes arrive whole and in order through small buffers and 1..7-byte
 *    receives, both ways at once;
 *  - the buffer size holds a writer back (write buffers, drain waits)
 *    until the reader makes room;
 *  - the delay is loop time (virtual clock: exact), max_read splits
 *    receives, readline still sees whole lines;
 *  - half-close, close (the peer's end of stream, then -EPIPE), reset
 *    (-ECONNRESET both ways), at_eof, addresses, no fd;
 *  - a read cancelled while waiting loses nothing;
 *  - a loop closed with a task suspended in a read leaks nothing;
 *  - every allocation failing in turn: an error, never a crash or leak;
 *  - argument checks.
 */
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil/testing.h"
#include "helpers.h"

static void run_ok(coil_task_fn body, void *arg, bool virtual_clock)
{
    coil_test_options_t o = {.virtual_clock = virtual_clock};
    coil_test_result_t r;
    int err = coil_test_run(body, arg, &o, &r);
    if (err)
        fail_msg("coil_test_run: %s: %s", coil_err_name(err), r.message);
}

/* ------------------------------------------------------------------ */
/* Integrity                                                            */
/* ------------------------------------------------------------------ */

#define BULK (256 * 1024)

struct bulk {
    coil_stream_t *s;
    unsigned seed;
    size_t got;
    bool same;
};

static unsigned char byte_at(unsigned seed, size_t i)
{
    return (unsigned char)((i * 2654435761u + seed) >> 7);
}

static int bulk_write(void *arg)
{
    struct bulk *b = arg;
    unsigned char buf[997];
    size_t off = 0;
    unsigned rnd = b->seed;
    while (off < BULK) {
        rnd = rnd * 1103515245u + 12345u;
        size_t n = 1 + (rnd >> 16) % sizeof(buf);
        if (n > BULK - off)
            n = BULK - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = byte_at(b->seed, off + i);
        int err = coil_stream_write(b->s, buf, n);
        if (!err)
            err = coil_stream_drain(b->s);
        if (err)
            return err;
        off += n;
    }
    return coil_stream_write_eof(b->s);
}

static int bulk_read(void *arg)
{
    struct bulk *b = arg;
    unsigned char buf[4096];
    b->same = true;
    for (;;) {
        ssize_t n = coil_stream_read(b->s, buf, sizeof(buf));
        if (n < 0)
            return (int)n;
        if (n == 0)
            return 0;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != byte_at(b->seed, b->got + (size_t)i))
                b->same = false;
        b->got += (size_t)n;
    }
}

static int both_ways(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    coil_test_stream_options_t o = {.buffer_size = 1000, .max_read = 7};
    coil_stream_t *a, *b;
    int err = coil_test_stream_pair(&o, &a, &b);
    if (err)
        return err;
    coil_stream_set_write_limits(a, 500, 100);
    coil_stream_set_write_limits(b, 0, 0);
    struct bulk w1 = {.s = a, .seed = 1}, r1 = {.s = b, .seed = 1};
    struct bulk w2 = {.s = b, .seed = 2}, r2 = {.s = a, .seed = 2};
    coil_task_t *t[4] = {0};
    coil_task_spawn(loop, bulk_write, &w1, &t[0]);
    coil_task_spawn(loop, bulk_read, &r1, &t[1]);
    coil_task_spawn(loop, bulk_write, &w2, &t[2]);
    coil_task_spawn(loop, bulk_read, &r2, &t[3]);
    for (int i = 0; i < 4; i++) {
        int e = t[i] ? coil_task_join(t[i]) : -ENOMEM;
        err = err ? err : e;
        coil_task_unref(t[i]);
    }
    coil_stream_unref(a);
    coil_stream_unref(b);
    if (err)
        return err;
    if (r1.got != BULK || r2.got != BULK || !r1.same || !r2.same)
        return -EPROTO;
    return 0;
}

static void test_both_ways(void **state)
{
    (void)state;
    run_ok(both_ways, NULL, false);
}

/* ------------------------------------------------------------------ */
/* Buffer size, delay, max_read                                         */
/* ------------------------------------------------------------------ */

struct held {
    coil_stream_t *a, *b;
    size_t buffered;
    int drain_timed_out;
    int drain_after;
};

static int drains(void *arg)
{
    struct held *h = arg;
    coil_timeout_t *t;
    int err = coil_timeout_begin(COIL_SEC, &t);
    if (err)
        return err;
    h->drain_timed_out = coil_timeout_end(t, coil_stream_drain(h->a));
    return 0;
}

static int held_back(void *arg)
{
    struct held *h = arg;
    coil_test_stream_options_t o = {.buffer_size = 100};
    int err = coil_test_stream_pair(&o, &h->a, &h->b);
    if (err)
        return err;
    char buf[1000];
    memset(buf, 'x', sizeof(buf));
    coil_stream_set_write_limits(h->a, 0, 0);
    err = coil_stream_write(h->a, buf, sizeof(buf));
    h->buffered = coil_stream_write_buffered(h->a);
    /* Nobody reads: drain waits (a virtual second, then its timeout). */
    if (!err)
        err = drains(h);
    /* Read it all: the writer moves on; drain returns. */
    size_t got = 0;
    while (!err && got < sizeof(buf)) {
        ssize_t n = coil_stream_read(h->b, buf, sizeof(buf));
        if (n <= 0)
            err = n ? (int)n : -EPROTO;
        else
            got += (size_t)n;
    }
    if (!err)
        h->drain_after = coil_stream_drain(h->a);
    coil_stream_unref(h->a);
    coil_stream_unref(h->b);
    return err;
}

static void test_buffer_holds_writer(void **state)
{
    (void)state;
    struct held h = {0};
    run_ok(held_back, &h, true);
    assert_int_equal(h.buffered, 900);
    assert_int_equal(h.drain_timed_out, -ETIMEDOUT);
    assert_int_equal(h.drain_after, 0);
}

struct timed {
    int64_t took;
    int64_t eof_took;
    bool at_eof_early;
    size_t first_read;
    char line[32];
    size_t line_len;
};

static int delayed(void *arg)
{
    struct timed *t = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_test_stream_options_t o = {.delay_ns = 50 * COIL_MSEC,
                                    .max_read = 1};
    coil_stream_t *a, *b;
    int err = coil_test_stream_pair(&o, &a, &b);
    if (err)
        return err;
    int64_t t0 = coil_loop_time(loop);
    err = coil_stream_write(a, "hello\nworld\n", 12);
    char c[8];
    ssize_t n = err ? err : coil_stream_read(b, c, sizeof(c));
    t->took = coil_loop_time(loop) - t0;
    if (n < 0)
        err = (int)n;
    t->first_read = n > 0 ? (size_t)n : 0;
    if (!err)
        err = coil_stream_readline(b, t->line, sizeof(t->line),
                                   &t->line_len);
    /* The end takes the same delay as the bytes. */
    char rest[8];
    size_t rest_len = 0;
    if (!err && !(err = coil_stream_readline(b, rest, sizeof(rest),
                                             &rest_len)) &&
        rest_len != 6)
        err = -EPROTO;
    int64_t t1 = coil_loop_time(loop);
    if (!err && !(err = coil_stream_write_eof(a))) {
        t->at_eof_early = coil_stream_at_eof(b);
        if ((n = coil_stream_read(b, c, sizeof(c))) != 0)
            err = n < 0 ? (int)n : -EPROTO;
        t->eof_took = coil_loop_time(loop) - t1;
    }
    coil_stream_unref(a);
    coil_stream_unref(b);
    return err;
}

static void test_delay_and_max_read(void **state)
{
    (void)state;
    struct timed t = {0};
    run_ok(delayed, &t, true);
    assert_int_equal(t.took, 50 * COIL_MSEC);
    assert_int_equal(t.first_read, 1);
    assert_int_equal(t.line_len, 5);
    assert_memory_equal(t.line, "ello\n", 5);
    assert_false(t.at_eof_early);
    assert_int_equal(t.eof_took, 50 * COIL_MSEC);
}

/* ------------------------------------------------------------------ */
/* Ends: half-close, close, reset                                       */
/* ------------------------------------------------------------------ */

struct ends {
    int read_after_eof;
    bool at_eof;
    char reply[8];
    int write_after_close;
    ssize_t read_after_reset;
    int write_after_reset;
    int fd;
    int peer_family;
    int reset_other;
};

static int half_close(void *arg)
{
    struct ends *e = arg;
    coil_stream_t *a, *b;
    int err = coil_test_stream_pair(NULL, &a, &b);
    if (err)
        return err;
    e->fd = coil_stream_fd(a);
    struct sockaddr_storage ss;
    if (coil_stream_peer_address(a, &ss) > 0)
        e->peer_family = ss.ss_family;
    char buf[8];
    size_t len = 0;
    /* a says "ping" and ends its side; b reads it, then the end, and
     * can still answer. */
    if (!(err = coil_stream_write(a, "ping", 4)) &&
        !(err = coil_stream_write_eof(a)) &&
        !(err = coil_stream_read_all(b, buf, sizeof(buf), &len))) {
        e->read_after_eof = (int)coil_stream_read(b, buf, 1);
        e->at_eof = coil_stream_at_eof(b);
        if (!(err = coil_stream_write(b, "pong", 4)))
            err = coil_stream_read_exactly(a, e->reply, 4, NULL);
    }
    if (!err && (len != 4 || memcmp(buf, "ping", 4) != 0))
        err = -EPROTO;
    /* b closes: a's next write fails. */
    coil_stream_unref(b);
    e->write_after_close = coil_stream_write(a, "x", 1);
    coil_stream_unref(a);
    return err;
}

static int resets(void *arg)
{
    struct ends *e = arg;
    coil_stream_t *a, *b;
    int err = coil_test_stream_pair(NULL, &a, &b);
    if (err)
        return err;
    char c;
    if (!(err = coil_stream_write(a, "lost", 4)) &&
        !(err = coil_test_stream_reset(b))) {
        e->read_after_reset = coil_stream_read(a, &c, 1);
        e->write_after_reset = coil_stream_write(a, "x", 1);
        e->reset_other = coil_test_stream_reset(b); /* closed now */
    }
    coil_stream_unref(a);
    coil_stream_unref(b);
    return err;
}

static void test_ends(void **state)
{
    (void)state;
    struct ends e = {0};
    run_ok(half_close, &e, false);
    assert_int_equal(e.read_after_eof, 0);
    assert_true(e.at_eof);
    assert_memory_equal(e.reply, "pong", 4);
    assert_int_equal(e.write_after_close, -EPIPE);
    assert_int_equal(e.fd, -1);
    assert_int_equal(e.peer_family, AF_UNIX);

    run_ok(resets, &e, false);
    assert_int_equal(e.read_after_reset, -ECONNRESET);
    assert_int_equal(e.write_after_reset, -ECONNRESET);
    assert_int_equal(e.reset_other, -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Cancellation, the loop's close                                       */
/* ------------------------------------------------------------------ */

struct cancelled {
    coil_stream_t *b;
    ssize_t first;
    char got[8];
};

static int read_one(void *arg)
{
    struct cancelled *c = arg;
    char x;
    c->first = coil_stream_read(c->b, &x, 1);
    return c->first < 0 ? (int)c->first : 0;
}

static int cancel_read(void *arg)
{
    struct cancelled *c = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_stream_t *a;
    int err = coil_test_stream_pair(NULL, &a, &c->b);
    if (err)
        return err;
    coil_task_t *t;
    if (!(err = coil_task_spawn(loop, read_one, c, &t))) {
        (void)coil_yield(); /* it waits in its read */
        coil_task_cancel(t);
        (void)coil_task_join(t);
        coil_task_unref(t);
        /* Nothing was taken: all of "abc" is read. */
        if (!(err = coil_stream_write(a, "abc", 3)))
            err = coil_stream_read_exactly(c->b, c->got, 3, NULL);
    }
    coil_stream_unref(a);
    coil_stream_unref(c->b);
    return err;
}

static void test_cancelled_read(void **state)
{
    (void)state;
    struct cancelled c = {0};
    run_ok(cancel_read, &c, false);
    assert_int_equal(c.first, -ECANCELED);
    assert_memory_equal(c.got, "abc", 3);
}

struct abandoned {
    coil_stream_t *a, *b;
    bool reading;
};

static int read_forever(void *arg)
{
    struct abandoned *ab = arg;
    char x;
    ab->reading = true;
    (void)coil_stream_read(ab->b, &x, 1);
    return 0;
}

/* Make the pair and a reader that waits in its read, then return. */
static int start_reader(void *arg)
{
    struct abandoned *ab = arg;
    int err = coil_test_stream_pair(NULL, &ab->a, &ab->b);
    if (err)
        return err;
    coil_task_t *t;
    if ((err = coil_task_spawn(coil_running_loop(), read_forever, ab, &t)))
        return err;
    coil_task_unref(t);
    for (int i = 0; i < 3 && !err; i++)
        err = coil_yield();
    return err;
}

static void test_loop_closed_while_reading(void **state)
{
    (void)state;
    /* The loop closes under a reader: abandoned, it never returns, and
     * the pair must still be freed (the fixture is not used: its own
     * leftovers handling would cancel the reader first). */
    test_allow_reports("left");
    test_allow_reports("pending");
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct abandoned ab = {0};
    coil_task_t *starter;
    assert_int_equal(coil_task_spawn(loop, start_reader, &ab, &starter), 0);
    assert_int_equal(coil_loop_run_until_complete(loop,
                                                  coil_task_future(starter)),
                     0);
    assert_int_equal(coil_future_result(coil_task_future(starter), NULL),
                     0);
    coil_task_unref(starter);
    assert_true(ab.reading);
    coil_loop_close(loop);
    coil_stream_unref(ab.a);
    coil_stream_unref(ab.b);
    coil_loop_unref(loop);
}

/* ------------------------------------------------------------------ */
/* Out of memory, arguments                                             */
/* ------------------------------------------------------------------ */

struct oom {
    long nth;
    int err;
};

static int exchange_under_oom(void *arg)
{
    struct oom *o = arg;
    coil_test_alloc_fail_after(o->nth);
    coil_test_stream_options_t opts = {.buffer_size = 8};
    coil_stream_t *a, *b;
    int err = coil_test_stream_pair(&opts, &a, &b);
    if (err) {
        o->err = err;
        return 0;
    }
    char buf[32];
    size_t len = 0;
    if (!(err = coil_stream_write(a, "0123456789abcdef", 16)) &&
        !(err = coil_stream_write_eof(a)) &&
        !(err = coil_stream_read_all(b, buf, sizeof(buf), &len)) &&
        (len != 16 || memcmp(buf, "0123456789abcdef", 16) != 0))
        err = -EPROTO;
    coil_stream_unref(a);
    coil_stream_unref(b);
    coil_test_alloc_fail_after(0);
    o->err = err;
    return 0;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    bool failed_once = false;
    long nth;
    for (nth = 1; nth < 200; nth++) {
        struct oom o = {.nth = nth};
        coil_test_result_t r;
        int err = coil_test_run(exchange_under_oom, &o, NULL, &r);
        if (err)
            fail_msg("allocation %ld failing: %s: %s", nth,
                     coil_err_name(err), r.message);
        if (!coil_test_alloc_failed() && o.err == 0)
            break; /* past the last allocation: it all went through */
        /* Only an allocation failure may have broken it. */
        if (o.err != 0 && o.err != -ENOMEM && o.err != -EPIPE)
            fail_msg("allocation %ld failing gave %s", nth,
                     coil_err_name(o.err));
        failed_once |= o.err != 0;
    }
    assert_true(failed_once);
    assert_true(nth < 200);
}

/* The same exchange with one allocation in twenty failing at random:
 * every run ends cleanly (the fixture finds nothing left), whatever
 * failed. */
struct random_oom {
    unsigned long seed;
    int err;
};

static int exchange_random_oom(void *arg)
{
    struct random_oom *o = arg;
    coil_test_alloc_fail_random(50000, o->seed);
    coil_test_stream_options_t opts = {.buffer_size = 8, .max_read = 3};
    coil_stream_t *a, *b;
    int err = coil_test_stream_pair(&opts, &a, &b);
    if (!err) {
        char buf[64];
        size_t len = 0;
        for (int i = 0; i < 4 && !err; i++)
            err = coil_stream_write(a, "0123456789abcdef", 16);
        if (!err && !(err = coil_stream_write_eof(a)) &&
            !(err = coil_stream_read_all(b, buf, sizeof(buf), &len)) &&
            len != 64)
            err = -EPROTO;
        coil_stream_unref(a);
        coil_stream_unref(b);
    }
    coil_test_alloc_fail_random(0, 0);
    o->err = err;
    return 0;
}

static void test_random_out_of_memory(void **state)
{
    (void)state;
    int failed = 0, passed = 0;
    for (unsigned long seed = 1; seed <= 50; seed++) {
        struct random_oom o = {.seed = seed};
        coil_test_result_t r;
        int err = coil_test_run(exchange_random_oom, &o, NULL, &r);
        if (err)
            fail_msg("seed %lu: %s: %s", seed, coil_err_name(err),
                     r.message);
        if (o.err != 0 && o.err != -ENOMEM && o.err != -EPIPE)
            fail_msg("seed %lu gave %s", seed, coil_err_name(o.err));
        if (o.err)
            failed++;
        else
            passed++;
    }
    assert_true(failed > 0);
    assert_true(passed > 0);
}

/* Faults aimed at the operations reach the pair. */
struct faults {
    ssize_t read;
    int write;
    char after[4];
};

static int faulted(void *arg)
{
    struct faults *f = arg;
    coil_stream_t *a, *b;
    int err = coil_test_stream_pair(NULL, &a, &b);
    if (err)
        return err;
    char c[4];
    coil_test_fail(COIL_TEST_RECV, 1, 1, -ECONNRESET);
    if (!(err = coil_stream_write(a, "abc", 3)))
        f->read = coil_stream_read(b, c, sizeof(c));
    coil_test_fail(COIL_TEST_SEND, 1, 1, -EPIPE);
    f->write = coil_stream_write(b, "x", 1);
    coil_stream_unref(a);
    coil_stream_unref(b); /* both errors stick: a fresh pair */
    if (err || (err = coil_test_stream_pair(NULL, &a, &b)))
        return err;
    /* EINTR and EAGAIN are retried: nothing lost. */
    coil_test_fail(COIL_TEST_SEND, 1, 2, -EAGAIN);
    coil_test_fail(COIL_TEST_RECV, 1, 2, -EINTR);
    if (!(err = coil_stream_write(a, "def", 3)))
        err = coil_stream_read_exactly(b, f->after, 3, NULL);
    coil_stream_unref(a);
    coil_stream_unref(b);
    return err;
}

/* A pair made on a named loop, outside any task (an explorer's scenario
 * runs so). */
struct named {
    coil_stream_t *a, *b;
    char got[3];
};

static int named_reader(void *arg)
{
    struct named *n = arg;
    int err = coil_stream_read_exactly(n->b, n->got, 3, NULL);
    coil_stream_unref(n->a);
    coil_stream_unref(n->b);
    return err;
}

static void test_faults_and_named_loop(void **state)
{
    (void)state;
    struct faults f = {0};
    run_ok(faulted, &f, false);
    assert_int_equal(f.read, -ECONNRESET);
    assert_int_equal(f.write, -EPIPE);
    assert_memory_equal(f.after, "def", 3);

    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct named n = {0};
    coil_test_stream_options_t o = {.loop = loop};
    assert_int_equal(coil_test_stream_pair(&o, &n.a, &n.b), 0);
    assert_int_equal(coil_stream_write(n.a, "xyz", 3), 0);
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, named_reader, &n, &t), 0);
    assert_int_equal(coil_loop_run_until_complete(loop,
                                                  coil_task_future(t)),
                     0);
    assert_int_equal(coil_future_result(coil_task_future(t), NULL), 0);
    assert_memory_equal(n.got, "xyz", 3);
    coil_task_unref(t);
    coil_loop_close(loop);
    /* A closed loop is refused. */
    assert_int_equal(coil_test_stream_pair(&o, &n.a, &n.b), -EINVAL);
    coil_loop_unref(loop);
}

static int arguments(void *arg)
{
    (void)arg;
    coil_stream_t *a = (void *)1, *b = (void *)1;
    coil_test_stream_options_t neg = {.delay_ns = -1};
    if (coil_test_stream_pair(NULL, NULL, &b) != -EINVAL || b)
        return -EPROTO;
    if (coil_test_stream_pair(NULL, &a, NULL) != -EINVAL || a)
        return -EPROTO;
    if (coil_test_stream_pair(NULL, &a, &a) != -EINVAL)
        return -EPROTO;
    if (coil_test_stream_pair(&neg, &a, &b) != -EINVAL)
        return -EPROTO;
    if (coil_test_stream_reset(NULL) != -EINVAL)
        return -EPROTO;
    return 0;
}

static int reset_socket_stream(void *arg)
{
    (void)arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -errno;
    close(sv[1]);
    coil_stream_t *s;
    int err = coil_stream_open_fd(sv[0], &s);
    if (err) {
        close(sv[0]);
        return err;
    }
    /* A stream over a socket is no pair's. */
    err = coil_test_stream_reset(s) == -EINVAL ? 0 : -EPROTO;
    coil_stream_unref(s);
    return err;
}

static void test_arguments(void **state)
{
    (void)state;
    run_ok(arguments, NULL, false);
    run_ok(reset_socket_stream, NULL, false);
    coil_stream_t *a, *b;
    /* No loop running here. */
    assert_int_equal(coil_test_stream_pair(NULL, &a, &b), -EPERM);
    assert_null(a);
    assert_null(b);
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_both_ways, test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_buffer_holds_writer,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_delay_and_max_read,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_ends, test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_cancelled_read,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_loop_closed_while_reading,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_out_of_memory,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_random_out_of_memory,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_faults_and_named_loop,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_arguments, test_setup_noloop,
                                        test_teardown_noloop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
