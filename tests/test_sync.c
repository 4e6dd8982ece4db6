/* SPDX-License-Identifier: MIT */
/*
 * test_sync.c - locks, events, conditions, semaphores and barriers
 * (coil/sync.h): what each does, first-come-first-served wake-ups and no
 * barging, cancellation in line and after a grant (given back: the lock
 * passes on, the permit is released, the notification goes to the next
 * waiter; a barrier's passage is kept), timeouts on every wait, a
 * cancellation pending at the call, misuse (outside a task, another
 * loop's task, a release by a task that does not hold the lock, bounds),
 * the last unref while tasks wait, refs after the last unref, a loop
 * closed while tasks wait, and allocation failures in every constructor.
 *
 * Tasks and callbacks only record what they see; the assertions run on
 * the main stack once the loop has returned. Time runs on the virtual
 * clock with autojump.
 */
#include <string.h>

#include "helpers.h"

/* ------------------------------------------------------------------ */
/* A small cast of tasks                                                */
/* ------------------------------------------------------------------ */

/* What every actor records: the order things happened in, across the
 * tasks of one test. */
struct log {
    char s[128];
    size_t n;
};

static void note(struct log *l, char c)
{
    if (l->n + 1 < sizeof(l->s))
        l->s[l->n++] = c;
}

/* An actor: waits on something (op), records its result, holds for a
 * while if it got it, and gives it back (release). */
struct actor {
    struct log *log;
    char name;        /* noted when it gets what it waited for */
    int (*op)(struct actor *a);
    void (*release)(struct actor *a);
    void *obj;
    int64_t hold;     /* sleep while holding */
    int r;            /* what op returned */
    bool done;
};

static int actor_body(void *arg)
{
    struct actor *a = arg;
    a->r = a->op(a);
    if (a->r >= 0) {
        note(a->log, a->name);
        if (a->hold)
            coil_sleep(a->hold);
        if (a->release)
            a->release(a);
    }
    a->done = true;
    return 0;
}

static coil_task_t *spawn_actor(coil_loop_t *loop, struct actor *a)
{
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, actor_body, a, &t), 0);
    return t;
}

static int op_lock(struct actor *a)
{
    return coil_lock_acquire(a->obj);
}

static void rel_lock(struct actor *a)
{
    if (coil_lock_release(a->obj))
        test_task_failure();
}

static int op_sem(struct actor *a)
{
    return coil_semaphore_acquire(a->obj);
}

static void rel_sem(struct actor *a)
{
    if (coil_semaphore_release(a->obj))
        test_task_failure();
}

static int op_event(struct actor *a)
{
    return coil_event_wait(a->obj);
}

static int op_barrier(struct actor *a)
{
    return coil_barrier_wait(a->obj);
}

/* Run until every task has finished (virtual time). */
static void run_all(coil_loop_t *loop)
{
    for (int i = 0; i < 100 && coil_loop_tasks(loop, NULL, 0) > 0; i++)
        test_run_bounded(loop, COIL_SEC);
    test_assert_no_tasks(loop);
}

static void unref_all(coil_task_t **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        coil_task_unref(t[i]);
}

/* ------------------------------------------------------------------ */
/* Lock                                                                 */
/* ------------------------------------------------------------------ */

struct basic_lock {
    coil_lock_t *l;
    int a, again, try_r, locked_in, rel, rel_again, locked_after;
};

static int basic_lock_body(void *arg)
{
    struct basic_lock *b = arg;
    b->a = coil_lock_acquire(b->l);
    b->locked_in = coil_lock_locked(b->l);
    b->again = coil_lock_acquire(b->l);
    b->try_r = coil_lock_try_acquire(b->l);
    b->rel = coil_lock_release(b->l);
    b->rel_again = coil_lock_release(b->l);
    b->locked_after = coil_lock_locked(b->l);
    return 0;
}

static void test_lock_basics(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct basic_lock b = {0};
    assert_int_equal(coil_lock_new(loop, &b.l), 0);
    assert_false(coil_lock_locked(b.l));
    assert_int_equal(test_run_task(loop, basic_lock_body, &b), 0);
    assert_int_equal(b.a, 0);
    assert_true(b.locked_in);
    assert_int_equal(b.again, -EDEADLK);
    assert_int_equal(b.try_r, -EDEADLK);
    assert_int_equal(b.rel, 0);
    assert_int_equal(b.rel_again, -EPERM);
    assert_false(b.locked_after);
    /* Outside a task. */
    assert_int_equal(coil_lock_acquire(b.l), -EPERM);
    assert_int_equal(coil_lock_try_acquire(b.l), -EPERM);
    assert_int_equal(coil_lock_release(b.l), -EPERM);
    coil_lock_unref(b.l);
}

