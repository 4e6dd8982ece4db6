/* SPDX-License-Identifier: MIT */
/*
 * heap.c - the 4-ary timer heap (see heap.h for the contract).
 */
#include <assert.h>

#include "heap.h"
#include "internal.h"

#define ARITY 4
#define MIN_CAP 64

void coil__heap_init(struct coil__heap *h)
{
    h->v = NULL;
    h->len = 0;
    h->cap = 0;
    h->next_seq = 0;
}

void coil__heap_term(struct coil__heap *h)
{
    for (uint32_t i = 0; i < h->len; i++)
        h->v[i].node->index = COIL__HEAP_NONE;
    coil__free(h->v);
    coil__heap_init(h);
}

static inline bool less(const struct coil__heap_entry *a,
                        const struct coil__heap_entry *b)
{
    if (a->key != b->key)
        return a->key < b->key;
    return (int32_t)(a->node->seq - b->node->seq) < 0;
}

static inline void place(struct coil__heap *h, uint32_t i,
                         struct coil__heap_entry e)
{
    h->v[i] = e;
    e.node->index = i;
}

static void sift_up(struct coil__heap *h, uint32_t i)
{
    struct coil__heap_entry e = h->v[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / ARITY;
        if (!less(&e, &h->v[parent]))
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, e);
}

/*
 * Fill the hole at i with e, which is not less than i's parent: the hole
 * goes down along the least children to the bottom without comparing
 * them with e (e comes from the end of the array, so it nearly always
 * belongs near the bottom), then e sifts up from there, stopping at i at
 * the highest. Three comparisons a level instead of four.
 */
static void sift_down(struct coil__heap *h, uint32_t i)
{
    struct coil__heap_entry e = h->v[i];
    struct coil__heap_entry *v = h->v;
    uint32_t len = h->len;
    for (;;) {
        uint32_t first = i * ARITY + 1;
        if (first >= len)
            break;
        uint32_t best;
        if (len - first >= ARITY) { /* a full set: a tournament */
            uint32_t a = less(&v[first + 1], &v[first]) ? first + 1 : first;
            uint32_t b =
                less(&v[first + 3], &v[first + 2]) ? first + 3 : first + 2;
            best = less(&v[b], &v[a]) ? b : a;
        } else {
            best = first;
            for (uint32_t c = first + 1; c < len; c++)
                if (less(&v[c], &v[best]))
                    best = c;
        }
        place(h, i, v[best]);
        i = best;
    }
    place(h, i, e);
    sift_up(h, i);
}

int coil__heap_insert(struct coil__heap *h, struct coil__heap_node *node,
                      int64_t key)
{
    assert(node->index == COIL__HEAP_NONE);
    if (h->len == h->cap) {
        if (h->cap >= UINT32_MAX / 2)
            return -ENOMEM;
        uint32_t cap = h->cap ? h->cap * 2 : MIN_CAP;
        void *v = coil__realloc(h->v, (size_t)cap * sizeof(*h->v));
        if (!v)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    node->seq = h->next_seq++;
    uint32_t i = h->len++;
    h->v[i] = (struct coil__heap_entry){key, node};
    node->index = i;
    sift_up(h, i);
    return 0;
}

void coil__heap_remove(struct coil__heap *h, struct coil__heap_node *node)
{
    uint32_t i = node->index;
    assert(i < h->len && h->v[i].node == node);
    node->index = COIL__HEAP_NONE;
    uint32_t last = --h->len;
    if (i == last)
        return;
    struct coil__heap_entry moved = h->v[last];
    place(h, i, moved);
    if (i > 0 && less(&moved, &h->v[(i - 1) / ARITY]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

struct coil__heap_node *coil__heap_pop(struct coil__heap *h)
{
    assert(h->len > 0);
    struct coil__heap_node *node = h->v[0].node;
    coil__heap_remove(h, node);
    return node;
}

void coil__heap_shrink(struct coil__heap *h)
{
    /* Halve while at most a quarter full, so insert/remove at the boundary
     * cannot make the array thrash. A failed realloc just keeps the old. */
    uint32_t cap = h->cap;
    while (cap > MIN_CAP && h->len <= cap / 4)
        cap /= 2;
    if (cap == h->cap)
        return;
    if (h->len == 0 && cap == MIN_CAP) {
        coil__free(h->v);
        h->v = NULL;
        h->cap = 0;
        return;
    }
    void *v = coil__realloc(h->v, (size_t)cap * sizeof(*h->v));
    if (v) {
        h->v = v;
        h->cap = cap;
    }
}
