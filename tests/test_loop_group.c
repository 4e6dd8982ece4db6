/* SPDX-License-Identifier: MIT */
/*
 * test_loop_group.c - coil/loop_group.h: loops on threads, each running a
 * main task; tasks spawned on another loop, their outcomes, cancels and
 * closes on either side. Run under TSan in CI (label tsan).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "coil/loop_group.h"

#define SEC 1000000000LL

struct shared {
    coil_loop_group_t *g;
    atomic_int ran;
    atomic_int seen[4];     /* mains per index */
    atomic_int flag;        /* set by a task on another loop */
    atomic_int b_outcome;   /* what the remote task's wait returned */
    atomic_int disposed;    /* dispose calls */
    atomic_int disposed_with; /* the outcome the last one got */
    int a_outcome;          /* loop 0's result (its thread only) */
    void *a_value;
    int mode;
};

/* ------------------------------------------------------------------ */
/* The group                                                            */
/* ------------------------------------------------------------------ */

static int main_count(void *arg)
{
    struct shared *s = arg;
    int i = coil_loop_group_index(s->g, coil_running_loop());
    if (i < 0 || i >= 4)
        return -EPROTO;
    atomic_fetch_add(&s->seen[i], 1);
    atomic_fetch_add(&s->ran, 1);
    /* A main that fails makes the join say so: loop 1 fails in mode 1. */
    return s->mode == 1 && i == 1 ? -EIO : 7;
}

static void *join_again(void *g)
{
    return (void *)(intptr_t)coil_loop_group_join(g);
}

static void test_group_runs_each_main_once(void **state)
{
    (void)state;
    struct shared s = {0};
    coil_loop_group_options_t opts = {.loops = 3};
    assert_int_equal(coil_loop_group_start(&opts, main_count, &s, &s.g), 0);
    assert_int_equal(coil_loop_group_size(s.g), 3);
    coil_loop_t *seen[3];
    for (unsigned i = 0; i < 3; i++) {
        seen[i] = coil_loop_group_loop(s.g, i);
        assert_non_null(seen[i]);
        assert_int_equal(coil_loop_group_index(s.g, seen[i]), (int)i);
    }
    assert_true(seen[0] != seen[1] && seen[1] != seen[2]);
    assert_null(coil_loop_group_loop(s.g, 3));
    assert_int_equal(coil_loop_group_join(s.g), 0);
    assert_int_equal(coil_loop_group_join(s.g), -EALREADY);
    /* Also from a thread made after the group's ended (a reused thread
     * id is no group thread). */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, join_again, s.g), 0);
    void *r;
    assert_int_equal(pthread_join(th, &r), 0);
    assert_int_equal((intptr_t)r, -EALREADY);
    assert_int_equal(atomic_load(&s.ran), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&s.seen[i]), 1);
    /* Every loop is closed once its main is done: posts say so. */
    assert_true(coil_loop_is_closed(seen[0]));
    assert_int_equal(coil_loop_call_soon_threadsafe(seen[1], free, NULL),
                     -EBADF);
    coil_loop_group_free(s.g);
}

static void test_group_join_reports_failure(void **state)
{
    (void)state;
    struct shared s = {.mode = 1};
    coil_loop_group_options_t opts = {.loops = 2};
    assert_int_equal(coil_loop_group_start(&opts, main_count, &s, &s.g), 0);
    assert_int_equal(coil_loop_group_join(s.g), -EIO);
    coil_loop_group_free(s.g);
}

static int main_sleep(void *arg)
{
    struct shared *s = arg;
    atomic_fetch_add(&s->ran, 1);
    int r = coil_sleep(3600 * SEC);
    atomic_store(&s->flag, r);
    return r;
}

/* Cancelling the group cancels every main; a group freed unjoined is
 * cancelled and joined first. */
