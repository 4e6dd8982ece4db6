/* SPDX-License-Identifier: MIT */
/*
 * future_internal.h - the future's internals, for the modules that build
 * on it (tasks embed a future; awaiting registers a waiter).
 *
 * Completion queues every waiter's node on the loop's ready queue in the
 * order the waiters were added. A waiter is intrusive, so completing a
 * future never allocates and never fails. If the loop is closed, the
 * waiters are discarded instead.
 */
#ifndef COIL_FUTURE_INTERNAL_H
#define COIL_FUTURE_INTERNAL_H

#include "list.h"
#include "pool.h"
#include "ready.h"

struct coil_loop;

/* The loop's part owned by future.c. */
struct coil__loop_futures {
    struct coil__pool pool; /* plain futures */
};

void coil__futures_init(struct coil_loop *loop);
void coil__futures_term(struct coil_loop *loop);

struct coil__future_ops {
    /* Free the object that embeds the future (refs reached 0). */
    void (*destroy)(coil_future_t *fut);
    /* coil_future_cancel on it (a task: request cancellation). */
    int (*cancel)(coil_future_t *fut);
    /* Only its owner completes it: set_result/set_error give -EPERM. */
    bool owned;
};

struct coil__fwaiter {
    struct coil__ready node; /* queued when the future completes */
    struct coil__list link;  /* in the future's waiter list */
};

struct coil_future {
    struct coil_loop *loop;              /* holds a loop reference */
    const struct coil__future_ops *ops;  /* NULL for a plain future */
    struct coil__list waiters;           /* struct coil__fwaiter, FIFO */
    void *value;                         /* the result, once done */
    int outcome;                         /* -EINPROGRESS while pending */
    unsigned refs;
    bool retrieved; /* its outcome was read (debug mode reports a failed
                       future dropped unread) */
};

/*
 * A future (or task) whose memory debug mode poisoned after its last
 * unref (coil__debug_quarantine) is being used by call: report and abort.
 * One compare, made in every build; without debug mode the memory is
 * reused at once and the check rarely sees it. The poison is
 * 0xdbdbdbdb (COIL__POISON32, debug_internal.h).
 */
_Noreturn void coil__future_used_after_free(const coil_future_t *fut,
                                            const char *call);
static inline void coil__future_check_live(const coil_future_t *fut,
                                           const char *call)
{
    if (__builtin_expect(fut->refs == 0xdbdbdbdbu, 0))
        coil__future_used_after_free(fut, call);
}

/* Read the outcome for someone who will act on it (it counts as read). */
static inline int coil__future_outcome_take(coil_future_t *fut)
{
    fut->retrieved = true;
    return fut->outcome;
}

/* Whether the future failed and nobody read it (debug mode's report). */
static inline bool coil__future_lost_error(const coil_future_t *fut)
{
    return !fut->retrieved && fut->outcome < 0 &&
           fut->outcome != -ECANCELED && fut->outcome != -EINPROGRESS;
}

/* Complete *fp with a NULL result if it is still pending, drop the
 * reference held in *fp and clear it (for objects that keep a "closed" or
 * "idle" future for others to await). */
static inline void coil__future_settle(coil_future_t **fp)
{
    coil_future_t *f = *fp;
    if (!f)
        return;
    *fp = NULL;
    if (!coil_future_done(f))
        (void)coil_future_set_result(f, NULL);
    coil_future_unref(f);
}

/* Initialise an embedded future; takes a loop reference. */
void coil__future_init(coil_future_t *fut, struct coil_loop *loop,
                       const struct coil__future_ops *ops);

/* Complete: outcome 0 (value), a negative error, or -ECANCELED. The
 * future must be pending. */
void coil__future_complete(coil_future_t *fut, void *value, int outcome);

/* Add a waiter; if the future is done it is queued at once. */
void coil__future_add_waiter(coil_future_t *fut, struct coil__fwaiter *w);

#endif /* COIL_FUTURE_INTERNAL_H */
