/* SPDX-License-Identifier: MIT */
/*
 * queue.c - asyncio.Queue, LifoQueue and PriorityQueue, with task_done,
 * join and shutdown, and a put for plain threads (queue.h).
 *
 * Promises instead of hand-offs. An item put while getters wait stays in
 * the queue and is promised to the first getter (reserved_items), which
 * takes the head of the queue when it runs; a place freed while putters
 * wait is promised to the first putter (reserved_slots). The _nowait
 * calls see only what is not promised. So a getter cancelled after its
 * promise, before it ran, simply passes the promise on: the item never
 * left the head of the queue, and no give-back can fail or overfill the
 * queue. An immediate shutdown empties the queue under the promises: it
 * bumps the epoch, and a getter whose promise is older finds it gone.
 *
 * Storage: one array of slots, a ring for FIFO and LIFO, a binary heap
 * ordered by (compare, sequence of the put) for priority, so equal items
 * come out in the order they went in. It grows by doubling and is not
 * shrunk, so a place promised to a putter always has room.
 *
 * Threads: a threadsafe queue takes its mutex around every call. A
 * thread's put stores the item and, if its node is not posted yet, posts
 * it through call_soon_threadsafe's FIFO (threadsafe.h); the node serves
 * waiting getters on the loop. Only the loop's thread touches the lines
 * of waiters. The posted node keeps the queue's memory: a queue whose
 * last holder goes while its node is posted is freed by the node.
 */
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "loop_internal.h"
#include "sync_internal.h"
#include "threadsafe.h"

struct slot {
    void *item;
    uint64_t seq; /* priority: the put's sequence number */
};

enum { OPEN, SHUT_GRACEFUL, SHUT_IMMEDIATE };

struct coil_queue {
    struct coil__sync s;
    struct coil__waitq getters, putters, joiners;
    struct slot *buf;
    size_t cap, head, count;
    size_t maxsize;        /* SIZE_MAX: no limit */
    size_t reserved_items; /* of count: promised to woken getters */
    size_t reserved_slots; /* free places promised to woken putters */
    size_t unfinished;
    uint64_t seq;
    unsigned epoch;        /* bumped by an immediate shutdown */
    uint8_t kind;
    uint8_t shut;
    bool ts;               /* threadsafe: mutex is used */
    bool posted;           /* ts_node is on its way to the loop */
    bool dying;            /* freed by ts_node when it runs */
    int (*compare)(const void *, const void *);
    void (*drop)(void *, void *);
    void *drop_arg;
    pthread_mutex_t mutex;
    struct coil__ready ts_node;
};

static void lock(struct coil_queue *q)
{
    if (q->ts)
        pthread_mutex_lock(&q->mutex);
}

static void unlock(struct coil_queue *q)
{
    if (q->ts)
        pthread_mutex_unlock(&q->mutex);
}

/* ------------------------------------------------------------------ */
/* Storage                                                              */
/* ------------------------------------------------------------------ */

typedef int (*compare_fn)(const void *, const void *);

static bool before(compare_fn compare, const struct slot *a,
                   const struct slot *b)
{
    int c = compare(a->item, b->item);
    return c < 0 || (c == 0 && a->seq < b->seq);
}

/* Double the array (a power of two, so that the ring is indexed with a
 * mask). -ENOMEM if it cannot be had. */
static COIL__COLD int grow(struct coil_queue *q)
{
    size_t cap = q->cap ? q->cap * 2 : 8;
    if (cap <= q->count || cap > SIZE_MAX / sizeof(struct slot))
        return -ENOMEM;
    struct slot *buf = coil__malloc(cap * sizeof(*buf));
    if (!buf)
        return -ENOMEM;
    /* Unwrap the ring (a heap is never wrapped: head stays 0). */
    size_t first = q->cap - q->head < q->count ? q->cap - q->head : q->count;
    if (q->count) {
        memcpy(buf, q->buf + q->head, first * sizeof(*buf));
        memcpy(buf + first, q->buf, (q->count - first) * sizeof(*buf));
    }
    coil__free(q->buf);
    q->buf = buf;
    q->cap = cap;
    q->head = 0;
    return 0;
}

