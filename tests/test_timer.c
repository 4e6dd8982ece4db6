/* SPDX-License-Identifier: MIT */
/*
 * test_timer.c - call_later / call_at: deadline order, FIFO among equal
 * deadlines, cancellation (before and after expiry, from a timer due in
 * the same batch), zero, negative and far-future delays, time caching.
 * Most tests run on the test build's virtual clock with autojump, so they
 * never sleep and are deterministic.
 */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "loop_internal.h"

#define MAXLOG 256

struct log {
    coil_loop_t *loop;
    int ids[MAXLOG];
    int64_t at[MAXLOG]; /* loop time when each ran */
    int n;
};

struct entry {
    struct log *log;
    int id;
    int64_t deadline;
};

static void record(void *arg)
{
    struct entry *e = arg;
    struct log *l = e->log;
    if (l->n < MAXLOG) {
        l->at[l->n] = coil_loop_time(l->loop);
        l->ids[l->n++] = e->id;
    }
}

static void test_deadline_order(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    enum { N = 200 };
    struct entry e[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        int64_t delay = (rand() % 1000) * COIL_MSEC;
        e[i] = (struct entry){&log, i, coil_loop_time(f->loop) + delay};
        assert_int_equal(
            coil_loop_call_later(f->loop, delay, record, &e[i], NULL), 0);
    }
    assert_int_equal(coil_loop_call_later(f->loop, 2 * COIL_SEC, test_stop_cb,
                                          f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, N);
    for (int i = 0; i < N; i++) {
        struct entry *x = &e[log.ids[i]];
        /* Never early, and in (deadline, scheduling) order. */
        assert_true(log.at[i] >= x->deadline);
        if (i > 0) {
            struct entry *p = &e[log.ids[i - 1]];
            assert_true(p->deadline < x->deadline ||
                        (p->deadline == x->deadline && p->id < x->id));
        }
    }
}

static void test_equal_deadlines_fifo(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e[50];
    int64_t when = coil_loop_time(f->loop) + 5 * COIL_MSEC;
    for (int i = 0; i < 50; i++) {
        e[i] = (struct entry){&log, i, when};
        assert_int_equal(coil_loop_call_at(f->loop, when, record, &e[i], NULL),
                         0);
    }
    assert_int_equal(
        coil_loop_call_at(f->loop, when, test_stop_cb, f->loop, NULL), 0);
    test_run(f->loop);
    assert_int_equal(log.n, 50);
    for (int i = 0; i < 50; i++)
        assert_int_equal(log.ids[i], i);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e[10];
    coil_handle_t *h[10];
    for (int i = 0; i < 10; i++) {
        e[i] = (struct entry){&log, i, 0};
        assert_int_equal(coil_loop_call_later(f->loop, (i + 1) * COIL_MSEC,
                                              record, &e[i], &h[i]),
                         0);
        assert_int_equal(coil_handle_when(h[i]),
                         coil_loop_time(f->loop) + (i + 1) * COIL_MSEC);
    }
    for (int i = 0; i < 10; i += 2)
        assert_int_equal(coil_handle_cancel(h[i]), 0);
    /* A cancelled timer leaves the heap at once. */
    assert_int_equal(f->loop->timers.heap.len, 5);
    assert_int_equal(f->loop->timers.count, 5);
    assert_int_equal(coil_loop_call_later(f->loop, 20 * COIL_MSEC, test_stop_cb,
                                          f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.ids[i], 2 * i + 1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(coil_handle_cancel(h[i]), 0); /* after: harmless */
        coil_handle_unref(h[i]);
    }
    assert_int_equal(f->loop->timers.heap.len, 0);
}

/* Two timers due in the same batch; the first cancels the second. */
struct pair {
    coil_handle_t *other;
    int ran_first, ran_second;
};

static void pair_first(void *arg)
{
    struct pair *p = arg;
    p->ran_first++;
    coil_handle_cancel(p->other);
}

static void pair_second(void *arg)
{
    ((struct pair *)arg)->ran_second++;
}

static void test_cancel_due_in_same_batch(void **state)
{
    struct fixture *f = *state;
    struct pair p = {0};
    int64_t when = coil_loop_time(f->loop) + COIL_MSEC;
    assert_int_equal(coil_loop_call_at(f->loop, when, pair_first, &p, NULL), 0);
    assert_int_equal(
        coil_loop_call_at(f->loop, when, pair_second, &p, &p.other), 0);
    assert_int_equal(coil_loop_call_later(f->loop, 10 * COIL_MSEC, test_stop_cb,
                                          f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(p.ran_first, 1);
    assert_int_equal(p.ran_second, 0);
    coil_handle_unref(p.other);
}

static void test_zero_and_negative_delays(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry soon = {&log, 1, 0}, zero = {&log, 2, 0}, neg = {&log, 3, 0},
                 past = {&log, 4, 0};
    /* The timers are scheduled first but the call_soon is ready first. */
    assert_int_equal(coil_loop_call_later(f->loop, 0, record, &zero, NULL), 0);
    assert_int_equal(
        coil_loop_call_later(f->loop, -COIL_SEC, record, &neg, NULL), 0);
    assert_int_equal(coil_loop_call_at(f->loop, INT64_MIN, record, &past, NULL),
                     0);
    assert_int_equal(coil_loop_call_soon(f->loop, record, &soon, NULL), 0);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, test_stop_cb, f->loop, NULL),
        0);
    test_run(f->loop);
    assert_int_equal(log.n, 4);
    assert_int_equal(log.ids[0], 1);
    /* Due timers by deadline: INT64_MIN, then -1 s, then 0. */
    assert_int_equal(log.ids[1], 4);
    assert_int_equal(log.ids[2], 3);
    assert_int_equal(log.ids[3], 2);
}

static void test_far_future(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry far = {&log, 1, 0};
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_later(f->loop, INT64_MAX, record, &far, &h),
                     0);
    assert_int_equal(coil_handle_when(h), INT64_MAX); /* saturated */
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_SEC, test_stop_cb, f->loop, NULL),
        0);
    test_run(f->loop);
    assert_int_equal(log.n, 0);
    /* A year of virtual time later it is still pending. */
    coil_test_clock_advance(365LL * 24 * 3600 * COIL_SEC);
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 0);
    assert_int_equal(f->loop->timers.heap.len, 1);
    assert_int_equal(coil_handle_cancel(h), 0);
    assert_int_equal(f->loop->timers.heap.len, 0);
    coil_handle_unref(h);
}

