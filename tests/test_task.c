/* SPDX-License-Identifier: MIT */
/*
 * test_task.c - tasks: spawning (runs in the next iteration), results and
 * errors through join and the task's future, round-robin yield, sleep
 * order, await of futures and tasks (nested), the calls that need a task
 * (-EPERM outside one), -EDEADLK and -EINVAL for awaits that cannot work,
 * coil_current_task, names, coil_loop_tasks, stack sizes and deep
 * recursion, references, coil_run, a task's future being owned, a task
 * returning -EINPROGRESS, allocation failure at every step of spawn,
 * sleep, gather and timeout_begin, and closing a loop whose tasks are
 * suspended.
 *
 * Tasks and callbacks only record what they see; the assertions run on
 * the main stack once the loop has returned. Time-based tests use the
 * virtual clock with autojump.
 */
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "stack.h"

static int ret_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

struct resolve {
    coil_future_t *fut;
    void *value;
    int error; /* 0: set_result(value); -ECANCELED: cancel; else set_error */
};

static void resolve_cb(void *arg)
{
    struct resolve *r = arg;
    if (r->error == 0)
        coil_future_set_result(r->fut, r->value);
    else if (r->error == -ECANCELED)
        coil_future_cancel(r->fut);
    else
        coil_future_set_error(r->fut, r->error);
}

/* ------------------------------------------------------------------ */
/* Spawning                                                             */
/* ------------------------------------------------------------------ */

struct spawn_ctx {
    coil_loop_t *loop;
    int ran;              /* the child's body ran this many times */
    int seen_by_spawner;  /* ran, right after coil_task_spawn returned */
    int seen_by_next_cb;  /* ran, in the callback queued after the spawner */
    int seen_after_yield; /* ran, once the spawning task yielded */
    int spawn_err;
};

static int child_mark(void *arg)
{
    struct spawn_ctx *c = arg;
    c->ran++;
    return 0;
}

static int child_mark_stop(void *arg)
{
    struct spawn_ctx *c = arg;
    c->ran++;
    coil_loop_stop(c->loop);
    return 0;
}

static void spawner_cb(void *arg)
{
    struct spawn_ctx *c = arg;
    c->spawn_err = coil_task_spawn(c->loop, child_mark_stop, c, NULL);
    c->seen_by_spawner = c->ran;
}

static void next_cb(void *arg)
{
    struct spawn_ctx *c = arg;
    c->seen_by_next_cb = c->ran;
}

static int spawner_task(void *arg)
{
    struct spawn_ctx *c = arg;
    coil_task_t *child;
    c->spawn_err = coil_task_spawn(c->loop, child_mark, c, &child);
    c->seen_by_spawner = c->ran;
    coil_yield();
    c->seen_after_yield = c->ran;
    coil_task_unref(child);
    return 0;
}

static void test_spawn_runs_next_iteration(void **state)
{
    struct fixture *f = *state;
    struct spawn_ctx c = {.loop = f->loop};
    coil_task_t *t;

    /* From the main stack: nothing runs until the loop does. */
    assert_int_equal(coil_task_spawn(f->loop, child_mark, &c, &t), 0);
    assert_int_equal(c.ran, 0);
    assert_false(coil_future_done(coil_task_future(t)));
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), 0);
    assert_int_equal(c.ran, 1);
    coil_task_unref(t);

    /* From a callback: the task runs in the next iteration, after every
     * callback of the current one. */
    c = (struct spawn_ctx){.loop = f->loop};
    assert_int_equal(coil_loop_call_soon(f->loop, spawner_cb, &c, NULL), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, next_cb, &c, NULL), 0);
    test_run_stopped(f->loop);
    assert_int_equal(c.spawn_err, 0);
    assert_int_equal(c.seen_by_spawner, 0);
    assert_int_equal(c.seen_by_next_cb, 0);
    assert_int_equal(c.ran, 1);

    /* From a task: the child runs once the spawner lets the loop go on. */
    c = (struct spawn_ctx){.loop = f->loop, .seen_after_yield = -1};
    assert_int_equal(test_run_task(f->loop, spawner_task, &c), 0);
    assert_int_equal(c.spawn_err, 0);
    assert_int_equal(c.seen_by_spawner, 0);
    assert_int_equal(c.seen_after_yield, 1);
    test_assert_no_tasks(f->loop);
}

/* The options' dispose: arg goes back when fn never runs. */
struct disposed {
    int ran, disposed;
};

static int dispose_probe_run(void *arg)
{
    ((struct disposed *)arg)->ran++;
    return 0;
}

static void count_dispose(void *arg)
{
    ((struct disposed *)arg)->disposed++;
}

/* Cancelled before its first step, or its loop closed first: fn never
 * runs and dispose gets arg, once. Started: dispose is not called. A
 * spawn that fails leaves arg to the caller. */
static void test_spawn_dispose(void **state)
{
    struct fixture *f = *state;
    coil_task_options_t o = {.dispose = count_dispose};
    struct disposed d = {0};
    coil_task_t *t;
    assert_int_equal(
        coil_task_spawn_opts(f->loop, dispose_probe_run, &d, &o, &t), 0);
    assert_int_equal(coil_task_cancel(t), 0);
    test_run_until(f->loop, coil_task_future(t));
    assert_true(coil_future_cancelled(coil_task_future(t)));
    assert_int_equal(d.ran, 0);
    assert_int_equal(d.disposed, 1);
    assert_int_equal(coil_task_cancel(t), -EALREADY);
    coil_task_unref(t);
    assert_int_equal(d.disposed, 1);

    d = (struct disposed){0};
    assert_int_equal(
        coil_task_spawn_opts(f->loop, dispose_probe_run, &d, &o, &t), 0);
    test_run_until(f->loop, coil_task_future(t));
    assert_int_equal(coil_task_cancel(t), -EALREADY);
    coil_task_unref(t);
    assert_int_equal(d.ran, 1);
    assert_int_equal(d.disposed, 0);

    /* The name's copy is the spawn's first allocation (the task and its
     * stack come from the loop's pools, filled above). */
    d = (struct disposed){0};
    coil_task_options_t named = {.name = "probe", .dispose = count_dispose};
    test_alloc_fail_after(1);
    assert_int_equal(
        coil_task_spawn_opts(f->loop, dispose_probe_run, &d, &named, &t),
        -ENOMEM);
    test_alloc_fail_after(0);
    assert_null(t);
    assert_int_equal(d.disposed, 0);

    /* The loop closes before the task's first step. */
    test_allow_reports("loop closed with"); /* on purpose */
    assert_int_equal(
        coil_task_spawn_opts(f->loop, dispose_probe_run, &d, &o, NULL), 0);
    coil_loop_close(f->loop);
    assert_int_equal(d.ran, 0);
    assert_int_equal(d.disposed, 1);
}

static void test_spawn_bad_arguments(void **state)
{
    struct fixture *f = *state;
    coil_task_t *t = (coil_task_t *)1;
    assert_int_equal(coil_task_spawn(NULL, ret_arg, NULL, &t), -EINVAL);
    assert_null(t);
    t = (coil_task_t *)1;
    assert_int_equal(coil_task_spawn(f->loop, NULL, NULL, &t), -EINVAL);
    assert_null(t);
    t = (coil_task_t *)1;
    assert_int_equal(coil_task_spawn_opts(NULL, ret_arg, NULL, NULL, &t),
                     -EINVAL);
    assert_null(t);
    test_assert_no_tasks(f->loop);
    assert_int_equal(coil_loop_close(f->loop), 0);
    t = (coil_task_t *)1;
    assert_int_equal(coil_task_spawn(f->loop, ret_arg, NULL, &t), -EBADF);
    assert_null(t);
    assert_int_equal(coil_task_spawn(f->loop, ret_arg, NULL, NULL), -EBADF);
}

