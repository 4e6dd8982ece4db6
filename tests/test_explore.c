/* SPDX-License-Identifier: MIT */
/*
 * test_explore.c - the cancellation explorer (explore.h) over every
 * synchronisation object, the queues, streams (over a socket pair and a pipe),
 * gather, wait_for, task groups and signal waits: one task of each scenario is
 * cancelled at each of its suspensions in turn (in line, after its wait
 * completed but before it ran, and by a timeout scope), and every run must
 * conserve what the scenario moves (lock and permits back to their start, items
 * put = got + left + dropped, bytes written = bytes read, a signal's
 * disposition put back), end with every task finished, and leak nothing. A
 * queue consumer with a deliberately lossy get proves the explorer catches
 * loss.
 */
#include <signal.h>
#include <string.h>

#include "explore.h"
#include "helpers.h"

#define ITEMS 8

/* Run a target body inside the explorer's timeout scope. */
static int in_scope(coil_explore_t *ex, int (*body)(void *), void *arg)
{
    int err = coil_explore_scope_begin(ex);
    if (err)
        return err;
    return coil_explore_scope_end(ex, body(arg));
}

/* ------------------------------------------------------------------ */
/* Lock, semaphore: mutual exclusion and permits conserved              */
/* ------------------------------------------------------------------ */

struct excl {
    coil_explore_t *ex;
    coil_lock_t *lock;
    coil_semaphore_t *sem;
    int limit;       /* how many may be inside at once */
    int inside, most;
    int sections[3]; /* completed, per worker */
    int index[3];
    bool use_scope[3];
    bool extra_release_failed;
};

static int excl_enter(struct excl *x)
{
    return x->lock ? coil_lock_acquire(x->lock)
                   : coil_semaphore_acquire(x->sem);
}

static void excl_leave(struct excl *x)
{
    int r = x->lock ? coil_lock_release(x->lock)
                    : coil_semaphore_release(x->sem);
    if (r)
        x->extra_release_failed = true;
}

static int excl_rounds(void *arg)
{
    int *idx = arg;
    struct excl *x = (struct excl *)((char *)(idx - *idx) -
                                     offsetof(struct excl, index));
    for (int round = 0; round < 3; round++) {
        int err = excl_enter(x);
        if (err)
            return err;
        if (++x->inside > x->most)
            x->most = x->inside;
        err = coil_sleep(COIL_MSEC);
        x->inside--;
        excl_leave(x);
        if (err)
            return err;
        x->sections[*idx]++;
    }
    return 0;
}

static int excl_worker(void *arg)
{
    int *idx = arg;
    struct excl *x = (struct excl *)((char *)(idx - *idx) -
                                     offsetof(struct excl, index));
    if (x->use_scope[*idx])
        return in_scope(x->ex, excl_rounds, arg);
    return excl_rounds(arg);
}

