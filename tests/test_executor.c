/* SPDX-License-Identifier: MIT */
/*
 * test_executor.c - executors (coil/executor.h): to_thread's result and
 * error while the loop stays live; a pool's thread limit; a queued job
 * dropped by a cancel (never run, disposed at once) and a running one
 * flagged (coil_job_cancelled, the waiter released at once, the result
 * disposed when it returns); a future dropped without being awaited;
 * shutdown (queued jobs fail with -ESHUTDOWN, running ones waited for, a
 * deadline, later submissions refused), from a task and from a thread;
 * the queue bound; a loop closed while jobs run; the default executor
 * (made once, replaced, shut down by coil_run, which waits for its
 * jobs); run_task_threadsafe (result, timeout cancelling the task, on the
 * loop's own thread, a closed loop); completing a future from a thread;
 * bad arguments and allocation failures.
 *
 * Jobs block on gates the test opens (a mutex and condition), never on
 * time. Tasks record, the assertions run on the main stack. Runs under
 * TSan too.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "helpers.h"

/* Close the fixture's loop first: its default executor goes with it, and
 * the teardown then waits for the workers (test_wait_executor_threads). */
static int teardown_threads(void **state)
{
    struct fixture *f = *state;
    coil_loop_close(f->loop);
    return test_teardown(state);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, teardown_threads)
#define T_NOLOOP TEST_NOLOOP

/* A gate a job waits at until the test opens it. */
struct gate {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool open;
    int arrived; /* jobs that reached the gate */
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->m, NULL);
    pthread_cond_init(&g->c, NULL);
    g->open = false;
    g->arrived = 0;
}

static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->c);
    pthread_mutex_destroy(&g->m);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->m);
    g->open = true;
    pthread_cond_broadcast(&g->c);
    pthread_mutex_unlock(&g->m);
}

static void gate_pass(struct gate *g)
{
    pthread_mutex_lock(&g->m);
    g->arrived++;
    pthread_cond_broadcast(&g->c);
    while (!g->open)
        pthread_cond_wait(&g->c, &g->m);
    pthread_mutex_unlock(&g->m);
}

/* Block (the test's thread) until n jobs reached the gate. */
static void gate_wait_arrived(struct gate *g, int n)
{
    pthread_mutex_lock(&g->m);
    while (g->arrived < n)
        pthread_cond_wait(&g->c, &g->m);
    pthread_mutex_unlock(&g->m);
}

/* What a job sees and does. */
struct jobarg {
    struct gate *gate;  /* wait here first, if set */
    int ret;            /* what to return */
    atomic_bool ran;
    atomic_bool saw_cancel;
    bool poll_cancel;   /* spin until coil_job_cancelled() */
    atomic_int *inside, *most; /* concurrency count */
    atomic_int disposed;       /* dispose calls */
    atomic_int disposed_result;
};

static int job(void *arg)
{
    struct jobarg *a = arg;
    atomic_store(&a->ran, true);
    if (a->inside) {
        int n = atomic_fetch_add(a->inside, 1) + 1;
        int m = atomic_load(a->most);
        while (n > m && !atomic_compare_exchange_weak(a->most, &m, n))
            ;
    }
    if (a->gate)
        gate_pass(a->gate);
    if (a->poll_cancel) {
        while (!coil_job_cancelled()) {
            struct timespec us = {0, 100000};
            nanosleep(&us, NULL);
        }
        atomic_store(&a->saw_cancel, true);
    }
    if (a->inside)
        atomic_fetch_sub(a->inside, 1);
    return a->ret;
}

static void dispose(void *arg, int result)
{
    struct jobarg *a = arg;
    atomic_store(&a->disposed_result, result);
    atomic_fetch_add(&a->disposed, 1);
}

/* ------------------------------------------------------------------ */
/* to_thread                                                            */
/* ------------------------------------------------------------------ */

struct ticker {
    int ticks;
    bool stop;
};

static int tick_body(void *arg)
{
    struct ticker *tk = arg;
    while (!tk->stop) {
        coil_sleep(COIL_MSEC);
        tk->ticks++;
    }
    return 0;
}

struct to_thread_ctx {
    struct jobarg ok, bad;
    int r_ok, r_bad;
    struct ticker tk;
    int ticks_during;
};

static int slow_job(void *arg)
{
    struct timespec ms = {0, 30 * 1000000};
    nanosleep(&ms, NULL);
    return job(arg);
}

static int to_thread_body(void *arg)
{
    struct to_thread_ctx *c = arg;
    coil_task_t *t = test_spawn(coil_running_loop(), tick_body, &c->tk);
    c->r_ok = coil_to_thread(slow_job, &c->ok, dispose);
    c->ticks_during = c->tk.ticks;
    c->r_bad = coil_to_thread(job, &c->bad, dispose);
    c->tk.stop = true;
    test_join(t);
    return 0;
}

