/* SPDX-License-Identifier: MIT */
/*
 * test_io.c - fd readiness watchers (coil/io.h) on socketpairs and pipes:
 * readers and writers, level-triggered delivery, removal and replacement
 * at any point of an iteration, hang-ups and errors, fds closed behind the
 * loop's back and their numbers reused, many fds at once, and the poller
 * failing (interrupted waits, fatal errors, epoll_ctl and allocation
 * failures).
 *
 * Callbacks only record what they see; every assertion runs on the main
 * stack after the loop has returned. Every run is bounded by a safety
 * timer, and a test fails if that timer is what stopped the loop.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

#define SAFETY_NS (2 * COIL_SEC)

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/*
 * A writer on a socket that is always writable: it runs once per poll of
 * the loop, so it counts polls, and it stops the loop at its limit.
 */
struct ticker {
    coil_loop_t *loop;
    int sv[2];
    int count;
    int limit;
};

static void ticker_cb(void *arg)
{
    struct ticker *t = arg;
    if (++t->count == t->limit)
        coil_loop_stop(t->loop);
}

static void ticker_open(struct ticker *t, coil_loop_t *loop)
{
    t->loop = loop;
    t->count = 0;
    t->limit = 0;
    test_socketpair(t->sv);
    assert_int_equal(coil_loop_add_writer(loop, t->sv[0], ticker_cb, t), 0);
}

/* Run the loop for n more polls. */
static void ticker_run(struct ticker *t, int n)
{
    t->limit = t->count + n;
    assert_false(test_run_bounded(t->loop, SAFETY_NS));
    assert_int_equal(t->count, t->limit);
}

static void ticker_close(struct ticker *t)
{
    assert_int_equal(coil_loop_remove_writer(t->loop, t->sv[0]), 1);
    test_close_pair(t->sv);
}

/* What a watcher saw. */
struct rec {
    coil_loop_t *loop;
    int fd;
    bool writer;      /* it watches writability */
    int stop_at;      /* stop the loop at this call (0: never) */
    bool remove_self; /* remove itself from its own callback */
    bool do_read;     /* read once (then drain) */
    bool do_write;    /* write one byte */
    int calls;
    int remove_ret; /* what removing itself returned */
    ssize_t io_ret; /* the first read's or the write's result */
    int io_errno;
};

static void rec_cb(void *arg)
{
    struct rec *r = arg;
    r->calls++;
    if (r->do_read) {
        char buf[512];
        ssize_t n = read(r->fd, buf, sizeof(buf));
        r->io_ret = n;
        r->io_errno = n < 0 ? errno : 0;
        while (n > 0)
            n = read(r->fd, buf, sizeof(buf));
    }
    if (r->do_write) {
        ssize_t n = write(r->fd, "y", 1);
        r->io_ret = n;
        r->io_errno = n < 0 ? errno : 0;
    }
    if (r->remove_self)
        r->remove_ret = r->writer ? coil_loop_remove_writer(r->loop, r->fd)
                                  : coil_loop_remove_reader(r->loop, r->fd);
    if (r->calls == r->stop_at)
        coil_loop_stop(r->loop);
}

/* ------------------------------------------------------------------ */
/* Basics                                                               */
/* ------------------------------------------------------------------ */

static void test_reader_fires_on_data(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2];
    test_socketpair(sv);
    struct rec r = {.loop = loop, .fd = sv[0], .do_read = true, .stop_at = 1};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);

    ticker_run(&t, 3); /* nothing to read yet */
    assert_int_equal(r.calls, 0);

    test_put_byte(sv[1]);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.io_ret, 1);

    ticker_run(&t, 3); /* drained: quiet again */
    assert_int_equal(r.calls, 1);

    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    ticker_close(&t);
    test_close_pair(sv);
}

static void test_writer_fires_when_writable(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct rec w = {.loop = loop,
                    .fd = sv[0],
                    .writer = true,
                    .stop_at = 1,
                    .remove_self = true};
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w), 0);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.remove_ret, 1);

    /* A full socket is not writable until its peer reads. */
    struct ticker t;
    ticker_open(&t, loop);
    test_fill(sv[0]);
    struct rec w2 = {
        .loop = loop, .fd = sv[0], .writer = true, .remove_self = true};
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w2), 0);
    ticker_run(&t, 3);
    assert_int_equal(w2.calls, 0);
    test_drain(sv[1]);
    ticker_run(&t, 3);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.remove_ret, 1);

    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0);
    ticker_close(&t);
    test_close_pair(sv);
}