/* Make room for one more item. */
static inline int reserve(struct coil_queue *q)
{
    return coil__likely(q->count < q->cap) ? 0 : grow(q);
}

/* The priority heap: sift up from the end, down from the top. */
static void heap_push(struct coil_queue *q, void *item)
{
    struct slot s = {item, q->seq++};
    size_t i = q->count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(q->compare, &s, &q->buf[parent]))
            break;
        q->buf[i] = q->buf[parent];
        i = parent;
    }
    q->buf[i] = s;
}

/* Take the heap's top from buf (*count slots). */
static void *heap_pop(struct slot *buf, size_t *count, compare_fn compare)
{
    void *item = buf[0].item;
    struct slot last = buf[--*count];
    size_t i = 0, n = *count;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(compare, &buf[c + 1], &buf[c]))
            c++;
        if (!before(compare, &buf[c], &last))
            break;
        buf[i] = buf[c];
        i = c;
    }
    if (n)
        buf[i] = last;
    return item;
}

/* Store item; there is room (reserve). The rings inline, the heap not. */
static inline void push(struct coil_queue *q, void *item)
{
    if (coil__unlikely(q->kind == COIL_QUEUE_PRIORITY)) {
        heap_push(q, item);
        return;
    }
    q->buf[(q->head + q->count++) & (q->cap - 1)].item = item;
}

/* Take the next item; there is one. */
static inline void *pop(struct coil_queue *q)
{
    size_t mask = q->cap - 1;
    if (coil__likely(q->kind == COIL_QUEUE_FIFO)) {
        void *item = q->buf[q->head].item;
        q->head = (q->head + 1) & mask;
        q->count--;
        return item;
    }
    if (q->kind == COIL_QUEUE_LIFO)
        return q->buf[(q->head + --q->count) & mask].item;
    return heap_pop(q->buf, &q->count, q->compare);
}

/* ------------------------------------------------------------------ */
/* Promises                                                             */
/* ------------------------------------------------------------------ */

static bool has_room(const struct coil_queue *q)
{
    return q->count + q->reserved_slots < q->maxsize;
}

/* Promise items nobody was promised to the getters in line. */
static void serve_getters(struct coil_queue *q)
{
    while (q->count > q->reserved_items && !coil__waitq_empty(&q->getters)) {
        q->reserved_items++;
        coil__waitq_grant_first(&q->getters, 0);
    }
}

/* Promise free places to the putters in line. */
static void serve_putters(struct coil_queue *q)
{
    while (has_room(q) && !coil__waitq_empty(&q->putters)) {
        q->reserved_slots++;
        coil__waitq_grant_first(&q->putters, 0);
    }
}

/* Store item (room reserved) and count it. */
static void put_item(struct coil_queue *q, void *item)
{
    push(q, item);
    q->unfinished++;
    serve_getters(q);
}

static void *get_item(struct coil_queue *q)
{
    void *item = pop(q);
    serve_putters(q);
    return item;
}

/* ------------------------------------------------------------------ */
/* Life                                                                 */
/* ------------------------------------------------------------------ */

/* Give every item left to the drop function (outside the lock), in the
 * order gets would have taken them; returns how many there were. */
static size_t drop_all(struct coil_queue *q, struct slot *buf, size_t cap,
                       size_t head, size_t count)
{
    if (!q->drop)
        return count;
    if (q->kind == COIL_QUEUE_PRIORITY) {
        /* In priority order: pop them off a heap of their own. */
        for (size_t left = count; left;)
            q->drop(heap_pop(buf, &left, q->compare), q->drop_arg);
        return count;
    }
    /* In the order gets would have taken them. */
    bool lifo = q->kind == COIL_QUEUE_LIFO;
    for (size_t i = 0; i < count; i++) {
        size_t at = head + (lifo ? count - 1 - i : i);
        q->drop(buf[at & (cap - 1)].item, q->drop_arg);
    }
    return count;
}

static void free_queue(struct coil_queue *q)
{
    if (q->ts)
        pthread_mutex_destroy(&q->mutex);
    coil__free(q);
}

