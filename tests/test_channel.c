/* SPDX-License-Identifier: MIT */
/*
 * test_channel.c - coil/channel.h: a queue between loops. Order, limits,
 * close, cancels at every wait (nothing lost, nothing twice), loops that
 * close with a waiter served or in line, plain threads, and a producer
 * and a consumer on two loops of a group. Run under TSan in CI.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "helpers.h"
#include "coil/channel.h"
#include "coil/loop_group.h"

#define ITEM(n) ((void *)(intptr_t)(n))
#define NUM(p) ((int)(intptr_t)(p))

/* ------------------------------------------------------------------ */
/* One loop                                                             */
/* ------------------------------------------------------------------ */

struct one {
    coil_channel_t *ch;
    int got[16];
    int n, r, r2;
};

static int fill_and_drain(void *arg)
{
    struct one *o = arg;
    for (int i = 1; i <= 3; i++)
        if (coil_channel_put(o->ch, ITEM(i)) != 0)
            return -EPROTO;
    for (int i = 0; i < 3; i++) {
        void *v;
        if (coil_channel_get(o->ch, &v) != 0)
            return -EPROTO;
        o->got[o->n++] = NUM(v);
    }
    return 0;
}

static void test_fifo_and_limits(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct one o = {0};
    assert_int_equal(coil_channel_new(3, &o.ch), 0);
    assert_int_equal(test_run_task(loop, fill_and_drain, &o), 0);
    assert_int_equal(o.n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(o.got[i], i + 1);
    /* Without a task: try_* only. */
    for (int i = 1; i <= 3; i++)
        assert_int_equal(coil_channel_try_put(o.ch, ITEM(i)), 0);
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(4)), -EAGAIN);
    assert_int_equal(coil_channel_size(o.ch), 3);
    void *v;
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 1);
    assert_int_equal(coil_channel_put(o.ch, ITEM(9)), -EPERM);
    assert_int_equal(coil_channel_get(o.ch, &v), -EPERM);
    assert_int_equal(coil_channel_size(o.ch), 2);
    coil_channel_close(o.ch);
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(5)), -EPIPE);
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0); /* drains */
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 3);
    assert_int_equal(coil_channel_try_get(o.ch, &v), -EPIPE);
    assert_int_equal(coil_channel_close(o.ch), 0);
    coil_channel_unref(o.ch);

    /* Unlimited: a thousand puts never wait. */
    assert_int_equal(coil_channel_new(0, &o.ch), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(coil_channel_try_put(o.ch, ITEM(i)), 0);
    assert_int_equal(coil_channel_size(o.ch), 1000);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
        assert_int_equal(NUM(v), i);
    }
    coil_channel_unref(o.ch);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    coil_channel_t *ch;
    void *v;
    assert_int_equal(coil_channel_new(1, NULL), -EINVAL);
    assert_int_equal(coil_channel_put(NULL, NULL), -EINVAL);
    assert_int_equal(coil_channel_get(NULL, &v), -EINVAL);
    assert_int_equal(coil_channel_try_put(NULL, NULL), -EINVAL);
    assert_int_equal(coil_channel_try_get(NULL, &v), -EINVAL);
    assert_int_equal(coil_channel_close(NULL), -EINVAL);
    assert_int_equal(coil_channel_size(NULL), 0);
    assert_null(coil_channel_ref(NULL));
    coil_channel_unref(NULL);
    assert_int_equal(coil_channel_new(1, &ch), 0);
    assert_int_equal(coil_channel_get(ch, NULL), -EINVAL);
    assert_int_equal(coil_channel_try_get(ch, NULL), -EINVAL);
    /* Out of memory growing the ring: -ENOMEM, nothing put. */
    test_alloc_fail_after(1);
    int r = coil_channel_try_put(ch, ITEM(1));
    test_alloc_fail_after(0);
    assert_int_equal(r, -ENOMEM);
    assert_int_equal(coil_channel_size(ch), 0);
    assert_int_equal(coil_channel_new(1, NULL), -EINVAL);
    test_alloc_fail_after(1);
    coil_channel_t *ch2 = (coil_channel_t *)1;
    r = coil_channel_new(1, &ch2);
    test_alloc_fail_after(0);
    assert_int_equal(r, -ENOMEM);
    assert_null(ch2);
    coil_channel_unref(coil_channel_ref(ch));
    coil_channel_unref(ch);
}

