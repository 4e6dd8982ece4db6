/* SPDX-License-Identifier: MIT */
/*
 * test_queue.c - queues (coil/queue.h): FIFO, LIFO and priority order (equal
 * priorities in the order they were put; a ring that wraps and grows); the
 * _nowait calls (-EAGAIN when full or empty, the limit, the queries, NULL as an
 * item); bad arguments (NULLs, an unknown kind, a priority queue without
 * compare, a closed loop, waits outside a task or in a task of another loop,
 * put_threadsafe on a queue not made for it); put waiting while full and get
 * while empty, first come first served among waiting getters and putters, no
 * barging by the _nowait calls (an item or a place promised to a woken waiter
 * stays promised); cancellation in line, after a promise (the item or the place
 * goes to the next waiter, nothing lost), pending before the call, and by a
 * timeout scope; task_done and join (-EOVERFLOW, the unfinished count);
 * graceful and immediate shutdown (what waiters get, the drop function called
 * in the order gets would take them for FIFO, LIFO and priority, unfinished
 * counted down so join returns); the last unref with waiters and with items
 * left, ref/unref misuse reported to the exception handler, the loop closed
 * under waiting tasks; allocation failures in coil_queue_new and in a put that
 * grows the queue; put_threadsafe from plain threads (every item once, each
 * thread's items in order, unbounded and bounded), from the loop's thread,
 * after shutdown, after the loop closed, a getter in line served before a
 * get_nowait that comes ahead of the posted node, and a queue whose last
 * reference goes while a thread's put is posted to the loop; promises handed
 * back when the loop closes before the waiters ran.
 *
 * Tasks and callbacks only record what they see; the assertions run on
 * the main stack once the loop has returned. Time runs on the virtual
 * clock with autojump, except in the tests with threads. Runs under TSan
 * too.
 */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include "helpers.h"

#define ITEM(n) ((void *)(intptr_t)(n))
#define VAL(p) ((int)(intptr_t)(p))
#define UNSET 12345         /* a result no call returns */
#define NOITEM ITEM(-77777) /* what a getter holds before it gets one */

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/* Items of priority queues: ordered by prio; id tells them apart. */
struct pitem {
    int prio;
    int id;
};

static int pitem_cmp(const void *a, const void *b)
{
    const struct pitem *x = a, *y = b;
    return (x->prio > y->prio) - (x->prio < y->prio);
}

static int all_equal_cmp(const void *a, const void *b)
{
    (void)a;
    (void)b;
    return 0;
}

/* What the drop function was given: the items as ints (or the pitems'
 * ids, drop_pitem). */
#define MAXDROPS 64
struct drops {
    int n;
    int items[MAXDROPS];
};

static void drop_int(void *item, void *arg)
{
    struct drops *d = arg;
    if (d->n < MAXDROPS)
        d->items[d->n] = VAL(item);
    d->n++;
}

static void drop_pitem(void *item, void *arg)
{
    struct drops *d = arg;
    if (d->n < MAXDROPS)
        d->items[d->n] = ((const struct pitem *)item)->id;
    d->n++;
}

static coil_queue_t *make_queue(coil_loop_t *loop, coil_queue_kind_t kind,
                                size_t maxsize, struct drops *d)
{
    coil_queue_options_t o = {0};
    o.kind = kind;
    o.maxsize = maxsize;
    if (kind == COIL_QUEUE_PRIORITY)
        o.compare = pitem_cmp;
    if (d) {
        o.drop = kind == COIL_QUEUE_PRIORITY ? drop_pitem : drop_int;
        o.drop_arg = d;
    }
    coil_queue_t *q = NULL;
    assert_int_equal(coil_queue_new(loop, &o, &q), 0);
    assert_non_null(q);
    return q;
}

static void put_ints(coil_queue_t *q, int from, int to)
{
    for (int i = from; i <= to; i++)
        assert_int_equal(coil_queue_put_nowait(q, ITEM(i)), 0);
}

/* Take every item get_nowait gives, as ints, into out; returns how many. */
static int take_all(coil_queue_t *q, int *out, int max)
{
    int n = 0;
    void *item;
    while (n < max && coil_queue_get_nowait(q, &item) == 0)
        out[n++] = VAL(item);
    return n;
}

static void assert_ints(const int *got, int n, const int *want, int nwant)
{
    assert_int_equal(n, nwant);
    for (int i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

/* A task that sleeps delay, then makes one call on the queue. */
enum op { OP_GET, OP_PUT, OP_JOIN };

struct actor {
    coil_loop_t *loop;
    coil_queue_t *q;
    enum op op;
    int64_t delay;
    void *item; /* put: what it puts; get: what it got */
    int *seq;   /* shared counter of the calls that returned */
    /* What it saw. */
    int sleep_r;
    bool called; /* the call was made (it may still be waiting) */
    int r;       /* what the call returned */
    int64_t at;  /* loop time when it returned */
    int order;   /* 1 for the first of the shared counter to return... */
};

static int actor_body(void *arg)
{
    struct actor *a = arg;
    if (a->delay > 0)
        a->sleep_r = coil_sleep(a->delay);
    a->called = true;
    switch (a->op) {
    case OP_GET:
        a->r = coil_queue_get(a->q, &a->item);
        break;
    case OP_PUT:
        a->r = coil_queue_put(a->q, a->item);
        break;
    case OP_JOIN:
        a->r = coil_queue_join(a->q);
        break;
    }
    a->at = coil_loop_time(a->loop);
    if (a->seq)
        a->order = ++*a->seq;
    return 0;
}

static struct actor actor(coil_loop_t *loop, coil_queue_t *q, enum op op,
                          int64_t delay_ms, void *item, int *seq)
{
    return (struct actor){.loop = loop,
                          .q = q,
                          .op = op,
                          .delay = delay_ms * COIL_MSEC,
                          .item = op == OP_GET ? NOITEM : item,
                          .seq = seq,
                          .sleep_r = 0,
                          .called = false,
                          .r = UNSET,
                          .at = -1,
                          .order = 0};
}

static coil_task_t *spawn_actor(struct actor *a)
{
    coil_task_t *t = NULL;
    assert_int_equal(coil_task_spawn(a->loop, actor_body, a, &t), 0);
    return t;
}

/* Run the loop until every task of ts has finished, then drop them. */
static void finish_all(coil_loop_t *loop, coil_task_t **ts, int n)
{
    for (int i = 0; i < n; i++) {
        test_run_until(loop, coil_task_future(ts[i]));
        assert_true(coil_future_done(coil_task_future(ts[i])));
    }
    for (int i = 0; i < n; i++)
        coil_task_unref(ts[i]);
}

static void call_at_ms(coil_loop_t *loop, int64_t ms, coil_callback_fn fn,
                       void *arg)
{
    assert_int_equal(coil_loop_call_later(loop, ms * COIL_MSEC, fn, arg, NULL),
                     0);
}

static void set_flag(void *arg)
{
    *(bool *)arg = true;
}

/* ------------------------------------------------------------------ */
/* Order                                                                */
/* ------------------------------------------------------------------ */

static void test_queue_fifo_order(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    int got[32], n = 0;
    put_ints(q, 1, 6);
    for (int i = 0; i < 4; i++) {
        void *item;
        assert_int_equal(coil_queue_get_nowait(q, &item), 0);
        got[n++] = VAL(item);
    }
    /* 7..14 wrap around the first buffer (8 places), then grow it. */
    put_ints(q, 7, 14);
    assert_int_equal(coil_queue_size(q), 10);
    n += take_all(q, got + n, 32 - n);
    static const int want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    assert_ints(got, n, want, 14);
    assert_true(coil_queue_empty(q));
    coil_queue_unref(q);
}

static void test_queue_lifo_order(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_LIFO, 0, NULL);
    int got[40], n = 0;
    put_ints(q, 1, 3);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    got[n++] = VAL(item); /* 3 */
    put_ints(q, 4, 5);
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    got[n++] = VAL(item); /* 5 */
    /* Past the first buffer. */
    put_ints(q, 6, 20);
    n += take_all(q, got + n, 40 - n);
    int want[20], nw = 0;
    want[nw++] = 3;
    want[nw++] = 5;
    for (int i = 20; i >= 6; i--)
        want[nw++] = i;
    want[nw++] = 4;
    want[nw++] = 2;
    want[nw++] = 1;
    assert_ints(got, n, want, nw);
    coil_queue_unref(q);
}

static void test_queue_priority_order(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_PRIORITY, 0, NULL);
    static const int prios[10] = {5, 1, 4, 9, 3, 7, 2, 8, 6, 0};
    struct pitem it[10];
    for (int i = 0; i < 10; i++) {
        it[i] = (struct pitem){prios[i], i};
        assert_int_equal(coil_queue_put_nowait(q, &it[i]), 0);
    }
    int got[10];
    for (int i = 0; i < 10; i++) {
        void *item;
        assert_int_equal(coil_queue_get_nowait(q, &item), 0);
        got[i] = ((struct pitem *)item)->prio;
    }
    static const int want[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_ints(got, 10, want, 10);
    /* Interleaved: a smaller item put later comes out first. */
    struct pitem a = {5, 0}, b = {3, 1}, c = {4, 2}, d = {1, 3};
    coil_queue_put_nowait(q, &a);
    coil_queue_put_nowait(q, &b);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, &b);
    coil_queue_put_nowait(q, &c);
    coil_queue_put_nowait(q, &d);
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, &d);
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, &c);
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, &a);
    assert_true(coil_queue_empty(q));
    coil_queue_unref(q);
}

/* Equal priorities come out in the order they were put, however the heap
 * moved them; with a compare that finds everything equal, a priority
 * queue is a FIFO. */
