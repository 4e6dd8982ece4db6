/* SPDX-License-Identifier: MIT */
/*
 * test_timeout.c - timeout scopes and wait_for: a scope that expires
 * (-ETIMEDOUT from coil_timeout_end) or not (the body's result), nested
 * scopes, a cancel from outside staying -ECANCELED, deadlines already
 * past or passing while the task runs, reschedule, the queries, misuse
 * (outside a task, another task's scope, a scope never ended), a loop
 * closed inside a scope; wait_for in time, on timeout (the inner task is
 * cancelled and awaited), with a result racing the caller's cancel or the
 * deadline (never lost), without a limit and with a zero timeout.
 *
 * Tasks and callbacks only record what they see; the assertions run on
 * the main stack once the loop has returned. Time runs on the virtual
 * clock with autojump.
 */
#include <string.h>

#include "helpers.h"
#include "loop_internal.h"

#define HOUR (3600 * COIL_SEC)

struct resolve {
    coil_future_t *fut;
    void *value;
};

static void resolve_cb(void *arg)
{
    struct resolve *r = arg;
    coil_future_set_result(r->fut, r->value);
}

/* ------------------------------------------------------------------ */
/* Scopes                                                               */
/* ------------------------------------------------------------------ */

struct scope_ctx {
    coil_loop_t *loop;
    int begin_r;
    int body_r, end_r, after_r;
    bool expired_before_end;
    int64_t elapsed, when, start;
};

static int expire_body(void *arg)
{
    struct scope_ctx *s = arg;
    coil_timeout_t *sc;
    s->start = coil_loop_time(s->loop);
    s->begin_r = coil_timeout_begin(10 * COIL_MSEC, &sc);
    if (s->begin_r)
        return s->begin_r;
    s->when = coil_timeout_when(sc);
    s->body_r = coil_sleep(COIL_SEC);
    s->elapsed = coil_loop_time(s->loop) - s->start;
    s->expired_before_end = coil_timeout_expired(sc);
    s->end_r = coil_timeout_end(sc, s->body_r);
    /* The scope is over: its cancel does not outlive it. */
    s->after_r = coil_sleep(COIL_MSEC);
    return s->end_r;
}

static void test_scope_expires(void **state)
{
    struct fixture *f = *state;
    struct scope_ctx s = {
        .loop = f->loop, .body_r = 1, .end_r = 1, .after_r = 1};
    assert_int_equal(test_run_task(f->loop, expire_body, &s), -ETIMEDOUT);
    assert_int_equal(s.begin_r, 0);
    assert_int_equal(s.when, s.start + 10 * COIL_MSEC);
    assert_int_equal(s.body_r, -ECANCELED);
    assert_true(s.elapsed >= 10 * COIL_MSEC);
    assert_true(s.elapsed < COIL_SEC);
    assert_true(s.expired_before_end);
    assert_int_equal(s.end_r, -ETIMEDOUT);
    assert_int_equal(s.after_r, 0);
    test_assert_no_tasks(f->loop);
}

static int in_time_body(void *arg)
{
    struct scope_ctx *s = arg;
    coil_timeout_t *sc;
    s->start = coil_loop_time(s->loop);
    s->begin_r = coil_timeout_begin(100 * COIL_MSEC, &sc);
    if (s->begin_r)
        return s->begin_r;
    s->body_r = coil_sleep(10 * COIL_MSEC);
    s->expired_before_end = coil_timeout_expired(sc);
    s->end_r = coil_timeout_end(sc, s->body_r == 0 ? 7 : s->body_r);
    /* Past the old deadline: nothing fires any more. */
    s->after_r = coil_sleep(COIL_SEC);
    s->elapsed = coil_loop_time(s->loop) - s->start;
    return s->end_r;
}

static void test_scope_in_time(void **state)
{
    struct fixture *f = *state;
    struct scope_ctx s = {.loop = f->loop,
                          .body_r = 1,
                          .end_r = 1,
                          .after_r = 1,
                          .expired_before_end = true};
    assert_int_equal(test_run_task(f->loop, in_time_body, &s), 7);
    assert_int_equal(s.body_r, 0);
    assert_false(s.expired_before_end);
    assert_int_equal(s.end_r, 7);
    assert_int_equal(s.after_r, 0);
    assert_true(s.elapsed >= COIL_SEC);
    test_assert_no_tasks(f->loop);
}

/* The body failing with its own error keeps it; an error other than
 * -ECANCELED is never turned into -ETIMEDOUT even after expiry. */
struct keep_ctx {
    int end_err, end_expired_err, end_expired_zero;
    int after;
};

static int keep_body(void *arg)
{
    struct keep_ctx *k = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(HOUR, &sc))
        return -ENOMEM;
    k->end_err = coil_timeout_end(sc, -EIO);
    if (coil_timeout_begin(COIL_MSEC, &sc))
        return -ENOMEM;
    coil_sleep(COIL_SEC); /* expires */
    k->end_expired_err = coil_timeout_end(sc, -EIO);
    if (coil_timeout_begin(COIL_MSEC, &sc))
        return -ENOMEM;
    coil_sleep(COIL_SEC); /* expires */
    k->end_expired_zero = coil_timeout_end(sc, 0);
    k->after = coil_yield();
    return 0;
}

static void test_scope_keeps_other_results(void **state)
{
    struct fixture *f = *state;
    struct keep_ctx k = {1, 1, 1, 1};
    assert_int_equal(test_run_task(f->loop, keep_body, &k), 0);
    assert_int_equal(k.end_err, -EIO);
    assert_int_equal(k.end_expired_err, -EIO);
    assert_int_equal(k.end_expired_zero, 0);
    assert_int_equal(k.after, 0);
}

struct nest_ctx {
    coil_loop_t *loop;
    int inner_body, inner_end, between, outer_body, outer_end, after;
    bool inner_expired, outer_expired;
};

