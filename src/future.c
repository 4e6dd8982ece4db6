/* SPDX-License-Identifier: MIT */
/*
 * future.c - futures: a result or an error, and the callbacks waiting for
 * it. See future_internal.h for the waiter mechanism underneath done
 * callbacks.
 */
#include "future_internal.h"
#include "loop_internal.h"

struct done_cb {
    struct coil__fwaiter w;
    coil_done_fn fn;
    void *arg;
    coil_future_t *fut; /* holds a reference until the callback ran */
};

static void done_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct done_cb *cb = coil__container_of(node, struct done_cb, w.node);
    coil_future_t *fut = cb->fut;
    coil_done_fn fn = cb->fn;
    void *arg = cb->arg;
    coil__free(cb);
    fn(fut, arg);
    coil_future_unref(fut);
}

static void done_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct done_cb *cb = coil__container_of(node, struct done_cb, w.node);
    coil_future_t *fut = cb->fut;
    coil__free(cb);
    coil_future_unref(fut);
}

static const struct coil__ready_ops done_ops = {done_run, done_discard};

COIL__COLD void coil__future_used_after_free(const coil_future_t *fut,
                                             const char *call)
{
    coil__misuse(NULL,
                 "%s(%p): the future or task was used after its last "
                 "unref (a second unref, or a use of a dropped reference)",
                 call, (const void *)fut);
}

#define CHECK_LIVE(fut, call) coil__future_check_live(fut, call)

static void future_release(struct coil_loop *loop, void *fut)
{
    coil__pool_put(&loop->futures.pool, fut);
}

/* The last reference went, in debug mode: a failed plain future nobody
 * read is reported, and its memory quarantined (a task's destroy does
 * both for a task). */
static COIL__COLD void debug_destroy(struct coil_loop *loop,
                                     coil_future_t *fut)
{
    if (fut->ops && fut->ops->destroy) {
        fut->ops->destroy(fut);
        return;
    }
    if (coil__future_lost_error(fut) && !coil__loop_closed(loop))
        coil__log(loop, COIL_LOG_WARNING,
                  "future %p failed (%s) and its last reference went "
                  "without anyone reading the error",
                  (void *)fut, coil_err_name(fut->outcome));
    if (!coil__debug_quarantine(loop, fut, sizeof(*fut), future_release))
        future_release(loop, fut);
}

void coil__futures_init(struct coil_loop *loop)
{
    coil__pool_init(&loop->futures.pool, sizeof(struct coil_future));
}

void coil__futures_term(struct coil_loop *loop)
{
    coil__pool_term(&loop->futures.pool);
}

void coil__future_init(coil_future_t *fut, struct coil_loop *loop,
                       const struct coil__future_ops *ops)
{
    fut->loop = loop;
    fut->ops = ops;
    coil__list_init(&fut->waiters);
    fut->value = NULL;
    fut->outcome = -EINPROGRESS;
    fut->refs = 1;
    fut->retrieved = false;
    coil__loop_ref(loop);
}

int coil_future_new(coil_loop_t *loop, coil_future_t **fut_out)
{
    if (!fut_out)
        return -EINVAL;
    *fut_out = NULL;
    if (!loop)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    coil_future_t *fut = coil__pool_get(&loop->futures.pool);
    if (!fut)
        return -ENOMEM;
    coil__future_init(fut, loop, NULL);
    *fut_out = fut;
    return 0;
}

coil_future_t *coil_future_ref(coil_future_t *fut)
{
    if (fut) {
        CHECK_LIVE(fut, "coil_future_ref");
        fut->refs++;
    }
    return fut;
}

void coil_future_unref(coil_future_t *fut)
{
    if (!fut)
        return;
    CHECK_LIVE(fut, "coil_future_unref");
    if (--fut->refs)
        return;
    /* Nothing can be waiting: every waiter holds a reference. */
    struct coil_loop *loop = fut->loop;
    if (coil__unlikely(coil__loop_debug_on(loop)))
        debug_destroy(loop, fut);
    else if (fut->ops && fut->ops->destroy)
        fut->ops->destroy(fut);
    else
        future_release(loop, fut);
    coil__loop_unref(loop);
}

static void queue_or_discard(coil_future_t *fut, struct coil__fwaiter *w)
{
    struct coil_loop *loop = fut->loop;
    if (coil__loop_closed(loop))
        w->node.ops->discard(loop, &w->node);
    else
        coil__ready_push(loop, &w->node);
}

static COIL__COLD void discard_waiters(coil_future_t *fut)
{
    /* Hold the future: a discarded waiter may drop the last reference. */
    fut->refs++;
    struct coil__list *l;
    while ((l = coil__list_first(&fut->waiters))) {
        coil__list_remove(l);
        queue_or_discard(fut,
                         coil__container_of(l, struct coil__fwaiter, link));
    }
    coil_future_unref(fut);
}

void coil__future_complete(coil_future_t *fut, void *value, int outcome)
{
    fut->value = value;
    fut->outcome = outcome;
    struct coil_loop *loop = fut->loop;
    if (coil__unlikely(coil__loop_closed(loop))) {
        discard_waiters(fut);
        return;
    }
    /* Queue every waiter in order; queueing frees nothing. */
    struct coil__list *l;
    while ((l = coil__list_first(&fut->waiters))) {
        coil__list_remove(l);
        coil__ready_push(loop,
                         &coil__container_of(l, struct coil__fwaiter, link)
                              ->node);
    }
}