static void test_queue_priority_equal_keep_insertion_order(void **state)
{
    struct fixture *f = *state;
    enum { N = 200 };
    static struct pitem it[N];
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_PRIORITY, 0, NULL);
    for (int i = 0; i < N; i++) {
        it[i] = (struct pitem){(i * 7) % 5, i};
        assert_int_equal(coil_queue_put_nowait(q, &it[i]), 0);
    }
    int bad = 0, n = 0, last_prio = -1, last_id = -1;
    void *item;
    while (coil_queue_get_nowait(q, &item) == 0) {
        const struct pitem *p = item;
        if (p->prio < last_prio || (p->prio == last_prio && p->id <= last_id))
            bad++;
        last_prio = p->prio;
        last_id = p->id;
        n++;
    }
    assert_int_equal(n, N);
    assert_int_equal(bad, 0);
    coil_queue_unref(q);

    coil_queue_options_t o = {.kind = COIL_QUEUE_PRIORITY,
                              .compare = all_equal_cmp};
    assert_int_equal(coil_queue_new(f->loop, &o, &q), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(coil_queue_put_nowait(q, &it[i]), 0);
    int got[20];
    for (int i = 0; i < 10; i++) {
        assert_int_equal(coil_queue_get_nowait(q, &item), 0);
        got[i] = ((struct pitem *)item)->id;
    }
    for (int i = 20; i < 30; i++)
        assert_int_equal(coil_queue_put_nowait(q, &it[i]), 0);
    int rest[20];
    for (int i = 0; i < 20; i++) {
        assert_int_equal(coil_queue_get_nowait(q, &item), 0);
        rest[i] = ((struct pitem *)item)->id;
    }
    for (int i = 0; i < 10; i++)
        assert_int_equal(got[i], i);
    for (int i = 0; i < 20; i++)
        assert_int_equal(rest[i], 10 + i);
    coil_queue_unref(q);
}

/* ------------------------------------------------------------------ */
/* Without waiting                                                      */
/* ------------------------------------------------------------------ */

static void test_queue_nowait_limits(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 3, NULL);
    assert_int_equal(coil_queue_maxsize(q), 3);
    assert_int_equal(coil_queue_size(q), 0);
    assert_true(coil_queue_empty(q));
    assert_false(coil_queue_full(q));
    void *item = NOITEM;
    assert_int_equal(coil_queue_get_nowait(q, &item), -EAGAIN);

    assert_int_equal(coil_queue_put_nowait(q, ITEM(1)), 0);
    assert_int_equal(coil_queue_put_nowait(q, ITEM(2)), 0);
    assert_int_equal(coil_queue_size(q), 2);
    assert_false(coil_queue_empty(q));
    assert_false(coil_queue_full(q));
    /* NULL is an item like any other. */
    assert_int_equal(coil_queue_put_nowait(q, NULL), 0);
    assert_int_equal(coil_queue_size(q), 3);
    assert_true(coil_queue_full(q));
    assert_int_equal(coil_queue_put_nowait(q, ITEM(4)), -EAGAIN);
    assert_int_equal(coil_queue_size(q), 3);
    assert_int_equal(coil_queue_unfinished(q), 3);

    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(1));
    assert_false(coil_queue_full(q));
    assert_int_equal(coil_queue_put_nowait(q, ITEM(4)), 0);
    assert_true(coil_queue_full(q));
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(2));
    item = NOITEM;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_null(item);
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(4));
    assert_int_equal(coil_queue_get_nowait(q, &item), -EAGAIN);
    assert_true(coil_queue_empty(q));
    assert_int_equal(coil_queue_unfinished(q), 4); /* none marked done */
    assert_false(coil_queue_is_shutdown(q));
    coil_queue_unref(q);

    /* Unbounded (opts NULL): never full. */
    assert_int_equal(coil_queue_new(f->loop, NULL, &q), 0);
    assert_int_equal(coil_queue_maxsize(q), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(coil_queue_put_nowait(q, ITEM(i)), 0);
    assert_int_equal(coil_queue_size(q), 1000);
    assert_false(coil_queue_full(q));
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(0));
    coil_queue_unref(q);
}

/* ------------------------------------------------------------------ */
/* Bad arguments                                                        */
/* ------------------------------------------------------------------ */

struct in_cb {
    coil_queue_t *q;
    int put_r, get_r, join_r;
};

static void in_cb_calls(void *arg)
{
    struct in_cb *c = arg;
    void *item;
    c->put_r = coil_queue_put(c->q, ITEM(1));
    c->get_r = coil_queue_get(c->q, &item);
    c->join_r = coil_queue_join(c->q);
}

struct null_args {
    coil_queue_t *q;
    int get_null_out, get_null_q, put_null_q, join_null_q;
};

static int null_args_body(void *arg)
{
    struct null_args *c = arg;
    void *item;
    c->get_null_out = coil_queue_get(c->q, NULL);
    c->get_null_q = coil_queue_get(NULL, &item);
    c->put_null_q = coil_queue_put(NULL, ITEM(1));
    c->join_null_q = coil_queue_join(NULL);
    return 0;
}

static void test_queue_bad_args(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = ITEM(1);
    assert_int_equal(coil_queue_new(NULL, NULL, &q), -EINVAL);
    assert_null(q);
    assert_int_equal(coil_queue_new(f->loop, NULL, NULL), -EINVAL);
    coil_queue_options_t o = {0};
    o.kind = (coil_queue_kind_t)3;
    q = ITEM(1);
    assert_int_equal(coil_queue_new(f->loop, &o, &q), -EINVAL);
    assert_null(q);
    o.kind = (coil_queue_kind_t)-1;
    assert_int_equal(coil_queue_new(f->loop, &o, &q), -EINVAL);
    o.kind = COIL_QUEUE_PRIORITY;
    q = ITEM(1);
    assert_int_equal(coil_queue_new(f->loop, &o, &q), -EINVAL);
    assert_null(q);

    /* NULL queue. */
    void *item = NOITEM;
    assert_int_equal(coil_queue_put_nowait(NULL, ITEM(1)), -EINVAL);
    assert_int_equal(coil_queue_get_nowait(NULL, &item), -EINVAL);
    assert_int_equal(coil_queue_put_threadsafe(NULL, ITEM(1)), -EINVAL);
    assert_int_equal(coil_queue_put(NULL, ITEM(1)), -EINVAL);
    assert_int_equal(coil_queue_get(NULL, &item), -EINVAL);
    assert_int_equal(coil_queue_join(NULL), -EINVAL);
    assert_int_equal(coil_queue_task_done(NULL), -EINVAL);
    assert_int_equal(coil_queue_shutdown(NULL, false), -EINVAL);
    assert_int_equal(coil_queue_shutdown(NULL, true), -EINVAL);
    assert_null(coil_queue_ref(NULL));
    coil_queue_unref(NULL);
    assert_int_equal(coil_queue_size(NULL), 0);
    assert_int_equal(coil_queue_maxsize(NULL), 0);
    assert_true(coil_queue_empty(NULL));
    assert_false(coil_queue_full(NULL));
    assert_int_equal(coil_queue_unfinished(NULL), 0);
    assert_false(coil_queue_is_shutdown(NULL));
    assert_ptr_equal(item, NOITEM);

    q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    assert_int_equal(coil_queue_get_nowait(q, NULL), -EINVAL);
    /* Not made threadsafe. */
    assert_int_equal(coil_queue_put_threadsafe(q, ITEM(1)), -EINVAL);
    assert_int_equal(coil_queue_size(q), 0);
    /* The waits outside a task: on the main stack... */
    assert_int_equal(coil_queue_put(q, ITEM(1)), -EPERM);
    assert_int_equal(coil_queue_get(q, &item), -EPERM);
    assert_int_equal(coil_queue_join(q), -EPERM);
    assert_ptr_equal(item, NOITEM);
    assert_int_equal(coil_queue_size(q), 0);
    assert_int_equal(coil_queue_unfinished(q), 0);
    /* ...and in a callback. */
    struct in_cb c = {q, UNSET, UNSET, UNSET};
    assert_int_equal(coil_loop_call_soon(f->loop, in_cb_calls, &c, NULL), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(c.put_r, -EPERM);
    assert_int_equal(c.get_r, -EPERM);
    assert_int_equal(c.join_r, -EPERM);
    assert_int_equal(coil_queue_size(q), 0);
    /* NULLs in a task. */
    struct null_args na = {q, UNSET, UNSET, UNSET, UNSET};
    assert_int_equal(test_run_task(f->loop, null_args_body, &na), 0);
    assert_int_equal(na.get_null_out, -EINVAL);
    assert_int_equal(na.get_null_q, -EINVAL);
    assert_int_equal(na.put_null_q, -EINVAL);
    assert_int_equal(na.join_null_q, -EINVAL);
    coil_queue_unref(q);
}

static void test_queue_new_closed_loop(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(coil_loop_close(f->loop), 0);
    coil_queue_t *q = ITEM(1);
    assert_int_equal(coil_queue_new(f->loop, NULL, &q), -EBADF);
    assert_null(q);
    coil_queue_options_t o = {.threadsafe = true};
    q = ITEM(1);
    assert_int_equal(coil_queue_new(f->loop, &o, &q), -EBADF);
    assert_null(q);
}

struct other_loop {
    coil_queue_t *q;
    int put_r, get_r, join_r;
    void *item;
};

static int other_loop_body(void *arg)
{
    struct other_loop *c = arg;
    c->put_r = coil_queue_put(c->q, ITEM(7));
    c->get_r = coil_queue_get(c->q, &c->item);
    c->join_r = coil_queue_join(c->q);
    return 0;
}

/* A task of another loop: an item to get, room to put and an unfinished
 * item to join, yet every wait is refused and nothing changes. */
static void test_queue_other_loop(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    put_ints(q, 1, 1);
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    struct other_loop c = {q, UNSET, UNSET, UNSET, NOITEM};
    int r = test_run_task(other, other_loop_body, &c);
    coil_loop_unref(other);
    assert_int_equal(r, 0);
    assert_int_equal(c.put_r, -EINVAL);
    assert_int_equal(c.get_r, -EINVAL);
    assert_int_equal(c.join_r, -EINVAL);
    assert_ptr_equal(c.item, NOITEM);
    assert_int_equal(coil_queue_size(q), 1);
    assert_int_equal(coil_queue_unfinished(q), 1);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(1));
    coil_queue_unref(q);
}

/* ------------------------------------------------------------------ */
/* Waiting                                                              */
/* ------------------------------------------------------------------ */

struct full_put {
    coil_loop_t *loop;
    coil_queue_t *q;
    struct actor *p;
    bool p_called;
    int p_r_before;
    int get_r;
    void *got;
    bool full_after_get;
    int barge_r;
    size_t size_after;
    int64_t at;
};

static void full_put_cb(void *arg)
{
    struct full_put *c = arg;
    c->p_called = c->p->called;
    c->p_r_before = c->p->r;
    c->at = coil_loop_time(c->loop);
    c->get_r = coil_queue_get_nowait(c->q, &c->got);
    /* The place freed is promised to the waiting putter. */
    c->full_after_get = coil_queue_full(c->q);
    c->barge_r = coil_queue_put_nowait(c->q, ITEM(99));
    c->size_after = coil_queue_size(c->q);
}