static void excl_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    int kind = *(int *)arg; /* 0 lock, 1 semaphore(2), 2 bounded(2) */
    struct excl x = {.ex = ex, .limit = kind ? 2 : 1};
    if (kind == 0 && coil_lock_new(loop, &x.lock))
        return coil_explore_fail(ex, "lock_new");
    if (kind == 1 && coil_semaphore_new(loop, 2, &x.sem))
        return coil_explore_fail(ex, "semaphore_new");
    if (kind == 2 && coil_semaphore_new_bounded(loop, 2, &x.sem))
        return coil_explore_fail(ex, "semaphore_new_bounded");
    coil_task_t *t[3];
    for (int i = 0; i < 3; i++) {
        x.index[i] = i;
        x.use_scope[i] = i == 1;
        if (coil_task_spawn(loop, excl_worker, &x.index[i], &t[i]))
            coil_explore_fail(ex, "spawn");
    }
    coil_explore_target(ex, t[1]);
    coil_explore_run(ex, loop);
    COIL_EXPLORE_CHECK(ex, x.most <= x.limit, "%d inside at once (limit %d)",
                  x.most, x.limit);
    COIL_EXPLORE_CHECK(ex, x.inside == 0, "%d still inside", x.inside);
    COIL_EXPLORE_CHECK(ex, x.sections[0] == 3 && x.sections[2] == 3,
                  "the undisturbed workers did %d and %d sections",
                  x.sections[0], x.sections[2]);
    COIL_EXPLORE_CHECK(ex, !x.extra_release_failed, "a release failed");
    if (x.lock)
        COIL_EXPLORE_CHECK(ex, !coil_lock_locked(x.lock), "the lock is held");
    if (x.sem)
        COIL_EXPLORE_CHECK(ex, coil_semaphore_value(x.sem) == 2,
                      "%d permits at the end, not 2",
                      coil_semaphore_value(x.sem));
    if (coil_explore_mode(ex) == COIL_EXPLORE_NONE)
        COIL_EXPLORE_CHECK(ex, x.sections[1] == 3, "the target did %d sections",
                      x.sections[1]);
    for (int i = 0; i < 3; i++)
        coil_task_unref(t[i]);
    coil_lock_unref(x.lock);
    coil_semaphore_unref(x.sem);
}

static void test_explore_lock(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    int kind = 0;
    explore_assert("lock", excl_scenario, &kind);
}

static void test_explore_semaphore(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    int kind = 1;
    explore_assert("semaphore", excl_scenario, &kind);
    kind = 2;
    explore_assert("bounded semaphore", excl_scenario, &kind);
}

/* ------------------------------------------------------------------ */
/* Event                                                                */
/* ------------------------------------------------------------------ */

struct ev {
    coil_explore_t *ex;
    coil_event_t *e;
    int r[3];
    int index[3];
};

static int ev_wait(void *arg)
{
    int *idx = arg;
    struct ev *v = (struct ev *)((char *)(idx - *idx) -
                                 offsetof(struct ev, index));
    int r = coil_event_wait(v->e);
    if (r == 0)
        r = coil_sleep(COIL_MSEC); /* one more suspension after the set */
    return r;
}

static int ev_waiter(void *arg)
{
    int *idx = arg;
    struct ev *v = (struct ev *)((char *)(idx - *idx) -
                                 offsetof(struct ev, index));
    v->r[*idx] = *idx == 1 ? in_scope(v->ex, ev_wait, arg) : ev_wait(arg);
    return 0;
}

static int ev_setter(void *arg)
{
    struct ev *v = arg;
    coil_sleep(2 * COIL_MSEC);
    coil_event_set(v->e);
    return 0;
}

static void ev_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    (void)arg;
    struct ev v = {.ex = ex};
    if (coil_event_new(loop, &v.e))
        return coil_explore_fail(ex, "event_new");
    coil_task_t *t[4];
    for (int i = 0; i < 3; i++) {
        v.index[i] = i;
        v.r[i] = 1;
        if (coil_task_spawn(loop, ev_waiter, &v.index[i], &t[i]))
            coil_explore_fail(ex, "spawn");
    }
    if (coil_task_spawn(loop, ev_setter, &v, &t[3]))
        coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, t[1]);
    coil_explore_run(ex, loop);
    COIL_EXPLORE_CHECK(ex, v.r[0] == 0 && v.r[2] == 0,
                  "undisturbed waiters got %d and %d", v.r[0], v.r[2]);
    COIL_EXPLORE_CHECK(ex, coil_event_is_set(v.e), "the event is not set");
    for (int i = 0; i < 4; i++)
        coil_task_unref(t[i]);
    coil_event_unref(v.e);
}

static void test_explore_event(void **state)
{
    (void)state;
    explore_assert("event", ev_scenario, NULL);
}

/* ------------------------------------------------------------------ */
/* Condition: a producer and two consumers, one notify at a time        */
/* ------------------------------------------------------------------ */

