/* SPDX-License-Identifier: MIT */
/*
 * test_testing.c - the testing kit (coil/testing.h) tested: the fixture
 * passes a clean body and catches each kind of thing left behind (a
 * task, a timer, an allocation, an fd, a report, an error nobody
 * awaited), a body that fails or runs out of time; the virtual clock
 * jumps only when every task is idle; allocation and operation faults
 * hit where aimed; every argument check.
 */
#include <stdio.h>
#include <unistd.h>

#include "coil/testing.h"
#include "helpers.h"

/* ------------------------------------------------------------------ */
/* The fixture                                                          */
/* ------------------------------------------------------------------ */

static int clean_body(void *arg)
{
    int *ran = arg;
    coil_future_t *f;
    int err = coil_future_new(coil_running_loop(), &f);
    if (err)
        return err;
    coil_future_set_result(f, NULL);
    err = coil_await(f, NULL);
    coil_future_unref(f);
    if (err)
        return err;
    err = coil_sleep(COIL_MSEC);
    (*ran)++;
    return err ? err : 7;
}

static void test_run_clean(void **state)
{
    (void)state;
    int ran = 0;
    coil_test_result_t r;
    assert_int_equal(coil_test_run(clean_body, &ran, NULL, &r), 0);
    assert_int_equal(ran, 1);
    assert_int_equal(r.outcome, 7);
    assert_string_equal(r.message, "");
    assert_int_equal(r.tasks_left, 0);
    assert_int_equal(r.allocations_left, 0);
    assert_int_equal(r.fds_left, 0);
    /* out may be NULL. */
    assert_int_equal(coil_test_run(clean_body, &ran, NULL, NULL), 0);
}

static int failing_body(void *arg)
{
    (void)arg;
    return -EPROTO;
}

static void test_run_body_fails(void **state)
{
    (void)state;
    coil_test_result_t r;
    assert_int_equal(coil_test_run(failing_body, NULL, NULL, &r), -EPROTO);
    assert_int_equal(r.outcome, -EPROTO);
    assert_non_null(strstr(r.message, "the body failed: EPROTO"));
}

static int sleeper(void *arg)
{
    (void)arg;
    return coil_sleep(3600 * COIL_SEC);
}

static int leaves_task(void *arg)
{
    (void)arg;
    int err = coil_task_spawn(coil_running_loop(), sleeper, NULL, NULL);
    return err ? err : coil_yield(); /* it starts sleeping */
}

static void test_run_task_left(void **state)
{
    (void)state;
    coil_test_result_t r;
    assert_int_equal(coil_test_run(leaves_task, NULL, NULL, &r), -ENOTEMPTY);
    assert_int_equal(r.outcome, 0);
    assert_int_equal(r.tasks_left, 1);
    assert_int_equal(r.timers_left, 1); /* its sleep */
    assert_non_null(strstr(r.message, "1 task left unfinished"));
    /* Cleaned up: the task was cancelled and finished, nothing leaked. */
    assert_int_equal(r.allocations_left, 0);
}

static void noop(void *arg)
{
    (void)arg;
}

static int leaves_timer(void *arg)
{
    (void)arg;
    return coil_loop_call_later(coil_running_loop(), 3600 * COIL_SEC, noop,
                                NULL, NULL);
}

static void test_run_timer_left(void **state)
{
    (void)state;
    coil_test_result_t r;
    assert_int_equal(coil_test_run(leaves_timer, NULL, NULL, &r),
                     -ENOTEMPTY);
    assert_int_equal(r.tasks_left, 0);
    assert_int_equal(r.timers_left, 1);
    assert_non_null(strstr(r.message, "1 timer pending"));
}

static void again(void *arg)
{
    int *runs = arg;
    (*runs)++;
    (void)coil_loop_call_soon(coil_running_loop(), again, arg, NULL);
}

static void once(void *arg)
{
    (*(int *)arg)++;
}

/* A callback that schedules itself for ever: left behind. */
static int leaves_chain(void *arg)
{
    return coil_loop_call_soon(coil_running_loop(), again, arg, NULL);
}

