/* SPDX-License-Identifier: MIT */
/*
 * waitq.h - a first-come, first-served line of tasks waiting on a
 * synchronisation object (locks, semaphores, events, conditions,
 * barriers, queues). Internal to the sync layer.
 *
 * A waiter lives on its task's stack for the length of one wait, so
 * waiting never allocates. Whoever has something for the first waiter
 * (the lock, a permit, an item's place) grants it: the waiter leaves the
 * line and its task is woken with the grant's result. Grants go strictly
 * in arrival order; a waiter leaves the line exactly once (granted,
 * cancelled, or abandoned with the loop), so nobody is skipped or woken
 * twice.
 *
 * A cancel that comes while the waiter is still in line takes it out and
 * the wait returns -ECANCELED with nothing granted. A cancel that comes
 * after the grant, before the task resumed, depends on the wait's mode:
 *
 *  - COIL__WAITQ_GIVE_BACK: the wait returns -ECANCELED with w->granted
 *    set, and the caller hands what it was granted to the next waiter
 *    (the lock passes on, the permit is released, the item stays at the
 *    head of the queue). The cancel is delivered at once, as asyncio's
 *    are, and nothing is lost.
 *  - COIL__WAITQ_KEEP: what cannot be handed back (a barrier's passage,
 *    an error) is returned; the cancel goes to the task's next wait, the
 *    rule of every data-carrying wait in coil (task.h).
 *  - COIL__WAITQ_SHIELD: the wait cannot be interrupted at all (a
 *    condition re-taking its lock); a cancel pending at the start, or
 *    arriving during it, is delivered by the next wait.
 */
#ifndef COIL_WAITQ_H
#define COIL_WAITQ_H

#include <stdbool.h>
#include <stddef.h>

#include "internal.h"
#include "list.h"

struct coil_task;

struct coil__waiter {
    struct coil__list link; /* in the line while waiting */
    struct coil_task *task;
    int result;             /* the grant's result, once granted */
    bool granted;
    unsigned tag;           /* the owner's, untouched here */
};

/* Called when the loop closes with a task waiting in a line (the task
 * will never resume; w is out of the line): the line's owner takes back
 * what w was granted, if anything, and drops what the wait held. */
struct coil__waiter;
typedef void (*coil__waitq_abandon_fn)(void *owner, struct coil__waiter *w);

struct coil__waitq {
    struct coil__list head; /* struct coil__waiter, first come first */
    size_t len;
    coil__waitq_abandon_fn abandon;
    void *owner;
    const char *what; /* for the task dump ("lock", "queue get"...) */
};

enum coil__waitq_mode {
    COIL__WAITQ_GIVE_BACK,
    COIL__WAITQ_KEEP,
    COIL__WAITQ_SHIELD,
};

static inline void coil__waitq_init(struct coil__waitq *q,
                                    coil__waitq_abandon_fn abandon,
                                    void *owner)
{
    coil__list_init(&q->head);
    q->len = 0;
    q->abandon = abandon;
    q->owner = owner;
    q->what = NULL;
}

static inline bool coil__waitq_empty(const struct coil__waitq *q)
{
    return q->len == 0;
}

/* The first waiter in line, or NULL. */
static inline struct coil__waiter *coil__waitq_first(struct coil__waitq *q)
{
    struct coil__list *l = coil__list_first(&q->head);
    return l ? coil__container_of(l, struct coil__waiter, link) : NULL;
}

/*
 * Suspend the running task at the back of q until it is granted or
 * cancelled (see the modes above). Returns the grant's result, or
 * -ECANCELED, or -EPERM (not in a task: w is not touched). A cancel
 * pending at the start gives -ECANCELED at once, except in SHIELD mode.
 * On every other return w->granted says whether a grant came, w->result
 * what it was.
 * Every waiter is in no line when this returns.
 */
int coil__waitq_wait(struct coil__waitq *q, struct coil__waiter *w,
                     enum coil__waitq_mode mode);

/* Take w (the first waiter, or any) out of line and wake its task with
 * result. */
void coil__waitq_grant(struct coil__waitq *q, struct coil__waiter *w,
                       int result);

/* Grant the first waiter; false if there was none. */
bool coil__waitq_grant_first(struct coil__waitq *q, int result);

/* Grant every waiter, in order; returns how many there were. */
size_t coil__waitq_grant_all(struct coil__waitq *q, int result);

#endif /* COIL_WAITQ_H */