static void test_reader_and_writer_on_one_fd(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]); /* readable, and writable anyway; never drained */
    struct rec r = {.loop = loop, .fd = sv[0]};
    struct rec w = {.loop = loop, .fd = sv[0], .writer = true};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w), 0);

    ticker_run(&t, 2);
    assert_int_equal(r.calls, 2);
    assert_int_equal(w.calls, 2);

    /* Without the writer, the reader goes on alone. */
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 1);
    ticker_run(&t, 2);
    assert_int_equal(r.calls, 4);
    assert_int_equal(w.calls, 2);

    /* The writer back and the reader gone: the writer goes on alone. */
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w), 0);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    ticker_run(&t, 2);
    assert_int_equal(r.calls, 4);
    assert_int_equal(w.calls, 4);

    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 1);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0);
    ticker_run(&t, 2);
    assert_int_equal(r.calls, 4);
    assert_int_equal(w.calls, 4);

    ticker_close(&t);
    test_close_pair(sv);
}

static void test_level_triggered(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);

    /* Not drained: it fires again in the next poll, and the next. */
    struct rec r = {.loop = loop, .fd = sv[0], .stop_at = 3};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(r.calls, 3);

    /* Once per poll, in step with an always-writable writer. */
    struct ticker t;
    ticker_open(&t, loop);
    ticker_run(&t, 5);
    assert_int_equal(r.calls, 3 + 5);

    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    ticker_close(&t);
    test_close_pair(sv);
}

static void test_remove_self_fires_once(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2], sv2[2];
    test_socketpair(sv);
    test_socketpair(sv2);
    test_put_byte(sv[1]); /* stays readable: nothing drains it */
    struct rec r = {.loop = loop, .fd = sv[0], .remove_self = true};
    struct rec w = {
        .loop = loop, .fd = sv2[0], .writer = true, .remove_self = true};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
    assert_int_equal(coil_loop_add_writer(loop, sv2[0], rec_cb, &w), 0);

    ticker_run(&t, 5);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.remove_ret, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.remove_ret, 1);

    char c;
    assert_int_equal(read(sv[0], &c, 1), 1); /* the data was still there */
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv2[0]), 0);
    ticker_close(&t);
    test_close_pair(sv);
    test_close_pair(sv2);
}

/*
 * Two readers ready in the same poll; whichever runs first removes the
 * other's reader, whose event is already queued: it must not run.
 */
struct cross {
    coil_loop_t *loop;
    int fd, other_fd;
    int calls;
    int remove_other_ret;
    int remove_own_ret;
};

static void cross_cb(void *arg)
{
    struct cross *c = arg;
    c->calls++;
    c->remove_other_ret = coil_loop_remove_reader(c->loop, c->other_fd);
    c->remove_own_ret = coil_loop_remove_reader(c->loop, c->fd);
}

static void test_remove_queued_watcher(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int a[2], b[2];
    test_socketpair(a);
    test_socketpair(b);
    test_put_byte(a[1]);
    test_put_byte(b[1]);
    struct cross ca = {loop, a[0], b[0], 0, -1000, -1000};
    struct cross cb = {loop, b[0], a[0], 0, -1000, -1000};
    assert_int_equal(coil_loop_add_reader(loop, a[0], cross_cb, &ca), 0);
    assert_int_equal(coil_loop_add_reader(loop, b[0], cross_cb, &cb), 0);

    ticker_run(&t, 3);
    assert_int_equal(ca.calls + cb.calls, 1);
    struct cross *ran = ca.calls ? &ca : &cb;
    assert_int_equal(ran->remove_other_ret, 1);
    assert_int_equal(ran->remove_own_ret, 1);

    assert_int_equal(coil_loop_remove_reader(loop, a[0]), 0);
    assert_int_equal(coil_loop_remove_reader(loop, b[0]), 0);
    ticker_close(&t);
    test_close_pair(a);
    test_close_pair(b);
}

/*
 * As above, but the first to run replaces the other's reader: the old
 * callback's queued event is dropped, and the new reader only sees the
 * polls that come after it was added.
 */
struct swapper {
    coil_loop_t *loop;
    int fd, other_fd;
    int calls;
    struct rec *other_next; /* the reader to install on other_fd */
    int add_ret;
};

static void swapper_cb(void *arg)
{
    struct swapper *s = arg;
    s->calls++;
    s->add_ret =
        coil_loop_add_reader(s->loop, s->other_fd, rec_cb, s->other_next);
    coil_loop_remove_reader(s->loop, s->fd);
}

