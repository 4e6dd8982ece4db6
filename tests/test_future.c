/* SPDX-License-Identifier: MIT */
/*
 * test_future.c - futures: outcomes, completing twice, done callbacks (run
 * through the loop in registration order, never re-entrantly, added after
 * completion, removed), references, and a closed loop.
 */
#include "helpers.h"

#define MAXLOG 32

struct log {
    int ids[MAXLOG];
    int n;
    coil_future_t *seen[MAXLOG];
    bool reentrant; /* a callback ran inside set_result */
};

struct cb {
    struct log *log;
    int id;
};

static bool in_set_result;

static void on_done(coil_future_t *fut, void *arg)
{
    struct cb *c = arg;
    if (in_set_result)
        c->log->reentrant = true;
    if (c->log->n < MAXLOG) {
        c->log->seen[c->log->n] = fut;
        c->log->ids[c->log->n++] = c->id;
    }
}

static void test_outcomes(void **state)
{
    struct fixture *f = *state;
    coil_future_t *fut;
    void *v = (void *)1;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_false(coil_future_done(fut));
    assert_false(coil_future_cancelled(fut));
    assert_int_equal(coil_future_result(fut, &v), -EINPROGRESS);
    assert_ptr_equal(v, (void *)1); /* untouched unless there is a result */
    assert_int_equal(coil_future_error(fut), -EINPROGRESS);
    assert_ptr_equal(coil_future_loop(fut), f->loop);
    assert_int_equal(coil_future_set_result(fut, &v), 0);
    assert_true(coil_future_done(fut));
    assert_int_equal(coil_future_result(fut, &v), 0);
    assert_ptr_equal(v, &v);
    assert_int_equal(coil_future_result(fut, NULL), 0);
    assert_int_equal(coil_future_error(fut), 0);
    /* Completing twice, in any way, is refused and changes nothing. */
    assert_int_equal(coil_future_set_result(fut, NULL), -EALREADY);
    assert_int_equal(coil_future_set_error(fut, -EIO), -EALREADY);
    assert_int_equal(coil_future_cancel(fut), -EALREADY);
    assert_int_equal(coil_future_result(fut, &v), 0);
    assert_ptr_equal(v, &v);
    coil_future_unref(fut);

    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_int_equal(coil_future_set_error(fut, -ETIMEDOUT), 0);
    assert_int_equal(coil_future_result(fut, &v), -ETIMEDOUT);
    assert_int_equal(coil_future_error(fut), -ETIMEDOUT);
    assert_false(coil_future_cancelled(fut));
    coil_future_unref(fut);

    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_int_equal(coil_future_cancel(fut), 0);
    assert_true(coil_future_cancelled(fut));
    assert_true(coil_future_done(fut));
    assert_int_equal(coil_future_cancel(fut), -EALREADY);
    assert_int_equal(coil_future_error(fut), -ECANCELED);
    coil_future_unref(fut);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_future_t *fut = (coil_future_t *)1;
    assert_int_equal(coil_future_new(NULL, &fut), -EINVAL);
    assert_null(fut);
    assert_int_equal(coil_future_new(f->loop, NULL), -EINVAL);
    assert_int_equal(coil_future_set_result(NULL, NULL), -EINVAL);
    assert_int_equal(coil_future_set_error(NULL, -EIO), -EINVAL);
    assert_int_equal(coil_future_cancel(NULL), -EINVAL);
    assert_int_equal(coil_future_result(NULL, NULL), -EINVAL);
    assert_int_equal(coil_future_error(NULL), -EINVAL);
    assert_false(coil_future_done(NULL));
    assert_false(coil_future_cancelled(NULL));
    assert_null(coil_future_loop(NULL));
    assert_null(coil_future_ref(NULL));
    coil_future_unref(NULL);
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    /* Only real errors: not 0, not positive, not -ECANCELED. */
    assert_int_equal(coil_future_set_error(fut, 0), -EINVAL);
    assert_int_equal(coil_future_set_error(fut, EIO), -EINVAL);
    assert_int_equal(coil_future_set_error(fut, -ECANCELED), -EINVAL);
    assert_int_equal(coil_future_set_error(fut, -EINPROGRESS), -EINVAL);
    assert_false(coil_future_done(fut));
    assert_int_equal(coil_future_add_done_callback(NULL, on_done, NULL),
                     -EINVAL);
    assert_int_equal(coil_future_add_done_callback(fut, NULL, NULL), -EINVAL);
    assert_int_equal(coil_future_remove_done_callback(NULL, on_done, NULL),
                     -EINVAL);
    assert_int_equal(coil_future_remove_done_callback(fut, NULL, NULL),
                     -EINVAL);
    coil_future_unref(fut);
}

