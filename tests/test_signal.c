/* SPDX-License-Identifier: MIT */
/*
 * test_signal.c - coil/signal.h: handlers called once per delivery from
 * the ready queue (never inside the signal handler), replacing and
 * removing them, the dispositions put back (on remove, on the last wait,
 * on loop close), bad arguments, closed loops, one loop per signal,
 * coil_signal_wait (the signal, several waiters, cancellation, a timeout
 * scope), a storm of signals from another thread while the loop runs
 * callbacks and tasks, a signal that lands on a thread other than the
 * loop's, allocation and syscall failures, and the internal hook the
 * runner uses for SIGINT (signal_internal.h).
 *
 * Callbacks and tasks only record; every assertion runs on the main
 * stack. The signals used are SIGUSR1 and SIGUSR2 (and SIGWINCH and SIGURG,
 * whose default is to be ignored): a test that checks that a disposition
 * went back to SIG_DFL never raises the signal afterwards. Runs under
 * TSan too.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#include <sys/wait.h>
#endif

#include "helpers.h"
#include "signal_internal.h"

#define SAFETY_NS (5 * COIL_SEC)

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static struct sigaction disp(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    assert_int_equal(sigaction(sig, NULL, &sa), 0);
    return sa;
}

/* Whether sig's disposition is the plain handler h (SIG_DFL, SIG_IGN). */
static bool disp_is(int sig, void (*h)(int))
{
    struct sigaction sa = disp(sig);
    return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == h;
}

/* Whether coil's handler is in (a plain handler, neither SIG_DFL nor
 * SIG_IGN: the tests install no plain handler of their own). */
static bool disp_is_coil(int sig)
{
    struct sigaction sa = disp(sig);
    return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler != SIG_DFL &&
           sa.sa_handler != SIG_IGN;
}

static void set_disp(int sig, void (*h)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(sig, &sa, NULL), 0);
}

/* A callback that records each call. */
struct rec {
    coil_loop_t *loop;
    int sig;
    int calls;
    int target;          /* spaced: send again until this many calls */
    int stop_at;         /* stop the loop at this many calls (0: never) */
    int depth;           /* > 0 while in the callback */
    bool reentered;      /* called inside itself (inside raise) */
    bool wrong_thread;
    bool use_kill;       /* alternate kill(getpid()) and raise() */
    int send_errors;
    pthread_t thread;
};

static struct rec rec_make(coil_loop_t *loop, int sig)
{
    return (struct rec){.loop = loop, .sig = sig, .thread = pthread_self()};
}

static void rec_send(struct rec *r)
{
    int e = r->use_kill ? kill(getpid(), r->sig) : raise(r->sig);
    r->use_kill = !r->use_kill;
    if (e)
        r->send_errors++;
}

static void rec_enter(struct rec *r)
{
    if (r->depth++)
        r->reentered = true;
    if (!pthread_equal(pthread_self(), r->thread))
        r->wrong_thread = true;
    r->calls++;
}

static void rec_cb(void *arg)
{
    struct rec *r = arg;
    rec_enter(r);
    if (r->stop_at && r->calls == r->stop_at)
        coil_loop_stop(r->loop);
    r->depth--;
}

/* Send the next signal from inside the callback until target calls, then
 * stop the loop a little later (a call too many would show). */
static void spaced_cb(void *arg)
{
    struct rec *r = arg;
    rec_enter(r);
    if (r->calls < r->target)
        rec_send(r);
    else if (r->calls == r->target)
        coil_loop_call_later(r->loop, 20 * COIL_MSEC, test_stop_cb, r->loop,
                             NULL);
    r->depth--;
}

/* A callback that sends r->sig once. */
static void send_cb(void *arg)
{
    rec_send(arg);
}

/* Raise sig from a callback, n times in a row. */
struct burst {
    int sig;
    int n;
    int errors;
};

static void burst_cb(void *arg)
{
    struct burst *b = arg;
    for (int i = 0; i < b->n; i++)
        if (raise(b->sig))
            b->errors++;
}

/* Run loop until stopped or SAFETY_NS; fails the test on the safety. */
static void run_to_stop(coil_loop_t *loop)
{
    assert_false(test_run_bounded(loop, SAFETY_NS));
}

/* Run loop for about ns of real time (nothing else stops it). */
static void run_for(coil_loop_t *loop, int64_t ns)
{
    assert_true(test_run_bounded(loop, ns));
}

/* ------------------------------------------------------------------ */
/* Handlers                                                             */
/* ------------------------------------------------------------------ */

/* Deliveries spaced out (each sent after the previous was handled) are
 * each seen exactly once, from the loop, never inside raise(). */
static void test_handler_once_per_delivery(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    r.target = 100;
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, spaced_cb, &r),
                     0);
    assert_true(disp_is_coil(SIGUSR1));
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &r, NULL), 0);
    run_to_stop(loop);
    assert_int_equal(r.calls, 100);
    assert_int_equal(r.send_errors, 0);
    assert_false(r.reentered);
    assert_false(r.wrong_thread);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* Three deliveries before the loop looks: three calls (raise delivers
 * each before it returns, so the kernel merges none of them). */
static void test_handler_calls_per_count(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    r.stop_at = 3;
    struct burst b = {SIGUSR1, 3, 0};
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r),
                     0);
    assert_int_equal(coil_loop_call_soon(loop, burst_cb, &b, NULL), 0);
    run_to_stop(loop);
    run_for(loop, 20 * COIL_MSEC);
    assert_int_equal(b.errors, 0);
    assert_int_equal(r.calls, 3);
    assert_false(r.reentered);
}

/* Adding again replaces the callback; only the new one runs. */
static void test_handler_replace(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec a = rec_make(loop, SIGUSR1);
    struct rec b = rec_make(loop, SIGUSR1);
    b.stop_at = 1;
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &a),
                     0);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &b),
                     0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &a, NULL), 0);
    run_to_stop(loop);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
    /* One removal removes it: there is one handler per signal. */
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), -ENOENT);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* Two signals on one loop, each to its own callback. */
static void test_handler_two_signals(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec a = rec_make(loop, SIGUSR1);
    struct rec b = rec_make(loop, SIGUSR2);
    b.stop_at = 1;
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &a),
                     0);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &b),
                     0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &b, NULL), 0);
    run_to_stop(loop);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
    /* Removing one leaves the other. */
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR2), 0);
    assert_true(disp_is(SIGUSR2, SIG_DFL));
    assert_true(disp_is_coil(SIGUSR1));
    a.stop_at = 1;
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &a, NULL), 0);
    run_to_stop(loop);
    assert_int_equal(a.calls, 1);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
}

