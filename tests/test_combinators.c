/* SPDX-License-Identifier: MIT */
/*
 * test_combinators.c - gather, wait and as_completed: gather's results in
 * argument order whatever the completion order, the first error (in
 * completion order) cancelling the rest and waiting for them, per-slot
 * outcomes with COIL_GATHER_RETURN_ERRORS, empty and already-done inputs,
 * a cancelled gatherer, bad arguments; wait's three modes with and
 * without timeouts (a timeout is not an error, nothing is cancelled);
 * as_completed in completion order, its end, its timeout, ending it
 * early; allocation failure of wait and as_completed_begin.
 *
 * Tasks and callbacks only record what they see; the assertions run on
 * the main stack once the loop has returned. Time runs on the virtual
 * clock with autojump.
 */
#include <string.h>

#include "helpers.h"

#define HOUR (3600 * COIL_SEC)

/* A child task: sleeps delay, then returns ret. If cancelled, it cleans
 * up for a while (a wait of its own) and notes it. */
struct child {
    int64_t delay;
    int ret;
    int extra_yields; /* yields between the sleep and the return */
    int sleep_r;
    bool cleaned;
    bool finished;
};

static int child_body(void *arg)
{
    struct child *c = arg;
    c->sleep_r = coil_sleep(c->delay);
    if (c->sleep_r == -ECANCELED) {
        coil_sleep(2 * COIL_MSEC);
        c->cleaned = true;
        c->finished = true;
        return -ECANCELED;
    }
    for (int i = 0; i < c->extra_yields; i++)
        coil_yield();
    c->finished = true;
    return c->ret;
}

#define MAXC 6

/* A task that spawns children, then runs a combinator over them. */
struct combo {
    coil_loop_t *loop;
    struct child ch[MAXC];
    int n;
    coil_task_t *t[MAXC];
    coil_future_t *futs[MAXC];
    void *results[MAXC];
    bool finished_at_return[MAXC];
    bool done_at_return[MAXC];
    int final_err[MAXC]; /* each future's error, read by combo_finish
                            before it drops the task */
    int r;
    int64_t started, returned;
};

static int combo_spawn(struct combo *c)
{
    for (int i = 0; i < c->n; i++) {
        if (coil_task_spawn(c->loop, child_body, &c->ch[i], &c->t[i]))
            return -ENOMEM;
        c->futs[i] = coil_task_future(c->t[i]);
    }
    c->started = coil_loop_time(c->loop);
    return 0;
}

static void combo_note(struct combo *c)
{
    c->returned = coil_loop_time(c->loop);
    for (int i = 0; i < c->n; i++) {
        c->finished_at_return[i] = c->ch[i].finished;
        c->done_at_return[i] = coil_future_done(c->futs[i]);
    }
}

/* Finish whatever the combinator left running, and drop the tasks. */
static void combo_finish(struct combo *c)
{
    for (int i = 0; i < c->n; i++) {
        test_run_until(c->loop, coil_task_future(c->t[i]));
        assert_true(coil_future_done(c->futs[i]));
        c->final_err[i] = coil_future_error(c->futs[i]);
        coil_task_unref(c->t[i]);
    }
    test_assert_no_tasks(c->loop);
}

static void combo_init(struct combo *c, coil_loop_t *loop, int n,
                       const int64_t *delays_ms, const int *rets)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->n = n;
    c->r = 12345;
    for (int i = 0; i < n; i++) {
        c->ch[i].delay = delays_ms[i] * COIL_MSEC;
        c->ch[i].ret = rets[i];
        c->ch[i].sleep_r = 1;
        c->results[i] = (void *)(intptr_t)-1;
    }
}

/* ------------------------------------------------------------------ */
/* gather                                                               */
/* ------------------------------------------------------------------ */

static int gather_body(void *arg)
{
    struct combo *c = arg;
    if (combo_spawn(c))
        return -ENOMEM;
    c->r = coil_gather(c->futs, (size_t)c->n, c->results, 0);
    combo_note(c);
    return 0;
}

static int gather_errors_body(void *arg)
{
    struct combo *c = arg;
    if (combo_spawn(c))
        return -ENOMEM;
    c->r = coil_gather(c->futs, (size_t)c->n, c->results,
                       COIL_GATHER_RETURN_ERRORS);
    combo_note(c);
    return 0;
}

static void test_gather_argument_order(void **state)
{
    struct fixture *f = *state;
    /* Completion order is the reverse of argument order. */
    static const int64_t delays[5] = {50, 40, 30, 20, 10};
    static const int rets[5] = {0, 10, 20, 30, 40};
    struct combo c;
    combo_init(&c, f->loop, 5, delays, rets);
    assert_int_equal(test_run_task(f->loop, gather_body, &c), 0);
    assert_int_equal(c.r, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal((intptr_t)c.results[i], rets[i]);
        assert_true(c.done_at_return[i]);
    }
    assert_true(c.returned - c.started >= 50 * COIL_MSEC);
    combo_finish(&c);
}