static void test_replace_queued_watcher(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int a[2], b[2];
    test_socketpair(a);
    test_socketpair(b);
    test_put_byte(a[1]);
    test_put_byte(b[1]);
    struct rec next_a = {.loop = loop, .fd = a[0]};
    struct rec next_b = {.loop = loop, .fd = b[0]};
    struct swapper sa = {loop, a[0], b[0], 0, &next_b, -1000};
    struct swapper sb = {loop, b[0], a[0], 0, &next_a, -1000};
    assert_int_equal(coil_loop_add_reader(loop, a[0], swapper_cb, &sa), 0);
    assert_int_equal(coil_loop_add_reader(loop, b[0], swapper_cb, &sb), 0);

    ticker_run(&t, 3);
    assert_int_equal(sa.calls + sb.calls, 1);
    struct swapper *ran = sa.calls ? &sa : &sb;
    assert_int_equal(ran->add_ret, 0);
    /* Polls 2 and 3 only: not the event polled before it was added. */
    assert_int_equal(ran->other_next->calls, 2);
    assert_int_equal(next_a.calls + next_b.calls, 2);

    assert_int_equal(coil_loop_remove_reader(loop, a[0]) +
                         coil_loop_remove_reader(loop, b[0]),
                     1);
    ticker_close(&t);
    test_close_pair(a);
    test_close_pair(b);
}

/* A reader that hands its fd to another reader from its own callback. */
struct replacer {
    coil_loop_t *loop;
    int fd;
    int calls;
    struct rec *next;
    int add_ret;
};

static void replacer_cb(void *arg)
{
    struct replacer *r = arg;
    r->calls++;
    r->add_ret = coil_loop_add_reader(r->loop, r->fd, rec_cb, r->next);
}

static void test_replace_reader(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);

    struct rec old = {.loop = loop, .fd = sv[0]};
    struct rec new = {.loop = loop, .fd = sv[0]};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &old), 0);
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &new), 0);
    ticker_run(&t, 3);
    assert_int_equal(old.calls, 0);
    assert_int_equal(new.calls, 3);

    /* Replaced from its own callback: the old one never runs again. */
    struct rec next = {.loop = loop, .fd = sv[0]};
    struct replacer rp = {loop, sv[0], 0, &next, -1000};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], replacer_cb, &rp), 0);
    ticker_run(&t, 3);
    assert_int_equal(rp.calls, 1);
    assert_int_equal(rp.add_ret, 0);
    assert_int_equal(next.calls, 2);
    assert_int_equal(new.calls, 3);

    /* One reader per fd: a single removal removes it. */
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    ticker_close(&t);
    test_close_pair(sv);
}

static void test_remove_return_values(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct rec r = {0};

    /* Never watched, including numbers far beyond any table. */
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0);
    assert_int_equal(coil_loop_remove_reader(loop, 100000), 0);
    assert_int_equal(coil_loop_remove_writer(loop, INT_MAX), 0);

    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0); /* no writer */
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);

    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &r), 0);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0); /* no reader */
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 1);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0);

    assert_int_equal(r.calls, 0);
    test_close_pair(sv);
}

static void test_bad_arguments(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct rec r = {.loop = loop, .fd = sv[0]};

    assert_int_equal(coil_loop_add_reader(NULL, sv[0], rec_cb, &r), -EINVAL);
    assert_int_equal(coil_loop_add_writer(NULL, sv[0], rec_cb, &r), -EINVAL);
    assert_int_equal(coil_loop_add_reader(loop, sv[0], NULL, &r), -EINVAL);
    assert_int_equal(coil_loop_add_writer(loop, sv[0], NULL, &r), -EINVAL);
    assert_int_equal(coil_loop_add_reader(loop, -1, rec_cb, &r), -EBADF);
    assert_int_equal(coil_loop_add_writer(loop, INT_MIN, rec_cb, &r), -EBADF);

    /* A number that is not open. */
    int closed = sv[1];
    test_close_fd(&sv[1]);
    assert_int_equal(coil_loop_add_reader(loop, closed, rec_cb, &r), -EBADF);
    assert_int_equal(coil_loop_add_writer(loop, closed, rec_cb, &r), -EBADF);
    assert_int_equal(coil_loop_remove_reader(loop, closed), 0);
    assert_int_equal(coil_loop_remove_writer(loop, closed), 0);

    assert_int_equal(coil_loop_remove_reader(NULL, sv[0]), -EINVAL);
    assert_int_equal(coil_loop_remove_writer(NULL, sv[0]), -EINVAL);
    assert_int_equal(coil_loop_remove_reader(loop, -1), -EINVAL);
    assert_int_equal(coil_loop_remove_writer(loop, -1), -EINVAL);

    /* None of the failed calls left a watcher behind. */
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0);

    /* A closed loop takes no watcher. */
    assert_int_equal(coil_loop_close(loop), 0);
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), -EBADF);
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &r), -EBADF);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0);
    assert_int_equal(r.calls, 0);
    test_close_pair(sv);
}