static void own_action(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
}

/* Remove puts back the disposition that was there before: SIG_IGN, and
 * a handler of the program's own with its flags. */
static void test_remove_restores_disposition(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    set_disp(SIGUSR1, SIG_IGN);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r),
                     0);
    bool installed = disp_is_coil(SIGUSR1);
    int removed = coil_loop_remove_signal_handler(loop, SIGUSR1);
    bool ignored = disp_is(SIGUSR1, SIG_IGN);

    struct sigaction own;
    memset(&own, 0, sizeof(own));
    own.sa_sigaction = own_action;
    own.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&own.sa_mask);
    sigaddset(&own.sa_mask, SIGWINCH);
    assert_int_equal(sigaction(SIGUSR2, &own, NULL), 0);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &r),
                     0);
    bool installed2 = disp_is_coil(SIGUSR2);
    int removed2 = coil_loop_remove_signal_handler(loop, SIGUSR2);
    struct sigaction back = disp(SIGUSR2);

    set_disp(SIGUSR1, SIG_DFL);
    set_disp(SIGUSR2, SIG_DFL);
    assert_true(installed);
    assert_int_equal(removed, 0);
    assert_true(ignored);
    assert_true(installed2);
    assert_int_equal(removed2, 0);
    assert_true(back.sa_flags & SA_SIGINFO);
    assert_true(back.sa_sigaction == own_action);
    assert_true(back.sa_flags & SA_NODEFER);
    assert_false(back.sa_flags & SA_RESTART);
    assert_true(sigismember(&back.sa_mask, SIGWINCH));
    assert_int_equal(r.calls, 0);
}

static void test_remove_none(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), -ENOENT);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &r),
                     0);
    /* A handler for another signal is not one for this. */
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), -ENOENT);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR2), 0);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR2), -ENOENT);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
    assert_true(disp_is(SIGUSR2, SIG_DFL));
}

/* A handler removes itself from its first call: the deliveries it was
 * still owed are dropped, the disposition goes back (SIG_IGN here, so
 * the later signals are ignored by the kernel). */
struct self_remove {
    struct rec r;
    int removed;
};

static void self_remove_cb(void *arg)
{
    struct self_remove *s = arg;
    rec_enter(&s->r);
    s->removed = coil_loop_remove_signal_handler(s->r.loop, s->r.sig);
    coil_loop_call_later(s->r.loop, 20 * COIL_MSEC, test_stop_cb, s->r.loop,
                         NULL);
    s->r.depth--;
}

static void test_handler_removes_itself(void **state)
{
    coil_loop_t *loop = test_loop(state);
    set_disp(SIGUSR1, SIG_IGN);
    struct self_remove s = {rec_make(loop, SIGUSR1), -1000};
    struct burst b = {SIGUSR1, 3, 0};
    assert_int_equal(
        coil_loop_add_signal_handler(loop, SIGUSR1, self_remove_cb, &s), 0);
    assert_int_equal(coil_loop_call_soon(loop, burst_cb, &b, NULL), 0);
    run_to_stop(loop);
    bool ignored = disp_is(SIGUSR1, SIG_IGN);
    /* Sent now, it is ignored: no handler, nothing queued. */
    assert_int_equal(raise(SIGUSR1), 0);
    run_for(loop, 10 * COIL_MSEC);
    set_disp(SIGUSR1, SIG_DFL);
    assert_int_equal(s.r.calls, 1);
    assert_int_equal(s.removed, 0);
    assert_true(ignored);
}

/* Removed and added again from its first call: the deliveries seen
 * before the removal are dropped, not handed to the new handler. */
struct readd {
    struct rec first, second;
    int removed, added;
};

static void readd_cb(void *arg)
{
    struct readd *d = arg;
    rec_enter(&d->first);
    d->removed = coil_loop_remove_signal_handler(d->first.loop, SIGUSR1);
    d->added = coil_loop_add_signal_handler(d->first.loop, SIGUSR1, rec_cb,
                                            &d->second);
    coil_loop_call_later(d->first.loop, 20 * COIL_MSEC, test_stop_cb,
                         d->first.loop, NULL);
    d->first.depth--;
}

static void test_handler_readded_drops_owed(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct readd d = {rec_make(loop, SIGUSR1), rec_make(loop, SIGUSR1), -1000,
                      -1000};
    struct burst b = {SIGUSR1, 3, 0};
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, readd_cb, &d),
                     0);
    assert_int_equal(coil_loop_call_soon(loop, burst_cb, &b, NULL), 0);
    run_to_stop(loop);
    /* The new handler hears what comes next. */
    d.second.stop_at = 1;
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &d.second, NULL), 0);
    run_to_stop(loop);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_int_equal(b.errors, 0);
    assert_int_equal(d.removed, 0);
    assert_int_equal(d.added, 0);
    assert_int_equal(d.first.calls, 1);
    assert_int_equal(d.second.calls, 1);
}

static void test_bad_arguments(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    assert_int_equal(coil_loop_add_signal_handler(NULL, SIGUSR1, rec_cb, &r),
                     -EINVAL);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, NULL, &r),
                     -EINVAL);
    const int bad[] = {0,       -1,      NSIG,    NSIG + 1, 1000,
                       SIGKILL, SIGSTOP, SIGSEGV, SIGBUS,   SIGFPE,
                       SIGILL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(coil_loop_add_signal_handler(loop, bad[i], rec_cb, &r),
                         -EINVAL);
        assert_int_equal(coil_loop_remove_signal_handler(loop, bad[i]),
                         -EINVAL);
        assert_int_equal(coil_signal_wait(bad[i]), -EINVAL);
    }
    assert_int_equal(coil_loop_remove_signal_handler(NULL, SIGUSR1), -EINVAL);
    /* The numbers the C library keeps for itself: sigaction refuses
     * them, and nothing is left behind (the leak gate). */
