/* SPDX-License-Identifier: MIT */
/*
 * heap.h - the timer heap: a 4-ary min-heap in one array, ordered by
 * (key, seq), so equal keys come out in insertion order.
 *
 * Each array entry holds the key (the deadline) next to a pointer to the
 * owner's node, so sifting compares keys without touching the owners'
 * memory (the owner is read only to break ties and to store its index).
 * The node remembers its index, so removing any node is O(log n). A 4-ary
 * heap is half as deep as a binary one and its four children share a cache
 * line or two; see docs/architecture.md for why this beats a pointer heap.
 *
 * seq is 32 bits and compared modulo 2^32, which orders equal keys
 * correctly as long as no two of them were inserted 2^31 insertions apart
 * while both stayed in the heap.
 *
 * Only insertion can fail (-ENOMEM when the array must grow); removal
 * never allocates and never fails.
 */
#ifndef COIL_HEAP_H
#define COIL_HEAP_H

#include <stdbool.h>
#include <stdint.h>

#define COIL__HEAP_NONE UINT32_MAX

/* Embedded in the owner. */
struct coil__heap_node {
    uint32_t index; /* position in the array, COIL__HEAP_NONE if absent */
    uint32_t seq;   /* insertion order, breaks ties between equal keys */
};

struct coil__heap_entry {
    int64_t key;
    struct coil__heap_node *node;
};

struct coil__heap {
    struct coil__heap_entry *v; /* the array, v[0] is the minimum */
    uint32_t len;               /* entries in use */
    uint32_t cap;               /* entries allocated */
    uint32_t next_seq;          /* seq given to the next insertion */
};

void coil__heap_init(struct coil__heap *h);
void coil__heap_term(struct coil__heap *h);

/* Insert node with key. Errors: -ENOMEM (heap unchanged). */
int coil__heap_insert(struct coil__heap *h, struct coil__heap_node *node,
                      int64_t key);

/* Remove node, which must be in h. */
void coil__heap_remove(struct coil__heap *h, struct coil__heap_node *node);

/* Whether node is in a heap. */
static inline bool coil__heap_contains(const struct coil__heap_node *node)
{
    return node->index != COIL__HEAP_NONE;
}

/* The entry with the least (key, seq), or NULL if empty. */
static inline const struct coil__heap_entry *
coil__heap_min(const struct coil__heap *h)
{
    return h->len ? &h->v[0] : 0;
}

/* Remove and return the minimum node; h must not be empty. */
struct coil__heap_node *coil__heap_pop(struct coil__heap *h);

/* Give back memory when the heap is much larger than it needs to be. */
void coil__heap_shrink(struct coil__heap *h);

#endif /* COIL_HEAP_H */