static void destroy(struct coil__sync *s)
{
    struct coil_queue *q = coil__container_of(s, struct coil_queue, s);
    drop_all(q, q->buf, q->cap, q->head, q->count);
    coil__free(q->buf);
    q->buf = NULL;
    q->count = 0;
    lock(q);
    bool posted = q->posted;
    q->dying = posted;
    unlock(q);
    if (!posted)
        free_queue(q);
}

/* The node a thread's put posts: serve the getters on the loop. */
static void ts_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct coil_queue *q = coil__container_of(node, struct coil_queue, ts_node);
    lock(q);
    q->posted = false;
    bool dying = q->dying;
    if (!dying)
        serve_getters(q);
    unlock(q);
    if (dying)
        free_queue(q);
}

static void ts_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct coil_queue *q = coil__container_of(node, struct coil_queue, ts_node);
    lock(q);
    q->posted = false;
    bool dying = q->dying;
    unlock(q);
    if (dying)
        free_queue(q);
}

static const struct coil__ready_ops ts_ops = {ts_run, ts_discard};

/* The loop closed with a task in line: a promise it had not used passes
 * on (to a waiter the close abandons in turn), so that the queue's
 * counts stay true for whoever looks at it afterwards. */
static void getter_abandoned(void *owner, struct coil__waiter *w)
{
    struct coil_queue *q = coil__container_of(owner, struct coil_queue, s);
    lock(q);
    if (w->granted && w->result == 0 && w->tag == q->epoch) {
        q->reserved_items--;
        serve_getters(q);
    }
    unlock(q);
    coil__sync_drop(&q->s);
}

static void putter_abandoned(void *owner, struct coil__waiter *w)
{
    struct coil_queue *q = coil__container_of(owner, struct coil_queue, s);
    lock(q);
    if (w->granted && w->result == 0) {
        q->reserved_slots--;
        serve_putters(q);
    }
    unlock(q);
    coil__sync_drop(&q->s);
}

int coil_queue_new(coil_loop_t *loop, const coil_queue_options_t *opts,
                   coil_queue_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    coil_queue_options_t o = opts ? *opts : (coil_queue_options_t){0};
    if ((unsigned)o.kind > COIL_QUEUE_PRIORITY ||
        (o.kind == COIL_QUEUE_PRIORITY && !o.compare))
        return -EINVAL;
    struct coil_queue *q;
    int err = coil__sync_new(loop, sizeof(*q), "queue", destroy, (void **)&q);
    if (err)
        return err;
    memset((char *)q + sizeof(q->s), 0, sizeof(*q) - sizeof(q->s));
    if (o.threadsafe) {
        if ((err = pthread_mutex_init(&q->mutex, NULL))) {
            coil__loop_unref(loop);
            coil__free(q);
            return -err;
        }
        q->ts = true;
    }
    coil__waitq_init(&q->getters, getter_abandoned, &q->s);
    q->getters.what = "queue get";
    coil__waitq_init(&q->putters, putter_abandoned, &q->s);
    q->putters.what = "queue put";
    coil__waitq_init(&q->joiners, coil__sync_abandoned, &q->s);
    q->joiners.what = "queue join";
    q->maxsize = o.maxsize ? o.maxsize : SIZE_MAX;
    q->kind = (uint8_t)o.kind;
    q->compare = o.compare;
    q->drop = o.drop;
    q->drop_arg = o.drop_arg;
    q->ts_node.ops = &ts_ops;
    *out = q;
    return 0;
}

coil_queue_t *coil_queue_ref(coil_queue_t *q)
{
    return q && coil__sync_ref(&q->s) ? q : NULL;
}

void coil_queue_unref(coil_queue_t *q)
{
    if (!q || !coil__sync_unref(&q->s))
        return;
    coil__waitq_grant_all(&q->getters, -EBADF);
    coil__waitq_grant_all(&q->putters, -EBADF);
    coil__waitq_grant_all(&q->joiners, -EBADF);
    coil__sync_release(&q->s);
}

/* ------------------------------------------------------------------ */
/* Putting and getting                                                  */
/* ------------------------------------------------------------------ */

