/* SPDX-License-Identifier: MIT */
/*
 * test_threadsafe.c - coil_loop_call_soon_threadsafe and the loop's wake-up
 * channel: waking a loop asleep in poll, many threads at once (every call
 * runs once, in order per thread), calls from the loop's own thread,
 * closed loops, bad arguments, allocation failure, a failing wake-up
 * write, and the eventfd -> pipe fallback when the loop is made.
 *
 * Callbacks run on the loop thread and only record; other threads only
 * make calls and keep their own results, which are read after joining
 * them. Every assertion runs on the main stack. Runs under TSan too.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define SAFETY_NS (5 * COIL_SEC)

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* A callback that counts its calls and stops the loop at the first. */
struct hit {
    coil_loop_t *loop;
    int calls;
    bool stop;
    pthread_t loop_thread;
    bool wrong_thread;
};

static void hit_cb(void *arg)
{
    struct hit *h = arg;
    h->calls++;
    if (!pthread_equal(pthread_self(), h->loop_thread))
        h->wrong_thread = true;
    if (h->stop)
        coil_loop_stop(h->loop);
}

static struct hit hit_make(coil_loop_t *loop, bool stop)
{
    return (struct hit){loop, 0, stop, pthread_self(), false};
}

/*
 * A thread that waits until the loop has started running, gives it time
 * to go to sleep in poll, then makes one call.
 */
struct waker {
    coil_loop_t *loop;
    atomic_bool started; /* set by the loop's first callback */
    coil_callback_fn fn;
    void *arg;
    pthread_t thread;
    /* The thread's results, read after joining it. */
    bool saw_start;
    int ret;
};

static void waker_started_cb(void *arg)
{
    struct waker *w = arg;
    atomic_store(&w->started, true);
}

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    for (int i = 0; i < 5000 && !atomic_load(&w->started); i++)
        sleep_ms(1);
    w->saw_start = atomic_load(&w->started);
    sleep_ms(20); /* let the loop block in poll again */
    w->ret = coil_loop_call_soon_threadsafe(w->loop, w->fn, w->arg);
    return NULL;
}

static void waker_start(struct waker *w, coil_loop_t *loop, coil_callback_fn fn,
                        void *arg)
{
    w->loop = loop;
    atomic_init(&w->started, false);
    w->fn = fn;
    w->arg = arg;
    w->saw_start = false;
    w->ret = -1000;
    assert_int_equal(coil_loop_call_soon(loop, waker_started_cb, w, NULL), 0);
    assert_int_equal(pthread_create(&w->thread, NULL, waker_main, w), 0);
}

static void waker_join(struct waker *w)
{
    assert_int_equal(pthread_join(w->thread, NULL), 0);
}

/* A loop run bounded by a safety timer is woken by another thread. */
static void check_woken_by_thread(coil_loop_t *loop)
{
    struct hit h = hit_make(loop, true);
    struct waker w;
    waker_start(&w, loop, hit_cb, &h);
    bool timed_out = test_run_bounded(loop, SAFETY_NS);
    waker_join(&w);
    assert_false(timed_out);
    assert_true(w.saw_start);
    assert_int_equal(w.ret, 0);
    assert_int_equal(h.calls, 1);
    assert_false(h.wrong_thread);
}

/*
 * A watchdog that bounds a run without putting a timer in the loop: a
 * thread that, unless told to quit within WATCHDOG_S, writes to a socket
 * whose reader stops the loop.
 */
#define WATCHDOG_S 5

struct watchdog {
    coil_loop_t *loop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    int sv[2];
    pthread_t thread;
    bool fired; /* loop thread */
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WATCHDOG_S;
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->quit && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &deadline);
    bool quit = w->quit;
    pthread_mutex_unlock(&w->mu);
    if (!quit) {
        ssize_t n = write(w->sv[1], "!", 1);
        (void)n;
    }
    return NULL;
}

static void watchdog_cb(void *arg)
{
    struct watchdog *w = arg;
    w->fired = true;
    coil_loop_stop(w->loop);
}

static void watchdog_start(struct watchdog *w, coil_loop_t *loop)
{
    w->loop = loop;
    w->quit = false;
    w->fired = false;
    assert_int_equal(pthread_mutex_init(&w->mu, NULL), 0);
    assert_int_equal(pthread_cond_init(&w->cv, NULL), 0);
    test_socketpair(w->sv);
    assert_int_equal(coil_loop_add_reader(loop, w->sv[0], watchdog_cb, w), 0);
    assert_int_equal(pthread_create(&w->thread, NULL, watchdog_main, w), 0);
}

