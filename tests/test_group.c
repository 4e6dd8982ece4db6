/* SPDX-License-Identifier: MIT */
/*
 * test_group.c - task groups: every child succeeding; the first failure
 * cancelling the siblings and the parent's current wait, then returned by
 * coil_group_wait; every failure kept, in order; the parent cancelled from
 * outside while it waits; an outside cancel of the parent racing a child's
 * failure (both kept: the error returned, the cancel delivered at the
 * parent's next wait); spawning after the wait or into a group shutting
 * down; misuse (not the parent, twice, bad arguments); freeing a group
 * not waited for; coil_group_cancel; a loop closed while the parent
 * waits.
 *
 * Tasks and callbacks only record what they see; the assertions run on
 * the main stack once the loop has returned. Time runs on the virtual
 * clock with autojump.
 */
#include <stdio.h>
#include <string.h>

#include "helpers.h"

#define HOUR (3600 * COIL_SEC)

/* Run the loop until every task has finished: at most 100 rounds of
 * 10 ms of virtual time. */
static void drain(coil_loop_t *loop)
{
    for (int i = 0; i < 100 && coil_loop_tasks(loop, NULL, 0) > 0; i++) {
        coil_handle_t *h;
        assert_int_equal(
            coil_loop_call_later(loop, 10 * COIL_MSEC, test_stop_cb, loop, &h),
            0);
        test_run(loop);
        coil_handle_cancel(h);
        coil_handle_unref(h);
    }
    test_assert_no_tasks(loop);
}

/* A child: sleeps delay, returns ret. When cancelled it cleans up (a wait
 * of its own) and returns ret_on_cancel (0 means -ECANCELED). */
struct child {
    int64_t delay;
    int ret;
    int ret_on_cancel;
    int sleep_r;
    bool started, cleaned, finished;
    coil_loop_t *loop;
    struct test_canceller
        *before_return; /* a cancel queued just before return */
};

static int child_body(void *arg)
{
    struct child *c = arg;
    c->started = true;
    c->sleep_r = coil_sleep(c->delay);
    if (c->sleep_r == -ECANCELED) {
        coil_sleep(2 * COIL_MSEC);
        c->cleaned = true;
        c->finished = true;
        return c->ret_on_cancel ? c->ret_on_cancel : -ECANCELED;
    }
    if (c->before_return)
        coil_loop_call_soon(c->loop, test_cancel_cb, c->before_return, NULL);
    c->finished = true;
    return c->ret;
}

#define MAXC 4

struct parent {
    coil_loop_t *loop;
    struct child ch[MAXC];
    int n;
    int64_t parent_sleep; /* the parent sleeps this long before waiting */
    int sleep_r;          /* what that sleep returned */
    int wait_r;
    int next_r, after_r; /* the parent's waits after group_wait */
    int nerrors;
    int errors[MAXC + 2];
    bool finished_at_wait[MAXC];
    int spawn_r[MAXC];
    unsigned cancelling_after;
    int64_t started, waited;
};

static int parent_body(void *arg)
{
    struct parent *p = arg;
    coil_group_t *g;
    int err = coil_group_new(&g);
    if (err)
        return err;
    p->started = coil_loop_time(p->loop);
    for (int i = 0; i < p->n; i++) {
        p->ch[i].loop = p->loop;
        p->spawn_r[i] = coil_group_spawn(g, child_body, &p->ch[i], NULL, NULL);
    }
    if (p->parent_sleep)
        p->sleep_r = coil_sleep(p->parent_sleep);
    p->wait_r = coil_group_wait(g);
    p->waited = coil_loop_time(p->loop) - p->started;
    for (int i = 0; i < p->n; i++)
        p->finished_at_wait[i] = p->ch[i].finished;
    p->nerrors = coil_group_errors(g, p->errors, MAXC + 2);
    coil_group_unref(g);
    p->cancelling_after = coil_task_cancelling(coil_current_task());
    p->next_r = coil_sleep(COIL_MSEC);
    p->after_r = coil_yield();
    return 0;
}

static void parent_init(struct parent *p, coil_loop_t *loop, int n,
                        const int64_t *delays_ms, const int *rets)
{
    memset(p, 0, sizeof(*p));
    p->loop = loop;
    p->n = n;
    p->sleep_r = p->wait_r = p->next_r = p->after_r = 12345;
    for (int i = 0; i < n; i++) {
        p->ch[i].delay = delays_ms[i] * COIL_MSEC;
        p->ch[i].ret = rets[i];
        p->ch[i].sleep_r = 1;
        p->spawn_r[i] = 1;
    }
}

/* ------------------------------------------------------------------ */
/* Outcomes                                                             */
/* ------------------------------------------------------------------ */

static void test_group_all_succeed(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[3] = {30, 10, 20};
    static const int rets[3] = {1, 0, 3};
    struct parent p;
    parent_init(&p, f->loop, 3, delays, rets);
    assert_int_equal(test_run_task(f->loop, parent_body, &p), 0);
    assert_int_equal(p.wait_r, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(p.spawn_r[i], 0);
        assert_true(p.finished_at_wait[i]);
        assert_int_equal(p.ch[i].sleep_r, 0);
        assert_false(p.ch[i].cleaned);
    }
    assert_true(p.waited >= 30 * COIL_MSEC);
    assert_int_equal(p.nerrors, 0);
    assert_int_equal(p.next_r, 0);
    test_assert_no_tasks(f->loop);
}