/* An fd number no process can have open is "not open": -EBADF. */
static void test_add_huge_fd_number(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = {0};
    assert_int_equal(coil_loop_add_reader(loop, INT_MAX, rec_cb, &r), -EBADF);
    assert_int_equal(coil_loop_add_writer(loop, INT_MAX, rec_cb, &r), -EBADF);
    assert_int_equal(coil_loop_remove_reader(loop, INT_MAX), 0);
}

/* epoll cannot watch a regular file (-EPERM); poll reports it ready. */
static void test_regular_file(void **state)
{
    coil_loop_t *loop = test_loop(state);
    FILE *f = tmpfile();
    assert_non_null(f);
    int fd = fileno(f);
    struct rec r = {.loop = loop, .fd = fd, .stop_at = 1, .remove_self = true};
    if (test_on_backend("epoll")) {
        assert_int_equal(coil_loop_add_reader(loop, fd, rec_cb, &r), -EPERM);
        assert_int_equal(coil_loop_add_writer(loop, fd, rec_cb, &r), -EPERM);
        assert_int_equal(coil_loop_remove_reader(loop, fd), 0);
        assert_int_equal(coil_loop_remove_writer(loop, fd), 0);
    } else {
        assert_int_equal(coil_loop_add_reader(loop, fd, rec_cb, &r), 0);
        assert_false(test_run_bounded(loop, SAFETY_NS));
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.remove_ret, 1);
    }
    fclose(f);
}

/* ------------------------------------------------------------------ */
/* Hang-ups and errors                                                  */
/* ------------------------------------------------------------------ */

static void test_peer_close_wakes_reader(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2];
    test_socketpair(sv);
    struct rec r = {.loop = loop,
                    .fd = sv[0],
                    .do_read = true,
                    .remove_self = true,
                    .stop_at = 1,
                    .io_ret = -1000};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
    ticker_run(&t, 2);
    assert_int_equal(r.calls, 0);

    test_close_fd(&sv[1]);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.io_ret, 0); /* end of file */
    assert_int_equal(r.remove_ret, 1);

    ticker_close(&t);
    test_close_pair(sv);
}

/* A socket whose send buffer is full becomes "writable" when the peer
 * goes away, and the write then fails with EPIPE. */
static void test_peer_close_wakes_writer(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2];
    test_socketpair(sv);
    test_fill(sv[0]);
    struct rec w = {.loop = loop,
                    .fd = sv[0],
                    .writer = true,
                    .do_write = true,
                    .remove_self = true,
                    .io_ret = -1000};
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w), 0);
    ticker_run(&t, 3);
    assert_int_equal(w.calls, 0);

    test_close_fd(&sv[1]);
    ticker_run(&t, 3);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.io_ret, -1);
    assert_int_equal(w.io_errno, EPIPE);
    assert_int_equal(w.remove_ret, 1);

    ticker_close(&t);
    test_close_pair(sv);
}

/* The read end of a pipe is never writable: only the hang-up (the write
 * end closed) can wake a writer on it. */
static void test_hangup_wakes_writer(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int p[2];
    test_pipe(p);
    struct rec w = {
        .loop = loop, .fd = p[0], .writer = true, .remove_self = true};
    assert_int_equal(coil_loop_add_writer(loop, p[0], rec_cb, &w), 0);
    ticker_run(&t, 3);
    assert_int_equal(w.calls, 0);

    test_close_fd(&p[1]);
    ticker_run(&t, 3);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.remove_ret, 1);

    ticker_close(&t);
    test_close_pair(p);
}

/* The write end of a pipe is never readable: only the error (the read end
 * closed) can wake a reader on it. */
static void test_error_wakes_reader(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int p[2];
    test_pipe(p);
    struct rec r = {.loop = loop, .fd = p[1], .remove_self = true};
    assert_int_equal(coil_loop_add_reader(loop, p[1], rec_cb, &r), 0);
    ticker_run(&t, 3);
    assert_int_equal(r.calls, 0);

    test_close_fd(&p[0]);
    ticker_run(&t, 3);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.remove_ret, 1);
    assert_int_equal(write(p[1], "x", 1), -1);
    assert_int_equal(errno, EPIPE);

    ticker_close(&t);
    test_close_pair(p);
}