static void test_to_thread_result_and_error(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct to_thread_ctx c = {0};
    c.ok.ret = 42;
    c.bad.ret = -EIO;
    assert_int_equal(test_run_task(loop, to_thread_body, &c), 0);
    assert_int_equal(c.r_ok, 42);
    assert_int_equal(c.r_bad, -EIO);
    assert_true(atomic_load(&c.ok.ran));
    assert_true(c.ticks_during > 0); /* the loop went on meanwhile */
    assert_int_equal(atomic_load(&c.ok.disposed), 0);
    assert_int_equal(atomic_load(&c.bad.disposed), 0);
    coil_executor_t *ex1, *ex2;
    assert_int_equal(coil_loop_default_executor(loop, &ex1), 0);
    assert_int_equal(coil_loop_default_executor(loop, &ex2), 0);
    assert_ptr_equal(ex1, ex2);
}

/* ------------------------------------------------------------------ */
/* A pool's limit                                                       */
/* ------------------------------------------------------------------ */

struct limit_ctx {
    coil_executor_t *ex;
    struct jobarg a[6];
    int r[6];
    int index[6];
};

static int limit_body(void *arg)
{
    int *idx = arg;
    struct limit_ctx *c = (struct limit_ctx *)((char *)(idx - *idx) -
                                               offsetof(struct limit_ctx,
                                                        index));
    c->r[*idx] = coil_executor_run(c->ex, slow_job, &c->a[*idx], dispose);
    return 0;
}

static void test_executor_thread_limit(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct limit_ctx c = {0};
    coil_executor_options_t o = {.max_threads = 2};
    assert_int_equal(coil_executor_new(&o, &c.ex), 0);
    atomic_int inside = 0, most = 0;
    coil_task_t *t[6];
    for (int i = 0; i < 6; i++) {
        c.index[i] = i;
        c.a[i].ret = i;
        c.a[i].inside = &inside;
        c.a[i].most = &most;
        assert_int_equal(coil_task_spawn(loop, limit_body, &c.index[i], &t[i]),
                         0);
    }
    for (int i = 0; i < 6; i++) {
        test_run_until(loop, coil_task_future(t[i]));
        coil_task_unref(t[i]);
    }
    for (int i = 0; i < 6; i++)
        assert_int_equal(c.r[i], i);
    assert_true(atomic_load(&most) >= 1);
    assert_true(atomic_load(&most) <= 2);
    assert_int_equal(coil_executor_shutdown(c.ex, COIL_NO_TIMEOUT), 0);
    coil_executor_unref(c.ex);
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                         */
/* ------------------------------------------------------------------ */

struct cancel_ctx {
    coil_executor_t *ex;
    struct gate gate;
    struct jobarg busy, queued, running;
    int r_busy, r_queued, r_running;
};

static int run_busy(void *arg)
{
    struct cancel_ctx *c = arg;
    c->r_busy = coil_executor_run(c->ex, job, &c->busy, dispose);
    return 0;
}

static int run_queued(void *arg)
{
    struct cancel_ctx *c = arg;
    c->r_queued = coil_executor_run(c->ex, job, &c->queued, dispose);
    return 0;
}

/* One worker: a job holds it at the gate; a second job waits in the
 * queue and its task is cancelled: it never runs, dispose gets -ECANCELED
 * at once. */
static void test_executor_cancel_queued(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct cancel_ctx c = {0};
    gate_init(&c.gate);
    coil_executor_options_t o = {.max_threads = 1};
    assert_int_equal(coil_executor_new(&o, &c.ex), 0);
    c.busy.gate = &c.gate;
    c.busy.ret = 1;
    c.queued.ret = 2;
    coil_task_t *tb, *tq;
    assert_int_equal(coil_task_spawn(loop, run_busy, &c, &tb), 0);
    assert_int_equal(coil_task_spawn(loop, run_queued, &c, &tq), 0);
    test_run_bounded(loop, COIL_MSEC);
    gate_wait_arrived(&c.gate, 1);
    assert_int_equal(coil_task_cancel(tq), 0);
    test_run_until(loop, coil_task_future(tq));
    assert_int_equal(c.r_queued, -ECANCELED);
    assert_int_equal(atomic_load(&c.queued.disposed), 1);
    assert_int_equal(atomic_load(&c.queued.disposed_result), -ECANCELED);
    gate_open(&c.gate);
    test_run_until(loop, coil_task_future(tb));
    assert_int_equal(c.r_busy, 1);
    assert_int_equal(coil_executor_shutdown(c.ex, COIL_NO_TIMEOUT), 0);
    assert_false(atomic_load(&c.queued.ran));
    assert_int_equal(atomic_load(&c.busy.disposed), 0);
    coil_task_unref(tb);
    coil_task_unref(tq);
    coil_executor_unref(c.ex);
    gate_destroy(&c.gate);
}

static int run_running(void *arg)
{
    struct cancel_ctx *c = arg;
    c->r_running = coil_executor_run(c->ex, job, &c->running, dispose);
    return 0;
}

/* A running job: the waiter is released at once; the job sees the flag,
 * returns, and its result goes to dispose. */
static void test_executor_cancel_running(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct cancel_ctx c = {0};
    gate_init(&c.gate);
    assert_int_equal(coil_executor_new(NULL, &c.ex), 0);
    c.running.poll_cancel = true;
    c.running.ret = 7;
    c.running.gate = &c.gate;
    gate_open(&c.gate); /* arrival is still counted */
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, run_running, &c, &t), 0);
    test_run_bounded(loop, COIL_MSEC);
    gate_wait_arrived(&c.gate, 1); /* it runs */
    assert_int_equal(coil_task_cancel(t), 0);
    test_run_until(loop, coil_task_future(t));
    assert_int_equal(c.r_running, -ECANCELED);
    assert_int_equal(coil_executor_shutdown(c.ex, COIL_NO_TIMEOUT), 0);
    assert_true(atomic_load(&c.running.saw_cancel));
    /* The job's result came after the loop stopped running: the loop
     * delivers it to dispose when it runs again. */
    test_run_bounded(loop, COIL_MSEC);
    assert_int_equal(atomic_load(&c.running.disposed), 1);
    assert_int_equal(atomic_load(&c.running.disposed_result), 7);
    coil_task_unref(t);
    coil_executor_unref(c.ex);
    gate_destroy(&c.gate);
}