static int empty_group_body(void *arg)
{
    int *r = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    r[0] = coil_group_wait(g);
    r[1] = coil_group_errors(g, NULL, 0);
    coil_group_unref(g);
    r[2] = coil_yield();
    return 0;
}

static void test_group_empty(void **state)
{
    struct fixture *f = *state;
    int r[3] = {1, 1, 1};
    assert_int_equal(test_run_task(f->loop, empty_group_body, r), 0);
    assert_int_equal(r[0], 0);
    assert_int_equal(r[1], 0);
    assert_int_equal(r[2], 0);
}

/* The first failure cancels the siblings and the parent's current wait
 * (it sleeps an hour); group_wait then returns the child's error. */
static void test_group_failure_cancels_siblings_and_parent(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[3] = {3600000, 10, 3600000};
    static const int rets[3] = {1, -EIO, 3};
    struct parent p;
    parent_init(&p, f->loop, 3, delays, rets);
    p.parent_sleep = HOUR;
    assert_int_equal(test_run_task(f->loop, parent_body, &p), 0);
    assert_int_equal(p.sleep_r, -ECANCELED);
    assert_int_equal(p.wait_r, -EIO);
    assert_int_equal(p.ch[0].sleep_r, -ECANCELED);
    assert_int_equal(p.ch[2].sleep_r, -ECANCELED);
    /* The siblings were awaited: their cleanup was over. */
    for (int i = 0; i < 3; i++)
        assert_true(p.finished_at_wait[i]);
    assert_true(p.ch[0].cleaned && p.ch[2].cleaned);
    assert_true(p.waited < HOUR);
    assert_int_equal(p.nerrors, 1);
    assert_int_equal(p.errors[0], -EIO);
    /* The group withdrew its cancel of the parent: its later waits are
     * not cancelled. */
    assert_int_equal(p.cancelling_after, 0u);
    assert_int_equal(p.next_r, 0);
    assert_int_equal(p.after_r, 0);
    test_assert_no_tasks(f->loop);
}

/* A child fails, and the group cancels the parent, when the parent's
 * wait (an await) has already completed: the parent resumes with its
 * result, comes to group_wait with the group's cancel still pending, and
 * group_wait returns the error; no cancel is left over. */
struct busy_parent {
    coil_loop_t *loop;
    struct child ch;
    coil_future_t *fut;
    int await_r, wait_r, next_r;
    unsigned cancelling_after;
};

static int helper_body(void *arg)
{
    coil_yield();
    coil_future_set_result(arg, NULL);
    return 0;
}

static int busy_parent_body(void *arg)
{
    struct busy_parent *b = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    /* The child fails in the iteration the helper completes fut, before
     * it: the group hears of the failure after fut is done. */
    b->ch = (struct child){.delay = 0, .ret = -EPIPE, .loop = b->loop};
    coil_group_spawn(g, child_body, &b->ch, NULL, NULL);
    coil_future_new(b->loop, &b->fut);
    coil_task_t *h;
    coil_task_spawn(b->loop, helper_body, b->fut, &h);
    b->await_r = coil_await(b->fut, NULL);
    b->wait_r = coil_group_wait(g);
    coil_group_unref(g);
    b->cancelling_after = coil_task_cancelling(coil_current_task());
    b->next_r = coil_sleep(COIL_MSEC);
    coil_task_join(h);
    coil_task_unref(h);
    coil_future_unref(b->fut);
    return 0;
}

static void test_group_failure_after_parent_woken(void **state)
{
    struct fixture *f = *state;
    struct busy_parent b = {
        .loop = f->loop, .await_r = 1, .wait_r = 1, .next_r = 1};
    assert_int_equal(test_run_task(f->loop, busy_parent_body, &b), 0);
    assert_int_equal(b.await_r, 0); /* the completed result won */
    assert_int_equal(b.wait_r, -EPIPE);
    assert_int_equal(b.cancelling_after, 0u);
    assert_int_equal(b.next_r, 0);
    test_assert_no_tasks(f->loop);
}

/* Every failure is kept, in the order they failed: two children fail in
 * the same iteration, a third turns its cancellation into an error. */
static void test_group_errors_in_order(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[4] = {10, 10, 3600000, 3600000};
    static const int rets[4] = {-EIO, -EPIPE, 1, 2};
    struct parent p;
    parent_init(&p, f->loop, 4, delays, rets);
    p.ch[2].ret_on_cancel = -ENOTCONN;
    assert_int_equal(test_run_task(f->loop, parent_body, &p), 0);
    assert_int_equal(p.wait_r, -EIO);
    assert_int_equal(p.nerrors, 3);
    assert_int_equal(p.errors[0], -EIO);
    assert_int_equal(p.errors[1], -EPIPE);
    assert_int_equal(p.errors[2], -ENOTCONN);
    assert_true(p.ch[3].cleaned);
    test_assert_no_tasks(f->loop);
}

struct errs_ctx {
    int total, two[2], r_null, r_bad;
};