static void test_sync_bad_arguments(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_lock_t *l = (coil_lock_t *)1;
    assert_int_equal(coil_lock_new(NULL, &l), -EINVAL);
    assert_null(l);
    assert_int_equal(coil_lock_new(loop, NULL), -EINVAL);
    assert_int_equal(coil_lock_acquire(NULL), -EINVAL);
    assert_int_equal(coil_lock_try_acquire(NULL), -EINVAL);
    assert_int_equal(coil_lock_release(NULL), -EINVAL);
    assert_false(coil_lock_locked(NULL));
    assert_null(coil_lock_ref(NULL));
    coil_lock_unref(NULL);

    coil_event_t *e;
    assert_int_equal(coil_event_new(NULL, &e), -EINVAL);
    assert_int_equal(coil_event_set(NULL), -EINVAL);
    assert_int_equal(coil_event_clear(NULL), -EINVAL);
    assert_int_equal(coil_event_wait(NULL), -EINVAL);
    assert_false(coil_event_is_set(NULL));

    coil_semaphore_t *s = (coil_semaphore_t *)1;
    assert_int_equal(coil_semaphore_new(loop, -1, &s), -EINVAL);
    assert_null(s);
    assert_int_equal(coil_semaphore_new_bounded(loop, -1, &s), -EINVAL);
    assert_int_equal(coil_semaphore_acquire(NULL), -EINVAL);
    assert_int_equal(coil_semaphore_try_acquire(NULL), -EINVAL);
    assert_int_equal(coil_semaphore_release(NULL), -EINVAL);
    assert_int_equal(coil_semaphore_value(NULL), 0);

    coil_barrier_t *b = (coil_barrier_t *)1;
    assert_int_equal(coil_barrier_new(loop, 0, &b), -EINVAL);
    assert_null(b);
    assert_int_equal(coil_barrier_wait(NULL), -EINVAL);
    assert_int_equal(coil_barrier_abort(NULL), -EINVAL);
    assert_int_equal(coil_barrier_reset(NULL), -EINVAL);
    assert_int_equal(coil_barrier_parties(NULL), 0);

    assert_int_equal(coil_barrier_new(loop, (unsigned)INT32_MAX + 1, &b),
                     -EINVAL);
    assert_int_equal(coil_barrier_waiting(NULL), 0);
    assert_false(coil_barrier_broken(NULL));

    coil_condition_t *c;
    assert_int_equal(coil_condition_new(NULL, NULL, &c), -EINVAL);
    assert_int_equal(coil_condition_wait(NULL), -EINVAL);
    assert_int_equal(coil_condition_wait_for(NULL, NULL, NULL), -EINVAL);
    assert_int_equal(coil_condition_notify(NULL, 1), -EINVAL);
    assert_int_equal(coil_condition_notify_all(NULL), -EINVAL);
    assert_null(coil_condition_lock(NULL));

    /* NULL out-parameters, and NULL objects to ref and unref. */
    assert_int_equal(coil_event_new(loop, NULL), -EINVAL);
    assert_int_equal(coil_semaphore_new(loop, 1, NULL), -EINVAL);
    assert_int_equal(coil_semaphore_new_bounded(loop, 1, NULL), -EINVAL);
    assert_int_equal(coil_barrier_new(loop, 2, NULL), -EINVAL);
    assert_int_equal(coil_condition_new(loop, NULL, NULL), -EINVAL);
    assert_null(coil_event_ref(NULL));
    assert_null(coil_semaphore_ref(NULL));
    assert_null(coil_barrier_ref(NULL));
    assert_null(coil_condition_ref(NULL));
    coil_event_unref(NULL);
    coil_semaphore_unref(NULL);
    coil_barrier_unref(NULL);
    coil_condition_unref(NULL);

    /* A closed loop makes nothing. */
    coil_loop_t *closed;
    assert_int_equal(coil_loop_new(&closed), 0);
    assert_int_equal(coil_loop_close(closed), 0);
    assert_int_equal(coil_lock_new(closed, &l), -EBADF);
    assert_int_equal(coil_event_new(closed, &e), -EBADF);
    assert_int_equal(coil_semaphore_new(closed, 1, &s), -EBADF);
    assert_int_equal(coil_barrier_new(closed, 2, &b), -EBADF);
    assert_int_equal(coil_condition_new(closed, NULL, &c), -EBADF);
    coil_loop_unref(closed);
}

/* Waiters get the lock in the order they came, one at a time. */
static void test_lock_fifo(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_lock_t *l;
    assert_int_equal(coil_lock_new(loop, &l), 0);
    struct log log = {0};
    struct actor a[4];
    coil_task_t *t[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct actor){&log, (char)('a' + i), op_lock, rel_lock, l,
                              COIL_MSEC, 1, false};
        t[i] = spawn_actor(loop, &a[i]);
    }
    run_all(loop);
    assert_string_equal(log.s, "abcd");
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i].r, 0);
    assert_false(coil_lock_locked(l));
    unref_all(t, 4);
    coil_lock_unref(l);
}

/* A release hands the lock to the first waiter: a task that tries to
 * take it before that waiter runs finds it held. */
struct barge {
    coil_lock_t *l;
    coil_task_t *waiter;
    int waiter_r, try_r;
    bool waiter_holds;
};

static int barge_waiter(void *arg)
{
    struct barge *b = arg;
    b->waiter_r = coil_lock_acquire(b->l);
    if (b->waiter_r == 0)
        coil_lock_release(b->l);
    return 0;
}

static int barge_holder(void *arg)
{
    struct barge *b = arg;
    if (coil_lock_acquire(b->l))
        test_task_failure();
    b->waiter = test_spawn(coil_running_loop(), barge_waiter, b);
    coil_yield(); /* the waiter queues up */
    coil_lock_release(b->l);
    b->try_r = coil_lock_try_acquire(b->l); /* before the waiter ran */
    b->waiter_holds = coil_lock_locked(b->l);
    test_join(b->waiter);
    return 0;
}

static void test_lock_no_barging(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct barge b = {0};
    assert_int_equal(coil_lock_new(loop, &b.l), 0);
    assert_int_equal(test_run_task(loop, barge_holder, &b), 0);
    assert_int_equal(b.try_r, -EAGAIN);
    assert_true(b.waiter_holds);
    assert_int_equal(b.waiter_r, 0);
    assert_false(coil_lock_locked(b.l));
    coil_lock_unref(b.l);
}

/* Cancelled in line: -ECANCELED, it never held the lock, the others
 * carry on. */
static void test_lock_cancel_in_line(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_lock_t *l;
    assert_int_equal(coil_lock_new(loop, &l), 0);
    struct log log = {0};
    struct actor a[3];
    coil_task_t *t[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (struct actor){&log, (char)('a' + i), op_lock, rel_lock, l,
                              10 * COIL_MSEC, 1, false};
        t[i] = spawn_actor(loop, &a[i]);
    }
    struct test_canceller c = {t[1], 1, 0};
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_later(loop, COIL_MSEC, test_cancel_cb, &c,
                                          &h),
                     0);
    run_all(loop);
    assert_int_equal(c.result, 0);
    assert_int_equal(a[1].r, -ECANCELED);
    assert_string_equal(log.s, "ac");
    assert_false(coil_lock_locked(l));
    coil_handle_unref(h);
    unref_all(t, 3);
    coil_lock_unref(l);
}