/* A future dropped without being awaited: the job runs, its result is
 * disposed of. */
static void test_executor_future_dropped(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_executor_t *ex;
    assert_int_equal(coil_executor_new(NULL, &ex), 0);
    struct gate g;
    gate_init(&g);
    gate_open(&g);
    struct jobarg a = {.ret = 5, .gate = &g};
    coil_future_t *fut;
    assert_int_equal(coil_executor_submit(ex, loop, job, &a, dispose, &fut), 0);
    coil_future_unref(fut);
    gate_wait_arrived(&g, 1); /* started: a shutdown waits for it */
    assert_int_equal(coil_executor_shutdown(ex, COIL_NO_TIMEOUT), 0);
    test_run_bounded(loop, COIL_MSEC); /* the node comes home */
    assert_true(atomic_load(&a.ran));
    assert_int_equal(atomic_load(&a.disposed), 1);
    assert_int_equal(atomic_load(&a.disposed_result), 5);
    coil_executor_unref(ex);
    gate_destroy(&g);
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                             */
/* ------------------------------------------------------------------ */

struct shut_ctx {
    coil_executor_t *ex;
    struct gate gate;
    struct jobarg busy, queued;
    int r_busy, r_queued, r_shut_timeout, r_shut, r_after;
};

static int sh_busy(void *arg)
{
    struct shut_ctx *c = arg;
    c->r_busy = coil_executor_run(c->ex, job, &c->busy, dispose);
    return 0;
}

static int sh_queued(void *arg)
{
    struct shut_ctx *c = arg;
    c->r_queued = coil_executor_run(c->ex, job, &c->queued, dispose);
    return 0;
}

static int sh_shutdown(void *arg)
{
    struct shut_ctx *c = arg;
    /* The busy job is held at the gate: the deadline passes. */
    c->r_shut_timeout = coil_executor_shutdown(c->ex, 5 * COIL_MSEC);
    gate_open(&c->gate);
    c->r_shut = coil_executor_shutdown(c->ex, COIL_NO_TIMEOUT);
    struct jobarg late = {.ret = 1};
    c->r_after = coil_executor_run(c->ex, job, &late, dispose);
    return 0;
}

static void test_executor_shutdown(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct shut_ctx c = {0};
    gate_init(&c.gate);
    coil_executor_options_t o = {.max_threads = 1};
    assert_int_equal(coil_executor_new(&o, &c.ex), 0);
    c.busy.gate = &c.gate;
    c.busy.ret = 3;
    coil_task_t *t[3];
    assert_int_equal(coil_task_spawn(loop, sh_busy, &c, &t[0]), 0);
    assert_int_equal(coil_task_spawn(loop, sh_queued, &c, &t[1]), 0);
    test_run_bounded(loop, COIL_MSEC);
    gate_wait_arrived(&c.gate, 1);
    assert_int_equal(coil_task_spawn(loop, sh_shutdown, &c, &t[2]), 0);
    for (int i = 0; i < 3; i++) {
        test_run_until(loop, coil_task_future(t[i]));
        coil_task_unref(t[i]);
    }
    assert_int_equal(c.r_shut_timeout, -ETIMEDOUT);
    assert_int_equal(c.r_shut, 0);
    assert_int_equal(c.r_busy, 3);           /* ran to the end */
    assert_int_equal(c.r_queued, -ESHUTDOWN); /* never started */
    assert_false(atomic_load(&c.queued.ran));
    assert_int_equal(atomic_load(&c.queued.disposed), 0); /* caller's arg */
    assert_int_equal(c.r_after, -ESHUTDOWN);
    coil_executor_unref(c.ex);
    gate_destroy(&c.gate);
}

/* Outside a task: blocks the calling thread. */
static void test_executor_shutdown_from_thread(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_executor_t *ex;
    assert_int_equal(coil_executor_new(NULL, &ex), 0);
    struct gate g;
    gate_init(&g);
    gate_open(&g);
    struct jobarg a = {.ret = 9, .gate = &g};
    coil_future_t *fut;
    assert_int_equal(
        coil_executor_submit(ex, loop, slow_job, &a, dispose, &fut), 0);
    gate_wait_arrived(&g, 1);
    /* Not in a task: blocks until the job has returned. */
    assert_int_equal(coil_executor_shutdown(ex, COIL_NO_TIMEOUT), 0);
    assert_true(atomic_load(&a.ran));
    assert_int_equal(test_run_until(loop, fut), 0);
    void *v;
    assert_int_equal(coil_future_result(fut, &v), 0);
    assert_int_equal((int)(intptr_t)v, 9);
    coil_future_unref(fut);
    coil_executor_unref(ex);
    gate_destroy(&g);
}

static void test_executor_queue_bound_and_args(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct gate g;
    gate_init(&g);
    coil_executor_options_t o = {.max_threads = 1, .max_queued = 1};
    coil_executor_t *ex;
    assert_int_equal(coil_executor_new(&o, &ex), 0);
    struct jobarg a = {.gate = &g}, b = {0}, c = {0};
    coil_future_t *fa, *fb, *fc = (coil_future_t *)1;
    assert_int_equal(coil_executor_submit(ex, loop, job, &a, dispose, &fa), 0);
    gate_wait_arrived(&g, 1); /* a runs: the queue is empty again */
    assert_int_equal(coil_executor_submit(ex, loop, job, &b, dispose, &fb), 0);
    assert_int_equal(coil_executor_submit(ex, loop, job, &c, dispose, &fc),
                     -EAGAIN);
    assert_null(fc);
    /* Bad arguments. */
    assert_int_equal(coil_executor_submit(NULL, loop, job, &c, NULL, &fc),
                     -EINVAL);
    assert_int_equal(coil_executor_submit(ex, loop, NULL, &c, NULL, &fc),
                     -EINVAL);
    assert_int_equal(coil_executor_submit(ex, loop, job, &c, NULL, NULL),
                     -EINVAL);
    assert_int_equal(coil_executor_submit(ex, NULL, job, &c, NULL, &fc),
                     -EINVAL); /* no loop runs here */
    assert_int_equal(coil_executor_run(ex, job, &c, NULL), -EPERM);
    assert_int_equal(coil_to_thread(job, &c, NULL), -EPERM);
    assert_int_equal(coil_executor_new(NULL, NULL), -EINVAL);
    assert_int_equal(coil_executor_shutdown(NULL, 0), -EINVAL);
    assert_false(coil_job_cancelled());
    coil_executor_t *d;
    assert_int_equal(coil_loop_default_executor(NULL, &d), -EINVAL);
    assert_int_equal(coil_loop_default_executor(loop, NULL), -EINVAL);
    assert_int_equal(coil_loop_set_default_executor(NULL, ex), -EINVAL);
    assert_null(coil_executor_ref(NULL));
    coil_executor_unref(NULL);
    gate_open(&g);
    assert_int_equal(test_run_until(loop, fa), 0);
    assert_int_equal(test_run_until(loop, fb), 0);
    coil_future_unref(fa);
    coil_future_unref(fb);
    coil_executor_unref(ex);
    gate_destroy(&g);
}

/* ------------------------------------------------------------------ */
/* Loops closing, default executors, coil_run                           */
/* ------------------------------------------------------------------ */

static void test_executor_loop_closed_while_running(void **state)
{
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct gate g;
    gate_init(&g);
    coil_executor_t *ex;
    assert_int_equal(coil_executor_new(NULL, &ex), 0);
    struct jobarg a = {.gate = &g, .ret = 4};
    coil_future_t *fut;
    assert_int_equal(coil_executor_submit(ex, loop, job, &a, dispose, &fut), 0);
    gate_wait_arrived(&g, 1);
    assert_int_equal(coil_loop_close(loop), 0);
    /* The future is cancelled; the job still runs. */
    assert_true(coil_future_cancelled(fut));
    gate_open(&g);
    assert_int_equal(coil_executor_shutdown(ex, COIL_NO_TIMEOUT), 0);
    assert_int_equal(atomic_load(&a.disposed), 1); /* by the worker */
    assert_int_equal(atomic_load(&a.disposed_result), 4);
    coil_future_unref(fut);
    coil_loop_unref(loop);
    coil_executor_unref(ex);
    gate_destroy(&g);
}

/* The loop closed while a task waits in to_thread: the task is
 * abandoned, the job ends on its own and disposes of arg; nothing of the
 * wait is left behind (the leak gate). */
static int closed_waiter(void *arg)
{
    return coil_to_thread(job, arg, dispose);
}

static void test_to_thread_loop_closed(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct exc_log ex = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &ex);
    struct gate g;
    gate_init(&g);
    struct jobarg a = {.gate = &g, .ret = 6};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, closed_waiter, &a, &t), 0);
    test_run_bounded(loop, COIL_MSEC);
    gate_wait_arrived(&g, 1);
    coil_task_unref(t);
    coil_loop_unref(loop); /* closes it: the default executor goes too */
    gate_open(&g);
    test_wait_executor_threads();
    assert_int_equal(atomic_load(&a.disposed), 1);
    assert_int_equal(atomic_load(&a.disposed_result), 6);
    gate_destroy(&g);
}