static void test_queue_put_waits_while_full(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 2, NULL);
    put_ints(q, 1, 2);
    struct actor p = actor(f->loop, q, OP_PUT, 0, ITEM(3), NULL);
    struct full_put c = {.loop = f->loop, .q = q, .p = &p, .got = NOITEM};
    coil_task_t *t = spawn_actor(&p);
    call_at_ms(f->loop, 50, full_put_cb, &c);
    finish_all(f->loop, &t, 1);
    assert_true(c.p_called);
    assert_int_equal(c.p_r_before, UNSET); /* it was waiting */
    assert_int_equal(c.get_r, 0);
    assert_ptr_equal(c.got, ITEM(1));
    assert_true(c.full_after_get);
    assert_int_equal(c.barge_r, -EAGAIN);
    assert_int_equal(c.size_after, 1);
    assert_int_equal(p.r, 0);
    assert_true(p.at >= c.at && p.at < c.at + COIL_MSEC);
    int got[4];
    static const int want[] = {2, 3};
    assert_ints(got, take_all(q, got, 4), want, 2);
    assert_int_equal(coil_queue_unfinished(q), 3);
    coil_queue_unref(q);
}

struct empty_get {
    coil_loop_t *loop;
    coil_queue_t *q;
    struct actor *g;
    bool g_called;
    int g_r_before;
    int put_r;
    int64_t at;
};

static void empty_get_cb(void *arg)
{
    struct empty_get *c = arg;
    c->g_called = c->g->called;
    c->g_r_before = c->g->r;
    c->at = coil_loop_time(c->loop);
    c->put_r = coil_queue_put_nowait(c->q, ITEM(5));
}

static void test_queue_get_waits_while_empty(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct actor g = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    struct empty_get c = {.loop = f->loop, .q = q, .g = &g, .put_r = UNSET};
    coil_task_t *t = spawn_actor(&g);
    call_at_ms(f->loop, 30, empty_get_cb, &c);
    finish_all(f->loop, &t, 1);
    assert_true(c.g_called);
    assert_int_equal(c.g_r_before, UNSET);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(g.r, 0);
    assert_ptr_equal(g.item, ITEM(5));
    assert_true(g.at >= c.at && g.at < c.at + COIL_MSEC);
    assert_true(coil_queue_empty(q));
    coil_queue_unref(q);
}

struct fair_get {
    coil_queue_t *q;
    struct actor *g;
    int n;
    bool all_waiting;
    int put_r[3];
};

static void fair_get_cb(void *arg)
{
    struct fair_get *c = arg;
    c->all_waiting = true;
    for (int i = 0; i < c->n; i++)
        if (!c->g[i].called || c->g[i].r != UNSET)
            c->all_waiting = false;
    for (int i = 0; i < c->n; i++)
        c->put_r[i] = coil_queue_put_nowait(c->q, ITEM(100 + i));
}

/* Getters come to the line in the order 1, 2, 0 (their sleeps) and are
 * served in that order. */
static void test_queue_getters_first_come_first_served(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    int seq = 0;
    static const int64_t delays[3] = {30, 10, 20};
    struct actor g[3];
    coil_task_t *t[3];
    for (int i = 0; i < 3; i++) {
        g[i] = actor(f->loop, q, OP_GET, delays[i], NULL, &seq);
        t[i] = spawn_actor(&g[i]);
    }
    struct fair_get c = {q, g, 3, false, {UNSET, UNSET, UNSET}};
    call_at_ms(f->loop, 100, fair_get_cb, &c);
    finish_all(f->loop, t, 3);
    assert_true(c.all_waiting);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c.put_r[i], 0);
        assert_int_equal(g[i].r, 0);
    }
    assert_ptr_equal(g[1].item, ITEM(100));
    assert_ptr_equal(g[2].item, ITEM(101));
    assert_ptr_equal(g[0].item, ITEM(102));
    assert_int_equal(g[1].order, 1);
    assert_int_equal(g[2].order, 2);
    assert_int_equal(g[0].order, 3);
    assert_true(coil_queue_empty(q));
    coil_queue_unref(q);
}

struct consumer4 {
    coil_queue_t *q;
    int64_t delay;
    int r[4];
    int items[4];
};

static int consumer4_body(void *arg)
{
    struct consumer4 *c = arg;
    coil_sleep(c->delay);
    for (int i = 0; i < 4; i++) {
        void *item = NOITEM;
        c->r[i] = coil_queue_get(c->q, &item);
        c->items[i] = VAL(item);
    }
    return 0;
}

/* Putters come to the line of a full queue in the order 1, 2, 0, and
 * their items go in in that order. */
static void test_queue_putters_first_come_first_served(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 1, NULL);
    put_ints(q, 1, 1);
    int64_t t0 = coil_loop_time(f->loop);
    int seq = 0;
    static const int64_t delays[3] = {30, 10, 20};
    struct actor p[3];
    coil_task_t *t[4];
    for (int i = 0; i < 3; i++) {
        p[i] = actor(f->loop, q, OP_PUT, delays[i], ITEM(200 + i), &seq);
        t[i] = spawn_actor(&p[i]);
    }
    struct consumer4 c = {
        q, 100 * COIL_MSEC, {UNSET, UNSET, UNSET, UNSET}, {0}};
    assert_int_equal(coil_task_spawn(f->loop, consumer4_body, &c, &t[3]), 0);
    finish_all(f->loop, t, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.r[i], 0);
    static const int want[4] = {1, 201, 202, 200};
    assert_ints(c.items, 4, want, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(p[i].r, 0);
        assert_true(p[i].at >= t0 + 100 * COIL_MSEC); /* waited */
    }
    assert_int_equal(p[1].order, 1);
    assert_int_equal(p[2].order, 2);
    assert_int_equal(p[0].order, 3);
    assert_true(coil_queue_empty(q));
    coil_queue_unref(q);
}

struct barge {
    coil_queue_t *q;
    struct actor *g;
    int g_r_before;
    int put_r, put2_r, nowait_r, nowait2_r;
    void *nowait_item;
    size_t size_after;
    bool empty_after;
};

static void barge_cb(void *arg)
{
    struct barge *c = arg;
    c->g_r_before = c->g->r;
    c->put_r = coil_queue_put_nowait(c->q, ITEM(1));
    /* The item is promised to the woken getter, which has not run. */
    c->nowait_r = coil_queue_get_nowait(c->q, &c->nowait_item);
    c->size_after = coil_queue_size(c->q);
    c->empty_after = coil_queue_empty(c->q);
}

static void test_queue_no_barging_get(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct actor g = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    struct barge c = {.q = q, .g = &g, .nowait_item = NOITEM};
    coil_task_t *t = spawn_actor(&g);
    call_at_ms(f->loop, 10, barge_cb, &c);
    finish_all(f->loop, &t, 1);
    assert_int_equal(c.g_r_before, UNSET);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(c.nowait_r, -EAGAIN);
    assert_ptr_equal(c.nowait_item, NOITEM);
    assert_int_equal(c.size_after, 1);
    assert_false(c.empty_after);
    assert_int_equal(g.r, 0);
    assert_ptr_equal(g.item, ITEM(1));
    assert_true(coil_queue_empty(q));
    coil_queue_unref(q);
}

static void promised_head_cb(void *arg)
{
    struct barge *c = arg;
    c->g_r_before = c->g->r;
    c->put_r = coil_queue_put_nowait(c->q, ITEM(1));  /* promised to g */
    c->put2_r = coil_queue_put_nowait(c->q, ITEM(2)); /* nobody's */
    c->nowait_r = coil_queue_get_nowait(c->q, &c->nowait_item);
    c->size_after = coil_queue_size(c->q);
}

/* FIFO: the item promised to the waiting getter (the first put) stays at
 * the head for it; a get_nowait made before the getter runs may take
 * only the item nobody was promised (the second). */
static void test_queue_promised_item_stays_for_getter(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct actor g = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    struct barge c = {.q = q, .g = &g, .nowait_item = NOITEM};
    coil_task_t *t = spawn_actor(&g);
    call_at_ms(f->loop, 10, promised_head_cb, &c);
    finish_all(f->loop, &t, 1);
    coil_queue_unref(q);
    assert_int_equal(c.g_r_before, UNSET);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(c.put2_r, 0);
    assert_int_equal(c.nowait_r, 0);
    assert_int_equal(c.size_after, 1);
    assert_int_equal(g.r, 0);
    /* First come, first served: the getter waited before the item was
     * put, the get_nowait came after. */
    assert_ptr_equal(g.item, ITEM(1));
    assert_ptr_equal(c.nowait_item, ITEM(2));
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                         */
/* ------------------------------------------------------------------ */

struct one_call {
    coil_queue_t *q;
    void *item;
    int r;
};

static int get_body(void *arg)
{
    struct one_call *c = arg;
    c->r = coil_queue_get(c->q, &c->item);
    return 0;
}

static int put_body(void *arg)
{
    struct one_call *c = arg;
    c->r = coil_queue_put(c->q, c->item);
    return 0;
}

static int join_body(void *arg)
{
    struct one_call *c = arg;
    c->r = coil_queue_join(c->q);
    return 0;
}

static void test_queue_get_cancelled_in_line(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct one_call c = {q, NOITEM, UNSET};
    test_run_cancelled(f->loop, get_body, &c, 10 * COIL_MSEC, NULL);
    assert_int_equal(c.r, -ECANCELED);
    assert_ptr_equal(c.item, NOITEM);
    /* The cancelled getter left the line: an item put now is nobody's. */
    assert_int_equal(coil_queue_put_nowait(q, ITEM(1)), 0);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(1));
    coil_queue_unref(q);
}

static void test_queue_put_cancelled_in_line(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 1, NULL);
    put_ints(q, 1, 1);
    struct one_call c = {q, ITEM(2), UNSET};
    test_run_cancelled(f->loop, put_body, &c, 10 * COIL_MSEC, NULL);
    assert_int_equal(c.r, -ECANCELED);
    assert_int_equal(coil_queue_size(q), 1);
    assert_int_equal(coil_queue_unfinished(q), 1);
    /* The place freed now is nobody's. */
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(1));
    assert_false(coil_queue_full(q));
    assert_int_equal(coil_queue_put_nowait(q, ITEM(3)), 0);
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(3));
    coil_queue_unref(q);
}

/* In one callback: an item put (promised to the first getter), then that
 * getter cancelled before it ran. */
struct promise_cancel {
    coil_queue_t *q;
    coil_task_t *victim;
    int put_r, cancel_r, nowait_r;
    size_t size_after;
};

static void put_then_cancel_cb(void *arg)
{
    struct promise_cancel *c = arg;
    c->put_r = coil_queue_put_nowait(c->q, ITEM(1));
    c->cancel_r = coil_task_cancel(c->victim);
    c->size_after = coil_queue_size(c->q);
}

