/* SPDX-License-Identifier: MIT */
/*
 * ready.h - the ready queue (what the loop runs next), call_soon and the
 * callback handles that call_soon and the timers (timer.c) share.
 *
 * Rule for everything the loop dispatches (docs/architecture.md): a
 * callback may close or cancel anything, including the object being
 * dispatched. So the queue runs a count fixed when the batch begins,
 * every queued node is self-describing (its ops say how to run or discard
 * it), and an object that may still be queued is never freed before its
 * node runs.
 */
#ifndef COIL_READY_H
#define COIL_READY_H

#include "heap.h"
#include "internal.h"
#include "pool.h"

struct coil_loop;
struct coil__ready;

struct coil__ready_ops {
    /* Run the node; it has already left the queue. */
    void (*run)(struct coil_loop *loop, struct coil__ready *node);
    /* The loop closes with the node queued: release what it holds. */
    void (*discard)(struct coil_loop *loop, struct coil__ready *node);
};

/*
 * A node embedded in anything the loop can run: a call_soon record, a
 * handle, an fd watcher's callback, a future's waiter, a task's step.
 */
struct coil__ready {
    struct coil__ready *next;
    const struct coil__ready_ops *ops;
};

/* FIFO of nodes; pushing never allocates and never fails. */
struct coil__readyq {
    struct coil__ready *head;
    struct coil__ready **tailp; /* &last->next, or &head when empty */
    size_t len;
};

static inline void coil__readyq_init(struct coil__readyq *q)
{
    q->head = NULL;
    q->tailp = &q->head;
    q->len = 0;
}

static inline void coil__readyq_push(struct coil__readyq *q,
                                     struct coil__ready *node)
{
    node->next = NULL;
    *q->tailp = node;
    q->tailp = &node->next;
    q->len++;
}

static inline struct coil__ready *coil__readyq_pop(struct coil__readyq *q)
{
    struct coil__ready *node = q->head;
    q->head = node->next;
    if (!q->head)
        q->tailp = &q->head;
    q->len--;
    return node;
}

/* A plain call_soon record (no handle), pooled in the part's soon_pool. */
struct coil__soon {
    struct coil__ready node;
    coil_callback_fn fn;
    void *arg;
};

/* The ops of a plain call_soon record: the batch runs those without the
 * indirect call (coil__ready_run_batch, loop_internal.h). */
extern const struct coil__ready_ops coil__soon_ops;

/* The loop's part owned by ready.c. */
struct coil__loop_ready {
    struct coil__readyq q;        /* nodes to run, FIFO */
    size_t batch_left;            /* nodes left in this iteration's batch */
    struct coil__pool soon_pool;  /* call_soon records without a handle */
    struct coil__pool soonh_pool; /* call_soon handles */
    struct coil__pool timer_pool; /* timer handles (timer.c) */
};

/* ------------------------------------------------------------------ */
/* Handles                                                              */
/* ------------------------------------------------------------------ */

/* The flags of a handle, kept in the low bits of its loop pointer. */
enum {
    COIL__H_CANCELLED = 1, /* coil_handle_cancel was called */
    COIL__H_PENDING = 2,   /* a timer not yet run nor cancelled */
    COIL__H_LOOP_REF = 4,  /* the loop holds it: the call is pending */
    COIL__H_USER_REF = 8,  /* the caller holds it (asked for the handle) */
    COIL__H_FLAGS = 15,
};

/* heap.index of a call_soon handle: never a heap position. */
#define COIL__HEAP_SOON (COIL__HEAP_NONE - 1)

/*
 * A handle: a scheduled call the caller can cancel.
 *
 * Timers use it as is: 48 bytes, the size that decides how much memory a
 * million pending timers take. They run straight from the heap, never
 * through the ready queue. Pending timers with the same deadline form a
 * ring; only one of them, the leader, is in the heap (timer.c). Once a
 * timer ran or was cancelled its ring links are free, and hold its
 * deadline for coil_handle_when.
 *
 * Only two parties ever hold a handle: the loop while the call is
 * pending, and the caller if it asked for it. So instead of a count there
 * are two flag bits, and the flags live in the low bits of the loop
 * pointer (the loop is allocated 16-byte aligned): use the accessors.
 *
 * call_soon handles add a ready-queue node (struct coil__soon_handle) and
 * are told apart by heap.index == COIL__HEAP_SOON.
 */
struct coil_handle {
    coil_callback_fn fn;  /* what to call ... */
    void *arg;            /* ... and with what */
    uintptr_t loop_flags; /* the owner loop | COIL__H_* */
    union {
        struct {          /* timers while pending: same-deadline ring */
            struct coil_handle *next, *prev;
        } ring;
        int64_t when;     /* otherwise: the deadline, or time scheduled */
    } u;
    struct coil__heap_node heap; /* the ring's leader: place in the heap */
};

static inline struct coil_loop *coil__handle_loop(const struct coil_handle *h)
{
    return (struct coil_loop *)(h->loop_flags & ~(uintptr_t)COIL__H_FLAGS);
}

static inline bool coil__handle_has(const struct coil_handle *h, unsigned f)
{
    return (h->loop_flags & f) != 0;
}

static inline void coil__handle_set(struct coil_handle *h, unsigned f)
{
    h->loop_flags |= f;
}

static inline void coil__handle_clear(struct coil_handle *h, unsigned f)
{
    h->loop_flags &= ~(uintptr_t)f;
}

static inline bool coil__handle_is_timer(const struct coil_handle *h)
{
    return h->heap.index != COIL__HEAP_SOON;
}

/* A handle held by the loop, with a loop reference; NULL on -ENOMEM. */
struct coil_handle *coil__handle_new(struct coil_loop *loop, bool timer,
                                     coil_callback_fn fn, void *arg);
/* Drop a holder's claim (COIL__H_LOOP_REF or COIL__H_USER_REF); the
 * handle goes when neither holds it. */
void coil__handle_drop(struct coil_handle *h, unsigned ref);

/* ------------------------------------------------------------------ */
/* The queue                                                            */
/* ------------------------------------------------------------------ */

void coil__ready_init(struct coil_loop *loop);
void coil__ready_term(struct coil_loop *loop);
/* Making the nodes queued now this iteration's batch is
 * coil__ready_begin_batch, inline in loop_internal.h. */
/* Running what is left of the batch is coil__ready_run_batch, inline in
 * loop_internal.h (once per iteration: the call_soon chain's hot path). */
/* Discard every queued node (loop close). */
void coil__ready_discard_all(struct coil_loop *loop);

#endif /* COIL_READY_H */