/* Cancelled after the hand-over, before it ran: the lock passes on to
 * the next waiter. */
struct handover {
    coil_lock_t *l;
    coil_task_t *w1, *w2;
    int r1, r2;
    bool w2_held;
    bool next_holds_after_cancel;
};

static int ho_w1(void *arg)
{
    struct handover *h = arg;
    h->r1 = coil_lock_acquire(h->l);
    if (h->r1 == 0)
        coil_lock_release(h->l);
    return 0;
}

static int ho_w2(void *arg)
{
    struct handover *h = arg;
    h->r2 = coil_lock_acquire(h->l);
    h->w2_held = h->r2 == 0 && coil_lock_locked(h->l);
    if (h->r2 == 0)
        coil_lock_release(h->l);
    return 0;
}

static int ho_holder(void *arg)
{
    struct handover *h = arg;
    coil_loop_t *loop = coil_running_loop();
    if (coil_lock_acquire(h->l))
        test_task_failure();
    h->w1 = test_spawn(loop, ho_w1, h);
    h->w2 = test_spawn(loop, ho_w2, h);
    coil_yield(); /* both queue up */
    coil_lock_release(h->l); /* handed to w1 */
    coil_task_cancel(h->w1); /* before w1 ran */
    /* w1's give-back happens when it runs; w2 then holds the lock. */
    test_join(h->w1);
    h->next_holds_after_cancel = coil_lock_locked(h->l);
    test_join(h->w2);
    return 0;
}

static void test_lock_cancel_after_handover(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    coil_loop_t *loop = test_loop(state);
    struct handover h = {0};
    assert_int_equal(coil_lock_new(loop, &h.l), 0);
    assert_int_equal(test_run_task(loop, ho_holder, &h), 0);
    assert_int_equal(h.r1, -ECANCELED);
    assert_int_equal(h.r2, 0);
    assert_true(h.w2_held);
    assert_false(coil_lock_locked(h.l));
    coil_lock_unref(h.l);
}

/* A timeout scope around a wait in line; a pending cancel at the call. */
struct lock_timeout {
    coil_lock_t *l;
    int timed, pending_free, pending_held;
};

static int lt_body(void *arg)
{
    struct lock_timeout *lt = arg;
    coil_timeout_t *sc;
    if (coil_timeout_begin(5 * COIL_MSEC, &sc))
        test_task_failure();
    lt->timed = coil_timeout_end(sc, coil_lock_acquire(lt->l));
    return 0;
}

static int lt_pending(void *arg)
{
    struct lock_timeout *lt = arg;
    coil_task_cancel(coil_current_task());
    lt->pending_held = coil_lock_acquire(lt->l); /* would wait: cancelled */
    coil_task_uncancel(coil_current_task());
    return 0;
}

static int lt_holder(void *arg)
{
    struct lock_timeout *lt = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_task_cancel(coil_current_task());
    /* Free: taken without suspending, the cancel stays pending. */
    lt->pending_free = coil_lock_acquire(lt->l);
    coil_task_uncancel(coil_current_task());
    test_join(test_spawn(loop, lt_body, lt));
    test_join(test_spawn(loop, lt_pending, lt));
    coil_lock_release(lt->l);
    return 0;
}

static void test_lock_timeout_and_pending_cancel(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct lock_timeout lt = {0};
    assert_int_equal(coil_lock_new(loop, &lt.l), 0);
    assert_int_equal(test_run_task(loop, lt_holder, &lt), 0);
    assert_int_equal(lt.pending_free, 0);
    assert_int_equal(lt.timed, -ETIMEDOUT);
    assert_int_equal(lt.pending_held, -ECANCELED);
    assert_false(coil_lock_locked(lt.l));
    coil_lock_unref(lt.l);
}

/* A task of another loop may not wait on the lock. */
struct other_loop {
    coil_lock_t *l;
    coil_semaphore_t *s;
    coil_event_t *e;
    coil_barrier_t *b;
    int lr, sr, er, br;
};

static int other_body(void *arg)
{
    struct other_loop *o = arg;
    o->lr = coil_lock_acquire(o->l);
    o->sr = coil_semaphore_acquire(o->s);
    o->er = coil_event_wait(o->e);
    o->br = coil_barrier_wait(o->b);
    return 0;
}

static void test_sync_other_loop(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    struct other_loop o = {0};
    assert_int_equal(coil_lock_new(other, &o.l), 0);
    assert_int_equal(coil_semaphore_new(other, 1, &o.s), 0);
    assert_int_equal(coil_event_new(other, &o.e), 0);
    assert_int_equal(coil_barrier_new(other, 1, &o.b), 0);
    assert_int_equal(test_run_task(loop, other_body, &o), 0);
    assert_int_equal(o.lr, -EINVAL);
    assert_int_equal(o.sr, -EINVAL);
    assert_int_equal(o.er, -EINVAL);
    assert_int_equal(o.br, -EINVAL);
    coil_condition_t *c;
    assert_int_equal(coil_condition_new(loop, o.l, &c), -EINVAL);
    coil_lock_unref(o.l);
    coil_semaphore_unref(o.s);
    coil_event_unref(o.e);
    coil_barrier_unref(o.b);
    coil_loop_unref(other);
}

/* ------------------------------------------------------------------ */
/* Semaphore                                                            */
/* ------------------------------------------------------------------ */

/* Five tasks through a semaphore of two, in the order they came, never
 * more than two at once. */
static int in_section, most_in_section;

static int op_sem_counted(struct actor *a)
{
    int r = coil_semaphore_acquire(a->obj);
    if (r == 0 && ++in_section > most_in_section)
        most_in_section = in_section;
    return r;
}

static void rel_sem_counted(struct actor *a)
{
    in_section--;
    rel_sem(a);
}