/* A timer that re-arms itself from its own callback. */
struct rearm {
    coil_loop_t *loop;
    int count;
};

static void rearm_cb(void *arg)
{
    struct rearm *r = arg;
    if (++r->count < 100)
        coil_loop_call_later(r->loop, COIL_MSEC, rearm_cb, r, NULL);
    else
        coil_loop_stop(r->loop);
}

static void test_rearm_from_callback(void **state)
{
    struct fixture *f = *state;
    struct rearm r = {f->loop, 0};
    int64_t start = coil_loop_time(f->loop);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, rearm_cb, &r, NULL), 0);
    test_run(f->loop);
    assert_int_equal(r.count, 100);
    assert_true(coil_loop_time(f->loop) - start >= 100 * COIL_MSEC);
}

static void test_time_cache(void **state)
{
    struct fixture *f = *state;
    int64_t t0 = coil_loop_time(f->loop);
    coil_test_clock_advance(5 * COIL_MSEC);
    assert_int_equal(coil_loop_time(f->loop), t0); /* cached */
    assert_int_equal(coil_loop_update_time(f->loop), t0 + 5 * COIL_MSEC);
    assert_int_equal(coil_loop_time(f->loop), t0 + 5 * COIL_MSEC);
    assert_int_equal(coil_loop_time(NULL), 0);
    assert_int_equal(coil_loop_update_time(NULL), 0);
}

static void noop(void *arg)
{
    (void)arg;
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_handle_t *h = (coil_handle_t *)1;
    assert_int_equal(coil_loop_call_later(NULL, 0, noop, NULL, &h), -EINVAL);
    assert_null(h);
    h = (coil_handle_t *)1;
    assert_int_equal(coil_loop_call_at(f->loop, 0, NULL, NULL, &h), -EINVAL);
    assert_null(h);
    assert_int_equal(coil_loop_call_later(f->loop, 0, NULL, NULL, NULL),
                     -EINVAL);
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_int_equal(coil_loop_call_later(f->loop, 0, noop, NULL, NULL),
                     -EBADF);
    assert_int_equal(coil_loop_call_at(f->loop, 0, noop, NULL, &h), -EBADF);
    assert_null(h);
}