static void test_executor_default_replaced(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_executor_t *mine, *d;
    coil_executor_options_t o = {.max_threads = 1};
    assert_int_equal(coil_executor_new(&o, &mine), 0);
    assert_int_equal(coil_loop_set_default_executor(loop, mine), 0);
    assert_int_equal(coil_loop_default_executor(loop, &d), 0);
    assert_ptr_equal(d, mine);
    coil_executor_unref(mine); /* the loop holds its own */
    assert_int_equal(coil_loop_set_default_executor(loop, NULL), 0);
    assert_int_equal(coil_loop_default_executor(loop, &d), 0);
    assert_ptr_not_equal(d, NULL);
}

static atomic_bool run_job_started, run_job_finished;

static int long_job(void *arg)
{
    (void)arg;
    atomic_store(&run_job_started, true);
    struct timespec ms = {0, 50 * 1000000};
    nanosleep(&ms, NULL);
    atomic_store(&run_job_finished, true);
    return 0;
}

static int run_main(void *arg)
{
    (void)arg;
    coil_executor_t *ex;
    if (coil_loop_default_executor(coil_running_loop(), &ex))
        return -1;
    coil_future_t *fut;
    if (coil_executor_submit(ex, NULL, long_job, NULL, NULL, &fut))
        return -1;
    coil_future_unref(fut); /* not awaited: coil_run must wait for it */
    while (!atomic_load(&run_job_started)) /* running, not queued */
        coil_sleep(COIL_MSEC / 10);
    return 3;
}

