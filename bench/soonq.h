/* SPDX-License-Identifier: MIT */
/*
 * soonq.h - a "call soon" queue for the libuv and libev comparison
 * programs, which have no such thing built in.
 *
 * A libuv or libev program that wants to run many callbacks on the next
 * iteration keeps its own FIFO of (fn, arg) and drains it from one idle
 * watcher, started while the FIFO is not empty (this is how Node.js
 * implements setImmediate on libuv: its own queue, drained from a loop
 * phase handle). This is that FIFO, written to be as cheap as such a
 * queue gets: a power-of-two ring of 16-byte entries that doubles when
 * full, so a push is one store and no allocation in steady state. Like
 * coil, a drain runs only the entries queued when it began; a callback
 * queued by a callback waits for the next iteration.
 */
#ifndef COIL_BENCH_SOONQ_H
#define COIL_BENCH_SOONQ_H

#include <stdlib.h>
#include <string.h>

struct soonq_entry {
    void (*fn)(void *arg);
    void *arg;
};

struct soonq {
    struct soonq_entry *v;
    size_t cap;  /* a power of two, or 0 */
    size_t head; /* index of the oldest entry */
    size_t len;
};

static inline void soonq_init(struct soonq *q)
{
    memset(q, 0, sizeof(*q));
}

static inline void soonq_term(struct soonq *q)
{
    free(q->v);
    soonq_init(q);
}

/* Make room for one more; 0, or -1 when out of memory. */
static inline int soonq_grow(struct soonq *q)
{
    size_t cap = q->cap ? q->cap * 2 : 64;
    struct soonq_entry *v = malloc(cap * sizeof(*v));
    if (!v)
        return -1;
    /* Unwrap the ring into the new array, oldest first. */
    size_t first = q->cap - q->head < q->len ? q->cap - q->head : q->len;
    if (q->len) {
        memcpy(v, q->v + q->head, first * sizeof(*v));
        memcpy(v + first, q->v, (q->len - first) * sizeof(*v));
    }
    free(q->v);
    q->v = v;
    q->cap = cap;
    q->head = 0;
    return 0;
}

/* Append; 0, or -1 when out of memory. */
static inline int soonq_push(struct soonq *q, void (*fn)(void *), void *arg)
{
    if (q->len == q->cap && soonq_grow(q) != 0)
        return -1;
    struct soonq_entry *e = &q->v[(q->head + q->len) & (q->cap - 1)];
    e->fn = fn;
    e->arg = arg;
    q->len++;
    return 0;
}

/* Run the entries queued when called, oldest first. */
static inline void soonq_drain(struct soonq *q)
{
    for (size_t n = q->len; n > 0; n--) {
        struct soonq_entry e = q->v[q->head];
        q->head = (q->head + 1) & (q->cap - 1);
        q->len--;
        e.fn(e.arg);
    }
}

#endif /* COIL_BENCH_SOONQ_H */