static void test_group_cancel(void **state)
{
    (void)state;
    struct shared s = {0};
    coil_loop_group_options_t opts = {.loops = 2};
    assert_int_equal(coil_loop_group_start(&opts, main_sleep, &s, &s.g), 0);
    while (atomic_load(&s.ran) < 2)
        usleep(1000);
    assert_int_equal(coil_loop_group_cancel(s.g), 0);
    assert_int_equal(coil_loop_group_join(s.g), -ECANCELED);
    assert_int_equal(atomic_load(&s.flag), -ECANCELED);
    assert_int_equal(coil_loop_group_cancel(s.g), 0); /* loops closed */
    coil_loop_group_free(s.g);

    struct shared s2 = {0};
    assert_int_equal(coil_loop_group_start(&opts, main_sleep, &s2, &s2.g),
                     0);
    coil_loop_group_free(s2.g); /* cancels and joins */
    /* Each main was cancelled in its sleep, or before it began. */
    int f = atomic_load(&s2.flag);
    assert_true(f == -ECANCELED || (f == 0 && atomic_load(&s2.ran) < 2));
}

static int main_join_self(void *arg)
{
    struct shared *s = arg;
    int r = coil_loop_group_join(s->g);
    coil_loop_group_free(s->g); /* on its own thread: does nothing */
    return r == -EDEADLK ? 0 : -EPROTO;
}

/* A thread that cannot be started (pthread_create's EAGAIN, through the
 * seam), the first or a later one: start says -EAGAIN, no main runs,
 * the threads already started end (the gate and the sanitizers see
 * nothing left), and a start after it works. */
static void test_group_thread_start_fails(void **state)
{
    (void)state;
    for (unsigned nth = 1; nth <= 3; nth++) {
        struct shared s = {0};
        coil_loop_group_t *g = (coil_loop_group_t *)1;
        coil_loop_group_options_t opts = {.loops = 3};
        coil__fault_arm(COIL__SYS_THREAD, nth, 1, EAGAIN);
        assert_int_equal(coil_loop_group_start(&opts, main_count, &s, &g),
                         -EAGAIN);
        /* nth made the group's threads fail; in debug mode the loops
         * made meanwhile start their watchdog threads too. */
        assert_true(coil__fault_calls(COIL__SYS_THREAD) >= nth);
        assert_null(g);
        assert_int_equal(atomic_load(&s.ran), 0);
    }
    coil__fault_reset();
    struct shared s = {0};
    coil_loop_group_options_t opts = {.loops = 3};
    assert_int_equal(coil_loop_group_start(&opts, main_count, &s, &s.g), 0);
    assert_int_equal(coil_loop_group_join(s.g), 0);
    assert_int_equal(atomic_load(&s.ran), 3);
    coil_loop_group_free(s.g);
}

static void test_group_bad_arguments(void **state)
{
    (void)state;
    coil_loop_group_t *g = (coil_loop_group_t *)1;
    struct shared s = {0};
    assert_int_equal(coil_loop_group_start(NULL, NULL, &s, &g), -EINVAL);
    assert_null(g);
    assert_int_equal(coil_loop_group_start(NULL, main_count, &s, NULL),
                     -EINVAL);
    coil_loop_group_options_t opts = {.loops = 1025};
    assert_int_equal(coil_loop_group_start(&opts, main_count, &s, &g),
                     -EINVAL);
    /* A loop that cannot be made: no main runs, nothing is left. */
    opts = (coil_loop_group_options_t){.loops = 2, .loop.backend = "nope"};
    assert_int_equal(coil_loop_group_start(&opts, main_count, &s, &g),
                     -EINVAL);
    assert_null(g);
    assert_int_equal(atomic_load(&s.ran), 0);
    assert_int_equal(coil_loop_group_size(NULL), 0);
    assert_null(coil_loop_group_loop(NULL, 0));
    assert_int_equal(coil_loop_group_index(NULL, NULL), -EINVAL);
    assert_int_equal(coil_loop_group_cancel(NULL), -EINVAL);
    assert_int_equal(coil_loop_group_join(NULL), -EINVAL);
    coil_loop_group_free(NULL);
    /* Joining from one of the group's threads would wait for itself. */
    opts = (coil_loop_group_options_t){.loops = 1};
    assert_int_equal(coil_loop_group_start(&opts, main_join_self, &s, &s.g),
                     0);
    assert_int_equal(coil_loop_group_index(s.g, (coil_loop_t *)&s), -EINVAL);
    assert_int_equal(coil_loop_group_join(s.g), 0);
    coil_loop_group_free(s.g);
    /* 0 loops: one per CPU. */
    struct shared s3 = {0};
    opts = (coil_loop_group_options_t){0};
    assert_int_equal(coil_loop_group_start(&opts, main_count, &s3, &s3.g),
                     0);
    assert_true(coil_loop_group_size(s3.g) >= 1);
    assert_int_equal(coil_loop_group_join(s3.g), 0);
    assert_int_equal(atomic_load(&s3.ran), (int)coil_loop_group_size(s3.g));
    coil_loop_group_free(s3.g);
}