/* Odd: the items alternate between the consumers, and the target, first
 * in line, is notified for the last one. */
#define CV_ITEMS 7

struct cv {
    coil_explore_t *ex;
    coil_condition_t *c;
    int items;         /* made and not taken; under the lock */
    int made, taken;
    bool lock_lost;    /* a wait returned without the lock */
    int index[2];
};

static bool cv_ready(void *arg)
{
    struct cv *v = arg;
    return v->items > 0 || v->taken == CV_ITEMS;
}

static int cv_consume(void *arg)
{
    int *idx = arg;
    struct cv *v = (struct cv *)((char *)(idx - *idx) -
                                 offsetof(struct cv, index));
    coil_lock_t *l = coil_condition_lock(v->c);
    for (;;) {
        int err = coil_lock_acquire(l);
        if (err)
            return err;
        err = coil_condition_wait_for(v->c, cv_ready, v);
        if (!coil_lock_locked(l))
            v->lock_lost = true;
        if (err == 0 && v->items == 0) {
            coil_lock_release(l);
            return 0; /* done, nothing left */
        }
        if (err == 0) {
            v->items--;
            /* The last one tells the other consumer the end. Nobody else
             * does: a notify lost to a cancelled waiter leaves the other
             * waiting forever. */
            if (++v->taken == CV_ITEMS)
                coil_condition_notify_all(v->c);
        }
        coil_lock_release(l);
        if (err)
            return err;
        if ((err = coil_sleep(COIL_MSEC)))
            return err;
    }
}

static int cv_consumer(void *arg)
{
    int *idx = arg;
    struct cv *v = (struct cv *)((char *)(idx - *idx) -
                                 offsetof(struct cv, index));
    return *idx == 0 ? in_scope(v->ex, cv_consume, arg) : cv_consume(arg);
}

static int cv_producer(void *arg)
{
    struct cv *v = arg;
    coil_lock_t *l = coil_condition_lock(v->c);
    for (int i = 0; i < CV_ITEMS; i++) {
        coil_sleep(2 * COIL_MSEC);
        coil_lock_acquire(l);
        v->items++;
        v->made++;
        coil_condition_notify(v->c, 1);
        coil_lock_release(l);
    }
    return 0;
}

static void cv_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    (void)arg;
    struct cv v = {.ex = ex, .index = {0, 1}};
    if (coil_condition_new(loop, NULL, &v.c))
        return coil_explore_fail(ex, "condition_new");
    coil_task_t *t[3];
    for (int i = 0; i < 2; i++)
        if (coil_task_spawn(loop, cv_consumer, &v.index[i], &t[i]))
            coil_explore_fail(ex, "spawn");
    if (coil_task_spawn(loop, cv_producer, &v, &t[2]))
        coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, t[0]);
    coil_explore_run(ex, loop);
    COIL_EXPLORE_CHECK(ex, v.made == CV_ITEMS, "made %d", v.made);
    COIL_EXPLORE_CHECK(ex, v.taken + v.items == v.made,
                  "made %d, taken %d, left %d", v.made, v.taken, v.items);
    /* The undisturbed consumer takes whatever the target leaves. */
    COIL_EXPLORE_CHECK(ex, v.items == 0, "%d items never taken", v.items);
    COIL_EXPLORE_CHECK(ex, !v.lock_lost, "a wait returned without the lock");
    COIL_EXPLORE_CHECK(ex, !coil_lock_locked(coil_condition_lock(v.c)),
                  "the lock is held");
    for (int i = 0; i < 3; i++)
        coil_task_unref(t[i]);
    coil_condition_unref(v.c);
}

static void test_explore_condition(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    explore_assert("condition", cv_scenario, NULL);
}

/* ------------------------------------------------------------------ */
/* Barrier: a party that fails aborts it, so nobody waits forever       */
/* ------------------------------------------------------------------ */

struct bar {
    coil_explore_t *ex;
    coil_barrier_t *b;
    int passed[3];
    int index[3];
};