/* The inner scope expires; the outer one is unaffected. */
static int nest_inner_expires(void *arg)
{
    struct nest_ctx *n = arg;
    coil_timeout_t *outer, *inner;
    if (coil_timeout_begin(COIL_SEC, &outer))
        return -ENOMEM;
    if (coil_timeout_begin(10 * COIL_MSEC, &inner))
        return -ENOMEM;
    n->inner_body = coil_sleep(100 * COIL_MSEC);
    n->inner_expired = coil_timeout_expired(inner);
    n->inner_end = coil_timeout_end(inner, n->inner_body);
    n->between = coil_sleep(10 * COIL_MSEC);
    n->outer_expired = coil_timeout_expired(outer);
    n->outer_end = coil_timeout_end(outer, n->between);
    n->after = coil_yield();
    return 0;
}

/* The outer scope expires while the inner one is open. */
static int nest_outer_expires(void *arg)
{
    struct nest_ctx *n = arg;
    coil_timeout_t *outer, *inner;
    if (coil_timeout_begin(10 * COIL_MSEC, &outer))
        return -ENOMEM;
    if (coil_timeout_begin(COIL_SEC, &inner))
        return -ENOMEM;
    n->inner_body = coil_sleep(100 * COIL_MSEC);
    n->inner_expired = coil_timeout_expired(inner);
    n->inner_end = coil_timeout_end(inner, n->inner_body);
    n->outer_expired = coil_timeout_expired(outer);
    n->outer_end = coil_timeout_end(outer, n->inner_end);
    n->after = coil_yield();
    return 0;
}

static void test_scope_nested(void **state)
{
    struct fixture *f = *state;
    struct nest_ctx n;
    memset(&n, 0x55, sizeof(n));
    n.loop = f->loop;
    assert_int_equal(test_run_task(f->loop, nest_inner_expires, &n), 0);
    assert_int_equal(n.inner_body, -ECANCELED);
    assert_true(n.inner_expired);
    assert_int_equal(n.inner_end, -ETIMEDOUT);
    assert_int_equal(n.between, 0);
    assert_false(n.outer_expired);
    assert_int_equal(n.outer_end, 0);
    assert_int_equal(n.after, 0);

    memset(&n, 0x55, sizeof(n));
    n.loop = f->loop;
    assert_int_equal(test_run_task(f->loop, nest_outer_expires, &n), 0);
    assert_int_equal(n.inner_body, -ECANCELED);
    assert_false(n.inner_expired);
    assert_int_equal(n.inner_end, -ECANCELED); /* not the inner's doing */
    assert_true(n.outer_expired);
    assert_int_equal(n.outer_end, -ETIMEDOUT);
    assert_int_equal(n.after, 0);
    test_assert_no_tasks(f->loop);
}

struct outside_ctx {
    int body_r, end_r, next_r, after_r;
    bool expired;
    int self_cancel;
};

static int outside_cancel_body(void *arg)
{
    struct outside_ctx *o = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(COIL_SEC, &sc))
        return -ENOMEM;
    o->body_r = coil_sleep(HOUR);
    o->expired = coil_timeout_expired(sc);
    o->end_r = coil_timeout_end(sc, o->body_r);
    o->next_r = coil_yield();
    return o->end_r;
}

/* The scope expires, then the task is cancelled by someone else too
 * before the scope ends: both requests are counted, the scope withdraws
 * only its own. */
static int both_cancel_body(void *arg)
{
    struct outside_ctx *o = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(COIL_MSEC, &sc))
        return -ENOMEM;
    o->body_r = coil_sleep(HOUR);
    o->expired = coil_timeout_expired(sc);
    o->self_cancel = coil_task_cancel(coil_current_task());
    o->end_r = coil_timeout_end(sc, o->body_r);
    o->next_r = coil_yield();
    o->after_r = coil_yield();
    return 0;
}

static void test_scope_outside_cancel(void **state)
{
    struct fixture *f = *state;
    struct outside_ctx o = {1, 1, 1, 1, true, 1};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, outside_cancel_body, &o, &t), 0);
    struct test_canceller c = {t, 1, 0};
    assert_int_equal(
        coil_loop_call_later(f->loop, 5 * COIL_MSEC, test_cancel_cb, &c, NULL),
        0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), -ECANCELED);
    assert_int_equal(c.result, 0);
    assert_int_equal(o.body_r, -ECANCELED);
    assert_false(o.expired);
    assert_int_equal(o.end_r, -ECANCELED);
    assert_int_equal(o.next_r, 0); /* delivered once, by the sleep */
    coil_task_unref(t);

    o = (struct outside_ctx){1, 1, 1, 1, false, 1};
    assert_int_equal(test_run_task(f->loop, both_cancel_body, &o), 0);
    assert_int_equal(o.body_r, -ECANCELED);
    assert_true(o.expired);
    assert_int_equal(o.self_cancel, 0);
    assert_int_equal(o.end_r, -ECANCELED);
    assert_int_equal(o.next_r, -ECANCELED); /* the other request */
    assert_int_equal(o.after_r, 0);
    test_assert_no_tasks(f->loop);
}

/* The deadline and a cancel from outside arrive in the same iteration
 * (in either order) while the task sleeps: the sleep sees one -ECANCELED
 * for both, and the scope's end does not turn it into -ETIMEDOUT, since
 * the outside request is still there. */
struct both_ctx {
    coil_loop_t *loop;
    struct test_canceller *late; /* scheduled after the scope, same deadline */
    int body_r, end_r;
    bool expired;
};

static int both_body(void *arg)
{
    struct both_ctx *b = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(10 * COIL_MSEC, &sc))
        return -ENOMEM;
    if (b->late)
        coil_loop_call_at(b->loop, coil_timeout_when(sc), test_cancel_cb,
                          b->late, NULL);
    b->body_r = coil_sleep(HOUR);
    b->expired = coil_timeout_expired(sc);
    b->end_r = coil_timeout_end(sc, b->body_r);
    return b->end_r;
}