static void test_queue_get_cancelled_after_promise_next_getter(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    int seq = 0;
    struct actor g1 = actor(f->loop, q, OP_GET, 0, NULL, &seq);
    struct actor g2 = actor(f->loop, q, OP_GET, 1, NULL, &seq);
    coil_task_t *t[2] = {spawn_actor(&g1), spawn_actor(&g2)};
    struct promise_cancel c = {q, t[0], UNSET, UNSET, UNSET, 0};
    call_at_ms(f->loop, 10, put_then_cancel_cb, &c);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(c.cancel_r, 0);
    assert_int_equal(c.size_after, 1);
    assert_int_equal(g1.r, -ECANCELED);
    assert_ptr_equal(g1.item, NOITEM);
    assert_int_equal(g2.r, 0);
    assert_ptr_equal(g2.item, ITEM(1));
    assert_true(coil_queue_empty(q));
    assert_int_equal(coil_queue_unfinished(q), 1);
    coil_queue_unref(q);
}

static void test_queue_get_cancelled_after_promise_item_stays(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct actor g = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    coil_task_t *t = spawn_actor(&g);
    struct promise_cancel c = {q, t, UNSET, UNSET, UNSET, 0};
    call_at_ms(f->loop, 10, put_then_cancel_cb, &c);
    finish_all(f->loop, &t, 1);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(c.cancel_r, 0);
    assert_int_equal(g.r, -ECANCELED);
    assert_ptr_equal(g.item, NOITEM);
    /* The item is still there, and nobody's. */
    assert_int_equal(coil_queue_size(q), 1);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(1));
    coil_queue_unref(q);
}

struct place_cancel {
    coil_queue_t *q;
    coil_task_t *victim;
    int get_r, barge_r, cancel_r;
    void *got;
};

static void get_then_cancel_cb(void *arg)
{
    struct place_cancel *c = arg;
    c->get_r = coil_queue_get_nowait(c->q, &c->got);
    c->barge_r = coil_queue_put_nowait(c->q, ITEM(99));
    c->cancel_r = coil_task_cancel(c->victim);
}

/* A place freed (promised to the first putter), then that putter
 * cancelled before it ran: its item was not put, the place went to the
 * second putter. */
static void test_queue_put_cancelled_after_promise(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 1, NULL);
    put_ints(q, 1, 1);
    struct actor p1 = actor(f->loop, q, OP_PUT, 0, ITEM(11), NULL);
    struct actor p2 = actor(f->loop, q, OP_PUT, 1, ITEM(12), NULL);
    coil_task_t *t[2] = {spawn_actor(&p1), spawn_actor(&p2)};
    struct place_cancel c = {q, t[0], UNSET, UNSET, UNSET, NOITEM};
    call_at_ms(f->loop, 10, get_then_cancel_cb, &c);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.get_r, 0);
    assert_ptr_equal(c.got, ITEM(1));
    assert_int_equal(c.barge_r, -EAGAIN);
    assert_int_equal(c.cancel_r, 0);
    assert_int_equal(p1.r, -ECANCELED);
    assert_int_equal(p2.r, 0);
    int got[4];
    static const int want[] = {12};
    assert_ints(got, take_all(q, got, 4), want, 1);
    assert_int_equal(coil_queue_unfinished(q), 2); /* 1 and 12 */
    coil_queue_unref(q);
}

struct pending {
    coil_loop_t *loop;
    coil_queue_t *empty, *full, *busy;
    bool cb_ran;
    int get_r, put_r, join_r, after_r, yield_r;
    bool ran_at_get, ran_at_put, ran_at_join, ran_at_yield;
    void *item;
};

static int pending_body(void *arg)
{
    struct pending *c = arg;
    coil_task_t *self = coil_current_task();
    coil_loop_call_soon(c->loop, set_flag, &c->cb_ran, NULL);
    coil_task_cancel(self);
    c->get_r = coil_queue_get(c->empty, &c->item);
    c->ran_at_get = c->cb_ran;
    coil_task_cancel(self);
    c->put_r = coil_queue_put(c->full, ITEM(2));
    c->ran_at_put = c->cb_ran;
    coil_task_cancel(self);
    c->join_r = coil_queue_join(c->busy);
    c->ran_at_join = c->cb_ran;
    /* Each cancel was delivered once: none is left for these. */
    c->after_r = coil_queue_put(c->busy, ITEM(3));
    c->yield_r = coil_yield();
    c->ran_at_yield = c->cb_ran;
    return 0;
}

/* A cancel pending when the wait begins: -ECANCELED without suspending
 * (a callback made ready before never got to run), nothing changed. */
static void test_queue_cancel_pending_before_wait(void **state)
{
    struct fixture *f = *state;
    struct pending c = {.loop = f->loop,
                        .empty = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL),
                        .full = make_queue(f->loop, COIL_QUEUE_FIFO, 1, NULL),
                        .busy = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL),
                        .get_r = UNSET,
                        .put_r = UNSET,
                        .join_r = UNSET,
                        .after_r = UNSET,
                        .yield_r = UNSET,
                        .item = NOITEM};
    put_ints(c.full, 1, 1);
    put_ints(c.busy, 1, 1);
    test_run_task(f->loop, pending_body, &c);
    assert_int_equal(c.get_r, -ECANCELED);
    assert_false(c.ran_at_get);
    assert_ptr_equal(c.item, NOITEM);
    assert_int_equal(c.put_r, -ECANCELED);
    assert_false(c.ran_at_put);
    assert_int_equal(c.join_r, -ECANCELED);
    assert_false(c.ran_at_join);
    assert_int_equal(c.after_r, 0);
    assert_int_equal(c.yield_r, 0);
    assert_true(c.ran_at_yield);
    assert_int_equal(coil_queue_size(c.empty), 0);
    assert_int_equal(coil_queue_size(c.full), 1);
    assert_int_equal(coil_queue_unfinished(c.full), 1);
    assert_int_equal(coil_queue_size(c.busy), 2);
    /* No waiter was left in line: an item put now is nobody's. */
    assert_int_equal(coil_queue_put_nowait(c.empty, ITEM(9)), 0);
    void *item;
    assert_int_equal(coil_queue_get_nowait(c.empty, &item), 0);
    assert_ptr_equal(item, ITEM(9));
    coil_queue_unref(c.empty);
    coil_queue_unref(c.full);
    coil_queue_unref(c.busy);
}

struct tmo {
    coil_loop_t *loop;
    coil_queue_t *q;
    int begin_r, get_r, end_r, after_r;
    int64_t elapsed;
    void *item;
};

static int timeout_body(void *arg)
{
    struct tmo *c = arg;
    coil_timeout_t *sc;
    int64_t t0 = coil_loop_time(c->loop);
    c->begin_r = coil_timeout_begin(10 * COIL_MSEC, &sc);
    if (c->begin_r)
        return 0;
    c->get_r = coil_queue_get(c->q, &c->item);
    c->elapsed = coil_loop_time(c->loop) - t0;
    c->end_r = coil_timeout_end(sc, c->get_r);
    c->after_r = coil_queue_put(c->q, ITEM(4));
    return 0;
}

static void test_queue_get_timeout(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct tmo c = {f->loop, q, UNSET, UNSET, UNSET, UNSET, 0, NOITEM};
    assert_int_equal(test_run_task(f->loop, timeout_body, &c), 0);
    assert_int_equal(c.begin_r, 0);
    assert_int_equal(c.get_r, -ECANCELED);
    assert_int_equal(c.end_r, -ETIMEDOUT);
    assert_ptr_equal(c.item, NOITEM);
    assert_true(c.elapsed >= 10 * COIL_MSEC && c.elapsed < 11 * COIL_MSEC);
    assert_int_equal(c.after_r, 0);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(4));
    coil_queue_unref(q);
}

/* ------------------------------------------------------------------ */
/* task_done and join                                                   */
/* ------------------------------------------------------------------ */

struct join_now {
    coil_loop_t *loop;
    coil_queue_t *q;
    bool cb_ran;
    int join1_r, join2_r;
    bool ran_at_join1, ran_at_join2;
};

static int join_now_body(void *arg)
{
    struct join_now *c = arg;
    coil_loop_call_soon(c->loop, set_flag, &c->cb_ran, NULL);
    c->join1_r = coil_queue_join(c->q);
    c->ran_at_join1 = c->cb_ran;
    void *item;
    coil_queue_put_nowait(c->q, ITEM(1));
    coil_queue_get_nowait(c->q, &item);
    coil_queue_task_done(c->q);
    c->join2_r = coil_queue_join(c->q);
    c->ran_at_join2 = c->cb_ran;
    return 0;
}

static void test_queue_join_nothing_unfinished(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct join_now c = {f->loop, q, false, UNSET, UNSET, true, true};
    assert_int_equal(test_run_task(f->loop, join_now_body, &c), 0);
    assert_int_equal(c.join1_r, 0);
    assert_false(c.ran_at_join1);
    assert_int_equal(c.join2_r, 0);
    assert_false(c.ran_at_join2);
    assert_int_equal(coil_queue_unfinished(q), 0);
    coil_queue_unref(q);
}

struct worker {
    coil_loop_t *loop;
    coil_queue_t *q;
    struct actor *j; /* the first joiner */
    int *seq;
    int get_r[3], done_r[3];
    size_t unfinished_before[3];
    int j_r_before[3];
    int done_order[3];
    int64_t done_at[3];
};

static int worker_body(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 3; i++) {
        void *item;
        w->get_r[i] = coil_queue_get(w->q, &item);
        coil_sleep(10 * COIL_MSEC);
        w->unfinished_before[i] = coil_queue_unfinished(w->q);
        w->j_r_before[i] = w->j->r;
        w->done_r[i] = coil_queue_task_done(w->q);
        w->done_at[i] = coil_loop_time(w->loop);
        w->done_order[i] = ++*w->seq;
    }
    return 0;
}