/* ------------------------------------------------------------------ */
/* fds closed behind the loop's back                                    */
/* ------------------------------------------------------------------ */

/* (a) Closed, then removed: the removal still reports the watcher. */
static void test_closed_fd_then_removed(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    struct ticker t;
    ticker_open(&t, loop);

    int sv[2];
    test_socketpair(sv);
    struct rec r = {.loop = loop, .fd = sv[0]};
    int fd = sv[0];
    assert_int_equal(coil_loop_add_reader(loop, fd, rec_cb, &r), 0);
    test_close_fd(&sv[0]);
    assert_int_equal(coil_loop_remove_reader(loop, fd), 1);
    assert_int_equal(coil_loop_remove_reader(loop, fd), 0);

    /* Both directions watched: neither removal crashes or fails. */
    int sv2[2];
    test_socketpair(sv2);
    test_put_byte(sv2[1]);
    struct rec r2 = {.loop = loop, .fd = sv2[0]};
    struct rec w2 = {.loop = loop, .fd = sv2[0], .writer = true};
    int fd2 = sv2[0];
    assert_int_equal(coil_loop_add_reader(loop, fd2, rec_cb, &r2), 0);
    assert_int_equal(coil_loop_add_writer(loop, fd2, rec_cb, &w2), 0);
    test_close_fd(&sv2[0]);
    assert_int_equal(coil_loop_remove_reader(loop, fd2), 1);
    int rw = coil_loop_remove_writer(loop, fd2);
    assert_true(rw == 0 || rw == 1);
    assert_int_equal(coil_loop_remove_writer(loop, fd2), 0);

    ticker_run(&t, 3);
    assert_int_equal(r.calls + r2.calls + w2.calls, 0);

    ticker_close(&t);
    test_close_pair(sv);
    test_close_pair(sv2);
}

/* (b) Closed while watched, with data pending: the callback never runs;
 * poll notices (POLLNVAL), reports -EBADF and drops the watchers. */
static void test_closed_fd_never_runs(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    struct ticker t;
    ticker_open(&t, loop);

    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    int fd = sv[0];
    struct rec r = {.loop = loop, .fd = fd};
    struct rec w = {.loop = loop, .fd = fd, .writer = true};
    assert_int_equal(coil_loop_add_reader(loop, fd, rec_cb, &r), 0);
    assert_int_equal(coil_loop_add_writer(loop, fd, rec_cb, &w), 0);
    test_close_fd(&sv[0]);

    ticker_run(&t, 5);
    assert_int_equal(r.calls, 0);
    assert_int_equal(w.calls, 0);
    if (test_on_backend("poll")) {
        assert_int_equal(exc.count, 1);
        assert_int_equal(exc.last_error, -EBADF);
        assert_int_equal(coil_loop_remove_reader(loop, fd), 0);
        assert_int_equal(coil_loop_remove_writer(loop, fd), 0);
    } else {
        coil_loop_remove_reader(loop, fd);
        coil_loop_remove_writer(loop, fd);
    }

    ticker_close(&t);
    test_close_pair(sv);
}

/* (c) The number reused, not re-added: the old callback never runs. */
static void test_reused_fd_number_no_stale_event(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    struct ticker t;
    ticker_open(&t, loop);

    int sv[2], nb[2];
    test_socketpair(sv);
    struct rec old = {.loop = loop, .fd = sv[0]};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &old), 0);
    ticker_run(&t, 1);
    int num = test_close_and_reuse(sv, nb);
    test_put_byte(nb[1]); /* the new file under the old number is readable */

    ticker_run(&t, 5);
    assert_int_equal(old.calls, 0);
    if (test_on_backend("poll")) {
        /* poll sees another file under the number: dropped, reported. */
        assert_int_equal(exc.count, 1);
        assert_int_equal(exc.last_error, -EBADF);
        assert_int_equal(coil_loop_remove_reader(loop, num), 0);
    } else {
        coil_loop_remove_reader(loop, num);
    }

    ticker_close(&t);
    test_close_pair(nb);
}

/* (c') The number reused and watched in the other direction only: the
 * old reader must not receive the new file's readability. */