static int bar_rounds(void *arg)
{
    int *idx = arg;
    struct bar *v = (struct bar *)((char *)(idx - *idx) -
                                   offsetof(struct bar, index));
    for (int round = 0; round < 2; round++) {
        int err = coil_sleep((*idx + 1) * COIL_MSEC);
        if (!err)
            err = coil_barrier_wait(v->b);
        if (err < 0) {
            coil_barrier_abort(v->b);
            return err;
        }
        v->passed[*idx]++;
    }
    return 0;
}

static int bar_party(void *arg)
{
    int *idx = arg;
    struct bar *v = (struct bar *)((char *)(idx - *idx) -
                                   offsetof(struct bar, index));
    return *idx == 1 ? in_scope(v->ex, bar_rounds, arg) : bar_rounds(arg);
}

static void bar_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    (void)arg;
    struct bar v = {.ex = ex, .index = {0, 1, 2}};
    if (coil_barrier_new(loop, 3, &v.b))
        return coil_explore_fail(ex, "barrier_new");
    coil_task_t *t[3];
    for (int i = 0; i < 3; i++)
        if (coil_task_spawn(loop, bar_party, &v.index[i], &t[i]))
            coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, t[1]);
    coil_explore_run(ex, loop);
    /* Every round was passed by all three or by none (rounds are whole),
     * unless the barrier broke. */
    bool whole = v.passed[0] == v.passed[1] && v.passed[1] == v.passed[2];
    COIL_EXPLORE_CHECK(ex, whole || coil_barrier_broken(v.b),
                  "rounds passed %d/%d/%d and the barrier is not broken",
                  v.passed[0], v.passed[1], v.passed[2]);
    if (coil_explore_mode(ex) == COIL_EXPLORE_NONE)
        COIL_EXPLORE_CHECK(ex, whole && v.passed[0] == 2, "undisturbed: %d rounds",
                      v.passed[0]);
    for (int i = 0; i < 3; i++)
        coil_task_unref(t[i]);
    coil_barrier_unref(v.b);
}

static void test_explore_barrier(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    explore_assert("barrier", bar_scenario, NULL);
}

/* ------------------------------------------------------------------ */
/* Queues: items put = got + left + dropped, none twice                 */
/* ------------------------------------------------------------------ */

struct qs {
    coil_explore_t *ex;
    coil_queue_t *q;
    int put, dropped;
    int seen[ITEMS + 1];  /* how often each item was got */
    int got_by[2];
    int index[2];
    bool lossy;           /* the planted bug */
    bool target_producer;
    bool immediate;       /* shut down immediately, not gracefully */
    bool slow_producer;   /* consumers wait in line for every item */
    int items;            /* how many to put; 0: ITEMS */
    coil_queue_kind_t kind;
    bool join;            /* the producer joins before it shuts down */
    int join_r;
    bool joined;
};

/* Priority: odd items first, then by value. */
static int qs_compare(const void *a, const void *b)
{
    intptr_t x = (intptr_t)a, y = (intptr_t)b;
    if ((x & 1) != (y & 1))
        return (x & 1) ? -1 : 1;
    return (x > y) - (x < y);
}

static void qs_drop(void *item, void *arg)
{
    struct qs *v = arg;
    (void)item;
    v->dropped++;
}

static int qs_consume(void *arg)
{
    int *idx = arg;
    struct qs *v = (struct qs *)((char *)(idx - *idx) -
                                 offsetof(struct qs, index));
    for (;;) {
        void *item;
        int err = coil_queue_get(v->q, &item);
        if (err == -ESHUTDOWN)
            return 0;
        if (err)
            return err;
        if (v->lossy && *idx == 0) {
            /* The bug: a wait between taking the item and recording it,
             * and the item forgotten if that wait is cancelled. */
            err = coil_yield();
            if (err)
                return err;
        }
        v->seen[(intptr_t)item]++;
        v->got_by[*idx]++;
        coil_queue_task_done(v->q);
        if (!v->slow_producer && (err = coil_sleep(COIL_MSEC)))
            return err;
    }
}