/* Waiters woken by a put, a get, a close. */
static int getter(void *arg)
{
    struct one *o = arg;
    void *v = NULL;
    o->r = coil_channel_get(o->ch, &v);
    if (o->r == 0)
        o->got[o->n++] = NUM(v);
    return 0;
}

static int putter(void *arg)
{
    struct one *o = arg;
    o->r2 = coil_channel_put(o->ch, ITEM(42));
    return 0;
}

static void test_waiters(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct one o = {0};
    assert_int_equal(coil_channel_new(1, &o.ch), 0);
    /* A getter waits, a put from outside wakes it. */
    coil_task_t *t = test_spawn(loop, getter, &o);
    assert_true(test_run_bounded(loop, 1000000)); /* it waits */
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(7)), 0);
    assert_int_equal(coil_channel_size(o.ch), 0); /* handed over */
    test_run_done(loop, t);
    coil_task_unref(t);
    assert_int_equal(o.r, 0);
    assert_int_equal(o.got[0], 7);
    /* A putter waits on a full channel, a get lets it in. */
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(1)), 0);
    t = test_spawn(loop, putter, &o);
    test_run_bounded(loop, 1000000);
    assert_false(coil_future_done(coil_task_future(t)));
    void *v;
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 1);
    test_run_done(loop, t);
    coil_task_unref(t);
    assert_int_equal(o.r2, 0);
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 42);
    /* A close wakes a waiting getter, and a waiting putter (its item
     * stays its own: not in the channel). */
    t = test_spawn(loop, getter, &o);
    test_run_bounded(loop, 1000000);
    coil_channel_close(o.ch);
    test_run_done(loop, t);
    coil_task_unref(t);
    assert_int_equal(o.r, -EPIPE);
    coil_channel_unref(o.ch);

    assert_int_equal(coil_channel_new(1, &o.ch), 0);
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(1)), 0);
    t = test_spawn(loop, putter, &o);
    test_run_bounded(loop, 1000000);
    coil_channel_close(o.ch);
    test_run_done(loop, t);
    coil_task_unref(t);
    assert_int_equal(o.r2, -EPIPE);
    assert_int_equal(coil_channel_size(o.ch), 1);
    coil_channel_unref(o.ch);
}

/* A cancel at each wait: in line, nothing is taken or put; served
 * before the cancel reached it, the item came (or went) and the cancel
 * comes with the next wait. */
struct served {
    coil_channel_t *ch;
    coil_task_t *task;
    int r, next;
    void *v;
};

static int get_then_sleep(void *arg)
{
    struct served *s = arg;
    s->r = coil_channel_get(s->ch, &s->v);
    s->next = coil_sleep(0);
    return 0;
}

static void serve_then_cancel(void *arg)
{
    struct served *s = arg;
    coil_channel_try_put(s->ch, ITEM(5)); /* serves the waiting getter */
    coil_task_cancel(s->task);            /* before its wake ran */
}

static int put_then_sleep(void *arg)
{
    struct served *s = arg;
    s->r = coil_channel_put(s->ch, ITEM(6));
    s->next = coil_sleep(0);
    return 0;
}

static void take_then_cancel(void *arg)
{
    struct served *s = arg;
    coil_channel_try_get(s->ch, &s->v); /* lets the waiting putter in */
    coil_task_cancel(s->task);          /* before its wake ran */
}