static int errs_body(void *arg)
{
    struct errs_ctx *e = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    static struct child ch[3];
    static const int rets[3] = {-EIO, -EPIPE, -ENOENT};
    coil_loop_t *loop = coil_running_loop();
    for (int i = 0; i < 3; i++) {
        ch[i] = (struct child){.delay = COIL_MSEC,
                               .ret = rets[i],
                               .ret_on_cancel = rets[i],
                               .loop = loop};
        coil_group_spawn(g, child_body, &ch[i], NULL, NULL);
    }
    coil_group_wait(g);
    e->total = coil_group_errors(g, NULL, 0);
    /* Fewer slots than errors: the count is still all of them. */
    e->r_null = coil_group_errors(g, e->two, 2);
    e->r_bad = coil_group_errors(g, NULL, 2);
    coil_group_unref(g);
    return 0;
}

static void test_group_errors_array(void **state)
{
    struct fixture *f = *state;
    struct errs_ctx e = {1, {0, 0}, 1, 1};
    assert_int_equal(test_run_task(f->loop, errs_body, &e), 0);
    assert_int_equal(e.total, 3);
    assert_int_equal(e.r_null, 3);
    assert_int_equal(e.two[0], -EIO);
    assert_int_equal(e.two[1], -EPIPE);
    assert_int_equal(e.r_bad, -EINVAL);
    assert_int_equal(coil_group_errors(NULL, NULL, 0), -EINVAL);
    test_assert_no_tasks(f->loop);
}

/* The parent is cancelled from outside while it waits: the children are
 * cancelled and awaited, group_wait returns -ECANCELED (the cancel is
 * delivered there, once). */
static void test_group_parent_cancelled_outside(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[2] = {3600000, 3600000};
    static const int rets[2] = {1, 2};
    struct parent p;
    parent_init(&p, f->loop, 2, delays, rets);
    assert_int_equal(
        test_run_cancelled(f->loop, parent_body, &p, 5 * COIL_MSEC, NULL), 0);
    assert_int_equal(p.wait_r, -ECANCELED);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(p.ch[i].sleep_r, -ECANCELED);
        assert_true(p.finished_at_wait[i]);
    }
    assert_int_equal(p.nerrors, 0);
    assert_int_equal(p.next_r, 0);
    test_assert_no_tasks(f->loop);
}

/* The parent is cancelled from outside while its body waits elsewhere
 * (the cancel is delivered there); at coil_group_wait the children are
 * cancelled, and one of them fails while cleaning up. Both survive: the
 * wait returns the child's error, the cancellation stays in force for
 * the parent's next wait (asyncio 3.13). */
static void test_group_outside_cancel_then_child_fails(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[2] = {3600000, 3600000};
    static const int rets[2] = {1, 2};
    struct parent p;
    parent_init(&p, f->loop, 2, delays, rets);
    p.parent_sleep = HOUR;
    p.ch[1].ret_on_cancel = -EIO;
    assert_int_equal(
        test_run_cancelled(f->loop, parent_body, &p, 5 * COIL_MSEC, NULL), 0);
    assert_int_equal(p.sleep_r, -ECANCELED);
    assert_int_equal(p.wait_r, -EIO);
    assert_int_equal(p.ch[0].sleep_r, -ECANCELED);
    assert_int_equal(p.ch[1].sleep_r, -ECANCELED);
    assert_int_equal(p.nerrors, 1);
    assert_int_equal(p.errors[0], -EIO);
    assert_int_equal(p.cancelling_after, 1u);
    assert_int_equal(p.next_r, -ECANCELED); /* re-armed, not lost */
    assert_int_equal(p.after_r, 0);
    test_assert_no_tasks(f->loop);
}

/* A child spawns a sibling while the parent waits on the group: accepted
 * (asyncio's TaskGroup takes tasks until it has finished), and the wait
 * covers the sibling too. */
struct family {
    coil_group_t *g;
    int spawn_r, late_spawn_r, wait_r;
    bool sibling_ran, sibling_done, sibling_done_at_wait;
    coil_loop_t *loop;
};

static int sibling_body(void *arg)
{
    struct family *fa = arg;
    fa->sibling_ran = true;
    coil_sleep(10 * COIL_MSEC);
    fa->sibling_done = true;
    return 0;
}

static int spawner_body(void *arg)
{
    struct family *fa = arg;
    coil_sleep(COIL_MSEC); /* the parent waits by now */
    fa->spawn_r = coil_group_spawn(fa->g, sibling_body, fa, NULL, NULL);
    return 0;
}

static int family_parent(void *arg)
{
    struct family *fa = arg;
    if (coil_group_new(&fa->g))
        return -ENOMEM;
    coil_group_spawn(fa->g, spawner_body, fa, NULL, NULL);
    fa->wait_r = coil_group_wait(fa->g);
    fa->sibling_done_at_wait = fa->sibling_done;
    fa->late_spawn_r = coil_group_spawn(fa->g, sibling_body, fa, NULL, NULL);
    coil_group_unref(fa->g);
    return 0;
}

static void test_group_child_spawns_while_waited(void **state)
{
    struct fixture *f = *state;
    struct family fa = {
        .spawn_r = 1, .late_spawn_r = 1, .wait_r = 1, .loop = f->loop};
    assert_int_equal(test_run_task(f->loop, family_parent, &fa), 0);
    assert_int_equal(fa.spawn_r, 0);
    assert_true(fa.sibling_ran);
    assert_int_equal(fa.wait_r, 0);
    assert_true(fa.sibling_done_at_wait);
    assert_int_equal(fa.late_spawn_r, -EBADF); /* the group has finished */
    test_assert_no_tasks(f->loop);
}