/* One callback still to run, one cancelled: both settle. */
static int leaves_settling(void *arg)
{
    coil_loop_t *loop = coil_running_loop();
    coil_handle_t *h;
    int err = coil_loop_call_soon(loop, once, arg, NULL);
    if (!err && !(err = coil_loop_call_soon(loop, once, arg, &h))) {
        coil_handle_cancel(h);
        coil_handle_unref(h);
    }
    return err;
}

static void test_run_callbacks_left(void **state)
{
    (void)state;
    coil_test_result_t r;
    int runs = 0;
    assert_int_equal(coil_test_run(leaves_chain, &runs, NULL, &r),
                     -ENOTEMPTY);
    assert_int_equal(r.callbacks_left, 1);
    assert_true(runs >= 100);
    assert_non_null(strstr(r.message, "1 callback pending"));

    runs = 0;
    assert_int_equal(coil_test_run(leaves_settling, &runs, NULL, &r), 0);
    assert_int_equal(r.callbacks_left, 0);
    assert_int_equal(runs, 1);
}

static int leaks_future(void *arg)
{
    coil_future_t **f = arg;
    return coil_future_new(coil_running_loop(), f);
}

static void test_run_allocation_left(void **state)
{
    (void)state;
    coil_future_t *f = NULL;
    coil_test_result_t r;
    assert_int_equal(coil_test_run(leaks_future, &f, NULL, &r), -ENOTEMPTY);
    assert_true(r.allocations_left >= 1); /* the future, its loop */
    assert_non_null(strstr(r.message, "not freed"));
    coil_future_unref(f); /* the loop's memory goes with it */
    assert_int_equal(test_alloc_live(), 0);
}

static int leaks_fds(void *arg)
{
    int *fds = arg;
    return pipe(fds) == 0 ? 0 : -errno;
}

static void test_run_fd_left(void **state)
{
    (void)state;
    int fds[2] = {-1, -1};
    coil_test_result_t r;
    assert_int_equal(coil_test_run(leaks_fds, fds, NULL, &r), -ENOTEMPTY);
    assert_int_equal(r.fds_left, 2);
    assert_non_null(strstr(r.message, "2 fds not closed"));
    close(fds[0]);
    close(fds[1]);
}

static int fails_quietly(void *arg)
{
    (void)arg;
    return -EIO;
}

static int drops_failed_task(void *arg)
{
    (void)arg;
    /* Nobody holds or awaits it: its error goes to the exception
     * handler, in any mode. */
    int err = coil_task_spawn(coil_running_loop(), fails_quietly, NULL,
                              NULL);
    return err ? err : coil_sleep(COIL_MSEC);
}

static int drops_failed_future(void *arg)
{
    (void)arg;
    coil_future_t *f;
    int err = coil_future_new(coil_running_loop(), &f);
    if (err)
        return err;
    coil_future_set_error(f, -ECONNRESET);
    coil_future_unref(f); /* unread: debug mode reports it */
    return 0;
}

static void test_run_reports(void **state)
{
    (void)state;
    test_allow_reports("failed and nobody awaited it");
    test_allow_reports("without anyone reading the error");
    coil_test_result_t r;
    assert_int_equal(coil_test_run(drops_failed_task, NULL, NULL, &r),
                     -ENOTEMPTY);
    assert_int_equal(r.reports, 1);
    assert_non_null(strstr(r.first_report, "failed and nobody awaited it"));

    /* Only debug mode sees a future dropped unread (COIL_DEBUG=1 turns
     * it on for every loop, the fixture's too). */
    coil_loop_t *probe;
    assert_int_equal(coil_loop_new(&probe), 0);
    bool env_debug = coil_loop_debug(probe);
    coil_loop_unref(probe);
    assert_int_equal(coil_test_run(drops_failed_future, NULL, NULL, &r),
                     env_debug ? -ENOTEMPTY : 0);
    coil_test_options_t o = {.debug = true};
    assert_int_equal(coil_test_run(drops_failed_future, NULL, &o, &r),
                     -ENOTEMPTY);
    assert_int_equal(r.reports, 1);
    assert_non_null(strstr(r.message, "without anyone reading the error"));
}

