/* SPDX-License-Identifier: MIT */
/*
 * test_poller.c - the contract of src/poller.h, checked on the backend
 * itself (coil__poller_find(NULL): COIL_BACKEND), without a loop in
 * between: open and close, watch with each mask and exactly the tag given,
 * forgetting, level-triggered readiness, hang-ups and errors waking both
 * directions, wait's timeouts (never early), EINTR, watch()'s errors and
 * "a failed watch changes nothing", the reused-number rule, closed fds
 * (COIL__EV_INVALID on poll, quiet on epoll), one fd in two events of a
 * batch, and batches smaller than the number of ready fds.
 *
 * What holds for every backend is one group; what a backend documents for
 * itself (epoll_ctl faults, a regular file refused; poll's
 * COIL__EV_INVALID) is a group registered only on that backend. A batch
 * is accepted with one fd's directions merged in one event or split over
 * two (kqueue), so the same checks hold there.
 *
 * Fds are socketpairs, pipes, eventfds, a temporary file and an O_PATH
 * one; timing is only ever a lower bound (a wait never returns before its
 * timeout), and a wait that could block forever is bounded by the
 * per-test alarm.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "poller.h"

#define READ COIL__EV_READ
#define WRITE COIL__EV_WRITE
#define INVALID COIL__EV_INVALID

/* ------------------------------------------------------------------ */
/* Fixture: the backend under test and one open poller                  */
/* ------------------------------------------------------------------ */

static const struct coil__poller_ops *ops;
static struct coil__poller *pl;

static int setup(void **state)
{
    if (test_setup_noloop(state) != 0)
        return -1;
    int err = coil__poller_find(NULL, &ops);
    if (!err)
        err = ops->open(&pl);
    if (err) {
        fprintf(stderr, "setup: cannot open the poller: %s\n",
                coil_strerror(err));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    if (pl)
        ops->close(pl);
    pl = NULL;
    return test_teardown_noloop(state);
}

static int watch(int fd, unsigned old_mask, unsigned mask, uint32_t tag)
{
    return ops->watch(pl, fd, old_mask, mask, tag);
}

/* The monotonic clock, in ns. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Batches                                                              */
/* ------------------------------------------------------------------ */

enum { MAXEV = 64 };

struct batch {
    int n;
    struct coil__event ev[MAXEV];
};

static const char *describe(const struct batch *b)
{
    static char buf[2048];
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < b->n && len < sizeof(buf) - 64; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                                "%s{fd %d, events %#x, tag %#x}", i ? ", " : "",
                                b->ev[i].fd, b->ev[i].events,
                                (unsigned)b->ev[i].tag);
    return b->n ? buf : "(none)";
}

/*
 * One wait for at most max events, and what every batch must be: at most
 * max events, each with an fd, known direction bits, and one registration
 * (fd and tag) in at most two events (kqueue: one per direction).
 */
static void wait_max(int64_t timeout_ns, int max, struct batch *b)
{
    assert_true(max > 0 && max <= MAXEV);
    memset(b, 0, sizeof(*b));
    int n = ops->wait(pl, timeout_ns, b->ev, max);
    if (n < 0)
        fail_msg("wait: %s", coil_strerror(n));
    assert_true(n <= max);
    b->n = n;
    for (int i = 0; i < n; i++) {
        const struct coil__event *e = &b->ev[i];
        int same = 0;
        for (int j = 0; j < n; j++)
            same += b->ev[j].fd == e->fd && b->ev[j].tag == e->tag;
        if (e->fd < 0 || e->events == 0 ||
            (e->events & ~(READ | WRITE | INVALID)) || same > 2)
            fail_msg("malformed batch: %s", describe(b));
    }
}

static void wait_all(int64_t timeout_ns, struct batch *b)
{
    wait_max(timeout_ns, MAXEV, b);
}

static void poll_now(struct batch *b)
{
    wait_all(0, b);
}

/* The directions reported for fd with tag, merged over the batch. */
static unsigned got(const struct batch *b, int fd, uint32_t tag)
{
    unsigned ev = 0;
    for (int i = 0; i < b->n; i++)
        if (b->ev[i].fd == fd && b->ev[i].tag == tag)
            ev |= b->ev[i].events;
    return ev;
}

/* The directions reported for fd with any other tag than tag. */
static unsigned got_other(const struct batch *b, int fd, uint32_t tag)
{
    unsigned ev = 0;
    for (int i = 0; i < b->n; i++)
        if (b->ev[i].fd == fd && b->ev[i].tag != tag)
            ev |= b->ev[i].events;
    return ev;
}

static int count_fd(const struct batch *b, int fd)
{
    int n = 0;
    for (int i = 0; i < b->n; i++)
        n += b->ev[i].fd == fd;
    return n;
}

/* fd is reported with exactly the directions want, and only with tag. */
static void expect(const struct batch *b, int fd, uint32_t tag, unsigned want)
{
    if (got(b, fd, tag) != want || got_other(b, fd, tag) != 0)
        fail_msg("fd %d: expected events %#x with tag %#x, got %s", fd, want,
                 (unsigned)tag, describe(b));
}

/* Nothing at all is reported for fd. */
static void expect_quiet(const struct batch *b, int fd)
{
    if (count_fd(b, fd) != 0)
        fail_msg("fd %d: expected no event, got %s", fd, describe(b));
}

/*
 * fd's registration with tag names a file that is closed now: whatever is
 * reported for fd carries that tag and says COIL__EV_INVALID (poll), or
 * nothing is (epoll, kqueue). Never the readiness of whatever file the
 * number names now.
 */
static void expect_no_stale(const struct batch *b, int fd, uint32_t tag)
{
    unsigned ev = got(b, fd, tag);
    if (got_other(b, fd, tag) != 0 || (ev != 0 && ev != INVALID))
        fail_msg("fd %d was closed while watched with tag %#x (its number "
                 "reused or not): a closed file's registration may only "
                 "report COIL__EV_INVALID or nothing, got %s",
                 fd, (unsigned)tag, describe(b));
}

/* Tags with their high bits set: all 32 bits must come back. */
#define TAG(n) (0xc0de0000u | (uint32_t)(n))

/* ------------------------------------------------------------------ */
/* Open and close                                                       */
/* ------------------------------------------------------------------ */

/* The backend is the one COIL_BACKEND names; pollers are independent,
 * and closing them leaves no fd or allocation behind (the leak gate). */
static void test_open_close(void **state)
{
    (void)state;
    const struct coil__poller_ops *o;
    assert_int_equal(coil__poller_find(NULL, &o), 0);
    assert_string_equal(o->name, test_backend());
    struct coil__poller *a, *b, *c;
    assert_int_equal(o->open(&a), 0);
    assert_int_equal(o->open(&b), 0);
    assert_int_equal(o->open(&c), 0);
    assert_true(a != b && b != c && a != c);

    /* An fd watched in one is not reported by another. */
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(o->watch(b, sv[0], 0, READ, TAG(1)), 0);
    struct coil__event ev[4];
    assert_int_equal(o->wait(a, 0, ev, 4), 0);
    assert_int_equal(o->wait(c, 0, ev, 4), 0);
    assert_int_equal(o->wait(b, 0, ev, 4), 1);
    assert_int_equal(ev[0].fd, sv[0]);

    o->close(b);
    o->close(a);
    o->close(c);
    test_close_pair(sv);
}

/* Closing a poller that still watches fds frees what it holds for them
 * and leaves the fds, which are the caller's, open. */
static void test_close_with_watched_fds(void **state)
{
    (void)state;
    enum { N = 40 };
    const struct coil__poller_ops *o;
    assert_int_equal(coil__poller_find(NULL, &o), 0);
    struct coil__poller *p;
    assert_int_equal(o->open(&p), 0);
    int sv[N][2];
    for (int i = 0; i < N; i++) {
        test_socketpair(sv[i]);
        if (i % 2)
            test_put_byte(sv[i][1]);
        assert_int_equal(
            o->watch(p, sv[i][0], 0, i % 3 ? READ : READ | WRITE, TAG(i)), 0);
    }
    struct coil__event ev[N * 2];
    assert_true(o->wait(p, 0, ev, N * 2) > 0);
    o->close(p);
    for (int i = 0; i < N; i++) {
        assert_true(test_fd_is_open(sv[i][0]));
        test_close_pair(sv[i]);
    }
}