static int qs_consumer(void *arg)
{
    int *idx = arg;
    struct qs *v = (struct qs *)((char *)(idx - *idx) -
                                 offsetof(struct qs, index));
    if (*idx == 0 && !v->target_producer)
        return in_scope(v->ex, qs_consume, arg);
    return qs_consume(arg);
}

static int qs_produce(void *arg)
{
    struct qs *v = arg;
    for (intptr_t i = 1; i <= v->items; i++) {
        int err = coil_queue_put(v->q, (void *)i);
        if (err)
            return err;
        v->put++;
        if (v->slow_producer && (err = coil_sleep(COIL_MSEC)))
            return err;
    }
    return 0;
}

static int qs_producer(void *arg)
{
    struct qs *v = arg;
    int err = v->target_producer ? in_scope(v->ex, qs_produce, v)
                                 : qs_produce(v);
    if (v->join)
        v->join_r = coil_queue_join(v->q);
    /* Whatever happened, the consumers are told the end. */
    if (!v->immediate) {
        coil_queue_shutdown(v->q, false);
        return err;
    }
    coil_sleep(3 * COIL_MSEC);
    coil_queue_shutdown(v->q, true);
    return err;
}

static void qs_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    struct qs v = *(struct qs *)arg;
    v.ex = ex;
    if (!v.items)
        v.items = ITEMS;
    v.index[0] = 0;
    v.index[1] = 1;
    coil_queue_options_t o = {.maxsize = 2,
                              .kind = v.kind,
                              .compare = qs_compare,
                              .drop = qs_drop,
                              .drop_arg = &v};
    if (coil_queue_new(loop, &o, &v.q))
        return coil_explore_fail(ex, "queue_new");
    coil_task_t *t[3];
    for (int i = 0; i < 2; i++)
        if (coil_task_spawn(loop, qs_consumer, &v.index[i], &t[i]))
            coil_explore_fail(ex, "spawn");
    if (coil_task_spawn(loop, qs_producer, &v, &t[2]))
        coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, v.target_producer ? t[2] : t[0]);
    coil_explore_run(ex, loop);
    int got = 0, left = 0;
    for (int i = 1; i <= ITEMS; i++) {
        COIL_EXPLORE_CHECK(ex, v.seen[i] <= 1, "item %d got %d times", i,
                      v.seen[i]);
        got += v.seen[i];
    }
    void *item;
    while (coil_queue_get_nowait(v.q, &item) == 0)
        left++;
    COIL_EXPLORE_CHECK(ex, v.put == got + left + v.dropped,
                  "put %d, got %d, left %d, dropped %d", v.put, got, left,
                  v.dropped);
    if (!v.target_producer)
        COIL_EXPLORE_CHECK(ex, v.put == v.items, "put %d of %d", v.put, v.items);
    if (v.join)
        COIL_EXPLORE_CHECK(ex, v.join_r == 0 && coil_queue_unfinished(v.q) == 0,
                      "join gave %s with %zu unfinished",
                      coil_err_name(v.join_r), coil_queue_unfinished(v.q));
    for (int i = 0; i < 3; i++)
        coil_task_unref(t[i]);
    coil_queue_unref(v.q);
}

static void test_explore_queue_consumer(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    struct qs cfg = {0};
    explore_assert("queue consumer", qs_scenario, &cfg);
    cfg.immediate = true;
    explore_assert("queue consumer, immediate shutdown", qs_scenario, &cfg);
    /* The target, first in line, is promised the odd items, the last
     * one too: if it is cancelled then, the other getter must get it. */
    cfg = (struct qs){.slow_producer = true, .items = ITEMS - 1};
    explore_assert("queue consumers in line", qs_scenario, &cfg);
    cfg = (struct qs){.kind = COIL_QUEUE_LIFO};
    explore_assert("lifo queue consumer", qs_scenario, &cfg);
    cfg = (struct qs){.kind = COIL_QUEUE_PRIORITY};
    explore_assert("priority queue consumer", qs_scenario, &cfg);
    cfg = (struct qs){.join = true};
    explore_assert("queue consumer, joined", qs_scenario, &cfg);
}