/* ------------------------------------------------------------------ */
/* Results and errors                                                   */
/* ------------------------------------------------------------------ */

struct join_ctx {
    coil_loop_t *loop;
    int ok, err, big;
};

static int joiner(void *arg)
{
    struct join_ctx *c = arg;
    coil_task_t *a, *b, *m;
    coil_task_spawn(c->loop, ret_arg, (void *)(intptr_t)42, &a);
    coil_task_spawn(c->loop, ret_arg, (void *)(intptr_t)-EIO, &b);
    coil_task_spawn(c->loop, ret_arg, (void *)(intptr_t)INT_MAX, &m);
    c->ok = coil_task_join(a);
    c->err = coil_task_join(b);
    c->big = coil_task_join(m);
    coil_task_unref(a);
    coil_task_unref(b);
    coil_task_unref(m);
    return 0;
}

static void test_result_and_error(void **state)
{
    struct fixture *f = *state;
    coil_task_t *t;
    void *v = NULL;

    /* A result >= 0 is the future's value. */
    assert_int_equal(
        coil_task_spawn(f->loop, ret_arg, (void *)(intptr_t)42, &t), 0);
    assert_int_equal(coil_future_result(coil_task_future(t), NULL),
                     -EINPROGRESS);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), 0);
    assert_int_equal(coil_future_result(coil_task_future(t), &v), 0);
    assert_int_equal((intptr_t)v, 42);
    assert_int_equal(coil_future_error(coil_task_future(t)), 0);
    assert_false(coil_future_cancelled(coil_task_future(t)));
    coil_task_unref(t);

    /* 0 is a result too. */
    assert_int_equal(coil_task_spawn(f->loop, ret_arg, NULL, &t), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), 0);
    v = (void *)1;
    assert_int_equal(coil_future_result(coil_task_future(t), &v), 0);
    assert_null(v);
    coil_task_unref(t);

    /* A negative errno is the error. */
    assert_int_equal(
        coil_task_spawn(f->loop, ret_arg, (void *)(intptr_t)-EIO, &t), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), -EIO);
    v = (void *)1;
    assert_int_equal(coil_future_result(coil_task_future(t), &v), -EIO);
    assert_ptr_equal(v, (void *)1);
    assert_false(coil_future_cancelled(coil_task_future(t)));
    coil_task_unref(t);

    /* The same through coil_task_join. */
    struct join_ctx c = {.loop = f->loop};
    assert_int_equal(test_run_task(f->loop, joiner, &c), 0);
    assert_int_equal(c.ok, 42);
    assert_int_equal(c.err, -EIO);
    assert_int_equal(c.big, INT_MAX);
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* Interleaving: yield and sleep                                        */
/* ------------------------------------------------------------------ */

#define RR_TASKS 5
#define RR_ROUNDS 4

struct rr_log {
    int ids[RR_TASKS * RR_ROUNDS + 8];
    int n;
    int bad_yield; /* a yield that did not return 0 */
};

struct rr_arg {
    struct rr_log *log;
    int id;
};

static int rr_task(void *arg)
{
    struct rr_arg *a = arg;
    for (int i = 0; i < RR_ROUNDS; i++) {
        if (a->log->n < (int)(sizeof(a->log->ids) / sizeof(int)))
            a->log->ids[a->log->n++] = a->id;
        if (coil_yield() != 0)
            a->log->bad_yield++;
    }
    return 0;
}

static void test_yield_round_robin(void **state)
{
    struct fixture *f = *state;
    struct rr_log log = {0};
    struct rr_arg a[RR_TASKS];
    coil_task_t *t[RR_TASKS];
    for (int i = 0; i < RR_TASKS; i++) {
        a[i] = (struct rr_arg){&log, i};
        assert_int_equal(coil_task_spawn(f->loop, rr_task, &a[i], &t[i]), 0);
    }
    assert_int_equal(test_run_until(f->loop, coil_task_future(t[RR_TASKS - 1])), 0);
    assert_int_equal(log.n, RR_TASKS * RR_ROUNDS);
    assert_int_equal(log.bad_yield, 0);
    for (int i = 0; i < RR_TASKS * RR_ROUNDS; i++)
        assert_int_equal(log.ids[i], i % RR_TASKS);
    for (int i = 0; i < RR_TASKS; i++) {
        assert_true(coil_future_done(coil_task_future(t[i])));
        coil_task_unref(t[i]);
    }
    test_assert_no_tasks(f->loop);
}

/* sleep(<= 0) just yields: every other ready callback and task runs
 * first, and no time passes. */
struct nonpos_log {
    coil_loop_t *loop;
    char seq[16];
    int n;
    int r[4];
    int64_t t0, t1;
};

static void nonpos_note(struct nonpos_log *l, char c)
{
    if (l->n < (int)sizeof(l->seq) - 1)
        l->seq[l->n++] = c;
}

static void nonpos_cb(void *arg)
{
    nonpos_note(arg, 'c');
}

static int nonpos_a(void *arg)
{
    struct nonpos_log *l = arg;
    l->t0 = coil_loop_time(l->loop);
    nonpos_note(l, 'a');
    coil_loop_call_soon(l->loop, nonpos_cb, l, NULL);
    l->r[0] = coil_sleep(0);
    nonpos_note(l, 'a');
    l->r[1] = coil_sleep(-COIL_SEC);
    nonpos_note(l, 'a');
    l->t1 = coil_loop_time(l->loop);
    return 0;
}

static int nonpos_b(void *arg)
{
    struct nonpos_log *l = arg;
    nonpos_note(l, 'b');
    l->r[2] = coil_yield();
    nonpos_note(l, 'b');
    l->r[3] = coil_yield();
    nonpos_note(l, 'b');
    return 0;
}

static void test_sleep_nonpositive_yields(void **state)
{
    struct fixture *f = *state;
    struct nonpos_log l = {.loop = f->loop, .r = {1, 1, 1, 1}};
    coil_task_t *a, *b;
    assert_int_equal(coil_task_spawn(f->loop, nonpos_a, &l, &a), 0);
    assert_int_equal(coil_task_spawn(f->loop, nonpos_b, &l, &b), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(b)), 0);
    assert_true(coil_future_done(coil_task_future(a)));
    assert_string_equal(l.seq, "abcabab");
    for (int i = 0; i < 4; i++)
        assert_int_equal(l.r[i], 0);
    assert_int_equal(l.t1, l.t0);
    coil_task_unref(a);
    coil_task_unref(b);
    test_assert_no_tasks(f->loop);
}

#define SORT_N 12

struct sort_log {
    coil_loop_t *loop;
    int values[SORT_N];
    int64_t at[SORT_N];
    int n;
    int bad_sleep;
};

struct sort_arg {
    struct sort_log *log;
    int value;
};

static int sort_task(void *arg)
{
    struct sort_arg *a = arg;
    if (coil_sleep(a->value * COIL_MSEC) != 0)
        a->log->bad_sleep++;
    if (a->log->n < SORT_N) {
        a->log->at[a->log->n] = coil_loop_time(a->log->loop);
        a->log->values[a->log->n++] = a->value;
    }
    return 0;
}