static void test_semaphore_limits_and_order(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_semaphore_t *s;
    assert_int_equal(coil_semaphore_new(loop, 2, &s), 0);
    assert_int_equal(coil_semaphore_value(s), 2);
    in_section = most_in_section = 0;
    struct log log = {0};
    struct actor a[5];
    coil_task_t *t[5];
    for (int i = 0; i < 5; i++) {
        a[i] = (struct actor){&log, (char)('a' + i), op_sem_counted,
                              rel_sem_counted, s, (i + 1) * COIL_MSEC, 1,
                              false};
        t[i] = spawn_actor(loop, &a[i]);
    }
    run_all(loop);
    assert_string_equal(log.s, "abcde");
    assert_int_equal(most_in_section, 2);
    assert_int_equal(coil_semaphore_value(s), 2);
    /* Unbounded: releasing past the start is allowed. */
    assert_int_equal(coil_semaphore_release(s), 0);
    assert_int_equal(coil_semaphore_value(s), 3);
    unref_all(t, 5);
    coil_semaphore_unref(s);
}

static void test_semaphore_bounded_and_try(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_semaphore_t *s;
    assert_int_equal(coil_semaphore_new_bounded(loop, 1, &s), 0);
    assert_int_equal(coil_semaphore_release(s), -EOVERFLOW);
    assert_int_equal(coil_semaphore_value(s), 1);
    assert_int_equal(coil_semaphore_try_acquire(s), 0); /* no task needed */
    assert_int_equal(coil_semaphore_try_acquire(s), -EAGAIN);
    assert_int_equal(coil_semaphore_value(s), 0);
    assert_int_equal(coil_semaphore_release(s), 0);
    assert_int_equal(coil_semaphore_release(s), -EOVERFLOW);
    assert_int_equal(coil_semaphore_acquire(s), -EPERM);
    coil_semaphore_unref(s);
}

/* A permit granted to a waiter that is cancelled before it ran goes to
 * the next waiter; one cancelled in line takes nothing. */
struct sem_grant {
    coil_semaphore_t *s;
    coil_task_t *w[3];
    int r[3];
    int value_end;
};

static int sg_waiter(void *arg)
{
    struct sem_grant *g = arg;
    int i = 0;
    while (g->w[i] != coil_current_task())
        i++;
    g->r[i] = coil_semaphore_acquire(g->s);
    return 0;
}

static int sg_main(void *arg)
{
    struct sem_grant *g = arg;
    coil_loop_t *loop = coil_running_loop();
    for (int i = 0; i < 3; i++)
        g->w[i] = test_spawn(loop, sg_waiter, g);
    coil_yield(); /* all three in line */
    coil_task_cancel(g->w[2]); /* in line */
    coil_semaphore_release(g->s); /* granted to w0 */
    coil_task_cancel(g->w[0]);    /* before it ran: gives it back */
    for (int i = 0; i < 3; i++)
        test_join(g->w[i]);
    g->value_end = coil_semaphore_value(g->s);
    return 0;
}

static void test_semaphore_cancel_after_grant(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    coil_loop_t *loop = test_loop(state);
    struct sem_grant g = {0};
    assert_int_equal(coil_semaphore_new(loop, 0, &g.s), 0);
    assert_int_equal(test_run_task(loop, sg_main, &g), 0);
    assert_int_equal(g.r[0], -ECANCELED);
    assert_int_equal(g.r[1], 0);          /* the permit came to it */
    assert_int_equal(g.r[2], -ECANCELED);
    assert_int_equal(g.value_end, 0);     /* w1 holds the one permit */
    coil_semaphore_unref(g.s);
}

static int sem_timeout_body(void *arg)
{
    coil_timeout_t *sc;
    if (coil_timeout_begin(COIL_MSEC, &sc))
        return -1;
    return coil_timeout_end(sc, coil_semaphore_acquire(arg));
}

static void test_semaphore_timeout(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_semaphore_t *s;
    assert_int_equal(coil_semaphore_new(loop, 0, &s), 0);
    assert_int_equal(test_run_task(loop, sem_timeout_body, s), -ETIMEDOUT);
    assert_int_equal(coil_semaphore_value(s), 0);
    coil_semaphore_unref(s);
}

/* ------------------------------------------------------------------ */
/* Event                                                                */
/* ------------------------------------------------------------------ */

static void set_cb(void *e)
{
    coil_event_set(e);
}

static void test_event_wakes_all(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_event_t *e;
    assert_int_equal(coil_event_new(loop, &e), 0);
    assert_false(coil_event_is_set(e));
    struct log log = {0};
    struct actor a[3];
    coil_task_t *t[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (struct actor){&log, (char)('a' + i), op_event, NULL, e, 0, 1,
                              false};
        t[i] = spawn_actor(loop, &a[i]);
    }
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_later(loop, COIL_MSEC, set_cb, e, &h), 0);
    run_all(loop);
    assert_string_equal(log.s, "abc");
    assert_true(coil_event_is_set(e));
    /* Set: a wait returns at once, even from a new task. */
    struct actor late = {&log, 'd', op_event, NULL, e, 0, 1, false};
    coil_task_t *lt = spawn_actor(loop, &late);
    run_all(loop);
    assert_int_equal(late.r, 0);
    assert_int_equal(coil_event_set(e), 0); /* again: nothing */
    assert_int_equal(coil_event_clear(e), 0);
    assert_false(coil_event_is_set(e));
    coil_handle_unref(h);
    coil_task_unref(lt);
    unref_all(t, 3);
    coil_event_unref(e);
}

/* Cancelled after the set, before it ran: -ECANCELED; the event stays
 * set for the others. */
struct ev_cancel {
    coil_event_t *e;
    coil_task_t *w[2];
    int r[2];
};

static int ec_waiter(void *arg)
{
    struct ev_cancel *c = arg;
    int i = c->w[0] == coil_current_task() ? 0 : 1;
    c->r[i] = coil_event_wait(c->e);
    return 0;
}

static int ec_main(void *arg)
{
    struct ev_cancel *c = arg;
    coil_loop_t *loop = coil_running_loop();
    c->w[0] = test_spawn(loop, ec_waiter, c);
    c->w[1] = test_spawn(loop, ec_waiter, c);
    coil_yield();
    coil_event_set(c->e);
    coil_task_cancel(c->w[0]);
    test_join(c->w[0]);
    test_join(c->w[1]);
    return 0;
}

