/* SPDX-License-Identifier: MIT */
/*
 * test_cancel.c - cancelling tasks: at every kind of suspension point
 * (sleep, yield, await of a future and of a task, shield, gather, wait,
 * as_completed, group_wait, waits inside a timeout scope), before the task
 * started, repeatedly, after it finished; a task that catches the cancel
 * and cleans up with more waits; self-cancel; a completed result winning
 * over a cancel that arrives in the same iteration; uncancel; and many
 * tasks cancelled at once, with the leak gate after every test.
 *
 * Tasks and callbacks only record what they see; the assertions run on
 * the main stack once the loop has returned. Time runs on the virtual
 * clock with autojump.
 */
#include <string.h>

#include "helpers.h"

#define HOUR (3600 * COIL_SEC)

/* ------------------------------------------------------------------ */
/* Suspension points                                                    */
/* ------------------------------------------------------------------ */

struct sleeper {
    coil_loop_t *loop;
    int r;
    int64_t slept;
    bool after;
};

static int sleep_hour(void *arg)
{
    struct sleeper *s = arg;
    int64_t t0 = coil_loop_time(s->loop);
    s->r = coil_sleep(HOUR);
    s->slept = coil_loop_time(s->loop) - t0;
    s->after = true;
    return s->r;
}

static void test_cancel_sleep(void **state)
{
    struct fixture *f = *state;
    struct sleeper s = {.loop = f->loop, .r = 1};
    coil_task_t *t;
    assert_int_equal(
        test_run_cancelled(f->loop, sleep_hour, &s, 5 * COIL_MSEC, &t),
        -ECANCELED);
    assert_int_equal(s.r, -ECANCELED);
    assert_true(s.slept >= 5 * COIL_MSEC);
    assert_true(s.slept < HOUR);
    assert_true(coil_future_cancelled(coil_task_future(t)));
    assert_int_equal(coil_task_cancelling(t), 1u);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

struct yielder {
    coil_task_t *victim;
    int r_yield, r_next, cancel_r;
};

static int yield_once(void *arg)
{
    struct yielder *y = arg;
    y->r_yield = coil_yield();
    y->r_next = coil_yield();
    return 0;
}

/* Runs after the victim in the same iteration: the victim is suspended in
 * its yield, already queued to resume. */
static int cancel_victim(void *arg)
{
    struct yielder *y = arg;
    y->cancel_r = coil_task_cancel(y->victim);
    return 0;
}

static void test_cancel_yield(void **state)
{
    struct fixture *f = *state;
    struct yielder y = {NULL, 1, 1, 1};
    coil_task_t *other;
    assert_int_equal(coil_task_spawn(f->loop, yield_once, &y, &y.victim), 0);
    assert_int_equal(coil_task_spawn(f->loop, cancel_victim, &y, &other), 0);
    test_run_done(f->loop, y.victim);
    assert_int_equal(y.cancel_r, 0);
    assert_int_equal(y.r_yield, -ECANCELED);
    assert_int_equal(y.r_next, 0); /* one cancel, one -ECANCELED */
    assert_int_equal(test_task_outcome(y.victim), 0);
    coil_task_unref(y.victim);
    coil_task_unref(other);
    test_assert_no_tasks(f->loop);
}

struct awaiter {
    coil_future_t *fut;
    coil_task_t *inner;
    int r;
    int r_next;
    bool fut_done_at_return;
    void *value;
};

static int await_fut(void *arg)
{
    struct awaiter *a = arg;
    a->r = coil_await(a->fut, &a->value);
    a->fut_done_at_return = coil_future_done(a->fut);
    return a->r;
}

static void test_cancel_await_future(void **state)
{
    struct fixture *f = *state;
    struct awaiter a = {.r = 1};
    assert_int_equal(coil_future_new(f->loop, &a.fut), 0);
    coil_task_t *t;
    assert_int_equal(test_run_cancelled(f->loop, await_fut, &a, COIL_MSEC, &t),
                     -ECANCELED);
    assert_int_equal(a.r, -ECANCELED);
    /* The awaited future was cancelled with the task. */
    assert_true(coil_future_cancelled(a.fut));
    coil_future_unref(a.fut);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

struct inner {
    int sleep_r;
    int cleanup_r;
    int ret_on_cancel; /* returned when cancelled; 0: -ECANCELED */
    bool catches;
};

static int inner_body(void *arg)
{
    struct inner *in = arg;
    in->sleep_r = coil_sleep(HOUR);
    if (in->sleep_r == -ECANCELED && in->catches) {
        in->cleanup_r = coil_sleep(COIL_MSEC);
        return in->ret_on_cancel;
    }
    return in->sleep_r;
}

struct outer {
    coil_loop_t *loop;
    struct inner *in;
    coil_task_t *inner;
    int join_r;
};

static int outer_body(void *arg)
{
    struct outer *o = arg;
    if (coil_task_spawn(o->loop, inner_body, o->in, &o->inner))
        return -ENOMEM;
    o->join_r = coil_task_join(o->inner);
    return o->join_r;
}

static void test_cancel_await_task(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    struct fixture *f = *state;
    for (int catches = 0; catches < 2; catches++) {
        struct inner in = {1, 1, 5, catches};
        struct outer o = {f->loop, &in, NULL, 1};
        coil_task_t *t;
        assert_int_equal(
            test_run_cancelled(f->loop, outer_body, &o, COIL_MSEC, &t),
            catches ? 5 : -ECANCELED);
        /* The inner task was cancelled through the outer's await. */
        assert_int_equal(in.sleep_r, -ECANCELED);
        assert_true(coil_task_cancelling(o.inner) >= 1);
        if (catches) {
            /* It caught the cancel, cleaned up and returned 5: that is
             * what the outer's await gives (asyncio semantics). */
            assert_int_equal(in.cleanup_r, 0);
            assert_int_equal(test_task_outcome(o.inner), 5);
            assert_int_equal(o.join_r, 5);
            assert_int_equal(test_task_outcome(t), 5);
        } else {
            assert_true(coil_future_cancelled(coil_task_future(o.inner)));
            assert_int_equal(o.join_r, -ECANCELED);
            assert_true(coil_future_cancelled(coil_task_future(t)));
        }
        coil_task_unref(o.inner);
        coil_task_unref(t);
        test_assert_no_tasks(f->loop);
    }
}

struct shielder {
    coil_loop_t *loop;
    coil_future_t *fut; /* a plain future or the inner task's */
    int r;
    bool fut_done_at_return;
    int64_t returned_at;
};

static int shield_body(void *arg)
{
    struct shielder *s = arg;
    s->r = coil_shield(s->fut, NULL);
    s->fut_done_at_return = coil_future_done(s->fut);
    s->returned_at = coil_loop_time(s->loop);
    return s->r;
}

static int sleep_then_7(void *arg)
{
    int *r = arg;
    *r = coil_sleep(50 * COIL_MSEC);
    return 7;
}

static void set_result_cb(void *arg)
{
    coil_future_set_result(arg, (void *)(intptr_t)3);
}

static void test_cancel_shield(void **state)
{
    struct fixture *f = *state;
    /* A plain future. */
    struct shielder s = {.loop = f->loop, .r = 1};
    assert_int_equal(coil_future_new(f->loop, &s.fut), 0);
    coil_task_t *t;
    int64_t t0 = coil_loop_time(f->loop);
    assert_int_equal(
        test_run_cancelled(f->loop, shield_body, &s, COIL_MSEC, &t),
        -ECANCELED);
    /* The waiter got -ECANCELED at once; the future carries on. */
    assert_int_equal(s.r, -ECANCELED);
    assert_false(s.fut_done_at_return);
    assert_true(s.returned_at - t0 < 50 * COIL_MSEC);
    assert_false(coil_future_done(s.fut));
    assert_int_equal(coil_future_set_result(s.fut, NULL), 0);
    coil_future_unref(s.fut);
    coil_task_unref(t);

    /* A task: it is not cancelled and finishes with its result. */
    int inner_sleep = 1;
    coil_task_t *inner;
    assert_int_equal(
        coil_task_spawn(f->loop, sleep_then_7, &inner_sleep, &inner), 0);
    s = (struct shielder){
        .loop = f->loop, .r = 1, .fut = coil_task_future(inner)};
    t0 = coil_loop_time(f->loop);
    assert_int_equal(
        test_run_cancelled(f->loop, shield_body, &s, COIL_MSEC, &t),
        -ECANCELED);
    assert_int_equal(s.r, -ECANCELED);
    assert_false(s.fut_done_at_return);
    assert_true(s.returned_at - t0 < 50 * COIL_MSEC);
    assert_int_equal(coil_task_cancelling(inner), 0u);
    assert_int_equal(test_run_done(f->loop, inner), 0);
    assert_int_equal(inner_sleep, 0);
    assert_int_equal(test_task_outcome(inner), 7);
    coil_task_unref(inner);
    coil_task_unref(t);

    /* Shield of a future that completes normally gives its value. */
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    s = (struct shielder){.loop = f->loop, .r = 1, .fut = fut};
    assert_int_equal(coil_task_spawn(f->loop, shield_body, &s, &t), 0);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, set_result_cb, fut, NULL), 0);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(s.r, 0);
    coil_future_unref(fut);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

/* gather, wait, as_completed: children that sleep an hour and note
 * whether their cleanup ran. */
struct child {
    int sleep_r;
    bool cleaned;
};

static int child_body(void *arg)
{
    struct child *ch = arg;
    ch->sleep_r = coil_sleep(HOUR);
    if (ch->sleep_r == -ECANCELED) {
        coil_sleep(2 * COIL_MSEC); /* cleanup takes a while */
        ch->cleaned = true;
    }
    return ch->sleep_r;
}

struct multi {
    coil_loop_t *loop;
    struct child ch[3];
    coil_task_t *t[3];
    coil_future_t *futs[3];
    int r;
    bool done_at_return[3];
    int next_r;
    coil_future_t *got;
};

static int multi_spawn(struct multi *m)
{
    for (int i = 0; i < 3; i++) {
        if (coil_task_spawn(m->loop, child_body, &m->ch[i], &m->t[i]))
            return -ENOMEM;
        m->futs[i] = coil_task_future(m->t[i]);
    }
    return 0;
}

static void multi_note(struct multi *m)
{
    for (int i = 0; i < 3; i++)
        m->done_at_return[i] = coil_future_done(m->futs[i]);
}

static int gather_body(void *arg)
{
    struct multi *m = arg;
    if (multi_spawn(m))
        return -ENOMEM;
    m->r = coil_gather(m->futs, 3, NULL, 0);
    multi_note(m);
    return m->r;
}

static int wait_body(void *arg)
{
    struct multi *m = arg;
    if (multi_spawn(m))
        return -ENOMEM;
    m->r = coil_wait(m->futs, 3, COIL_ALL_COMPLETED, COIL_NO_TIMEOUT);
    multi_note(m);
    for (int i = 0; i < 3; i++)
        coil_task_cancel(m->t[i]); /* let the test finish */
    return m->r;
}

static int as_completed_body(void *arg)
{
    struct multi *m = arg;
    if (multi_spawn(m))
        return -ENOMEM;
    coil_as_completed_t *it;
    m->r = coil_as_completed_begin(m->futs, 3, COIL_NO_TIMEOUT, &it);
    if (m->r)
        return m->r;
    m->got = (coil_future_t *)1;
    m->r = coil_as_completed_next(it, &m->got);
    multi_note(m);
    coil_as_completed_end(it);
    for (int i = 0; i < 3; i++)
        coil_task_cancel(m->t[i]);
    return m->r;
}

static void multi_release(struct multi *m)
{
    for (int i = 0; i < 3; i++)
        coil_task_unref(m->t[i]);
}

static void cancel_multi(coil_loop_t *loop, coil_task_fn body, struct multi *m,
                         coil_task_t **out)
{
    memset(m, 0, sizeof(*m));
    m->loop = loop;
    m->r = 1;
    assert_int_equal(test_run_cancelled(loop, body, m, COIL_MSEC, out),
                     -ECANCELED);
}

static void test_cancel_gather(void **state)
{
    struct fixture *f = *state;
    struct multi m;
    coil_task_t *t;
    cancel_multi(f->loop, gather_body, &m, &t);
    assert_int_equal(m.r, -ECANCELED);
    /* Every child was cancelled and had finished (cleanup included)
     * before gather returned. */
    for (int i = 0; i < 3; i++) {
        assert_true(m.done_at_return[i]);
        assert_int_equal(m.ch[i].sleep_r, -ECANCELED);
        assert_true(m.ch[i].cleaned);
        assert_true(coil_future_cancelled(m.futs[i]));
    }
    assert_true(coil_future_cancelled(coil_task_future(t)));
    multi_release(&m);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

static void test_cancel_wait(void **state)
{
    struct fixture *f = *state;
    struct multi m;
    coil_task_t *t;
    cancel_multi(f->loop, wait_body, &m, &t);
    assert_int_equal(m.r, -ECANCELED);
    /* wait cancels nothing: the children were still running. */
    for (int i = 0; i < 3; i++)
        assert_false(m.done_at_return[i]);
    assert_int_equal(test_run_done(f->loop, m.t[2]), -ECANCELED);
    multi_release(&m);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

static void test_cancel_as_completed(void **state)
{
    struct fixture *f = *state;
    struct multi m;
    coil_task_t *t;
    cancel_multi(f->loop, as_completed_body, &m, &t);
    assert_int_equal(m.r, -ECANCELED);
    assert_null(m.got);
    for (int i = 0; i < 3; i++)
        assert_false(m.done_at_return[i]);
    assert_int_equal(test_run_done(f->loop, m.t[2]), -ECANCELED);
    multi_release(&m);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

struct grouper {
    struct child ch[2];
    int r;
    bool cleaned_at_return[2];
    int next_r;
};

static int group_body(void *arg)
{
    struct grouper *g = arg;
    coil_group_t *grp;
    int err = coil_group_new(&grp);
    if (err)
        return err;
    for (int i = 0; i < 2; i++)
        coil_group_spawn(grp, child_body, &g->ch[i], NULL, NULL);
    g->r = coil_group_wait(grp);
    for (int i = 0; i < 2; i++)
        g->cleaned_at_return[i] = g->ch[i].cleaned;
    coil_group_unref(grp);
    g->next_r = coil_sleep(COIL_MSEC);
    return g->r;
}

static void test_cancel_group_wait(void **state)
{
    struct fixture *f = *state;
    struct grouper g = {.r = 1, .next_r = 1};
    assert_int_equal(
        test_run_cancelled(f->loop, group_body, &g, COIL_MSEC, NULL),
        -ECANCELED);
    assert_int_equal(g.r, -ECANCELED);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(g.ch[i].sleep_r, -ECANCELED);
        assert_true(g.cleaned_at_return[i]);
    }
    /* The cancel was delivered by group_wait, once. */
    assert_int_equal(g.next_r, 0);
    test_assert_no_tasks(f->loop);
}

struct scoped {
    int inner_r, end_r;
    bool expired;
};

static int scoped_body(void *arg)
{
    struct scoped *s = arg;
    coil_timeout_t *sc;
    int err = coil_timeout_begin(HOUR / 2, &sc);
    if (err)
        return err;
    s->inner_r = coil_sleep(HOUR);
    s->expired = coil_timeout_expired(sc);
    s->end_r = coil_timeout_end(sc, s->inner_r);
    return s->end_r;
}

static void test_cancel_inside_timeout_scope(void **state)
{
    struct fixture *f = *state;
    struct scoped s = {1, 1, true};
    assert_int_equal(
        test_run_cancelled(f->loop, scoped_body, &s, COIL_MSEC, NULL),
        -ECANCELED);
    assert_int_equal(s.inner_r, -ECANCELED);
    assert_false(s.expired);
    /* Not the scope's doing: it stays -ECANCELED. */
    assert_int_equal(s.end_r, -ECANCELED);
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* When and how often                                                   */
/* ------------------------------------------------------------------ */

static int mark_ran(void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static void test_cancel_before_start(void **state)
{
    struct fixture *f = *state;
    int ran = 0;
    coil_task_t *t, *u;
    assert_int_equal(coil_task_spawn(f->loop, mark_ran, &ran, &t), 0);
    assert_int_equal(coil_task_cancel(t), 0);
    assert_int_equal(coil_task_spawn(f->loop, mark_ran, &ran, &u), 0);
    assert_int_equal(coil_future_cancel(coil_task_future(u)), 0);
    assert_int_equal(test_run_done(f->loop, t), -ECANCELED);
    assert_int_equal(test_run_done(f->loop, u), -ECANCELED);
    assert_int_equal(ran, 0);
    assert_true(coil_future_cancelled(coil_task_future(t)));
    assert_true(coil_future_cancelled(coil_task_future(u)));
    coil_task_unref(t);
    coil_task_unref(u);

    /* Cancelled by a callback of the iteration in which it would have
     * started (queued ahead of it). */
    struct test_canceller c = {NULL, 1, 0};
    assert_int_equal(coil_loop_call_soon(f->loop, test_cancel_cb, &c, NULL), 0);
    assert_int_equal(coil_task_spawn(f->loop, mark_ran, &ran, &t), 0);
    c.task = t;
    assert_int_equal(test_run_done(f->loop, t), -ECANCELED);
    assert_int_equal(c.result, 0);
    assert_int_equal(ran, 0);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

struct repeat {
    int r1, r2, r3;
    unsigned cancelling_seen;
    int self_cancel[2];
};

static int repeat_body(void *arg)
{
    struct repeat *r = arg;
    r->r1 = coil_sleep(HOUR);
    r->cancelling_seen = coil_task_cancelling(coil_current_task());
    r->r2 = coil_yield();
    /* Cancelling itself twice before the next wait: one delivery. */
    r->self_cancel[0] = coil_task_cancel(coil_current_task());
    r->self_cancel[1] = coil_task_cancel(coil_current_task());
    r->r3 = coil_yield();
    return coil_yield();
}

static void cancel_thrice(void *arg)
{
    struct test_canceller *c = arg;
    for (int i = 0; i < 3; i++) {
        int r = coil_task_cancel(c->task);
        if (r != 0)
            c->result = r;
        c->calls++;
    }
}

static void test_cancel_repeated(void **state)
{
    struct fixture *f = *state;
    struct repeat r = {1, 1, 1, 0, {1, 1}};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, repeat_body, &r, &t), 0);
    struct test_canceller c = {t, 0, 0};
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, cancel_thrice, &c, NULL), 0);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(c.result, 0);
    assert_int_equal(c.calls, 3);
    assert_int_equal(r.r1, -ECANCELED);
    assert_int_equal(r.cancelling_seen, 3u);
    assert_int_equal(r.r2, 0);
    assert_int_equal(r.self_cancel[0], 0);
    assert_int_equal(r.self_cancel[1], 0);
    assert_int_equal(r.r3, -ECANCELED);
    /* The last yield was not cancelled. */
    assert_int_equal(test_task_outcome(t), 0);
    assert_int_equal(coil_task_cancelling(t), 5u);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

static void test_cancel_finished(void **state)
{
    struct fixture *f = *state;
    int ran = 0;
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, mark_ran, &ran, &t), 0);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(coil_task_cancel(t), -EALREADY);
    assert_int_equal(coil_future_cancel(coil_task_future(t)), -EALREADY);
    assert_false(coil_future_cancelled(coil_task_future(t)));
    assert_int_equal(coil_task_cancelling(t), 0u);
    assert_int_equal(coil_task_cancel(NULL), -EINVAL);
    assert_int_equal(coil_task_cancelling(NULL), 0u);
    assert_int_equal(coil_task_uncancel(NULL), 0u);
    coil_task_unref(t);
}

struct catcher {
    coil_loop_t *loop;
    coil_future_t *fut;
    int r_sleep, r_cleanup_sleep, r_cleanup_await, r_cleanup_yield;
    void *value;
};

static int catcher_body(void *arg)
{
    struct catcher *c = arg;
    c->r_sleep = coil_sleep(HOUR);
    if (c->r_sleep != -ECANCELED)
        return -EPROTO;
    /* Cleanup: every wait works as usual. */
    c->r_cleanup_sleep = coil_sleep(3 * COIL_MSEC);
    coil_loop_call_later(c->loop, COIL_MSEC, set_result_cb, c->fut, NULL);
    c->r_cleanup_await = coil_await(c->fut, &c->value);
    c->r_cleanup_yield = coil_yield();
    return 0;
}

static void test_cancel_caught_cleanup(void **state)
{
    struct fixture *f = *state;
    struct catcher k = {.loop = f->loop,
                        .r_sleep = 1,
                        .r_cleanup_sleep = 1,
                        .r_cleanup_await = 1,
                        .r_cleanup_yield = 1};
    assert_int_equal(coil_future_new(f->loop, &k.fut), 0);
    coil_task_t *t;
    assert_int_equal(
        test_run_cancelled(f->loop, catcher_body, &k, COIL_MSEC, &t), 0);
    assert_int_equal(k.r_sleep, -ECANCELED);
    assert_int_equal(k.r_cleanup_sleep, 0);
    assert_int_equal(k.r_cleanup_await, 0);
    assert_int_equal((intptr_t)k.value, 3);
    assert_int_equal(k.r_cleanup_yield, 0);
    /* It returned 0: a result, not a cancelled task. */
    assert_false(coil_future_cancelled(coil_task_future(t)));
    assert_int_equal(test_task_outcome(t), 0);
    coil_future_unref(k.fut);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

struct selfc {
    coil_loop_t *loop;
    int cancel_r, r_sleep, r_after;
    int64_t slept;
    bool ran_on;
};

static int self_cancel_body(void *arg)
{
    struct selfc *s = arg;
    s->cancel_r = coil_task_cancel(coil_current_task());
    s->ran_on = true; /* cancelling does not suspend */
    int64_t t0 = coil_loop_time(s->loop);
    s->r_sleep = coil_sleep(HOUR);
    s->slept = coil_loop_time(s->loop) - t0;
    s->r_after = coil_sleep(COIL_MSEC);
    return 0;
}

static void test_self_cancel(void **state)
{
    struct fixture *f = *state;
    struct selfc s = {.loop = f->loop, 1, 1, 1, -1, false};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, self_cancel_body, &s, &t), 0);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(s.cancel_r, 0);
    assert_true(s.ran_on);
    assert_int_equal(s.r_sleep, -ECANCELED);
    assert_int_equal(s.slept, 0); /* it did not wait at all */
    assert_int_equal(s.r_after, 0);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

/* The completed result wins: the future's result arrives, then the cancel,
 * before the task resumes. */
struct race {
    coil_future_t *fut;
    coil_task_t *task;
    int set_r, cancel_r;
};

static void result_then_cancel(void *arg)
{
    struct race *r = arg;
    r->set_r = coil_future_set_result(r->fut, (void *)(intptr_t)11);
    r->cancel_r = coil_task_cancel(r->task);
}

struct race_waiter {
    coil_future_t *fut;
    int r_await, r_next, r_after;
    void *value;
};

static int race_waiter_body(void *arg)
{
    struct race_waiter *w = arg;
    w->r_await = coil_await(w->fut, &w->value);
    w->r_next = coil_yield();
    w->r_after = coil_yield();
    return 0;
}

struct race_inner_ctx {
    coil_loop_t *loop;
    struct test_canceller *cancel_outer;
};

static int race_inner(void *arg)
{
    struct race_inner_ctx *c = arg;
    coil_sleep(COIL_MSEC);
    /* Queued before this task completes, so it runs after the outer's
     * wait has its result but before the outer resumes. */
    coil_loop_call_soon(c->loop, test_cancel_cb, c->cancel_outer, NULL);
    return 9;
}

static void test_completed_result_wins(void **state)
{
    struct fixture *f = *state;
    /* A plain future. */
    struct race_waiter w = {.r_await = 1, .r_next = 1, .r_after = 1};
    assert_int_equal(coil_future_new(f->loop, &w.fut), 0);
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, race_waiter_body, &w, &t), 0);
    struct race r = {w.fut, t, 1, 1};
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, result_then_cancel, &r, NULL),
        0);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(r.set_r, 0);
    assert_int_equal(r.cancel_r, 0);
    assert_int_equal(w.r_await, 0);
    assert_int_equal((intptr_t)w.value, 11);
    assert_int_equal(w.r_next, -ECANCELED); /* delivered, not lost */
    assert_int_equal(w.r_after, 0);         /* and only once */
    coil_future_unref(w.fut);
    coil_task_unref(t);

    /* A task's result. */
    struct test_canceller c = {NULL, 1, 0};
    struct race_inner_ctx ic = {f->loop, &c};
    coil_task_t *inner;
    assert_int_equal(coil_task_spawn(f->loop, race_inner, &ic, &inner), 0);
    w = (struct race_waiter){coil_task_future(inner), 1, 1, 1, NULL};
    assert_int_equal(coil_task_spawn(f->loop, race_waiter_body, &w, &t), 0);
    c.task = t;
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(c.result, 0);
    assert_int_equal(w.r_await, 0);
    assert_int_equal((intptr_t)w.value, 9);
    assert_int_equal(coil_task_cancelling(inner), 0u);
    assert_int_equal(w.r_next, -ECANCELED);
    assert_int_equal(w.r_after, 0);
    coil_task_unref(inner);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