static void test_scope_expiry_races_outside_cancel(void **state)
{
    struct fixture *f = *state;
    for (int outside_first = 0; outside_first < 2; outside_first++) {
        struct test_canceller c = {NULL, 1, 0};
        struct both_ctx b = {f->loop, outside_first ? NULL : &c, 1, 1, false};
        coil_task_t *t;
        assert_int_equal(coil_task_spawn(f->loop, both_body, &b, &t), 0);
        c.task = t;
        /* Timers of the same deadline run in the order they were made:
         * this one before the scope's. */
        if (outside_first)
            assert_int_equal(
                coil_loop_call_at(f->loop,
                                  coil_loop_time(f->loop) + 10 * COIL_MSEC,
                                  test_cancel_cb, &c, NULL),
                0);
        assert_int_equal(test_run_until(f->loop, coil_task_future(t)), -ECANCELED);
        assert_int_equal(c.result, 0);
        assert_int_equal(b.body_r, -ECANCELED);
        assert_true(b.expired);
        assert_int_equal(b.end_r, -ECANCELED);
        coil_task_unref(t);
    }
    test_assert_no_tasks(f->loop);
}

struct past_ctx {
    coil_loop_t *loop;
    int64_t delay;  /* for coil_timeout_begin */
    bool absolute;  /* use begin_at(now - 1 s) */
    bool use_yield; /* the next wait is a yield, not a sleep */
    int begin_r, wait_r, end_r;
    int64_t waited;
};

static int past_body(void *arg)
{
    struct past_ctx *p = arg;
    coil_timeout_t *sc;
    int64_t now = coil_loop_time(p->loop);
    p->begin_r = p->absolute ? coil_timeout_begin_at(now - COIL_SEC, &sc)
                             : coil_timeout_begin(p->delay, &sc);
    if (p->begin_r)
        return p->begin_r;
    p->wait_r = p->use_yield ? coil_yield() : coil_sleep(HOUR);
    p->waited = coil_loop_time(p->loop) - now;
    p->end_r = coil_timeout_end(sc, p->wait_r);
    return 0;
}

/* A deadline already past (zero or negative delay, or a time before now)
 * expires at the next wait. */
static void test_scope_deadline_past(void **state)
{
    struct fixture *f = *state;
    static const struct {
        int64_t delay;
        bool absolute;
        bool use_yield;
    } cases[] = {
        {0, false, false}, {-COIL_SEC, false, false},
        {0, true, false},  {INT64_MIN, false, false},
        {0, false, true},  {-COIL_SEC, false, true},
    };
    enum { NCASES = sizeof(cases) / sizeof(cases[0]) };
    struct past_ctx p[NCASES];
    for (size_t i = 0; i < NCASES; i++) {
        p[i] = (struct past_ctx){.loop = f->loop,
                                 .delay = cases[i].delay,
                                 .absolute = cases[i].absolute,
                                 .use_yield = cases[i].use_yield,
                                 1,
                                 1,
                                 1,
                                 -1};
        assert_int_equal(test_run_task(f->loop, past_body, &p[i]), 0);
    }
    /* The next wait is a sleep. */
    for (size_t i = 0; i < NCASES; i++) {
        if (cases[i].use_yield)
            continue;
        assert_int_equal(p[i].begin_r, 0);
        assert_int_equal(p[i].wait_r, -ECANCELED);
        assert_true(p[i].waited < HOUR);
        assert_int_equal(p[i].end_r, -ETIMEDOUT);
    }
    /* The next wait is a yield. */
    for (size_t i = 0; i < NCASES; i++) {
        if (!cases[i].use_yield)
            continue;
        assert_int_equal(p[i].begin_r, 0);
        assert_int_equal(p[i].wait_r, -ECANCELED);
        assert_int_equal(p[i].end_r, -ETIMEDOUT);
    }
    test_assert_no_tasks(f->loop);
}

/* The deadline passes while the task runs without waiting: it is
 * cancelled at a following wait. */
struct busy_ctx {
    coil_loop_t *loop;
    int yields, last_r, end_r;
};

static int busy_body(void *arg)
{
    struct busy_ctx *b = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(10 * COIL_MSEC, &sc))
        return -ENOMEM;
    /* Busy for 20 ms of (virtual) time, without waiting. */
    coil_test_clock_advance(20 * COIL_MSEC);
    coil_loop_update_time(b->loop);
    /* Only yields from now on: the loop must still notice the deadline. */
    int r = 0;
    while (b->yields < 1000 && (r = coil_yield()) == 0)
        b->yields++;
    b->last_r = r;
    b->end_r = coil_timeout_end(sc, r);
    return 0;
}

static void test_scope_expires_while_busy(void **state)
{
    struct fixture *f = *state;
    struct busy_ctx b = {.loop = f->loop, .last_r = 1, .end_r = 1};
    assert_int_equal(test_run_task(f->loop, busy_body, &b), 0);
    assert_int_equal(b.last_r, -ECANCELED);
    assert_true(b.yields < 1000);
    assert_int_equal(b.end_r, -ETIMEDOUT);
    test_assert_no_tasks(f->loop);
}

struct resched_ctx {
    coil_loop_t *loop;
    int r_extend, r_sleep1, r_none, r_sleep2, r_shorten, r_sleep3;
    int r_after_expiry, r_null, end_r;
    int64_t when_extended, when_none, expected_extended;
    bool expired_before, expired_after;
};

static int resched_body(void *arg)
{
    struct resched_ctx *r = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(10 * COIL_MSEC, &sc))
        return -ENOMEM;
    /* Extended before it expires. */
    r->expected_extended = coil_loop_time(r->loop) + 50 * COIL_MSEC;
    r->r_extend = coil_timeout_reschedule(sc, r->expected_extended);
    r->when_extended = coil_timeout_when(sc);
    r->r_sleep1 = coil_sleep(20 * COIL_MSEC); /* past the old deadline */
    /* No deadline at all. */
    r->r_none = coil_timeout_reschedule(sc, INT64_MAX);
    r->when_none = coil_timeout_when(sc);
    r->r_sleep2 = coil_sleep(HOUR / 60);
    r->expired_before = coil_timeout_expired(sc);
    /* Shortened: now + 5 ms. */
    r->r_shorten =
        coil_timeout_reschedule(sc, coil_loop_time(r->loop) + 5 * COIL_MSEC);
    r->r_sleep3 = coil_sleep(HOUR);
    r->expired_after = coil_timeout_expired(sc);
    r->r_after_expiry = coil_timeout_reschedule(sc, INT64_MAX);
    r->r_null = coil_timeout_reschedule(NULL, INT64_MAX);
    r->end_r = coil_timeout_end(sc, r->r_sleep3);
    return 0;
}