static void test_event_cancel_after_set(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    coil_loop_t *loop = test_loop(state);
    struct ev_cancel c = {0};
    assert_int_equal(coil_event_new(loop, &c.e), 0);
    assert_int_equal(test_run_task(loop, ec_main, &c), 0);
    assert_int_equal(c.r[0], -ECANCELED);
    assert_int_equal(c.r[1], 0);
    assert_true(coil_event_is_set(c.e));
    coil_event_unref(c.e);
}

/* ------------------------------------------------------------------ */
/* Condition                                                            */
/* ------------------------------------------------------------------ */

struct cond_ctx {
    coil_condition_t *c;
    coil_lock_t *l;
    int items;         /* guarded by the lock */
    struct log log;
    int r[4];
    bool held_after[4];
    int notify_outside, wait_outside, notified;
    coil_task_t *w[4];
};

static int cond_index(struct cond_ctx *cc)
{
    int i = 0;
    while (cc->w[i] != coil_current_task())
        i++;
    return i;
}

static int cond_waiter(void *arg)
{
    struct cond_ctx *cc = arg;
    int i = cond_index(cc);
    if (coil_lock_acquire(cc->l))
        test_task_failure();
    cc->r[i] = coil_condition_wait(cc->c);
    cc->held_after[i] = coil_lock_locked(cc->l);
    if (cc->r[i] == 0)
        note(&cc->log, (char)('a' + i));
    coil_lock_release(cc->l);
    return 0;
}

static int cond_main(void *arg)
{
    struct cond_ctx *cc = arg;
    coil_loop_t *loop = coil_running_loop();
    cc->notify_outside = coil_condition_notify(cc->c, 1);
    cc->wait_outside = coil_condition_wait(cc->c);
    for (int i = 0; i < 4; i++)
        cc->w[i] = test_spawn(loop, cond_waiter, cc);
    coil_sleep(COIL_MSEC); /* all four wait */
    coil_lock_acquire(cc->l);
    cc->notified = coil_condition_notify(cc->c, 1); /* a */
    coil_lock_release(cc->l);
    coil_sleep(COIL_MSEC);
    coil_lock_acquire(cc->l);
    coil_condition_notify(cc->c, 1); /* meant for b: b is cancelled */
    coil_task_cancel(cc->w[1]);      /* before it ran: passes it to c */
    coil_lock_release(cc->l);
    coil_sleep(COIL_MSEC);
    coil_lock_acquire(cc->l);
    coil_condition_notify_all(cc->c); /* d */
    coil_lock_release(cc->l);
    for (int i = 0; i < 4; i++)
        test_join(cc->w[i]);
    return 0;
}

static void test_condition_notify_order_and_cancel(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct cond_ctx cc = {0};
    assert_int_equal(coil_lock_new(loop, &cc.l), 0);
    assert_int_equal(coil_condition_new(loop, cc.l, &cc.c), 0);
    assert_ptr_equal(coil_condition_lock(cc.c), cc.l);
    assert_int_equal(test_run_task(loop, cond_main, &cc), 0);
    assert_int_equal(cc.notify_outside, -EPERM);
    assert_int_equal(cc.wait_outside, -EPERM);
    assert_int_equal(cc.notified, 1);
    assert_string_equal(cc.log.s, "acd");
    assert_int_equal(cc.r[1], -ECANCELED);
    for (int i = 0; i < 4; i++)
        assert_true(cc.held_after[i]); /* held again, whatever the result */
    assert_false(coil_lock_locked(cc.l));
    coil_condition_unref(cc.c);
    coil_lock_unref(cc.l); /* the condition held its own reference */
}

static bool has_items(void *arg)
{
    return ((struct cond_ctx *)arg)->items >= 3;
}

static int cw_consumer(void *arg)
{
    struct cond_ctx *cc = arg;
    coil_lock_acquire(cc->l);
    cc->r[0] = coil_condition_wait_for(cc->c, has_items, cc);
    cc->r[1] = cc->items;
    coil_lock_release(cc->l);
    return 0;
}

static int cw_producer(void *arg)
{
    struct cond_ctx *cc = arg;
    for (int i = 0; i < 5; i++) {
        coil_sleep(COIL_MSEC);
        coil_lock_acquire(cc->l);
        cc->items++;
        coil_condition_notify_all(cc->c);
        coil_lock_release(cc->l);
    }
    return 0;
}

static void test_condition_wait_for(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct cond_ctx cc = {0};
    assert_int_equal(coil_condition_new(loop, NULL, &cc.c), 0);
    cc.l = coil_condition_lock(cc.c);
    coil_task_t *c, *p;
    assert_int_equal(coil_task_spawn(loop, cw_consumer, &cc, &c), 0);
    assert_int_equal(coil_task_spawn(loop, cw_producer, &cc, &p), 0);
    run_all(loop);
    assert_int_equal(cc.r[0], 0);
    assert_int_equal(cc.r[1], 3); /* woke as soon as it held */
    coil_task_unref(c);
    coil_task_unref(p);
    coil_condition_unref(cc.c);
}

/* A timeout around a condition wait: -ETIMEDOUT, the lock held again. */
static int ct_body(void *arg)
{
    struct cond_ctx *cc = arg;
    coil_lock_acquire(cc->l);
    coil_timeout_t *sc;
    if (coil_timeout_begin(COIL_MSEC, &sc))
        test_task_failure();
    cc->r[0] = coil_timeout_end(sc, coil_condition_wait(cc->c));
    cc->held_after[0] = coil_lock_locked(cc->l);
    coil_lock_release(cc->l);
    return 0;
}

static void test_condition_timeout(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct cond_ctx cc = {0};
    assert_int_equal(coil_condition_new(loop, NULL, &cc.c), 0);
    cc.l = coil_condition_lock(cc.c);
    assert_int_equal(test_run_task(loop, ct_body, &cc), 0);
    assert_int_equal(cc.r[0], -ETIMEDOUT);
    assert_true(cc.held_after[0]);
    coil_condition_unref(cc.c);
}