static void test_queue_join_waits_for_task_done(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    put_ints(q, 1, 3);
    assert_int_equal(coil_queue_unfinished(q), 3);
    int seq = 0;
    struct actor j1 = actor(f->loop, q, OP_JOIN, 0, NULL, &seq);
    struct actor j2 = actor(f->loop, q, OP_JOIN, 5, NULL, &seq);
    struct worker w = {.loop = f->loop, .q = q, .j = &j1, .seq = &seq};
    coil_task_t *t[3] = {spawn_actor(&j1), spawn_actor(&j2), NULL};
    assert_int_equal(coil_task_spawn(f->loop, worker_body, &w, &t[2]), 0);
    finish_all(f->loop, t, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w.get_r[i], 0);
        assert_int_equal(w.done_r[i], 0);
        assert_int_equal(w.unfinished_before[i], (size_t)(3 - i));
        assert_int_equal(w.j_r_before[i], UNSET);
    }
    assert_int_equal(j1.r, 0);
    assert_int_equal(j2.r, 0);
    /* Both woke after the last task_done. */
    assert_true(j1.order > w.done_order[2]);
    assert_true(j2.order > w.done_order[2]);
    assert_true(j1.at >= w.done_at[2] && j2.at >= w.done_at[2]);
    assert_int_equal(coil_queue_unfinished(q), 0);
    coil_queue_unref(q);
}

static void test_queue_task_done_overflow(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    assert_int_equal(coil_queue_task_done(q), -EOVERFLOW);
    assert_int_equal(coil_queue_unfinished(q), 0);
    put_ints(q, 1, 2);
    assert_int_equal(coil_queue_unfinished(q), 2);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_int_equal(coil_queue_unfinished(q), 2); /* a get is not done */
    assert_int_equal(coil_queue_task_done(q), 0);
    assert_int_equal(coil_queue_unfinished(q), 1);
    assert_int_equal(coil_queue_task_done(q), 0);
    assert_int_equal(coil_queue_unfinished(q), 0);
    assert_int_equal(coil_queue_task_done(q), -EOVERFLOW);
    assert_int_equal(coil_queue_unfinished(q), 0);
    /* A put failing does not count. */
    coil_queue_t *small = make_queue(f->loop, COIL_QUEUE_FIFO, 1, NULL);
    put_ints(small, 1, 1);
    assert_int_equal(coil_queue_put_nowait(small, ITEM(2)), -EAGAIN);
    assert_int_equal(coil_queue_unfinished(small), 1);
    coil_queue_unref(small);
    coil_queue_unref(q);
}

static void test_queue_join_cancelled(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    put_ints(q, 1, 1);
    struct one_call c = {q, NULL, UNSET};
    test_run_cancelled(f->loop, join_body, &c, 10 * COIL_MSEC, NULL);
    assert_int_equal(c.r, -ECANCELED);
    assert_int_equal(coil_queue_unfinished(q), 1);
    assert_int_equal(coil_queue_size(q), 1);
    assert_int_equal(coil_queue_task_done(q), 0);
    assert_int_equal(coil_queue_unfinished(q), 0);
    coil_queue_unref(q);
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                             */
/* ------------------------------------------------------------------ */

/* Gets until an error; then one put. */
struct drainer {
    coil_queue_t *q;
    int64_t delay;
    int n;
    int items[16];
    int last_r, put_r;
};

static int drainer_body(void *arg)
{
    struct drainer *d = arg;
    coil_sleep(d->delay);
    void *item;
    while ((d->last_r = coil_queue_get(d->q, &item)) == 0 && d->n < 16)
        d->items[d->n++] = VAL(item);
    d->put_r = coil_queue_put(d->q, ITEM(8));
    return 0;
}

struct shut_cb {
    coil_queue_t *q;
    struct actor *a, *b; /* waiters to look at */
    bool immediate;
    bool also_put; /* put an item first */
    bool also_get; /* get an item first */
    int a_r_before, b_r_before;
    int put_r, get_r;
    void *got;
    int shut_r;
    bool is_shut;
    int put_after_r;
    size_t size_after, unfinished_after;
    int drops_after; /* drop calls made by the time shutdown returned */
    struct drops *d;
    int64_t at;
};

static void shut_cb_fn(void *arg)
{
    struct shut_cb *c = arg;
    c->at = coil_loop_time(coil_running_loop());
    c->a_r_before = c->a ? c->a->r : UNSET;
    c->b_r_before = c->b ? c->b->r : UNSET;
    if (c->also_put)
        c->put_r = coil_queue_put_nowait(c->q, ITEM(1));
    if (c->also_get)
        c->get_r = coil_queue_get_nowait(c->q, &c->got);
    c->shut_r = coil_queue_shutdown(c->q, c->immediate);
    c->is_shut = coil_queue_is_shutdown(c->q);
    c->put_after_r = coil_queue_put_nowait(c->q, ITEM(9));
    c->size_after = coil_queue_size(c->q);
    c->unfinished_after = coil_queue_unfinished(c->q);
    c->drops_after = c->d ? c->d->n : 0;
}

static struct shut_cb shut_cb_make(coil_queue_t *q, bool immediate,
                                   struct actor *a, struct actor *b,
                                   struct drops *d)
{
    return (struct shut_cb){.q = q,
                            .a = a,
                            .b = b,
                            .immediate = immediate,
                            .a_r_before = UNSET,
                            .b_r_before = UNSET,
                            .put_r = UNSET,
                            .get_r = UNSET,
                            .got = NOITEM,
                            .shut_r = UNSET,
                            .put_after_r = UNSET,
                            .drops_after = -1,
                            .d = d};
}

/* Graceful: puts fail and a waiting putter wakes with -ESHUTDOWN; the
 * getters drain what is left, then get -ESHUTDOWN. */
static void test_queue_shutdown_graceful(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 2, &d);
    put_ints(q, 1, 2);
    struct actor p = actor(f->loop, q, OP_PUT, 0, ITEM(3), NULL);
    struct drainer dr = {q, 20 * COIL_MSEC, 0, {0}, UNSET, UNSET};
    coil_task_t *t[2] = {spawn_actor(&p), NULL};
    assert_int_equal(coil_task_spawn(f->loop, drainer_body, &dr, &t[1]), 0);
    struct shut_cb c = shut_cb_make(q, false, &p, NULL, &d);
    call_at_ms(f->loop, 10, shut_cb_fn, &c);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.a_r_before, UNSET);
    assert_int_equal(c.shut_r, 0);
    assert_true(c.is_shut);
    assert_int_equal(c.put_after_r, -ESHUTDOWN);
    assert_int_equal(c.size_after, 2);
    assert_int_equal(c.unfinished_after, 2);
    assert_int_equal(c.drops_after, 0);
    assert_int_equal(p.r, -ESHUTDOWN);
    assert_true(p.at >= c.at && p.at < c.at + COIL_MSEC); /* woken */
    static const int want[] = {1, 2};
    assert_ints(dr.items, dr.n, want, 2);
    assert_int_equal(dr.last_r, -ESHUTDOWN);
    assert_int_equal(dr.put_r, -ESHUTDOWN);
    void *item = NOITEM;
    assert_int_equal(coil_queue_get_nowait(q, &item), -ESHUTDOWN);
    assert_int_equal(coil_queue_put_nowait(q, ITEM(5)), -ESHUTDOWN);
    assert_ptr_equal(item, NOITEM);
    assert_int_equal(coil_queue_shutdown(q, false), 0); /* again */
    assert_true(coil_queue_is_shutdown(q));
    assert_int_equal(coil_queue_unfinished(q), 2);
    coil_queue_unref(q);
    assert_int_equal(d.n, 0);
}

static void test_queue_shutdown_graceful_wakes_getters(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct actor g1 = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    struct actor g2 = actor(f->loop, q, OP_GET, 1, NULL, NULL);
    coil_task_t *t[2] = {spawn_actor(&g1), spawn_actor(&g2)};
    struct shut_cb c = shut_cb_make(q, false, &g1, &g2, NULL);
    call_at_ms(f->loop, 10, shut_cb_fn, &c);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.a_r_before, UNSET);
    assert_int_equal(c.b_r_before, UNSET);
    assert_int_equal(c.shut_r, 0);
    assert_int_equal(g1.r, -ESHUTDOWN);
    assert_int_equal(g2.r, -ESHUTDOWN);
    assert_ptr_equal(g1.item, NOITEM);
    assert_ptr_equal(g2.item, NOITEM);
    assert_true(g1.at >= c.at && g1.at < c.at + COIL_MSEC);
    assert_true(g2.at >= c.at && g2.at < c.at + COIL_MSEC);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), -ESHUTDOWN);
    coil_queue_unref(q);
}

/* Graceful, with an item promised to the first of two getters: it still
 * gets it; the second wakes with -ESHUTDOWN. */
static void test_queue_shutdown_graceful_promised_getter(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct actor g1 = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    struct actor g2 = actor(f->loop, q, OP_GET, 1, NULL, NULL);
    coil_task_t *t[2] = {spawn_actor(&g1), spawn_actor(&g2)};
    struct shut_cb c = shut_cb_make(q, false, &g1, &g2, NULL);
    c.also_put = true;
    call_at_ms(f->loop, 10, shut_cb_fn, &c);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(c.shut_r, 0);
    assert_int_equal(c.size_after, 1);
    assert_int_equal(g1.r, 0);
    assert_ptr_equal(g1.item, ITEM(1));
    assert_int_equal(g2.r, -ESHUTDOWN);
    assert_true(coil_queue_empty(q));
    coil_queue_unref(q);
}

/* Immediate: the items go to the drop function in order, counted done,
 * so a waiting joiner returns; a waiting putter wakes with -ESHUTDOWN and
 * its item is not dropped (it is still the caller's). */
static void test_queue_shutdown_immediate(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 4, &d);
    put_ints(q, 1, 4);
    struct actor p = actor(f->loop, q, OP_PUT, 0, ITEM(5), NULL);
    struct actor j = actor(f->loop, q, OP_JOIN, 0, NULL, NULL);
    coil_task_t *t[2] = {spawn_actor(&p), spawn_actor(&j)};
    struct shut_cb c = shut_cb_make(q, true, &p, &j, &d);
    call_at_ms(f->loop, 10, shut_cb_fn, &c);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.a_r_before, UNSET);
    assert_int_equal(c.b_r_before, UNSET);
    assert_int_equal(c.shut_r, 4);
    assert_true(c.is_shut);
    assert_int_equal(c.drops_after, 4);
    assert_int_equal(c.put_after_r, -ESHUTDOWN);
    assert_int_equal(c.size_after, 0);
    assert_int_equal(c.unfinished_after, 0);
    assert_int_equal(p.r, -ESHUTDOWN);
    assert_int_equal(j.r, 0);
    static const int want[] = {1, 2, 3, 4};
    assert_ints(d.items, d.n, want, 4);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), -ESHUTDOWN);
    assert_int_equal(coil_queue_shutdown(q, true), 0);
    assert_int_equal(coil_queue_shutdown(q, false), 0);
    assert_true(coil_queue_is_shutdown(q));
    coil_queue_unref(q);
    assert_int_equal(d.n, 4);
}