static void test_scope_reschedule(void **state)
{
    struct fixture *f = *state;
    struct resched_ctx r;
    memset(&r, 0x55, sizeof(r));
    r.loop = f->loop;
    assert_int_equal(test_run_task(f->loop, resched_body, &r), 0);
    assert_int_equal(r.r_extend, 0);
    assert_int_equal(r.when_extended, r.expected_extended);
    assert_int_equal(r.r_sleep1, 0);
    assert_int_equal(r.r_none, 0);
    assert_int_equal(r.when_none, INT64_MAX);
    assert_int_equal(r.r_sleep2, 0);
    assert_false(r.expired_before);
    assert_int_equal(r.r_shorten, 0);
    assert_int_equal(r.r_sleep3, -ECANCELED);
    assert_true(r.expired_after);
    assert_int_equal(r.r_after_expiry, -EALREADY);
    assert_int_equal(r.r_null, -EINVAL);
    assert_int_equal(r.end_r, -ETIMEDOUT);
    test_assert_no_tasks(f->loop);
}

/* Reschedule when no timer can be had: -ENOMEM, and the old deadline
 * stays in force (it used to be disarmed first, leaving none). */
struct resched_oom {
    coil_loop_t *loop;
    int64_t deadline, when_after, woke_at;
    int r_resched, r_sleep, end_r;
    bool failed;
};

static int resched_oom_body(void *arg)
{
    struct resched_oom *r = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(10 * COIL_MSEC, &sc))
        return -ENOMEM;
    r->deadline = coil_timeout_when(sc);
    /* Take every timer handle the pool has ready, so that the next one
     * needs memory. */
    struct coil__pool *pool = &r->loop->ready.timer_pool;
    enum { CAP = 4096 };
    static coil_handle_t *held[CAP];
    size_t n = 0;
    while (n < CAP && (pool->free || pool->fresh != pool->fresh_end))
        if (coil_loop_call_later(r->loop, HOUR, test_stop_cb, NULL,
                                 &held[n++]))
            return -ENOMEM;
    test_alloc_fail_after(1);
    r->r_resched = coil_timeout_reschedule(sc, r->deadline + 40 * COIL_MSEC);
    r->failed = test_alloc_failed();
    test_alloc_fail_after(0);
    for (size_t i = 0; i < n; i++) {
        coil_handle_cancel(held[i]);
        coil_handle_unref(held[i]);
    }
    r->when_after = coil_timeout_when(sc);
    r->r_sleep = coil_sleep(HOUR);
    r->woke_at = coil_loop_time(r->loop);
    r->end_r = coil_timeout_end(sc, r->r_sleep);
    return 0;
}

static void test_scope_reschedule_no_memory(void **state)
{
    struct fixture *f = *state;
    struct resched_oom r = {f->loop, 0, 0, 0, 1, 1, 1, false};
    assert_int_equal(test_run_task(f->loop, resched_oom_body, &r), 0);
    assert_true(r.failed);
    assert_int_equal(r.r_resched, -ENOMEM);
    assert_int_equal(r.when_after, r.deadline);
    assert_int_equal(r.r_sleep, -ECANCELED);
    assert_int_equal(r.woke_at, r.deadline);
    assert_int_equal(r.end_r, -ETIMEDOUT);
    test_assert_no_tasks(f->loop);
}

struct query_ctx {
    coil_loop_t *loop;
    int64_t when_max, when_rel, when_abs, expected_rel;
    bool expired_max;
    int r_sleep, end_max, end_abs, end_rel;
};

static int query_body(void *arg)
{
    struct query_ctx *q = arg;
    coil_timeout_t *a, *b, *c;
    if (coil_timeout_begin(INT64_MAX, &a))
        return -ENOMEM;
    q->when_max = coil_timeout_when(a);
    q->r_sleep = coil_sleep(HOUR); /* no deadline: a full hour */
    q->expired_max = coil_timeout_expired(a);
    q->expected_rel = coil_loop_time(q->loop) + 3 * COIL_SEC;
    if (coil_timeout_begin(3 * COIL_SEC, &b))
        return -ENOMEM;
    q->when_rel = coil_timeout_when(b);
    if (coil_timeout_begin_at(12345 * COIL_SEC, &c))
        return -ENOMEM;
    q->when_abs = coil_timeout_when(c);
    q->end_abs = coil_timeout_end(c, 0);
    q->end_rel = coil_timeout_end(b, 1);
    q->end_max = coil_timeout_end(a, 2);
    return 0;
}

static void test_scope_queries(void **state)
{
    struct fixture *f = *state;
    struct query_ctx q;
    memset(&q, 0x55, sizeof(q));
    q.loop = f->loop;
    assert_int_equal(test_run_task(f->loop, query_body, &q), 0);
    assert_int_equal(q.when_max, INT64_MAX);
    assert_int_equal(q.r_sleep, 0);
    assert_false(q.expired_max);
    assert_int_equal(q.when_rel, q.expected_rel);
    assert_int_equal(q.when_abs, 12345 * COIL_SEC);
    assert_int_equal(q.end_abs, 0);
    assert_int_equal(q.end_rel, 1);
    assert_int_equal(q.end_max, 2);
    assert_int_equal(coil_timeout_when(NULL), 0);
    assert_false(coil_timeout_expired(NULL));
    test_assert_no_tasks(f->loop);
}