#ifdef __GLIBC__
    assert_int_equal(coil_loop_add_signal_handler(loop, 32, rec_cb, &r),
                     -EINVAL);
    assert_int_equal(coil_loop_remove_signal_handler(loop, 32), -ENOENT);
#endif
    /* Outside a task, the wait refuses. */
    assert_int_equal(coil_signal_wait(SIGUSR1), -EPERM);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
    assert_int_equal(r.calls, 0);
}

static void test_closed_loop(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    assert_int_equal(coil_loop_close(loop), 0);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r),
                     -EBADF);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), -ENOENT);
    assert_int_equal(
        coil__signal_add_internal(loop, SIGUSR1, rec_cb, &r, 0), -EBADF);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* ------------------------------------------------------------------ */
/* One loop per signal                                                  */
/* ------------------------------------------------------------------ */

struct waiter {
    int sig;
    int result;
    bool done;
    bool coil_in; /* coil's handler was in while the task ran */
};

static int wait_task(void *arg)
{
    struct waiter *w = arg;
    w->result = coil_signal_wait(w->sig);
    w->done = true;
    return w->result < 0 ? w->result : 0;
}

static void test_busy_second_loop(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_loop_t *loop2;
    assert_int_equal(coil_loop_new(&loop2), 0);
    struct rec a = rec_make(loop, SIGUSR1);
    struct rec b = rec_make(loop2, SIGUSR1);
    b.stop_at = 1;
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &a),
                     0);
    int busy = coil_loop_add_signal_handler(loop2, SIGUSR1, rec_cb, &b);
    int busy_internal = coil__signal_add_internal(loop2, SIGUSR1, rec_cb, &b,
                                                  COIL__SIGNAL_IF_DEFAULT);
    struct waiter w = {SIGUSR1, -1000, false, false};
    int busy_wait = test_run_task(loop2, wait_task, &w);
    /* Another signal is free for the second loop meanwhile. */
    int other = coil_loop_add_signal_handler(loop2, SIGUSR2, rec_cb, &b);
    int removed_other = coil_loop_remove_signal_handler(loop2, SIGUSR2);
    /* Once the first loop lets go, the second may take it. */
    int removed = coil_loop_remove_signal_handler(loop, SIGUSR1);
    int taken = coil_loop_add_signal_handler(loop2, SIGUSR1, rec_cb, &b);
    int busy_back = coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &a);
    if (taken == 0)
        assert_int_equal(coil_loop_call_soon(loop2, send_cb, &b, NULL), 0);
    if (taken == 0)
        run_to_stop(loop2);
    coil_loop_unref(loop2); /* closes: lets SIGUSR1 go */
    int after_close = coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &a);
    int removed_last = coil_loop_remove_signal_handler(loop, SIGUSR1);

    assert_int_equal(busy, -EBUSY);
    assert_int_equal(busy_internal, -EBUSY);
    assert_int_equal(busy_wait, -EBUSY);
    assert_int_equal(w.result, -EBUSY);
    assert_int_equal(other, 0);
    assert_int_equal(removed_other, 0);
    assert_int_equal(removed, 0);
    assert_int_equal(taken, 0);
    assert_int_equal(busy_back, -EBUSY);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(after_close, 0);
    assert_int_equal(removed_last, 0);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* Two loops on two threads take and let go of the same signals over and
 * over: ownership moves under the lock, the loser gets -EBUSY. */
struct churn {
    int ok, busy, other;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    coil_loop_t *loop;
    if (coil_loop_new(&loop)) {
        c->other++;
        return NULL;
    }
    struct rec r = rec_make(loop, SIGWINCH);
    for (int i = 0; i < 2000; i++) {
        int sig = i % 2 ? SIGWINCH : SIGURG;
        int err = coil_loop_add_signal_handler(loop, sig, rec_cb, &r);
        if (err == 0) {
            c->ok++;
            if (coil_loop_remove_signal_handler(loop, sig) != 0)
                c->other++;
        } else if (err == -EBUSY) {
            c->busy++;
        } else {
            c->other++;
        }
    }
    coil_loop_unref(loop);
    return NULL;
}

static void test_two_threads_churn(void **state)
{
    (void)state;
    struct churn c[2] = {{0, 0, 0}, {0, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn_main, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c[i].other, 0);
        assert_int_equal(c[i].ok + c[i].busy, 2000);
        assert_true(c[i].ok > 0);
    }
    assert_true(disp_is(SIGWINCH, SIG_DFL));
    assert_true(disp_is(SIGURG, SIG_DFL));
}

/* ------------------------------------------------------------------ */
/* Loop close                                                           */
/* ------------------------------------------------------------------ */

/* Closing the loop removes its handlers and waits and puts every
 * disposition back; deliveries it had not dispatched are dropped. */
static void test_close_restores(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    coil_loop_t *loop = test_loop(state);
    set_disp(SIGUSR2, SIG_IGN);
    struct rec a = rec_make(loop, SIGUSR1);
    struct rec b = rec_make(loop, SIGUSR2);
    struct waiter w = {SIGWINCH, -1000, false, false};
    coil_task_t *t;
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &a),
                     0);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &b),
                     0);
    assert_int_equal(coil_task_spawn(loop, wait_task, &w, &t), 0);
    run_for(loop, 10 * COIL_MSEC); /* the task waits */
    bool all_in = disp_is_coil(SIGUSR1) && disp_is_coil(SIGUSR2) &&
                  disp_is_coil(SIGWINCH);
    /* Delivered, never dispatched. */
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(raise(SIGUSR2), 0);
    struct exc_log log = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &log);
    assert_int_equal(coil_loop_close(loop), 0);
    bool back = disp_is(SIGUSR1, SIG_DFL) && disp_is(SIGUSR2, SIG_IGN) &&
                disp_is(SIGWINCH, SIG_DFL);
    bool done = coil_future_done(coil_task_future(t));
    coil_task_unref(t);
    set_disp(SIGUSR2, SIG_DFL);
    assert_true(all_in);
    assert_true(back);
    assert_true(done);
    assert_false(w.done); /* abandoned: never resumed */
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 0);
    /* Another loop may take the signals now. */
    coil_loop_t *loop2;
    assert_int_equal(coil_loop_new(&loop2), 0);
    assert_int_equal(coil_loop_add_signal_handler(loop2, SIGUSR1, rec_cb, &a),
                     0);
    coil_loop_unref(loop2);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* ------------------------------------------------------------------ */