void coil__future_add_waiter(coil_future_t *fut, struct coil__fwaiter *w)
{
    if (fut->outcome != -EINPROGRESS) {
        coil__list_init(&w->link);
        queue_or_discard(fut, w);
        return;
    }
    coil__list_push_back(&fut->waiters, &w->link);
}

static inline int set_result(coil_future_t *fut, void *value)
{
    if (fut->ops && fut->ops->owned)
        return -EPERM;
    if (fut->outcome != -EINPROGRESS)
        return -EALREADY;
    coil__future_complete(fut, value, 0);
    return 0;
}

/* Debug mode's way: the thread checked first. Apart, so that the hot
 * path below keeps no registers for a call that returns. */
static COIL__COLD int set_result_checked(coil_future_t *fut, void *value)
{
    coil__debug_check_thread(fut->loop, "coil_future_set_result");
    return set_result(fut, value);
}

int coil_future_set_result(coil_future_t *fut, void *value)
{
    if (!fut)
        return -EINVAL;
    CHECK_LIVE(fut, "coil_future_set_result");
    if (coil__unlikely(coil__loop_debug_on(fut->loop)))
        return set_result_checked(fut, value);
    return set_result(fut, value);
}

int coil_future_set_error(coil_future_t *fut, int error)
{
    if (fut)
        CHECK_LIVE(fut, "coil_future_set_error");
    if (!fut || error >= 0 || error == -ECANCELED ||
        error == -EINPROGRESS)
        return -EINVAL;
    if (fut->ops && fut->ops->owned)
        return -EPERM;
    if (fut->outcome != -EINPROGRESS)
        return -EALREADY;
    coil__future_complete(fut, NULL, error);
    return 0;
}

int coil_future_cancel(coil_future_t *fut)
{
    if (!fut)
        return -EINVAL;
    CHECK_LIVE(fut, "coil_future_cancel");
    if (fut->ops && fut->ops->cancel)
        return fut->ops->cancel(fut);
    if (fut->outcome != -EINPROGRESS)
        return -EALREADY;
    coil__future_complete(fut, NULL, -ECANCELED);
    return 0;
}

bool coil_future_done(const coil_future_t *fut)
{
    if (!fut)
        return false;
    CHECK_LIVE(fut, "coil_future_done");
    return fut->outcome != -EINPROGRESS;
}

bool coil_future_cancelled(const coil_future_t *fut)
{
    if (!fut)
        return false;
    CHECK_LIVE(fut, "coil_future_cancelled");
    return fut->outcome == -ECANCELED;
}

int coil_future_result(const coil_future_t *fut, void **value_out)
{
    if (!fut)
        return -EINVAL;
    CHECK_LIVE(fut, "coil_future_result");
    ((coil_future_t *)(uintptr_t)fut)->retrieved = true;
    if (fut->outcome == 0 && value_out)
        *value_out = fut->value;
    return fut->outcome;
}

int coil_future_error(const coil_future_t *fut)
{
    if (!fut)
        return -EINVAL;
    CHECK_LIVE(fut, "coil_future_error");
    /* Reading counts as handling it: the one cast, on a flag. */
    return coil__future_outcome_take((coil_future_t *)(uintptr_t)fut);
}

coil_loop_t *coil_future_loop(const coil_future_t *fut)
{
    return fut ? fut->loop : NULL;
}

int coil_future_add_done_callback(coil_future_t *fut, coil_done_fn fn,
                                  void *arg)
{
    if (!fut || !fn)
        return -EINVAL;
    CHECK_LIVE(fut, "coil_future_add_done_callback");
    struct done_cb *cb = coil__malloc(sizeof(*cb));
    if (!cb)
        return -ENOMEM;
    cb->w.node.ops = &done_ops;
    cb->fn = fn;
    cb->arg = arg;
    cb->fut = coil_future_ref(fut);
    coil__future_add_waiter(fut, &cb->w);
    return 0;
}

int coil_future_remove_done_callback(coil_future_t *fut, coil_done_fn fn,
                                     void *arg)
{
    if (!fut || !fn)
        return -EINVAL;
    CHECK_LIVE(fut, "coil_future_remove_done_callback");
    int removed = 0;
    struct coil__list *l = fut->waiters.next;
    while (l != &fut->waiters) {
        struct coil__list *next = l->next;
        struct coil__fwaiter *w =
            coil__container_of(l, struct coil__fwaiter, link);
        struct done_cb *cb = coil__container_of(w, struct done_cb, w);
        if (w->node.ops == &done_ops && cb->fn == fn && cb->arg == arg) {
            coil__list_remove(l);
            coil__free(cb);
            removed++;
        }
        l = next;
    }
    for (int i = 0; i < removed; i++)
        coil_future_unref(fut); /* the callbacks' references */
    return removed;
}

/* ------------------------------------------------------------------ */
/* Running the loop until a future is done                              */
/* ------------------------------------------------------------------ */

int coil_loop_run_until_complete(coil_loop_t *loop, coil_future_t *fut)
{
    if (!loop || !fut || fut->loop != loop)
        return -EINVAL;
    /* Hold fut: a callback may drop the caller's reference meanwhile.
     * Like asyncio, at least one iteration runs even if fut is done. */
    coil_future_ref(fut);
    struct coil__until until = {.word = &fut->outcome,
                                .pending = -EINPROGRESS};
    int err = coil__loop_run_until(loop, &until);
    if (!err)
        err = fut->outcome == -EINPROGRESS ? -EINTR
                                           : coil__future_outcome_take(fut);
    coil_future_unref(fut);
    return err;
}