static void test_callbacks_in_order_through_loop(void **state)
{
    struct fixture *f = *state;
    struct log log = {0};
    struct cb c[5];
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    for (int i = 0; i < 5; i++) {
        c[i] = (struct cb){&log, i};
        assert_int_equal(coil_future_add_done_callback(fut, on_done, &c[i]),
                         0);
    }
    in_set_result = true;
    assert_int_equal(coil_future_set_result(fut, NULL), 0);
    in_set_result = false;
    assert_int_equal(log.n, 0); /* not yet: they go through the loop */
    /* Added after completion: scheduled at once, after the others. */
    struct cb late = {&log, 5};
    assert_int_equal(coil_future_add_done_callback(fut, on_done, &late), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_false(log.reentrant);
    assert_int_equal(log.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(log.ids[i], i);
        assert_ptr_equal(log.seen[i], fut);
    }
    coil_future_unref(fut);
}

static void test_remove_callback(void **state)
{
    struct fixture *f = *state;
    struct log log = {0};
    struct cb a = {&log, 1}, b = {&log, 2};
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_int_equal(coil_future_add_done_callback(fut, on_done, &a), 0);
    assert_int_equal(coil_future_add_done_callback(fut, on_done, &b), 0);
    assert_int_equal(coil_future_add_done_callback(fut, on_done, &a), 0);
    /* Every (fn, arg) match goes. */
    assert_int_equal(coil_future_remove_done_callback(fut, on_done, &a), 2);
    assert_int_equal(coil_future_remove_done_callback(fut, on_done, &a), 0);
    assert_int_equal(coil_future_cancel(fut), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.ids[0], 2);
    coil_future_unref(fut);
}

/* A pending callback keeps the future alive after the caller's unref. */
static void test_callback_holds_reference(void **state)
{
    struct fixture *f = *state;
    struct log log = {0};
    struct cb a = {&log, 1};
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_ptr_equal(coil_future_ref(fut), fut);
    assert_int_equal(coil_future_add_done_callback(fut, on_done, &a), 0);
    coil_future_unref(fut);
    assert_int_equal(coil_future_set_result(fut, NULL), 0);
    coil_future_unref(fut); /* the callback still holds it */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 1);
    assert_non_null(log.seen[0]);
}

/* Close with callbacks queued and callbacks still waiting: none run, and
 * everything is released (the leak gate checks). */
static void test_close_drops_callbacks(void **state)
{
    struct fixture *f = *state;
    struct log log = {0};
    struct cb a = {&log, 1}, b = {&log, 2};
    coil_future_t *queued, *waiting;
    assert_int_equal(coil_future_new(f->loop, &queued), 0);
    assert_int_equal(coil_future_new(f->loop, &waiting), 0);
    assert_int_equal(coil_future_add_done_callback(queued, on_done, &a), 0);
    assert_int_equal(coil_future_add_done_callback(waiting, on_done, &b), 0);
    assert_int_equal(coil_future_set_result(queued, NULL), 0);
    assert_int_equal(coil_loop_close(f->loop), 0);
    /* Completing after the close runs nothing and leaks nothing. */
    assert_int_equal(coil_future_set_result(waiting, NULL), 0);
    assert_int_equal(coil_future_add_done_callback(waiting, on_done, &b), 0);
    assert_int_equal(log.n, 0);
    coil_future_unref(queued);
    coil_future_unref(waiting);
}

/* A callback may drop the last reference to the future it is given. */
static void unref_in_callback(coil_future_t *fut, void *arg)
{
    (void)arg;
    coil_future_unref(fut);
}

static void test_unref_inside_callback(void **state)
{
    struct fixture *f = *state;
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    assert_int_equal(coil_future_add_done_callback(fut, unref_in_callback,
                                                   NULL),
                     0);
    assert_int_equal(coil_future_set_result(fut, NULL), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_outcomes),
        TEST(test_bad_arguments),
        TEST(test_callbacks_in_order_through_loop),
        TEST(test_remove_callback),
        TEST(test_callback_holds_reference),
        TEST(test_close_drops_callbacks),
        TEST(test_unref_inside_callback),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