static void test_reused_fd_number_other_direction(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    struct ticker t;
    ticker_open(&t, loop);

    int sv[2], nb[2];
    test_socketpair(sv);
    struct rec old = {.loop = loop, .fd = sv[0]};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &old), 0);
    ticker_run(&t, 1);
    int num = test_close_and_reuse(sv, nb);
    test_put_byte(nb[1]);
    struct rec w = {.loop = loop, .fd = num, .writer = true};
    assert_int_equal(coil_loop_add_writer(loop, num, rec_cb, &w), 0);

    ticker_run(&t, 3);
    coil_loop_remove_reader(loop, num);
    coil_loop_remove_writer(loop, num);
    ticker_close(&t);
    test_close_pair(nb);
    assert_int_equal(old.calls, 0);
    assert_int_equal(w.calls, 3);
}

/* (d) The number reused and re-added: only the new callback runs. */
static void test_reused_fd_number_readded(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    struct ticker t;
    ticker_open(&t, loop);

    int sv[2], nb[2];
    test_socketpair(sv);
    struct rec old = {.loop = loop, .fd = sv[0]};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &old), 0);
    ticker_run(&t, 1);
    int num = test_close_and_reuse(sv, nb);
    test_put_byte(nb[1]);
    struct rec new = {.loop = loop,
                      .fd = num,
                      .do_read = true,
                      .stop_at = 1,
                      .io_ret = -1000};
    assert_int_equal(coil_loop_add_reader(loop, num, rec_cb, &new), 0);

    bool timed_out = test_run_bounded(loop, SAFETY_NS);
    coil_loop_remove_reader(loop, num);
    ticker_close(&t);
    test_close_pair(nb);
    assert_false(timed_out);
    assert_int_equal(old.calls, 0);
    assert_int_equal(new.calls, 1);
    assert_int_equal(new.io_ret, 1);
    assert_int_equal(exc.count, 0); /* the new watcher was not dropped */
}

/* ------------------------------------------------------------------ */
/* Many fds                                                             */
/* ------------------------------------------------------------------ */

enum { MANY = 300 }; /* more than one poller batch (256) */

struct many {
    coil_loop_t *loop;
    bool remove_self;
    int distinct; /* readers that ran at least once */
};

struct many_rec {
    struct many *m;
    int fd;
    int calls;
};

static void many_cb(void *arg)
{
    struct many_rec *r = arg;
    struct many *m = r->m;
    if (r->calls++ == 0)
        m->distinct++;
    if (m->remove_self) {
        test_drain(r->fd);
        coil_loop_remove_reader(m->loop, r->fd);
    }
    if (m->distinct == MANY)
        coil_loop_stop(m->loop);
}

static void many_fds(coil_loop_t *loop, bool remove_self)
{
    int(*sv)[2] = calloc(MANY, sizeof(*sv));
    struct many_rec *recs = calloc(MANY, sizeof(*recs));
    assert_non_null(sv);
    assert_non_null(recs);
    struct many m = {loop, remove_self, 0};
    for (int i = 0; i < MANY; i++) {
        test_socketpair(sv[i]);
        recs[i] = (struct many_rec){&m, sv[i][0], 0};
        assert_int_equal(
            coil_loop_add_reader(loop, sv[i][0], many_cb, &recs[i]), 0);
    }
    for (int i = 0; i < MANY; i++)
        test_put_byte(sv[i][1]);

    bool timed_out = test_run_bounded(loop, SAFETY_NS);
    int never = 0, twice = 0;
    for (int i = 0; i < MANY; i++) {
        never += recs[i].calls == 0;
        twice += recs[i].calls > 1;
        coil_loop_remove_reader(loop, sv[i][0]);
        test_close_pair(sv[i]);
    }
    free(sv);
    free(recs);
    assert_false(timed_out);
    assert_int_equal(m.distinct, MANY);
    assert_int_equal(never, 0);
    if (remove_self)
        assert_int_equal(twice, 0);
}

/* All readable at once, each reader drains and removes itself. */
static void test_many_fds(void **state)
{
    many_fds(test_loop(state), true);
}

/* All readable and never drained: every one still gets its turn. */
static void test_many_fds_level_all_get_a_turn(void **state)
{
    many_fds(test_loop(state), false);
}

/* ------------------------------------------------------------------ */
/* The poller failing                                                   */
/* ------------------------------------------------------------------ */