static void test_sleep_order(void **state)
{
    struct fixture *f = *state;
    static const int values[SORT_N] = {70, 10,  120, 30, 5,   90,
                                       50, 110, 20,  60, 100, 40};
    struct sort_log log = {.loop = f->loop};
    struct sort_arg a[SORT_N];
    for (int i = 0; i < SORT_N; i++) {
        a[i] = (struct sort_arg){&log, values[i]};
        assert_int_equal(coil_task_spawn(f->loop, sort_task, &a[i], NULL), 0);
    }
    int64_t start = coil_loop_time(f->loop);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_SEC, test_stop_cb, f->loop, NULL),
        0);
    test_run(f->loop);
    assert_int_equal(log.n, SORT_N);
    assert_int_equal(log.bad_sleep, 0);
    for (int i = 0; i < SORT_N; i++) {
        if (i > 0)
            assert_true(log.values[i - 1] < log.values[i]);
        /* Never woken early. */
        assert_true(log.at[i] - start >= log.values[i] * COIL_MSEC);
    }
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* await                                                                */
/* ------------------------------------------------------------------ */

struct await_ctx {
    coil_loop_t *loop;
    int r_ok, r_again, r_err, r_cancelled, r_null_out;
    void *v_ok, *v_again, *v_err;
    int64_t waited;
};

static int await_plain(void *arg)
{
    struct await_ctx *c = arg;
    coil_future_t *ok, *err, *can, *nul;
    int marker;
    coil_future_new(c->loop, &ok);
    coil_future_new(c->loop, &err);
    coil_future_new(c->loop, &can);
    coil_future_new(c->loop, &nul);
    struct resolve r1 = {ok, &marker, 0}, r2 = {err, NULL, -EIO},
                   r3 = {can, NULL, -ECANCELED}, r4 = {nul, &marker, 0};
    coil_loop_call_later(c->loop, 5 * COIL_MSEC, resolve_cb, &r1, NULL);
    coil_loop_call_later(c->loop, 6 * COIL_MSEC, resolve_cb, &r2, NULL);
    coil_loop_call_later(c->loop, 7 * COIL_MSEC, resolve_cb, &r3, NULL);
    coil_loop_call_soon(c->loop, resolve_cb, &r4, NULL);
    int64_t t0 = coil_loop_time(c->loop);
    c->r_ok = coil_await(ok, &c->v_ok);
    c->waited = coil_loop_time(c->loop) - t0;
    c->r_again = coil_await(ok, &c->v_again); /* done: at once */
    c->v_err = (void *)1;
    c->r_err = coil_await(err, &c->v_err);
    c->r_cancelled = coil_await(can, NULL);
    c->r_null_out = coil_await(nul, NULL);
    coil_future_unref(ok);
    coil_future_unref(err);
    coil_future_unref(can);
    coil_future_unref(nul);
    return c->v_ok == &marker ? 0 : -EPROTO;
}

static void test_await_plain_future(void **state)
{
    struct fixture *f = *state;
    struct await_ctx c = {.loop = f->loop};
    assert_int_equal(test_run_task(f->loop, await_plain, &c), 0);
    assert_int_equal(c.r_ok, 0);
    assert_true(c.waited >= 5 * COIL_MSEC);
    assert_int_equal(c.r_again, 0);
    assert_ptr_equal(c.v_again, c.v_ok);
    assert_int_equal(c.r_err, -EIO);
    assert_ptr_equal(c.v_err, (void *)1); /* untouched on error */
    assert_int_equal(c.r_cancelled, -ECANCELED);
    assert_int_equal(c.r_null_out, 0);
    test_assert_no_tasks(f->loop);
}

struct nest_ctx {
    coil_loop_t *loop;
    int c_sleep;
    int b_join;
    int a_join;
    int a_await;
    void *a_value;
};

static int nest_c(void *arg)
{
    struct nest_ctx *c = arg;
    c->c_sleep = coil_sleep(COIL_MSEC);
    return 3;
}

static int nest_b(void *arg)
{
    struct nest_ctx *c = arg;
    coil_task_t *t;
    if (coil_task_spawn(c->loop, nest_c, c, &t))
        return -ENOMEM;
    c->b_join = coil_task_join(t);
    coil_task_unref(t);
    return c->b_join < 0 ? c->b_join : c->b_join + 1;
}

static int nest_a(void *arg)
{
    struct nest_ctx *c = arg;
    coil_task_t *t;
    if (coil_task_spawn(c->loop, nest_b, c, &t))
        return -ENOMEM;
    c->a_join = coil_task_join(t);
    /* The task is a future: coil_await gives the same result. */
    c->a_await = coil_await(coil_task_future(t), &c->a_value);
    coil_task_unref(t);
    return c->a_join < 0 ? c->a_join : c->a_join + 1;
}

static void test_await_nested_tasks(void **state)
{
    struct fixture *f = *state;
    struct nest_ctx c = {.loop = f->loop, .c_sleep = 99};
    assert_int_equal(test_run_task(f->loop, nest_a, &c), 5);
    assert_int_equal(c.c_sleep, 0);
    assert_int_equal(c.b_join, 3);
    assert_int_equal(c.a_join, 4);
    assert_int_equal(c.a_await, 0);
    assert_int_equal((intptr_t)c.a_value, 4);
    test_assert_no_tasks(f->loop);
}

/* Every call that may suspend needs a task. */
struct outside_ctx {
    coil_future_t *fut;
    coil_task_t *task;
    int r[6];
    bool ran;
};

static void outside_calls(struct outside_ctx *c)
{
    c->r[0] = coil_await(c->fut, NULL);
    c->r[1] = coil_shield(c->fut, NULL);
    c->r[2] = coil_sleep(COIL_MSEC);
    c->r[3] = coil_sleep(0);
    c->r[4] = coil_yield();
    c->r[5] = coil_task_join(c->task);
    c->ran = true;
}

static void outside_cb(void *arg)
{
    outside_calls(arg);
}

static void test_waits_outside_task(void **state)
{
    struct fixture *f = *state;
    struct outside_ctx c = {0};
    assert_int_equal(coil_future_new(f->loop, &c.fut), 0);
    assert_int_equal(coil_task_spawn(f->loop, ret_arg, NULL, &c.task), 0);
    /* On the main stack. */
    outside_calls(&c);
    for (int i = 0; i < 6; i++)
        assert_int_equal(c.r[i], -EPERM);
    /* In a callback of the running loop. */
    memset(c.r, 0, sizeof(c.r));
    assert_int_equal(coil_loop_call_soon(f->loop, outside_cb, &c, NULL), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(c.task)), 0);
    assert_true(c.ran);
    for (int i = 0; i < 6; i++)
        assert_int_equal(c.r[i], -EPERM);
    /* Nothing was done to the future. */
    assert_false(coil_future_done(c.fut));
    coil_future_unref(c.fut);
    coil_task_unref(c.task);
    test_assert_no_tasks(f->loop);
}

struct self_ctx {
    int await_self, join_self, shield_self, await_null, shield_null;
    int join_null, yield_after;
};

static int await_self(void *arg)
{
    struct self_ctx *c = arg;
    coil_task_t *me = coil_current_task();
    c->await_self = coil_await(coil_task_future(me), NULL);
    c->join_self = coil_task_join(me);
    c->shield_self = coil_shield(coil_task_future(me), NULL);
    c->await_null = coil_await(NULL, NULL);
    c->shield_null = coil_shield(NULL, NULL);
    c->join_null = coil_task_join(NULL);
    /* The task is unharmed. */
    c->yield_after = coil_yield();
    return 0;
}