static int waits_forever(void *arg)
{
    (void)arg;
    coil_future_t *f;
    int err = coil_future_new(coil_running_loop(), &f);
    if (err)
        return err;
    err = coil_await(f, NULL);
    coil_future_unref(f);
    return err;
}

static void test_run_timeout(void **state)
{
    (void)state;
    /* A 30 s limit on the virtual clock: the run jumps there at once. */
    coil_test_options_t o = {.virtual_clock = true,
                             .timeout_ns = 30 * COIL_SEC};
    coil_test_result_t r;
    assert_int_equal(coil_test_run(waits_forever, NULL, &o, &r), -ETIMEDOUT);
    assert_int_equal(r.outcome, -ECANCELED);
    assert_non_null(strstr(r.message, "the body ran out of time"));
    assert_int_equal(r.allocations_left, 0);
}

/* A body, or a task it left, that ignores every cancel: given up on
 * (abandoned with the loop), never a hang. */
static int stubborn(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        (void)coil_sleep(COIL_SEC);
    return 0;
}

static int leaves_stubborn(void *arg)
{
    (void)arg;
    int err = coil_task_spawn(coil_running_loop(), stubborn, NULL, NULL);
    return err ? err : coil_yield();
}

static void test_run_ignores_cancel(void **state)
{
    (void)state;
    test_allow_reports("destroyed while pending");
    test_allow_reports("loop closed with");
    coil_test_options_t o = {.virtual_clock = true,
                             .timeout_ns = 5 * COIL_SEC};
    coil_test_result_t r;
    assert_int_equal(coil_test_run(stubborn, NULL, &o, &r), -ETIMEDOUT);
    assert_non_null(strstr(r.message, "1 task ignored cancellation and was "
                                      "abandoned"));
    assert_int_equal(r.allocations_left, 0);
    o.timeout_ns = 0;
    assert_int_equal(coil_test_run(leaves_stubborn, NULL, &o, &r),
                     -ENOTEMPTY);
    assert_int_equal(r.tasks_left, 1);
    assert_non_null(strstr(r.message, "ignored cancellation"));
    assert_int_equal(r.allocations_left, 0);
}

struct clock_case {
    int64_t before, after_sleep, after_yields;
};

static int sleeps_a_day(void *arg)
{
    struct clock_case *c = arg;
    coil_loop_t *loop = coil_running_loop();
    c->before = coil_loop_time(loop);
    int err = coil_sleep(24 * 3600 * COIL_SEC);
    c->after_sleep = coil_loop_time(loop);
    /* Runnable all along: the clock must not move. */
    for (int i = 0; i < 1000 && !err; i++)
        err = coil_yield();
    c->after_yields = coil_loop_update_time(loop);
    return err;
}

static void test_virtual_clock(void **state)
{
    (void)state;
    struct clock_case c = {0};
    coil_test_options_t o = {.virtual_clock = true,
                             .timeout_ns = 48 * 3600 * COIL_SEC};
    coil_test_result_t r;
    assert_int_equal(coil_test_run(sleeps_a_day, &c, &o, &r), 0);
    assert_true(c.after_sleep - c.before >= 24 * 3600 * COIL_SEC);
    assert_true(c.after_sleep - c.before < 24 * 3600 * COIL_SEC + COIL_SEC);
    assert_int_equal(c.after_yields, c.after_sleep);

    /* Told to move, it moves; back to the real clock afterwards. */
    coil_test_clock_virtual(true, false);
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    int64_t a = coil_loop_update_time(loop);
    coil_test_clock_advance(5 * COIL_SEC);
    coil_test_clock_advance(-1); /* ignored */
    assert_int_equal(coil_loop_update_time(loop) - a, 5 * COIL_SEC);
    coil_test_clock_virtual(false, false);
    coil_loop_unref(loop);
}

/* ------------------------------------------------------------------ */
/* Faults                                                               */
/* ------------------------------------------------------------------ */