static void test_wait_interrupted(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    struct rec r = {.loop = loop, .fd = sv[0], .do_read = true, .stop_at = 1};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);

    coil_test_fail(COIL_TEST_POLL, 1, 3, -EINTR); /* three waits in a row */
    assert_false(test_run_bounded(loop, SAFETY_NS));
    /* all three were used (on this backend's wait call) */
    assert_int_equal(coil__fault_hit(test_wait_call()), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.io_ret, 1);
    assert_int_equal(exc.count, 0);

    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    test_close_pair(sv);
}

static void test_wait_fails_fatally(void **state)
{
    coil_loop_t *loop = test_loop(state);
    static const int errs[] = {EBADF, EINVAL};
    for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++) {
        struct exc_log exc = {0};
        coil_loop_set_exception_handler(loop, test_exc_record, &exc);
        int sv[2];
        test_socketpair(sv);
        test_put_byte(sv[1]);
        struct rec r = {
            .loop = loop, .fd = sv[0], .do_read = true, .stop_at = 1};
        assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);

        coil_test_fail(COIL_TEST_POLL, 1, 1000, -errs[i]);
        bool fired;
        int err = test_run_bounded_err(loop, SAFETY_NS, &fired);
        coil_test_reset_faults();
        assert_int_equal(err, -errs[i]);
        assert_false(fired);
        assert_false(coil_loop_is_running(loop));
        assert_int_equal(exc.count, 1);
        assert_int_equal(exc.last_error, -errs[i]);
        assert_int_equal(r.calls, 0);

        /* Once the poller works again, so does the loop. */
        assert_false(test_run_bounded(loop, SAFETY_NS));
        assert_int_equal(r.calls, 1);
        assert_int_equal(exc.count, 1);

        assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
        test_close_pair(sv);
        coil_loop_set_exception_handler(loop, NULL, NULL);
    }
}

static void test_epoll_ctl_fails(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    struct rec r = {.loop = loop, .fd = sv[0], .do_read = true};

    /* A fresh registration fails: no watcher is left. */
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), -ENOMEM);
    assert_int_equal(coil__fault_hit(COIL__SYS_EPOLL_CTL), 0);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    ticker_run(&t, 3);
    assert_int_equal(r.calls, 0);

    /* Widening an existing registration fails: the writer stays, alone. */
    struct rec w = {.loop = loop, .fd = sv[0], .writer = true};
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w), 0);
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), -ENOMEM);
    assert_int_equal(coil__fault_hit(COIL__SYS_EPOLL_CTL), 0);
    ticker_run(&t, 3);
    assert_int_equal(r.calls, 0);
    assert_int_equal(w.calls, 3);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 1);

    /* A later add works. */
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
    ticker_run(&t, 2);
    assert_int_equal(r.calls, 1); /* read and drained: once */
    assert_int_equal(r.io_ret, 1);

    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    ticker_close(&t);
    test_close_pair(sv);
}

/* Narrowing a registration fails: the whole fd is dropped and the loss of
 * the other direction is reported; nothing runs afterwards. */
static void test_epoll_ctl_fails_on_remove(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    struct ticker t;
    ticker_open(&t, loop);
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    struct rec r = {.loop = loop, .fd = sv[0]};
    struct rec w = {.loop = loop, .fd = sv[0], .writer = true};
    assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w), 0);

    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    assert_int_equal(coil__fault_hit(COIL__SYS_EPOLL_CTL), 0);
    assert_int_equal(exc.count, 1);
    assert_int_equal(exc.last_error, -EIO);
    ticker_run(&t, 3);
    assert_int_equal(r.calls + w.calls, 0);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 0);

    /* The fd can be watched again. */
    assert_int_equal(coil_loop_add_writer(loop, sv[0], rec_cb, &w), 0);
    ticker_run(&t, 2);
    assert_int_equal(w.calls, 2);
    assert_int_equal(coil_loop_remove_writer(loop, sv[0]), 1);

    ticker_close(&t);
    test_close_pair(sv);
}

/* Allocation failure in add_reader on an fd number the loop never saw:
 * -ENOMEM, nothing left behind, and the same add works afterwards. */