static void test_gather_first_error_cancels_rest(void **state)
{
    struct fixture *f = *state;
    /* Slot 1 fails first (10 ms); slot 3 would fail later (20 ms). */
    static const int64_t delays[4] = {3600000, 10, 3600000, 20};
    static const int rets[4] = {1, -EIO, 2, -EPIPE};
    struct combo c;
    combo_init(&c, f->loop, 4, delays, rets);
    assert_int_equal(test_run_task(f->loop, gather_body, &c), 0);
    assert_int_equal(c.r, -EIO);
    /* Everything still running was cancelled, and had finished its
     * cleanup, before gather returned. */
    for (int i = 0; i < 4; i++)
        assert_true(c.done_at_return[i]);
    assert_true(c.ch[0].cleaned && c.finished_at_return[0]);
    assert_true(c.ch[2].cleaned && c.finished_at_return[2]);
    assert_true(c.ch[3].cleaned && c.finished_at_return[3]);
    assert_true(coil_future_cancelled(c.futs[0]));
    assert_true(coil_future_cancelled(c.futs[2]));
    assert_true(coil_future_cancelled(c.futs[3]));
    assert_int_equal(coil_future_error(c.futs[1]), -EIO);
    assert_true(c.returned - c.started < HOUR);
    /* Failed and cancelled slots get NULL. */
    for (int i = 0; i < 4; i++)
        assert_null(c.results[i]);
    combo_finish(&c);
}

static void test_gather_first_error_in_completion_order(void **state)
{
    struct fixture *f = *state;
    /* Slot 0 fails later than slot 2. */
    static const int64_t delays[3] = {20, 5, 10};
    static const int rets[3] = {-EIO, 4, -EPIPE};
    struct combo c;
    combo_init(&c, f->loop, 3, delays, rets);
    assert_int_equal(test_run_task(f->loop, gather_body, &c), 0);
    assert_int_equal(c.r, -EPIPE);
    assert_int_equal((intptr_t)c.results[1], 4); /* it finished in time */
    assert_null(c.results[2]);
    assert_true(coil_future_cancelled(c.futs[0]));
    combo_finish(&c);
}

static void test_gather_return_errors(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[4] = {10, 30, 5, 20};
    static const int rets[4] = {-EIO, 7, -EPIPE, 0};
    struct combo c;
    combo_init(&c, f->loop, 4, delays, rets);
    assert_int_equal(test_run_task(f->loop, gather_errors_body, &c), 0);
    assert_int_equal(c.r, 0);
    /* Nothing was cancelled: every child ran to its end. */
    for (int i = 0; i < 4; i++) {
        assert_true(c.done_at_return[i]);
        assert_false(c.ch[i].cleaned);
        assert_int_equal(c.ch[i].sleep_r, 0);
    }
    assert_int_equal(coil_future_error(c.futs[0]), -EIO);
    assert_int_equal(coil_future_error(c.futs[1]), 0);
    assert_int_equal(coil_future_error(c.futs[2]), -EPIPE);
    assert_int_equal(coil_future_error(c.futs[3]), 0);
    assert_null(c.results[0]);
    assert_int_equal((intptr_t)c.results[1], 7);
    assert_null(c.results[2]);
    assert_null(c.results[3]); /* the result 0 */
    assert_true(c.returned - c.started >= 30 * COIL_MSEC);
    combo_finish(&c);
}

struct small {
    coil_loop_t *loop;
    int r[8];
    void *res[3];
    coil_future_t *fut[3];
    coil_future_t *other;
    bool pending_after[3];
};

static int gather_empty_body(void *arg)
{
    struct small *s = arg;
    s->r[0] = coil_gather(NULL, 0, NULL, 0);
    s->r[1] = coil_gather(NULL, 0, s->res, 0);
    s->r[2] = coil_gather(NULL, 0, NULL, COIL_GATHER_RETURN_ERRORS);
    return 0;
}

static void test_gather_empty(void **state)
{
    struct fixture *f = *state;
    struct small s = {.loop = f->loop, .r = {1, 1, 1}};
    s.res[0] = (void *)1;
    assert_int_equal(test_run_task(f->loop, gather_empty_body, &s), 0);
    assert_int_equal(s.r[0], 0);
    assert_int_equal(s.r[1], 0);
    assert_int_equal(s.r[2], 0);
    assert_ptr_equal(s.res[0], (void *)1);
}

static int gather_done_body(void *arg)
{
    struct small *s = arg;
    coil_future_set_result(s->fut[0], (void *)(intptr_t)5);
    coil_future_set_result(s->fut[1], (void *)(intptr_t)6);
    s->r[0] = coil_gather(s->fut, 2, s->res, 0);
    /* One failed before the call: it is the error, the other not
     * cancelled (it is done). */
    s->r[1] = coil_gather(s->fut, 3, NULL, 0);
    return 0;
}

static void test_gather_already_done(void **state)
{
    struct fixture *f = *state;
    struct small s = {.loop = f->loop, .r = {1, 1}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_future_new(f->loop, &s.fut[i]), 0);
    assert_int_equal(coil_future_set_error(s.fut[2], -ENOENT), 0);
    assert_int_equal(test_run_task(f->loop, gather_done_body, &s), 0);
    assert_int_equal(s.r[0], 0);
    assert_int_equal((intptr_t)s.res[0], 5);
    assert_int_equal((intptr_t)s.res[1], 6);
    assert_int_equal(s.r[1], -ENOENT);
    for (int i = 0; i < 3; i++)
        coil_future_unref(s.fut[i]);
}