/* With the lock held: put now, or -EAGAIN/-ESHUTDOWN/-ENOMEM. */
static int try_put(struct coil_queue *q, void *item)
{
    if (q->shut)
        return -ESHUTDOWN;
    if (!has_room(q))
        return -EAGAIN;
    int err = reserve(q);
    if (err)
        return err;
    put_item(q, item);
    return 0;
}

/* The first item nobody was promised. In a FIFO the promised items are
 * the oldest, at the head, each meant for the getter it was put for: the
 * one after them is taken, and they move up one place (there are as
 * many as getters woken and not yet run). A LIFO's or a heap's next item
 * is whichever comes out next: a promise is for an item, not that one. */
static void *take_unpromised(struct coil_queue *q)
{
    size_t r = q->reserved_items;
    if (q->kind != COIL_QUEUE_FIFO || r == 0)
        return get_item(q);
    size_t mask = q->cap - 1;
    void *item = q->buf[(q->head + r) & mask].item;
    for (size_t k = r; k > 0; k--)
        q->buf[(q->head + k) & mask] = q->buf[(q->head + k - 1) & mask];
    q->head = (q->head + 1) & mask;
    q->count--;
    serve_putters(q);
    return item;
}

/* With the lock held: get now, or -EAGAIN/-ESHUTDOWN. */
static int try_get(struct coil_queue *q, void **item_out)
{
    /* Items threads put are promised when the posted node runs; getters
     * already in line come first. */
    if (q->ts && q->posted)
        serve_getters(q);
    if (q->count > q->reserved_items) {
        *item_out = take_unpromised(q);
        return 0;
    }
    return q->shut ? -ESHUTDOWN : -EAGAIN;
}

/* Wait in line (the lock held on entry and on return). */
static int wait_in(struct coil_queue *q, struct coil__waitq *line,
                   struct coil__waiter *w)
{
    coil__sync_hold(&q->s);
    unlock(q);
    int err = coil__waitq_wait(line, w, COIL__WAITQ_GIVE_BACK);
    lock(q);
    return err;
}

/* After a wait: unlock, then drop the wait's hold (which may free q). */
static int leave(struct coil_queue *q, int err)
{
    unlock(q);
    coil__sync_drop(&q->s);
    return err;
}

int coil_queue_put_nowait(coil_queue_t *q, void *item)
{
    if (!q)
        return -EINVAL;
    lock(q);
    int err = try_put(q, item);
    unlock(q);
    return err;
}

int coil_queue_get_nowait(coil_queue_t *q, void **item_out)
{
    if (!q || !item_out)
        return -EINVAL;
    lock(q);
    int err = try_get(q, item_out);
    unlock(q);
    return err;
}

int coil_queue_put(coil_queue_t *q, void *item)
{
    if (!q)
        return -EINVAL;
    struct coil_task *t;
    int err = coil__sync_task(&q->s, &t);
    if (err)
        return err;
    lock(q);
    err = try_put(q, item);
    if (err != -EAGAIN) {
        unlock(q);
        return err;
    }
    struct coil__waiter w;
    err = wait_in(q, &q->putters, &w);
    bool promised = w.granted && w.result == 0;
    if (promised)
        q->reserved_slots--;
    if (err == 0) {
        err = q->shut ? -ESHUTDOWN : reserve(q);
        if (!err)
            put_item(q, item);
    }
    if (promised && err)
        serve_putters(q); /* the place goes to the next putter */
    return leave(q, err);
}

int coil_queue_get(coil_queue_t *q, void **item_out)
{
    if (!q || !item_out)
        return -EINVAL;
    struct coil_task *t;
    int err = coil__sync_task(&q->s, &t);
    if (err)
        return err;
    lock(q);
    err = try_get(q, item_out);
    if (err != -EAGAIN) {
        unlock(q);
        return err;
    }
    struct coil__waiter w;
    w.tag = q->epoch;
    err = wait_in(q, &q->getters, &w);
    /* A promise an immediate shutdown has not wiped out. */
    bool promised = w.granted && w.result == 0 && q->epoch == w.tag;
    if (promised)
        q->reserved_items--;
    if (err == 0 && !promised)
        err = -ESHUTDOWN;
    if (err == 0)
        *item_out = get_item(q);
    else if (promised)
        serve_getters(q); /* the item stays at the head for the next */
    return leave(q, err);
}