struct misuse_ctx {
    coil_timeout_t *scope; /* the owner's */
    int begin_null, begin_at_null, end_null, end_by_other, end_by_owner;
    int owner_sleep;
    bool owner_expired;
};

static int misuse_owner(void *arg)
{
    struct misuse_ctx *m = arg;
    if (coil_timeout_begin(HOUR, &m->scope))
        return -ENOMEM;
    m->owner_sleep = coil_sleep(10 * COIL_MSEC); /* the other task runs */
    m->owner_expired = coil_timeout_expired(m->scope);
    m->end_by_owner = coil_timeout_end(m->scope, 3);
    return 0;
}

static int misuse_other(void *arg)
{
    struct misuse_ctx *m = arg;
    m->begin_null = coil_timeout_begin(COIL_SEC, NULL);
    m->begin_at_null = coil_timeout_begin_at(COIL_SEC, NULL);
    m->end_null = coil_timeout_end(NULL, 0);
    m->end_by_other = coil_timeout_end(m->scope, 0);
    return 0;
}

static void test_scope_misuse(void **state)
{
    struct fixture *f = *state;
    /* Outside a task. */
    coil_timeout_t *sc = (coil_timeout_t *)1;
    assert_int_equal(coil_timeout_begin(COIL_SEC, &sc), -EPERM);
    assert_null(sc);
    sc = (coil_timeout_t *)1;
    assert_int_equal(coil_timeout_begin_at(COIL_SEC, &sc), -EPERM);
    assert_null(sc);
    assert_int_equal(coil_timeout_begin(COIL_SEC, NULL), -EINVAL);
    assert_int_equal(coil_timeout_end(NULL, 0), -EINVAL);

    struct misuse_ctx m;
    memset(&m, 0x55, sizeof(m));
    m.scope = NULL;
    coil_task_t *owner, *other;
    assert_int_equal(coil_task_spawn(f->loop, misuse_owner, &m, &owner), 0);
    assert_int_equal(coil_task_spawn(f->loop, misuse_other, &m, &other), 0);
    /* Ending it from the main stack is refused too. */
    assert_int_equal(test_run_until(f->loop, coil_task_future(other)), 0);
    assert_non_null(m.scope);
    assert_int_equal(coil_timeout_end(m.scope, 0), -EINVAL);
    assert_int_equal(test_run_until(f->loop, coil_task_future(owner)), 0);
    assert_int_equal(m.begin_null, -EINVAL);
    assert_int_equal(m.begin_at_null, -EINVAL);
    assert_int_equal(m.end_null, -EINVAL);
    assert_int_equal(m.end_by_other, -EINVAL);
    /* The scope was left alone: the owner ends it normally. */
    assert_int_equal(m.owner_sleep, 0);
    assert_false(m.owner_expired);
    assert_int_equal(m.end_by_owner, 3);
    coil_task_unref(owner);
    coil_task_unref(other);
    test_assert_no_tasks(f->loop);
}

struct open_ctx {
    coil_loop_t *loop;
    int follower_sleep;
};

static int leaves_scopes_open(void *arg)
{
    (void)arg;
    coil_timeout_t *a, *b;
    if (coil_timeout_begin(10 * COIL_MSEC, &a))
        return -ENOMEM;
    if (coil_timeout_begin(20 * COIL_MSEC, &b))
        return -ENOMEM;
    return 4; /* neither ended */
}

static int expiring_open(void *arg)
{
    (void)arg;
    coil_timeout_t *a;
    if (coil_timeout_begin(COIL_MSEC, &a))
        return -ENOMEM;
    return coil_sleep(HOUR); /* expires, never ended */
}

static int follower(void *arg)
{
    struct open_ctx *o = arg;
    o->follower_sleep = coil_sleep(100 * COIL_MSEC);
    return 0;
}

static void test_scope_left_open(void **state)
{
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    assert_int_equal(test_run_task(f->loop, leaves_scopes_open, NULL), 4);
    assert_true(log.count >= 1);
    /* A misuse, not an errno: reported with error 0, the message says
     * what happened. */
    assert_int_equal(log.last_error, 0);
    assert_non_null(strstr(log.last_message, "timeout scope"));
    int reported = log.count;
    assert_int_equal(test_run_task(f->loop, expiring_open, NULL), -ECANCELED);
    assert_true(log.count > reported);
    /* No deadline of theirs fires later (the leak gate checks memory). */
    struct open_ctx o = {f->loop, 1};
    int before = log.count;
    assert_int_equal(test_run_task(f->loop, follower, &o), 0);
    assert_int_equal(o.follower_sleep, 0);
    assert_int_equal(log.count, before);
    test_assert_no_tasks(f->loop);
}

static int sleeps_in_scope(void *arg)
{
    bool *resumed = arg;
    coil_timeout_t *a;
    if (coil_timeout_begin(HOUR, &a))
        return -ENOMEM;
    coil_sleep(HOUR / 2);
    *resumed = true;
    return coil_timeout_end(a, 0);
}

/* The loop is closed while a task sleeps inside a scope. */
static void test_scope_loop_closed(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    bool resumed = false;
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, sleeps_in_scope, &resumed, &t),
                     0);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, test_stop_cb, f->loop, NULL),
        0);
    test_run(f->loop);
    assert_false(coil_future_done(coil_task_future(t)));
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_false(resumed);
    assert_true(coil_future_cancelled(coil_task_future(t)));
    assert_true(log.count >= 1);
    coil_task_unref(t);
}

/* ------------------------------------------------------------------ */
/* wait_for                                                             */
/* ------------------------------------------------------------------ */

struct wf_ctx {
    coil_loop_t *loop;
    coil_future_t *fut;
    int64_t timeout;
    int r;
    void *value;
    int64_t elapsed;
    bool fut_done_at_return;
    int next_r, after_r;
};