/* coil_signal_wait                                                     */
/* ------------------------------------------------------------------ */

static void test_wait_returns_signal(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct waiter w = {SIGUSR1, -1000, false, false};
    struct rec s = rec_make(loop, SIGUSR1);
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, wait_task, &w, &t), 0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &s, NULL), 0);
    assert_int_equal(test_run_done(loop, t), 0);
    coil_task_unref(t);
    assert_true(w.done);
    assert_int_equal(w.result, SIGUSR1);
    assert_int_equal(s.send_errors, 0);
    /* The wait was the only user: the disposition is back. */
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* Each delivery wakes every task waiting then. */
static void test_wait_two_waiters(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct waiter w1 = {SIGUSR2, -1000, false, false};
    struct waiter w2 = {SIGUSR2, -1000, false, false};
    struct rec s = rec_make(loop, SIGUSR2);
    coil_task_t *t1, *t2;
    assert_int_equal(coil_task_spawn(loop, wait_task, &w1, &t1), 0);
    assert_int_equal(coil_task_spawn(loop, wait_task, &w2, &t2), 0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &s, NULL), 0);
    assert_int_equal(test_run_done(loop, t1), 0);
    assert_int_equal(test_run_done(loop, t2), 0);
    coil_task_unref(t1);
    coil_task_unref(t2);
    assert_int_equal(w1.result, SIGUSR2);
    assert_int_equal(w2.result, SIGUSR2);
    assert_true(disp_is(SIGUSR2, SIG_DFL));
}

/* A handler and a waiter see the same delivery. */
static void test_wait_with_handler(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct waiter w = {SIGUSR1, -1000, false, false};
    struct rec r = rec_make(loop, SIGUSR1);
    coil_task_t *t;
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r),
                     0);
    assert_int_equal(coil_task_spawn(loop, wait_task, &w, &t), 0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &r, NULL), 0);
    assert_int_equal(test_run_done(loop, t), 0);
    run_for(loop, 10 * COIL_MSEC);
    coil_task_unref(t);
    bool still_in = disp_is_coil(SIGUSR1); /* the handler is still there */
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_int_equal(w.result, SIGUSR1);
    assert_int_equal(r.calls, 1);
    assert_true(still_in);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* A task waits for the same signal again and again: each delivery,
 * spaced, returns one wait. */
struct repeat {
    coil_loop_t *loop;
    int sig;
    int n;
    int got;
    int bad;
};

static int repeat_task(void *arg)
{
    struct repeat *rp = arg;
    struct rec s = rec_make(rp->loop, rp->sig);
    for (int i = 0; i < rp->n; i++) {
        if (coil_loop_call_soon(rp->loop, send_cb, &s, NULL))
            rp->bad++;
        int r = coil_signal_wait(rp->sig);
        if (r == rp->sig)
            rp->got++;
        else
            rp->bad++;
    }
    return 0;
}

static void test_wait_repeated(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct repeat rp = {loop, SIGUSR1, 50, 0, 0};
    assert_int_equal(test_run_task(loop, repeat_task, &rp), 0);
    assert_int_equal(rp.got, 50);
    assert_int_equal(rp.bad, 0);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* Cancelling a wait: -ECANCELED, and the disposition is back when it was
 * the signal's last user (SIG_IGN here), not while a handler remains. */
struct cancel_probe {
    coil_task_t *task;
    int sig;
    bool coil_in;
    int ret;
};

static void cancel_probe_cb(void *arg)
{
    struct cancel_probe *c = arg;
    c->coil_in = disp_is_coil(c->sig);
    c->ret = coil_task_cancel(c->task);
}

static void test_wait_cancel(void **state)
{
    coil_loop_t *loop = test_loop(state);
    set_disp(SIGUSR1, SIG_IGN);
    struct waiter w = {SIGUSR1, -1000, false, false};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, wait_task, &w, &t), 0);
    struct cancel_probe c = {t, SIGUSR1, false, -1000};
    assert_int_equal(
        coil_loop_call_later(loop, 5 * COIL_MSEC, cancel_probe_cb, &c, NULL),
        0);
    int outcome = test_run_done(loop, t);
    coil_task_unref(t);
    bool back = disp_is(SIGUSR1, SIG_IGN);

    /* With a handler too: the handler keeps the signal. */
    struct rec r = rec_make(loop, SIGUSR1);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r),
                     0);
    struct waiter w2 = {SIGUSR1, -1000, false, false};
    assert_int_equal(coil_task_spawn(loop, wait_task, &w2, &t), 0);
    struct cancel_probe c2 = {t, SIGUSR1, false, -1000};
    assert_int_equal(
        coil_loop_call_later(loop, 5 * COIL_MSEC, cancel_probe_cb, &c2, NULL),
        0);
    int outcome2 = test_run_done(loop, t);
    coil_task_unref(t);
    bool kept = disp_is_coil(SIGUSR1);
    int removed = coil_loop_remove_signal_handler(loop, SIGUSR1);
    bool back2 = disp_is(SIGUSR1, SIG_IGN);
    set_disp(SIGUSR1, SIG_DFL);

    assert_int_equal(outcome, -ECANCELED);
    assert_int_equal(w.result, -ECANCELED);
    assert_true(c.coil_in);
    assert_int_equal(c.ret, 0);
    assert_true(back);
    assert_int_equal(outcome2, -ECANCELED);
    assert_int_equal(w2.result, -ECANCELED);
    assert_true(kept);
    assert_int_equal(removed, 0);
    assert_true(back2);
    assert_int_equal(r.calls, 0);
}

/* A cancel pending when the wait starts is delivered at once, and takes
 * nothing. */
static int cancel_first_task(void *arg)
{
    struct waiter *w = arg;
    coil_task_cancel(coil_current_task());
    w->result = coil_signal_wait(w->sig);
    w->coil_in = disp_is_coil(w->sig);
    w->done = true;
    return 0;
}

