/* SPDX-License-Identifier: MIT */
/*
 * ready.c - the ready queue, call_soon and callback handles (ready.h).
 *
 * The ready queue is an intrusive FIFO of nodes. A plain
 * call_soon without a handle takes a 32-byte record from a pool and gives
 * it back before calling the user's function, so a callback that
 * re-schedules itself reuses the record that is still hot in cache: no
 * allocation in steady state. A call that asks for a handle uses a
 * reference-counted handle (also pooled) that the caller can cancel; the
 * handle functions here serve timers (timer.c) too.
 */
#include "loop_internal.h"
#include "ready.h"

/* A call_soon handle: the handle and its node in the queue. */
struct soon_handle {
    struct coil_handle h;
    struct coil__ready node; /* in the ready queue until it runs */
};

static void soon_run(struct coil_loop *loop, struct coil__ready *node)
{
    coil__soon_run(loop, node);
}

static void soon_discard(struct coil_loop *loop, struct coil__ready *node)
{
    coil__pool_put(&loop->ready.soon_pool,
                   coil__container_of(node, struct coil__soon, node));
}

const struct coil__ready_ops coil__soon_ops = {soon_run, soon_discard};

static void handle_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct coil_handle *h =
        &coil__container_of(node, struct soon_handle, node)->h;
    if (!coil__handle_has(h, COIL__H_CANCELLED))
        h->fn(h->arg);
    coil__handle_drop(h, COIL__H_LOOP_REF);
}

static void handle_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    coil__handle_drop(
        &coil__container_of(node, struct soon_handle, node)->h,
        COIL__H_LOOP_REF);
}

static const struct coil__ready_ops handle_ops = {handle_run, handle_discard};

void coil__ready_init(struct coil_loop *loop)
{
    struct coil__loop_ready *r = &loop->ready;
    coil__readyq_init(&r->q);
    r->batch_left = 0;
    coil__pool_init(&r->soon_pool, sizeof(struct coil__soon));
    coil__pool_init(&r->soonh_pool, sizeof(struct soon_handle));
    coil__pool_init(&r->timer_pool, sizeof(struct coil_handle));
}

void coil__ready_term(struct coil_loop *loop)
{
    struct coil__loop_ready *r = &loop->ready;
    coil__pool_term(&r->soon_pool);
    coil__pool_term(&r->soonh_pool);
    coil__pool_term(&r->timer_pool);
}

void coil__ready_discard_all(struct coil_loop *loop)
{
    /* A discard may release objects, but never queues new nodes. */
    struct coil__loop_ready *r = &loop->ready;
    r->batch_left = 0;
    while (r->q.len) {
        struct coil__ready *node = coil__readyq_pop(&r->q);
        node->ops->discard(loop, node);
    }
}

struct coil_handle *coil__handle_new(struct coil_loop *loop, bool timer,
                                     coil_callback_fn fn, void *arg)
{
    struct coil_handle *h;
    if (timer) {
        h = coil__pool_get(&loop->ready.timer_pool);
    } else {
        struct soon_handle *sh = coil__pool_get(&loop->ready.soonh_pool);
        if (sh)
            sh->node.ops = &handle_ops;
        h = sh ? &sh->h : NULL;
    }
    if (!h)
        return NULL;
    h->fn = fn;
    h->arg = arg;
    h->loop_flags = (uintptr_t)loop | COIL__H_LOOP_REF;
    h->u.when = loop->now;
    h->heap.index = timer ? COIL__HEAP_NONE : COIL__HEAP_SOON;
    coil__loop_ref(loop);
    return h;
}

void coil__handle_drop(struct coil_handle *h, unsigned ref)
{
    coil__handle_clear(h, ref);
    if (coil__handle_has(h, COIL__H_LOOP_REF | COIL__H_USER_REF))
        return;
    struct coil_loop *loop = coil__handle_loop(h);
    if (coil__handle_is_timer(h))
        coil__pool_put(&loop->ready.timer_pool, h);
    else
        coil__pool_put(&loop->ready.soonh_pool,
                       coil__container_of(h, struct soon_handle, h));
    coil__loop_unref(loop);
}

static int call_soon(struct coil_loop *loop, coil_callback_fn fn, void *arg,
                     coil_handle_t **handle_out);

/* A closed loop, or debug mode (the calling thread checked): apart, so
 * that the common path keeps no registers for a call that returns. */
static COIL__COLD int call_soon_slow(struct coil_loop *loop,
                                     coil_callback_fn fn, void *arg,
                                     coil_handle_t **handle_out)
{
    if (coil__loop_closed(loop))
        return -EBADF;
    coil__loop_check_thread(loop, "coil_loop_call_soon");
    return call_soon(loop, fn, arg, handle_out);
}

int coil_loop_call_soon(coil_loop_t *loop, coil_callback_fn fn, void *arg,
                        coil_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!loop || !fn)
        return -EINVAL;
    if (coil__unlikely(coil__loop_closed(loop) || coil__loop_debug_on(loop)))
        return call_soon_slow(loop, fn, arg, handle_out);
    return call_soon(loop, fn, arg, handle_out);
}

static inline int call_soon(struct coil_loop *loop, coil_callback_fn fn,
                            void *arg, coil_handle_t **handle_out)
{
    if (coil__likely(!handle_out)) {
        struct coil__soon *s = coil__pool_get(&loop->ready.soon_pool);
        if (!s)
            return -ENOMEM;
        s->node.ops = &coil__soon_ops;
        s->fn = fn;
        s->arg = arg;
        coil__ready_push(loop, &s->node);
        return 0;
    }
    struct coil_handle *h = coil__handle_new(loop, false, fn, arg);
    if (!h)
        return -ENOMEM;
    coil__handle_set(h, COIL__H_USER_REF);
    coil__ready_push(loop, &coil__container_of(h, struct soon_handle, h)->node);
    *handle_out = h;
    return 0;
}

int coil_handle_cancel(coil_handle_t *h)
{
    if (!h)
        return -EINVAL;
    if (coil__handle_has(h, COIL__H_CANCELLED))
        return 0;
    coil__handle_set(h, COIL__H_CANCELLED);
    /* A pending timer leaves the timers now, so it costs nothing later; a
     * queued call_soon node stays and is skipped when its turn comes. */
    if (coil__handle_has(h, COIL__H_PENDING)) {
        coil__timers_remove(coil__handle_loop(h), h);
        coil__handle_drop(h, COIL__H_LOOP_REF);
    }
    return 0;
}

bool coil_handle_cancelled(const coil_handle_t *h)
{
    return h && coil__handle_has(h, COIL__H_CANCELLED);
}

int64_t coil_handle_when(const coil_handle_t *h)
{
    if (!h)
        return 0;
    return coil__handle_has(h, COIL__H_PENDING) ? coil__timer_when(h)
                                                : h->u.when;
}

void coil_handle_unref(coil_handle_t *h)
{
    if (h)
        coil__handle_drop(h, COIL__H_USER_REF);
}