static int gather_bad_body(void *arg)
{
    struct small *s = arg;
    coil_future_t *with_null[2] = {s->fut[0], NULL};
    coil_future_t *with_other[2] = {s->fut[0], s->other};
    s->r[0] = coil_gather(NULL, 2, NULL, 0);
    s->r[1] = coil_gather(with_null, 2, NULL, 0);
    s->r[2] = coil_gather(with_other, 2, NULL, 0);
    s->r[3] = coil_gather(s->fut, 1, NULL, 0x100);
    s->r[4] = coil_gather(with_null, 2, NULL, COIL_GATHER_RETURN_ERRORS);
    s->pending_after[0] = !coil_future_done(s->fut[0]);
    return 0;
}

static void test_gather_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    struct small s = {.loop = f->loop, .r = {1, 1, 1, 1, 1}};
    assert_int_equal(coil_future_new(f->loop, &s.fut[0]), 0);
    assert_int_equal(coil_future_new(other, &s.other), 0);
    assert_int_equal(test_run_task(f->loop, gather_bad_body, &s), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(s.r[i], -EINVAL);
    /* A refused call changes nothing. */
    assert_true(s.pending_after[0]);
    assert_false(coil_future_done(s.other));
    /* Outside a task. */
    assert_int_equal(coil_gather(s.fut, 1, NULL, 0), -EPERM);
    assert_int_equal(coil_gather(NULL, 0, NULL, 0), -EPERM);
    assert_false(coil_future_done(s.fut[0]));
    coil_future_unref(s.fut[0]);
    coil_future_unref(s.other);
    coil_loop_unref(other);
}

static void test_gather_cancelled(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[3] = {3600000, 3600000, 3600000};
    static const int rets[3] = {1, 2, 3};
    struct combo c;
    combo_init(&c, f->loop, 3, delays, rets);
    assert_int_equal(
        test_run_cancelled(f->loop, gather_body, &c, COIL_MSEC, NULL), 0);
    assert_int_equal(c.r, -ECANCELED);
    for (int i = 0; i < 3; i++) {
        assert_true(c.done_at_return[i]);
        assert_true(c.ch[i].cleaned);
        assert_true(coil_future_cancelled(c.futs[i]));
    }
    combo_finish(&c);
}

/* ------------------------------------------------------------------ */
/* wait                                                                 */
/* ------------------------------------------------------------------ */

/* The children are all done, their results in, when a cancel reaches the
 * gathering task before it resumes: the results win (asyncio's gather
 * refuses that cancel too), the cancel goes to the next wait. */
struct late {
    coil_loop_t *loop;
    coil_task_t *gatherer;
    struct test_canceller cancel;
    int r, next_r, after_r;
    void *results[2];
};

static int late_a(void *arg)
{
    (void)arg;
    return 7;
}

static int late_b(void *arg)
{
    struct late *l = arg;
    coil_sleep(COIL_MSEC);
    /* Queued before this task completes: it runs after both children are
     * done, before the gatherer has resumed. */
    l->cancel.task = l->gatherer;
    coil_loop_call_soon(l->loop, test_cancel_cb, &l->cancel, NULL);
    return 8;
}

static int late_gatherer(void *arg)
{
    struct late *l = arg;
    l->gatherer = coil_current_task();
    coil_task_t *a = test_spawn(l->loop, late_a, l);
    coil_task_t *b = test_spawn(l->loop, late_b, l);
    coil_future_t *futs[2] = {coil_task_future(a), coil_task_future(b)};
    l->r = coil_gather(futs, 2, l->results, 0);
    l->next_r = coil_yield();
    l->after_r = coil_yield();
    coil_task_unref(a);
    coil_task_unref(b);
    return 0;
}

static void test_gather_cancel_after_all_done(void **state)
{
    struct fixture *f = *state;
    struct late l = {.loop = f->loop, .r = 1, .next_r = 1, .after_r = 1};
    assert_int_equal(test_run_task(f->loop, late_gatherer, &l), 0);
    assert_int_equal(l.cancel.result, 0);
    assert_int_equal(l.r, 0);
    assert_int_equal((intptr_t)l.results[0], 7);
    assert_int_equal((intptr_t)l.results[1], 8);
    assert_int_equal(l.next_r, -ECANCELED);
    assert_int_equal(l.after_r, 0);
    test_assert_no_tasks(f->loop);
}

/* A cancellation pending when gather starts goes into the futures, as if
 * it had come while gather waited: the children are cancelled and
 * waited for, none is left running. With every future done already, the
 * results win and the cancel goes to the next wait. */
struct pend {
    coil_loop_t *loop;
    int r, child_r, done_r, next_r;
    bool child_done_at_return;
    coil_task_t *child;
};

static int pend_child(void *arg)
{
    struct pend *p = arg;
    p->child_r = coil_sleep(HOUR);
    return p->child_r;
}

static int pend_body(void *arg)
{
    struct pend *p = arg;
    p->child = test_spawn(p->loop, pend_child, p);
    coil_sleep(COIL_MSEC);
    coil_task_cancel(coil_current_task());
    coil_future_t *fut = coil_task_future(p->child);
    p->r = coil_gather(&fut, 1, NULL, 0);
    p->child_done_at_return = coil_future_done(fut);
    /* Every future done: results, and the cancel stays pending. */
    coil_task_cancel(coil_current_task());
    p->done_r = coil_gather(&fut, 1, NULL, COIL_GATHER_RETURN_ERRORS);
    p->next_r = coil_yield();
    coil_task_unref(p->child);
    return 0;
}