/* open() fails with -ENOMEM when an allocation fails, leaving nothing. */
static void test_open_alloc_failure(void **state)
{
    (void)state;
    const struct coil__poller_ops *o;
    assert_int_equal(coil__poller_find(NULL, &o), 0);
    struct coil__poller *p = NULL;
    long nth;
    for (nth = 1; nth < 20; nth++) {
        long fds = test_fd_count(), live = test_alloc_live();
        test_alloc_fail_after(nth);
        int err = o->open(&p);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        if (err == 0) {
            assert_false(failed);
            break;
        }
        assert_int_equal(err, -ENOMEM);
        assert_int_equal(test_fd_count(), fds);
        assert_int_equal(test_alloc_live(), live);
    }
    assert_true(nth < 20);
    o->close(p);
}

/* ------------------------------------------------------------------ */
/* watch: masks and tags                                                */
/* ------------------------------------------------------------------ */

/* READ: reported once the fd is readable, never for writability. */
static void test_watch_read(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    assert_int_equal(watch(sv[0], 0, READ, TAG(1)), 0);
    poll_now(&b);
    expect_quiet(&b, sv[0]); /* writable, but only READ is watched */

    test_put_byte(sv[1]);
    poll_now(&b);
    expect(&b, sv[0], TAG(1), READ);
    assert_int_equal(b.n, 1);

    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

/* WRITE: reported while the fd is writable, never for readability. */
static void test_watch_write(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]); /* readable too */
    assert_int_equal(watch(sv[0], 0, WRITE, TAG(2)), 0);
    poll_now(&b);
    expect(&b, sv[0], TAG(2), WRITE);

    test_fill(sv[0]);
    poll_now(&b);
    expect_quiet(&b, sv[0]); /* readable but not writable */

    test_drain(sv[1]);
    poll_now(&b);
    expect(&b, sv[0], TAG(2), WRITE);

    assert_int_equal(watch(sv[0], WRITE, 0, 0), 0);
    test_close_pair(sv);
}

/* READ|WRITE on an fd ready both ways: both directions, in one event or
 * in two events of the same batch (kqueue), with the tag. */
static void test_watch_both(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ | WRITE, TAG(3)), 0);
    poll_now(&b);
    expect(&b, sv[0], TAG(3), READ | WRITE);
    assert_true(count_fd(&b, sv[0]) == 1 || count_fd(&b, sv[0]) == 2);

    /* Only writable: WRITE alone. */
    test_drain(sv[0]);
    poll_now(&b);
    expect(&b, sv[0], TAG(3), WRITE);

    /* Only readable: READ alone. */
    test_put_byte(sv[1]);
    test_fill(sv[0]);
    poll_now(&b);
    expect(&b, sv[0], TAG(3), READ);

    assert_int_equal(watch(sv[0], READ | WRITE, 0, 0), 0);
    test_close_pair(sv);
}

/* Changing the mask changes what is reported, and the events carry the
 * tag of the latest watch. Every change of the same file returns 0. */
static void test_change_mask(void **state)
{
    (void)state;
    static const unsigned masks[] = {READ,  WRITE,        READ | WRITE, READ,
                                     WRITE, READ | WRITE, WRITE,        READ};
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]); /* readable and writable from now on */
    unsigned old = 0;
    for (size_t i = 0; i < sizeof(masks) / sizeof(*masks); i++) {
        assert_int_equal(watch(sv[0], old, masks[i], TAG(10 + i)), 0);
        old = masks[i];
        poll_now(&b);
        expect(&b, sv[0], TAG(10 + i), masks[i]);
    }
    assert_int_equal(watch(sv[0], old, 0, 0), 0);
    test_close_pair(sv);
}

/* The loop watches again with an unchanged mask (every add): 0, and the
 * events carry the new tag. */
static void test_same_mask_new_tag(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ, TAG(20)), 0);
    assert_int_equal(watch(sv[0], READ, READ, TAG(21)), 0);
    poll_now(&b);
    expect(&b, sv[0], TAG(21), READ);
    assert_int_equal(watch(sv[0], READ, READ, TAG(22)), 0);
    poll_now(&b);
    expect(&b, sv[0], TAG(22), READ);
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

/* Every bit of the tag comes back, 0 and all ones included. */
static void test_tag_bits(void **state)
{
    (void)state;
    static const uint32_t tags[] = {0,           1,           0x7fffffffu,
                                    0x80000000u, 0xffffffffu, 0xdeadbeefu};
    enum { N = sizeof(tags) / sizeof(*tags) };
    struct batch b;
    int sv[N][2];
    for (int i = 0; i < N; i++) {
        test_socketpair(sv[i]);
        test_put_byte(sv[i][1]);
        assert_int_equal(watch(sv[i][0], 0, READ, tags[i]), 0);
    }
    poll_now(&b);
    assert_int_equal(b.n, N);
    for (int i = 0; i < N; i++) {
        expect(&b, sv[i][0], tags[i], READ);
        assert_int_equal(watch(sv[i][0], READ, 0, 0), 0);
        test_close_pair(sv[i]);
    }
}

/* mask 0 forgets (nothing is reported afterwards) and never fails: an fd
 * never watched, one already forgotten, a number no process has open, an
 * fd closed while watched. */
static void test_forget(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ | WRITE, TAG(30)), 0);
    poll_now(&b);
    expect(&b, sv[0], TAG(30), READ | WRITE);

    assert_int_equal(watch(sv[0], READ | WRITE, 0, 0), 0);
    poll_now(&b);
    expect_quiet(&b, sv[0]);
    wait_all(1000000, &b); /* nothing else is watched: a 1 ms nap */
    assert_int_equal(b.n, 0);

    /* Forgetting again, or what was never watched. */
    assert_int_equal(watch(sv[0], 0, 0, 0), 0);
    assert_int_equal(watch(sv[1], 0, 0, 0), 0);
    assert_int_equal(watch(INT_MAX, 0, 0, 0), 0);
    assert_int_equal(watch(INT_MAX, READ | WRITE, 0, 0), 0);

    /* Watched again after being forgotten: a fresh registration. */
    assert_int_equal(watch(sv[0], 0, READ, TAG(31)), 0);
    poll_now(&b);
    expect(&b, sv[0], TAG(31), READ);

    /* Closed while watched, then forgotten: 0, and never reported. */
    int fd = sv[0];
    test_close_fd(&sv[0]);
    assert_int_equal(watch(fd, READ, 0, 0), 0);
    poll_now(&b);
    expect_quiet(&b, fd);
    poll_now(&b);
    expect_quiet(&b, fd);

    test_close_pair(sv);
}

/* ------------------------------------------------------------------ */
/* Level-triggered                                                      */
/* ------------------------------------------------------------------ */

/* A readable fd is reported by every wait until it is drained or
 * forgotten; a writable one by every wait. */
static void test_level_triggered(void **state)
{
    (void)state;
    struct batch b;
    int r[2], w[2];
    test_socketpair(r);
    test_socketpair(w);
    assert_int_equal(watch(r[0], 0, READ, TAG(40)), 0);
    assert_int_equal(watch(w[0], 0, WRITE, TAG(41)), 0);
    test_put_byte(r[1]);
    for (int i = 0; i < 4; i++) {
        wait_all(i % 2 ? 0 : -1, &b);
        expect(&b, r[0], TAG(40), READ);
        expect(&b, w[0], TAG(41), WRITE);
        assert_int_equal(b.n, 2);
    }
    test_drain(r[0]);
    poll_now(&b);
    expect_quiet(&b, r[0]);
    expect(&b, w[0], TAG(41), WRITE);

    test_put_byte(r[1]);
    for (int i = 0; i < 2; i++) {
        poll_now(&b);
        expect(&b, r[0], TAG(40), READ);
    }
    assert_int_equal(watch(r[0], READ, 0, 0), 0);
    for (int i = 0; i < 2; i++) {
        poll_now(&b);
        expect_quiet(&b, r[0]);
        expect(&b, w[0], TAG(41), WRITE);
    }
    assert_int_equal(watch(w[0], WRITE, 0, 0), 0);
    poll_now(&b);
    assert_int_equal(b.n, 0);
    test_close_pair(r);
    test_close_pair(w);
}

