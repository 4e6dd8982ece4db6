/* SPDX-License-Identifier: MIT */
/*
 * pool.h - a free list of fixed-size objects carved from slabs, so objects
 * that churn (call_soon records, handles) cost no allocation in steady
 * state. Slabs double in size up to a cap and are freed only when the pool
 * is terminated; a burst leaves its memory in the pool for the next burst.
 * Single-threaded: each pool belongs to one loop.
 */
#ifndef COIL_POOL_H
#define COIL_POOL_H

#include <stddef.h>

struct coil__pool_free {
    struct coil__pool_free *next;
};

struct coil__pool {
    struct coil__pool_free *free; /* objects ready for reuse */
    char *fresh, *fresh_end;      /* never-used objects of the newest slab */
    void *slabs;                  /* singly linked through each slab's head */
    size_t size;                  /* object size, a multiple of align */
    size_t align;                 /* object alignment (8 or more) */
    size_t next_count;            /* objects in the next slab */
    size_t live;                  /* objects handed out */
};

void coil__pool_init(struct coil__pool *p, size_t size);
/* Objects aligned to align (a power of two): for cache-line layouts. */
void coil__pool_init_aligned(struct coil__pool *p, size_t size, size_t align);
void coil__pool_term(struct coil__pool *p);

/* Refill with a slab; -ENOMEM if that fails. */
int coil__pool_grow(struct coil__pool *p);

/*
 * An object, or NULL if memory ran out. Returned objects come first (they
 * are hot in cache); then the newest slab's fresh objects, handed out by
 * bumping a pointer, so a new slab's memory is first touched by its
 * first user rather than by threading a free list through all of it.
 */
static inline void *coil__pool_get(struct coil__pool *p)
{
    struct coil__pool_free *o = p->free;
    if (__builtin_expect(o != NULL, 1)) {
        p->free = o->next;
    } else {
        if (p->fresh == p->fresh_end && coil__pool_grow(p) != 0)
            return NULL;
        o = (struct coil__pool_free *)p->fresh;
        p->fresh += p->size;
    }
    p->live++;
    return o;
}

static inline void coil__pool_put(struct coil__pool *p, void *obj)
{
    struct coil__pool_free *o = obj;
    o->next = p->free;
    p->free = o;
    p->live--;
}

#endif /* COIL_POOL_H */