static void test_gather_cancel_pending_at_start(void **state)
{
    struct fixture *f = *state;
    struct pend p = {
        .loop = f->loop, .r = 1, .child_r = 1, .done_r = 1, .next_r = 1};
    assert_int_equal(test_run_task(f->loop, pend_body, &p), 0);
    assert_int_equal(p.r, -ECANCELED);
    assert_true(p.child_done_at_return);
    assert_int_equal(p.child_r, -ECANCELED);
    assert_int_equal(p.done_r, 0);
    assert_int_equal(p.next_r, -ECANCELED);
    test_assert_no_tasks(f->loop);
}

struct waiter {
    struct combo c;
    enum coil_wait_mode mode;
    int64_t timeout;
};

static int wait_body(void *arg)
{
    struct waiter *w = arg;
    struct combo *c = &w->c;
    if (combo_spawn(c))
        return -ENOMEM;
    c->r = coil_wait(c->futs, (size_t)c->n, w->mode, w->timeout);
    combo_note(c);
    return 0;
}

static void run_wait(coil_loop_t *loop, struct waiter *w,
                     enum coil_wait_mode mode, int64_t timeout, int n,
                     const int64_t *delays, const int *rets)
{
    combo_init(&w->c, loop, n, delays, rets);
    w->mode = mode;
    w->timeout = timeout;
    assert_int_equal(test_run_task(loop, wait_body, w), 0);
}

static void test_wait_all_completed(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[3] = {30, 10, 20};
    static const int rets[3] = {1, -EIO, 3};
    struct waiter w;
    run_wait(f->loop, &w, COIL_ALL_COMPLETED, COIL_NO_TIMEOUT, 3, delays, rets);
    assert_int_equal(w.c.r, 3);
    for (int i = 0; i < 3; i++)
        assert_true(w.c.done_at_return[i]);
    assert_true(w.c.returned - w.c.started >= 30 * COIL_MSEC);
    /* An error does not stop it, and is no error of wait. */
    assert_int_equal(coil_future_error(w.c.futs[1]), -EIO);
    combo_finish(&w.c);

    /* With a timeout: returns how many are done; cancels nothing. */
    run_wait(f->loop, &w, COIL_ALL_COMPLETED, 15 * COIL_MSEC, 3, delays, rets);
    assert_int_equal(w.c.r, 1);
    assert_false(w.c.done_at_return[0]);
    assert_true(w.c.done_at_return[1]);
    assert_false(w.c.done_at_return[2]);
    assert_true(w.c.returned - w.c.started >= 15 * COIL_MSEC);
    assert_true(w.c.returned - w.c.started < 20 * COIL_MSEC);
    combo_finish(&w.c);
    /* The others finished normally afterwards. */
    assert_int_equal(w.c.final_err[0], 0);
    assert_int_equal(w.c.ch[0].sleep_r, 0);
    assert_int_equal(w.c.ch[2].sleep_r, 0);
}