/* Closing drops pending timers; held handles stay usable. */
static void test_close_with_timers(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e = {&log, 1, 0};
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_later(f->loop, COIL_MSEC, record, &e, &h),
                     0);
    assert_int_equal(coil_loop_call_later(f->loop, COIL_MSEC, record, &e, NULL),
                     0);
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_int_equal(coil_handle_cancel(h), 0);
    coil_handle_unref(h);
    assert_int_equal(log.n, 0);
}

/* On the real clock: a 2 ms timer fires, never before its deadline. */
static void test_real_clock(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e = {&log, 1, 0};
    coil_handle_t *h;
    assert_int_equal(
        coil_loop_call_later(f->loop, 2 * COIL_MSEC, record, &e, &h), 0);
    assert_int_equal(coil_loop_call_later(f->loop, 3 * COIL_MSEC, test_stop_cb,
                                          f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 1);
    assert_true(log.at[0] >= coil_handle_when(h));
    assert_true(coil_now() >= coil_handle_when(h));
    coil_handle_unref(h);
}

/* A kernel without epoll_pwait2 (ENOSYS): the epoll backend falls back to
 * epoll_wait, and timers still fire, never early. Real clock. (Under
 * valgrind, which does not know the call, the process has fallen back
 * already: the hook makes it try again.) */
void coil__epoll_pwait2_reset(void); /* test build only */

static void test_epoll_without_pwait2(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e = {&log, 1, 0};
    coil_handle_t *h;
    coil__epoll_pwait2_reset();
    coil__fault_arm(COIL__SYS_EPOLL_PWAIT2, 1, 1, ENOSYS);
    /* A loop that fell behind (a loaded machine, a sanitizer) finds both
     * timers due and never waits: run again until one wait has gone
     * through epoll_pwait2, and so met the ENOSYS. */
    for (int i = 0; i < 100 && coil__fault_calls(COIL__SYS_EPOLL_PWAIT2) == 0;
         i++) {
        log.n = 0;
        assert_int_equal(
            coil_loop_call_later(f->loop, 1500 * COIL_USEC, record, &e, &h), 0);
        assert_int_equal(coil_loop_call_later(f->loop, 3 * COIL_MSEC,
                                              test_stop_cb, f->loop, NULL),
                         0);
        test_run(f->loop);
        assert_int_equal(log.n, 1);
        assert_true(log.at[0] >= coil_handle_when(h));
        coil_handle_unref(h);
    }
    assert_int_equal(coil__fault_calls(COIL__SYS_EPOLL_PWAIT2), 1);
    /* The injected ENOSYS was consumed: the fallback was taken. */
    assert_int_equal(coil__fault_hit(COIL__SYS_EPOLL_PWAIT2), 0);
}

/* Many timers: every second one cancelled, the heap shrinks back. */
static void test_many_with_cancellation(void **state)
{
    struct fixture *f = *state;
    enum { N = 20000 };
    struct log log = {.loop = f->loop};
    struct entry e = {&log, 0, 0};
    coil_handle_t **h = test_calloc(N, sizeof(*h));
    srand(3);
    for (int i = 0; i < N; i++)
        assert_int_equal(coil_loop_call_later(f->loop,
                                              (rand() % 100) * COIL_MSEC,
                                              record, &e, i % 2 ? &h[i] : NULL),
                         0);
    for (int i = 1; i < N; i += 2) {
        coil_handle_cancel(h[i]);
        coil_handle_unref(h[i]);
    }
    assert_int_equal(f->loop->timers.count, N / 2);
    assert_int_equal(coil_loop_call_later(f->loop, 200 * COIL_MSEC,
                                          test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, MAXLOG); /* capped log: at least that many */
    assert_int_equal(f->loop->timers.count, 0);
    assert_int_equal(f->loop->timers.heap.len, 0);
    assert_true(f->loop->timers.heap.cap <= 64);
    test_free(h);
}

/*
 * Timers with one deadline share a ring (timer.c). Order must stay exact
 * across rings of the same deadline split by other timers, and cancelling
 * a ring's leader or a member must keep the rest in order.
 */
static void test_same_deadline_rings(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    int64_t now = coil_loop_time(f->loop);
    int64_t T = now + 10 * COIL_MSEC, T2 = now + 5 * COIL_MSEC;
    /* A B (ring at T), C (T2), D E (a second ring at T), F G H (T). */
    int64_t at[8] = {T, T, T2, T, T, T, T, T};
    struct entry e[8];
    coil_handle_t *h[8];
    for (int i = 0; i < 8; i++) {
        e[i] = (struct entry){&log, i, at[i]};
        assert_int_equal(
            coil_loop_call_at(f->loop, at[i], record, &e[i], &h[i]), 0);
    }
    assert_int_equal(f->loop->timers.count, 8);
    /* Two heap entries for T (the split), one for T2. */
    assert_int_equal(f->loop->timers.heap.len, 3);
    for (int i = 0; i < 8; i++)
        assert_int_equal(coil_handle_when(h[i]), at[i]);
    /* Cancel A (a leader with a member), E (a member), H (the tail). */
    assert_int_equal(coil_handle_cancel(h[0]), 0);
    assert_int_equal(coil_handle_cancel(h[4]), 0);
    assert_int_equal(coil_handle_cancel(h[7]), 0);
    assert_int_equal(f->loop->timers.count, 5);
    assert_int_equal(coil_handle_when(h[1]), T); /* B leads now */
    assert_int_equal(coil_handle_when(h[0]), T); /* kept after cancel */
    assert_int_equal(coil_loop_call_later(f->loop, 20 * COIL_MSEC, test_stop_cb,
                                          f->loop, NULL),
                     0);
    test_run(f->loop);
    static const int expect[] = {2, 1, 3, 5, 6};
    assert_int_equal(log.n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.ids[i], expect[i]);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(coil_handle_when(h[i]), at[i]);
        coil_handle_unref(h[i]);
    }
    assert_int_equal(f->loop->timers.count, 0);
}

/* A timer callback that schedules a timer already due: it runs in the
 * next iteration, not in the batch being run. */
struct chained {
    coil_loop_t *loop;
    int first_iter_hits, second;
    struct log *log;
};

static void due_again(void *arg)
{
    ((struct chained *)arg)->second++;
}

static void first_due(void *arg)
{
    struct chained *c = arg;
    c->first_iter_hits++;
    coil_loop_call_at(c->loop, coil_loop_time(c->loop), due_again, c, NULL);
    coil_loop_stop(c->loop);
}

static void test_due_timer_from_timer_waits(void **state)
{
    struct fixture *f = *state;
    struct chained c = {f->loop, 0, 0, NULL};
    int64_t when = coil_loop_time(f->loop) + COIL_MSEC;
    assert_int_equal(coil_loop_call_at(f->loop, when, first_due, &c, NULL), 0);
    test_run(f->loop);
    assert_int_equal(c.first_iter_hits, 1);
    assert_int_equal(c.second, 0); /* not in the same batch */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, test_stop_cb, f->loop, NULL),
        0);
    test_run(f->loop);
    test_run(f->loop);
    assert_int_equal(c.second, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_FAKE(test_deadline_order),
        TEST_FAKE(test_equal_deadlines_fifo),
        TEST_FAKE(test_cancel),
        TEST_FAKE(test_cancel_due_in_same_batch),
        TEST_FAKE(test_zero_and_negative_delays),
        TEST_FAKE(test_far_future),
        TEST_FAKE(test_rearm_from_callback),
        TEST_FAKE(test_time_cache),
        TEST_FAKE(test_bad_arguments),
        TEST_FAKE(test_close_with_timers),
        TEST(test_real_clock),
        TEST_FAKE(test_many_with_cancellation),
        TEST_FAKE(test_same_deadline_rings),
        TEST_FAKE(test_due_timer_from_timer_waits),
    };
    /* The epoll backend's own fallback: not registered elsewhere. */
    const struct CMUnitTest epoll_tests[] = {
        TEST(test_epoll_without_pwait2),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed +=
        TEST_RUN_IF(TEST_ON_EPOLL, "it tests the epoll backend's own fallback",
                    epoll_tests);
    return failed;
}