/* ------------------------------------------------------------------ */
/* coil_task_spawn_on                                                   */
/* ------------------------------------------------------------------ */

/* A cancelled or abandoned call's arg comes here, once. */
static void count_dispose(void *arg, int outcome)
{
    struct shared *s = arg;
    atomic_store(&s->disposed_with, outcome);
    atomic_fetch_add(&s->disposed, 1);
}

/* Runs on loop 1: says where it ran. */
static int remote_where(void *arg)
{
    struct shared *s = arg;
    return 100 + coil_loop_group_index(s->g, coil_running_loop());
}

static int remote_fails(void *arg)
{
    (void)arg;
    coil_yield();
    return -EIO;
}

/* Runs on loop 1 until cancelled; says what its wait returned. */
static int remote_waits(void *arg)
{
    struct shared *s = arg;
    atomic_store(&s->flag, 1);
    int r = coil_sleep(3600 * SEC);
    atomic_store(&s->b_outcome, r);
    atomic_store(&s->flag, 2);
    return r;
}

/* Loop 1's main: wait until loop 0 says it is done (flag 3), or be
 * cancelled by the group. */
static int serve_until_done(void *arg)
{
    struct shared *s = arg;
    while (atomic_load(&s->flag) != 3)
        if (coil_sleep(1000000) != 0)
            return 0;
    return 0;
}

static int await_on(struct shared *s, coil_loop_t *target, coil_task_fn fn)
{
    coil_future_t *fut;
    int err = coil_task_spawn_on(target, fn, s, count_dispose, &fut);
    if (err)
        return err;
    err = coil_await(fut, &s->a_value);
    coil_future_unref(fut);
    return err;
}

static int main_cross(void *arg)
{
    struct shared *s = arg;
    if (coil_loop_group_index(s->g, coil_running_loop()) != 0)
        return serve_until_done(s);
    coil_loop_t *b = coil_loop_group_loop(s->g, 1);
    switch (s->mode) {
    case 0: /* a result, from the other loop, and from this one */
        s->a_outcome = await_on(s, b, remote_where);
        if (s->a_outcome == 0 && (intptr_t)s->a_value == 101)
            s->a_outcome = await_on(s, coil_running_loop(), remote_where);
        break;
    case 1: /* an error */
        s->a_outcome = await_on(s, b, remote_fails);
        break;
    case 2:   /* a cancel here cancels the task there */
    case 3:   /* or this loop goes first, leaving the task there running */
    case 4: { /* or cancels and goes first */
        coil_future_t *fut;
        s->a_outcome =
            coil_task_spawn_on(b, remote_waits, s, count_dispose, &fut);
        if (s->a_outcome)
            break;
        while (atomic_load(&s->flag) == 0)
            coil_sleep(1000000);
        if (s->mode == 4)
            coil_future_cancel(fut); /* and go at once */
        if (s->mode >= 3) {
            coil_future_unref(fut);
            return 0; /* loop 0 closes; loop 1 is cancelled by the test */
        }
        coil_future_cancel(fut);
        s->a_outcome = coil_await(fut, NULL);
        coil_future_unref(fut);
        /* arg was not handed back: it comes to dispose once the task
         * there has unwound. */
        for (int i = 0; i < 5000 && atomic_load(&s->disposed) == 0; i++)
            coil_sleep(1000000);
        break;
    }
    }
    atomic_store(&s->flag, 3);
    return 0;
}

/* Start a group of n loops running main(s), join it (every main must
 * return 0 or more) and free it. */
static void run_group(struct shared *s, unsigned n, coil_task_fn main)
{
    coil_loop_group_options_t opts = {.loops = n};
    assert_int_equal(coil_loop_group_start(&opts, main, s, &s->g), 0);
    assert_int_equal(coil_loop_group_join(s->g), 0);
    coil_loop_group_free(s->g);
}