static void test_explore_queue_producer(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    struct qs cfg = {.target_producer = true};
    explore_assert("queue producer", qs_scenario, &cfg);
}

/* The explorer must catch a get that loses items when cancelled. */
static void test_explore_catches_lossy_get(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    struct qs cfg = {.lossy = true};
    coil_explore_result_t r;
    int failures = coil_explore("lossy get", qs_scenario, &cfg, &r);
    assert_true(failures > 0);
    assert_int_equal(r.failures, failures);
    assert_non_null(strstr(r.first_message, "put"));
    /* And it passes undisturbed: only a cancel shows the bug. */
    assert_true(r.first_mode != COIL_EXPLORE_NONE);
}

/* ------------------------------------------------------------------ */
/* Streams: bytes written = bytes read + bytes still buffered           */
/* ------------------------------------------------------------------ */

#define CHUNK 100
#define CHUNKS 6

struct st {
    coil_explore_t *ex;
    bool pipe;      /* a pipe instead of a socket pair */
    int sv[2];
    coil_stream_t *r, *w;
    size_t written, read_target, read_rest;
    bool corrupt;
};

static bool check_bytes(const unsigned char *b, size_t n, size_t off)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != test_pattern(off + i, 7))
            return false;
    return true;
}

static int st_read(void *arg)
{
    struct st *v = arg;
    unsigned char buf[CHUNK];
    for (int i = 0; i < CHUNKS; i++) {
        int err = coil_stream_read_exactly(v->r, buf, CHUNK, NULL);
        if (err)
            return err;
        if (!check_bytes(buf, CHUNK, v->read_target))
            v->corrupt = true;
        v->read_target += CHUNK;
    }
    return 0;
}

static int st_reader(void *arg)
{
    struct st *v = arg;
    return in_scope(v->ex, st_read, v);
}

static int st_writer(void *arg)
{
    struct st *v = arg;
    unsigned char buf[CHUNK / 2];
    for (int i = 0; i < 2 * CHUNKS; i++) {
        for (size_t j = 0; j < sizeof(buf); j++)
            buf[j] = test_pattern(v->written + j, 7);
        if (coil_stream_write(v->w, buf, sizeof(buf)))
            break;
        v->written += sizeof(buf);
        coil_stream_drain(v->w);
        coil_sleep(COIL_MSEC / 4);
    }
    coil_stream_close(v->w);
    return 0;
}

static int st_setup(void *arg)
{
    struct st *v = arg;
    if (coil_stream_open_fd(v->sv[0], &v->r))
        return -1;
    v->sv[0] = -1;
    if (coil_stream_open_fd(v->sv[1], &v->w))
        return -1;
    v->sv[1] = -1;
    return 0;
}

/* After the run: read what is left to the end. */
static int st_rest(void *arg)
{
    struct st *v = arg;
    unsigned char buf[CHUNK * CHUNKS];
    size_t len = 0;
    int err = coil_stream_read_all(v->r, buf, sizeof(buf), &len);
    if (!check_bytes(buf, len, v->read_target))
        v->corrupt = true;
    v->read_rest = len;
    return err;
}