static void alloc_failure_case(int fd_number)
{
    long nth;
    for (nth = 1;; nth++) {
        assert_true(nth < 50);
        long live = test_alloc_live();
        coil_loop_t *loop;
        assert_int_equal(coil_loop_new(&loop), 0);
        int sv[2];
        test_socketpair(sv);
        if (fd_number >= 0)
            sv[0] = test_move_fd(sv[0], fd_number);
        test_put_byte(sv[1]);
        struct rec r = {
            .loop = loop, .fd = sv[0], .do_read = true, .stop_at = 1};

        test_alloc_fail_after(nth);
        int err = coil_loop_add_reader(loop, sv[0], rec_cb, &r);
        bool injected = test_alloc_failed();
        test_alloc_fail_after(0);
        if (err) {
            assert_int_equal(err, -ENOMEM);
            assert_true(injected);
            assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 0);
            assert_int_equal(coil_loop_add_reader(loop, sv[0], rec_cb, &r), 0);
        } else {
            assert_false(injected);
        }
        assert_false(test_run_bounded(loop, SAFETY_NS));
        assert_int_equal(r.calls, 1);
        assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
        coil_loop_unref(loop);
        test_close_pair(sv);
        assert_int_equal(test_alloc_live(), live);
        if (!err)
            break;
    }
    assert_true(nth > 1); /* at least the first allocation could fail */
}

static void test_add_alloc_failure(void **state)
{
    (void)state;
    alloc_failure_case(-1);
    alloc_failure_case(200); /* beyond every table's first size */
}

/* ------------------------------------------------------------------ */
/* Closing the loop                                                     */
/* ------------------------------------------------------------------ */

static void test_close_loop_with_watchers(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int a[2], b[2];
    test_socketpair(a);
    test_socketpair(b);
    test_put_byte(a[1]);
    struct rec r = {.loop = loop, .fd = a[0], .stop_at = 1};
    struct rec w = {.loop = loop, .fd = b[0], .writer = true};
    assert_int_equal(coil_loop_add_reader(loop, a[0], rec_cb, &r), 0);
    assert_int_equal(coil_loop_add_writer(loop, b[0], rec_cb, &w), 0);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(r.calls, 1);
    assert_int_equal(w.calls, 1);

    assert_int_equal(coil_loop_close(loop), 0);
    assert_int_equal(coil_loop_run_forever(loop), -EBADF);
    assert_int_equal(r.calls, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(coil_loop_remove_reader(loop, a[0]), 0);
    assert_int_equal(coil_loop_remove_writer(loop, b[0]), 0);

    /* The fds are the caller's: open, and the data still unread. */
    assert_true(test_fd_is_open(a[0]));
    assert_true(test_fd_is_open(a[1]));
    assert_true(test_fd_is_open(b[0]));
    assert_true(test_fd_is_open(b[1]));
    char c;
    assert_int_equal(read(a[0], &c, 1), 1);

    /* Freeing a loop with watchers leaves the fds open too. */
    coil_loop_t *loop2;
    assert_int_equal(coil_loop_new(&loop2), 0);
    assert_int_equal(coil_loop_add_reader(loop2, a[0], rec_cb, &r), 0);
    assert_int_equal(coil_loop_add_writer(loop2, a[0], rec_cb, &w), 0);
    coil_loop_unref(loop2);
    assert_true(test_fd_is_open(a[0]));
    assert_int_equal(r.calls, 1);
    assert_int_equal(w.calls, 1);

    test_close_pair(a);
    test_close_pair(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_reader_fires_on_data),
        TEST(test_writer_fires_when_writable),
        TEST(test_reader_and_writer_on_one_fd),
        TEST(test_level_triggered),
        TEST(test_remove_self_fires_once),
        TEST(test_remove_queued_watcher),
        TEST(test_replace_queued_watcher),
        TEST(test_replace_reader),
        TEST(test_remove_return_values),
        TEST(test_bad_arguments),
        TEST(test_add_huge_fd_number),
        TEST(test_regular_file),
        TEST(test_peer_close_wakes_reader),
        TEST(test_peer_close_wakes_writer),
        TEST(test_hangup_wakes_writer),
        TEST(test_error_wakes_reader),
        TEST(test_closed_fd_then_removed),
        TEST(test_closed_fd_never_runs),
        TEST(test_reused_fd_number_no_stale_event),
        TEST(test_reused_fd_number_other_direction),
        TEST(test_reused_fd_number_readded),
        TEST(test_many_fds),
        TEST(test_many_fds_level_all_get_a_turn),
        TEST(test_wait_interrupted),
        TEST(test_wait_fails_fatally),
        TEST_NOLOOP(test_add_alloc_failure),
        TEST(test_close_loop_with_watchers),
    };
    /* Faults of epoll_ctl exist only on epoll: not registered elsewhere. */
    const struct CMUnitTest epoll_tests[] = {
        TEST(test_epoll_ctl_fails),
        TEST(test_epoll_ctl_fails_on_remove),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed +=
        TEST_RUN_IF(TEST_ON_EPOLL, "they inject epoll_ctl faults", epoll_tests);
    return failed;
}