static void test_executor_coil_run_waits(void **state)
{
    (void)state;
    atomic_store(&run_job_started, false);
    atomic_store(&run_job_finished, false);
    assert_int_equal(coil_run(run_main, NULL), 3);
    assert_true(atomic_load(&run_job_finished));
}

/* ------------------------------------------------------------------ */
/* From other threads                                                   */
/* ------------------------------------------------------------------ */

struct remote_ctx {
    coil_loop_t *loop;
    int r_ok, r_timeout, r_closed;
    bool cleaned;
    coil_future_t *fut;
    int set_r;
};

static int remote_ok(void *arg)
{
    (void)arg;
    coil_sleep(COIL_MSEC);
    return 11;
}

static int remote_forever(void *arg)
{
    struct remote_ctx *c = arg;
    int err = coil_sleep(3600 * COIL_SEC);
    c->cleaned = err == -ECANCELED;
    return err;
}

static void *remote_thread(void *arg)
{
    struct remote_ctx *c = arg;
    c->r_ok = coil_loop_run_task_threadsafe(c->loop, remote_ok, c,
                                            COIL_NO_TIMEOUT);
    c->r_timeout = coil_loop_run_task_threadsafe(c->loop, remote_forever, c,
                                                 20 * COIL_MSEC);
    c->set_r = coil_future_set_result_threadsafe(c->fut, (void *)77);
    return NULL;
}

static int deadlock_body(void *arg)
{
    struct remote_ctx *c = arg;
    return coil_loop_run_task_threadsafe(c->loop, remote_ok, c,
                                         COIL_NO_TIMEOUT);
}

static void test_run_task_threadsafe(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct remote_ctx c = {.loop = loop};
    assert_int_equal(coil_future_new(loop, &c.fut), 0);
    coil_future_ref(c.fut); /* handed to the thread */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, remote_thread, &c), 0);
    assert_int_equal(test_run_until(loop, c.fut), 0);
    void *v;
    assert_int_equal(coil_future_result(c.fut, &v), 0);
    assert_ptr_equal(v, (void *)77);
    /* Let the thread's last messages run, then join it. */
    test_run_bounded(loop, 10 * COIL_MSEC);
    assert_int_equal(pthread_join(th, NULL), 0);
    test_run_bounded(loop, COIL_MSEC); /* the reference comes back */
    assert_int_equal(c.r_ok, 11);
    assert_int_equal(c.r_timeout, -ETIMEDOUT);
    assert_true(c.cleaned);
    assert_int_equal(c.set_r, 0);
    coil_future_unref(c.fut);
    /* On the loop's own thread it would block the loop. */
    assert_int_equal(test_run_task(loop, deadlock_body, &c), -EDEADLK);
    assert_int_equal(coil_loop_run_task_threadsafe(NULL, remote_ok, NULL, 0),
                     -EINVAL);
    assert_int_equal(coil_future_set_error_threadsafe(NULL, -EIO), -EINVAL);
    test_assert_no_tasks(loop);
}

static void *closed_thread(void *arg)
{
    struct remote_ctx *c = arg;
    c->r_closed = coil_loop_run_task_threadsafe(c->loop, remote_ok, c,
                                                COIL_NO_TIMEOUT);
    return NULL;
}