static void test_await_self_and_null(void **state)
{
    struct fixture *f = *state;
    struct self_ctx c;
    memset(&c, 0x55, sizeof(c));
    assert_int_equal(test_run_task(f->loop, await_self, &c), 0);
    assert_int_equal(c.await_self, -EDEADLK);
    assert_int_equal(c.join_self, -EDEADLK);
    assert_int_equal(c.shield_self, -EDEADLK);
    assert_int_equal(c.await_null, -EINVAL);
    assert_int_equal(c.shield_null, -EINVAL);
    assert_int_equal(c.join_null, -EINVAL);
    assert_int_equal(c.yield_after, 0);
}

struct other_loop_ctx {
    coil_future_t *fut;
    coil_task_t *task;
    int await_r, shield_r, join_r;
};

static int await_other_loop(void *arg)
{
    struct other_loop_ctx *c = arg;
    c->await_r = coil_await(c->fut, NULL);
    c->shield_r = coil_shield(c->fut, NULL);
    c->join_r = coil_task_join(c->task);
    return 0;
}

static void test_await_other_loop(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    struct other_loop_ctx c = {0};
    assert_int_equal(coil_future_new(other, &c.fut), 0);
    assert_int_equal(coil_task_spawn(other, ret_arg, NULL, &c.task), 0);
    assert_int_equal(test_run_task(f->loop, await_other_loop, &c), 0);
    assert_int_equal(c.await_r, -EINVAL);
    assert_int_equal(c.shield_r, -EINVAL);
    assert_int_equal(c.join_r, -EINVAL);
    assert_false(coil_future_done(c.fut));
    /* The other loop's task runs there as usual. */
    assert_int_equal(test_run_until(other, coil_task_future(c.task)), 0);
    coil_future_unref(c.fut);
    coil_task_unref(c.task);
    coil_loop_unref(other);
}

/* ------------------------------------------------------------------ */
/* Inspecting tasks                                                     */
/* ------------------------------------------------------------------ */

struct current_ctx {
    coil_task_t *self;
    coil_task_t *seen_first, *seen_after_yield, *seen_in_cb;
    int all_inside;
};

static void current_cb(void *arg)
{
    ((struct current_ctx *)arg)->seen_in_cb = coil_current_task();
}

static int current_task_body(void *arg)
{
    struct current_ctx *c = arg;
    c->seen_first = coil_current_task();
    coil_loop_t *loop = coil_running_loop();
    coil_loop_call_soon(loop, current_cb, c, NULL);
    c->all_inside = coil_loop_tasks(loop, NULL, 0);
    coil_yield();
    c->seen_after_yield = coil_current_task();
    return 0;
}

static void test_current_task(void **state)
{
    struct fixture *f = *state;
    struct current_ctx c;
    memset(&c, 0x55, sizeof(c));
    assert_null(coil_current_task());
    assert_int_equal(coil_task_spawn(f->loop, current_task_body, &c, &c.self),
                     0);
    assert_null(coil_current_task());
    assert_int_equal(test_run_until(f->loop, coil_task_future(c.self)), 0);
    assert_null(coil_current_task());
    assert_ptr_equal(c.seen_first, c.self);
    assert_ptr_equal(c.seen_after_yield, c.self);
    assert_null(c.seen_in_cb);
    assert_int_equal(c.all_inside, 1); /* itself */
    coil_task_unref(c.self);
}

static bool is_default_name(const char *name, long *id)
{
    if (!name || strncmp(name, "Task-", 5) != 0 || !name[5])
        return false;
    char *end;
    *id = strtol(name + 5, &end, 10);
    return *end == '\0' && *id > 0;
}

struct name_ctx {
    char seen[32];
    int rename;
};

static int name_body(void *arg)
{
    struct name_ctx *c = arg;
    snprintf(c->seen, sizeof(c->seen), "%s",
             coil_task_name(coil_current_task()));
    c->rename = coil_task_set_name(coil_current_task(), "renamed");
    return 0;
}

static void test_names(void **state)
{
    struct fixture *f = *state;
    coil_task_t *a, *b, *n;
    long ida, idb;
    assert_int_equal(coil_task_spawn(f->loop, ret_arg, NULL, &a), 0);
    assert_int_equal(coil_task_spawn(f->loop, ret_arg, NULL, &b), 0);
    assert_true(is_default_name(coil_task_name(a), &ida));
    assert_true(is_default_name(coil_task_name(b), &idb));
    assert_true(ida != idb);

    /* The name given in the options is copied. */
    char buf[16] = "worker";
    struct name_ctx c = {.rename = 1};
    coil_task_options_t o = {.name = buf};
    assert_int_equal(coil_task_spawn_opts(f->loop, name_body, &c, &o, &n), 0);
    buf[0] = 'X';
    assert_string_equal(coil_task_name(n), "worker");

    /* set_name copies too; a failed rename keeps the old name. */
    char buf2[16] = "alpha";
    assert_int_equal(coil_task_set_name(a, buf2), 0);
    buf2[0] = 'X';
    assert_string_equal(coil_task_name(a), "alpha");
    test_alloc_fail_after(1);
    assert_int_equal(coil_task_set_name(a, "beta"), -ENOMEM);
    test_alloc_fail_after(0);
    assert_string_equal(coil_task_name(a), "alpha");
    assert_int_equal(coil_task_set_name(NULL, "x"), -EINVAL);
    assert_int_equal(coil_task_set_name(a, NULL), -EINVAL);
    assert_null(coil_task_name(NULL));

    assert_int_equal(test_run_until(f->loop, coil_task_future(n)), 0);
    assert_string_equal(c.seen, "worker");
    assert_int_equal(c.rename, 0);
    /* The name outlives the run while the task is referenced. */
    assert_string_equal(coil_task_name(n), "renamed");
    assert_int_equal(test_run_until(f->loop, coil_task_future(b)), 0);
    assert_string_equal(coil_task_name(a), "alpha");
    assert_true(is_default_name(coil_task_name(b), &idb));
    coil_task_unref(a);
    coil_task_unref(b);
    coil_task_unref(n);
    test_assert_no_tasks(f->loop);
}

static void test_all_tasks(void **state)
{
    struct fixture *f = *state;
    coil_task_t *out[5] = {0};
    assert_int_equal(coil_loop_tasks(f->loop, NULL, 0), 0);
    assert_int_equal(coil_loop_tasks(NULL, NULL, 0), -EINVAL);
    assert_int_equal(coil_loop_tasks(NULL, out, 1), -EINVAL);
    assert_int_equal(coil_loop_tasks(f->loop, NULL, 1), -EINVAL);
    coil_task_t *last;
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            coil_task_spawn(f->loop, ret_arg, NULL, i == 2 ? &last : NULL), 0);
    /* The count may exceed n; only n references are made. */
    assert_int_equal(coil_loop_tasks(f->loop, out, 2), 3);
    assert_non_null(out[0]);
    assert_non_null(out[1]);
    assert_ptr_not_equal(out[0], out[1]);
    assert_null(out[2]);
    coil_task_unref(out[0]);
    coil_task_unref(out[1]);
    assert_int_equal(coil_loop_tasks(f->loop, out, 5), 3);
    bool found_last = false;
    for (int i = 0; i < 3; i++) {
        assert_non_null(out[i]);
        found_last |= out[i] == last;
    }
    assert_true(found_last);
    assert_null(out[3]);
    /* These references keep finished tasks alive, not listed. */
    assert_int_equal(test_run_until(f->loop, coil_task_future(last)), 0);
    assert_int_equal(coil_loop_tasks(f->loop, NULL, 0), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(coil_future_done(coil_task_future(out[i])));
        coil_task_unref(out[i]);
    }
    coil_task_unref(last);
}