/* ------------------------------------------------------------------ */
/* Hang-ups and errors: both directions                                 */
/* ------------------------------------------------------------------ */

/* Whatever is watched, a hang-up or an error is reported as READ|WRITE
 * (merged or split), and again at every wait (level). */
static void expect_both_twice(int fd, uint32_t tag)
{
    struct batch b;
    for (int i = 0; i < 2; i++) {
        poll_now(&b);
        if (got(&b, fd, tag) != (READ | WRITE) || got_other(&b, fd, tag))
            fail_msg("fd %d: a hang-up or error must be reported as "
                     "READ|WRITE (%#x) with tag %#x, got %s",
                     fd, READ | WRITE, (unsigned)tag, describe(&b));
    }
}

/* A socket whose peer is closed, watched for READ only. */
static void test_hangup_socket_read_watch(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    assert_int_equal(watch(sv[0], 0, READ, TAG(50)), 0);
    poll_now(&b);
    expect_quiet(&b, sv[0]);
    test_close_fd(&sv[1]);
    expect_both_twice(sv[0], TAG(50));
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

/* A socket whose send buffer is full, watched for WRITE only: its peer
 * closing wakes it. */
static void test_hangup_socket_write_watch(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_fill(sv[0]);
    assert_int_equal(watch(sv[0], 0, WRITE, TAG(51)), 0);
    poll_now(&b);
    expect_quiet(&b, sv[0]);
    test_close_fd(&sv[1]);
    expect_both_twice(sv[0], TAG(51));
    assert_int_equal(watch(sv[0], WRITE, 0, 0), 0);
    test_close_pair(sv);
}

/* The read end of a pipe is never writable: a WRITE watch on it wakes only
 * for the hang-up (the write end closed). */
static void test_hangup_pipe_write_watch(void **state)
{
    (void)state;
    struct batch b;
    int p[2];
    test_pipe(p);
    assert_int_equal(watch(p[0], 0, WRITE, TAG(52)), 0);
    poll_now(&b);
    expect_quiet(&b, p[0]);
    test_close_fd(&p[1]);
    expect_both_twice(p[0], TAG(52));
    assert_int_equal(watch(p[0], WRITE, 0, 0), 0);
    test_close_pair(p);
}

/* The write end of a pipe is never readable: a READ watch on it wakes only
 * for the error (the read end closed). */
static void test_error_pipe_read_watch(void **state)
{
    (void)state;
    struct batch b;
    int p[2];
    test_pipe(p);
    assert_int_equal(watch(p[1], 0, READ, TAG(53)), 0);
    poll_now(&b);
    expect_quiet(&b, p[1]);
    test_close_fd(&p[0]);
    expect_both_twice(p[1], TAG(53));
    assert_int_equal(watch(p[1], READ, 0, 0), 0);
    test_close_pair(p);
}

/* ------------------------------------------------------------------ */
/* wait: timeouts and interruptions                                     */
/* ------------------------------------------------------------------ */

/* 0 polls: what is ready is reported, and nothing otherwise. */
static void test_wait_zero(void **state)
{
    (void)state;
    struct batch b;
    poll_now(&b); /* nothing watched */
    assert_int_equal(b.n, 0);
    int sv[2];
    test_socketpair(sv);
    assert_int_equal(watch(sv[0], 0, READ, TAG(60)), 0);
    poll_now(&b);
    assert_int_equal(b.n, 0);
    test_put_byte(sv[1]);
    poll_now(&b);
    expect(&b, sv[0], TAG(60), READ);
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

/* A positive timeout with nothing ready: 0 events, and never before the
 * timeout has passed on the monotonic clock (whatever the backend's
 * resolution: ns, ms). No upper bound is checked. */
static void timeouts_never_early(void)
{
    static const int64_t timeouts[] = {
        1, 999, 999999, 1000000, 1000001, 1500000, 2000000, 2999999, 10000000};
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(*timeouts); i++) {
        struct batch b;
        int64_t t = timeouts[i];
        int64_t start = now_ns();
        wait_all(t, &b);
        int64_t took = now_ns() - start;
        assert_int_equal(b.n, 0);
        if (took < t)
            fail_msg("wait(%lld ns) returned after %lld ns: early",
                     (long long)t, (long long)took);
    }
}

static void test_wait_timeout_never_early(void **state)
{
    (void)state;
    timeouts_never_early(); /* nothing watched */
    int sv[2];
    test_socketpair(sv);
    test_fill(sv[0]);
    assert_int_equal(watch(sv[0], 0, READ | WRITE, TAG(61)), 0);
    timeouts_never_early(); /* watched, neither readable nor writable */
    assert_int_equal(watch(sv[0], READ | WRITE, 0, 0), 0);
    test_close_pair(sv);
}

/* -1 (and a huge timeout) with an fd ready already: returns it. */
static void test_wait_forever_ready(void **state)
{
    (void)state;
    static const int64_t timeouts[] = {-1, INT64_MAX, INT64_MAX - 1,
                                       1000000000000000000};
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ, TAG(62)), 0);
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(*timeouts); i++) {
        wait_all(timeouts[i], &b);
        expect(&b, sv[0], TAG(62), READ);
    }
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

struct late_writer {
    int fd;
    int64_t wrote_at; /* read after the join */
};

static void *late_write(void *arg)
{
    struct late_writer *w = arg;
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    w->wrote_at = now_ns();
    if (write(w->fd, "x", 1) != 1)
        w->wrote_at = -1;
    return NULL;
}

/* -1 blocks until an event: another thread makes the fd readable 20 ms
 * later, and the wait returns it, not before the write. */
static void test_wait_forever_blocks(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    int idle[2];
    test_socketpair(idle);
    test_fill(idle[0]);
    assert_int_equal(watch(idle[0], 0, READ | WRITE, TAG(63)), 0);
    assert_int_equal(watch(sv[0], 0, READ, TAG(64)), 0);

    struct late_writer w = {.fd = sv[1], .wrote_at = 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_write, &w), 0);
    /* EINTR would be zero events: wait again (bounded by the alarm). */
    do
        wait_all(-1, &b);
    while (b.n == 0);
    int64_t returned_at = now_ns();
    assert_int_equal(pthread_join(th, NULL), 0);

    assert_true(w.wrote_at > 0);
    expect(&b, sv[0], TAG(64), READ);
    expect_quiet(&b, idle[0]);
    assert_true(returned_at >= w.wrote_at);

    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    assert_int_equal(watch(idle[0], READ | WRITE, 0, 0), 0);
    test_close_pair(sv);
    test_close_pair(idle);
}

/* An interrupted wait is zero events, whatever the timeout, even with an
 * fd ready; the next wait reports it. */
static void test_wait_eintr(void **state)
{
    (void)state;
    static const int64_t timeouts[] = {-1, 0, 1500000, 2000000};
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ, TAG(65)), 0);
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(*timeouts); i++) {
        coil_test_fail(COIL_TEST_POLL, 1, 1, -EINTR);
        wait_all(timeouts[i], &b);
        /* it went through */
        assert_int_equal(coil_test_calls(COIL_TEST_POLL), 1);
        assert_int_equal(b.n, 0);
        wait_all(timeouts[i], &b);
        expect(&b, sv[0], TAG(65), READ);
    }
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

/* Any other failure is returned as a negative errno; the poller is still
 * usable afterwards. */
static void test_wait_fails(void **state)
{
    (void)state;
    static const int errs[] = {EBADF, EINVAL, EFAULT};
    struct coil__event ev[4];
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ, TAG(66)), 0);
    for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++) {
        coil_test_fail(COIL_TEST_POLL, 1, 1, -errs[i]);
        assert_int_equal(ops->wait(pl, -1, ev, 4), -errs[i]);
        assert_int_equal(ops->wait(pl, -1, ev, 4), 1);
        assert_int_equal(ev[0].fd, sv[0]);
        assert_int_equal(ev[0].tag, TAG(66));
    }
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

/* ------------------------------------------------------------------ */
/* watch: errors                                                        */
/* ------------------------------------------------------------------ */