static void test_run_task_threadsafe_loop_closed(void **state)
{
    (void)state;
    struct remote_ctx c = {0};
    assert_int_equal(coil_loop_new(&c.loop), 0);
    assert_int_equal(coil_loop_close(c.loop), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, closed_thread, &c), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.r_closed, -EBADF);
    coil_loop_unref(c.loop);
}

/* ------------------------------------------------------------------ */
/* Review fixes: misuse of shutdown, a job's own -ECANCELED, closed      */
/* loops, bad arguments                                                 */
/* ------------------------------------------------------------------ */

/* A job that shuts its own executor down, waiting, would wait for itself;
 * a callback of a running loop may not block it. */
struct self_shut {
    coil_executor_t *ex;
    int r_job, r_cb, r_cb_zero;
};

static int self_shut_job(void *arg)
{
    struct self_shut *c = arg;
    c->r_job = coil_executor_shutdown(c->ex, COIL_NO_TIMEOUT);
    return 0;
}

static void shut_cb(void *arg)
{
    struct self_shut *c = arg;
    c->r_cb = coil_executor_shutdown(c->ex, COIL_SEC);
    c->r_cb_zero = coil_executor_shutdown(c->ex, 0);
}

static void test_executor_shutdown_misuse(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct self_shut c = {0};
    assert_int_equal(coil_executor_new(NULL, &c.ex), 0);
    coil_future_t *fut;
    assert_int_equal(coil_executor_submit(c.ex, loop, self_shut_job, &c, NULL,
                                          &fut),
                     0);
    assert_int_equal(test_run_until(loop, fut), 0);
    assert_int_equal(c.r_job, -EDEADLK);
    coil_future_unref(fut);
    assert_int_equal(coil_loop_call_soon(loop, shut_cb, &c, NULL), 0);
    test_run_bounded(loop, COIL_MSEC);
    assert_int_equal(c.r_cb, -EPERM);
    assert_true(c.r_cb_zero == 0 || c.r_cb_zero == -ETIMEDOUT);
    assert_int_equal(coil_executor_shutdown(c.ex, COIL_NO_TIMEOUT), 0);
    coil_executor_unref(c.ex);
}

/* A job that returns -ECANCELED counts as cancelled: its argument goes
 * to dispose, so -ECANCELED always means "the job had arg". */
static int own_cancel_body(void *arg)
{
    return coil_to_thread(job, arg, dispose);
}

static void test_executor_job_returns_ecanceled(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct jobarg a = {.ret = -ECANCELED};
    assert_int_equal(test_run_task(loop, own_cancel_body, &a), -ECANCELED);
    assert_true(atomic_load(&a.ran));
    assert_int_equal(atomic_load(&a.disposed), 1);
    assert_int_equal(atomic_load(&a.disposed_result), -ECANCELED);
}

/* Closed loops: a job still queued is dropped (never runs, disposed of
 * with -ECANCELED); a thread-safe completion accepted but not yet run is
 * freed with its reference; nothing new is accepted. */
static void test_executor_closed_loop(void **state)
{
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct gate g;
    gate_init(&g);
    coil_executor_options_t o = {.max_threads = 1};
    coil_executor_t *ex;
    assert_int_equal(coil_executor_new(&o, &ex), 0);
    struct jobarg busy = {.gate = &g}, queued = {0};
    coil_future_t *fb, *fq, *f;
    assert_int_equal(coil_executor_submit(ex, loop, job, &busy, dispose, &fb),
                     0);
    gate_wait_arrived(&g, 1);
    assert_int_equal(coil_executor_submit(ex, loop, job, &queued, dispose,
                                          &fq),
                     0);
    assert_int_equal(coil_future_new(loop, &f), 0);
    coil_future_ref(f); /* handed over to the completion */
    assert_int_equal(coil_future_set_result_threadsafe(f, (void *)1), 0);
    assert_int_equal(coil_loop_close(loop), 0);
    assert_int_equal(atomic_load(&queued.disposed), 1);
    assert_int_equal(atomic_load(&queued.disposed_result), -ECANCELED);
    assert_true(coil_future_cancelled(fq));
    assert_false(coil_future_done(f)); /* the completion never ran */
    coil_future_t *nf = (coil_future_t *)1;
    assert_int_equal(coil_executor_submit(ex, loop, job, &queued, NULL, &nf),
                     -EBADF);
    assert_null(nf);
    coil_executor_t *d;
    assert_int_equal(coil_loop_default_executor(loop, &d), -EBADF);
    assert_int_equal(coil_loop_set_default_executor(loop, ex), -EBADF);
    assert_int_equal(coil_future_set_result_threadsafe(f, NULL), -EBADF);
    gate_open(&g);
    assert_int_equal(coil_executor_shutdown(ex, COIL_NO_TIMEOUT), 0);
    assert_false(atomic_load(&queued.ran));
    coil_future_unref(fb);
    coil_future_unref(fq);
    coil_future_unref(f);
    coil_executor_unref(ex);
    coil_loop_unref(loop);
    gate_destroy(&g);
}

static int null_fn_body(void *arg)
{
    (void)arg;
    return coil_to_thread(NULL, NULL, NULL);
}

