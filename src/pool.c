/* SPDX-License-Identifier: MIT */
/*
 * pool.c - slab refill for pool.h.
 */
#include <assert.h>

#include "internal.h"
#include "pool.h"

#define FIRST_SLAB 32
#define MAX_SLAB 4096
#define SLAB_HEAD 16 /* link to the next slab, padded to keep alignment */

void coil__pool_init(struct coil__pool *p, size_t size)
{
    coil__pool_init_aligned(p, size, 8);
}

void coil__pool_init_aligned(struct coil__pool *p, size_t size, size_t align)
{
    p->free = NULL;
    p->fresh = p->fresh_end = NULL;
    p->slabs = NULL;
    p->align = align;
    p->size = (size + align - 1) & ~(align - 1);
    p->next_count = FIRST_SLAB;
    p->live = 0;
}

void coil__pool_term(struct coil__pool *p)
{
    /* Every object must be back: the loop goes only when nothing holds
     * a handle or record any more. */
    assert(p->live == 0);
    void *s = p->slabs;
    while (s) {
        void *next = *(void **)s;
        coil__free(s);
        s = next;
    }
    p->slabs = NULL;
    p->free = NULL;
    p->fresh = p->fresh_end = NULL;
}

int coil__pool_grow(struct coil__pool *p)
{
    size_t n = p->next_count;
    /* The head links slabs; objects start at the first aligned address
     * after it (malloc aligns to 16, so 8- and 16-aligned pools waste
     * nothing). */
    size_t pad = p->align > 16 ? p->align : 0;
    char *slab = coil__malloc(SLAB_HEAD + pad + n * p->size);
    if (!slab)
        return -ENOMEM;
    *(void **)slab = p->slabs;
    p->slabs = slab;
    /* Whatever was left of the previous slab's fresh objects was used up
     * (the pool grows only when both the free list and they are empty). */
    p->fresh = (char *)(((uintptr_t)slab + SLAB_HEAD + p->align - 1) &
                        ~(uintptr_t)(p->align - 1));
    p->fresh_end = p->fresh + n * p->size;
    if (p->next_count < MAX_SLAB)
        p->next_count *= 2;
    return 0;
}