static void test_wait_cancel_pending(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct waiter w = {SIGUSR1, -1000, false, true};
    assert_int_equal(test_run_task(loop, cancel_first_task, &w), 0);
    assert_int_equal(w.result, -ECANCELED);
    assert_false(w.coil_in);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* The delivery woke the task, and a cancel came before it ran (the test
 * hook of the task layer cancels it exactly there): the signal is
 * returned, the cancel goes to the next wait. */
struct race {
    coil_task_t *task;
    int first, second;
    int cancels;
};

static int race_task(void *arg)
{
    struct race *r = arg;
    r->first = coil_signal_wait(SIGUSR1);
    r->second = coil_yield();
    return 0;
}

static void race_hook(struct coil_task *t, enum coil__task_event ev,
                      void *arg)
{
    struct race *r = arg;
    if (t == r->task && ev == COIL__TASK_RESUMING && r->cancels == 0) {
        r->cancels++;
        coil_task_cancel(t);
    }
}

static void test_wait_result_wins_over_cancel(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct race r = {NULL, -1000, -1000, 0};
    struct rec s = rec_make(loop, SIGUSR1);
    assert_int_equal(coil_task_spawn(loop, race_task, &r, &r.task), 0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &s, NULL), 0);
    coil__task_test_hook = race_hook;
    coil__task_test_hook_arg = &r;
    int outcome = test_run_done(loop, r.task);
    coil__task_test_hook = NULL;
    coil__task_test_hook_arg = NULL;
    coil_task_unref(r.task);
    assert_int_equal(outcome, 0);
    assert_int_equal(r.cancels, 1);
    assert_int_equal(r.first, SIGUSR1);
    assert_int_equal(r.second, -ECANCELED);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* A timeout scope around the wait gives -ETIMEDOUT. */
struct timed {
    int result;
    bool coil_in;
};

static int timed_task(void *arg)
{
    struct timed *tm = arg;
    coil_timeout_t *scope;
    int err = coil_timeout_begin(10 * COIL_MSEC, &scope);
    if (err) {
        tm->result = err;
        return 0;
    }
    err = coil_signal_wait(SIGUSR2);
    tm->result = coil_timeout_end(scope, err);
    tm->coil_in = disp_is_coil(SIGUSR2);
    return 0;
}

static void test_wait_timeout(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct timed tm = {-1000, true};
    assert_int_equal(test_run_task(loop, timed_task, &tm), 0);
    assert_int_equal(tm.result, -ETIMEDOUT);
    assert_false(tm.coil_in);
    assert_true(disp_is(SIGUSR2, SIG_DFL));
}

/* ------------------------------------------------------------------ */
/* A storm                                                              */
/* ------------------------------------------------------------------ */

enum { STORM = 10000, STORM_BATCH = 100 };

struct storm {
    coil_loop_t *loop;
    pthread_t loop_thread;
    atomic_int sent;
    atomic_int batches;    /* batches of STORM_BATCH the sender finished */
    int send_errors;
    atomic_bool done;      /* the sender has finished */
    int chain;             /* call_soon hops meanwhile */
    int rests;             /* times the loop rested for the sender */
    int seen;              /* batches when the chain last looked */
    bool resting;          /* the loop sleeps until the next batch */
    int yields;            /* task yields meanwhile */
    int waits, bad_waits;  /* a task's waits for the signal */
    coil_task_t *waiter;
};

static void *storm_main(void *arg)
{
    struct storm *s = arg;
    for (int i = 0; i < STORM; i++) {
        int e = i % 2 ? kill(getpid(), SIGUSR2)
                      : pthread_kill(s->loop_thread, SIGUSR2);
        if (e)
            s->send_errors++;
        else
            atomic_fetch_add(&s->sent, 1);
        if (i % STORM_BATCH == STORM_BATCH - 1)
            atomic_fetch_add(&s->batches, 1);
    }
    atomic_store(&s->done, true);
    return NULL;
}

/*
 * A call_soon chain and tasks taking turns (yield): the loop is busy with
 * callbacks and task switches while the signals come. Every 256 hops, if
 * the sender has not finished a batch since the last look, the loop
 * rests (the chain and the tasks sleep 200 us at a time) until it has:
 * under valgrind, whose threads take turns on an unfair lock, a loop
 * that never sleeps starves the sender.
 */
static void chain_cb(void *arg)
{
    struct storm *s = arg;
    if (atomic_load(&s->done)) {
        s->resting = false;
        coil_loop_call_later(s->loop, 50 * COIL_MSEC, test_stop_cb, s->loop,
                             NULL);
        return;
    }
    if (!s->resting)
        s->chain++;
    if (s->resting || s->chain % 256 == 0) {
        int b = atomic_load(&s->batches);
        if (!s->resting && b == s->seen)
            s->rests++;
        s->resting = b == s->seen;
        s->seen = b;
    }
    if (s->resting)
        coil_loop_call_later(s->loop, 200 * COIL_USEC, chain_cb, s, NULL);
    else
        coil_loop_call_soon(s->loop, chain_cb, s, NULL);
}

static int yield_task(void *arg)
{
    struct storm *s = arg;
    while (!atomic_load(&s->done)) {
        int err = s->resting ? coil_sleep(200 * COIL_USEC) : coil_yield();
        if (err)
            return 0;
        s->yields += !s->resting;
    }
    return 0;
}

static int storm_wait_task(void *arg)
{
    struct storm *s = arg;
    for (;;) {
        int r = coil_signal_wait(SIGUSR2);
        if (r == -ECANCELED)
            return 0;
        if (r == SIGUSR2)
            s->waits++;
        else
            s->bad_waits++;
    }
}

static void test_storm(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct storm s = {.loop = loop, .loop_thread = pthread_self()};
    atomic_init(&s.sent, 0);
    atomic_init(&s.batches, 0);
    atomic_init(&s.done, false);
    struct rec r = rec_make(loop, SIGUSR2);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR2, rec_cb, &r),
                     0);
    coil_task_t *y[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_task_spawn(loop, yield_task, &s, &y[i]), 0);
    assert_int_equal(coil_task_spawn(loop, storm_wait_task, &s, &s.waiter), 0);
    assert_int_equal(coil_loop_call_soon(loop, chain_cb, &s, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, storm_main, &s), 0);
    bool safety = test_run_bounded(loop, 30 * COIL_SEC);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* Drain what is still in flight, until nothing more comes. */
    int before;
    do {
        before = r.calls;
        run_for(loop, 30 * COIL_MSEC);
    } while (r.calls != before);
    int storm_calls = r.calls;
    int storm_waits = s.waits;

    /* No wake-up was lost: one more signal, spaced, is seen once. */
    r.stop_at = storm_calls + 1;
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &r, NULL), 0);
    run_to_stop(loop);
    run_for(loop, 20 * COIL_MSEC);
    int after_calls = r.calls;

    coil_task_cancel(s.waiter);
    test_run_done(loop, s.waiter);
    coil_task_unref(s.waiter);
    for (int i = 0; i < 3; i++) {
        test_run_done(loop, y[i]);
        coil_task_unref(y[i]);
    }
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR2), 0);

    int sent = atomic_load(&s.sent);
    assert_false(safety);
    assert_int_equal(s.send_errors, 0);
    assert_int_equal(sent, STORM);
    assert_true(storm_calls >= 1);
    assert_true(storm_calls <= sent);
    assert_true(storm_waits >= 1);
    assert_true(storm_waits <= storm_calls);
    assert_int_equal(s.bad_waits, 0);
    assert_true(s.chain > 0);
    assert_true(s.yields > 0);
    assert_int_equal(after_calls, storm_calls + 1);
    assert_false(r.reentered);
    assert_false(r.wrong_thread);
    assert_true(disp_is(SIGUSR2, SIG_DFL));
    print_message("[          ] storm: %d sent, %d calls, %d waits, %d "
                  "hops, %d yields, %d rests\n",
                  sent, storm_calls, storm_waits, s.chain, s.yields, s.rests);
}