/* ------------------------------------------------------------------ */
/* Barrier                                                              */
/* ------------------------------------------------------------------ */

static void test_barrier_rounds(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_barrier_t *b;
    assert_int_equal(coil_barrier_new(loop, 3, &b), 0);
    assert_int_equal(coil_barrier_parties(b), 3);
    struct log log = {0};
    for (int round = 0; round < 2; round++) {
        struct actor a[3];
        coil_task_t *t[3];
        for (int i = 0; i < 3; i++) {
            a[i] = (struct actor){&log, (char)('a' + i), op_barrier, NULL, b,
                                  0, 1, false};
            t[i] = spawn_actor(loop, &a[i]);
        }
        run_all(loop);
        for (int i = 0; i < 3; i++)
            assert_int_equal(a[i].r, i); /* arrival order */
        assert_int_equal(coil_barrier_waiting(b), 0);
        unref_all(t, 3);
    }
    coil_barrier_unref(b);
    /* One party: passes at once. */
    assert_int_equal(coil_barrier_new(loop, 1, &b), 0);
    struct actor one = {&log, 'x', op_barrier, NULL, b, 0, 1, false};
    coil_task_t *t1 = spawn_actor(loop, &one);
    run_all(loop);
    assert_int_equal(one.r, 0);
    coil_task_unref(t1);
    coil_barrier_unref(b);
}

static void abort_cb(void *b)
{
    coil_barrier_abort(b);
}

static void reset_cb(void *b)
{
    coil_barrier_reset(b);
}

static void test_barrier_abort_and_reset(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_barrier_t *b;
    assert_int_equal(coil_barrier_new(loop, 3, &b), 0);
    struct log log = {0};
    struct actor a[2];
    coil_task_t *t[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (struct actor){&log, 'a', op_barrier, NULL, b, 0, 1, false};
        t[i] = spawn_actor(loop, &a[i]);
    }
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_later(loop, COIL_MSEC, abort_cb, b, &h), 0);
    run_all(loop);
    coil_handle_unref(h);
    assert_int_equal(a[0].r, -EPIPE);
    assert_int_equal(a[1].r, -EPIPE);
    assert_true(coil_barrier_broken(b));
    unref_all(t, 2);
    /* Broken: a new wait fails at once. */
    a[0] = (struct actor){&log, 'a', op_barrier, NULL, b, 0, 1, false};
    t[0] = spawn_actor(loop, &a[0]);
    run_all(loop);
    assert_int_equal(a[0].r, -EPIPE);
    coil_task_unref(t[0]);
    /* Reset with one waiting: it gets -EPIPE, the barrier works again. */
    assert_int_equal(coil_barrier_reset(b), 0);
    assert_false(coil_barrier_broken(b));
    a[0] = (struct actor){&log, 'a', op_barrier, NULL, b, 0, 1, false};
    t[0] = spawn_actor(loop, &a[0]);
    assert_int_equal(coil_loop_call_later(loop, COIL_MSEC, reset_cb, b, &h), 0);
    run_all(loop);
    coil_handle_unref(h);
    assert_int_equal(a[0].r, -EPIPE);
    assert_false(coil_barrier_broken(b));
    coil_task_unref(t[0]);
    coil_barrier_unref(b);
}

/* Cancelled in line: leaves the round (one more arrival needed).
 * Cancelled after the round filled: keeps its index, the cancel goes to
 * its next wait. */
struct bar_cancel {
    coil_barrier_t *b;
    coil_task_t *w[3];
    int r[3], next[3];
    unsigned waiting_after_cancel;
};

static int bc_waiter(void *arg)
{
    struct bar_cancel *bc = arg;
    int i = 0;
    while (bc->w[i] != coil_current_task())
        i++;
    bc->r[i] = coil_barrier_wait(bc->b);
    bc->next[i] = coil_yield();
    return 0;
}

static int bc_main(void *arg)
{
    struct bar_cancel *bc = arg;
    coil_loop_t *loop = coil_running_loop();
    bc->w[0] = test_spawn(loop, bc_waiter, bc);
    bc->w[1] = test_spawn(loop, bc_waiter, bc);
    coil_yield();
    coil_task_cancel(bc->w[0]); /* in line: leaves */
    coil_yield();
    bc->waiting_after_cancel = coil_barrier_waiting(bc->b);
    bc->w[2] = test_spawn(loop, bc_waiter, bc);
    coil_yield();
    /* w1 and w2 wait: this task completes the round, then cancels w1
     * before it ran. */
    int mine = coil_barrier_wait(bc->b);
    coil_task_cancel(bc->w[1]);
    for (int i = 0; i < 3; i++)
        test_join(bc->w[i]);
    return mine;
}

static void test_barrier_cancel(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    coil_loop_t *loop = test_loop(state);
    struct bar_cancel bc = {0};
    assert_int_equal(coil_barrier_new(loop, 3, &bc.b), 0);
    assert_int_equal(test_run_task(loop, bc_main, &bc), 2);
    assert_int_equal(bc.r[0], -ECANCELED);
    assert_int_equal(bc.waiting_after_cancel, 1);
    assert_int_equal(bc.r[1], 0);
    assert_int_equal(bc.next[1], -ECANCELED); /* delivered later */
    assert_int_equal(bc.r[2], 1);
    assert_int_equal(bc.next[2], 0);
    coil_barrier_unref(bc.b);
}

/* The last unref while tasks wait wakes them with -EBADF; the memory
 * stays until they have left. A ref after that, or one unref too many,
 * is reported and refused. */
struct last_unref {
    coil_lock_t *l;
    coil_semaphore_t *s;
    coil_event_t *e;
    coil_barrier_t *b;
    coil_condition_t *c;
    bool ref_refused;
};

static int lu_holder(void *arg)
{
    /* Takes the lock and finishes holding it: never touches it again. */
    return coil_lock_acquire(arg);
}