static void run_cross(struct shared *s, int mode)
{
    s->mode = mode;
    coil_loop_group_options_t opts = {.loops = 2};
    assert_int_equal(coil_loop_group_start(&opts, main_cross, s, &s->g), 0);
    if (mode >= 3) {
        /* Loop 0 closing cancels the task on loop 1 (nobody waits for
         * it any more), whose arg then goes to dispose. */
        while (atomic_load(&s->disposed) == 0)
            usleep(1000);
        coil_loop_group_cancel(s->g);
    }
    assert_int_equal(coil_loop_group_join(s->g), 0);
    coil_loop_group_free(s->g);
}

static void test_spawn_on_result(void **state)
{
    (void)state;
    struct shared s = {0};
    run_cross(&s, 0);
    assert_int_equal(s.a_outcome, 0);
    assert_int_equal(atomic_load(&s.disposed), 0); /* arg came back */
    assert_int_equal((intptr_t)s.a_value, 100); /* the second: on loop 0 */
}

static void test_spawn_on_error(void **state)
{
    (void)state;
    struct shared s = {0};
    run_cross(&s, 1);
    assert_int_equal(s.a_outcome, -EIO);
    assert_int_equal(atomic_load(&s.disposed), 0);
}

static void test_spawn_on_cancel(void **state)
{
    (void)state;
    struct shared s = {0};
    run_cross(&s, 2);
    assert_int_equal(s.a_outcome, -ECANCELED);
    assert_int_equal(atomic_load(&s.flag), 3);
    assert_int_equal(atomic_load(&s.b_outcome), -ECANCELED);
    assert_int_equal(atomic_load(&s.disposed), 1);
    assert_int_equal(atomic_load(&s.disposed_with), -ECANCELED);
}

/* The caller's loop closes while the task on the other loop runs: the
 * outcome has nowhere to go and is dropped; nothing leaks (the gate). */
static void test_spawn_on_caller_closes_first(void **state)
{
    (void)state;
    struct shared s = {0};
    run_cross(&s, 3);
    assert_int_equal(s.a_outcome, 0);
    assert_int_equal(atomic_load(&s.b_outcome), -ECANCELED);
    assert_int_equal(atomic_load(&s.disposed), 1);
    assert_int_equal(atomic_load(&s.disposed_with), -ECANCELED);
}

static void test_spawn_on_cancel_and_close(void **state)
{
    (void)state;
    struct shared s = {0};
    run_cross(&s, 4);
    assert_int_equal(s.a_outcome, 0);
    assert_int_equal(atomic_load(&s.b_outcome), -ECANCELED);
    assert_int_equal(atomic_load(&s.disposed), 1);
    assert_int_equal(atomic_load(&s.disposed_with), -ECANCELED);
}

/* The caller is a coil_run loop, outside the group, and is gone (freed)
 * while its call's task still runs on the group's loop: the task is
 * cancelled, arg goes to dispose there, and nothing touches the freed
 * loop (ASan, TSan). */
static int main_outside(void *arg)
{
    struct shared *s = arg;
    coil_future_t *fut;
    int r = coil_task_spawn_on(coil_loop_group_loop(s->g, 0), remote_waits,
                               s, count_dispose, &fut);
    if (r)
        return r;
    while (atomic_load(&s->flag) == 0)
        coil_sleep(1000000);
    coil_future_unref(fut);
    return 0;
}

static void test_spawn_on_from_a_loop_that_goes(void **state)
{
    (void)state;
    struct shared s = {0};
    coil_loop_group_options_t opts = {.loops = 1};
    assert_int_equal(coil_loop_group_start(&opts, serve_until_done, &s, &s.g),
                     0);
    assert_int_equal(coil_run(main_outside, &s), 0);
    while (atomic_load(&s.disposed) == 0)
        usleep(1000);
    assert_int_equal(atomic_load(&s.disposed_with), -ECANCELED);
    atomic_store(&s.flag, 3);
    assert_int_equal(coil_loop_group_join(s.g), 0);
    coil_loop_group_free(s.g);
    assert_int_equal(atomic_load(&s.disposed), 1);
}

/* A target closed before the call: -EBADF at once. One that closes
 * while its task runs: the task is cancelled as every task of a closing
 * runner's loop is, and that is the outcome. */