static void st_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    struct st v = {.ex = ex, .pipe = arg != NULL};
    if (v.pipe)
        test_pipe(v.sv);
    else
        test_socketpair(v.sv);
    coil_task_t *t[2];
    if (test_run_task(loop, st_setup, &v)) {
        test_close_pair(v.sv);
        return coil_explore_fail(ex, "stream setup");
    }
    if (coil_task_spawn(loop, st_reader, &v, &t[0]) ||
        coil_task_spawn(loop, st_writer, &v, &t[1]))
        coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, t[0]);
    coil_explore_run(ex, loop);
    int rest = test_run_task(loop, st_rest, &v);
    COIL_EXPLORE_CHECK(ex, rest == 0, "reading the rest: %s", coil_err_name(rest));
    COIL_EXPLORE_CHECK(ex, v.written == v.read_target + v.read_rest,
                  "wrote %zu, read %zu, then %zu", v.written, v.read_target,
                  v.read_rest);
    COIL_EXPLORE_CHECK(ex, !v.corrupt, "bytes out of order");
    coil_task_unref(t[0]);
    coil_task_unref(t[1]);
    coil_stream_unref(v.r);
    coil_stream_unref(v.w);
}

static void test_explore_stream(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    explore_assert("stream", st_scenario, NULL);
    static int pipe_flag = 1;
    explore_assert("pipe stream", st_scenario, &pipe_flag);
}

/* ------------------------------------------------------------------ */
/* gather, wait_for, task groups: no child outlives its waiter          */
/* ------------------------------------------------------------------ */

struct comb {
    coil_explore_t *ex;
    int kind; /* 0 gather, 1 wait_for, 2 group */
    int finished, started;
    int result;
    void *values[3];
};

static int comb_child(void *arg)
{
    struct comb *c = arg;
    int n = c->started++;
    int err = coil_sleep((n + 1) * COIL_MSEC);
    if (!err)
        err = coil_sleep(COIL_MSEC);
    c->finished++;
    return err ? err : 10 + n;
}

static int comb_body(void *arg)
{
    struct comb *c = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_task_t *t[3] = {NULL, NULL, NULL};
    int err = 0;
    switch (c->kind) {
    case 0: {
        coil_future_t *f[3];
        for (int i = 0; i < 3; i++) {
            if ((err = coil_task_spawn(loop, comb_child, c, &t[i])))
                break;
            f[i] = coil_task_future(t[i]);
        }
        if (!err)
            err = coil_gather(f, 3, c->values, 0);
        break;
    }
    case 1:
        err = coil_task_spawn(loop, comb_child, c, &t[0]);
        if (!err)
            err = coil_wait_for(coil_task_future(t[0]), 10 * COIL_MSEC, NULL);
        if (!err)
            err = coil_wait_for(coil_task_future(t[0]), 10 * COIL_MSEC,
                                &c->values[0]);
        break;
    default: {
        coil_group_t *g;
        if ((err = coil_group_new(&g)))
            break;
        for (int i = 0; i < 3 && !err; i++)
            err = coil_group_spawn(g, comb_child, c, NULL, NULL);
        int werr = coil_group_wait(g);
        coil_group_unref(g);
        err = err ? err : werr;
        break;
    }
    }
    for (int i = 0; i < 3; i++)
        coil_task_unref(t[i]);
    return err;
}

/* Two rounds, so that the target also waits again after a round whose
 * cancel was refused (results in). */
static int comb_rounds(void *arg)
{
    int err = comb_body(arg);
    return err ? err : comb_body(arg);
}

static int comb_target(void *arg)
{
    struct comb *c = arg;
    c->result = in_scope(c->ex, comb_rounds, c);
    return 0;
}

static void comb_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    struct comb c = {.ex = ex, .kind = *(int *)arg, .result = 1};
    coil_task_t *t;
    if (coil_task_spawn(loop, comb_target, &c, &t))
        return coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, t);
    coil_explore_run(ex, loop);
    COIL_EXPLORE_CHECK(ex, c.finished == c.started,
                  "%d children started, %d finished", c.started,
                  c.finished);
    COIL_EXPLORE_CHECK(ex, c.result == 0 || c.result == -ECANCELED ||
                          c.result == -ETIMEDOUT,
                  "result %s", coil_err_name(c.result));
    if (c.result == 0 && c.kind == 0)
        COIL_EXPLORE_CHECK(ex, (intptr_t)c.values[0] == 13 &&
                              (intptr_t)c.values[2] == 15,
                      "gather's results wrong");
    if (coil_explore_mode(ex) == COIL_EXPLORE_NONE)
        COIL_EXPLORE_CHECK(ex, c.result == 0, "undisturbed: %s",
                      coil_err_name(c.result));
    coil_task_unref(t);
}