/* ------------------------------------------------------------------ */
/* A signal that lands on another thread                                */
/* ------------------------------------------------------------------ */

struct other {
    atomic_bool ready;
    atomic_bool quit;
    int unblock_err;
};

static void *other_main(void *arg)
{
    struct other *o = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    o->unblock_err = pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    atomic_store(&o->ready, true);
    while (!atomic_load(&o->quit))
        sleep_us(1000);
    return NULL;
}

struct kill_other {
    pthread_t th;
    int err;
};

static void kill_other_cb(void *arg)
{
    struct kill_other *k = arg;
    k->err = pthread_kill(k->th, SIGUSR1);
}

/* The loop's thread blocks SIGUSR1; another thread has it unblocked and
 * receives it: the loop is woken and calls the handler all the same. */
static void test_delivered_to_other_thread(void **state)
{
    coil_loop_t *loop = test_loop(state);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
    struct other o;
    atomic_init(&o.ready, false);
    atomic_init(&o.quit, false);
    o.unblock_err = -1;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, other_main, &o), 0);
    while (!atomic_load(&o.ready))
        sleep_us(1000);
    struct rec r = rec_make(loop, SIGUSR1);
    r.stop_at = 1;
    struct kill_other k = {th, -1};
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r),
                     0);
    assert_int_equal(coil_loop_call_soon(loop, kill_other_cb, &k, NULL), 0);
    bool safety = test_run_bounded(loop, SAFETY_NS);
    atomic_store(&o.quit, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    sigset_t pending;
    sigemptyset(&pending);
    assert_int_equal(sigpending(&pending), 0);
    bool pending_here = sigismember(&pending, SIGUSR1);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
    assert_false(safety);
    assert_int_equal(o.unblock_err, 0);
    assert_int_equal(k.err, 0);
    assert_int_equal(r.calls, 1);
    assert_false(r.wrong_thread);
    assert_false(pending_here);
}

/* ------------------------------------------------------------------ */
/* Failures                                                             */
/* ------------------------------------------------------------------ */

/* Every allocation of the first add fails in turn: -ENOMEM, nothing
 * installed, no fd or block left. */
static void test_alloc_failure_sweep(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    long fds = test_fd_count();
    long live = test_alloc_live();
    int failures = 0, wrong = 0, left = 0;
    int err = -1;
    for (long n = 1; n < 100; n++) {
        test_alloc_fail_after(n);
        err = coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r);
        bool injected = test_alloc_failed();
        test_alloc_fail_after(0);
        if (!injected)
            break;
        failures++;
        if (err != -ENOMEM)
            wrong++;
        if (!disp_is(SIGUSR1, SIG_DFL) || test_fd_count() != fds ||
            test_alloc_live() != live)
            left++;
    }
    assert_int_equal(err, 0);
    assert_true(failures >= 1);
    assert_int_equal(wrong, 0);
    assert_int_equal(left, 0);
    /* The one that went through works. */
    r.stop_at = 1;
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &r, NULL), 0);
    run_to_stop(loop);
    assert_int_equal(r.calls, 1);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_int_equal(test_fd_count(), fds);
}

/* The same for a wait, in a task. */
struct alloc_wait {
    struct rec send;
    int results[100];
    int n;
    bool coil_left;
};

static int alloc_wait_task(void *arg)
{
    struct alloc_wait *aw = arg;
    for (long n = 1; n < 100; n++) {
        /* Sent once the task suspends: it wakes the wait that went
         * through. (Those queued by waits that failed find the signal
         * ignored, or count towards the same wake.) */
        coil_loop_call_soon(coil_running_loop(), send_cb, &aw->send, NULL);
        test_alloc_fail_after(n);
        int r = coil_signal_wait(SIGUSR1);
        bool injected = test_alloc_failed();
        test_alloc_fail_after(0);
        aw->results[aw->n++] = r;
        if (!injected)
            break;
        if (!disp_is(SIGUSR1, SIG_IGN))
            aw->coil_left = true;
    }
    return 0;
}

static void test_alloc_failure_wait(void **state)
{
    coil_loop_t *loop = test_loop(state);
    set_disp(SIGUSR1, SIG_IGN);
    struct alloc_wait aw = {rec_make(loop, SIGUSR1), {0}, 0, false};
    assert_int_equal(test_run_task(loop, alloc_wait_task, &aw), 0);
    set_disp(SIGUSR1, SIG_DFL);
    assert_true(aw.n >= 2);
    for (int i = 0; i < aw.n - 1; i++)
        assert_int_equal(aw.results[i], -ENOMEM);
    assert_int_equal(aw.results[aw.n - 1], SIGUSR1);
    assert_false(aw.coil_left);
}