/* The drop function gets the items in queue order: FIFO after the ring
 * wrapped; a graceful shutdown drops nothing, an immediate one after it
 * drops what is left. */
static void test_queue_shutdown_drop_order_fifo(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 8, &d);
    put_ints(q, 1, 8);
    int got[8];
    assert_int_equal(take_all(q, got, 3), 3);
    put_ints(q, 9, 11); /* wraps */
    assert_int_equal(coil_queue_shutdown(q, false), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(coil_queue_size(q), 8);
    assert_int_equal(coil_queue_shutdown(q, true), 8);
    static const int want[] = {4, 5, 6, 7, 8, 9, 10, 11};
    assert_ints(d.items, d.n, want, 8);
    assert_int_equal(coil_queue_unfinished(q), 3); /* the 3 taken */
    coil_queue_unref(q);
    assert_int_equal(d.n, 8);
}

/* LIFO: queue order is the order the gets would take them, newest
 * first. */
static void test_queue_shutdown_drop_order_lifo(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_LIFO, 0, &d);
    put_ints(q, 1, 5);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(5));
    assert_int_equal(coil_queue_shutdown(q, true), 4);
    static const int want[] = {4, 3, 2, 1};
    assert_ints(d.items, d.n, want, 4);
    coil_queue_unref(q);
}

static void test_queue_shutdown_drop_order_priority(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_PRIORITY, 0, &d);
    static const int prios[10] = {5, 1, 4, 1, 3, 9, 1, 7, 3, 0};
    struct pitem it[10];
    for (int i = 0; i < 10; i++) {
        it[i] = (struct pitem){prios[i], i};
        assert_int_equal(coil_queue_put_nowait(q, &it[i]), 0);
    }
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, &it[9]); /* priority 0 */
    assert_int_equal(coil_queue_shutdown(q, true), 9);
    /* By priority, equal ones in the order they were put. */
    static const int want[] = {1, 3, 6, 4, 8, 2, 0, 7, 5};
    assert_ints(d.items, d.n, want, 9);
    assert_int_equal(coil_queue_unfinished(q), 1);
    coil_queue_unref(q);
    assert_int_equal(d.n, 9);
}

/* Immediate, with an item promised to the first of two getters that has
 * not run yet: both wake with -ESHUTDOWN, the item is dropped. */
static void test_queue_shutdown_immediate_promised_getter(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, &d);
    struct actor g1 = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    struct actor g2 = actor(f->loop, q, OP_GET, 1, NULL, NULL);
    coil_task_t *t[2] = {spawn_actor(&g1), spawn_actor(&g2)};
    struct shut_cb c = shut_cb_make(q, true, &g1, &g2, &d);
    c.also_put = true;
    call_at_ms(f->loop, 10, shut_cb_fn, &c);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(c.shut_r, 1);
    assert_int_equal(c.unfinished_after, 0);
    assert_int_equal(g1.r, -ESHUTDOWN);
    assert_ptr_equal(g1.item, NOITEM);
    assert_int_equal(g2.r, -ESHUTDOWN);
    static const int want[] = {1};
    assert_ints(d.items, d.n, want, 1);
    assert_int_equal(coil_queue_size(q), 0);
    coil_queue_unref(q);
    assert_int_equal(d.n, 1);
}

/* Immediate, with a place promised to a putter that has not run yet: it
 * wakes with -ESHUTDOWN and its item is not dropped. */
static void test_queue_shutdown_immediate_promised_putter(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 1, &d);
    put_ints(q, 1, 1);
    struct actor p = actor(f->loop, q, OP_PUT, 0, ITEM(2), NULL);
    coil_task_t *t = spawn_actor(&p);
    struct shut_cb c = shut_cb_make(q, true, &p, NULL, &d);
    c.also_get = true;
    call_at_ms(f->loop, 10, shut_cb_fn, &c);
    finish_all(f->loop, &t, 1);
    assert_int_equal(c.get_r, 0);
    assert_ptr_equal(c.got, ITEM(1));
    assert_int_equal(c.shut_r, 0);
    assert_int_equal(p.r, -ESHUTDOWN);
    assert_int_equal(d.n, 0);
    assert_int_equal(coil_queue_size(q), 0);
    assert_int_equal(coil_queue_unfinished(q), 1); /* 1, taken, not done */
    coil_queue_unref(q);
    assert_int_equal(d.n, 0);
}

struct done_later {
    coil_queue_t *q;
    struct actor *j;
    int j_r_before;
    int r;
    int64_t at;
};

static void done_later_cb(void *arg)
{
    struct done_later *c = arg;
    c->at = coil_loop_time(coil_running_loop());
    c->j_r_before = c->j->r;
    c->r = coil_queue_task_done(c->q);
}

/* Immediate: the dropped items count as done, the ones taken do not
 * until their task_done; join returns after it. */
static void test_queue_shutdown_immediate_unfinished(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    put_ints(q, 1, 3);
    void *item;
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    struct actor j = actor(f->loop, q, OP_JOIN, 0, NULL, NULL);
    coil_task_t *t = spawn_actor(&j);
    struct shut_cb c = shut_cb_make(q, true, &j, NULL, NULL);
    struct done_later dl = {q, &j, UNSET, UNSET, 0};
    call_at_ms(f->loop, 10, shut_cb_fn, &c);
    call_at_ms(f->loop, 30, done_later_cb, &dl);
    finish_all(f->loop, &t, 1);
    assert_int_equal(c.shut_r, 2);
    assert_int_equal(c.unfinished_after, 1);
    assert_int_equal(dl.j_r_before, UNSET); /* still joining at 30 ms */
    assert_int_equal(dl.r, 0);
    assert_int_equal(j.r, 0);
    assert_true(j.at >= dl.at && j.at < dl.at + COIL_MSEC);
    assert_int_equal(coil_queue_unfinished(q), 0);
    coil_queue_unref(q);
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                             */
/* ------------------------------------------------------------------ */

struct unref_cb {
    coil_queue_t *q1, *q2;
    struct actor *g, *p, *j;
    bool all_waiting;
};

static void unref_cb_fn(void *arg)
{
    struct unref_cb *c = arg;
    c->all_waiting = c->g->r == UNSET && c->p->r == UNSET && c->j->r == UNSET &&
                     c->g->called && c->p->called && c->j->called;
    coil_queue_unref(c->q1);
    coil_queue_unref(c->q2);
}

/* The last unref wakes a getter, a putter and a joiner with -EBADF; the
 * item left is dropped, the putter's is not (it stays the caller's). */
static void test_queue_last_unref_wakes_waiters(void **state)
{
    struct fixture *f = *state;
    struct drops d1 = {0}, d2 = {0};
    coil_queue_t *q1 = make_queue(f->loop, COIL_QUEUE_FIFO, 0, &d1);
    coil_queue_t *q2 = make_queue(f->loop, COIL_QUEUE_FIFO, 1, &d2);
    put_ints(q2, 1, 1);
    struct actor g = actor(f->loop, q1, OP_GET, 0, NULL, NULL);
    struct actor p = actor(f->loop, q2, OP_PUT, 0, ITEM(2), NULL);
    struct actor j = actor(f->loop, q2, OP_JOIN, 0, NULL, NULL);
    coil_task_t *t[3] = {spawn_actor(&g), spawn_actor(&p), spawn_actor(&j)};
    struct unref_cb c = {q1, q2, &g, &p, &j, false};
    call_at_ms(f->loop, 10, unref_cb_fn, &c);
    finish_all(f->loop, t, 3);
    assert_true(c.all_waiting);
    assert_int_equal(g.r, -EBADF);
    assert_ptr_equal(g.item, NOITEM);
    assert_int_equal(p.r, -EBADF);
    assert_int_equal(j.r, -EBADF);
    assert_int_equal(d1.n, 0);
    static const int want[] = {1};
    assert_ints(d2.items, d2.n, want, 1);
    /* The leak gate: both queues are gone. */
}

static void test_queue_last_unref_drops_items(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, &d);
    put_ints(q, 1, 3);
    assert_ptr_equal(coil_queue_ref(q), q);
    coil_queue_unref(q);
    assert_int_equal(d.n, 0);
    assert_int_equal(coil_queue_size(q), 3); /* still there */
    coil_queue_unref(q);
    static const int want[] = {1, 2, 3};
    assert_ints(d.items, d.n, want, 3);

    /* Priority: dropped in priority order. */
    struct drops dp = {0};
    q = make_queue(f->loop, COIL_QUEUE_PRIORITY, 0, &dp);
    struct pitem it[4] = {{3, 0}, {1, 1}, {2, 2}, {1, 3}};
    for (int i = 0; i < 4; i++)
        assert_int_equal(coil_queue_put_nowait(q, &it[i]), 0);
    coil_queue_unref(q);
    static const int wantp[] = {1, 3, 2, 0};
    assert_ints(dp.items, dp.n, wantp, 4);

    /* No drop function: the items are forgotten, nothing leaks. */
    q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    put_ints(q, 1, 20);
    coil_queue_unref(q);
}

struct misuse {
    coil_queue_t *q;
    struct exc_log *log;
    coil_queue_t *ref_r;
    int count_after_ref, count_after_unref;
    char msg_ref[256], msg_unref[256];
};

static void misuse_cb(void *arg)
{
    struct misuse *c = arg;
    coil_queue_unref(c->q); /* the last: the waiting getter holds it */
    c->ref_r = coil_queue_ref(c->q);
    c->count_after_ref = c->log->count;
    memcpy(c->msg_ref, c->log->last_message, sizeof(c->msg_ref));
    coil_queue_unref(c->q);
    c->count_after_unref = c->log->count;
    memcpy(c->msg_unref, c->log->last_message, sizeof(c->msg_unref));
}

/* A ref after the last unref, and an unref too many, while a waiter
 * still holds the memory: reported, refused, nothing freed twice. */
static void test_queue_ref_unref_misuse(void **state)
{
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    struct actor g = actor(f->loop, q, OP_GET, 0, NULL, NULL);
    coil_task_t *t = spawn_actor(&g);
    struct misuse c = {q, &log, ITEM(1), -1, -1, "", ""};
    call_at_ms(f->loop, 10, misuse_cb, &c);
    finish_all(f->loop, &t, 1);
    assert_null(c.ref_r);
    assert_int_equal(c.count_after_ref, 1);
    assert_non_null(strstr(c.msg_ref, "queue"));
    assert_int_equal(c.count_after_unref, 2);
    assert_non_null(strstr(c.msg_unref, "queue"));
    assert_int_equal(g.r, -EBADF);
    assert_int_equal(log.count, 2);
}