/* An fd that is not open: -EBADF for each mask, nothing registered. */
static void test_watch_not_open(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    int num = sv[0];
    test_close_pair(sv);
    static const unsigned masks[] = {READ, WRITE, READ | WRITE};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(watch(num, 0, masks[i], TAG(70)), -EBADF);
        assert_int_equal(watch(INT_MAX, 0, masks[i], TAG(70)), -EBADF);
    }
    poll_now(&b);
    assert_int_equal(b.n, 0);
    assert_int_equal(watch(num, 0, 0, 0), 0);

    /* The number opened again later: registers as usual. */
    int nb[2];
    test_socketpair_at(num, nb);
    test_put_byte(nb[1]);
    assert_int_equal(watch(num, 0, READ, TAG(71)), 0);
    poll_now(&b);
    expect(&b, num, TAG(71), READ);
    assert_int_equal(watch(num, READ, 0, 0), 0);
    test_close_pair(nb);
}

/* A watched fd closed, then watched with another mask and tag: -EBADF,
 * and that failure changed nothing: the old registration's tag (and no
 * readiness) is all that can still be reported for the number. */
static void test_watch_closed_changes_nothing(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    int num = sv[0];
    assert_int_equal(watch(num, 0, READ, TAG(72)), 0);
    test_close_fd(&sv[0]);
    assert_int_equal(watch(num, READ, READ | WRITE, TAG(73)), -EBADF);
    assert_int_equal(watch(num, READ, READ, TAG(74)), -EBADF);
    for (int i = 0; i < 2; i++) {
        poll_now(&b);
        expect_no_stale(&b, num, TAG(72));
    }
    assert_int_equal(watch(num, READ, 0, 0), 0);
    poll_now(&b);
    expect_quiet(&b, num);
    test_close_pair(sv);
}

/*
 * An O_PATH fd is open (fcntl works on it) but cannot be polled: poll(2)
 * says POLLNVAL and epoll_ctl EBADF. watch() refuses it with one of the
 * contract's two words for that (-EBADF, -EPERM) and registers nothing.
 */
static void test_watch_unpollable_opath(void **state)
{
    (void)state;
    struct batch b;
    int fd = open(".", O_PATH | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(test_fd_is_open(fd));
    int err = watch(fd, 0, READ, TAG(75));
    poll_now(&b);
    int err2 = watch(fd, err == 0 ? READ : 0, 0, 0);
    close(fd);
    if (err != -EBADF && err != -EPERM)
        fail_msg("watch(O_PATH fd, READ) returned %d, not -EBADF or -EPERM; "
                 "the next wait reported %s",
                 err, describe(&b));
    expect_quiet(&b, fd);
    assert_int_equal(err2, 0);
}

/*
 * A failed watch changes nothing, for allocation failures too: a new fd
 * (at a high number, so that per-number tables grow, after as many
 * registrations as fill a first array) is refused with -ENOMEM at each
 * allocation in turn (the nth of a fresh poller with the same
 * registrations), and each time the fds registered before are still
 * reported with their tags, the refused one never. epoll allocates
 * nothing here (the kernel does): its first try succeeds.
 */
static void test_watch_alloc_failure_changes_nothing(void **state)
{
    (void)state;
    enum { N = 16 };
    struct batch b;
    int sv[N][2];
    for (int i = 0; i < N; i++) {
        test_socketpair(sv[i]);
        test_put_byte(sv[i][1]);
    }
    int nb[2];
    test_socketpair(nb);
    test_put_byte(nb[1]);
    /* A number above 64, so that a per-number table has to grow. */
    int num = fcntl(nb[0], F_DUPFD_CLOEXEC, 200);
    assert_true(num >= 200);
    close(nb[0]);
    nb[0] = num;

    long nth;
    for (nth = 1; nth < 20; nth++) {
        ops->close(pl);
        pl = NULL;
        assert_int_equal(ops->open(&pl), 0);
        for (int i = 0; i < N; i++)
            assert_int_equal(watch(sv[i][0], 0, READ, TAG(100 + i)), 0);
        test_alloc_fail_after(nth);
        int err = watch(num, 0, READ | WRITE, TAG(99));
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        if (err == 0) {
            assert_false(failed);
            break;
        }
        assert_int_equal(err, -ENOMEM);
        poll_now(&b);
        assert_int_equal(b.n, N);
        for (int i = 0; i < N; i++)
            expect(&b, sv[i][0], TAG(100 + i), READ);
        expect_quiet(&b, num);
        /* And the same watch works now. */
        assert_int_equal(watch(num, 0, READ | WRITE, TAG(98)), 0);
        poll_now(&b);
        expect(&b, num, TAG(98), READ | WRITE);
    }
    assert_true(nth < 20);
    poll_now(&b);
    expect(&b, num, TAG(99), READ | WRITE);
    for (int i = 0; i < N; i++)
        expect(&b, sv[i][0], TAG(100 + i), READ);

    assert_int_equal(watch(num, READ | WRITE, 0, 0), 0);
    test_close_pair(nb);
    for (int i = 0; i < N; i++) {
        assert_int_equal(watch(sv[i][0], READ, 0, 0), 0);
        test_close_pair(sv[i]);
    }
}

/* ------------------------------------------------------------------ */
/* Closed fds and reused numbers                                        */
/* ------------------------------------------------------------------ */

/* What a wait may report for fd, watched with tag and closed since. */
typedef void closed_check(const struct batch *b, int fd, uint32_t tag);

/*
 * A watched fd with data pending is closed (the number not reused) next
 * to another watched, readable one: three waits in a row report for it
 * only what check allows, the other fd's READ every time; once
 * forgotten it is quiet, and the other fd is still reported.
 */
static void closed_fd(uint32_t tag, closed_check *check)
{
    struct batch b;
    int sv[2], other[2];
    test_socketpair(sv);
    test_socketpair(other);
    test_put_byte(sv[1]);
    test_put_byte(other[1]);
    int num = sv[0];
    assert_int_equal(watch(num, 0, READ | WRITE, tag), 0);
    assert_int_equal(watch(other[0], 0, READ, tag + 1), 0);
    test_close_fd(&sv[0]);
    for (int i = 0; i < 3; i++) {
        poll_now(&b);
        check(&b, num, tag);
        expect(&b, other[0], tag + 1, READ);
    }
    assert_int_equal(watch(num, READ | WRITE, 0, 0), 0);
    poll_now(&b);
    expect_quiet(&b, num);
    expect(&b, other[0], tag + 1, READ);
    assert_int_equal(watch(other[0], READ, 0, 0), 0);
    test_close_pair(sv);
    test_close_pair(other);
}

/* Never a READ or WRITE for it again, even with data that was pending. */
static void test_closed_fd_no_readiness(void **state)
{
    (void)state;
    closed_fd(TAG(80), expect_no_stale);
}

/*
 * The number closed and reused by a new file: until the loop watches it
 * again, nothing of the new file is reported under the old registration;
 * watching it with old_mask != 0 returns 1 and registers the new file
 * with the mask and tag given.
 */
static void reused_number(unsigned old_mask, unsigned new_mask)
{
    struct batch b;
    int sv[2], nb[2];
    test_socketpair(sv);
    assert_int_equal(watch(sv[0], 0, old_mask, TAG(81)), 0);
    poll_now(&b);
    int num = test_close_and_reuse(sv, nb);
    test_put_byte(nb[1]); /* the new file is readable (and writable) */

    poll_now(&b);
    expect_no_stale(&b, num, TAG(81));
    assert_int_equal(watch(num, old_mask, new_mask, TAG(82)), 1);
    for (int i = 0; i < 2; i++) {
        poll_now(&b);
        expect(&b, num, TAG(82), new_mask);
    }
    /* The new registration is an ordinary one from now on. */
    assert_int_equal(watch(num, new_mask, READ | WRITE, TAG(83)), 0);
    poll_now(&b);
    expect(&b, num, TAG(83), READ | WRITE);
    assert_int_equal(watch(num, READ | WRITE, 0, 0), 0);
    poll_now(&b);
    expect_quiet(&b, num);
    test_close_pair(nb);
}

static void test_reused_number_same_mask(void **state)
{
    (void)state;
    reused_number(READ, READ);
}

static void test_reused_number_other_mask(void **state)
{
    (void)state;
    reused_number(READ, WRITE);
    reused_number(WRITE, READ);
    reused_number(READ | WRITE, READ);
}

/* The number closed and given back to the same file (a dup of it was
 * kept): not another file, so 0, and the events carry the new tag. */
static void test_reused_number_same_file(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    int num = sv[0];
    assert_int_equal(watch(num, 0, READ, TAG(84)), 0);
    int keep = fcntl(num, F_DUPFD_CLOEXEC, 0);
    assert_true(keep >= 0);
    close(num);
    test_move_fd(keep, num);
    assert_int_equal(watch(num, READ, READ, TAG(85)), 0);
    poll_now(&b);
    expect(&b, num, TAG(85), READ);
    assert_int_equal(watch(num, READ, 0, 0), 0);
    test_close_pair(sv);
}

/*
 * The reused-number rule on num, which the caller has just closed (while
 * watched with old_mask and old_tag) and given to another file: before
 * the loop watches again, nothing of the new file is reported under the
 * old registration; watching with old_mask returns 1 and registers the
 * new file with mask and tag, whose events are then want. All three are
 * checked, the number is forgotten, and what went wrong is returned
 * (NULL: nothing) so that the caller can close its fds before failing.
 */
static const char *check_reused(int num, unsigned old_mask, uint32_t old_tag,
                                unsigned mask, uint32_t tag, unsigned want)
{
    static char why[4096];
    size_t len = 0;
    struct batch before, after;
    poll_now(&before);
    int fresh = watch(num, old_mask, mask, tag);
    poll_now(&after);
    int forgot = watch(num, fresh >= 0 ? mask : old_mask, 0, 0);
    why[0] = 0;
    unsigned ev = got(&before, num, old_tag);
    if (got_other(&before, num, old_tag) || (ev != 0 && ev != INVALID))
        len += (size_t)snprintf(why + len, sizeof(why) - len,
                                "\n  before the new watch, the old "
                                "registration (tag %#x) may report only "
                                "COIL__EV_INVALID or nothing; got %s",
                                (unsigned)old_tag, describe(&before));
    if (fresh != 1)
        len += (size_t)snprintf(why + len, sizeof(why) - len,
                                "\n  watch(%d, old_mask %#x, mask %#x) "
                                "returned %d, not 1 (a fresh registration)",
                                num, old_mask, mask, fresh);
    if (got(&after, num, tag) != want || got_other(&after, num, tag))
        len += (size_t)snprintf(why + len, sizeof(why) - len,
                                "\n  then expected events %#x with tag %#x "
                                "only; got %s",
                                want, (unsigned)tag, describe(&after));
    if (forgot != 0 && len < sizeof(why))
        len += (size_t)snprintf(why + len, sizeof(why) - len,
                                "\n  forgetting it returned %d", forgot);
    return len ? why : NULL;
}

/*
 * The number of a watched eventfd reused by another eventfd: another file,
 * so the same rule (every eventfd is a file of its own, though all of
 * them share one inode, like every fd made by anon_inode_getfile: timerfd,
 * signalfd, epoll, inotify...).
 */
static void test_reused_number_eventfd(void **state)
{
    (void)state;
    struct batch b;
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(fd >= 0);
    int num = fd;
    assert_int_equal(watch(num, 0, READ, TAG(86)), 0);
    poll_now(&b);
    expect_quiet(&b, num); /* a zero count: not readable */
    close(fd);
    /* A new eventfd under the number, readable. */
    fd = test_move_fd(eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC), num);
    const char *why = check_reused(num, READ, TAG(86), READ, TAG(87), READ);
    close(fd);
    if (why)
        fail_msg("fd %d, an eventfd closed while watched, its number reused "
                 "by a new eventfd:%s",
                 num, why);
}