/* Self-cancel right before group_wait: the cancel is pending when the
 * parent arrives. */
struct pending_parent {
    struct child ch[2];
    coil_loop_t *loop;
    int wait_r, next_r;
    bool finished_at_wait[2];
};

static int pending_parent_body(void *arg)
{
    struct pending_parent *pp = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    for (int i = 0; i < 2; i++) {
        pp->ch[i] = (struct child){.delay = HOUR, .ret = i, .loop = pp->loop};
        coil_group_spawn(g, child_body, &pp->ch[i], NULL, NULL);
    }
    coil_yield(); /* the children start */
    coil_task_cancel(coil_current_task());
    pp->wait_r = coil_group_wait(g);
    for (int i = 0; i < 2; i++)
        pp->finished_at_wait[i] = pp->ch[i].finished;
    coil_group_unref(g);
    pp->next_r = coil_yield();
    return 0;
}

static void test_group_cancel_pending_at_wait(void **state)
{
    struct fixture *f = *state;
    struct pending_parent pp = {.loop = f->loop, .wait_r = 1, .next_r = 1};
    assert_int_equal(test_run_task(f->loop, pending_parent_body, &pp), 0);
    assert_int_equal(pp.wait_r, -ECANCELED);
    for (int i = 0; i < 2; i++) {
        assert_true(pp.finished_at_wait[i]);
        assert_int_equal(pp.ch[i].sleep_r, -ECANCELED);
    }
    assert_int_equal(pp.next_r, 0);
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* An outside cancel of the parent racing a child's failure              */
/* ------------------------------------------------------------------ */

/*
 * The parent is in group_wait (a sibling still runs, or not). A child
 * fails, and in the same iteration the parent is cancelled from outside,
 * either before the group hears of the failure (a callback the child
 * queued just before returning) or after (a done callback on the child,
 * added after the group's). Either way group_wait returns the child's
 * error and the outside cancel is delivered at the parent's next wait.
 */
struct race_ctx {
    struct parent p;
    struct test_canceller outside;
    coil_task_t *parent_task;
};

static void cancel_on_done(coil_future_t *fut, void *arg)
{
    (void)fut;
    test_cancel_cb(arg);
}

static int race_parent_body(void *arg)
{
    struct race_ctx *r = arg;
    struct parent *p = &r->p;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    p->started = coil_loop_time(p->loop);
    for (int i = 0; i < p->n; i++) {
        coil_task_t *child;
        p->ch[i].loop = p->loop;
        p->spawn_r[i] =
            coil_group_spawn(g, child_body, &p->ch[i], NULL, &child);
        if (p->spawn_r[i] == 0 && i == 0 && !p->ch[0].before_return)
            coil_future_add_done_callback(coil_task_future(child),
                                          cancel_on_done, &r->outside);
        coil_task_unref(child);
    }
    if (p->parent_sleep)
        p->sleep_r = coil_sleep(p->parent_sleep);
    p->wait_r = coil_group_wait(g);
    for (int i = 0; i < p->n; i++)
        p->finished_at_wait[i] = p->ch[i].finished;
    p->nerrors = coil_group_errors(g, p->errors, MAXC + 2);
    coil_group_unref(g);
    p->cancelling_after = coil_task_cancelling(coil_current_task());
    p->next_r = coil_sleep(COIL_MSEC);
    p->after_r = coil_yield();
    return 0;
}

static void run_race(coil_loop_t *loop, struct race_ctx *r, int n,
                     bool cancel_first, int64_t parent_sleep)
{
    static const int64_t delays[2] = {10, 3600000};
    static const int rets[2] = {-EIO, 2};
    parent_init(&r->p, loop, n, delays, rets);
    r->p.parent_sleep = parent_sleep;
    r->outside = (struct test_canceller){NULL, 1, 0};
    if (cancel_first)
        r->p.ch[0].before_return = &r->outside;
    assert_int_equal(
        coil_task_spawn(loop, race_parent_body, r, &r->parent_task), 0);
    r->outside.task = r->parent_task;
    assert_int_equal(test_run_until(loop, coil_task_future(r->parent_task)), 0);
    coil_task_unref(r->parent_task);
}

static void test_group_cancel_races_failure_in_wait(void **state)
{
    struct fixture *f = *state;
    for (int n = 1; n <= 2; n++) {
        for (int first = 0; first < 2; first++) {
            struct race_ctx r;
            run_race(f->loop, &r, n, first, 0);
            assert_int_equal(r.outside.calls, 1);
            assert_int_equal(r.outside.result, 0);
            assert_int_equal(r.p.wait_r, -EIO);
            assert_int_equal(r.p.nerrors, 1);
            for (int i = 0; i < n; i++)
                assert_true(r.p.finished_at_wait[i]);
            /* The outside cancel was not lost: the next wait gets it. */
            assert_int_equal(r.p.next_r, -ECANCELED);
            assert_int_equal(r.p.after_r, 0);
            test_assert_no_tasks(f->loop);
        }
    }
}

/* The same race while the parent is in another wait (a sleep): the group
 * and the outside both cancel it. */
static void test_group_cancel_races_failure_in_sleep(void **state)
{
    struct fixture *f = *state;
    for (int first = 0; first < 2; first++) {
        struct race_ctx r;
        run_race(f->loop, &r, 2, first, HOUR);
        assert_int_equal(r.outside.calls, 1);
        assert_int_equal(r.outside.result, 0);
        assert_int_equal(r.p.sleep_r, -ECANCELED);
        assert_int_equal(r.p.wait_r, -EIO);
        assert_true(r.p.finished_at_wait[1]);
        /* One of the two cancels is the outside's, still requested ... */
        assert_int_equal(r.p.cancelling_after, 1u);
        /* ... and delivered: only the group's own was consumed. */
        assert_int_equal(r.p.next_r, -ECANCELED);
        assert_int_equal(r.p.after_r, 0);
        test_assert_no_tasks(f->loop);
    }
}

/* ------------------------------------------------------------------ */
/* Spawning, misuse, freeing                                            */
/* ------------------------------------------------------------------ */

struct spawn_ctx {
    coil_loop_t *loop;
    struct child ch[3];
    int r_after_wait, r_shut, r_cancelled_group, r_cancel;
    bool out_null;
    coil_task_t *shut_child;
    int wait_r;
    bool shut_child_cancelled;
};

static int mark_started(void *arg)
{
    ((struct child *)arg)->started = true;
    return 0;
}

static int spawn_after_wait_body(void *arg)
{
    struct spawn_ctx *s = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    s->wait_r = coil_group_wait(g);
    coil_task_t *t = (coil_task_t *)1;
    s->r_after_wait = coil_group_spawn(g, mark_started, &s->ch[0], NULL, &t);
    s->out_null = t == NULL;
    coil_group_unref(g);
    coil_yield();
    return 0;
}

static int spawn_shutting_down_body(void *arg)
{
    struct spawn_ctx *s = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    s->ch[1] = (struct child){.delay = COIL_MSEC, .ret = -EIO, .loop = s->loop};
    coil_group_spawn(g, child_body, &s->ch[1], NULL, NULL);
    int r = coil_sleep(HOUR); /* cancelled by the failure */
    (void)r;
    /* The group shuts down: a new child is created cancelled. */
    s->r_shut =
        coil_group_spawn(g, mark_started, &s->ch[2], NULL, &s->shut_child);
    s->wait_r = coil_group_wait(g);
    s->shut_child_cancelled =
        s->shut_child && coil_future_cancelled(coil_task_future(s->shut_child));
    coil_task_unref(s->shut_child);
    coil_group_unref(g);
    return 0;
}

static int spawn_cancelled_group_body(void *arg)
{
    struct spawn_ctx *s = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    s->r_cancel = coil_group_cancel(g);
    s->r_cancelled_group =
        coil_group_spawn(g, mark_started, &s->ch[0], NULL, NULL);
    s->wait_r = coil_group_wait(g);
    coil_group_unref(g);
    return 0;
}

static void test_group_spawn_rules(void **state)
{
    struct fixture *f = *state;
    struct spawn_ctx s;
    memset(&s, 0, sizeof(s));
    s.loop = f->loop;
    s.r_after_wait = s.wait_r = 1;
    assert_int_equal(test_run_task(f->loop, spawn_after_wait_body, &s), 0);
    assert_int_equal(s.wait_r, 0);
    assert_int_equal(s.r_after_wait, -EBADF);
    assert_true(s.out_null);
    assert_false(s.ch[0].started);
    test_assert_no_tasks(f->loop);

    memset(&s, 0, sizeof(s));
    s.loop = f->loop;
    s.r_shut = s.wait_r = 1;
    assert_int_equal(test_run_task(f->loop, spawn_shutting_down_body, &s), 0);
    assert_int_equal(s.r_shut, 0);
    assert_int_equal(s.wait_r, -EIO);
    assert_false(s.ch[2].started); /* it never ran its body */
    assert_true(s.shut_child_cancelled);
    test_assert_no_tasks(f->loop);

    memset(&s, 0, sizeof(s));
    s.loop = f->loop;
    s.r_cancel = s.r_cancelled_group = s.wait_r = 1;
    assert_int_equal(test_run_task(f->loop, spawn_cancelled_group_body, &s), 0);
    assert_int_equal(s.r_cancel, 0);
    assert_int_equal(s.r_cancelled_group, 0);
    assert_false(s.ch[0].started);
    assert_int_equal(s.wait_r, 0);
    test_assert_no_tasks(f->loop);
}

struct opts_ctx {
    int spawn_r;
    char name[32];
    size_t stack;
    bool started;
    int wait_r;
};

static int opts_child(void *arg)
{
    ((struct opts_ctx *)arg)->started = true;
    return 0;
}

static int opts_parent(void *arg)
{
    struct opts_ctx *o = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    /* Not the default size: the option must be what makes it. */
    coil_task_options_t opts = {.name = "member", .stack_size = 512 * 1024};
    coil_task_t *t = NULL;
    o->spawn_r = coil_group_spawn(g, opts_child, o, &opts, &t);
    if (t) {
        snprintf(o->name, sizeof(o->name), "%s", coil_task_name(t));
        o->stack = coil_task_stack_size(t);
    }
    o->wait_r = coil_group_wait(g);
    coil_task_unref(t);
    coil_group_unref(g);
    return 0;
}

static void test_group_spawn_options(void **state)
{
    struct fixture *f = *state;
    struct opts_ctx o = {.spawn_r = 1, .wait_r = 1};
    assert_int_equal(test_run_task(f->loop, opts_parent, &o), 0);
    assert_int_equal(o.spawn_r, 0);
    assert_string_equal(o.name, "member");
    assert_true(o.stack >= 512 * 1024);
    assert_true(o.started);
    assert_int_equal(o.wait_r, 0);
    test_assert_no_tasks(f->loop);
}

struct misuse_ctx {
    coil_group_t *g; /* made by the owner */
    int r_other_wait, r_wait, r_twice, r_new_null, r_spawn_null_fn;
    int r_spawn_null_group, r_cancel_null, r_wait_null;
};

static int misuse_owner(void *arg)
{
    struct misuse_ctx *m = arg;
    if (coil_group_new(&m->g))
        return -ENOMEM;
    coil_sleep(10 * COIL_MSEC); /* the other task tries its luck */
    m->r_wait = coil_group_wait(m->g);
    m->r_twice = coil_group_wait(m->g);
    coil_group_unref(m->g);
    m->g = NULL;
    return 0;
}

static int misuse_other(void *arg)
{
    struct misuse_ctx *m = arg;
    m->r_other_wait = coil_group_wait(m->g);
    m->r_new_null = coil_group_new(NULL);
    m->r_spawn_null_fn = coil_group_spawn(m->g, NULL, NULL, NULL, NULL);
    m->r_spawn_null_group =
        coil_group_spawn(NULL, mark_started, NULL, NULL, NULL);
    m->r_cancel_null = coil_group_cancel(NULL);
    m->r_wait_null = coil_group_wait(NULL);
    return 0;
}

static void test_group_misuse(void **state)
{
    struct fixture *f = *state;
    /* Outside a task. */
    coil_group_t *g = (coil_group_t *)1;
    assert_int_equal(coil_group_new(&g), -EPERM);
    assert_null(g);
    assert_int_equal(coil_group_new(NULL), -EINVAL);
    coil_group_unref(NULL);

    struct misuse_ctx m;
    memset(&m, 0x55, sizeof(m));
    m.g = NULL;
    coil_task_t *owner, *other;
    assert_int_equal(coil_task_spawn(f->loop, misuse_owner, &m, &owner), 0);
    assert_int_equal(coil_task_spawn(f->loop, misuse_other, &m, &other), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(other)), 0);
    /* From the main stack. */
    assert_non_null(m.g);
    assert_int_equal(coil_group_wait(m.g), -EPERM);
    assert_int_equal(test_run_until(f->loop, coil_task_future(owner)), 0);
    assert_int_equal(m.r_other_wait, -EPERM);
    assert_int_equal(m.r_wait, 0);
    assert_int_equal(m.r_twice, -EALREADY);
    assert_int_equal(m.r_new_null, -EINVAL);
    assert_int_equal(m.r_spawn_null_fn, -EINVAL);
    assert_int_equal(m.r_spawn_null_group, -EINVAL);
    assert_int_equal(m.r_cancel_null, -EINVAL);
    assert_int_equal(m.r_wait_null, -EINVAL);
    coil_task_unref(owner);
    coil_task_unref(other);
    test_assert_no_tasks(f->loop);
}