/* Returns whether the watchdog fired. */
static bool watchdog_stop(struct watchdog *w)
{
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    assert_int_equal(pthread_join(w->thread, NULL), 0);
    assert_int_equal(coil_loop_remove_reader(w->loop, w->sv[0]), 1);
    close(w->sv[0]);
    close(w->sv[1]);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return w->fired;
}

/* ------------------------------------------------------------------ */
/* Waking the loop                                                      */
/* ------------------------------------------------------------------ */

/* No timer at all: the loop sleeps in poll with no timeout, and only the
 * wake-up channel can bring it back. */
static void test_wakes_loop_asleep_without_timers(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct hit h = hit_make(loop, true);
    struct watchdog dog;
    watchdog_start(&dog, loop);
    struct waker w;
    waker_start(&w, loop, hit_cb, &h);

    int err = coil_loop_run_forever(loop);
    waker_join(&w);
    bool fired = watchdog_stop(&dog);
    assert_int_equal(err, 0);
    assert_false(fired);
    assert_true(w.saw_start);
    assert_int_equal(w.ret, 0);
    assert_int_equal(h.calls, 1);
    assert_false(h.wrong_thread);
}

/* With a (far) timer pending, the loop is woken all the same. */
static void test_wakes_loop_asleep_with_timer(void **state)
{
    check_woken_by_thread(test_loop(state));
}

/* ------------------------------------------------------------------ */
/* Many threads                                                         */
/* ------------------------------------------------------------------ */

struct mt;

struct mt_call {
    struct mt *mt;
    int tid;
    int seq;
};

struct mt_seen {
    int tid;
    int seq;
};

struct mt {
    coil_loop_t *loop;
    pthread_t loop_thread;
    int total;
    int seen;              /* calls run so far */
    int extra;             /* calls run beyond total */
    bool wrong_thread;     /* a call ran on another thread */
    struct mt_seen *order; /* [total], in the order they ran */
};

static void mt_cb(void *arg)
{
    struct mt_call *c = arg;
    struct mt *m = c->mt;
    if (!pthread_equal(pthread_self(), m->loop_thread))
        m->wrong_thread = true;
    if (m->seen == m->total) {
        m->extra++;
        return;
    }
    m->order[m->seen++] = (struct mt_seen){c->tid, c->seq};
    if (m->seen == m->total)
        coil_loop_stop(m->loop);
}

struct mt_thread {
    coil_loop_t *loop;
    struct mt_call *calls; /* [ncalls] */
    int ncalls;
    pthread_barrier_t *barrier;
    pthread_t thread;
    /* Results, read after joining. */
    int failures;
    int last_error;
};

static void *mt_main(void *arg)
{
    struct mt_thread *t = arg;
    pthread_barrier_wait(t->barrier);
    for (int i = 0; i < t->ncalls; i++) {
        int err = coil_loop_call_soon_threadsafe(t->loop, mt_cb, &t->calls[i]);
        if (err) {
            t->failures++;
            t->last_error = err;
        }
    }
    return NULL;
}

/* nthreads threads make ncalls calls each while the loop runs. */
static void many_threads(coil_loop_t *loop, int nthreads, int ncalls)
{
    int total = nthreads * ncalls;
    struct mt m = {loop, pthread_self(), total, 0, 0, false, NULL};
    m.order = calloc((size_t)total, sizeof(*m.order));
    struct mt_call *calls = calloc((size_t)total, sizeof(*calls));
    struct mt_thread *th = calloc((size_t)nthreads, sizeof(*th));
    assert_non_null(m.order);
    assert_non_null(calls);
    assert_non_null(th);
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, (unsigned)nthreads),
                     0);
    for (int t = 0; t < nthreads; t++) {
        for (int i = 0; i < ncalls; i++)
            calls[t * ncalls + i] = (struct mt_call){&m, t, i};
        th[t] = (struct mt_thread){
            loop, &calls[t * ncalls], ncalls, &barrier, 0, 0, 0};
        assert_int_equal(pthread_create(&th[t].thread, NULL, mt_main, &th[t]),
                         0);
    }

    bool timed_out = test_run_bounded(loop, SAFETY_NS);
    int failures = 0, last_error = 0;
    for (int t = 0; t < nthreads; t++) {
        assert_int_equal(pthread_join(th[t].thread, NULL), 0);
        failures += th[t].failures;
        if (th[t].failures)
            last_error = th[t].last_error;
    }
    pthread_barrier_destroy(&barrier);

    /* Per thread, the calls ran in the order made, each exactly once. */
    int *next = calloc((size_t)nthreads, sizeof(*next));
    assert_non_null(next);
    int out_of_order = 0;
    for (int k = 0; k < m.seen; k++) {
        struct mt_seen s = m.order[k];
        if (s.tid < 0 || s.tid >= nthreads || s.seq != next[s.tid])
            out_of_order++;
        else
            next[s.tid]++;
    }
    int complete = 0;
    for (int t = 0; t < nthreads; t++)
        complete += next[t] == ncalls;
    free(next);
    free(m.order);
    free(calls);
    free(th);

    assert_int_equal(failures, 0);
    assert_int_equal(last_error, 0);
    assert_false(timed_out);
    assert_int_equal(m.seen, total);
    assert_int_equal(m.extra, 0);
    assert_false(m.wrong_thread);
    assert_int_equal(out_of_order, 0);
    assert_int_equal(complete, nthreads);
}

