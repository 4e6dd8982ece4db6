/* SPDX-License-Identifier: MIT */
/*
 * list.h - an intrusive circular doubly-linked list. The node lives inside
 * the owning struct; coil__container_of gets back to the owner. An empty
 * list is a head that points at itself. Nothing here allocates or fails.
 */
#ifndef COIL_LIST_H
#define COIL_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct coil__list {
    struct coil__list *next;
    struct coil__list *prev;
};

/* Make head an empty list (or mark a node as "in no list"). */
static inline void coil__list_init(struct coil__list *head)
{
    head->next = head;
    head->prev = head;
}

/* Whether the list is empty (or the node is in no list, if inited so). */
static inline bool coil__list_empty(const struct coil__list *head)
{
    return head->next == head;
}

/* Append node at the tail. */
static inline void coil__list_push_back(struct coil__list *head,
                                        struct coil__list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

/* Unlink node and leave it as an empty list of its own. */
static inline void coil__list_remove(struct coil__list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    coil__list_init(node);
}

/* The first node, or NULL if the list is empty. */
static inline struct coil__list *coil__list_first(struct coil__list *head)
{
    return head->next == head ? NULL : head->next;
}

#endif /* COIL_LIST_H */