struct free_ctx {
    coil_loop_t *loop;
    struct child ch[2];
    coil_task_t *t[2];
};

static int free_unwaited_body(void *arg)
{
    struct free_ctx *fc = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    for (int i = 0; i < 2; i++) {
        fc->ch[i] = (struct child){.delay = HOUR, .ret = i, .loop = fc->loop};
        coil_group_spawn(g, child_body, &fc->ch[i], NULL, &fc->t[i]);
    }
    coil_yield();       /* the children start */
    coil_group_unref(g); /* not waited for */
    return 0;
}

static void test_group_free_unwaited(void **state)
{
    struct fixture *f = *state;
    struct free_ctx fc = {.loop = f->loop};
    assert_int_equal(test_run_task(f->loop, free_unwaited_body, &fc), 0);
    /* The children were cancelled and finish on their own. */
    drain(f->loop);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(fc.ch[i].sleep_r, -ECANCELED);
        assert_true(fc.ch[i].cleaned);
        assert_true(coil_future_cancelled(coil_task_future(fc.t[i])));
        coil_task_unref(fc.t[i]);
    }
}

struct gcancel_ctx {
    coil_loop_t *loop;
    struct child ch[2];
    int r_cancel, wait_r, nerrors, next_r;
    bool finished_at_wait[2];
};