/* ------------------------------------------------------------------ */
/* Stacks                                                               */
/* ------------------------------------------------------------------ */

struct stack_seen {
    size_t size_inside;
};

static int stack_body(void *arg)
{
    struct stack_seen *s = arg;
    s->size_inside = coil_task_stack_size(coil_current_task());
    return 0;
}

static void test_stack_sizes(void **state)
{
    struct fixture *f = *state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    coil_task_t *t = (coil_task_t *)1;
    coil_task_options_t o = {0};
    static const size_t bad[] = {16 * 1024 - 1, 1, ((size_t)1 << 30) + 1,
                                 SIZE_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.stack_size = bad[i];
        t = (coil_task_t *)1;
        assert_int_equal(coil_task_spawn_opts(f->loop, ret_arg, NULL, &o, &t),
                         -EINVAL);
        assert_null(t);
        assert_int_equal(coil_loop_set_stack_size(f->loop, bad[i]), -EINVAL);
    }
    assert_int_equal(coil_loop_set_stack_size(NULL, 64 * 1024), -EINVAL);
    assert_int_equal(coil_task_stack_size(NULL), 0u);
    test_assert_no_tasks(f->loop);

    /* Everything is made, run and released first; the checks come after,
     * so a failing one leaves nothing behind. */
    struct stack_seen s_min = {0}, s_odd = {0}, s_def = {0}, s_loop = {0};
    coil_task_t *tmin, *todd, *tdef, *tloop;
    int r_min, r_odd, r_def, r_set, r_loop, r_run;
    o.stack_size = 16 * 1024; /* the minimum is accepted */
    r_min = coil_task_spawn_opts(f->loop, stack_body, &s_min, &o, &tmin);
    o.stack_size = 20000; /* rounded up */
    r_odd = coil_task_spawn_opts(f->loop, stack_body, &s_odd, &o, &todd);
    o.stack_size = 0; /* the loop's default */
    r_def = coil_task_spawn_opts(f->loop, stack_body, &s_def, &o, &tdef);
    size_t min = coil_task_stack_size(tmin);
    size_t odd = coil_task_stack_size(todd);
    size_t def = coil_task_stack_size(tdef);
    r_set = coil_loop_set_stack_size(f->loop, 128 * 1024);
    r_loop = coil_task_spawn(f->loop, stack_body, &s_loop, &tloop);
    size_t loop_default = coil_task_stack_size(tloop);
    size_t def_after = coil_task_stack_size(tdef);
    r_run = test_run_until(f->loop, coil_task_future(tloop));
    coil_task_unref(tmin);
    coil_task_unref(todd);
    coil_task_unref(tdef);
    coil_task_unref(tloop);
    assert_int_equal(r_min, 0);
    assert_int_equal(r_odd, 0);
    assert_int_equal(r_def, 0);
    assert_int_equal(r_set, 0);
    assert_int_equal(r_loop, 0);
    assert_int_equal(r_run, 0);
    test_assert_no_tasks(f->loop);
    /* What each task saw from inside is what it was given. */
    assert_int_equal(s_min.size_inside, min);
    assert_int_equal(s_odd.size_inside, odd);
    assert_int_equal(s_def.size_inside, def);
    assert_int_equal(s_loop.size_inside, loop_default);
    /* Tasks made before keep their stacks. */
    assert_int_equal(def_after, def);
    assert_true(def >= 16 * 1024);
    /* Rounded up to fill whole pages with the stack's bookkeeping
     * (task.h): at least what was asked, less than a page more. */
    assert_true(min >= 16 * 1024 && min < 16 * 1024 + page);
    assert_true(odd >= 20000 && odd < 20000 + page);
    assert_true(loop_default >= 128 * 1024 && loop_default < 128 * 1024 + page);
}

/* A stack size given in the options that equals the loop's default (or
 * the size set with coil_loop_set_stack_size) works like any other. */
static void test_stack_size_equal_to_default(void **state)
{
    struct fixture *f = *state;
    struct stack_seen s[3] = {{0}, {0}, {0}};
    coil_task_t *t[3];
    coil_task_options_t o = {.stack_size = COIL__STACK_DEFAULT};
    assert_int_equal(
        coil_task_spawn_opts(f->loop, stack_body, &s[0], &o, &t[0]), 0);
    assert_int_equal(coil_loop_set_stack_size(f->loop, 128 * 1024), 0);
    o.stack_size = 128 * 1024;
    assert_int_equal(
        coil_task_spawn_opts(f->loop, stack_body, &s[1], &o, &t[1]), 0);
    assert_int_equal(coil_task_spawn(f->loop, stack_body, &s[2], &t[2]), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t[2])), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(coil_future_done(coil_task_future(t[i])));
        coil_task_unref(t[i]);
    }
    assert_true(s[0].size_inside >= COIL__STACK_DEFAULT);
    assert_true(s[1].size_inside >= 128 * 1024);
    assert_int_equal(s[1].size_inside, s[2].size_inside);
    test_assert_no_tasks(f->loop);
}

struct deep {
    size_t target;  /* bytes of stack to use */
    size_t reached; /* bytes of stack used at the deepest frame */
    unsigned depth; /* frames */
    unsigned sum;
    char *top;
    bool in_task;
};

/* A frame of about 512 bytes, measured by frame addresses so the test
 * adapts to the compiler and the sanitizers. */
__attribute__((noinline)) static unsigned recurse(struct deep *d,
                                                  unsigned depth)
{
    volatile unsigned char buf[480];
    for (size_t i = 0; i < sizeof(buf); i += 32)
        buf[i] = (unsigned char)(depth + i);
    size_t used = (size_t)(d->top - (char *)__builtin_frame_address(0));
    unsigned sum = buf[0];
    if (used > d->reached) {
        d->reached = used;
        d->depth = depth;
    }
    if (used < d->target)
        sum += recurse(d, depth + 1);
    return sum + buf[sizeof(buf) - 32];
}

static int deep_body(void *arg)
{
    struct deep *d = arg;
    d->top = __builtin_frame_address(0);
    d->in_task = coil_current_task() != NULL;
    d->sum = recurse(d, 1);
    return 0;
}

static void test_deep_recursion(void **state)
{
    struct fixture *f = *state;
    struct deep small = {.target = 40 * 1024};
    struct deep big = {.target = 800 * 1024};
    coil_task_options_t os = {.stack_size = 64 * 1024};
    coil_task_options_t ob = {.stack_size = 1024 * 1024};
    coil_task_t *ts, *tb;
    assert_int_equal(coil_task_spawn_opts(f->loop, deep_body, &small, &os, &ts),
                     0);
    assert_int_equal(coil_task_spawn_opts(f->loop, deep_body, &big, &ob, &tb),
                     0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(ts)), 0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(tb)), 0);
    assert_true(small.in_task && big.in_task);
    assert_true(small.reached >= small.target);
    assert_true(small.depth >= 2);
    assert_true(big.reached >= big.target);
    assert_true(big.depth > small.depth);
    coil_task_unref(ts);
    coil_task_unref(tb);
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* References                                                           */
/* ------------------------------------------------------------------ */

struct ref_ctx {
    coil_loop_t *loop;
    coil_task_t *self; /* the caller's reference, dropped by the task */
    int *finished_count;
    int sleep_r;
    bool started, finished;
    char name[32];
};

static int ref_body(void *arg)
{
    struct ref_ctx *c = arg;
    c->started = true;
    if (c->self) {
        coil_task_unref(c->self); /* the caller's reference goes */
        c->self = NULL;
    }
    c->sleep_r = coil_sleep(COIL_MSEC);
    /* Still alive: the loop holds the task until it finishes. */
    snprintf(c->name, sizeof(c->name), "%s",
             coil_task_name(coil_current_task()));
    c->finished = true;
    if (++*c->finished_count == 3)
        coil_loop_stop(c->loop);
    return 0;
}