static void test_cancel(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct one o = {0};
    assert_int_equal(coil_channel_new(1, &o.ch), 0);
    /* In line: -ECANCELED, and a later item is still there to get. */
    int r = test_run_cancelled(loop, getter, &o, 1000000, NULL);
    assert_int_equal(r, 0);
    assert_int_equal(o.r, -ECANCELED);
    assert_int_equal(o.n, 0);
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(3)), 0);
    r = test_run_cancelled(loop, putter, &o, 1000000, NULL);
    assert_int_equal(o.r2, -ECANCELED);
    assert_int_equal(coil_channel_size(o.ch), 1); /* 42 was not put */
    void *v;
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 3);

    /* Served, then cancelled: the item wins. */
    struct served s = {.ch = o.ch};
    s.task = test_spawn(loop, get_then_sleep, &s);
    test_run_bounded(loop, 1000000);
    assert_int_equal(coil_loop_call_soon(loop, serve_then_cancel, &s, NULL),
                     0);
    test_run_done(loop, s.task);
    coil_task_unref(s.task);
    assert_int_equal(s.r, 0);
    assert_int_equal(NUM(s.v), 5);
    assert_int_equal(s.next, -ECANCELED);
    assert_int_equal(coil_channel_size(o.ch), 0);

    /* A putter let in, then cancelled: its item is in, the put says 0. */
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(1)), 0);
    s = (struct served){.ch = o.ch};
    s.task = test_spawn(loop, put_then_sleep, &s);
    test_run_bounded(loop, 1000000);
    assert_int_equal(coil_loop_call_soon(loop, take_then_cancel, &s, NULL),
                     0);
    test_run_done(loop, s.task);
    coil_task_unref(s.task);
    assert_int_equal(NUM(s.v), 1);
    assert_int_equal(s.r, 0);
    assert_int_equal(s.next, -ECANCELED);
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 6);
    coil_channel_unref(o.ch);
}

/* A loop closes with a getter served but not yet woken: the item goes
 * back to the front of the channel. One closed with a putter in line:
 * its item never was put. */
static void test_loop_closes_with_waiters(void **state)
{
    (void)state;
    coil_loop_t *loop;
    struct one o = {0};
    assert_int_equal(coil_channel_new(1, &o.ch), 0);
    assert_int_equal(coil_loop_new(&loop), 0);
    coil_task_t *t = test_spawn(loop, getter, &o);
    test_run_bounded(loop, 1000000);
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(11)), 0); /* served */
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(12)), 0);
    test_allow_reports("destroyed while pending");
    test_allow_reports("loop closed with"); /* debug mode says so too */
    coil_task_unref(t);
    coil_loop_unref(loop); /* closes: the wake is discarded */
    void *v;
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 11); /* back, first in line */
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 12);

    /* Served, its wake run, but the loop stopped before the task's step:
     * the close abandons it, and the item goes back all the same. */
    assert_int_equal(coil_loop_new(&loop), 0);
    t = test_spawn(loop, getter, &o);
    test_run_bounded(loop, 1000000);
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(13)), 0);
    coil_loop_stop(loop);
    assert_int_equal(coil_loop_run_forever(loop), 0); /* one iteration */
    assert_int_equal(o.n, 0);
    coil_task_unref(t);
    coil_loop_unref(loop);
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 13);

    assert_int_equal(coil_loop_new(&loop), 0);
    assert_int_equal(coil_channel_try_put(o.ch, ITEM(1)), 0);
    t = test_spawn(loop, putter, &o);
    test_run_bounded(loop, 1000000);
    coil_task_unref(t);
    coil_loop_unref(loop); /* the putter leaves the line */
    assert_int_equal(coil_channel_try_get(o.ch, &v), 0);
    assert_int_equal(NUM(v), 1);
    assert_int_equal(coil_channel_try_get(o.ch, &v), -EAGAIN);
    coil_channel_unref(o.ch);
}

/* ------------------------------------------------------------------ */
/* Between loops and threads                                            */
/* ------------------------------------------------------------------ */

enum { N = 20000 };

struct pipe2 {
    coil_channel_t *ch;
    coil_loop_group_t *g;
    long sum;
    int count, out_of_order;
};

static int produce_or_consume(void *arg)
{
    struct pipe2 *p = arg;
    if (coil_loop_group_index(p->g, coil_running_loop()) == 0) {
        for (int i = 1; i <= N; i++)
            if (coil_channel_put(p->ch, ITEM(i)) != 0)
                return -EPROTO;
        coil_channel_close(p->ch);
        return 0;
    }
    void *v;
    int last = 0;
    while (coil_channel_get(p->ch, &v) == 0) {
        p->out_of_order += NUM(v) != last + 1;
        last = NUM(v);
        p->sum += NUM(v);
        p->count++;
    }
    return 0;
}