static int main_target_closed(void *arg)
{
    struct shared *s = arg;
    int i = coil_loop_group_index(s->g, coil_running_loop());
    if (i == 1)
        return 0; /* loop 1 closes at once */
    coil_loop_t *b = coil_loop_group_loop(s->g, 1);
    coil_future_t *fut = (coil_future_t *)1;
    int r = 0;
    for (int k = 0; k < 5000; k++) {
        r = coil_task_spawn_on(b, remote_where, s, NULL, &fut);
        if (r != 0)
            break;
        coil_await(fut, NULL);
        coil_future_unref(fut);
        coil_sleep(1000000);
    }
    s->a_outcome = r;
    return fut == NULL ? 0 : -EPROTO;
}

static void test_spawn_on_target_closed(void **state)
{
    (void)state;
    struct shared s = {0};
    run_group(&s, 2, main_target_closed);
    assert_int_equal(s.a_outcome, -EBADF);
}

static int main_target_stops(void *arg)
{
    struct shared *s = arg;
    int i = coil_loop_group_index(s->g, coil_running_loop());
    if (i == 1) {
        while (atomic_load(&s->flag) == 0) /* the remote task started */
            coil_sleep(1000000);
        return 0; /* loop 1's runner cancels it, then closes */
    }
    s->a_outcome = await_on(s, coil_loop_group_loop(s->g, 1), remote_waits);
    return 0;
}

static void test_spawn_on_target_ends(void **state)
{
    (void)state;
    struct shared s = {0};
    run_group(&s, 2, main_target_stops);
    assert_int_equal(s.a_outcome, -ECANCELED);
    assert_int_equal(atomic_load(&s.b_outcome), -ECANCELED);
    assert_int_equal(atomic_load(&s.disposed), 0); /* the outcome came */
}

static int main_spawn_on_args(void *arg)
{
    struct shared *s = arg;
    coil_future_t *fut = (coil_future_t *)1;
    coil_loop_t *here = coil_running_loop();
    if (coil_task_spawn_on(NULL, remote_where, s, NULL, &fut) != -EINVAL || fut)
        return -EPROTO;
    if (coil_task_spawn_on(here, NULL, s, NULL, &fut) != -EINVAL)
        return -EPROTO;
    if (coil_task_spawn_on(here, remote_where, s, NULL, NULL) != -EINVAL)
        return -EPROTO;
    /* Out of memory at each allocation in turn: an error, nothing
     * leaked (the gate), and in the end it works. */
    int r = -ENOMEM;
    for (long nth = 1; nth < 50 && r == -ENOMEM; nth++) {
        test_alloc_fail_after(nth);
        r = coil_task_spawn_on(here, remote_where, s, NULL, &fut);
        test_alloc_fail_after(0);
        if (r == 0) {
            r = coil_await(fut, &s->a_value);
            coil_future_unref(fut);
        }
    }
    return r;
}

struct outside_call {
    coil_loop_t *loop;
    coil_future_t *fut;
    int r;
};

static void *outside(void *arg)
{
    struct outside_call *c = arg;
    c->fut = (coil_future_t *)1;
    c->r = coil_task_spawn_on(c->loop, remote_where, NULL, NULL, &c->fut);
    return NULL;
}

static void test_spawn_on_arguments(void **state)
{
    (void)state;
    struct shared s = {0};
    run_group(&s, 1, main_spawn_on_args);
    assert_int_equal((intptr_t)s.a_value, 100);
    /* From a thread with no loop running. */
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct outside_call c = {.loop = loop};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, outside, &c), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.r, -EPERM);
    assert_null(c.fut);
    coil_loop_unref(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_group_runs_each_main_once),
        TEST_NOLOOP(test_group_join_reports_failure),
        TEST_NOLOOP(test_group_cancel),
        TEST_NOLOOP(test_group_bad_arguments),
        TEST_NOLOOP(test_group_thread_start_fails),
        TEST_NOLOOP(test_spawn_on_result),
        TEST_NOLOOP(test_spawn_on_error),
        TEST_NOLOOP(test_spawn_on_cancel),
        TEST_NOLOOP(test_spawn_on_caller_closes_first),
        TEST_NOLOOP(test_spawn_on_cancel_and_close),
        TEST_NOLOOP(test_spawn_on_from_a_loop_that_goes),
        TEST_NOLOOP(test_spawn_on_target_closed),
        TEST_NOLOOP(test_spawn_on_target_ends),
        TEST_NOLOOP(test_spawn_on_arguments),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