/*
 * The number of a watched pipe read end reused by the pipe's write end (so
 * the same pipe, another file): with its only reader gone, the pipe is
 * broken, an error of the new file that the old registration must not
 * report. Watching the new file for WRITE then reports the error
 * (READ|WRITE).
 */
static void test_reused_number_other_pipe_end(void **state)
{
    (void)state;
    struct batch b;
    int p[2];
    test_pipe(p);
    int num = p[0];
    assert_int_equal(watch(num, 0, READ, TAG(88)), 0);
    poll_now(&b);
    expect_quiet(&b, num);
    test_close_fd(&p[0]);
    assert_int_equal(dup3(p[1], num, O_CLOEXEC), num);
    const char *why =
        check_reused(num, READ, TAG(88), WRITE, TAG(89), READ | WRITE);
    close(num);
    test_close_pair(p);
    if (why)
        fail_msg("fd %d, a pipe's read end closed while watched, its number "
                 "reused by the write end:%s",
                 num, why);
}

/*
 * The number reused while a dup keeps the old file open: the kernel may
 * keep the old registration (epoll does), but whatever it reports carries
 * the old tag, and the new tag is only ever reported for the new file's
 * readiness. Watching again returns 1.
 */
static void test_reused_number_old_file_kept_open(void **state)
{
    (void)state;
    struct batch b;
    int sv[2], nb[2];
    test_socketpair(sv);
    int num = sv[0];
    assert_int_equal(watch(num, 0, READ, TAG(90)), 0);
    int keep = fcntl(num, F_DUPFD_CLOEXEC, 0);
    assert_true(keep >= 0);
    test_close_fd(&sv[0]);
    test_socketpair_at(num, nb);

    /* Old file readable, new one not: only the old tag, if anything. */
    test_put_byte(sv[1]);
    poll_now(&b);
    if (got_other(&b, num, TAG(90)))
        fail_msg("fd %d: only the old registration (tag %#x) may report, "
                 "got %s",
                 num, (unsigned)TAG(90), describe(&b));

    assert_int_equal(watch(num, READ, READ, TAG(91)), 1);
    poll_now(&b);
    if (got(&b, num, TAG(91)))
        fail_msg("fd %d: the new file is not readable, yet %s", num,
                 describe(&b));
    for (int i = 0; i < b.n; i++)
        if (b.ev[i].fd == num)
            assert_int_equal(b.ev[i].tag, TAG(90));

    /* The new file readable: reported with the new tag. */
    test_put_byte(nb[1]);
    poll_now(&b);
    assert_int_equal(got(&b, num, TAG(91)), READ);
    for (int i = 0; i < b.n; i++)
        if (b.ev[i].fd == num)
            assert_true(b.ev[i].tag == TAG(91) || b.ev[i].tag == TAG(90));

    /* The old file closed for good: only the new registration is left. */
    test_close_fd(&keep);
    poll_now(&b);
    expect(&b, num, TAG(91), READ);
    assert_int_equal(watch(num, READ, 0, 0), 0);
    poll_now(&b);
    expect_quiet(&b, num);
    test_close_pair(sv);
    test_close_pair(nb);
}

/* ------------------------------------------------------------------ */
/* Batches smaller than what is ready                                   */
/* ------------------------------------------------------------------ */

/* More ready fds than max: each wait reports at most max, and
 * ceil(ready / max) successive waits report every one of them. */
static void batches(int nfds, int max)
{
    enum { N = 40 };
    assert_true(nfds <= N);
    int sv[N][2];
    int seen[N] = {0};
    for (int i = 0; i < nfds; i++) {
        test_socketpair(sv[i]);
        test_put_byte(sv[i][1]);
        assert_int_equal(watch(sv[i][0], 0, READ, TAG(200 + i)), 0);
    }
    int waits = (nfds + max - 1) / max;
    for (int w = 0; w < waits; w++) {
        struct batch b;
        wait_max(-1, max, &b);
        for (int k = 0; k < b.n; k++) {
            int i;
            for (i = 0; i < nfds && sv[i][0] != b.ev[k].fd; i++)
                ;
            assert_true(i < nfds);
            assert_int_equal(b.ev[k].tag, TAG(200 + i));
            assert_int_equal(b.ev[k].events, READ);
            seen[i]++;
        }
    }
    int never = 0;
    for (int i = 0; i < nfds; i++) {
        never += seen[i] == 0;
        assert_int_equal(watch(sv[i][0], READ, 0, 0), 0);
        test_close_pair(sv[i]);
    }
    if (never)
        fail_msg("%d of %d ready fds were not reported by %d waits of at "
                 "most %d events",
                 never, nfds, waits, max);
}

static void test_batch_larger_than_max(void **state)
{
    (void)state;
    batches(20, 4);
    batches(22, 4);
    batches(3, 1);
    batches(40, 7);
}