static int wf_body(void *arg)
{
    struct wf_ctx *w = arg;
    int64_t t0 = coil_loop_time(w->loop);
    w->r = coil_wait_for(w->fut, w->timeout, &w->value);
    w->elapsed = coil_loop_time(w->loop) - t0;
    w->fut_done_at_return = coil_future_done(w->fut);
    w->next_r = coil_yield();
    w->after_r = coil_yield();
    return 0;
}

static void wf_init(struct wf_ctx *w, coil_loop_t *loop, coil_future_t *fut,
                    int64_t timeout)
{
    *w = (struct wf_ctx){.loop = loop,
                         .fut = fut,
                         .timeout = timeout,
                         .r = 1,
                         .value = (void *)1,
                         .next_r = 1,
                         .after_r = 1};
}

static void test_wait_for_in_time(void **state)
{
    struct fixture *f = *state;
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    struct resolve res = {fut, (void *)(intptr_t)21};
    assert_int_equal(
        coil_loop_call_later(f->loop, 10 * COIL_MSEC, resolve_cb, &res, NULL),
        0);
    struct wf_ctx w;
    wf_init(&w, f->loop, fut, COIL_SEC);
    assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
    assert_int_equal(w.r, 0);
    assert_int_equal((intptr_t)w.value, 21);
    assert_true(w.elapsed >= 10 * COIL_MSEC && w.elapsed < COIL_SEC);
    assert_int_equal(w.next_r, 0);
    coil_future_unref(fut);

    /* An error of the future is returned as is. */
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_int_equal(coil_future_set_error(fut, -EIO), 0);
    wf_init(&w, f->loop, fut, COIL_SEC);
    assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
    assert_int_equal(w.r, -EIO);
    assert_ptr_equal(w.value, (void *)1);
    coil_future_unref(fut);
    test_assert_no_tasks(f->loop);
}

/* An inner task that sleeps; when cancelled it cleans up (waiting 5 ms)
 * and returns ret_on_cancel. */
struct slow {
    int64_t delay;
    int ret;
    int ret_on_cancel;
    int sleep_r, cleanup_r;
    bool cleaned;
};

static int slow_body(void *arg)
{
    struct slow *s = arg;
    s->sleep_r = coil_sleep(s->delay);
    if (s->sleep_r == -ECANCELED) {
        s->cleanup_r = coil_sleep(5 * COIL_MSEC);
        s->cleaned = true;
        return s->ret_on_cancel;
    }
    return s->ret;
}

static void test_wait_for_timeout(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    struct fixture *f = *state;
    struct slow s = {HOUR, 1, -ECANCELED, 1, 1, false};
    coil_task_t *inner;
    assert_int_equal(coil_task_spawn(f->loop, slow_body, &s, &inner), 0);
    struct wf_ctx w;
    wf_init(&w, f->loop, coil_task_future(inner), 10 * COIL_MSEC);
    assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
    assert_int_equal(w.r, -ETIMEDOUT);
    assert_ptr_equal(w.value, (void *)1);
    /* The inner task was cancelled and awaited: its cleanup was over
     * before wait_for returned. */
    assert_true(w.fut_done_at_return);
    assert_int_equal(s.sleep_r, -ECANCELED);
    assert_int_equal(s.cleanup_r, 0);
    assert_true(s.cleaned);
    assert_true(coil_future_cancelled(coil_task_future(inner)));
    assert_true(w.elapsed >= 15 * COIL_MSEC && w.elapsed < HOUR);
    /* The timeout is not a cancel of the caller. */
    assert_int_equal(w.next_r, 0);
    coil_task_unref(inner);

    /* A plain future is cancelled. */
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    wf_init(&w, f->loop, fut, 10 * COIL_MSEC);
    assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
    assert_int_equal(w.r, -ETIMEDOUT);
    assert_true(coil_future_cancelled(fut));
    coil_future_unref(fut);

    /* The inner task swallows the cancel and returns a result: that
     * result is returned, not -ETIMEDOUT. */
    s = (struct slow){HOUR, 1, 11, 1, 1, false};
    assert_int_equal(coil_task_spawn(f->loop, slow_body, &s, &inner), 0);
    wf_init(&w, f->loop, coil_task_future(inner), 10 * COIL_MSEC);
    assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
    assert_int_equal(w.r, 0);
    assert_int_equal((intptr_t)w.value, 11);
    assert_true(s.cleaned);
    assert_int_equal(w.next_r, 0);
    coil_task_unref(inner);
    test_assert_no_tasks(f->loop);
}

/* The caller is cancelled from outside during wait_for: -ECANCELED (not
 * -ETIMEDOUT), the inner task cancelled too. */
static void test_wait_for_outside_cancel(void **state)
{
    struct fixture *f = *state;
    struct slow s = {HOUR, 1, -ECANCELED, 1, 1, false};
    coil_task_t *inner, *t;
    assert_int_equal(coil_task_spawn(f->loop, slow_body, &s, &inner), 0);
    struct wf_ctx w;
    wf_init(&w, f->loop, coil_task_future(inner), COIL_SEC);
    assert_int_equal(coil_task_spawn(f->loop, wf_body, &w, &t), 0);
    struct test_canceller c = {t, 1, 0};
    assert_int_equal(
        coil_loop_call_later(f->loop, 5 * COIL_MSEC, test_cancel_cb, &c, NULL),
        0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), 0);
    assert_int_equal(c.result, 0);
    assert_int_equal(w.r, -ECANCELED);
    assert_true(w.fut_done_at_return);
    assert_true(s.cleaned);
    assert_true(w.elapsed < COIL_SEC);
    coil_task_unref(inner);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

/* The inner result and a cancel of the caller arrive in the same
 * iteration, the result first: wait_for returns the result, and the
 * cancel is delivered at the caller's next wait (asyncio lost it). */
struct race {
    coil_future_t *fut;
    struct test_canceller *cancel;
};

static void result_then_cancel(void *arg)
{
    struct race *r = arg;
    coil_future_set_result(r->fut, (void *)(intptr_t)17);
    r->cancel->result = coil_task_cancel(r->cancel->task);
}