struct uncancel_ctx {
    unsigned left[4];
    int r[3];
};

static int uncancel_body(void *arg)
{
    struct uncancel_ctx *u = arg;
    coil_task_t *me = coil_current_task();
    /* One request, withdrawn: nothing is delivered. */
    coil_task_cancel(me);
    u->left[0] = coil_task_uncancel(me);
    u->r[0] = coil_yield();
    /* Two requests, one withdrawn: still delivered. */
    coil_task_cancel(me);
    coil_task_cancel(me);
    u->left[1] = coil_task_uncancel(me);
    u->r[1] = coil_yield();
    /* Withdrawing the last one after delivery changes nothing more. */
    u->left[2] = coil_task_uncancel(me);
    u->left[3] = coil_task_uncancel(me); /* none left: stays 0 */
    u->r[2] = coil_yield();
    return 0;
}

static void test_uncancel(void **state)
{
    struct fixture *f = *state;
    struct uncancel_ctx u;
    memset(&u, 0x55, sizeof(u));
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, uncancel_body, &u, &t), 0);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(u.left[0], 0u);
    assert_int_equal(u.r[0], 0);
    assert_int_equal(u.left[1], 1u);
    assert_int_equal(u.r[1], -ECANCELED);
    assert_int_equal(u.left[2], 0u);
    assert_int_equal(u.left[3], 0u);
    assert_int_equal(u.r[2], 0);
    coil_task_unref(t);

    /* Withdrawn from outside before the task starts: it runs. */
    int ran = 0;
    assert_int_equal(coil_task_spawn(f->loop, mark_ran, &ran, &t), 0);
    assert_int_equal(coil_task_cancel(t), 0);
    assert_int_equal(coil_task_cancelling(t), 1u);
    assert_int_equal(coil_task_uncancel(t), 0u);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(ran, 1);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* A chain of tasks awaiting each other                                 */