static void test_task_references(void **state)
{
    struct fixture *f = *state;
    int finished = 0;
    struct ref_ctx a = {
        .loop = f->loop, .finished_count = &finished, .sleep_r = 1};
    struct ref_ctx b = a, c = a;
    coil_task_t *t;
    coil_task_options_t o = {.name = "unreffed"};
    /* Dropped before it starts. */
    assert_int_equal(coil_task_spawn_opts(f->loop, ref_body, &a, &o, &t), 0);
    assert_ptr_equal(coil_task_ref(t), t);
    coil_task_unref(t);
    coil_task_unref(t);
    /* Dropped by the task itself while it runs. */
    assert_int_equal(coil_task_spawn(f->loop, ref_body, &b, &b.self), 0);
    assert_non_null(b.self);
    /* No reference asked for. */
    assert_int_equal(coil_task_spawn(f->loop, ref_body, &c, NULL), 0);
    assert_null(coil_task_ref(NULL));
    coil_task_unref(NULL);
    test_run_stopped(f->loop); /* the last task to finish stops it */
    assert_int_equal(finished, 3);
    assert_true(a.started && a.finished);
    assert_true(b.started && b.finished);
    assert_true(c.started && c.finished);
    assert_null(b.self);
    assert_int_equal(a.sleep_r, 0);
    assert_int_equal(b.sleep_r, 0);
    assert_int_equal(c.sleep_r, 0);
    assert_string_equal(a.name, "unreffed");
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* coil_run                                                             */
/* ------------------------------------------------------------------ */

struct leftover {
    bool started, cleaned_up;
    int sleep_r, cleanup_r;
};

static int leftover_body(void *arg)
{
    struct leftover *l = arg;
    l->started = true;
    l->sleep_r = coil_sleep(24 * 3600 * COIL_SEC);
    /* Cleanup may wait, and its waits work. */
    l->cleanup_r = coil_sleep(COIL_MSEC);
    l->cleaned_up = true;
    return l->sleep_r;
}

struct run_ctx {
    struct leftover sleeper, never;
    int result;
};

static int run_main_with_leftovers(void *arg)
{
    struct run_ctx *c = arg;
    coil_loop_t *loop;
    if (!(loop = coil_running_loop()))
        return -ESRCH;
    coil_task_spawn(loop, leftover_body, &c->sleeper, NULL);
    coil_yield(); /* the sleeper starts sleeping */
    /* Spawned last: never started when main returns. */
    coil_task_spawn(loop, leftover_body, &c->never, NULL);
    return c->result;
}

static int run_main_self_cancel(void *arg)
{
    (void)arg;
    coil_task_cancel(coil_current_task());
    return coil_yield();
}

static void test_coil_run(void **state)
{
    (void)state;
    struct run_ctx c = {.result = 7};
    c.sleeper.sleep_r = c.sleeper.cleanup_r = 1;
    assert_int_equal(coil_run(run_main_with_leftovers, &c), 7);
    assert_true(c.sleeper.started);
    assert_int_equal(c.sleeper.sleep_r, -ECANCELED);
    assert_int_equal(c.sleeper.cleanup_r, 0);
    assert_true(c.sleeper.cleaned_up);
    /* Cancelled before it started: its body never ran. */
    assert_false(c.never.started);

    assert_int_equal(coil_run(ret_arg, (void *)(intptr_t)42), 42);
    assert_int_equal(coil_run(ret_arg, (void *)(intptr_t)-EIO), -EIO);
    assert_int_equal(coil_run(run_main_self_cancel, NULL), -ECANCELED);
    assert_int_equal(coil_run(NULL, NULL), -EINVAL);
    /* No loop runs now. */
    assert_null(coil_running_loop());
}

struct busy_ctx {
    int from_task, from_cb, run_forever, test_run_until;
    bool inner_ran;
};

static int run_inner(void *arg)
{
    ((struct busy_ctx *)arg)->inner_ran = true;
    return 0;
}

static void run_from_cb(void *arg)
{
    struct busy_ctx *c = arg;
    c->from_cb = coil_run(run_inner, c);
}

static int run_from_task(void *arg)
{
    struct busy_ctx *c = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_loop_call_soon(loop, run_from_cb, c, NULL);
    c->from_task = coil_run(run_inner, c);
    /* Nor can the running loop be run again from inside. */
    c->run_forever = coil_loop_run_forever(loop);
    c->test_run_until = coil_loop_run_until_complete(
        loop, coil_task_future(coil_current_task()));
    coil_yield();
    return 0;
}

static void test_run_inside_loop(void **state)
{
    struct fixture *f = *state;
    struct busy_ctx c = {1, 1, 1, 1, false};
    assert_int_equal(test_run_task(f->loop, run_from_task, &c), 0);
    assert_int_equal(c.from_task, -EBUSY);
    assert_int_equal(c.from_cb, -EBUSY);
    assert_int_equal(c.run_forever, -EBUSY);
    assert_int_equal(c.test_run_until, -EBUSY);
    assert_false(c.inner_ran);
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* The task's future; odd results                                       */
/* ------------------------------------------------------------------ */

static int sleep_a_bit(void *arg)
{
    (void)arg;
    return coil_sleep(COIL_MSEC);
}

static void test_task_future_is_owned(void **state)
{
    struct fixture *f = *state;
    coil_task_t *t, *c;
    assert_int_equal(coil_task_spawn(f->loop, sleep_a_bit, NULL, &t), 0);
    coil_future_t *fut = coil_task_future(t);
    assert_non_null(fut);
    assert_null(coil_task_future(NULL));
    assert_ptr_equal(coil_future_loop(fut), f->loop);
    assert_int_equal(coil_future_set_result(fut, NULL), -EPERM);
    assert_int_equal(coil_future_set_error(fut, -EIO), -EPERM);
    assert_false(coil_future_done(fut));
    assert_int_equal(test_run_until(f->loop, fut), 0);
    assert_int_equal(coil_future_set_result(fut, NULL), -EPERM);
    assert_int_equal(coil_future_set_error(fut, -EIO), -EPERM);
    assert_int_equal(coil_future_error(fut), 0);
    coil_task_unref(t);

    /* coil_future_cancel on a task's future is a cancel request. */
    assert_int_equal(coil_task_spawn(f->loop, sleep_a_bit, NULL, &c), 0);
    assert_int_equal(coil_future_cancel(coil_task_future(c)), 0);
    assert_int_equal(coil_task_cancelling(c), 1u);
    assert_false(coil_future_done(coil_task_future(c)));
    assert_int_equal(test_run_until(f->loop, coil_task_future(c)), -ECANCELED);
    assert_true(coil_future_cancelled(coil_task_future(c)));
    assert_int_equal(coil_future_cancel(coil_task_future(c)), -EALREADY);
    coil_task_unref(c);
    test_assert_no_tasks(f->loop);
}

static void test_einprogress_result(void **state)
{
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    coil_task_t *t;
    assert_int_equal(
        coil_task_spawn(f->loop, ret_arg, (void *)(intptr_t)-EINPROGRESS, &t),
        0);
    assert_int_equal(test_run_until(f->loop, coil_task_future(t)), -EINVAL);
    assert_true(coil_future_done(coil_task_future(t)));
    assert_int_equal(coil_future_error(coil_task_future(t)), -EINVAL);
    assert_int_equal(log.count, 1);
    assert_int_equal(log.last_error, -EINVAL);
    coil_task_unref(t);
}

/* loop.h: the exception handler gets "an error of a task nobody awaited".
 * A task spawned without a reference that fails can be awaited by nobody;
 * a task that is joined, or that is cancelled, is not such an error. */
struct unawaited_ctx {
    coil_loop_t *loop;
    int joined;
};

static int join_failing(void *arg)
{
    struct unawaited_ctx *c = arg;
    coil_task_t *t;
    coil_task_spawn(c->loop, ret_arg, (void *)(intptr_t)-EPIPE, &t);
    c->joined = coil_task_join(t);
    coil_task_unref(t);
    /* Nobody can await this one. */
    coil_task_spawn(c->loop, ret_arg, (void *)(intptr_t)-EIO, NULL);
    coil_sleep(COIL_MSEC);
    return 0;
}

static void test_unawaited_error_reported(void **state)
{
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    struct unawaited_ctx c = {.loop = f->loop};
    assert_int_equal(test_run_task(f->loop, join_failing, &c), 0);
    assert_int_equal(c.joined, -EPIPE);
    assert_int_equal(log.count, 1);
    assert_int_equal(log.last_error, -EIO);
}

/* ------------------------------------------------------------------ */
/* Allocation failure                                                   */
/* ------------------------------------------------------------------ */

static int count_run(void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static void test_spawn_alloc_failure(void **state)
{
    (void)state;
    for (int named = 0; named < 2; named++) {
        int failures = 0;
        bool done = false;
        for (long n = 1; n < 64 && !done; n++) {
            long live = test_alloc_live();
            coil_loop_t *loop;
            assert_int_equal(coil_loop_new(&loop), 0);
            int ran = 0;
            coil_task_t *t = (coil_task_t *)1;
            coil_task_options_t o = {.name = named ? "named" : NULL};
            test_alloc_fail_after(n);
            int err = coil_task_spawn_opts(loop, count_run, &ran, &o, &t);
            bool failed = test_alloc_failed();
            test_alloc_fail_after(0);
            if (failed) {
                failures++;
                assert_int_equal(err, -ENOMEM);
                assert_null(t);
                assert_int_equal(coil_loop_tasks(loop, NULL, 0), 0);
                /* An iteration runs nothing of it. */
                assert_int_equal(coil_loop_stop(loop), 0);
                assert_int_equal(coil_loop_run_forever(loop), 0);
                assert_int_equal(ran, 0);
            } else {
                assert_int_equal(err, 0);
                assert_non_null(t);
                assert_int_equal(test_run_until(loop, coil_task_future(t)), 0);
                assert_int_equal(ran, 1);
                if (named)
                    assert_string_equal(coil_task_name(t), "named");
                coil_task_unref(t);
                done = true;
            }
            coil_loop_unref(loop);
            /* Nothing of the attempt is left. */
            assert_int_equal(test_alloc_live(), live);
        }
        assert_true(done);
        assert_true(failures >= 1 + named);
    }
}

#define SWEEP_MAX 32

struct sweep {
    coil_loop_t *loop;
    int r[SWEEP_MAX];
    bool failed[SWEEP_MAX];
    bool out_null[SWEEP_MAX];
    bool side_effect[SWEEP_MAX]; /* a failed call changed something */
    int n;
    int after; /* a wait after the sweep */
    void *results[3];
};

/* Run a sweep task on a loop with no timer of the test's own, so that the
 * calls under test have their timers (pool and heap) to allocate. Every
 * sweep is bounded: it stops at the first success. */
static int run_sweep(coil_loop_t *loop, coil_task_fn fn, struct sweep *s)
{
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, fn, s, &t), 0);
    int err = coil_loop_run_until_complete(loop, coil_task_future(t));
    coil_task_unref(t);
    return err;
}

static void sweep_check(struct sweep *s)
{
    assert_true(s->n >= 2);
    for (int i = 0; i < s->n - 1; i++) {
        assert_true(s->failed[i]);
        assert_int_equal(s->r[i], -ENOMEM);
        assert_true(s->out_null[i]);
        assert_false(s->side_effect[i]);
    }
    assert_false(s->failed[s->n - 1]);
    assert_int_equal(s->r[s->n - 1], 0);
}

static int sleep_sweep(void *arg)
{
    struct sweep *s = arg;
    for (long n = 1; n <= SWEEP_MAX; n++) {
        int64_t t0 = coil_loop_time(s->loop);
        test_alloc_fail_after(n);
        int r = coil_sleep(COIL_MSEC);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        s->r[s->n] = r;
        s->failed[s->n] = failed;
        s->out_null[s->n] = true;
        /* A failed sleep does not wait. */
        s->side_effect[s->n] = failed && coil_loop_time(s->loop) != t0;
        s->n++;
        if (!failed)
            break;
    }
    return 0;
}

static void test_sleep_alloc_failure(void **state)
{
    struct fixture *f = *state;
    struct sweep s = {.loop = f->loop};
    assert_int_equal(run_sweep(f->loop, sleep_sweep, &s), 0);
    sweep_check(&s);
    test_assert_no_tasks(f->loop);
}

static void set_all(void *arg)
{
    coil_future_t **futs = arg;
    for (int i = 0; i < 3; i++)
        coil_future_set_result(futs[i], (void *)(intptr_t)(i + 1));
}

static int gather_sweep(void *arg)
{
    struct sweep *s = arg;
    coil_future_t *futs[3];
    for (int i = 0; i < 3; i++)
        coil_future_new(s->loop, &futs[i]);
    coil_loop_call_later(s->loop, COIL_MSEC, set_all, futs, NULL);
    for (long n = 1; n <= SWEEP_MAX; n++) {
        test_alloc_fail_after(n);
        int r = coil_gather(futs, 3, s->results, 0);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        s->r[s->n] = r;
        s->failed[s->n] = failed;
        s->out_null[s->n] = true;
        bool changed = false;
        for (int i = 0; i < 3; i++)
            changed |= failed && coil_future_done(futs[i]);
        s->side_effect[s->n] = changed;
        s->n++;
        if (!failed)
            break;
    }
    for (int i = 0; i < 3; i++)
        coil_future_unref(futs[i]);
    return 0;
}

static void test_gather_alloc_failure(void **state)
{
    struct fixture *f = *state;
    struct sweep s = {.loop = f->loop};
    assert_int_equal(run_sweep(f->loop, gather_sweep, &s), 0);
    sweep_check(&s);
    for (int i = 0; i < 3; i++)
        assert_int_equal((intptr_t)s.results[i], i + 1);
    test_assert_no_tasks(f->loop);
}

static int timeout_sweep(void *arg)
{
    struct sweep *s = arg;
    for (long n = 1; n <= SWEEP_MAX; n++) {
        coil_timeout_t *sc = (coil_timeout_t *)1;
        test_alloc_fail_after(n);
        int r = coil_timeout_begin(COIL_MSEC, &sc);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        s->r[s->n] = r;
        s->failed[s->n] = failed;
        s->out_null[s->n] = failed ? sc == NULL : true;
        s->side_effect[s->n] = false;
        s->n++;
        if (!failed) {
            s->r[s->n - 1] = coil_timeout_end(sc, 0);
            break;
        }
    }
    /* No deadline of a failed (or ended) scope is left to cancel this. */
    s->after = coil_sleep(10 * COIL_MSEC);
    return 0;
}

static void test_timeout_alloc_failure(void **state)
{
    struct fixture *f = *state;
    struct sweep s = {.loop = f->loop, .after = 1};
    assert_int_equal(run_sweep(f->loop, timeout_sweep, &s), 0);
    sweep_check(&s);
    assert_true(s.n >= 3); /* the scope, and its timer */
    assert_int_equal(s.after, 0);
    test_assert_no_tasks(f->loop);
}

/* ------------------------------------------------------------------ */
/* Closing a loop with suspended tasks                                  */
/* ------------------------------------------------------------------ */

struct closing {
    coil_loop_t *loop;
    coil_future_t *fut;
    coil_task_t *sleeper;
    bool started[6];
    bool resumed[6];
};

static int close_sleeper(void *arg)
{
    struct closing *c = arg;
    c->started[0] = true;
    coil_sleep(3600 * COIL_SEC);
    c->resumed[0] = true;
    return 0;
}

static int close_awaiter(void *arg)
{
    struct closing *c = arg;
    c->started[1] = true;
    coil_await(c->fut, NULL);
    c->resumed[1] = true;
    return 0;
}

static int close_joiner(void *arg)
{
    struct closing *c = arg;
    c->started[2] = true;
    coil_task_join(c->sleeper);
    c->resumed[2] = true;
    return 0;
}

static int close_never(void *arg)
{
    struct closing *c = arg;
    c->started[4] = true;
    return 0;
}

static int close_yielder(void *arg)
{
    struct closing *c = arg;
    c->started[3] = true;
    coil_yield(); /* the others are suspended by now */
    coil_task_spawn(c->loop, close_never, c, NULL);
    coil_loop_stop(c->loop);
    coil_yield(); /* suspended in a yield, queued, when the loop closes */
    c->resumed[3] = true;
    return 0;
}

static void test_close_with_suspended_tasks(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    struct closing c = {.loop = f->loop};
    assert_int_equal(coil_future_new(f->loop, &c.fut), 0);
    coil_task_t *t[4];
    assert_int_equal(coil_task_spawn(f->loop, close_sleeper, &c, &t[0]), 0);
    c.sleeper = t[0];
    assert_int_equal(coil_task_spawn(f->loop, close_awaiter, &c, &t[1]), 0);
    assert_int_equal(coil_task_spawn(f->loop, close_joiner, &c, &t[2]), 0);
    assert_int_equal(coil_task_spawn(f->loop, close_yielder, &c, &t[3]), 0);
    test_run_stopped(f->loop);
    for (int i = 0; i < 4; i++)
        assert_true(c.started[i]);
    assert_false(c.started[4]);
    assert_int_equal(coil_loop_tasks(f->loop, NULL, 0), 5);
    assert_int_equal(log.count, 0);

    assert_int_equal(coil_loop_close(f->loop), 0);
    /* Every task is gone, each suspended one reported, none resumed. */
    assert_int_equal(coil_loop_tasks(f->loop, NULL, 0), 0);
    assert_true(log.count >= 4);
    assert_int_equal(log.last_error, -ECANCELED);
    for (int i = 0; i < 4; i++) {
        assert_false(c.resumed[i]);
        assert_true(coil_future_done(coil_task_future(t[i])));
        assert_true(coil_future_cancelled(coil_task_future(t[i])));
        assert_int_equal(coil_task_cancel(t[i]), -EALREADY);
    }
    assert_false(c.started[4]);
    /* The plain future stays usable; completing it runs nothing. */
    assert_int_equal(coil_future_set_result(c.fut, NULL), 0);
    coil_future_unref(c.fut);
    for (int i = 0; i < 4; i++)
        coil_task_unref(t[i]);
}

/*
 * A task that overflows its stack: in a forked child, the process must
 * die by SIGABRT after printing which task overflowed and its stack size
 * (from the handler on the loop thread's alternate signal stack).
 */
void coil__stack_reinstall_handler(void); /* test build only (stack.c) */

static volatile int sink;
static volatile bool keep_descending = true;

__attribute__((noinline)) static int bottomless(int depth)
{
    volatile char frame[512];
    frame[0] = (char)depth;
    sink = frame[0];
    if (!keep_descending)
        return depth;
    return bottomless(depth + 1) + frame[depth % 512];
}

static int overflow_task(void *arg)
{
    (void)arg;
    return bottomless(0);
}

static int overflow_main(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    char name[] = "deep-diver";
    coil_task_options_t opts = {.name = name, .stack_size = 32 * 1024};
    coil_task_t *t;
    if (coil_task_spawn_opts(loop, overflow_task, NULL, &opts, &t))
        return -ENOMEM;
    return coil_task_join(t);
}

static void test_stack_overflow_reported(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        /* cmocka's own handlers are not what a program would have. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        alarm(20); /* a hung child dies by SIGALRM, not as a pass */
        struct rlimit no_core = {0, 0}; /* the abort is expected */
        setrlimit(RLIMIT_CORE, &no_core);
        coil__stack_reinstall_handler();
        coil_run(overflow_main, NULL);
        _exit(0); /* surviving the overflow is a failure */
    }
    close(fds[1]);
    char err[2048];
    size_t len = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, 1000) <= 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec > 30)
                break;
            continue;
        }
        ssize_t n = read(fds[0], err + len, sizeof(err) - 1 - len);
        if (n <= 0 || (len += (size_t)n) == sizeof(err) - 1)
            break;
    }
    close(fds[0]);
    err[len] = '\0';
    /* EOF comes when the child's fds close, which can be well before it
     * can be reaped (an abort may dump core): wait, but boundedly. */
    int status;
    int waited_ms = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (waited_ms >= 30000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the child hung; its stderr:\n%s", err);
        }
        usleep(10000);
        waited_ms += 10;
    }
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        fail_msg("the child did not abort (status %d); its stderr:\n%s",
                 status, err);
    if (!strstr(err, "stack overflow in task 'deep-diver'"))
        fail_msg("no overflow report naming the task; stderr:\n%s", err);
    if (!strstr(err, "stack size"))
        fail_msg("the report does not give the stack size; stderr:\n%s",
                 err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_FAKE(test_spawn_runs_next_iteration),
        cmocka_unit_test_setup_teardown(test_stack_overflow_reported,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        TEST_FAKE(test_spawn_bad_arguments),
        TEST_FAKE(test_spawn_dispose),
        TEST_FAKE(test_result_and_error),
        TEST_FAKE(test_yield_round_robin),
        TEST_FAKE(test_sleep_order),
        TEST_FAKE(test_sleep_nonpositive_yields),
        TEST_FAKE(test_await_plain_future),
        TEST_FAKE(test_await_nested_tasks),
        TEST_FAKE(test_waits_outside_task),
        TEST_FAKE(test_await_self_and_null),
        TEST_FAKE(test_await_other_loop),
        TEST_FAKE(test_current_task),
        TEST_FAKE(test_names),
        TEST_FAKE(test_all_tasks),
        TEST_FAKE(test_stack_sizes),
        TEST_FAKE(test_task_references),
        TEST_FAKE_NOLOOP(test_coil_run),
        TEST_FAKE(test_run_inside_loop),
        TEST_FAKE(test_task_future_is_owned),
        TEST_FAKE(test_einprogress_result),
        TEST_FAKE(test_unawaited_error_reported),
        TEST_FAKE_NOLOOP(test_spawn_alloc_failure),
        TEST_FAKE(test_sleep_alloc_failure),
        TEST_FAKE(test_gather_alloc_failure),
        TEST_FAKE(test_timeout_alloc_failure),
        TEST_FAKE(test_close_with_suspended_tasks),
        TEST_FAKE(test_stack_size_equal_to_default),
        TEST_FAKE(test_deep_recursion),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