struct race_inner {
    coil_loop_t *loop;
    struct test_canceller *cancel;
};

static int race_inner_body(void *arg)
{
    struct race_inner *ri = arg;
    coil_sleep(5 * COIL_MSEC);
    /* Runs after this task completed, before the caller resumes. */
    coil_loop_call_soon(ri->loop, test_cancel_cb, ri->cancel, NULL);
    return 23;
}

static void test_wait_for_result_races_cancel(void **state)
{
    struct fixture *f = *state;
    /* A plain future. */
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    struct wf_ctx w;
    wf_init(&w, f->loop, fut, COIL_SEC);
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, wf_body, &w, &t), 0);
    struct test_canceller c = {t, 1, 0};
    struct race r = {fut, &c};
    assert_int_equal(coil_loop_call_later(f->loop, 5 * COIL_MSEC,
                                          result_then_cancel, &r, NULL),
                     0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), 0);
    assert_int_equal(c.result, 0);
    assert_int_equal(w.r, 0);
    assert_int_equal((intptr_t)w.value, 17);
    assert_int_equal(w.next_r, -ECANCELED); /* nothing lost */
    assert_int_equal(w.after_r, 0);
    coil_future_unref(fut);
    coil_task_unref(t);

    /* A task. */
    coil_task_t *inner;
    c = (struct test_canceller){NULL, 1, 0};
    struct race_inner ri = {f->loop, &c};
    assert_int_equal(coil_task_spawn(f->loop, race_inner_body, &ri, &inner), 0);
    wf_init(&w, f->loop, coil_task_future(inner), COIL_SEC);
    assert_int_equal(coil_task_spawn(f->loop, wf_body, &w, &t), 0);
    c.task = t;
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), 0);
    assert_int_equal(c.result, 0);
    assert_int_equal(w.r, 0);
    assert_int_equal((intptr_t)w.value, 23);
    assert_int_equal(w.next_r, -ECANCELED);
    assert_int_equal(w.after_r, 0);
    coil_task_unref(inner);
    coil_task_unref(t);
    test_assert_no_tasks(f->loop);
}

/* The result arrives in the iteration the deadline passes, first: the
 * result is returned, and no cancel is left over. */
static int wf_race_deadline_body(void *arg)
{
    struct wf_ctx *w = arg;
    struct resolve res = {w->fut, (void *)(intptr_t)31};
    /* Scheduled before wait_for's deadline, for the same time. */
    coil_loop_call_later(w->loop, w->timeout, resolve_cb, &res, NULL);
    return wf_body(w);
}

static void test_wait_for_result_races_deadline(void **state)
{
    struct fixture *f = *state;
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    struct wf_ctx w;
    wf_init(&w, f->loop, fut, 10 * COIL_MSEC);
    assert_int_equal(test_run_task(f->loop, wf_race_deadline_body, &w), 0);
    assert_int_equal(w.r, 0);
    assert_int_equal((intptr_t)w.value, 31);
    assert_false(coil_future_cancelled(fut));
    assert_int_equal(w.next_r, 0);
    coil_future_unref(fut);
    test_assert_no_tasks(f->loop);
}

static void test_wait_for_no_limit_and_zero(void **state)
{
    struct fixture *f = *state;
    /* COIL_NO_TIMEOUT: no limit. */
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    struct resolve res = {fut, (void *)(intptr_t)41};
    assert_int_equal(
        coil_loop_call_later(f->loop, 2 * HOUR, resolve_cb, &res, NULL), 0);
    struct wf_ctx w;
    wf_init(&w, f->loop, fut, COIL_NO_TIMEOUT);
    assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
    assert_int_equal(w.r, 0);
    assert_int_equal((intptr_t)w.value, 41);
    assert_true(w.elapsed >= 2 * HOUR);
    coil_future_unref(fut);

    /* Zero on a done future: its result. */
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_int_equal(coil_future_set_result(fut, (void *)(intptr_t)43), 0);
    wf_init(&w, f->loop, fut, 0);
    assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
    assert_int_equal(w.r, 0);
    assert_int_equal((intptr_t)w.value, 43);
    assert_int_equal(w.next_r, 0);
    coil_future_unref(fut);

    /* Zero, or a negative time left (a deadline already passed), on a
     * pending future: -ETIMEDOUT at once, the future cancelled. */
    for (int64_t left = 0; left >= -COIL_SEC; left -= COIL_SEC) {
        assert_int_equal(coil_future_new(f->loop, &fut), 0);
        wf_init(&w, f->loop, fut, left);
        assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
        assert_int_equal(w.r, -ETIMEDOUT);
        assert_int_equal(w.elapsed, 0);
        assert_true(coil_future_cancelled(fut));
        assert_int_equal(w.next_r, 0);
        coil_future_unref(fut);
    }

    /* Zero on a future cancelled before: its outcome as it is, as with
     * any other timeout (the call did not cancel it: no timeout). */
    for (int64_t left = 0; left <= COIL_SEC; left += COIL_SEC) {
        assert_int_equal(coil_future_new(f->loop, &fut), 0);
        assert_int_equal(coil_future_cancel(fut), 0);
        wf_init(&w, f->loop, fut, left);
        assert_int_equal(test_run_task(f->loop, wf_body, &w), 0);
        assert_int_equal(w.r, -ECANCELED);
        assert_int_equal(w.next_r, 0);
        coil_future_unref(fut);
    }
    test_assert_no_tasks(f->loop);
}

/* wait_for with no time left on a task that has not started: asyncio
 * times out without starting it, and so does coil. */
struct unstarted {
    coil_loop_t *loop;
    int r, ran;
};

static int unstarted_body(void *arg)
{
    struct unstarted *u = arg;
    u->ran++;
    return 5;
}

static int unstarted_main(void *arg)
{
    struct unstarted *u = arg;
    coil_task_t *t = test_spawn(u->loop, unstarted_body, u);
    u->r = coil_wait_for(coil_task_future(t), 0, NULL);
    coil_task_unref(t);
    return 0;
}