static void test_executor_bad_arguments(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(test_run_task(loop, null_fn_body, NULL), -EINVAL);
    assert_int_equal(coil_future_set_result_threadsafe(NULL, NULL), -EINVAL);
    coil_future_t *f;
    assert_int_equal(coil_future_new(loop, &f), 0);
    assert_int_equal(coil_future_set_error_threadsafe(f, 0), -EINVAL);
    assert_int_equal(coil_future_set_error_threadsafe(f, 5), -EINVAL);
    coil_future_unref(f);
    assert_int_equal(coil_loop_run_task_threadsafe(loop, NULL, NULL, 0),
                     -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Out of memory                                                        */
/* ------------------------------------------------------------------ */

/* A worker that cannot be started (pthread_create's EAGAIN, through the
 * seam). With no worker running the submission is refused with -EAGAIN:
 * the job never runs and is not disposed (arg stays the caller's). With
 * one running it is queued for that one, which runs it once free:
 * nothing is lost. */
static void test_executor_thread_start_fails(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_executor_t *ex;
    coil_executor_options_t o = {.max_threads = 2};
    assert_int_equal(coil_executor_new(&o, &ex), 0);
    struct jobarg a = {.ret = 7}, busy = {.ret = 1};
    coil_future_t *fa = (coil_future_t *)1, *fb;
    coil__fault_arm(COIL__SYS_THREAD, 1, 1, EAGAIN);
    assert_int_equal(coil_executor_submit(ex, loop, job, &a, dispose, &fa),
                     -EAGAIN);
    assert_int_equal(coil__fault_calls(COIL__SYS_THREAD), 1);
    assert_null(fa);
    /* One worker, held at the gate; a second cannot be started. */
    struct gate g;
    gate_init(&g);
    busy.gate = &g;
    assert_int_equal(
        coil_executor_submit(ex, loop, job, &busy, dispose, &fb), 0);
    gate_wait_arrived(&g, 1);
    coil__fault_arm(COIL__SYS_THREAD, 1, 1, EAGAIN);
    assert_int_equal(coil_executor_submit(ex, loop, job, &a, dispose, &fa),
                     0);
    assert_int_equal(coil__fault_calls(COIL__SYS_THREAD), 1);
    assert_false(atomic_load(&a.ran));
    gate_open(&g);
    void *v = NULL;
    test_run_until(loop, fa);
    assert_int_equal(coil_future_result(fa, &v), 0);
    assert_int_equal((intptr_t)v, 7);
    test_run_until(loop, fb);
    assert_int_equal(coil_future_result(fb, &v), 0);
    assert_int_equal((intptr_t)v, 1);
    assert_int_equal(atomic_load(&a.disposed), 0);
    coil_future_unref(fa);
    coil_future_unref(fb);
    assert_int_equal(coil_executor_shutdown(ex, COIL_NO_TIMEOUT), 0);
    coil_executor_unref(ex);
    gate_destroy(&g);
}

/* A worker thread's last act: a thread-specific value's destructor,
 * which runs after the thread's function returned, as the thread exits.
 * It takes its time, so that a shutdown that returned before the
 * threads were gone is seen. */
static pthread_key_t exit_key;
static atomic_int threads_marked, threads_exited;

static void on_thread_exit(void *value)
{
    (void)value;
    struct timespec t = {0, 30 * 1000000};
    nanosleep(&t, NULL);
    atomic_fetch_add(&threads_exited, 1);
}

static int marking_job(void *arg)
{
    if (!pthread_getspecific(exit_key)) {
        atomic_fetch_add(&threads_marked, 1);
        pthread_setspecific(exit_key, (void *)1);
    }
    return job(arg);
}

struct gone_ctx {
    coil_executor_t *ex;
    struct jobarg a[3];
    int r[3];
    int shut;
};

static int gone_job_body(void *arg)
{
    struct gone_ctx *c = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_future_t *f[3];
    for (int i = 0; i < 3; i++)
        if (coil_executor_submit(c->ex, loop, marking_job, &c->a[i], dispose,
                                 &f[i]))
            return -EIO;
    for (int i = 0; i < 3; i++) {
        void *v;
        c->r[i] = coil_await(f[i], &v) ? -1 : (int)(intptr_t)v;
        coil_future_unref(f[i]);
    }
    /* From a task: the shutdown looks again at intervals, then joins. */
    c->shut = coil_executor_shutdown(c->ex, COIL_NO_TIMEOUT);
    return 0;
}

struct both_shut {
    coil_executor_t *ex;
    int shut;
    int exited_then; /* worker threads gone when the shutdown returned */
};

static void *shut_and_count(void *arg)
{
    struct both_shut *b = arg;
    b->shut = coil_executor_shutdown(b->ex, COIL_NO_TIMEOUT);
    b->exited_then = atomic_load(&threads_exited);
    return NULL;
}

/* An executor of three workers, each held at g in a marking job (f: the
 * jobs' futures); the thread counts start from 0. */
static void gone_start(coil_loop_t *loop, struct gone_ctx *c, struct gate *g,
                       coil_future_t *f[3])
{
    atomic_store(&threads_marked, 0);
    atomic_store(&threads_exited, 0);
    coil_executor_options_t o = {.max_threads = 3};
    assert_int_equal(coil_executor_new(&o, &c->ex), 0);
    gate_init(g);
    for (int i = 0; i < 3; i++) {
        c->a[i].ret = i + 1;
        c->a[i].gate = g;
        assert_int_equal(coil_executor_submit(c->ex, loop, marking_job,
                                              &c->a[i], dispose, &f[i]),
                         0);
    }
    gate_wait_arrived(g, 3); /* three workers, each in a job */
}

/* The jobs' outcomes delivered, and everything let go. */
static void gone_end(coil_loop_t *loop, struct gone_ctx *c, struct gate *g,
                     coil_future_t *f[3])
{
    for (int i = 0; i < 3; i++) {
        test_run_until(loop, f[i]);
        coil_future_unref(f[i]);
    }
    coil_executor_unref(c->ex);
    gate_destroy(g);
}

/* A shutdown that waited returns once the workers' threads are gone,
 * not only done with their jobs (they are joined): from a thread, from a
 * task, and from two threads at once (the second waits for the first
 * one's joins). */
static void test_executor_shutdown_joins_threads(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(pthread_key_create(&exit_key, on_thread_exit), 0);

    /* From a thread. */
    struct gone_ctx c = {0};
    struct gate g;
    coil_future_t *f[3];
    gone_start(loop, &c, &g, f);
    gate_open(&g);
    assert_int_equal(coil_executor_shutdown(c.ex, COIL_NO_TIMEOUT), 0);
    assert_int_equal(atomic_load(&threads_marked), 3);
    assert_int_equal(atomic_load(&threads_exited), 3);
    gone_end(loop, &c, &g, f);

    /* From a task: the shutdown looks again at intervals, then joins.
     * Nothing holds a job, so one, two or three workers run them. */
    atomic_store(&threads_marked, 0);
    atomic_store(&threads_exited, 0);
    c = (struct gone_ctx){0};
    coil_executor_options_t o = {.max_threads = 3};
    assert_int_equal(coil_executor_new(&o, &c.ex), 0);
    for (int i = 0; i < 3; i++)
        c.a[i].ret = i + 1;
    assert_int_equal(test_run_task(loop, gone_job_body, &c), 0);
    assert_int_equal(c.shut, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c.r[i], i + 1);
    assert_true(atomic_load(&threads_marked) >= 1);
    assert_int_equal(atomic_load(&threads_exited),
                     atomic_load(&threads_marked));
    coil_executor_unref(c.ex);

    /* From two threads at once. */
    c = (struct gone_ctx){0};
    gone_start(loop, &c, &g, f);
    struct both_shut b[2] = {{c.ex, -1, -1}, {c.ex, -1, -1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, shut_and_count, &b[i]),
                         0);
    gate_open(&g);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(b[i].shut, 0);
        assert_int_equal(b[i].exited_then, 3);
    }
    gone_end(loop, &c, &g, f);
    pthread_key_delete(exit_key);
}

static void test_executor_alloc_failure(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_executor_t *ex = (coil_executor_t *)1;
    test_alloc_fail_after(1);
    assert_int_equal(coil_executor_new(NULL, &ex), -ENOMEM);
    assert_null(ex);
    assert_int_equal(coil_executor_new(NULL, &ex), 0);
    struct jobarg a = {0};
    coil_future_t *fut = (coil_future_t *)1;
    test_alloc_fail_after(1);
    assert_int_equal(coil_executor_submit(ex, loop, job, &a, dispose, &fut),
                     -ENOMEM);
    assert_null(fut);
    assert_false(atomic_load(&a.ran));
    /* The second allocation: the record of the first worker's thread. */
    test_alloc_fail_after(2);
    assert_int_equal(coil_executor_submit(ex, loop, job, &a, dispose, &fut),
                     -ENOMEM);
    assert_null(fut);
    assert_false(atomic_load(&a.ran));
    coil_executor_unref(ex);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_to_thread_result_and_error),
        T(test_executor_thread_limit),
        T(test_executor_cancel_queued),
        T(test_executor_cancel_running),
        T(test_executor_future_dropped),
        T(test_executor_shutdown),
        T(test_executor_shutdown_from_thread),
        T(test_executor_queue_bound_and_args),
        T_NOLOOP(test_executor_loop_closed_while_running),
        T_NOLOOP(test_to_thread_loop_closed),
        T(test_executor_default_replaced),
        T_NOLOOP(test_executor_coil_run_waits),
        T(test_run_task_threadsafe),
        T_NOLOOP(test_run_task_threadsafe_loop_closed),
        T(test_executor_alloc_failure),
        T(test_executor_thread_start_fails),
        T(test_executor_shutdown_joins_threads),
        T(test_executor_shutdown_misuse),
        T(test_executor_job_returns_ecanceled),
        T_NOLOOP(test_executor_closed_loop),
        T(test_executor_bad_arguments),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