/* Fds made ready and forgotten between waits: still every ready one is
 * reported within a bounded number of waits, and a forgotten one never. */
static void test_batch_with_forgotten_fds(void **state)
{
    (void)state;
    enum { N = 20, MAX = 4 };
    int sv[N][2];
    bool watched[N], seen[N] = {0};
    for (int i = 0; i < N; i++) {
        test_socketpair(sv[i]);
        test_put_byte(sv[i][1]);
        assert_int_equal(watch(sv[i][0], 0, READ, TAG(300 + i)), 0);
        watched[i] = true;
    }
    for (int w = 0; w < 3 * N; w++) {
        struct batch b;
        wait_max(0, MAX, &b);
        for (int k = 0; k < b.n; k++) {
            int i;
            for (i = 0; i < N && sv[i][0] != b.ev[k].fd; i++)
                ;
            assert_true(i < N);
            assert_true(watched[i]);
            assert_int_equal(b.ev[k].tag, TAG(300 + i));
            seen[i] = true;
        }
        /* After each wait, forget one fd not reported yet (looking at
         * indexes w % 3, w % 3 + 3, ...): the set changes under the
         * backend between waits. */
        for (int i = w % 3; i < N; i += 3)
            if (watched[i] && !seen[i]) {
                assert_int_equal(watch(sv[i][0], READ, 0, 0), 0);
                watched[i] = false;
                break;
            }
    }
    for (int i = 0; i < N; i++) {
        if (watched[i]) {
            assert_true(seen[i]);
            assert_int_equal(watch(sv[i][0], READ, 0, 0), 0);
        }
        test_close_pair(sv[i]);
    }
}

/* ------------------------------------------------------------------ */
/* poll: COIL__EV_INVALID                                               */
/* ------------------------------------------------------------------ */

static void expect_invalid(const struct batch *b, int fd, uint32_t tag)
{
    expect(b, fd, tag, INVALID);
}

/* An fd closed while watched is reported with COIL__EV_INVALID and its
 * tag, at every wait, until forgotten. */
static void test_poll_closed_fd_invalid(void **state)
{
    (void)state;
    closed_fd(TAG(400), expect_invalid);
}

/* The number reused by a ready file before the loop watched it again:
 * COIL__EV_INVALID with the old tag, not the new file's readiness. */
static void test_poll_reused_number_invalid(void **state)
{
    (void)state;
    struct batch b;
    int sv[2], nb[2];
    test_socketpair(sv);
    int num = sv[0];
    assert_int_equal(watch(num, 0, READ, TAG(402)), 0);
    test_close_and_reuse(sv, nb);
    test_put_byte(nb[1]);
    poll_now(&b);
    expect(&b, num, TAG(402), INVALID);
    assert_int_equal(watch(num, READ, READ, TAG(403)), 1);
    poll_now(&b);
    expect(&b, num, TAG(403), READ);
    assert_int_equal(watch(num, READ, 0, 0), 0);
    test_close_pair(nb);
}

/* A regular file can be polled (always ready): watch registers it. */
static void test_poll_regular_file(void **state)
{
    (void)state;
    struct batch b;
    FILE *f = tmpfile();
    assert_non_null(f);
    int fd = fileno(f);
    assert_int_equal(watch(fd, 0, READ, TAG(404)), 0);
    poll_now(&b);
    expect(&b, fd, TAG(404), READ);
    assert_int_equal(watch(fd, READ, WRITE, TAG(405)), 0);
    poll_now(&b);
    expect(&b, fd, TAG(405), WRITE);
    assert_int_equal(watch(fd, WRITE, 0, 0), 0);
    fclose(f);
}

/* ------------------------------------------------------------------ */
/* epoll (and kqueue): a closed fd goes quiet                           */
/* ------------------------------------------------------------------ */

static void expect_nothing(const struct batch *b, int fd, uint32_t tag)
{
    (void)tag;
    expect_quiet(b, fd);
}

static void test_closed_fd_goes_quiet(void **state)
{
    (void)state;
    closed_fd(TAG(500), expect_nothing);
}

/* ------------------------------------------------------------------ */
/* epoll                                                                */
/* ------------------------------------------------------------------ */

/* epoll cannot poll a regular file: -EPERM for every mask, also when the
 * number of a watched socket was reused by one; nothing registered. */
static void test_epoll_regular_file_eperm(void **state)
{
    (void)state;
    struct batch b;
    FILE *f = tmpfile();
    assert_non_null(f);
    int fd = fileno(f);
    assert_int_equal(watch(fd, 0, READ, TAG(600)), -EPERM);
    assert_int_equal(watch(fd, 0, WRITE, TAG(600)), -EPERM);
    assert_int_equal(watch(fd, 0, READ | WRITE, TAG(600)), -EPERM);
    poll_now(&b);
    assert_int_equal(b.n, 0);
    assert_int_equal(watch(fd, 0, 0, 0), 0);

    int sv[2];
    test_socketpair(sv);
    int num = sv[0];
    assert_int_equal(watch(num, 0, READ, TAG(601)), 0);
    test_close_fd(&sv[0]);
    test_move_fd(dup(fd), num);
    assert_int_equal(watch(num, READ, READ, TAG(602)), -EPERM);
    poll_now(&b);
    expect_quiet(&b, num);
    assert_int_equal(watch(num, READ, 0, 0), 0);
    close(num);
    test_close_pair(sv);
    fclose(f);
}

/* epoll_ctl failing (ENOMEM, injected) changes nothing: a widening, a
 * narrowing, a new tag, a fresh registration. */
static void test_epoll_ctl_failure_changes_nothing(void **state)
{
    (void)state;
    struct batch b;
    int sv[2], other[2];
    test_socketpair(sv);
    test_socketpair(other);
    test_put_byte(sv[1]);
    test_put_byte(other[1]);
    assert_int_equal(watch(sv[0], 0, READ, TAG(610)), 0);

    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(watch(sv[0], READ, READ | WRITE, TAG(611)), -ENOMEM);
    assert_int_equal(coil__fault_calls(COIL__SYS_EPOLL_CTL), 1);
    poll_now(&b);
    expect(&b, sv[0], TAG(610), READ);

    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(watch(sv[0], READ, READ, TAG(612)), -ENOMEM);
    poll_now(&b);
    expect(&b, sv[0], TAG(610), READ);

    assert_int_equal(watch(sv[0], READ, READ | WRITE, TAG(613)), 0);
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(watch(sv[0], READ | WRITE, WRITE, TAG(614)), -ENOMEM);
    poll_now(&b);
    expect(&b, sv[0], TAG(613), READ | WRITE);

    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(watch(other[0], 0, READ, TAG(615)), -ENOMEM);
    poll_now(&b);
    expect_quiet(&b, other[0]);
    expect(&b, sv[0], TAG(613), READ | WRITE);
    assert_int_equal(watch(other[0], 0, READ, TAG(616)), 0);
    poll_now(&b);
    expect(&b, other[0], TAG(616), READ);

    assert_int_equal(watch(sv[0], READ | WRITE, 0, 0), 0);
    assert_int_equal(watch(other[0], READ, 0, 0), 0);
    test_close_pair(sv);
    test_close_pair(other);
}

/* A reused number whose fresh registration fails (the second epoll_ctl):
 * -ENOMEM, the new file not registered; the same watch again returns 1. */
static void test_epoll_reused_number_add_fails(void **state)
{
    (void)state;
    struct batch b;
    int sv[2], nb[2];
    test_socketpair(sv);
    assert_int_equal(watch(sv[0], 0, READ, TAG(620)), 0);
    int num = test_close_and_reuse(sv, nb);
    test_put_byte(nb[1]);
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 2, 1, ENOMEM);
    assert_int_equal(watch(num, READ, READ, TAG(621)), -ENOMEM);
    assert_int_equal(coil__fault_calls(COIL__SYS_EPOLL_CTL), 2);
    poll_now(&b);
    expect_quiet(&b, num);
    assert_int_equal(watch(num, READ, READ, TAG(622)), 1);
    poll_now(&b);
    expect(&b, num, TAG(622), READ);
    assert_int_equal(watch(num, READ, 0, 0), 0);
    test_close_pair(nb);
}

