/* SPDX-License-Identifier: MIT */
/*
 * timer.c - call_later / call_at: timer handles on the 4-ary heap
 * (heap.h), ordered by (deadline, scheduling order).
 *
 * A pending timer holds one handle reference for the heap. When it is due
 * it moves to the ready queue, reference and all, in deadline order and
 * before any of the timers that moved with it runs. A cancelled timer
 * leaves the heap at once (O(log n)), so it costs nothing afterwards.
 */
#include "loop.h"

void coil__timers_init(struct coil_loop *loop)
{
    coil__heap_init(&loop->timers);
}

void coil__timers_term(struct coil_loop *loop)
{
    struct coil__heap *h = &loop->timers;
    while (h->len) {
        struct coil__heap_node *n = coil__heap_pop(h);
        coil__handle_unref(coil__container_of(n, struct coil_handle, heap));
    }
    coil__heap_term(h);
}

void coil__timers_expire(struct coil_loop *loop)
{
    struct coil__heap *h = &loop->timers;
    const struct coil__heap_entry *min;
    while ((min = coil__heap_min(h)) && min->key <= loop->now) {
        struct coil__heap_node *n = coil__heap_pop(h);
        coil__handle_queue(coil__container_of(n, struct coil_handle, heap));
    }
    if (h->len < h->cap / 4)
        coil__heap_shrink(h);
}

int64_t coil__timers_timeout(const struct coil_loop *loop)
{
    const struct coil__heap_entry *min = coil__heap_min(&loop->timers);
    if (!min)
        return -1;
    return min->key <= loop->now ? 0 : min->key - loop->now;
}

void coil__timers_remove(struct coil_loop *loop, struct coil_handle *h)
{
    coil__heap_remove(&loop->timers, &h->heap);
    /* Cancelling many timers gives their memory back. */
    if (loop->timers.len < loop->timers.cap / 4)
        coil__heap_shrink(&loop->timers);
}

int coil_call_at(coil_loop_t *loop, int64_t when_ns, coil_callback_fn fn,
                 void *arg, coil_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!loop || !fn)
        return -EINVAL;
    if (loop->state == COIL__LOOP_CLOSED)
        return -EBADF;
    struct coil_handle *h = coil__handle_new(loop, fn, arg);
    if (!h)
        return -ENOMEM;
    h->flags |= COIL__H_TIMER;
    h->when = when_ns;
    int err = coil__heap_insert(&loop->timers, &h->heap, when_ns);
    if (err) {
        coil__handle_unref(h);
        return err;
    }
    if (handle_out) {
        h->refs++;
        *handle_out = h;
    }
    return 0;
}

int coil_call_later(coil_loop_t *loop, int64_t delay_ns, coil_callback_fn fn,
                    void *arg, coil_handle_t **handle_out)
{
    if (!loop) {
        if (handle_out)
            *handle_out = NULL;
        return -EINVAL;
    }
    return coil_call_at(loop, coil__add_sat(loop->now, delay_ns), fn, arg,
                        handle_out);
}