static int group_cancel_body(void *arg)
{
    struct gcancel_ctx *c = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    for (int i = 0; i < 2; i++) {
        c->ch[i] = (struct child){.delay = HOUR, .ret = i, .loop = c->loop};
        coil_group_spawn(g, child_body, &c->ch[i], NULL, NULL);
    }
    coil_sleep(COIL_MSEC);
    c->r_cancel = coil_group_cancel(g);
    c->wait_r = coil_group_wait(g);
    for (int i = 0; i < 2; i++)
        c->finished_at_wait[i] = c->ch[i].finished;
    c->nerrors = coil_group_errors(g, NULL, 0);
    coil_group_unref(g);
    c->next_r = coil_yield();
    return 0;
}

static void test_group_cancel(void **state)
{
    struct fixture *f = *state;
    struct gcancel_ctx c = {.loop = f->loop,
                            .r_cancel = 1,
                            .wait_r = 1,
                            .nerrors = -1,
                            .next_r = 1};
    assert_int_equal(test_run_task(f->loop, group_cancel_body, &c), 0);
    assert_int_equal(c.r_cancel, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c.ch[i].sleep_r, -ECANCELED);
        assert_true(c.finished_at_wait[i]);
    }
    /* Cancelled children are no failures, and the parent was not
     * cancelled. */
    assert_int_equal(c.wait_r, 0);
    assert_int_equal(c.nerrors, 0);
    assert_int_equal(c.next_r, 0);
    test_assert_no_tasks(f->loop);
}