static void test_alloc_faults(void **state)
{
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    long live = coil_test_alloc_live();
    assert_true(live > 0);
    coil_future_t *f;
    coil_test_alloc_fail_after(1);
    assert_false(coil_test_alloc_failed());
    assert_int_equal(coil_future_new(loop, &f), -ENOMEM);
    assert_true(coil_test_alloc_failed());
    assert_int_equal(coil_test_alloc_live(), live);
    /* Once: the next one works. */
    assert_int_equal(coil_future_new(loop, &f), 0);
    coil_future_unref(f);
    coil_test_alloc_fail_after(0);

    /* At random: about the share asked for, the same ones again under
     * the same seed, none at 0, every one at a million. */
    bool a[400], b[400];
    for (int round = 0; round < 2; round++) {
        bool *fails = round ? b : a;
        assert_int_equal(coil_test_alloc_fail_random(250000, 42), 0);
        for (int i = 0; i < 400; i++) {
            void *p = coil__malloc(16); /* coil's allocator itself */
            fails[i] = p == NULL;
            coil__free(p);
        }
    }
    int failed = 0;
    for (int i = 0; i < 400; i++)
        failed += a[i];
    assert_true(failed > 50 && failed < 150);
    assert_memory_equal(a, b, sizeof(a));
    assert_true(coil_test_alloc_failed());
    assert_int_equal(coil_test_alloc_fail_random(1000000, 1), 0);
    assert_null(coil__malloc(16));
    assert_int_equal(coil_test_alloc_fail_random(0, 1), 0);
    void *p = coil__malloc(16);
    assert_non_null(p);
    coil__free(p);
    assert_int_equal(coil_test_alloc_fail_random(1000001, 1), -EINVAL);
    assert_int_equal(coil_test_alloc_fail_random(1000000, 1), 0);
    coil_test_reset_faults(); /* ends it too */
    p = coil__malloc(16);
    assert_non_null(p);
    coil__free(p);
    coil_loop_unref(loop);
    assert_int_equal(coil_test_alloc_live(), 0);
}

/* A body that hits an allocation fault, and one that leaves a fault
 * armed: the first is still known after the run, the second is cleared
 * when the body returns (the fixture's cleanup meets none). */
static int hits_alloc_fault(void *arg)
{
    (void)arg;
    coil_test_alloc_fail_after(1);
    coil_future_t *f;
    int err = coil_future_new(coil_running_loop(), &f);
    if (!err)
        coil_future_unref(f);
    void *p = coil__malloc(8); /* the pool may have had a future */
    coil__free(p);
    return 0;
}

static int leaves_fault_armed(void *arg)
{
    (void)arg;
    coil_test_alloc_fail_after(1);
    coil_test_fail(COIL_TEST_POLL, 1, 0, -EIO);
    return 0;
}

static void test_faults_end_with_body(void **state)
{
    (void)state;
    coil_test_result_t r;
    assert_int_equal(coil_test_run(hits_alloc_fault, NULL, NULL, &r), 0);
    assert_true(coil_test_alloc_failed());
    int err = coil_test_run(leaves_fault_armed, NULL, NULL, &r);
    if (err)
        fail_msg("%s: %s", coil_err_name(err), r.message);
    assert_false(coil_test_alloc_failed());
}

static void test_op_faults(void **state)
{
    (void)state;
    coil_test_reset_faults();
    assert_int_equal(coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -EMFILE), 0);
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), -EMFILE);
    assert_int_equal(coil_test_calls(COIL_TEST_WAKEUP), 1);
    assert_int_equal(coil_loop_new(&loop), 0); /* once */
    coil_loop_unref(loop);
    /* Every call from the second on. */
    assert_int_equal(coil_test_fail(COIL_TEST_WAKEUP, 2, 0, -ENFILE), 0);
    coil_loop_t *a, *b, *c;
    assert_int_equal(coil_loop_new(&a), 0);
    assert_int_equal(coil_loop_new(&b), -ENFILE);
    assert_int_equal(coil_loop_new(&c), -ENFILE);
    assert_int_equal(coil_test_calls(COIL_TEST_WAKEUP), 3);
    coil_test_reset_faults();
    assert_int_equal(coil_test_calls(COIL_TEST_WAKEUP), 0);
    assert_int_equal(coil_loop_new(&b), 0);
    coil_loop_unref(a);
    coil_loop_unref(b);
}