/* ------------------------------------------------------------------ */

#define CHAIN 5000

struct chain {
    coil_loop_t *loop;
    int results[CHAIN];
    int depth_started;
};

struct link {
    struct chain *c;
    int i;
};

static int link_body(void *arg)
{
    struct link *l = arg;
    struct chain *c = l->c;
    c->depth_started++;
    if (l->i == CHAIN - 1) {
        c->results[l->i] = coil_sleep(HOUR);
        return c->results[l->i];
    }
    coil_task_t *next = NULL;
    if (coil_task_spawn(c->loop, link_body, l + 1, &next))
        return -ENOMEM;
    c->results[l->i] = coil_task_join(next);
    coil_task_unref(next);
    return c->results[l->i];
}

struct chain_main {
    struct chain *c;
    struct link *links;
    coil_task_t *head;
    int cancel_r;
};

static int chain_canceller(void *arg)
{
    struct chain_main *m = arg;
    while (m->c->depth_started < CHAIN)
        coil_yield();
    coil_sleep(COIL_MSEC); /* the tail is asleep, every link awaits */
    /* On a small task stack (64 KiB): passing the cancel down the chain
     * must not recurse once per link. */
    m->cancel_r = coil_task_cancel(m->head);
    return 0;
}

static void test_cancel_chain(void **state)
{
    struct fixture *f = *state;
    struct chain *c = test_calloc(1, sizeof(*c));
    struct link *links = test_calloc(CHAIN, sizeof(*links));
    c->loop = f->loop;
    for (int i = 0; i < CHAIN; i++) {
        links[i] = (struct link){c, i};
        c->results[i] = 1;
    }
    struct chain_main m = {c, links, NULL, 1};
    assert_int_equal(coil_task_spawn(f->loop, link_body, &links[0], &m.head),
                     0);
    coil_task_t *k;
    coil_task_options_t small = {.stack_size = 64 * 1024};
    assert_int_equal(
        coil_task_spawn_opts(f->loop, chain_canceller, &m, &small, &k), 0);
    assert_int_equal(test_run_done(f->loop, m.head), -ECANCELED);
    assert_int_equal(m.cancel_r, 0);
    for (int i = 0; i < CHAIN; i++)
        assert_int_equal(c->results[i], -ECANCELED);
    coil_task_unref(m.head);
    coil_task_unref(k);
    test_assert_no_tasks(f->loop);
    test_free(c);
    test_free(links);
}

