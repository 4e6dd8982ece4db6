/* SPDX-License-Identifier: MIT */
/*
 * timer.c - call_later / call_at (timer.h): timer handles on the 4-ary
 * heap (heap.h), ordered by (deadline, scheduling order).
 *
 * Same-deadline rings. Many timers share a deadline: every sleeper woken
 * in one batch counts from the same cached time, and a server gives its
 * connections the same timeout. So a timer whose deadline equals that of
 * the newest ring's leader (and is still in the future) joins that ring
 * in O(1) instead of entering the heap. When a leader runs or is
 * cancelled, the next timer of its ring takes over its heap slot in
 * place, keeping the leader's sequence number. That keeps the order exact:
 * a ring only grows while it is the newest, so every member was scheduled
 * before any later heap entry of the same deadline, and after every
 * earlier one. Cancelling a member is a ring unlink; cancelling a leader
 * with members is a hand-over; only the last of a ring leaves the heap
 * (O(log n)). A cancelled timer costs nothing afterwards.
 *
 * A pending timer holds one handle reference for the timers. A poll marks
 * the time it read; after that iteration's ready callbacks, the timers
 * due at that time run straight from the heap, in order, without a trip
 * through the ready queue. Only timers scheduled before the poll run then
 * (their ring's sequence number is below the mark, and a timer already
 * due when scheduled never joins a ring), so a timer scheduled by a timer
 * callback waits for the next iteration, as in asyncio.
 *
 * Running from the heap matters with many timers: a due timer is a cache
 * miss wherever it lives, and prefetching the next minimum while the
 * current callback runs overlaps the misses, which a linked queue would
 * serialise.
 */
#include "loop_internal.h"
#include "timer.h"

static inline struct coil_handle *leader_of_node(struct coil__heap_node *n)
{
    return coil__container_of(n, struct coil_handle, heap);
}

static inline bool ring_alone(const struct coil_handle *h)
{
    return h->u.ring.next == h;
}

static void ring_unlink(struct coil_handle *h)
{
    h->u.ring.prev->u.ring.next = h->u.ring.next;
    h->u.ring.next->u.ring.prev = h->u.ring.prev;
}

/* The timer leaves the timers (runs or is cancelled): the next of its
 * ring, if any, takes its place in the heap. */
static void take_out(struct coil_loop *loop, struct coil_handle *h)
{
    struct coil__heap *heap = &loop->timers.heap;
    int64_t when = coil__timer_when(h);
    if (!coil__heap_contains(&h->heap)) {
        ring_unlink(h); /* a member: nothing else changes */
    } else if (ring_alone(h)) {
        coil__heap_remove(heap, &h->heap);
        if (loop->timers.last_leader == h)
            loop->timers.last_leader = NULL;
    } else {
        struct coil_handle *next = h->u.ring.next;
        uint32_t i = h->heap.index;
        ring_unlink(h);
        next->heap = h->heap;
        heap->v[i].node = &next->heap;
        h->heap.index = COIL__HEAP_NONE;
        if (loop->timers.last_leader == h)
            loop->timers.last_leader = next;
    }
    coil__handle_clear(h, COIL__H_PENDING);
    h->u.when = when;
    loop->timers.count--;
}

int64_t coil__timer_when(const struct coil_handle *h)
{
    /* A member's deadline is its leader's: walk the ring to it. */
    while (!coil__heap_contains(&h->heap))
        h = h->u.ring.next;
    return coil__handle_loop(h)->timers.heap.v[h->heap.index].key;
}

void coil__timers_init(struct coil_loop *loop)
{
    coil__heap_init(&loop->timers.heap);
    loop->timers.last_leader = NULL;
    loop->timers.count = 0;
}

void coil__timers_term(struct coil_loop *loop)
{
    struct coil__heap *h = &loop->timers.heap;
    while (h->len) {
        struct coil_handle *t = leader_of_node(h->v[0].node);
        take_out(loop, t);
        coil__handle_drop(t, COIL__H_LOOP_REF);
    }
    coil__heap_term(h);
    loop->timers.last_leader = NULL;
}