/* ------------------------------------------------------------------ */
/* The seed                                                             */
/* ------------------------------------------------------------------ */

struct reads {
    int fd;
    ssize_t len[16];
};

static int read_sixteen(void *arg)
{
    struct reads *r = arg;
    char buf[4096];
    for (int i = 0; i < 16; i++) {
        r->len[i] = coil_sock_recv(r->fd, buf, sizeof(buf));
        if (r->len[i] <= 0)
            return (int)r->len[i];
    }
    return 0;
}

/* The lengths 16 reads of 4 KiB get from 64 KiB already there. */
static void sixteen_reads(unsigned long seed, bool chaos, ssize_t out[16])
{
    int sv[2];
    test_socketpair(sv);
    static char data[65536];
    size_t off = 0;
    while (off < sizeof(data)) {
        ssize_t w = write(sv[0], data + off, sizeof(data) - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    coil_test_seed(seed, chaos);
    struct reads r = {.fd = sv[1]};
    assert_int_equal(coil_test_run(read_sixteen, &r, NULL, NULL), 0);
    memcpy(out, r.len, sizeof(r.len));
    close(sv[0]);
    close(sv[1]);
}

static void test_seed_replays(void **state)
{
    (void)state;
    unsigned long shuffle0 = coil__shuffle_seed(), chaos0 = coil__chaos_seed();
    ssize_t a[16], b[16], c[16], off[16];
    sixteen_reads(7, true, a);
    sixteen_reads(7, true, b);
    sixteen_reads(8, true, c);
    sixteen_reads(0, false, off);
    coil__seeds_set(shuffle0, chaos0, 0); /* the environment's again */
    /* The same seed, the same short reads; another seed, others. */
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, c, sizeof(a));
    bool short_read = false;
    for (int i = 0; i < 16; i++) {
        assert_true(a[i] >= 1 && a[i] <= 4096);
        short_read |= a[i] < 4096;
        assert_int_equal(off[i], 4096); /* no chaos: every read full */
    }
    assert_true(short_read);
}

/* ------------------------------------------------------------------ */
/* Arguments                                                            */
/* ------------------------------------------------------------------ */

static int nested(void *arg)
{
    int *r = arg;
    *r = coil_test_run(clean_body, &(int){0}, NULL, NULL);
    return 0;
}

/* coil_explore_step: each run names its k, and the disturbance fired. */
struct steps {
    int runs;
    int k[16];
    bool fired[16];
    coil_explore_mode_t mode[16];
};

static int three_sleeps(void *arg)
{
    coil_explore_t *ex = arg;
    int err = coil_explore_scope_begin(ex);
    for (int i = 0; i < 3 && !err; i++)
        err = coil_sleep(COIL_MSEC);
    return coil_explore_scope_end(ex, err);
}

static void steps_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    struct steps *st = arg;
    coil_task_t *t;
    if (coil_task_spawn(loop, three_sleeps, ex, &t) != 0)
        return coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, t);
    coil_explore_run(ex, loop);
    (void)coil_future_result(coil_task_future(t), NULL); /* read: a cancel
                                                            or timeout */
    coil_task_unref(t);
    if (st->runs < 16) {
        st->mode[st->runs] = coil_explore_mode(ex);
        st->k[st->runs] = coil_explore_step(ex, &st->fired[st->runs]);
    }
    st->runs++;
}

static void test_explore_step(void **state)
{
    (void)state;
    struct steps st = {0};
    coil_explore_result_t res;
    assert_int_equal(coil_explore("steps", steps_scenario, &st, &res), 0);
    assert_int_equal(res.suspensions, 3);
    assert_int_equal(st.runs, 10); /* undisturbed, then 3 modes x 3 */
    assert_int_equal(st.mode[0], COIL_EXPLORE_NONE);
    assert_int_equal(st.k[0], 0);
    assert_false(st.fired[0]);
    for (int i = 1; i < 10; i++) {
        assert_int_not_equal(st.mode[i], COIL_EXPLORE_NONE);
        assert_int_equal(st.k[i], (i - 1) % 3 + 1);
        assert_true(st.fired[i]);
    }
}