static void test_many_threads(void **state)
{
    many_threads(test_loop(state), 4, 10000);
}

/* ------------------------------------------------------------------ */
/* Calls from the loop's own thread                                     */
/* ------------------------------------------------------------------ */

enum { OWN_CALLS = 100 };

struct own;

struct own_call {
    struct own *own;
    int index;
};

struct own {
    coil_loop_t *loop;
    struct own_call calls[OWN_CALLS];
    int order[OWN_CALLS];
    int n;
    int extra;
    int nested_failures; /* calls made from a callback that failed */
};

static void own_cb(void *arg)
{
    struct own_call *c = arg;
    struct own *o = c->own;
    if (o->n == OWN_CALLS) {
        o->extra++;
        return;
    }
    o->order[o->n++] = c->index;
    /* The first callback makes the second half of the calls. */
    if (c->index == 0)
        for (int i = OWN_CALLS / 2; i < OWN_CALLS; i++)
            if (coil_loop_call_soon_threadsafe(o->loop, own_cb, &o->calls[i]))
                o->nested_failures++;
    if (o->n == OWN_CALLS)
        coil_loop_stop(o->loop);
}

static void test_calls_from_loop_thread(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct own o = {.loop = loop};
    for (int i = 0; i < OWN_CALLS; i++)
        o.calls[i] = (struct own_call){&o, i};
    /* Before the loop runs ... */
    for (int i = 0; i < OWN_CALLS / 2; i++)
        assert_int_equal(
            coil_loop_call_soon_threadsafe(loop, own_cb, &o.calls[i]), 0);
    /* ... and from its callbacks (own_cb). */
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(o.nested_failures, 0);
    assert_int_equal(o.n, OWN_CALLS);
    assert_int_equal(o.extra, 0);
    for (int i = 0; i < OWN_CALLS; i++)
        assert_int_equal(o.order[i], i);
}

/* From the thread that runs the loop, call_soon_threadsafe is
 * call_soon: one FIFO with the loop's own calls (asyncio keeps one). */
struct fifo {
    coil_loop_t *loop;
    int order[4];
    int n;
};

struct fifo_call {
    struct fifo *f;
    int id;
};

static void fifo_cb(void *arg)
{
    struct fifo_call *c = arg;
    c->f->order[c->f->n++] = c->id;
    if (c->f->n == 4)
        coil_loop_stop(c->f->loop);
}

static void fifo_start(void *arg)
{
    struct fifo_call *c = arg; /* c[0..3] */
    coil_loop_call_soon(c[0].f->loop, fifo_cb, &c[0], NULL);
    coil_loop_call_soon_threadsafe(c[0].f->loop, fifo_cb, &c[1]);
    coil_loop_call_soon(c[0].f->loop, fifo_cb, &c[2], NULL);
    coil_loop_call_soon_threadsafe(c[0].f->loop, fifo_cb, &c[3]);
}