static int lu_cond(void *arg)
{
    struct last_unref *lu = arg;
    if (coil_lock_acquire(coil_condition_lock(lu->c)))
        test_task_failure();
    /* -EBADF: the lock went with the condition, and is not touched. */
    return coil_condition_wait(lu->c) == -EBADF ? 0 : -1;
}

static void lu_cb(void *arg)
{
    struct last_unref *lu = arg;
    coil_lock_unref(lu->l);
    coil_semaphore_unref(lu->s);
    coil_event_unref(lu->e);
    coil_barrier_unref(lu->b);
    coil_condition_unref(lu->c);
    /* The waiters have not left yet: the memory is there, the refs are
     * not. */
    lu->ref_refused = !coil_lock_ref(lu->l) && !coil_semaphore_ref(lu->s) &&
                      !coil_event_ref(lu->e) && !coil_barrier_ref(lu->b) &&
                      !coil_condition_ref(lu->c);
    coil_lock_unref(lu->l);
}

static void test_sync_last_unref_while_waiting(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log ex = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &ex);
    struct last_unref lu = {0};
    assert_int_equal(coil_lock_new(loop, &lu.l), 0);
    assert_int_equal(coil_semaphore_new(loop, 0, &lu.s), 0);
    assert_int_equal(coil_event_new(loop, &lu.e), 0);
    assert_int_equal(coil_barrier_new(loop, 3, &lu.b), 0);
    assert_int_equal(coil_condition_new(loop, NULL, &lu.c), 0);
    coil_task_t *holder, *cond;
    assert_int_equal(coil_task_spawn(loop, lu_holder, lu.l, &holder), 0);
    assert_int_equal(coil_task_spawn(loop, lu_cond, &lu, &cond), 0);
    struct log log = {0};
    struct actor a[4] = {
        {&log, 'l', op_lock, NULL, lu.l, 0, 1, false},
        {&log, 's', op_sem, NULL, lu.s, 0, 1, false},
        {&log, 'e', op_event, NULL, lu.e, 0, 1, false},
        {&log, 'b', op_barrier, NULL, lu.b, 0, 1, false},
    };
    coil_task_t *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn_actor(loop, &a[i]);
    coil_handle_t *h;
    assert_int_equal(coil_loop_call_later(loop, COIL_MSEC, lu_cb, &lu, &h), 0);
    run_all(loop);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i].r, -EBADF);
    assert_int_equal(test_task_outcome(cond), 0);
    assert_true(lu.ref_refused);
    assert_int_equal(ex.count, 6); /* five refs refused, one unref */
    assert_int_equal(ex.last_error, 0);
    coil_handle_unref(h);
    coil_task_unref(holder);
    coil_task_unref(cond);
    unref_all(t, 4);
}

/* The loop closed while tasks wait everywhere: nothing leaks, and the
 * objects are still safe to query and unref. */
static int lc_queue_cond(void *arg)
{
    coil_condition_t *c = arg;
    if (coil_lock_acquire(coil_condition_lock(c)))
        return -1;
    return coil_condition_wait(c);
}

static void test_sync_loop_closed_while_waiting(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct exc_log ex = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &ex);
    coil_lock_t *l;
    coil_semaphore_t *s;
    coil_event_t *e;
    coil_barrier_t *b;
    coil_condition_t *c;
    assert_int_equal(coil_lock_new(loop, &l), 0);
    assert_int_equal(coil_semaphore_new(loop, 0, &s), 0);
    assert_int_equal(coil_event_new(loop, &e), 0);
    assert_int_equal(coil_barrier_new(loop, 3, &b), 0);
    assert_int_equal(coil_condition_new(loop, NULL, &c), 0);
    coil_task_t *holder, *cond;
    assert_int_equal(coil_task_spawn(loop, lu_holder, l, &holder), 0);
    assert_int_equal(coil_task_spawn(loop, lc_queue_cond, c, &cond), 0);
    struct log log = {0};
    struct actor a[4] = {
        {&log, 'l', op_lock, NULL, l, 0, 1, false},
        {&log, 's', op_sem, NULL, s, 0, 1, false},
        {&log, 'e', op_event, NULL, e, 0, 1, false},
        {&log, 'b', op_barrier, NULL, b, 0, 1, false},
    };
    coil_task_t *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn_actor(loop, &a[i]);
    test_run_bounded(loop, COIL_MSEC);
    assert_int_equal(coil_loop_close(loop), 0);
    for (int i = 0; i < 4; i++)
        assert_false(a[i].done);
    assert_true(coil_lock_locked(l));
    assert_int_equal(coil_semaphore_value(s), 0);
    assert_false(coil_event_is_set(e));
    assert_int_equal(coil_barrier_waiting(b), 0);
    coil_lock_unref(l);
    coil_semaphore_unref(s);
    coil_event_unref(e);
    coil_barrier_unref(b);
    coil_condition_unref(c);
    coil_task_unref(holder);
    coil_task_unref(cond);
    unref_all(t, 4);
    coil_loop_unref(loop);
}

/* The loop closed after the lock was handed to a waiter, and a permit
 * granted, that never ran: both come back, so the objects are left as
 * they would be had the waiters given up. */
struct close_grant {
    coil_loop_t *loop;
    coil_lock_t *l;
    coil_semaphore_t *s;
    coil_condition_t *c;
};

static int cg_holder(void *arg)
{
    struct close_grant *cg = arg;
    if (coil_lock_acquire(cg->l))
        return -1;
    coil_sleep(COIL_MSEC); /* the waiters line up */
    coil_lock_acquire(coil_condition_lock(cg->c));
    coil_condition_notify(cg->c, 1);
    coil_lock_release(coil_condition_lock(cg->c));
    coil_lock_release(cg->l);     /* handed to the lock's waiter */
    coil_semaphore_release(cg->s); /* granted to the permit's waiter */
    coil_loop_stop(cg->loop);      /* none of them runs again */
    return 0;
}

static int cg_cond_waiter(void *arg)
{
    struct close_grant *cg = arg;
    if (coil_lock_acquire(coil_condition_lock(cg->c)))
        return -1;
    return coil_condition_wait(cg->c);
}