/* The loop is closed while the parent waits for its children. */
static int closing_parent(void *arg)
{
    struct free_ctx *fc = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    for (int i = 0; i < 2; i++) {
        fc->ch[i] = (struct child){.delay = HOUR, .ret = i, .loop = fc->loop};
        coil_group_spawn(g, child_body, &fc->ch[i], NULL, NULL);
    }
    coil_group_wait(g);
    coil_group_unref(g);
    return 0;
}

static void test_group_loop_closed_while_waiting(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    struct free_ctx fc = {.loop = f->loop};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(f->loop, closing_parent, &fc, &t), 0);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, test_stop_cb, f->loop, NULL),
        0);
    test_run(f->loop);
    assert_true(fc.ch[0].started && fc.ch[1].started);
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_true(coil_future_cancelled(coil_task_future(t)));
    assert_true(log.count >= 3); /* the parent and its two children */
    assert_int_equal(coil_loop_tasks(f->loop, NULL, 0), 0);
    coil_task_unref(t);
    /* The leak gate: the group went with its parent. */
}

/* ------------------------------------------------------------------ */
/* Memory running out                                                   */
/* ------------------------------------------------------------------ */

#define SWEEP_MAX 16

/* One call made with its nth allocation failing, and what followed. */
struct attempt {
    int r;       /* what the call returned */
    bool failed; /* the injected failure happened */
    bool clean;  /* nothing handed out, no block left behind */
    bool used;   /* the group was used afterwards: */
    int spawn_r; /* a spawn into it, */
    int wait_r;  /* its wait, */
    int nerrors; /* its error count */
    int ran;     /* and the children that ran */
};

/* n = 1, 2, ... until a call makes no failing allocation. */
struct sweep {
    struct attempt a[SWEEP_MAX];
    int n;
};

static int count_run(void *arg)
{
    (*(int *)arg)++;
    return 0;
}

/* Spawn a child into g, wait for it and drop g, noting it all in a. */
static void use_group(coil_group_t *g, struct attempt *a)
{
    a->used = true;
    a->spawn_r = coil_group_spawn(g, count_run, &a->ran, NULL, NULL);
    a->wait_r = coil_group_wait(g);
    a->nerrors = coil_group_errors(g, NULL, 0);
    coil_group_unref(g);
}

/* coil_group_new: a failure hands out NULL and leaves no block. */
static void new_sweep(struct sweep *s)
{
    for (long n = 1; n <= SWEEP_MAX; n++) {
        struct attempt *a = &s->a[s->n++];
        long live = test_alloc_live();
        coil_group_t *g = (coil_group_t *)1;
        test_alloc_fail_after(n);
        a->r = coil_group_new(&g);
        a->failed = test_alloc_failed();
        test_alloc_fail_after(0);
        a->clean = !g && test_alloc_live() == live;
        if (a->r == 0)
            use_group(g, a);
        if (!a->failed)
            break;
    }
}

/* coil_group_spawn into a new group each time: a failure hands out no
 * task and leaves no block; the group is then used (use_failed) or
 * dropped without a wait, which must free it. The child is named, so
 * that making the task allocates too (its name), after the member. */
static int spawn_sweep(struct sweep *s, bool use_failed)
{
    static const coil_task_options_t named = {.name = "swept"};
    for (long n = 1; n <= SWEEP_MAX; n++) {
        struct attempt *a = &s->a[s->n++];
        long live = test_alloc_live();
        coil_group_t *g;
        if (coil_group_new(&g))
            return -ENOMEM;
        long live_g = test_alloc_live();
        coil_task_t *child = (coil_task_t *)1;
        test_alloc_fail_after(n);
        a->r = coil_group_spawn(g, count_run, &a->ran, &named, &child);
        a->failed = test_alloc_failed();
        test_alloc_fail_after(0);
        a->clean = !child && test_alloc_live() == live_g;
        if (a->r == 0) {
            coil_task_unref(child);
            use_group(g, a);
        } else if (use_failed) {
            use_group(g, a);
        } else {
            coil_group_unref(g);
            a->clean = a->clean && test_alloc_live() == live;
        }
        if (!a->failed)
            break;
    }
    return 0;
}

/* Every call but the last failed with -ENOMEM and left things as they
 * were; the last made no failing allocation and succeeded. A group used
 * afterwards took a child, waited for every child (ran_last: how many
 * after the last call) and counted no error. */