/* The loop closed while tasks wait in get, put and join: they never
 * resume, their holds are dropped, the queues stay safe to query and to
 * unref, and nothing leaks. */
static void test_queue_loop_closed_while_waiting(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    struct drops d1 = {0}, d2 = {0};
    coil_queue_t *q1 = make_queue(f->loop, COIL_QUEUE_FIFO, 0, &d1);
    coil_queue_t *q2 = make_queue(f->loop, COIL_QUEUE_FIFO, 1, &d2);
    put_ints(q2, 1, 1);
    struct actor g = actor(f->loop, q1, OP_GET, 0, NULL, NULL);
    struct actor p = actor(f->loop, q2, OP_PUT, 0, ITEM(2), NULL);
    struct actor j = actor(f->loop, q2, OP_JOIN, 0, NULL, NULL);
    coil_task_t *t[3] = {spawn_actor(&g), spawn_actor(&p), spawn_actor(&j)};
    assert_int_equal(coil_loop_call_later(f->loop, 10 * COIL_MSEC, test_stop_cb,
                                          f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_true(g.called && p.called && j.called);
    assert_int_equal(coil_loop_close(f->loop), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(coil_future_cancelled(coil_task_future(t[i])));
        coil_task_unref(t[i]);
    }
    assert_int_equal(coil_loop_tasks(f->loop, NULL, 0), 0);
    /* Never resumed. */
    assert_int_equal(g.r, UNSET);
    assert_int_equal(p.r, UNSET);
    assert_int_equal(j.r, UNSET);
    /* Still safe to query. */
    assert_true(coil_queue_empty(q1));
    assert_int_equal(coil_queue_size(q2), 1);
    assert_true(coil_queue_full(q2));
    assert_int_equal(coil_queue_unfinished(q2), 1);
    assert_int_equal(coil_queue_maxsize(q2), 1);
    assert_false(coil_queue_is_shutdown(q2));
    void *item;
    assert_int_equal(coil_queue_get(q1, &item), -EPERM);
    coil_queue_unref(q1);
    coil_queue_unref(q2);
    assert_int_equal(d1.n, 0);
    static const int want[] = {1};
    assert_ints(d2.items, d2.n, want, 1);
}

/* ------------------------------------------------------------------ */
/* Out of memory                                                        */
/* ------------------------------------------------------------------ */

static void sweep_new(coil_loop_t *loop, const coil_queue_options_t *o)
{
    long live = test_alloc_live();
    int n;
    coil_queue_t *q = NULL;
    int r = -1;
    for (n = 1; n <= 16; n++) {
        q = ITEM(1);
        test_alloc_fail_after(n);
        r = coil_queue_new(loop, o, &q);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        if (r == 0)
            break;
        assert_int_equal(r, -ENOMEM);
        assert_true(failed);
        assert_null(q);
        assert_int_equal(test_alloc_live(), live);
    }
    assert_int_equal(r, 0);
    assert_true(n > 1); /* at least one allocation could fail */
    /* The queue made works. */
    assert_int_equal(coil_queue_put_nowait(q, ITEM(1)), 0);
    coil_queue_unref(q);
    assert_int_equal(test_alloc_live(), live);
}

static void test_queue_new_alloc_failure(void **state)
{
    struct fixture *f = *state;
    /* A missing loop is -EINVAL whatever the memory says. */
    coil_queue_t *none = (coil_queue_t *)1;
    test_alloc_fail_after(1);
    assert_int_equal(coil_queue_new(NULL, NULL, &none), -EINVAL);
    test_alloc_fail_after(0);
    assert_null(none);
    sweep_new(f->loop, NULL);
    coil_queue_options_t o = {.kind = COIL_QUEUE_PRIORITY,
                              .compare = pitem_cmp,
                              .maxsize = 4,
                              .threadsafe = true};
    sweep_new(f->loop, &o);
}

struct oom_put {
    coil_queue_t *q;
    int r;
    bool failed;
};

static int oom_put_body(void *arg)
{
    struct oom_put *c = arg;
    test_alloc_fail_after(1);
    c->r = coil_queue_put(c->q, ITEM(100));
    c->failed = test_alloc_failed();
    test_alloc_fail_after(0);
    return 0;
}

static void test_queue_put_alloc_failure(void **state)
{
    struct fixture *f = *state;
    coil_queue_t *q = make_queue(f->loop, COIL_QUEUE_FIFO, 0, NULL);
    /* The first buffer. */
    test_alloc_fail_after(1);
    int r = coil_queue_put_nowait(q, ITEM(100));
    bool failed = test_alloc_failed();
    test_alloc_fail_after(0);
    assert_int_equal(r, -ENOMEM);
    assert_true(failed);
    assert_int_equal(coil_queue_size(q), 0);
    assert_int_equal(coil_queue_unfinished(q), 0);
    /* Growing past it. */
    put_ints(q, 1, 8);
    test_alloc_fail_after(1);
    r = coil_queue_put_nowait(q, ITEM(100));
    failed = test_alloc_failed();
    test_alloc_fail_after(0);
    assert_int_equal(r, -ENOMEM);
    assert_true(failed);
    assert_int_equal(coil_queue_size(q), 8);
    assert_int_equal(coil_queue_unfinished(q), 8);
    /* coil_queue_put, in a task, the same. */
    struct oom_put c = {q, UNSET, false};
    assert_int_equal(test_run_task(f->loop, oom_put_body, &c), 0);
    assert_int_equal(c.r, -ENOMEM);
    assert_true(c.failed);
    assert_int_equal(coil_queue_size(q), 8);
    assert_int_equal(coil_queue_unfinished(q), 8);
    /* And with memory, it grows. */
    put_ints(q, 9, 9);
    int got[16];
    static const int want[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_ints(got, take_all(q, got, 16), want, 9);
    coil_queue_unref(q);
}

/* ------------------------------------------------------------------ */
/* Threads                                                              */
/* ------------------------------------------------------------------ */

#define NTHREADS 4
#define NITEMS 2000

struct producer {
    coil_queue_t *q;
    int id;
    long eagain;
    int err;
    pthread_t th;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < NITEMS; i++) {
        void *item = ITEM(p->id * NITEMS + i + 1);
        int r;
        while ((r = coil_queue_put_threadsafe(p->q, item)) == -EAGAIN) {
            p->eagain++;
            sched_yield();
        }
        if (r) {
            p->err = r;
            break;
        }
    }
    return NULL;
}

struct consumer {
    coil_queue_t *q;
    int got, err, bad, dup, out_of_order, done_err;
    int next[NTHREADS];
    unsigned char seen[NTHREADS * NITEMS];
};

static int consumer_body(void *arg)
{
    struct consumer *c = arg;
    while (c->got < NTHREADS * NITEMS) {
        void *item;
        int r = coil_queue_get(c->q, &item);
        if (r) {
            c->err = r;
            break;
        }
        c->got++;
        int v = VAL(item) - 1;
        if (v < 0 || v >= NTHREADS * NITEMS) {
            c->bad++;
            continue;
        }
        int t = v / NITEMS, i = v % NITEMS;
        if (c->seen[v]++)
            c->dup++;
        if (i != c->next[t])
            c->out_of_order++;
        c->next[t] = i + 1;
        if (coil_queue_task_done(c->q))
            c->done_err++;
    }
    return 0;
}

static void run_threads(coil_loop_t *loop, size_t maxsize)
{
    coil_queue_options_t o = {.maxsize = maxsize, .threadsafe = true};
    coil_queue_t *q;
    assert_int_equal(coil_queue_new(loop, &o, &q), 0);
    static struct consumer c;
    memset(&c, 0, sizeof(c));
    c.q = q;
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, consumer_body, &c, &t), 0);
    struct producer p[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        p[i] = (struct producer){.q = q, .id = i};
        assert_int_equal(pthread_create(&p[i].th, NULL, producer_main, &p[i]),
                         0);
    }
    int r = test_run_until(loop, coil_task_future(t));
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_join(p[i].th, NULL), 0);
    assert_int_equal(r, 0);
    coil_task_unref(t);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(p[i].err, 0);
    assert_int_equal(c.err, 0);
    assert_int_equal(c.got, NTHREADS * NITEMS);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.dup, 0);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(c.done_err, 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(c.next[i], NITEMS);
    assert_int_equal(coil_queue_size(q), 0);
    assert_int_equal(coil_queue_unfinished(q), 0);
    coil_queue_unref(q);
}

static void test_queue_threads_unbounded(void **state)
{
    struct fixture *f = *state;
    run_threads(f->loop, 0);
}

static void test_queue_threads_bounded(void **state)
{
    struct fixture *f = *state;
    run_threads(f->loop, 16);
}

struct ts_loop {
    coil_queue_t *q, *small;
    int put_r, nowait_r, full_r;
    size_t size_after;
    void *nowait_item;
};

static int ts_loop_body(void *arg)
{
    struct ts_loop *c = arg;
    coil_sleep(10 * COIL_MSEC);
    c->put_r = coil_queue_put_threadsafe(c->q, ITEM(1));
    /* Served at once, as put_nowait does: promised to the getter. */
    c->nowait_r = coil_queue_get_nowait(c->q, &c->nowait_item);
    c->size_after = coil_queue_size(c->q);
    c->full_r = coil_queue_put_threadsafe(c->small, ITEM(2));
    return 0;
}

/* On the loop's thread, put_threadsafe is put_nowait. */
static void test_queue_threadsafe_on_loop_thread(void **state)
{
    struct fixture *f = *state;
    coil_queue_options_t o = {.threadsafe = true};
    struct ts_loop c = {.put_r = UNSET,
                        .nowait_r = UNSET,
                        .full_r = UNSET,
                        .nowait_item = NOITEM};
    assert_int_equal(coil_queue_new(f->loop, &o, &c.q), 0);
    o.maxsize = 1;
    assert_int_equal(coil_queue_new(f->loop, &o, &c.small), 0);
    put_ints(c.small, 1, 1);
    struct actor g = actor(f->loop, c.q, OP_GET, 0, NULL, NULL);
    coil_task_t *t[2] = {spawn_actor(&g), NULL};
    assert_int_equal(coil_task_spawn(f->loop, ts_loop_body, &c, &t[1]), 0);
    finish_all(f->loop, t, 2);
    assert_int_equal(c.put_r, 0);
    assert_int_equal(c.nowait_r, -EAGAIN);
    assert_ptr_equal(c.nowait_item, NOITEM);
    assert_int_equal(c.size_after, 1);
    assert_int_equal(g.r, 0);
    assert_ptr_equal(g.item, ITEM(1));
    assert_int_equal(c.full_r, -EAGAIN);
    assert_int_equal(coil_queue_size(c.small), 1);
    assert_int_equal(coil_queue_unfinished(c.q), 1);
    coil_queue_unref(c.q);
    coil_queue_unref(c.small);
}