static void test_wait_first_completed(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[3] = {30, 10, 20};
    static const int rets[3] = {1, 2, 3};
    struct waiter w;
    run_wait(f->loop, &w, COIL_FIRST_COMPLETED, COIL_NO_TIMEOUT, 3, delays,
             rets);
    assert_int_equal(w.c.r, 1);
    assert_true(w.c.done_at_return[1]);
    assert_false(w.c.done_at_return[0]);
    assert_true(w.c.returned - w.c.started >= 10 * COIL_MSEC);
    assert_true(w.c.returned - w.c.started < 20 * COIL_MSEC);
    combo_finish(&w.c);
    assert_int_equal(w.c.ch[0].sleep_r, 0); /* not cancelled */

    /* Timeout before anything completes: 0, not an error. */
    run_wait(f->loop, &w, COIL_FIRST_COMPLETED, 5 * COIL_MSEC, 3, delays, rets);
    assert_int_equal(w.c.r, 0);
    for (int i = 0; i < 3; i++)
        assert_false(w.c.done_at_return[i]);
    assert_true(w.c.returned - w.c.started >= 5 * COIL_MSEC);
    assert_true(w.c.returned - w.c.started < 10 * COIL_MSEC);
    combo_finish(&w.c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(w.c.ch[i].sleep_r, 0);

    /* Two completing in the same iteration: both are counted. */
    static const int64_t same[3] = {10, 10, 40};
    run_wait(f->loop, &w, COIL_FIRST_COMPLETED, COIL_NO_TIMEOUT, 3, same, rets);
    assert_true(w.c.r >= 1);
    assert_true(w.c.done_at_return[0]);
    assert_true(w.c.returned - w.c.started < 40 * COIL_MSEC);
    combo_finish(&w.c);
}

static void cancel_future_cb(void *arg)
{
    coil_future_cancel(arg);
}

struct fe_ctx {
    coil_loop_t *loop;
    coil_future_t *fut[3];
    int r;
    int64_t started, returned;
    bool done_at_return[3];
    int64_t timeout;
};

static int first_exception_body(void *arg)
{
    struct fe_ctx *c = arg;
    c->started = coil_loop_time(c->loop);
    c->r = coil_wait(c->fut, 3, COIL_FIRST_EXCEPTION, c->timeout);
    c->returned = coil_loop_time(c->loop);
    for (int i = 0; i < 3; i++)
        c->done_at_return[i] = coil_future_done(c->fut[i]);
    return 0;
}

struct resolve {
    coil_future_t *fut;
    int error;
};

static void resolve_cb(void *arg)
{
    struct resolve *r = arg;
    if (r->error)
        coil_future_set_error(r->fut, r->error);
    else
        coil_future_set_result(r->fut, NULL);
}

static void test_wait_first_exception(void **state)
{
    struct fixture *f = *state;
    struct fe_ctx c = {.loop = f->loop, .r = 99, .timeout = COIL_NO_TIMEOUT};
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_future_new(f->loop, &c.fut[i]), 0);
    /* fut[0] is cancelled at 5 ms (not an exception), fut[1] succeeds at
     * 8 ms, fut[2] fails at 10 ms. */
    struct resolve ok = {c.fut[1], 0}, bad = {c.fut[2], -EIO};
    assert_int_equal(coil_loop_call_later(f->loop, 5 * COIL_MSEC,
                                          cancel_future_cb, c.fut[0], NULL),
                     0);
    assert_int_equal(
        coil_loop_call_later(f->loop, 8 * COIL_MSEC, resolve_cb, &ok, NULL), 0);
    assert_int_equal(
        coil_loop_call_later(f->loop, 10 * COIL_MSEC, resolve_cb, &bad, NULL),
        0);
    assert_int_equal(test_run_task(f->loop, first_exception_body, &c), 0);
    assert_int_equal(c.r, 3);
    assert_true(c.returned - c.started >= 10 * COIL_MSEC);
    for (int i = 0; i < 3; i++)
        coil_future_unref(c.fut[i]);

    /* A failure returns at once, the rest still pending. */
    c = (struct fe_ctx){.loop = f->loop, .r = 99, .timeout = COIL_NO_TIMEOUT};
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_future_new(f->loop, &c.fut[i]), 0);
    bad = (struct resolve){c.fut[1], -EPIPE};
    assert_int_equal(
        coil_loop_call_later(f->loop, 5 * COIL_MSEC, resolve_cb, &bad, NULL),
        0);
    assert_int_equal(test_run_task(f->loop, first_exception_body, &c), 0);
    assert_int_equal(c.r, 1);
    assert_true(c.done_at_return[1]);
    assert_false(c.done_at_return[0]);
    assert_false(c.done_at_return[2]);
    assert_false(coil_future_done(c.fut[0])); /* nothing cancelled */
    for (int i = 0; i < 3; i++)
        coil_future_unref(c.fut[i]);

    /* No failure: it waits for all of them (a cancel is not one). */
    c = (struct fe_ctx){.loop = f->loop, .r = 99, .timeout = COIL_NO_TIMEOUT};
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_future_new(f->loop, &c.fut[i]), 0);
    struct resolve r1 = {c.fut[1], 0}, r2 = {c.fut[2], 0};
    assert_int_equal(coil_loop_call_later(f->loop, 5 * COIL_MSEC,
                                          cancel_future_cb, c.fut[0], NULL),
                     0);
    assert_int_equal(
        coil_loop_call_later(f->loop, 10 * COIL_MSEC, resolve_cb, &r1, NULL),
        0);
    assert_int_equal(
        coil_loop_call_later(f->loop, 20 * COIL_MSEC, resolve_cb, &r2, NULL),
        0);
    assert_int_equal(test_run_task(f->loop, first_exception_body, &c), 0);
    assert_int_equal(c.r, 3);
    assert_true(c.returned - c.started >= 20 * COIL_MSEC);

    /* With a timeout and no failure: the count so far. */
    for (int i = 0; i < 3; i++)
        coil_future_unref(c.fut[i]);
    c = (struct fe_ctx){.loop = f->loop, .r = 99, .timeout = 7 * COIL_MSEC};
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_future_new(f->loop, &c.fut[i]), 0);
    r1 = (struct resolve){c.fut[1], 0};
    assert_int_equal(coil_loop_call_later(f->loop, 5 * COIL_MSEC,
                                          cancel_future_cb, c.fut[0], NULL),
                     0);
    assert_int_equal(
        coil_loop_call_later(f->loop, 10 * COIL_MSEC, resolve_cb, &r1, NULL),
        0);
    assert_int_equal(test_run_task(f->loop, first_exception_body, &c), 0);
    assert_int_equal(c.r, 1);
    assert_true(c.returned - c.started >= 7 * COIL_MSEC);
    assert_true(c.returned - c.started < 10 * COIL_MSEC);
    /* Let the last timer run before the futures go. */
    assert_int_equal(coil_loop_call_later(f->loop, 20 * COIL_MSEC, test_stop_cb,
                                          f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_false(coil_future_done(c.fut[2]));
    for (int i = 0; i < 3; i++)
        coil_future_unref(c.fut[i]);
}

static int wait_bad_body(void *arg)
{
    struct small *s = arg;
    coil_future_t *with_null[2] = {s->fut[0], NULL};
    coil_future_t *with_other[2] = {s->fut[0], s->other};
    s->r[0] = coil_wait(NULL, 1, COIL_ALL_COMPLETED, COIL_NO_TIMEOUT);
    s->r[1] = coil_wait(with_null, 2, COIL_ALL_COMPLETED, COIL_NO_TIMEOUT);
    s->r[2] = coil_wait(with_other, 2, COIL_FIRST_COMPLETED, COIL_NO_TIMEOUT);
    s->r[3] = coil_wait(s->fut, 1, (enum coil_wait_mode)3, COIL_NO_TIMEOUT);
    s->r[4] = coil_wait(s->fut, 1, (enum coil_wait_mode) - 1, COIL_NO_TIMEOUT);
    /* Nothing to wait for: every one of them is done. */
    s->r[5] = coil_wait(NULL, 0, COIL_ALL_COMPLETED, COIL_NO_TIMEOUT);
    s->r[6] = coil_wait(NULL, 0, COIL_FIRST_EXCEPTION, COIL_NO_TIMEOUT);
    return 0;
}

static void test_wait_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    struct small s = {.loop = f->loop, .r = {1, 1, 1, 1, 1, 1, 1}};
    assert_int_equal(coil_future_new(f->loop, &s.fut[0]), 0);
    assert_int_equal(coil_future_new(other, &s.other), 0);
    assert_int_equal(test_run_task(f->loop, wait_bad_body, &s), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(s.r[i], -EINVAL);
    assert_int_equal(s.r[5], 0);
    assert_int_equal(s.r[6], 0);
    assert_int_equal(coil_wait(s.fut, 1, COIL_ALL_COMPLETED, -1), -EPERM);
    assert_false(coil_future_done(s.fut[0]));
    coil_future_unref(s.fut[0]);
    coil_future_unref(s.other);
    coil_loop_unref(other);
}

/* ------------------------------------------------------------------ */
/* as_completed                                                         */
/* ------------------------------------------------------------------ */

struct asc {
    struct combo c;
    int64_t timeout;
    int order[MAXC + 2]; /* index of each future delivered */
    int rets[MAXC + 2];  /* what each next() returned */
    int64_t at[MAXC + 2];
    int count;
    int extra_r; /* a next() after the end */
    int begin_r;
    bool end_early;
};

static int asc_index(struct combo *c, coil_future_t *fut)
{
    for (int i = 0; i < c->n; i++)
        if (c->futs[i] == fut)
            return i;
    return -1;
}

static int asc_body(void *arg)
{
    struct asc *a = arg;
    struct combo *c = &a->c;
    if (combo_spawn(c))
        return -ENOMEM;
    coil_as_completed_t *it;
    a->begin_r =
        coil_as_completed_begin(c->futs, (size_t)c->n, a->timeout, &it);
    if (a->begin_r)
        return a->begin_r;
    for (a->count = 0; a->count < MAXC + 2;) {
        coil_future_t *fut = (coil_future_t *)1;
        int r = coil_as_completed_next(it, &fut);
        a->rets[a->count] = r;
        a->order[a->count] = r == 1 ? asc_index(c, fut) : (fut ? -2 : -1);
        a->at[a->count] = coil_loop_time(c->loop) - c->started;
        a->count++;
        if (r != 1 || (a->end_early && a->count == 1))
            break;
    }
    coil_future_t *fut = (coil_future_t *)1;
    a->extra_r = a->end_early ? 0 : coil_as_completed_next(it, &fut);
    coil_as_completed_end(it);
    return 0;
}

static void test_as_completed_order(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[4] = {30, 10, 40, 20};
    static const int rets[4] = {1, -EIO, 3, 4};
    struct asc a;
    memset(&a, 0, sizeof(a));
    combo_init(&a.c, f->loop, 4, delays, rets);
    a.timeout = COIL_NO_TIMEOUT;
    assert_int_equal(test_run_task(f->loop, asc_body, &a), 0);
    assert_int_equal(a.count, 5);
    static const int expect[4] = {1, 3, 0, 2};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a.rets[i], 1);
        assert_int_equal(a.order[i], expect[i]);
        assert_true(a.at[i] >= delays[expect[i]] * COIL_MSEC);
    }
    /* Then 0, and 0 again. */
    assert_int_equal(a.rets[4], 0);
    assert_int_equal(a.order[4], -1); /* *fut_out NULL */
    assert_int_equal(a.extra_r, 0);
    combo_finish(&a.c);
}