static void check_sweep(const struct sweep *s, bool used_failed, int ran_last)
{
    assert_true(s->n >= 2); /* the call allocates */
    for (int i = 0; i < s->n; i++) {
        const struct attempt *a = &s->a[i];
        bool last = i == s->n - 1;
        assert_int_equal(a->failed, !last);
        assert_int_equal(a->r, last ? 0 : -ENOMEM);
        assert_true(a->clean || last);
        assert_int_equal(a->used, last || used_failed);
        if (!a->used)
            continue;
        assert_int_equal(a->spawn_r, 0);
        assert_int_equal(a->wait_r, 0);
        assert_int_equal(a->nerrors, 0);
        assert_int_equal(a->ran, last ? ran_last : 1);
    }
}

struct oom_ctx {
    struct sweep made, used, dropped;
};

static int oom_body(void *arg)
{
    struct oom_ctx *o = arg;
    new_sweep(&o->made);
    int err = spawn_sweep(&o->used, true);
    return err ? err : spawn_sweep(&o->dropped, false);
}

static void test_group_alloc_failure(void **state)
{
    struct fixture *f = *state;
    struct oom_ctx o;
    memset(&o, 0, sizeof(o));
    assert_int_equal(test_run_task(f->loop, oom_body, &o), 0);
    check_sweep(&o.made, false, 1);
    check_sweep(&o.used, true, 2);
    check_sweep(&o.dropped, false, 2);
    /* The spawns failed in the member and in the task (its name). */
    assert_true(o.used.n >= 3);
    assert_true(o.dropped.n >= 3);
    test_assert_no_tasks(f->loop);
}

/* A child fails, and the group has no memory to record its error: the
 * count still includes it, the array holds only the errors recorded,
 * and coil_group_wait returns it (the first error is kept apart). */
static int fail_short_of_memory(void *arg)
{
    (void)arg;
    test_alloc_fail_after(1); /* the group's record of this error */
    return -EIO;
}

struct lost_ctx {
    coil_loop_t *loop;
    struct child late; /* cancelled by the failure, fails cleaning up */
    int spawn_r[2];
    int wait_r, count, copied;
    int errors[3];
    bool failed;
};

static int lost_parent(void *arg)
{
    struct lost_ctx *l = arg;
    coil_group_t *g;
    if (coil_group_new(&g))
        return -ENOMEM;
    /* late first: it is asleep when the other one fails. */
    l->spawn_r[0] = coil_group_spawn(g, child_body, &l->late, NULL, NULL);
    l->spawn_r[1] = coil_group_spawn(g, fail_short_of_memory, NULL, NULL, NULL);
    l->wait_r = coil_group_wait(g);
    l->failed = test_alloc_failed();
    l->count = coil_group_errors(g, NULL, 0);
    l->copied = coil_group_errors(g, l->errors, 3);
    coil_group_unref(g);
    return 0;
}

static void test_group_error_record_no_memory(void **state)
{
    struct fixture *f = *state;
    struct lost_ctx l = {.loop = f->loop,
                         .late = {.delay = HOUR,
                                  .ret_on_cancel = -EPIPE,
                                  .sleep_r = 1,
                                  .loop = f->loop},
                         .spawn_r = {1, 1},
                         .wait_r = 1,
                         .errors = {1, 1, 1}};
    assert_int_equal(test_run_task(f->loop, lost_parent, &l), 0);
    assert_int_equal(l.spawn_r[0], 0);
    assert_int_equal(l.spawn_r[1], 0);
    assert_true(l.failed);
    assert_int_equal(l.wait_r, -EIO);
    assert_int_equal(l.late.sleep_r, -ECANCELED);
    assert_true(l.late.cleaned);
    /* Both failures are counted; only -EPIPE could be recorded. */
    assert_int_equal(l.count, 2);
    assert_int_equal(l.copied, 2);
    assert_int_equal(l.errors[0], -EPIPE);
    assert_int_equal(l.errors[1], 1);
    assert_int_equal(l.errors[2], 1);
    test_assert_no_tasks(f->loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_FAKE(test_group_all_succeed),
        TEST_FAKE(test_group_empty),
        TEST_FAKE(test_group_failure_cancels_siblings_and_parent),
        TEST_FAKE(test_group_failure_after_parent_woken),
        TEST_FAKE(test_group_errors_in_order),
        TEST_FAKE(test_group_errors_array),
        TEST_FAKE(test_group_parent_cancelled_outside),
        TEST_FAKE(test_group_outside_cancel_then_child_fails),
        TEST_FAKE(test_group_child_spawns_while_waited),
        TEST_FAKE(test_group_cancel_pending_at_wait),
        TEST_FAKE(test_group_cancel_races_failure_in_wait),
        TEST_FAKE(test_group_cancel_races_failure_in_sleep),
        TEST_FAKE(test_group_spawn_rules),
        TEST_FAKE(test_group_spawn_options),
        TEST_FAKE(test_group_misuse),
        TEST_FAKE(test_group_free_unwaited),
        TEST_FAKE(test_group_cancel),
        TEST_FAKE(test_group_loop_closed_while_waiting),
        TEST_FAKE(test_group_alloc_failure),
        TEST_FAKE(test_group_error_record_no_memory),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