static void test_sync_loop_closed_after_grant(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct exc_log ex = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &ex);
    struct close_grant cg = {.loop = loop};
    assert_int_equal(coil_lock_new(loop, &cg.l), 0);
    assert_int_equal(coil_semaphore_new(loop, 0, &cg.s), 0);
    assert_int_equal(coil_condition_new(loop, NULL, &cg.c), 0);
    struct log log = {0};
    struct actor a[2] = {
        {&log, 'l', op_lock, NULL, cg.l, 0, 1, false},
        {&log, 's', op_sem, NULL, cg.s, 0, 1, false},
    };
    coil_task_t *t[4];
    assert_int_equal(coil_task_spawn(loop, cg_holder, &cg, &t[0]), 0);
    t[1] = spawn_actor(loop, &a[0]);
    t[2] = spawn_actor(loop, &a[1]);
    assert_int_equal(coil_task_spawn(loop, cg_cond_waiter, &cg, &t[3]), 0);
    assert_int_equal(coil_loop_run_forever(loop), 0);
    assert_int_equal(test_task_outcome(t[0]), 0);
    assert_false(a[0].done);
    assert_false(a[1].done);
    assert_int_equal(coil_loop_close(loop), 0);
    assert_false(coil_lock_locked(cg.l));          /* passed on: free */
    assert_int_equal(coil_semaphore_value(cg.s), 1); /* released again */
    /* The notified condition waiter never took the lock again. */
    assert_false(coil_lock_locked(coil_condition_lock(cg.c)));
    unref_all(t, 4);
    coil_lock_unref(cg.l);
    coil_semaphore_unref(cg.s);
    coil_condition_unref(cg.c);
    coil_loop_unref(loop);
}

/* The loop closed while a notified condition waiter waits to take the
 * lock again (another task holds it): nothing of the condition, its lock
 * or the loop is left behind (the leak gate). */
struct reacq {
    coil_condition_t *c;
    bool notified;
};

static int reacq_waiter(void *arg)
{
    struct reacq *r = arg;
    if (coil_lock_acquire(coil_condition_lock(r->c)))
        return -1;
    return coil_condition_wait(r->c); /* never returns: the loop closes */
}

static int reacq_holder(void *arg)
{
    struct reacq *r = arg;
    coil_lock_t *l = coil_condition_lock(r->c);
    if (coil_lock_acquire(l))
        return -1;
    r->notified = coil_condition_notify(r->c, 1) == 1;
    return coil_sleep(3600 * COIL_SEC); /* holding the lock */
}

static void test_condition_loop_closed_in_reacquire(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct exc_log ex = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &ex);
    struct reacq r = {0};
    assert_int_equal(coil_condition_new(loop, NULL, &r.c), 0);
    coil_task_t *w, *h;
    assert_int_equal(coil_task_spawn(loop, reacq_waiter, &r, &w), 0);
    test_run_bounded(loop, COIL_MSEC); /* w waits on the condition */
    assert_int_equal(coil_task_spawn(loop, reacq_holder, &r, &h), 0);
    test_run_bounded(loop, COIL_MSEC); /* w waits for the lock again */
    assert_true(r.notified);
    assert_false(coil_future_done(coil_task_future(w)));
    coil_condition_unref(r.c);
    coil_task_unref(w);
    coil_task_unref(h);
    coil_loop_unref(loop); /* closes it; the gate checks what is left */
}

/* Every constructor under allocation failure: -ENOMEM, nothing left. */
static void test_sync_alloc_failure(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int err = -ENOMEM;
    for (long n = 1; err == -ENOMEM; n++) {
        coil_condition_t *c = (coil_condition_t *)1;
        test_alloc_fail_after(n);
        err = coil_condition_new(loop, NULL, &c);
        test_alloc_fail_after(0);
        if (err == -ENOMEM)
            assert_null(c);
        else
            coil_condition_unref(c);
    }
    assert_int_equal(err, 0);
    void *o;
    test_alloc_fail_after(1);
    assert_int_equal(coil_lock_new(loop, (coil_lock_t **)&o), -ENOMEM);
    test_alloc_fail_after(1);
    assert_int_equal(coil_event_new(loop, (coil_event_t **)&o), -ENOMEM);
    test_alloc_fail_after(1);
    assert_int_equal(coil_semaphore_new(loop, 1, (coil_semaphore_t **)&o),
                     -ENOMEM);
    test_alloc_fail_after(1);
    assert_int_equal(coil_barrier_new(loop, 2, (coil_barrier_t **)&o), -ENOMEM);
    test_alloc_fail_after(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_FAKE(test_lock_basics),
        TEST_FAKE(test_sync_bad_arguments),
        TEST_FAKE(test_lock_fifo),
        TEST_FAKE(test_lock_no_barging),
        TEST_FAKE(test_lock_cancel_in_line),
        TEST_FAKE(test_lock_cancel_after_handover),
        TEST_FAKE(test_lock_timeout_and_pending_cancel),
        TEST_FAKE(test_sync_other_loop),
        TEST_FAKE(test_semaphore_limits_and_order),
        TEST_FAKE(test_semaphore_bounded_and_try),
        TEST_FAKE(test_semaphore_cancel_after_grant),
        TEST_FAKE(test_semaphore_timeout),
        TEST_FAKE(test_event_wakes_all),
        TEST_FAKE(test_event_cancel_after_set),
        TEST_FAKE(test_condition_notify_order_and_cancel),
        TEST_FAKE(test_condition_wait_for),
        TEST_FAKE(test_condition_timeout),
        TEST_FAKE(test_barrier_rounds),
        TEST_FAKE(test_barrier_abort_and_reset),
        TEST_FAKE(test_barrier_cancel),
        TEST_FAKE(test_sync_last_unref_while_waiting),
        TEST_FAKE_NOLOOP(test_sync_loop_closed_while_waiting),
        TEST_FAKE_NOLOOP(test_sync_loop_closed_after_grant),
        TEST_FAKE_NOLOOP(test_condition_loop_closed_in_reacquire),
        TEST_FAKE(test_sync_alloc_failure),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