static void test_loop_thread_one_fifo(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct fifo f = {.loop = loop};
    struct fifo_call calls[4];
    for (int i = 0; i < 4; i++)
        calls[i] = (struct fifo_call){&f, i};
    assert_int_equal(coil_loop_call_soon(loop, fifo_start, calls, NULL), 0);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(f.n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(f.order[i], i);
}

/* ------------------------------------------------------------------ */
/* Closed loops, bad arguments, allocation failure                      */
/* ------------------------------------------------------------------ */

struct call_once {
    coil_loop_t *loop;
    coil_callback_fn fn;
    void *arg;
    int ret;
};

static void *call_once_main(void *arg)
{
    struct call_once *c = arg;
    c->ret = coil_loop_call_soon_threadsafe(c->loop, c->fn, c->arg);
    return NULL;
}

/* Make one call from a new thread; returns its result. */
static int call_from_thread(coil_loop_t *loop, coil_callback_fn fn, void *arg)
{
    struct call_once c = {loop, fn, arg, -1000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_once_main, &c), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    return c.ret;
}

static void test_closed_loop(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct hit h = hit_make(loop, false);
    assert_int_equal(coil_loop_close(loop), 0);
    assert_int_equal(coil_loop_call_soon_threadsafe(loop, hit_cb, &h), -EBADF);
    assert_int_equal(call_from_thread(loop, hit_cb, &h), -EBADF);
    assert_int_equal(coil_loop_call_soon_threadsafe(loop, NULL, &h), -EINVAL);
    assert_int_equal(coil_loop_run_forever(loop), -EBADF);
    assert_int_equal(h.calls, 0);
}

/* Calls still queued when the loop closes never run; the leak gate checks
 * that their records are freed. */
static void test_pending_calls_dropped_at_close(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct hit h = hit_make(loop, false);
    long live = test_alloc_live();
    for (int i = 0; i < 50; i++)
        assert_int_equal(call_from_thread(loop, hit_cb, &h), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(coil_loop_call_soon_threadsafe(loop, hit_cb, &h), 0);
    assert_true(test_alloc_live() >= live + 100);
    assert_int_equal(coil_loop_close(loop), 0);
    assert_true(test_alloc_live() <= live);
    assert_int_equal(coil_loop_run_forever(loop), -EBADF);
    assert_int_equal(h.calls, 0);
}

static void test_bad_arguments(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct hit h = hit_make(loop, false);
    assert_int_equal(coil_loop_call_soon_threadsafe(NULL, hit_cb, &h), -EINVAL);
    assert_int_equal(coil_loop_call_soon_threadsafe(loop, NULL, &h), -EINVAL);
    assert_int_equal(coil_loop_call_soon_threadsafe(NULL, NULL, NULL), -EINVAL);
    assert_int_equal(call_from_thread(loop, NULL, &h), -EINVAL);

    /* Nothing was queued: only the stopper runs. */
    struct hit stopper = hit_make(loop, true);
    assert_int_equal(coil_loop_call_soon_threadsafe(loop, hit_cb, &stopper), 0);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(stopper.calls, 1);
    assert_int_equal(h.calls, 0);
}

struct alloc_fail_call {
    coil_loop_t *loop;
    struct hit *h;
    int ret;
    bool injected;
};

static void *alloc_fail_main(void *arg)
{
    struct alloc_fail_call *c = arg;
    test_alloc_fail_after(1);
    c->ret = coil_loop_call_soon_threadsafe(c->loop, hit_cb, c->h);
    c->injected = test_alloc_failed();
    test_alloc_fail_after(0);
    return NULL;
}

static void test_alloc_failure(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct hit failed = hit_make(loop, false);

    /* On the loop's thread. */
    test_alloc_fail_after(1);
    int err = coil_loop_call_soon_threadsafe(loop, hit_cb, &failed);
    bool injected = test_alloc_failed();
    test_alloc_fail_after(0);
    assert_int_equal(err, -ENOMEM);
    assert_true(injected);

    /* On another thread (nothing else allocates meanwhile). */
    struct alloc_fail_call c = {loop, &failed, -1000, false};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, alloc_fail_main, &c), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(c.ret, -ENOMEM);
    assert_true(c.injected);

    /* The failed calls never run; the next one does. */
    struct hit stopper = hit_make(loop, true);
    assert_int_equal(call_from_thread(loop, hit_cb, &stopper), 0);
    assert_false(test_run_bounded(loop, SAFETY_NS));
    assert_int_equal(stopper.calls, 1);
    assert_int_equal(failed.calls, 0);
}

/* ------------------------------------------------------------------ */
/* The wake-up write failing                                            */
/* ------------------------------------------------------------------ */

/*
 * The wake-up write fails: the call is queued all the same, and so is a
 * second call made after it (which finds the queue non-empty and does not
 * write). The loop is then woken by a timer: both calls must run, in
 * order, when it polls.
 */
struct order_rec {
    coil_loop_t *loop;
    int order[4];
    int n;
};

static void first_cb(void *arg)
{
    struct order_rec *p = arg;
    if (p->n < 4)
        p->order[p->n] = 1;
    p->n++;
}

static void second_cb(void *arg)
{
    struct order_rec *p = arg;
    if (p->n < 4)
        p->order[p->n] = 2;
    p->n++;
    coil_loop_stop(p->loop);
}

static void tick_cb(void *arg)
{
    int *n = arg;
    (*n)++;
}

static void test_wake_write_fails(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct order_rec p = {.loop = loop};
    coil__fault_arm(COIL__SYS_WAKE_WRITE, 1, 1, EAGAIN);
    assert_int_equal(call_from_thread(loop, first_cb, &p), 0);
    assert_int_equal(coil__fault_hit(COIL__SYS_WAKE_WRITE), 0); /* used */
    assert_int_equal(call_from_thread(loop, second_cb, &p), 0);

    int ticks = 0;
    assert_int_equal(
        coil_loop_call_later(loop, 10 * COIL_MSEC, tick_cb, &ticks, NULL), 0);
    bool timed_out = test_run_bounded(loop, SAFETY_NS);
    assert_int_equal(ticks, 1); /* the loop did wake up and poll */
    assert_false(timed_out);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.order[0], 1);
    assert_int_equal(p.order[1], 2);
}

