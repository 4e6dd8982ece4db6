/* SPDX-License-Identifier: MIT */
/*
 * timer.c - call_later / call_at: timer handles on the 4-ary heap
 * (heap.h), ordered by (deadline, scheduling order).
 *
 * A pending timer holds one handle reference for the heap. A poll marks
 * the time it read; after that iteration's ready callbacks, the timers
 * due at that time run straight from the heap, in order, without a trip
 * through the ready queue: the heap is the queue. Only timers scheduled
 * before the poll run then (their seq is below the mark), so a timer
 * scheduled by a timer callback waits for the next iteration, as in
 * asyncio. A cancelled timer leaves the heap at once (O(log n)), so it
 * costs nothing afterwards.
 *
 * Running from the heap matters with many timers: a due timer is a cache
 * miss wherever it lives, and prefetching the next minimum while the
 * current callback runs overlaps the misses, which a linked queue would
 * serialise.
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

void coil__timers_mark_due(struct coil_loop *loop)
{
    loop->due_now = loop->now;
    loop->due_seq = loop->timers.next_seq;
    loop->timers_due = loop->timers.len > 0;
}

void coil__timers_run(struct coil_loop *loop)
{
    struct coil__heap *h = &loop->timers;
    const struct coil__heap_entry *min;
    loop->timers_due = false;
    while ((min = coil__heap_min(h)) && min->key <= loop->due_now &&
           (int32_t)(min->node->seq - loop->due_seq) < 0) {
        struct coil_handle *t = coil__container_of(coil__heap_pop(h),
                                                   struct coil_handle, heap);
        if (h->len)
            __builtin_prefetch(h->v[0].node);
        t->fn(t->arg);
        coil__handle_unref(t); /* the heap's reference */
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
    struct coil_handle *h = coil__handle_new(loop, true, fn, arg);
    if (!h)
        return -ENOMEM;
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