/* ------------------------------------------------------------------ */
/* A cancellation pending when a wait for another task begins           */
/* ------------------------------------------------------------------ */

struct passon {
    coil_loop_t *loop;
    int inner_r, outer_r, inner_ran, next_r;
    bool inner_done_first;
    coil_task_t *inner;
};

static int passon_inner(void *arg)
{
    struct passon *p = arg;
    p->inner_ran++;
    p->inner_r = coil_sleep(HOUR);
    return p->inner_r;
}

static int passon_outer(void *arg)
{
    struct passon *p = arg;
    coil_task_cancel(coil_current_task());
    /* As in asyncio, the cancel goes into what is awaited: the inner
     * task is cancelled, and awaited until it has finished. */
    p->outer_r = coil_task_join(p->inner);
    p->inner_done_first = coil_future_done(coil_task_future(p->inner));
    p->next_r = coil_yield(); /* the cancel was delivered once */
    return 0;
}

static int passon_main(void *arg)
{
    struct passon *p = arg;
    p->inner = test_spawn(p->loop, passon_inner, p);
    coil_sleep(COIL_MSEC); /* inner is asleep */
    coil_task_t *o = test_spawn(p->loop, passon_outer, p);
    test_join(o);
    coil_task_unref(p->inner);
    return 0;
}