/* ------------------------------------------------------------------ */
/* The wake-up channel at loop creation                                 */
/* ------------------------------------------------------------------ */

#ifdef __linux__
/* eventfd failing for want of resources: coil_loop_new returns the error
 * and leaves nothing behind. */
static void test_eventfd_fails(void **state)
{
    (void)state;
    static const int errs[] = {ENOMEM, EMFILE, ENFILE};
    for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++) {
        long fds = test_fd_count(), live = test_alloc_live();
        coil_loop_t *loop = (coil_loop_t *)&fds; /* must become NULL */
        coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -errs[i]);
        assert_int_equal(coil_loop_new(&loop), -errs[i]);
        assert_int_equal(coil__fault_hit(COIL__SYS_EVENTFD), 0);
        assert_null(loop);
        assert_int_equal(test_fd_count(), fds);
        assert_int_equal(test_alloc_live(), live);
    }
}

/* Open fds a new loop costs. */
static long loop_fd_cost(void)
{
    long before = test_fd_count();
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    long cost = test_fd_count() - before;
    coil_loop_unref(loop);
    assert_int_equal(test_fd_count(), before);
    return cost;
}

/* eventfd not available (ENOSYS, EINVAL): the loop uses a pipe, one fd
 * more, and is woken through it. */
static void test_eventfd_missing_falls_back_to_pipe(void **state)
{
    (void)state;
    static const int errs[] = {ENOSYS, EINVAL};
    long cost = loop_fd_cost();
    for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++) {
        long fds = test_fd_count();
        coil_loop_t *loop;
        coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -errs[i]);
        assert_int_equal(coil_loop_new(&loop), 0);
        assert_int_equal(coil__fault_hit(COIL__SYS_EVENTFD), 0);
        assert_int_equal(test_fd_count() - fds, cost + 1);
        check_woken_by_thread(loop);
        coil_loop_unref(loop);
        assert_int_equal(test_fd_count(), fds);
    }
}

/* The pipe channel under load from several threads. */
static void test_pipe_channel_many_threads(void **state)
{
    (void)state;
    coil_loop_t *loop;
    long cost = loop_fd_cost(), fds = test_fd_count();
    coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -ENOSYS);
    assert_int_equal(coil_loop_new(&loop), 0);
    assert_int_equal(coil__fault_hit(COIL__SYS_EVENTFD), 0);
    assert_int_equal(test_fd_count() - fds, cost + 1); /* the pipe */
    many_threads(loop, 3, 5000);
    coil_loop_unref(loop);
    assert_int_equal(test_fd_count(), fds);
}

/* No eventfd, and the pipe fails too: the pipe's error, nothing left. */
static void test_pipe_fallback_fails(void **state)
{
    (void)state;
    long fds = test_fd_count(), live = test_alloc_live();
    coil_loop_t *loop = (coil_loop_t *)&fds;
    coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -ENOSYS);
    coil_test_fail(COIL_TEST_PIPE, 1, 1, -EMFILE);
    assert_int_equal(coil_loop_new(&loop), -EMFILE);
    assert_int_equal(coil__fault_hit(COIL__SYS_EVENTFD), 0);
    assert_int_equal(coil__fault_hit(COIL__SYS_PIPE), 0);
    assert_null(loop);
    assert_int_equal(test_fd_count(), fds);
    assert_int_equal(test_alloc_live(), live);
}
#endif