struct ts_call {
    coil_queue_t *q;
    void *item;
    int r;
};

static void *ts_call_main(void *arg)
{
    struct ts_call *c = arg;
    c->r = coil_queue_put_threadsafe(c->q, c->item);
    return NULL;
}

/* put_threadsafe from a plain thread, waited for. */
static int put_from_thread(coil_queue_t *q, void *item)
{
    struct ts_call c = {q, item, UNSET};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ts_call_main, &c), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    return c.r;
}

/* An item a thread put while a getter waited is the getter's, even if a
 * get_nowait on the loop comes before the posted node has run. */
struct ts_line {
    coil_queue_t *q;
    int nowait_r;
};

static void ts_line_cb(void *arg)
{
    struct ts_line *c = arg;
    void *item;
    c->nowait_r = coil_queue_get_nowait(c->q, &item);
}

static void test_queue_threadsafe_getter_in_line_first(void **state)
{
    struct fixture *f = *state;
    coil_queue_options_t o = {.threadsafe = true};
    struct ts_line c = {.nowait_r = UNSET};
    assert_int_equal(coil_queue_new(f->loop, &o, &c.q), 0);
    struct actor g = actor(f->loop, c.q, OP_GET, 0, NULL, NULL);
    coil_task_t *t = spawn_actor(&g);
    test_run_bounded(f->loop, COIL_MSEC); /* g waits in line */
    assert_true(g.called);
    assert_int_equal(g.r, UNSET);
    /* The node is posted; the callback is queued before it is taken. */
    assert_int_equal(put_from_thread(c.q, ITEM(1)), 0);
    assert_int_equal(coil_loop_call_soon(f->loop, ts_line_cb, &c, NULL), 0);
    finish_all(f->loop, &t, 1);
    assert_int_equal(c.nowait_r, -EAGAIN);
    assert_int_equal(g.r, 0);
    assert_ptr_equal(g.item, ITEM(1));
    coil_queue_unref(c.q);
}

/* The loop closed after an item was promised to a getter that never ran
 * (and a place to a putter): the promises are handed back, so the queue
 * still serves what it holds afterwards. */
static void stop_cb(void *loop)
{
    coil_loop_stop(loop);
}

struct close_promise {
    coil_queue_t *q, *full;
    coil_loop_t *loop;
};

static void close_promise_cb(void *arg)
{
    struct close_promise *c = arg;
    void *item;
    /* Promise an item to the waiting getter, a place to the putter. */
    if (coil_queue_put_nowait(c->q, ITEM(1)) ||
        coil_queue_get_nowait(c->full, &item))
        test_task_failure();
    coil_loop_stop(c->loop);
}

static void test_queue_loop_closed_with_promises(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct exc_log ex = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &ex);
    struct close_promise c = {.loop = loop};
    c.q = make_queue(loop, COIL_QUEUE_FIFO, 0, NULL);
    c.full = make_queue(loop, COIL_QUEUE_FIFO, 1, NULL);
    put_ints(c.full, 7, 7);
    struct actor g = actor(loop, c.q, OP_GET, 0, NULL, NULL);
    struct actor p = actor(loop, c.full, OP_PUT, 0, ITEM(8), NULL);
    coil_task_t *t[2] = {spawn_actor(&g), spawn_actor(&p)};
    assert_int_equal(coil_loop_call_later(loop, COIL_MSEC, close_promise_cb,
                                          &c, NULL),
                     0);
    assert_int_equal(coil_loop_call_later(loop, 3600 * COIL_SEC, stop_cb,
                                          loop, NULL),
                     0);
    assert_int_equal(coil_loop_run_forever(loop), 0);
    assert_int_equal(g.r, UNSET); /* promised, never ran */
    assert_int_equal(p.r, UNSET);
    assert_int_equal(coil_loop_close(loop), 0);
    void *item = NOITEM;
    assert_int_equal(coil_queue_get_nowait(c.q, &item), 0);
    assert_ptr_equal(item, ITEM(1));
    assert_false(coil_queue_full(c.full)); /* the place is free again */
    assert_int_equal(coil_queue_put_nowait(c.full, ITEM(9)), 0);
    coil_task_unref(t[0]);
    coil_task_unref(t[1]);
    coil_queue_unref(c.q);
    coil_queue_unref(c.full);
    coil_loop_unref(loop);
}

static void test_queue_threadsafe_errors(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_options_t o = {
        .maxsize = 2, .threadsafe = true, .drop = drop_int, .drop_arg = &d};
    coil_queue_t *small, *q;
    assert_int_equal(coil_queue_new(f->loop, &o, &small), 0);
    o.maxsize = 0;
    assert_int_equal(coil_queue_new(f->loop, &o, &q), 0);
    /* Bounded: -EAGAIN when full. */
    assert_int_equal(put_from_thread(small, ITEM(1)), 0);
    assert_int_equal(put_from_thread(small, ITEM(2)), 0);
    assert_int_equal(put_from_thread(small, ITEM(3)), -EAGAIN);
    assert_int_equal(coil_queue_size(small), 2);
    assert_true(coil_queue_full(small));
    assert_int_equal(coil_queue_unfinished(small), 2);
    /* Shut down (even with room): -ESHUTDOWN. */
    void *item;
    assert_int_equal(coil_queue_get_nowait(small, &item), 0);
    assert_ptr_equal(item, ITEM(1));
    assert_int_equal(coil_queue_shutdown(small, false), 0);
    assert_int_equal(put_from_thread(small, ITEM(4)), -ESHUTDOWN);
    assert_int_equal(coil_queue_size(small), 1);
    /* The loop closed: -EBADF; the queue is still there. */
    assert_int_equal(put_from_thread(q, ITEM(5)), 0);
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_int_equal(put_from_thread(q, ITEM(6)), -EBADF);
    assert_int_equal(coil_queue_put_threadsafe(q, ITEM(7)), -EBADF);
    assert_int_equal(coil_queue_size(q), 1);
    assert_int_equal(coil_queue_unfinished(q), 1);
    assert_int_equal(coil_queue_get_nowait(q, &item), 0);
    assert_ptr_equal(item, ITEM(5));
    coil_queue_unref(small);
    static const int want[] = {2};
    assert_ints(d.items, d.n, want, 1);
    coil_queue_unref(q);
}

/* The last unref while a thread's put is posted to the loop: the items
 * are dropped at once, the memory goes when the loop runs the post. */
static void test_queue_threadsafe_unref_while_posted(void **state)
{
    struct fixture *f = *state;
    struct drops d = {0};
    coil_queue_options_t o = {
        .threadsafe = true, .drop = drop_int, .drop_arg = &d};
    coil_queue_t *q;
    /* A first run, so that what the loop keeps for running is counted
     * in live. */
    test_run_bounded(f->loop, 10 * COIL_MSEC);
    long live = test_alloc_live();
    assert_int_equal(coil_queue_new(f->loop, &o, &q), 0);
    assert_int_equal(put_from_thread(q, ITEM(1)), 0);
    assert_int_equal(put_from_thread(q, ITEM(2)), 0);
    coil_queue_unref(q);
    static const int want[] = {1, 2};
    assert_ints(d.items, d.n, want, 2);
    test_run_bounded(f->loop, 10 * COIL_MSEC);
    assert_int_equal(test_alloc_live(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_queue_fifo_order),
        TEST(test_queue_lifo_order),
        TEST(test_queue_priority_order),
        TEST(test_queue_priority_equal_keep_insertion_order),
        TEST(test_queue_nowait_limits),
        TEST_FAKE(test_queue_bad_args),
        TEST(test_queue_new_closed_loop),
        TEST_FAKE(test_queue_other_loop),
        TEST_FAKE(test_queue_put_waits_while_full),
        TEST_FAKE(test_queue_get_waits_while_empty),
        TEST_FAKE(test_queue_getters_first_come_first_served),
        TEST_FAKE(test_queue_putters_first_come_first_served),
        TEST_FAKE(test_queue_no_barging_get),
        TEST_FAKE(test_queue_promised_item_stays_for_getter),
        TEST_FAKE(test_queue_get_cancelled_in_line),
        TEST_FAKE(test_queue_put_cancelled_in_line),
        TEST_FAKE(test_queue_get_cancelled_after_promise_next_getter),
        TEST_FAKE(test_queue_get_cancelled_after_promise_item_stays),
        TEST_FAKE(test_queue_put_cancelled_after_promise),
        TEST_FAKE(test_queue_cancel_pending_before_wait),
        TEST_FAKE(test_queue_get_timeout),
        TEST_FAKE(test_queue_join_nothing_unfinished),
        TEST_FAKE(test_queue_join_waits_for_task_done),
        TEST(test_queue_task_done_overflow),
        TEST_FAKE(test_queue_join_cancelled),
        TEST_FAKE(test_queue_shutdown_graceful),
        TEST_FAKE(test_queue_shutdown_graceful_wakes_getters),
        TEST_FAKE(test_queue_shutdown_graceful_promised_getter),
        TEST_FAKE(test_queue_shutdown_immediate),
        TEST(test_queue_shutdown_drop_order_fifo),
        TEST(test_queue_shutdown_drop_order_lifo),
        TEST(test_queue_shutdown_drop_order_priority),
        TEST_FAKE(test_queue_shutdown_immediate_promised_getter),
        TEST_FAKE(test_queue_shutdown_immediate_promised_putter),
        TEST_FAKE(test_queue_shutdown_immediate_unfinished),
        TEST_FAKE(test_queue_last_unref_wakes_waiters),
        TEST(test_queue_last_unref_drops_items),
        TEST_FAKE(test_queue_ref_unref_misuse),
        TEST_FAKE(test_queue_loop_closed_while_waiting),
        TEST(test_queue_new_alloc_failure),
        TEST_FAKE(test_queue_put_alloc_failure),
        TEST(test_queue_threads_unbounded),
        TEST(test_queue_threads_bounded),
        TEST_FAKE(test_queue_threadsafe_on_loop_thread),
        TEST(test_queue_threadsafe_errors),
        TEST_FAKE(test_queue_threadsafe_getter_in_line_first),
        TEST_FAKE_NOLOOP(test_queue_loop_closed_with_promises),
        TEST(test_queue_threadsafe_unref_while_posted),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