static void test_self_cancel_then_await_task(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    struct fixture *f = *state;
    struct passon p = {.loop = f->loop, .inner_r = 1, .outer_r = 1};
    assert_int_equal(test_run_task(f->loop, passon_main, &p), 0);
    assert_int_equal(p.inner_ran, 1);
    assert_int_equal(p.inner_r, -ECANCELED);
    assert_int_equal(p.outer_r, -ECANCELED);
    assert_true(p.inner_done_first);
    assert_int_equal(p.next_r, 0);
    test_assert_no_tasks(f->loop);
}

#define MANY 1000

struct many {
    int results[MANY];
    int finished;
};

struct many_arg {
    struct many *m;
    int i;
};

static int many_body(void *arg)
{
    struct many_arg *a = arg;
    a->m->results[a->i] = coil_sleep(HOUR);
    a->m->finished++;
    return a->m->results[a->i];
}

struct many_main {
    coil_loop_t *loop;
    struct many_arg *args;
    coil_task_t **tasks;
    int spawn_errors, cancel_errors, gather_r;
};

static int many_main_body(void *arg)
{
    struct many_main *mm = arg;
    coil_future_t **futs = test_calloc(MANY, sizeof(*futs));
    if (!futs)
        return -ENOMEM;
    for (int i = 0; i < MANY; i++) {
        if (coil_task_spawn(mm->loop, many_body, &mm->args[i], &mm->tasks[i]))
            mm->spawn_errors++;
        futs[i] = coil_task_future(mm->tasks[i]);
    }
    coil_sleep(COIL_MSEC); /* all of them are asleep now */
    for (int i = 0; i < MANY; i++)
        if (coil_task_cancel(mm->tasks[i]) != 0)
            mm->cancel_errors++;
    mm->gather_r = coil_gather(futs, MANY, NULL, COIL_GATHER_RETURN_ERRORS);
    test_free(futs);
    return 0;
}