/* Registering the wake-up fd with epoll fails: the error, nothing left. */
static void test_wake_registration_fails(void **state)
{
    (void)state;
    long fds = test_fd_count(), live = test_alloc_live();
    coil_loop_t *loop = (coil_loop_t *)&fds;
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    assert_int_equal(coil_loop_new(&loop), -ENOMEM);
    assert_int_equal(coil__fault_hit(COIL__SYS_EPOLL_CTL), 0);
    assert_null(loop);
    assert_int_equal(test_fd_count(), fds);
    assert_int_equal(test_alloc_live(), live);
}

/* ------------------------------------------------------------------ */
/* Closing while other threads call                                     */
/* ------------------------------------------------------------------ */

struct race {
    coil_loop_t *loop;
    int ran;
    int ran_after_close;
};

static void race_cb(void *arg)
{
    struct race *r = arg;
    r->ran++;
    if (coil_loop_is_closed(r->loop))
        r->ran_after_close++;
    if (r->ran == 1000)
        coil_loop_stop(r->loop);
}

struct racer {
    struct race *race;
    pthread_t thread;
    /* Results, read after joining. */
    long ok;
    bool saw_ebadf;
    int other_error;
    bool timed_out;
};

static void *racer_main(void *arg)
{
    struct racer *t = arg;
    int64_t deadline = coil_now() + SAFETY_NS;
    for (;;) {
        int err =
            coil_loop_call_soon_threadsafe(t->race->loop, race_cb, t->race);
        if (err == 0) {
            t->ok++;
        } else if (err == -EBADF) {
            t->saw_ebadf = true;
            break;
        } else {
            t->other_error = err;
            break;
        }
        if (coil_now() > deadline) {
            t->timed_out = true;
            break;
        }
    }
    return NULL;
}

static void test_close_while_threads_call(void **state)
{
    coil_loop_t *loop = test_loop(state);
    enum { N = 3 };
    struct race race = {loop, 0, 0};
    struct racer t[N];
    for (int i = 0; i < N; i++) {
        t[i] = (struct racer){.race = &race};
        assert_int_equal(pthread_create(&t[i].thread, NULL, racer_main, &t[i]),
                         0);
    }
    /* Until 1000 calls ran. */
    bool timed_out = test_run_bounded(loop, SAFETY_NS);
    int ran = race.ran;
    assert_int_equal(coil_loop_close(loop), 0);
    long ok = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i].thread, NULL), 0);
        ok += t[i].ok;
    }
    assert_false(timed_out);
    assert_true(ran >= 1000);
    for (int i = 0; i < N; i++) {
        assert_true(t[i].saw_ebadf);
        assert_int_equal(t[i].other_error, 0);
        assert_false(t[i].timed_out);
    }
    assert_true(ok >= ran);
    assert_int_equal(coil_loop_run_forever(loop), -EBADF);
    assert_int_equal(race.ran, ran);
    assert_int_equal(race.ran_after_close, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_wakes_loop_asleep_without_timers),
        TEST(test_wakes_loop_asleep_with_timer),
        TEST(test_many_threads),
        TEST(test_calls_from_loop_thread),
        TEST(test_loop_thread_one_fifo),
        TEST(test_closed_loop),
        TEST(test_pending_calls_dropped_at_close),
        TEST(test_bad_arguments),
        TEST(test_alloc_failure),
        TEST(test_wake_write_fails),
#ifdef __linux__
        TEST_NOLOOP(test_eventfd_fails),
        TEST_NOLOOP(test_eventfd_missing_falls_back_to_pipe),
        TEST_NOLOOP(test_pipe_channel_many_threads),
        TEST_NOLOOP(test_pipe_fallback_fails),
#endif
        TEST(test_close_while_threads_call),
    };
    /* Faults of epoll_ctl exist only on epoll: not registered elsewhere. */
    const struct CMUnitTest epoll_tests[] = {
        TEST_NOLOOP(test_wake_registration_fails),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += TEST_RUN_IF(TEST_ON_EPOLL, "it injects an epoll_ctl fault",
                          epoll_tests);
    return failed;
}