/* A thread that cannot be started, through the kit: to_thread on a
 * fresh executor says -EAGAIN (its job never ran), then works. */
static int job_seven(void *arg)
{
    (void)arg;
    return 7;
}

static int thread_refused_body(void *arg)
{
    int *r = arg;
    coil_executor_t *ex;
    int err = coil_executor_new(NULL, &ex);
    if (err)
        return err;
    coil_test_fail(COIL_TEST_THREAD, 1, 1, -EAGAIN);
    r[0] = coil_executor_run(ex, job_seven, NULL, NULL);
    r[1] = (int)coil_test_calls(COIL_TEST_THREAD);
    r[2] = coil_executor_run(ex, job_seven, NULL, NULL);
    err = coil_executor_shutdown(ex, COIL_NO_TIMEOUT);
    coil_executor_unref(ex);
    return err;
}

static void test_fail_thread(void **state)
{
    (void)state;
    int r[3] = {0};
    coil_test_result_t res;
    assert_int_equal(coil_test_run(thread_refused_body, r, NULL, &res), 0);
    assert_int_equal(r[0], -EAGAIN);
    assert_int_equal(r[1], 1);
    assert_int_equal(r[2], 7);
}

static void test_arguments(void **state)
{
    (void)state;
    coil_test_result_t r;
    assert_int_equal(coil_test_run(NULL, NULL, NULL, &r), -EINVAL);
    int inner = 0;
    assert_int_equal(coil_test_run(nested, &inner, NULL, NULL), 0);
    assert_int_equal(inner, -EBUSY);
    assert_int_equal(coil_test_fail(COIL_TEST_OP_COUNT, 1, 1, -EIO),
                     -EINVAL);
    assert_int_equal(coil_test_fail((coil_test_op_t)-1, 1, 1, -EIO),
                     -EINVAL);
    assert_int_equal(coil_test_fail(COIL_TEST_RECV, 0, 1, -EIO), -EINVAL);
    assert_int_equal(coil_test_fail(COIL_TEST_RECV, 1, 1, 5), -EINVAL);
    assert_int_equal(coil_test_fail(COIL_TEST_RECV, 1, 1, 0), -EINVAL);
    assert_int_equal(coil_test_calls(COIL_TEST_OP_COUNT), 0);
    coil_test_reset_faults();
    /* The explorer's. */
    coil_explore_result_t er = {.runs = 5};
    assert_int_equal(coil_explore("x", NULL, NULL, &er), -EINVAL);
    assert_int_equal(er.runs, 0);
    coil_explore_target(NULL, NULL);
    coil_explore_run(NULL, NULL);
    coil_explore_fail(NULL, "x");
    assert_int_equal(coil_explore_scope_begin(NULL), -EINVAL);
    assert_int_equal(coil_explore_scope_end(NULL, 0), -EINVAL);
    assert_int_equal(coil_explore_mode(NULL), COIL_EXPLORE_NONE);
    bool fired = true;
    assert_int_equal(coil_explore_step(NULL, &fired), 0);
    assert_false(fired);
    assert_null(coil_explore_mode_name((coil_explore_mode_t)9));
    assert_string_equal(coil_explore_mode_name(COIL_EXPLORE_TIMEOUT),
                        "timeout");
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_run_clean),
        TEST_NOLOOP(test_run_body_fails),
        TEST_NOLOOP(test_run_task_left),
        TEST_NOLOOP(test_run_callbacks_left),
        TEST_NOLOOP(test_run_timer_left),
        TEST_NOLOOP(test_run_allocation_left),
        TEST_NOLOOP(test_run_fd_left),
        TEST_NOLOOP(test_run_reports),
        TEST_NOLOOP(test_run_timeout),
        TEST_NOLOOP(test_run_ignores_cancel),
        TEST_NOLOOP(test_virtual_clock),
        TEST_NOLOOP(test_alloc_faults),
        TEST_NOLOOP(test_faults_end_with_body),
        TEST_NOLOOP(test_op_faults),
        TEST_NOLOOP(test_seed_replays),
        TEST_NOLOOP(test_explore_step),
        TEST_NOLOOP(test_arguments),
        TEST_NOLOOP(test_fail_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