#ifdef __linux__
/* The channel's eventfd cannot be made: the error, nothing installed;
 * no eventfd here at all: a pipe, which works the same. */
static void test_channel_failures(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec r = rec_make(loop, SIGUSR1);
    long fds = test_fd_count();
    coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -EMFILE);
    int emfile = coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r);
    bool untouched = disp_is(SIGUSR1, SIG_DFL) && test_fd_count() == fds;

    coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -ENOSYS);
    coil_test_fail(COIL_TEST_PIPE, 1, 1, -ENFILE);
    int enfile = coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &r);
    bool untouched2 = disp_is(SIGUSR1, SIG_DFL) && test_fd_count() == fds;

    coil_test_fail(COIL_TEST_WAKEUP, 1, 1, -ENOSYS);
    int piped = coil_loop_add_signal_handler(loop, SIGUSR1, spaced_cb, &r);
    bool two_fds = test_fd_count() == fds + 2;
    coil_test_reset_faults();
    r.target = 20;
    if (piped == 0) {
        assert_int_equal(coil_loop_call_soon(loop, send_cb, &r, NULL), 0);
        run_to_stop(loop);
    }
    int removed = coil_loop_remove_signal_handler(loop, SIGUSR1);

    assert_int_equal(emfile, -EMFILE);
    assert_true(untouched);
    assert_int_equal(enfile, -ENFILE);
    assert_true(untouched2);
    assert_int_equal(piped, 0);
    assert_true(two_fds);
    assert_int_equal(r.calls, 20);
    assert_int_equal(removed, 0);
    assert_int_equal(test_fd_count(), fds);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}
#endif

/* ------------------------------------------------------------------ */
/* The internal hook (signal_internal.h)                                */
/* ------------------------------------------------------------------ */

/*
 * Whether the kernel's own disposition of sig is SIG_DFL. Past the C
 * library and any sanitizer: TSan keeps a table of the program's
 * sigactions and answers sigaction() from it, and does not see the
 * kernel put SIG_DFL back for SA_RESETHAND.
 */
static bool kernel_disp_is_default(int sig)
{
#ifdef __linux__
    unsigned long k[8] = {0}; /* struct kernel_sigaction: handler first */
    if (syscall(SYS_rt_sigaction, sig, NULL, k, 8) != 0)
        return false;
    return k[0] == (unsigned long)(uintptr_t)SIG_DFL;
#else
    return disp_is(sig, SIG_DFL);
#endif
}

static bool disp_resethand(int sig)
{
    return (disp(sig).sa_flags & SA_RESETHAND) != 0;
}

/* One shot over the default: the kernel puts SIG_DFL back as it
 * delivers, the hook runs once, and is spent. */
struct once_probe {
    coil_loop_t *loop;
    bool dfl_after_raise;
    int raise_err;
};

static void once_raise_cb(void *arg)
{
    struct once_probe *p = arg;
    p->raise_err = raise(SIGUSR1);
    p->dfl_after_raise = kernel_disp_is_default(SIGUSR1);
}

static void test_internal_once(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec h = rec_make(loop, SIGUSR1);
    h.stop_at = 1;
    int added = coil__signal_add_internal(
        loop, SIGUSR1, rec_cb, &h,
        COIL__SIGNAL_ONCE | COIL__SIGNAL_IF_DEFAULT);
    bool in = disp_is_coil(SIGUSR1) && disp_resethand(SIGUSR1);
    struct once_probe p = {loop, false, -1};
    assert_int_equal(coil_loop_call_soon(loop, once_raise_cb, &p, NULL), 0);
    run_to_stop(loop);
    run_for(loop, 10 * COIL_MSEC);
    int removed = coil__signal_remove_internal(loop, SIGUSR1);
    assert_int_equal(added, 0);
    assert_true(in);
    assert_int_equal(p.raise_err, 0);
    assert_true(p.dfl_after_raise);
    assert_int_equal(h.calls, 1);
    assert_int_equal(removed, -ENOENT);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
    assert_true(kernel_disp_is_default(SIGUSR1));
}

/* IF_DEFAULT leaves a program's own choice alone. */
static void test_internal_if_default(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec h = rec_make(loop, SIGUSR1);
    set_disp(SIGUSR1, SIG_IGN);
    int refused = coil__signal_add_internal(loop, SIGUSR1, rec_cb, &h,
                                            COIL__SIGNAL_ONCE |
                                                COIL__SIGNAL_IF_DEFAULT);
    bool ignored = disp_is(SIGUSR1, SIG_IGN);
    /* Without the flag it goes in, and puts SIG_IGN back on removal. */
    int added = coil__signal_add_internal(loop, SIGUSR1, rec_cb, &h, 0);
    bool in = disp_is_coil(SIGUSR1) && !disp_resethand(SIGUSR1);
    int removed = coil__signal_remove_internal(loop, SIGUSR1);
    bool back = disp_is(SIGUSR1, SIG_IGN);
    /* Over a user handler of the same loop, the default it would put
     * back is what counts. */
    set_disp(SIGUSR1, SIG_DFL);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &h),
                     0);
    int over_user = coil__signal_add_internal(
        loop, SIGUSR1, rec_cb, &h, COIL__SIGNAL_IF_DEFAULT);
    assert_int_equal(coil__signal_remove_internal(loop, SIGUSR1), 0);
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    assert_int_equal(refused, -EEXIST);
    assert_true(ignored);
    assert_int_equal(added, 0);
    assert_true(in);
    assert_int_equal(removed, 0);
    assert_true(back);
    assert_int_equal(over_user, 0);
    assert_int_equal(coil__signal_remove_internal(loop, SIGUSR1), -ENOENT);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* A user handler displaces the hook (and its SA_RESETHAND); when the
 * handler goes, the hook hears the signal again. */