/* Forgetting never fails, even when epoll_ctl does (injected); a fresh
 * registration of an fd the kernel still holds (old_mask 0) takes over
 * the kernel's with the new mask and tag, and a failure there changes
 * nothing either. */
static void test_epoll_forget_fails_then_readd(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ, TAG(630)), 0);
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    assert_int_equal(coil__fault_calls(COIL__SYS_EPOLL_CTL), 1);

    coil__fault_arm(COIL__SYS_EPOLL_CTL, 2, 1, ENOMEM);
    assert_int_equal(watch(sv[0], 0, READ | WRITE, TAG(631)), -ENOMEM);
    assert_int_equal(coil__fault_calls(COIL__SYS_EPOLL_CTL), 2);
    poll_now(&b);
    expect(&b, sv[0], TAG(630), READ);

    assert_int_equal(watch(sv[0], 0, READ | WRITE, TAG(632)), 0);
    poll_now(&b);
    expect(&b, sv[0], TAG(632), READ | WRITE);
    assert_int_equal(watch(sv[0], READ | WRITE, 0, 0), 0);
    poll_now(&b);
    expect_quiet(&b, sv[0]);
    test_close_pair(sv);
}

/* What epoll documents for a number reused while a dup keeps the old file
 * open: the old registration stays, and its events carry the old tag
 * until the old file is closed for good. */
static void test_epoll_stale_registration_old_tag(void **state)
{
    (void)state;
    struct batch b;
    int sv[2], nb[2];
    test_socketpair(sv);
    int num = sv[0];
    assert_int_equal(watch(num, 0, READ, TAG(640)), 0);
    int keep = fcntl(num, F_DUPFD_CLOEXEC, 0);
    assert_true(keep >= 0);
    test_close_fd(&sv[0]);
    test_socketpair_at(num, nb);
    test_put_byte(sv[1]);
    test_put_byte(nb[1]);

    poll_now(&b);
    expect(&b, num, TAG(640), READ); /* the old file, the old tag */
    assert_int_equal(watch(num, READ, READ, TAG(641)), 1);
    poll_now(&b);
    assert_int_equal(count_fd(&b, num), 2); /* two registrations */
    assert_int_equal(got(&b, num, TAG(640)), READ);
    assert_int_equal(got(&b, num, TAG(641)), READ);

    /* Forgetting the number forgets the new file's registration. */
    assert_int_equal(watch(num, READ, 0, 0), 0);
    poll_now(&b);
    expect(&b, num, TAG(640), READ);
    test_close_fd(&keep);
    poll_now(&b);
    expect_quiet(&b, num);
    test_close_pair(sv);
    test_close_pair(nb);
}

/* epoll_create1 failing: open returns its error and leaves nothing. */
static void test_epoll_create_fails(void **state)
{
    (void)state;
    const struct coil__poller_ops *o;
    assert_int_equal(coil__poller_find(NULL, &o), 0);
    struct coil__poller *p;
    static const int errs[] = {EMFILE, ENFILE, ENOMEM};
    for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++) {
        coil__fault_arm(COIL__SYS_EPOLL_CREATE, 1, 1, errs[i]);
        assert_int_equal(o->open(&p), -errs[i]);
    }
    assert_int_equal(o->open(&p), 0);
    o->close(p);
}

#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define HAVE_PWAIT2_HOOK 1
void coil__epoll_pwait2_reset(void); /* test build only */

/* Sub-millisecond timeouts go through epoll_pwait2: EINTR there is zero
 * events too; a kernel without it (ENOSYS) makes the backend fall back
 * to epoll_wait for good, whose millisecond timeouts are rounded up, so
 * still never early. */
static void test_epoll_pwait2(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    test_put_byte(sv[1]);
    assert_int_equal(watch(sv[0], 0, READ, TAG(650)), 0);

    coil__epoll_pwait2_reset();
    coil__fault_arm(COIL__SYS_EPOLL_PWAIT2, 1, 1, EINTR);
    wait_all(1500000, &b);
    assert_int_equal(coil__fault_calls(COIL__SYS_EPOLL_PWAIT2), 1);
    assert_int_equal(b.n, 0);
    wait_all(1500000, &b);
    expect(&b, sv[0], TAG(650), READ);
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);

    coil__epoll_pwait2_reset();
    coil__fault_arm(COIL__SYS_EPOLL_PWAIT2, 1, 1, ENOSYS);
    timeouts_never_early();
    /* Only the first wait tried epoll_pwait2. */
    assert_int_equal(coil__fault_calls(COIL__SYS_EPOLL_PWAIT2), 1);
    coil__epoll_pwait2_reset();
    test_close_pair(sv);
}
#endif

/* A test with a poller of the backend under test (setup/teardown). */
/* ------------------------------------------------------------------ */
/* io_uring's own                                                       */
/* ------------------------------------------------------------------ */

/* Raise the soft fd limit to the hard one; false if under need. */
static bool fds_up_to(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    if (rl.rlim_cur < need && rl.rlim_max >= need) {
        rl.rlim_cur = need;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur >= need;
}

/*
 * A kernel that refuses io_uring_setup (seccomp's EPERM, ENOSYS) makes
 * the loop fall back to epoll with a warning saying why; a setup that
 * runs out of memory or fds is an error as it would be on epoll. A
 * kernel that does not know the newer setup flags (EINVAL) gets asked
 * again without them.
 */
static void test_uring_setup_refused(void **state)
{
    (void)state;
    const struct coil__poller_ops *o;
    struct coil__poller *p;
    static const int refused[] = {EPERM, ENOSYS, EACCES, ENOMEM};
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        test_allow_reports("io_uring cannot be used");
        int before = test_reports_seen();
        coil__fault_arm(COIL__SYS_IO_URING_SETUP, 1, 2, refused[i]);
        assert_int_equal(coil__poller_open("io_uring", &o, &p), 0);
        assert_string_equal(o->name, "epoll");
        assert_int_equal(test_reports_seen(), before + 1);
        o->close(p);
        /* A loop asked for io_uring says which backend it has. */
        coil__fault_arm(COIL__SYS_IO_URING_SETUP, 1, 2, refused[i]);
        coil_loop_t *loop;
        coil_loop_options_t opts = {.backend = "io_uring"};
        assert_int_equal(coil_loop_new_opts(&opts, &loop), 0);
        assert_string_equal(coil_loop_backend(loop), "epoll");
        coil_loop_unref(loop);
    }
    /* Out of fds: epoll would be too. Out of the allocator's memory:
     * so would epoll (the kernel's ENOMEM above is the ring's locked
     * memory, which epoll does not need). */
    static const int fatal[] = {EMFILE, ENFILE};
    for (size_t i = 0; i < sizeof(fatal) / sizeof(*fatal); i++) {
        coil__fault_arm(COIL__SYS_IO_URING_SETUP, 1, 2, fatal[i]);
        assert_int_equal(coil__poller_open("io_uring", &o, &p), -fatal[i]);
    }
    test_alloc_fail_after(1);
    int r = coil__poller_open("io_uring", &o, &p);
    test_alloc_fail_after(0);
    assert_int_equal(r, -ENOMEM);
    coil__fault_arm(COIL__SYS_IO_URING_SETUP, 1, 1, EINVAL);
    assert_int_equal(coil__poller_open("io_uring", &o, &p), 0);
    assert_string_equal(o->name, "io_uring");
    assert_int_equal(coil__fault_calls(COIL__SYS_IO_URING_SETUP), 2);
    o->close(p);
}

/*
 * More fds to arm than the submission ring holds (256), and more ready
 * at once than the completion ring (4096): the arms go in several
 * submissions, the completions past the ring wait in the kernel
 * (IORING_FEAT_NODROP), and every fd is reported, each once per round,
 * round after round (level-triggered).
 */