void coil__timers_mark_due(struct coil_loop *loop)
{
    loop->timers.due_now = loop->now;
    loop->timers.due_seq = loop->timers.heap.next_seq;
    loop->timers.due = loop->timers.heap.len > 0;
}

void coil__timers_run(struct coil_loop *loop)
{
    struct coil__heap *h = &loop->timers.heap;
    const struct coil__heap_entry *min;
    loop->timers.due = false;
    while ((min = coil__heap_min(h)) && min->key <= loop->timers.due_now &&
           (int32_t)(min->node->seq - loop->timers.due_seq) < 0) {
        struct coil_handle *t = leader_of_node(min->node);
        take_out(loop, t);
        if (h->len)
            __builtin_prefetch(h->v[0].node);
        if (coil__unlikely(coil__loop_debug_on(loop)))
            coil__debug_call(loop, t->fn, t->arg); /* timed */
        else
            t->fn(t->arg);
        coil__handle_drop(t, COIL__H_LOOP_REF);
    }
    if (h->len < h->cap / 4)
        coil__heap_shrink(h);
}

int64_t coil__timers_timeout(const struct coil_loop *loop)
{
    const struct coil__heap_entry *min = coil__heap_min(&loop->timers.heap);
    if (!min)
        return -1;
    return min->key <= loop->now ? 0 : min->key - loop->now;
}

void coil__timers_remove(struct coil_loop *loop, struct coil_handle *h)
{
    take_out(loop, h);
    /* Cancelling many timers gives their memory back. */
    if (loop->timers.heap.len < loop->timers.heap.cap / 4)
        coil__heap_shrink(&loop->timers.heap);
}

/* Schedule h at when: join the newest ring, or lead a new one. */
static int insert(struct coil_loop *loop, struct coil_handle *h, int64_t when)
{
    struct coil_handle *last = loop->timers.last_leader;
    if (last && when > loop->now &&
        loop->timers.heap.v[last->heap.index].key == when) {
        h->u.ring.next = last;
        h->u.ring.prev = last->u.ring.prev;
        last->u.ring.prev->u.ring.next = h;
        last->u.ring.prev = h;
        return 0;
    }
    int err = coil__heap_insert(&loop->timers.heap, &h->heap, when);
    if (err)
        return err;
    h->u.ring.next = h->u.ring.prev = h;
    loop->timers.last_leader = h;
    return 0;
}

int coil__timer_start(struct coil_loop *loop, struct coil_handle *h,
                      int64_t when, coil_callback_fn fn, void *arg)
{
    h->fn = fn;
    h->arg = arg;
    h->loop_flags = (uintptr_t)loop | COIL__H_LOOP_REF | COIL__H_USER_REF;
    h->heap.index = COIL__HEAP_NONE;
    int err = insert(loop, h, when);
    if (err)
        return err;
    coil__handle_set(h, COIL__H_PENDING);
    loop->timers.count++;
    return 0;
}

int coil_loop_call_at(coil_loop_t *loop, int64_t when_ns, coil_callback_fn fn,
                      void *arg, coil_handle_t **handle_out)
{
    if (handle_out)
        *handle_out = NULL;
    if (!loop || !fn)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    coil__loop_check_thread(loop, "coil_loop_call_at/call_later");
    struct coil_handle *h = coil__handle_new(loop, true, fn, arg);
    if (!h)
        return -ENOMEM;
    int err = insert(loop, h, when_ns);
    if (err) {
        coil__handle_drop(h, COIL__H_LOOP_REF);
        return err;
    }
    coil__handle_set(h, COIL__H_PENDING);
    loop->timers.count++;
    if (handle_out) {
        coil__handle_set(h, COIL__H_USER_REF);
        *handle_out = h;
    }
    return 0;
}

int coil_loop_call_later(coil_loop_t *loop, int64_t delay_ns,
                         coil_callback_fn fn, void *arg,
                         coil_handle_t **handle_out)
{
    if (!loop) {
        if (handle_out)
            *handle_out = NULL;
        return -EINVAL;
    }
    return coil_loop_call_at(loop, coil__add_sat(loop->now, delay_ns), fn, arg,
                             handle_out);
}

/* The size a million pending timers are multiplied by (ready.h). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct coil_handle) == 48,
               "a timer handle should stay 48 bytes on 64-bit systems");