static void test_explore_combinators(void **state)
{
    (void)state;
    int kind = 0;
    explore_assert("gather", comb_scenario, &kind);
    kind = 1;
    explore_assert("wait_for", comb_scenario, &kind);
    kind = 2;
    explore_assert("group", comb_scenario, &kind);
}

/* ------------------------------------------------------------------ */
/* Signal waits: the disposition is back after every run                */
/* ------------------------------------------------------------------ */

struct sg {
    coil_explore_t *ex;
    int seen;
    bool raiser_done;
};

static int sg_wait(void *arg)
{
    struct sg *v = arg;
    for (int i = 0; i < 3; i++) {
        int r = coil_signal_wait(SIGUSR1);
        if (r < 0)
            return r;
        v->seen++;
    }
    return 0;
}

static int sg_waiter(void *arg)
{
    struct sg *v = arg;
    return in_scope(v->ex, sg_wait, v);
}

static int sg_raiser(void *arg)
{
    struct sg *v = arg;
    /* SIGUSR1 is ignored outside coil's wait, so a raise with nobody
     * waiting is harmless. */
    for (int i = 0; i < 3; i++) {
        coil_sleep(COIL_MSEC);
        raise(SIGUSR1);
    }
    v->raiser_done = true;
    return 0;
}

static void sg_scenario(coil_loop_t *loop, coil_explore_t *ex, void *arg)
{
    (void)arg;
    struct sg v = {.ex = ex};
    coil_task_t *t[2];
    if (coil_task_spawn(loop, sg_waiter, &v, &t[0]) ||
        coil_task_spawn(loop, sg_raiser, &v, &t[1]))
        coil_explore_fail(ex, "spawn");
    coil_explore_target(ex, t[0]);
    coil_explore_run(ex, loop);
    struct sigaction now;
    sigaction(SIGUSR1, NULL, &now);
    COIL_EXPLORE_CHECK(ex, now.sa_handler == SIG_IGN,
                  "SIGUSR1's disposition was not put back");
    COIL_EXPLORE_CHECK(ex, v.raiser_done, "the raiser did not finish");
    COIL_EXPLORE_CHECK(ex, v.seen <= 3, "%d deliveries seen of 3", v.seen);
    if (coil_explore_mode(ex) == COIL_EXPLORE_NONE)
        COIL_EXPLORE_CHECK(ex, v.seen == 3, "undisturbed: %d of 3", v.seen);
    coil_task_unref(t[0]);
    coil_task_unref(t[1]);
}

static void test_explore_signal_wait(void **state)
{
    test_allow_reports("without anyone reading"); /* on purpose */
    (void)state;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGUSR1, &ign, &old);
    explore_assert("signal wait", sg_scenario, NULL);
    sigaction(SIGUSR1, &old, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_explore_lock),
        TEST_NOLOOP(test_explore_semaphore),
        TEST_NOLOOP(test_explore_event),
        TEST_NOLOOP(test_explore_condition),
        TEST_NOLOOP(test_explore_barrier),
        TEST_NOLOOP(test_explore_queue_consumer),
        TEST_NOLOOP(test_explore_queue_producer),
        TEST_NOLOOP(test_explore_catches_lossy_get),
        TEST_NOLOOP(test_explore_stream),
        TEST_NOLOOP(test_explore_combinators),
        TEST_NOLOOP(test_explore_signal_wait),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