static void test_uring_rings_overflow(void **state)
{
    (void)state;
    enum { PAIRS = 2200, FDS = 2 * PAIRS };
    if (!fds_up_to(FDS + 64))
        skip(); /* the machine's hard limit is too low */
    int (*sv)[2] = calloc(PAIRS, sizeof(*sv));
    unsigned char *seen = calloc(FDS + 64, 1);
    assert_non_null(sv);
    assert_non_null(seen);
    int hi = -1;
    for (int i = 0; i < PAIRS; i++) {
        test_socketpair(sv[i]);
        for (int e = 0; e < 2; e++) {
            assert_int_equal(watch(sv[i][e], 0, WRITE, TAG(200)), 0);
            hi = sv[i][e] > hi ? sv[i][e] : hi;
        }
    }
    assert_true(hi < FDS + 64);
    for (int round = 0; round < 2; round++) {
        memset(seen, 0, FDS + 64);
        int got_fds = 0;
        struct batch b;
        for (int waits = 0; got_fds < FDS && waits < 4 * FDS; waits++) {
            wait_all(0, &b);
            for (int i = 0; i < b.n; i++) {
                assert_int_equal(b.ev[i].events, WRITE);
                assert_int_equal(b.ev[i].tag, TAG(200));
                if (!seen[b.ev[i].fd]++)
                    got_fds++;
            }
        }
        assert_int_equal(got_fds, FDS);
    }
    for (int i = 0; i < PAIRS; i++) {
        for (int e = 0; e < 2; e++)
            assert_int_equal(watch(sv[i][e], WRITE, 0, 0), 0);
        test_close_pair(sv[i]);
    }
    free(seen);
    free(sv);
}

/*
 * A removal whose submission fails (the enter interrupted, or refused)
 * stays queued and goes with the next wait; the poll it removes never
 * reports under the forgotten registration, and the fd can be watched
 * again at once with a new tag.
 */
static void test_uring_removal_submit_fails(void **state)
{
    (void)state;
    struct batch b;
    int sv[2];
    test_socketpair(sv);
    assert_int_equal(watch(sv[0], 0, READ, TAG(201)), 0);
    poll_now(&b); /* the poll is in flight */
    expect_quiet(&b, sv[0]);
    static const int errs[] = {EINTR, EBUSY, ENOMEM};
    for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++) {
        coil__fault_arm(COIL__SYS_IO_URING_ENTER, 1, 1, errs[i]);
        assert_int_equal(watch(sv[0], READ, 0, 0), 0);
        test_put_byte(sv[1]);
        poll_now(&b);
        expect_quiet(&b, sv[0]);
        assert_int_equal(watch(sv[0], 0, READ, TAG(202 + (int)i)), 0);
        poll_now(&b);
        expect(&b, sv[0], TAG(202 + (int)i), READ);
        char c;
        assert_int_equal(read(sv[0], &c, 1), 1);
        poll_now(&b);
        expect_quiet(&b, sv[0]);
    }
    assert_int_equal(watch(sv[0], READ, 0, 0), 0);
    test_close_pair(sv);
}

/*
 * Removals that cannot even be queued (the submission ring full, the
 * kernel refusing every enter) are owed: the next waits submit them, and
 * once each fd is closed its peer sees the end (the idle polls, which
 * would never fire, let go of the files).
 */
static void test_uring_removal_owed(void **state)
{
    (void)state;
    enum { PAIRS = 300 };
    if (!fds_up_to(2 * PAIRS + 64))
        skip();
    int (*sv)[2] = calloc(PAIRS, sizeof(*sv));
    assert_non_null(sv);
    struct batch b;
    for (int i = 0; i < PAIRS; i++) {
        test_socketpair(sv[i]);
        assert_int_equal(watch(sv[i][0], 0, READ, TAG(210)), 0);
    }
    poll_now(&b); /* every poll in flight */
    assert_int_equal(b.n, 0);
    coil__fault_arm(COIL__SYS_IO_URING_ENTER, 1, 100000, ENOMEM);
    for (int i = 0; i < PAIRS; i++)
        assert_int_equal(watch(sv[i][0], READ, 0, 0), 0);
    coil__fault_arm(COIL__SYS_IO_URING_ENTER, 1, 0, 0);
    for (int k = 0; k < 3; k++) {
        wait_all(0, &b);
        assert_int_equal(b.n, 0);
    }
    for (int i = 0; i < PAIRS; i++) {
        char c;
        test_close_fd(&sv[i][0]);
        assert_int_equal(recv(sv[i][1], &c, 1, MSG_DONTWAIT), 0);
        test_close_fd(&sv[i][1]);
    }
    free(sv);
}

#define TEST_POLLER(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_open_close),
        TEST_NOLOOP(test_close_with_watched_fds),
        TEST_NOLOOP(test_open_alloc_failure),
        TEST_POLLER(test_watch_read),
        TEST_POLLER(test_watch_write),
        TEST_POLLER(test_watch_both),
        TEST_POLLER(test_change_mask),
        TEST_POLLER(test_same_mask_new_tag),
        TEST_POLLER(test_tag_bits),
        TEST_POLLER(test_forget),
        TEST_POLLER(test_level_triggered),
        TEST_POLLER(test_hangup_socket_read_watch),
        TEST_POLLER(test_hangup_socket_write_watch),
        TEST_POLLER(test_hangup_pipe_write_watch),
        TEST_POLLER(test_error_pipe_read_watch),
        TEST_POLLER(test_wait_zero),
        TEST_POLLER(test_wait_timeout_never_early),
        TEST_POLLER(test_wait_forever_ready),
        TEST_POLLER(test_wait_forever_blocks),
        TEST_POLLER(test_wait_eintr),
        TEST_POLLER(test_wait_fails),
        TEST_POLLER(test_watch_not_open),
        TEST_POLLER(test_watch_closed_changes_nothing),
        TEST_POLLER(test_watch_unpollable_opath),
        TEST_POLLER(test_watch_alloc_failure_changes_nothing),
        TEST_POLLER(test_closed_fd_no_readiness),
        TEST_POLLER(test_reused_number_same_mask),
        TEST_POLLER(test_reused_number_other_mask),
        TEST_POLLER(test_reused_number_same_file),
        TEST_POLLER(test_reused_number_other_pipe_end),
        TEST_POLLER(test_reused_number_old_file_kept_open),
        TEST_POLLER(test_batch_larger_than_max),
        TEST_POLLER(test_batch_with_forgotten_fds),
    };
    /* poll finds closed fds itself (POLLNVAL, or another file under the
     * number) and can poll regular files. */
    const struct CMUnitTest poll_tests[] = {
        TEST_POLLER(test_poll_closed_fd_invalid),
        TEST_POLLER(test_poll_reused_number_invalid),
        TEST_POLLER(test_poll_regular_file),
    };
    /* epoll and kqueue: close() removes the registration, and they track
     * open files, not numbers: two files that share an inode (eventfds)
     * are told apart. */
    const struct CMUnitTest quiet_tests[] = {
        TEST_POLLER(test_closed_fd_goes_quiet),
        TEST_POLLER(test_reused_number_eventfd),
    };
    const struct CMUnitTest epoll_tests[] = {
        TEST_POLLER(test_epoll_regular_file_eperm),
        TEST_POLLER(test_epoll_ctl_failure_changes_nothing),
        TEST_POLLER(test_epoll_reused_number_add_fails),
        TEST_POLLER(test_epoll_forget_fails_then_readd),
        TEST_POLLER(test_epoll_stale_registration_old_tag),
        TEST_NOLOOP(test_epoll_create_fails),
#ifdef HAVE_PWAIT2_HOOK
        TEST_POLLER(test_epoll_pwait2),
#endif
    };
    const struct CMUnitTest uring_tests[] = {
        TEST_NOLOOP(test_uring_setup_refused),
        TEST_POLLER(test_uring_rings_overflow),
        TEST_POLLER(test_uring_removal_submit_fails),
        TEST_POLLER(test_uring_removal_owed),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += TEST_RUN_IF(test_on_backend("poll"),
                          "they check poll's own COIL__EV_INVALID and "
                          "regular files",
                          poll_tests);
    failed += TEST_RUN_IF(test_on_backend("epoll") || test_on_backend("kqueue"),
                          "on this backend a closed fd is reported "
                          "(COIL__EV_INVALID), not dropped, and files are "
                          "named by (device, inode, mode), so two eventfds "
                          "look alike (poller_poll.c: known limit)",
                          quiet_tests);
    failed += TEST_RUN_IF(test_on_backend("epoll"),
                          "they check epoll's own errors, faults and "
                          "stale registrations",
                          epoll_tests);
    failed += TEST_RUN_IF(test_on_backend("io_uring"),
                          "they check io_uring's own set-up, ring sizes "
                          "and removals",
                          uring_tests);
    return failed;
}