static void test_as_completed_timeout(void **state)
{
    struct fixture *f = *state;
    static const int64_t delays[3] = {5, 3600000, 3600000};
    static const int rets[3] = {1, 2, 3};
    struct asc a;
    memset(&a, 0, sizeof(a));
    combo_init(&a.c, f->loop, 3, delays, rets);
    a.timeout = 20 * COIL_MSEC;
    assert_int_equal(test_run_task(f->loop, asc_body, &a), 0);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.rets[0], 1);
    assert_int_equal(a.order[0], 0);
    assert_int_equal(a.rets[1], -ETIMEDOUT);
    assert_int_equal(a.order[1], -1);
    assert_true(a.at[1] >= 20 * COIL_MSEC);
    assert_true(a.at[1] < HOUR);
    assert_int_equal(a.extra_r, -ETIMEDOUT);
    /* Nothing was cancelled. */
    assert_false(coil_future_done(a.c.futs[1]));
    for (int i = 1; i < 3; i++)
        coil_task_cancel(a.c.t[i]);
    combo_finish(&a.c);
    assert_false(a.c.ch[0].cleaned);
}

static void test_as_completed_end_early(void **state)
{
    struct fixture *f = *state;
    /* The second completes one iteration after the first, so its notice
     * is still queued when the task, woken by the first, ends the
     * iteration; the third is still pending then. */
    static const int64_t delays[3] = {10, 10, 30};
    static const int rets[3] = {1, 2, 3};
    struct asc a;
    memset(&a, 0, sizeof(a));
    combo_init(&a.c, f->loop, 3, delays, rets);
    a.c.ch[1].extra_yields = 1;
    a.timeout = HOUR;
    a.end_early = true;
    assert_int_equal(test_run_task(f->loop, asc_body, &a), 0);
    assert_int_equal(a.count, 1);
    assert_int_equal(a.rets[0], 1);
    /* They complete later: no crash, nothing leaked (the leak gate). */
    combo_finish(&a.c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(a.c.final_err[i], 0);
}

struct asc_done {
    coil_loop_t *loop;
    coil_future_t *fut[3];
    int order[5];
    int rets[5];
    int n;
};

static int asc_done_body(void *arg)
{
    struct asc_done *d = arg;
    coil_as_completed_t *it;
    if (coil_as_completed_begin(d->fut, 3, COIL_NO_TIMEOUT, &it))
        return -ENOMEM;
    for (d->n = 0; d->n < 5;) {
        coil_future_t *fut = NULL;
        int r = coil_as_completed_next(it, &fut);
        d->rets[d->n] = r;
        d->order[d->n] = -1;
        for (int i = 0; i < 3; i++)
            if (fut == d->fut[i])
                d->order[d->n] = i;
        d->n++;
        if (r != 1)
            break;
    }
    coil_as_completed_end(it);
    return 0;
}

static void test_as_completed_already_done(void **state)
{
    struct fixture *f = *state;
    struct asc_done d = {.loop = f->loop};
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_future_new(f->loop, &d.fut[i]), 0);
    /* fut[2] and fut[0] are done before the call, fut[1] later. */
    assert_int_equal(coil_future_set_result(d.fut[2], NULL), 0);
    assert_int_equal(coil_future_set_error(d.fut[0], -EIO), 0);
    struct resolve r = {d.fut[1], 0};
    assert_int_equal(
        coil_loop_call_later(f->loop, 5 * COIL_MSEC, resolve_cb, &r, NULL), 0);
    assert_int_equal(test_run_task(f->loop, asc_done_body, &d), 0);
    assert_int_equal(d.n, 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(d.rets[i], 1);
    /* The done ones first (in any order), then the late one. */
    assert_true((d.order[0] == 0 && d.order[1] == 2) ||
                (d.order[0] == 2 && d.order[1] == 0));
    assert_int_equal(d.order[2], 1);
    assert_int_equal(d.rets[3], 0);
    for (int i = 0; i < 3; i++)
        coil_future_unref(d.fut[i]);
}

struct asc_bad {
    coil_future_t *fut;
    coil_future_t *other;
    coil_as_completed_t *it; /* made by another task */
    int r[6];
    bool out_null[3];
};

static int asc_bad_body(void *arg)
{
    struct asc_bad *b = arg;
    coil_as_completed_t *it = (coil_as_completed_t *)1;
    coil_future_t *with_null[2] = {b->fut, NULL};
    coil_future_t *with_other[2] = {b->fut, b->other};
    b->r[0] = coil_as_completed_begin(&b->fut, 1, COIL_NO_TIMEOUT, NULL);
    b->r[1] = coil_as_completed_begin(NULL, 1, COIL_NO_TIMEOUT, &it);
    b->out_null[0] = it == NULL;
    it = (coil_as_completed_t *)1;
    b->r[2] = coil_as_completed_begin(with_null, 2, COIL_NO_TIMEOUT, &it);
    b->out_null[1] = it == NULL;
    it = (coil_as_completed_t *)1;
    b->r[3] = coil_as_completed_begin(with_other, 2, COIL_NO_TIMEOUT, &it);
    b->out_null[2] = it == NULL;
    coil_future_t *fut;
    b->r[4] = coil_as_completed_next(NULL, &fut);
    /* Another task's iterator. */
    b->r[5] = coil_as_completed_next(b->it, &fut);
    coil_as_completed_end(NULL);
    return 0;
}

static int asc_owner_body(void *arg)
{
    struct asc_bad *b = arg;
    int r = coil_as_completed_begin(&b->fut, 1, COIL_NO_TIMEOUT, &b->it);
    if (r)
        return r;
    coil_sleep(10 * COIL_MSEC); /* the other task runs meanwhile */
    coil_as_completed_end(b->it);
    return 0;
}

static void test_as_completed_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    struct asc_bad b = {.r = {1, 1, 1, 1, 1, 1}};
    assert_int_equal(coil_future_new(f->loop, &b.fut), 0);
    assert_int_equal(coil_future_new(other, &b.other), 0);
    coil_task_t *owner;
    assert_int_equal(coil_task_spawn(f->loop, asc_owner_body, &b, &owner), 0);
    assert_int_equal(test_run_task(f->loop, asc_bad_body, &b), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(owner)), 0);
    assert_int_equal(b.r[0], -EINVAL);
    assert_int_equal(b.r[1], -EINVAL);
    assert_int_equal(b.r[2], -EINVAL);
    assert_int_equal(b.r[3], -EINVAL);
    assert_int_equal(b.r[4], -EINVAL);
    assert_int_equal(b.r[5], -EPERM);
    for (int i = 0; i < 3; i++)
        assert_true(b.out_null[i]);
    /* Outside a task. */
    coil_as_completed_t *it = (coil_as_completed_t *)1;
    assert_int_equal(coil_as_completed_begin(&b.fut, 1, COIL_NO_TIMEOUT, &it),
                     -EPERM);
    assert_null(it);
    assert_false(coil_future_done(b.fut));
    coil_task_unref(owner);
    coil_future_unref(b.fut);
    coil_future_unref(b.other);
    coil_loop_unref(other);
}