static void test_wait_for_zero_unstarted_task(void **state)
{
    struct fixture *f = *state;
    struct unstarted u = {.loop = f->loop, .r = 1};
    assert_int_equal(test_run_task(f->loop, unstarted_main, &u), 0);
    assert_int_equal(u.r, -ETIMEDOUT);
    assert_int_equal(u.ran, 0);
    test_assert_no_tasks(f->loop);
}

/* A task that once handled a cancellation without withdrawing it
 * (coil_task_cancelling stays 1): a timeout scope it opens later still
 * reports its own expiry as -ETIMEDOUT, comparing the count with its
 * level when the scope began (asyncio's gh-102780); and that expiry's
 * cancel does not leak into the next wait. */
struct swallowed {
    int first_r, scope_r, wf_r, next_r;
    unsigned level;
};

static int swallowed_body(void *arg)
{
    struct swallowed *w = arg;
    coil_task_cancel(coil_current_task());
    w->first_r = coil_sleep(COIL_MSEC); /* handled, never uncancelled */
    w->level = coil_task_cancelling(coil_current_task());
    coil_timeout_t *sc;
    if (coil_timeout_begin(10 * COIL_MSEC, &sc))
        return -ENOMEM;
    w->scope_r = coil_timeout_end(sc, coil_sleep(HOUR));
    coil_future_t *never;
    coil_loop_t *loop = coil_running_loop();
    if (coil_future_new(loop, &never))
        return -ENOMEM;
    w->wf_r = coil_wait_for(never, 10 * COIL_MSEC, NULL);
    coil_future_unref(never);
    w->next_r = coil_sleep(COIL_MSEC);
    return 0;
}

static void test_timeout_after_swallowed_cancel(void **state)
{
    struct fixture *f = *state;
    struct swallowed w = {1, 1, 1, 1, 0};
    assert_int_equal(test_run_task(f->loop, swallowed_body, &w), 0);
    assert_int_equal(w.first_r, -ECANCELED);
    assert_int_equal(w.level, 1u);
    assert_int_equal(w.scope_r, -ETIMEDOUT);
    assert_int_equal(w.wf_r, -ETIMEDOUT);
    assert_int_equal(w.next_r, 0);
}

struct wf_bad {
    coil_future_t *other;
    int r_null, r_null_nolimit, r_other, r_other_nolimit, r_self;
    int r_self_zero, r_self_past, r_after;
    unsigned cancelling_after;
};

static int wf_bad_body(void *arg)
{
    struct wf_bad *b = arg;
    b->r_null = coil_wait_for(NULL, COIL_SEC, NULL);
    b->r_null_nolimit = coil_wait_for(NULL, COIL_NO_TIMEOUT, NULL);
    b->r_other = coil_wait_for(b->other, COIL_SEC, NULL);
    b->r_other_nolimit = coil_wait_for(b->other, COIL_NO_TIMEOUT, NULL);
    coil_future_t *self = coil_task_future(coil_current_task());
    b->r_self = coil_wait_for(self, COIL_SEC, NULL);
    /* No time left: refused all the same, and nothing is cancelled (the
     * future is this very task). */
    b->r_self_zero = coil_wait_for(self, 0, NULL);
    b->r_self_past = coil_wait_for(self, -COIL_SEC, NULL);
    b->cancelling_after = coil_task_cancelling(coil_current_task());
    b->r_after = coil_sleep(COIL_MSEC);
    return 0;
}

static void test_wait_for_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    struct wf_bad b = {NULL, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(coil_future_new(other, &b.other), 0);
    assert_int_equal(test_run_task(f->loop, wf_bad_body, &b), 0);
    assert_int_equal(b.r_null, -EINVAL);
    assert_int_equal(b.r_null_nolimit, -EINVAL);
    assert_int_equal(b.r_other, -EINVAL);
    assert_int_equal(b.r_other_nolimit, -EINVAL);
    assert_int_equal(b.r_self, -EDEADLK);
    assert_int_equal(b.r_self_zero, -EDEADLK);
    assert_int_equal(b.r_self_past, -EDEADLK);
    assert_int_equal(b.cancelling_after, 0);
    assert_int_equal(b.r_after, 0);
    assert_false(coil_future_done(b.other));
    /* Outside a task. */
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_int_equal(coil_wait_for(fut, COIL_SEC, NULL), -EPERM);
    assert_int_equal(coil_wait_for(fut, COIL_NO_TIMEOUT, NULL), -EPERM);
    assert_false(coil_future_done(fut));
    coil_future_unref(fut);
    coil_future_unref(b.other);
    coil_loop_unref(other);
    test_assert_no_tasks(f->loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_FAKE(test_scope_expires),
        TEST_FAKE(test_scope_in_time),
        TEST_FAKE(test_scope_keeps_other_results),
        TEST_FAKE(test_scope_nested),
        TEST_FAKE(test_scope_outside_cancel),
        TEST_FAKE(test_scope_expiry_races_outside_cancel),
        TEST_FAKE(test_scope_deadline_past),
        TEST_FAKE(test_scope_expires_while_busy),
        TEST_FAKE(test_scope_reschedule),
        TEST_FAKE(test_scope_reschedule_no_memory),
        TEST_FAKE(test_scope_queries),
        TEST_FAKE(test_scope_misuse),
        TEST_FAKE(test_scope_left_open),
        TEST_FAKE(test_scope_loop_closed),
        TEST_FAKE(test_wait_for_in_time),
        TEST_FAKE(test_wait_for_timeout),
        TEST_FAKE(test_wait_for_outside_cancel),
        TEST_FAKE(test_wait_for_result_races_cancel),
        TEST_FAKE(test_wait_for_result_races_deadline),
        TEST_FAKE(test_wait_for_no_limit_and_zero),
        TEST_FAKE(test_wait_for_zero_unstarted_task),
        TEST_FAKE(test_timeout_after_swallowed_cancel),
        TEST_FAKE(test_wait_for_bad_arguments),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