static void test_two_loops(void **state)
{
    (void)state;
    struct pipe2 p = {0};
    assert_int_equal(coil_channel_new(8, &p.ch), 0);
    coil_loop_group_options_t opts = {.loops = 2};
    assert_int_equal(coil_loop_group_start(&opts, produce_or_consume, &p,
                                           &p.g),
                     0);
    assert_int_equal(coil_loop_group_join(p.g), 0);
    coil_loop_group_free(p.g);
    assert_int_equal(p.count, N);
    assert_int_equal(p.out_of_order, 0);
    assert_true(p.sum == (long)N * (N + 1) / 2);
    coil_channel_unref(p.ch);
}

/* A plain thread feeds a task of a loop with try_put. */
static void *feeder(void *arg)
{
    coil_channel_t *ch = arg;
    for (int i = 1; i <= N;) {
        int r = coil_channel_try_put(ch, ITEM(i));
        if (r == 0)
            i++;
        else if (r == -EAGAIN)
            sched_yield(); /* full: let the loop's thread drain it */
        else
            return (void *)(intptr_t)r;
    }
    coil_channel_close(ch);
    return NULL;
}

static int drain_all(void *arg)
{
    struct pipe2 *p = arg;
    void *v;
    int last = 0;
    while (coil_channel_get(p->ch, &v) == 0) {
        p->out_of_order += NUM(v) != last + 1;
        last = NUM(v);
        p->count++;
    }
    return 0;
}

static void test_thread_to_loop(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct pipe2 p = {0};
    assert_int_equal(coil_channel_new(4, &p.ch), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, feeder, p.ch), 0);
    assert_int_equal(test_run_task(loop, drain_all, &p), 0);
    void *r;
    assert_int_equal(pthread_join(th, &r), 0);
    assert_null(r);
    assert_int_equal(p.count, N);
    assert_int_equal(p.out_of_order, 0);
    coil_channel_unref(p.ch);
}

/* A thread puts 1..SN into a channel of two while getters on a loop are
 * cancelled at random, in line or just served: every item is got once
 * (or left in the channel), none twice. */
enum { SN = 5000 };

struct stress {
    coil_channel_t *ch;
    atomic_bool fed;
    unsigned char seen[SN + 1];
    int bad;
};

static void note(struct stress *st, void *v)
{
    int n = NUM(v);
    st->bad += n < 1 || n > SN || st->seen[n]++;
}

static int stress_get(void *arg)
{
    struct stress *st = arg;
    void *v;
    int r;
    while ((r = coil_channel_get(st->ch, &v)) == 0)
        note(st, v);
    return 0;
}

static void *stress_feed(void *arg)
{
    struct stress *st = arg;
    for (int i = 1; i <= SN;) {
        int r = coil_channel_try_put(st->ch, ITEM(i));
        if (r == 0)
            i++;
        else
            sched_yield();
    }
    atomic_store(&st->fed, true);
    return NULL;
}

static int stress_main(void *arg)
{
    struct stress *st = arg;
    coil_task_t *t[4] = {0};
    unsigned seed = 7;
    while (!atomic_load(&st->fed) || coil_channel_size(st->ch)) {
        for (int i = 0; i < 4; i++) {
            if (t[i] && coil_future_done(coil_task_future(t[i]))) {
                coil_task_unref(t[i]);
                t[i] = NULL;
            }
            if (!t[i])
                t[i] = test_spawn(coil_running_loop(), stress_get, st);
            else if (rand_r(&seed) % 3 == 0)
                coil_task_cancel(t[i]);
        }
        coil_sleep(0);
    }
    coil_channel_close(st->ch);
    for (int i = 0; i < 4; i++)
        if (t[i])
            test_join(t[i]);
    return 0;
}

static void test_cancel_stress(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct stress *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    assert_int_equal(coil_channel_new(2, &st->ch), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stress_feed, st), 0);
    assert_int_equal(test_run_task(loop, stress_main, st), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    void *v;
    while (coil_channel_try_get(st->ch, &v) == 0)
        note(st, v);
    int missing = 0;
    for (int i = 1; i <= SN; i++)
        missing += !st->seen[i];
    assert_int_equal(missing, 0);
    assert_int_equal(st->bad, 0);
    coil_channel_unref(st->ch);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_fifo_and_limits),
        TEST_NOLOOP(test_bad_arguments),
        TEST(test_waiters),
        TEST(test_cancel),
        TEST_NOLOOP(test_loop_closes_with_waiters),
        TEST_NOLOOP(test_two_loops),
        TEST(test_thread_to_loop),
        TEST(test_cancel_stress),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