/* ------------------------------------------------------------------ */
/* Allocation failure                                                   */
/* ------------------------------------------------------------------ */

#define SWEEP_MAX 32

struct sweep {
    coil_loop_t *loop;
    int r[SWEEP_MAX];
    bool failed[SWEEP_MAX];
    bool clean[SWEEP_MAX]; /* a failed call left everything as it was */
    int n;
    int r2[SWEEP_MAX];
    bool failed2[SWEEP_MAX];
    bool clean2[SWEEP_MAX];
    int n2;
};

static void set_two(void *arg)
{
    coil_future_t **futs = arg;
    coil_future_set_result(futs[0], NULL);
    coil_future_set_result(futs[1], NULL);
}

static int oom_body(void *arg)
{
    struct sweep *s = arg;
    coil_future_t *futs[2];
    coil_future_new(s->loop, &futs[0]);
    coil_future_new(s->loop, &futs[1]);
    /* wait with a timeout: the set and its timer. */
    for (long n = 1; n <= SWEEP_MAX; n++) {
        test_alloc_fail_after(n);
        int r = coil_wait(futs, 2, COIL_ALL_COMPLETED, COIL_MSEC);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        s->r[s->n] = r;
        s->failed[s->n] = failed;
        s->clean[s->n] = !coil_future_done(futs[0]);
        s->n++;
        if (!failed)
            break;
    }
    coil_loop_call_later(s->loop, COIL_MSEC, set_two, futs, NULL);
    /* as_completed_begin: the iterator and its set. */
    for (long n = 1; n <= SWEEP_MAX; n++) {
        coil_as_completed_t *it = (coil_as_completed_t *)1;
        test_alloc_fail_after(n);
        int r = coil_as_completed_begin(futs, 2, COIL_SEC, &it);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        s->r2[s->n2] = r;
        s->failed2[s->n2] = failed;
        s->clean2[s->n2] = failed ? it == NULL : true;
        s->n2++;
        if (!failed) {
            coil_future_t *fut;
            int got = 0;
            while (coil_as_completed_next(it, &fut) == 1)
                got++;
            s->r2[s->n2 - 1] = got;
            coil_as_completed_end(it);
            break;
        }
    }
    coil_future_unref(futs[0]);
    coil_future_unref(futs[1]);
    return 0;
}