static void test_internal_displaced(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec hook = rec_make(loop, SIGUSR1);
    struct rec user = rec_make(loop, SIGUSR1);
    user.stop_at = 1;
    assert_int_equal(coil__signal_add_internal(loop, SIGUSR1, rec_cb, &hook,
                                               COIL__SIGNAL_ONCE),
                     0);
    bool once_in = disp_resethand(SIGUSR1);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR1, rec_cb, &user),
                     0);
    bool lasting = disp_is_coil(SIGUSR1) && !disp_resethand(SIGUSR1);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &user, NULL), 0);
    run_to_stop(loop);
    run_for(loop, 10 * COIL_MSEC);
    int user_calls = user.calls, hook_calls = hook.calls;
    assert_int_equal(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    bool once_again = disp_is_coil(SIGUSR1) && disp_resethand(SIGUSR1);
    /* A waiting task displaces it too. */
    struct waiter w = {SIGUSR1, -1000, false, false};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, wait_task, &w, &t), 0);
    struct rec s = rec_make(loop, SIGUSR1);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &s, NULL), 0);
    assert_int_equal(test_run_done(loop, t), 0);
    coil_task_unref(t);
    run_for(loop, 10 * COIL_MSEC);
    int hook_calls2 = hook.calls;
    bool once_after_wait = disp_resethand(SIGUSR1);
    int removed = coil__signal_remove_internal(loop, SIGUSR1);

    assert_true(once_in);
    assert_true(lasting);
    assert_int_equal(user_calls, 1);
    assert_int_equal(hook_calls, 0);
    assert_true(once_again);
    assert_int_equal(w.result, SIGUSR1);
    assert_int_equal(hook_calls2, 0);
    assert_true(once_after_wait);
    assert_int_equal(removed, 0);
    assert_true(disp_is(SIGUSR1, SIG_DFL));
}

/* Without ONCE the hook runs per delivery and stays. */
static void test_internal_lasting(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rec h = rec_make(loop, SIGUSR2);
    h.target = 5;
    assert_int_equal(
        coil__signal_add_internal(loop, SIGUSR2, spaced_cb, &h, 0), 0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &h, NULL), 0);
    run_to_stop(loop);
    bool in = disp_is_coil(SIGUSR2);
    /* Replaced: the new hook gets the next one. */
    struct rec h2 = rec_make(loop, SIGUSR2);
    h2.stop_at = 1;
    assert_int_equal(coil__signal_add_internal(loop, SIGUSR2, rec_cb, &h2, 0),
                     0);
    assert_int_equal(coil_loop_call_soon(loop, send_cb, &h2, NULL), 0);
    run_to_stop(loop);
    int removed = coil__signal_remove_internal(loop, SIGUSR2);
    assert_int_equal(h.calls, 5);
    assert_true(in);
    assert_int_equal(h2.calls, 1);
    assert_int_equal(removed, 0);
    assert_true(disp_is(SIGUSR2, SIG_DFL));
}

/* ------------------------------------------------------------------ */
/* coil_run and Ctrl-C                                                  */
/* ------------------------------------------------------------------ */

struct ctrl_c {
    int sleep_r;
    bool cleaned;
};

static int ctrl_c_main(void *arg)
{
    struct ctrl_c *c = arg;
    raise(SIGINT); /* a Ctrl-C: seen by the loop at its next poll */
    c->sleep_r = coil_sleep(COIL_SEC);
    c->cleaned = true; /* the task unwinds as for any cancellation */
    return c->sleep_r;
}

/* The first SIGINT cancels coil_run's main task; SIGINT's default action
 * is back afterwards. */
static void test_run_first_sigint_cancels_main(void **state)
{
    (void)state;
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
    assert_int_equal(sigaction(SIGINT, &dfl, &old), 0);
    struct ctrl_c c = {0};
    assert_int_equal(coil_run(ctrl_c_main, &c), -ECANCELED);
    assert_int_equal(c.sleep_r, -ECANCELED);
    assert_true(c.cleaned);
    struct sigaction now;
    assert_int_equal(sigaction(SIGINT, NULL, &now), 0);
    assert_ptr_equal(now.sa_handler, SIG_DFL);
    sigaction(SIGINT, &old, NULL);
}

static int twice_main(void *arg)
{
    (void)arg;
    raise(SIGINT);
    raise(SIGINT); /* the default action: the process dies here */
    coil_sleep(COIL_SEC);
    return 0;
}

/* A second SIGINT takes the default action, even before the loop saw the
 * first (in a child: it dies of it). */
static void test_run_second_sigint_default(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        int r = coil_run(twice_main, NULL);
        _exit(r == 0 ? 0 : 3);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGINT);
}

/* A program that ignores SIGINT keeps ignoring it under coil_run. */
static int ignored_main(void *arg)
{
    (void)arg;
    raise(SIGINT);
    return coil_sleep(COIL_MSEC);
}

static void test_run_sigint_ignored_kept(void **state)
{
    (void)state;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    assert_int_equal(sigaction(SIGINT, &ign, &old), 0);
    assert_int_equal(coil_run(ignored_main, NULL), 0);
    struct sigaction now;
    assert_int_equal(sigaction(SIGINT, NULL, &now), 0);
    assert_ptr_equal(now.sa_handler, SIG_IGN);
    sigaction(SIGINT, &old, NULL);
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        TEST(test_handler_once_per_delivery),
        TEST(test_handler_calls_per_count),
        TEST(test_handler_replace),
        TEST(test_handler_two_signals),
        TEST(test_remove_restores_disposition),
        TEST(test_remove_none),
        TEST(test_handler_removes_itself),
        TEST(test_handler_readded_drops_owed),
        TEST(test_bad_arguments),
        TEST(test_closed_loop),
        TEST(test_busy_second_loop),
        TEST_NOLOOP(test_two_threads_churn),
        TEST(test_close_restores),
        TEST(test_wait_returns_signal),
        TEST(test_wait_two_waiters),
        TEST(test_wait_with_handler),
        TEST(test_wait_repeated),
        TEST(test_wait_cancel),
        TEST(test_wait_cancel_pending),
        TEST(test_wait_result_wins_over_cancel),
        TEST_FAKE(test_wait_timeout),
        TEST(test_storm),
        TEST(test_delivered_to_other_thread),
        TEST(test_alloc_failure_sweep),
        TEST(test_alloc_failure_wait),
#ifdef __linux__
        TEST(test_channel_failures),
#endif
        TEST(test_internal_once),
        TEST(test_internal_if_default),
        TEST(test_internal_displaced),
        TEST(test_internal_lasting),
        TEST_NOLOOP(test_run_first_sigint_cancels_main),
        TEST_NOLOOP(test_run_second_sigint_default),
        TEST_NOLOOP(test_run_sigint_ignored_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
