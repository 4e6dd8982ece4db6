/* SPDX-License-Identifier: MIT */
/*
 * test_ready.c - call_soon: FIFO order, "scheduled by a callback runs next
 * iteration", handles (cancel before run, cancel from an earlier callback,
 * release before run, cancel after run), and bad arguments.
 */
#include "helpers.h"

#define MAXLOG 64

struct log {
    coil_loop_t *loop;
    int seq[MAXLOG];
    int n;
    int iteration_of[MAXLOG]; /* value of `iter` when each entry ran */
    int iter;
};

struct entry {
    struct log *log;
    int id;
};

static void record(void *arg)
{
    struct entry *e = arg;
    if (e->log->n < MAXLOG)
        e->log->seq[e->log->n++] = e->id;
}

static void test_fifo(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e[10];
    for (int i = 0; i < 10; i++) {
        e[i] = (struct entry){&log, i};
        assert_int_equal(coil_loop_call_soon(f->loop, record, &e[i], NULL), 0);
    }
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(log.seq[i], i);
}

/* A callback scheduled by a callback runs in the next iteration: the
 * loop's stop (requested in the first batch) takes effect after the batch,
 * so nothing scheduled during the batch runs before run_forever returns. */
struct chain {
    coil_loop_t *loop;
    int ran_first, ran_second;
};

static void second(void *arg)
{
    ((struct chain *)arg)->ran_second++;
}

static void first(void *arg)
{
    struct chain *c = arg;
    c->ran_first++;
    coil_loop_call_soon(c->loop, second, c, NULL);
    coil_loop_stop(c->loop);
}

static void test_next_iteration(void **state)
{
    struct fixture *f = *state;
    struct chain c = {.loop = f->loop};
    assert_int_equal(coil_loop_call_soon(f->loop, first, &c, NULL), 0);
    test_run(f->loop);
    assert_int_equal(c.ran_first, 1);
    assert_int_equal(c.ran_second, 0);
    /* It is still queued and runs in the next run. */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(c.ran_second, 1);
}

static void test_handle_cancel_before_run(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry a = {&log, 1}, b = {&log, 2};
    coil_handle_t *ha, *hb;
    assert_int_equal(coil_loop_call_soon(f->loop, record, &a, &ha), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, record, &b, &hb), 0);
    assert_non_null(ha);
    assert_false(coil_handle_cancelled(ha));
    assert_int_equal(coil_handle_cancel(ha), 0);
    assert_true(coil_handle_cancelled(ha));
    assert_int_equal(coil_handle_cancel(ha), 0); /* idempotent */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.seq[0], 2);
    /* Cancelling after the call ran changes nothing and is safe. */
    assert_int_equal(coil_handle_cancel(hb), 0);
    coil_handle_unref(ha);
    coil_handle_unref(hb);
}

struct canceller {
    coil_handle_t *victim;
    struct log *log;
};

static void cancel_victim(void *arg)
{
    struct canceller *c = arg;
    coil_handle_cancel(c->victim);
}

static void test_cancel_from_earlier_callback(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry v = {&log, 7};
    struct canceller c = {NULL, &log};
    assert_int_equal(coil_loop_call_soon(f->loop, cancel_victim, &c, NULL), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, record, &v, &c.victim), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 0);
    coil_handle_unref(c.victim);
}

static void test_release_before_run(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e = {&log, 3};
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_soon(f->loop, record, &e, &h), 0);
    coil_handle_unref(h); /* does not cancel */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.seq[0], 3);
}

/* Handles and plain calls keep one FIFO between them. */
static void test_mixed_fifo(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry e[6];
    coil_handle_t *h[6] = {0};
    for (int i = 0; i < 6; i++) {
        e[i] = (struct entry){&log, i};
        assert_int_equal(
            coil_loop_call_soon(f->loop, record, &e[i], i % 2 ? &h[i] : NULL),
            0);
    }
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(log.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(log.seq[i], i);
        coil_handle_unref(h[i]);
    }
}

static void noop(void *arg)
{
    (void)arg;
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_handle_t *h = (coil_handle_t *)1;
    assert_int_equal(coil_loop_call_soon(NULL, noop, NULL, &h), -EINVAL);
    assert_null(h);
    h = (coil_handle_t *)1;
    assert_int_equal(coil_loop_call_soon(f->loop, NULL, NULL, &h), -EINVAL);
    assert_null(h);
    assert_int_equal(coil_handle_cancel(NULL), -EINVAL);
    assert_false(coil_handle_cancelled(NULL));
    assert_int_equal(coil_handle_when(NULL), 0);
    coil_handle_unref(NULL);
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, noop, NULL, NULL), -EBADF);
    assert_int_equal(coil_loop_call_soon(f->loop, noop, NULL, &h), -EBADF);
    assert_null(h);
}

/* Pending calls are dropped (never run) by close; a handle the caller
 * holds stays valid after the loop is closed and even after it is freed. */
static void test_close_with_pending(void **state)
{
    struct fixture *f = *state;
    struct log log = {.loop = f->loop};
    struct entry a = {&log, 1}, b = {&log, 2};
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_soon(f->loop, record, &a, NULL), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, record, &b, &h), 0);
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_int_equal(coil_loop_close(f->loop), 0); /* twice is harmless */
    assert_true(coil_loop_is_closed(f->loop));
    assert_int_equal(coil_loop_run_forever(f->loop), -EBADF);
    assert_int_equal(log.n, 0);
    coil_loop_unref(f->loop);
    f->loop = NULL;
    assert_false(coil_handle_cancelled(h));
    assert_int_equal(coil_handle_cancel(h), 0);
    coil_handle_unref(h); /* the last reference frees the loop too */
}

/* Many more calls than one pool slab, in one batch, all in order. */
struct counter {
    coil_loop_t *loop;
    long next;
    long bad;
};

struct counted {
    struct counter *c;
    long id;
};

static void count_in_order(void *arg)
{
    struct counted *x = arg;
    if (x->id != x->c->next)
        x->c->bad++;
    x->c->next++;
}

static void test_large_batch(void **state)
{
    struct fixture *f = *state;
    enum { N = 20000 };
    struct counter c = {f->loop, 0, 0};
    struct counted *xs = test_malloc(N * sizeof(*xs));
    for (long i = 0; i < N; i++) {
        xs[i] = (struct counted){&c, i};
        assert_int_equal(
            coil_loop_call_soon(f->loop, count_in_order, &xs[i], NULL), 0);
    }
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(c.next, N);
    assert_int_equal(c.bad, 0);
    test_free(xs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fifo, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_next_iteration, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_handle_cancel_before_run,
                                        test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_earlier_callback,
                                        test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_release_before_run, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_mixed_fifo, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_close_with_pending, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_large_batch, test_setup,
                                        test_teardown),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