static void test_alloc_failure(void **state)
{
    struct fixture *f = *state;
    struct sweep s = {.loop = f->loop};
    assert_int_equal(test_run_task(f->loop, oom_body, &s), 0);
    assert_true(s.n >= 2);
    for (int i = 0; i < s.n - 1; i++) {
        assert_true(s.failed[i]);
        assert_int_equal(s.r[i], -ENOMEM);
        assert_true(s.clean[i]);
    }
    assert_false(s.failed[s.n - 1]);
    assert_int_equal(s.r[s.n - 1], 0); /* timed out, none done */
    assert_true(s.n2 >= 2);
    for (int i = 0; i < s.n2 - 1; i++) {
        assert_true(s.failed2[i]);
        assert_int_equal(s.r2[i], -ENOMEM);
        assert_true(s.clean2[i]);
    }
    assert_false(s.failed2[s.n2 - 1]);
    assert_int_equal(s.r2[s.n2 - 1], 2);
    test_assert_no_tasks(f->loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_FAKE(test_gather_argument_order),
        TEST_FAKE(test_gather_first_error_cancels_rest),
        TEST_FAKE(test_gather_first_error_in_completion_order),
        TEST_FAKE(test_gather_return_errors),
        TEST_FAKE(test_gather_empty),
        TEST_FAKE(test_gather_already_done),
        TEST_FAKE(test_gather_bad_arguments),
        TEST_FAKE(test_gather_cancelled),
        TEST_FAKE(test_gather_cancel_after_all_done),
        TEST_FAKE(test_gather_cancel_pending_at_start),
        TEST_FAKE(test_wait_all_completed),
        TEST_FAKE(test_wait_first_completed),
        TEST_FAKE(test_wait_first_exception),
        TEST_FAKE(test_wait_bad_arguments),
        TEST_FAKE(test_as_completed_order),
        TEST_FAKE(test_as_completed_timeout),
        TEST_FAKE(test_as_completed_end_early),
        TEST_FAKE(test_as_completed_already_done),
        TEST_FAKE(test_as_completed_bad_arguments),
        TEST_FAKE(test_alloc_failure),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