int coil_queue_put_threadsafe(coil_queue_t *q, void *item)
{
    if (!q || !q->ts)
        return -EINVAL;
    if (coil__loop_running_here(q->s.loop))
        return coil_queue_put_nowait(q, item);
    lock(q);
    int err = q->shut ? -ESHUTDOWN : has_room(q) ? reserve(q) : -EAGAIN;
    if (!err && !q->posted) {
        err = coil__threadsafe_post(q->s.loop, &q->ts_node);
        q->posted = err == 0;
    }
    if (!err) {
        /* Counted now; the getters are served when the node runs. */
        push(q, item);
        q->unfinished++;
    }
    unlock(q);
    return err;
}

/* ------------------------------------------------------------------ */
/* Queries, task_done, join, shutdown                                   */
/* ------------------------------------------------------------------ */

size_t coil_queue_size(coil_queue_t *q)
{
    if (!q)
        return 0;
    lock(q);
    size_t n = q->count;
    unlock(q);
    return n;
}

size_t coil_queue_maxsize(const coil_queue_t *q)
{
    return q && q->maxsize != SIZE_MAX ? q->maxsize : 0;
}

bool coil_queue_empty(coil_queue_t *q)
{
    return coil_queue_size(q) == 0;
}

bool coil_queue_full(coil_queue_t *q)
{
    if (!q)
        return false;
    lock(q);
    bool full = !has_room(q);
    unlock(q);
    return full;
}

int coil_queue_task_done(coil_queue_t *q)
{
    if (!q)
        return -EINVAL;
    lock(q);
    int err = 0;
    if (q->unfinished == 0)
        err = -EOVERFLOW;
    else if (--q->unfinished == 0)
        coil__waitq_grant_all(&q->joiners, 0);
    unlock(q);
    return err;
}

size_t coil_queue_unfinished(coil_queue_t *q)
{
    if (!q)
        return 0;
    lock(q);
    size_t n = q->unfinished;
    unlock(q);
    return n;
}

int coil_queue_join(coil_queue_t *q)
{
    if (!q)
        return -EINVAL;
    struct coil_task *t;
    int err = coil__sync_task(&q->s, &t);
    if (err)
        return err;
    lock(q);
    if (q->unfinished == 0) {
        unlock(q);
        return 0;
    }
    struct coil__waiter w;
    err = wait_in(q, &q->joiners, &w);
    return leave(q, err);
}

int coil_queue_shutdown(coil_queue_t *q, bool immediate)
{
    if (!q)
        return -EINVAL;
    lock(q);
    if (q->shut != SHUT_IMMEDIATE)
        q->shut = immediate ? SHUT_IMMEDIATE : SHUT_GRACEFUL;
    struct slot *buf = NULL;
    size_t cap = 0, head = 0, count = 0;
    if (immediate && q->count) {
        /* Take the items out now; drop them once the lock is let go. */
        buf = q->buf;
        cap = q->cap;
        head = q->head;
        count = q->count;
        q->buf = NULL;
        q->cap = q->head = q->count = 0;
        q->reserved_items = 0;
        q->epoch++;
        q->unfinished -= count < q->unfinished ? count : q->unfinished;
        if (q->unfinished == 0)
            coil__waitq_grant_all(&q->joiners, 0);
    }
    coil__waitq_grant_all(&q->putters, -ESHUTDOWN);
    if (q->count == q->reserved_items)
        coil__waitq_grant_all(&q->getters, -ESHUTDOWN);
    unlock(q);
    drop_all(q, buf, cap, head, count);
    coil__free(buf);
    return count > INT_MAX ? INT_MAX : (int)count;
}

bool coil_queue_is_shutdown(coil_queue_t *q)
{
    if (!q)
        return false;
    lock(q);
    bool shut = q->shut != OPEN;
    unlock(q);
    return shut;
}