static void test_cancel_many(void **state)
{
    struct fixture *f = *state;
    struct many *m = test_calloc(1, sizeof(*m));
    struct many_arg *args = test_calloc(MANY, sizeof(*args));
    coil_task_t **tasks = test_calloc(MANY, sizeof(*tasks));
    for (int i = 0; i < MANY; i++) {
        args[i] = (struct many_arg){m, i};
        m->results[i] = 1;
    }
    struct many_main mm = {f->loop, args, tasks, 0, 0, 1};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, many_main_body, &mm, &t), 0);
    assert_int_equal(test_run_done(f->loop, t), 0);
    assert_int_equal(mm.spawn_errors, 0);
    assert_int_equal(mm.cancel_errors, 0);
    assert_int_equal(mm.gather_r, 0);
    assert_int_equal(m->finished, MANY);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(m->results[i], -ECANCELED);
        assert_true(coil_future_cancelled(coil_task_future(tasks[i])));
        coil_task_unref(tasks[i]);
    }
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
    test_free(m);
    test_free(args);
    test_free(tasks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_FAKE(test_cancel_sleep),
        TEST_FAKE(test_cancel_yield),
        TEST_FAKE(test_cancel_await_future),
        TEST_FAKE(test_cancel_await_task),
        TEST_FAKE(test_cancel_shield),
        TEST_FAKE(test_cancel_gather),
        TEST_FAKE(test_cancel_wait),
        TEST_FAKE(test_cancel_as_completed),
        TEST_FAKE(test_cancel_group_wait),
        TEST_FAKE(test_cancel_inside_timeout_scope),
        TEST_FAKE(test_cancel_before_start),
        TEST_FAKE(test_cancel_repeated),
        TEST_FAKE(test_cancel_finished),
        TEST_FAKE(test_cancel_caught_cleanup),
        TEST_FAKE(test_self_cancel),
        TEST_FAKE(test_completed_result_wins),
        TEST_FAKE(test_uncancel),
        TEST_FAKE(test_cancel_many),
        TEST_FAKE(test_cancel_chain),
        TEST_FAKE(test_self_cancel_then_await_task),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
