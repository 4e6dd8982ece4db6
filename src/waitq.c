/* SPDX-License-Identifier: MIT */
/*
 * waitq.c - the line of waiting tasks every synchronisation object uses
 * (waitq.h), on the task layer's wait protocol (task_internal.h).
 *
 * The waiter and the wait live on the waiting task's stack; a grant
 * unlinks the waiter and wakes the task with coil__task_wake, so the
 * cancel op is only ever called on a waiter still in line (the task
 * layer does not call it for a task already woken).
 */
#include <assert.h>

#include "task_internal.h"
#include "waitq.h"

struct waitq_wait {
    struct coil__wait wait;
    struct coil__waitq *q;
    struct coil__waiter *w;
};

static void unlink_waiter(struct coil__waitq *q, struct coil__waiter *w)
{
    coil__list_remove(&w->link);
    q->len--;
}

static bool wq_cancel(struct coil__wait *wait, struct coil_task *t)
{
    struct waitq_wait *ww = (struct waitq_wait *)wait;
    /* Still in line: a grant would have woken the task, and the task
     * layer calls this only for a task not woken yet. */
    assert(!ww->w->granted);
    unlink_waiter(ww->q, ww->w);
    coil__task_wake(t, -ECANCELED);
    return true;
}

static bool wq_cancel_shielded(struct coil__wait *wait, struct coil_task *t)
{
    (void)wait;
    (void)t;
    return false; /* stays in line; the cancel waits for the next wait */
}

static void wq_abandon(struct coil__wait *wait)
{
    struct waitq_wait *ww = (struct waitq_wait *)wait;
    if (!ww->w->granted)
        unlink_waiter(ww->q, ww->w);
    if (ww->q->abandon)
        ww->q->abandon(ww->q->owner, ww->w);
}

static void wq_describe(struct coil__wait *w, struct coil_task *t, char *buf,
                        size_t n)
{
    (void)t;
    struct waitq_wait *ww = (struct waitq_wait *)w;
    snprintf(buf, n, "%s %p (%zu waiting)",
             ww->q->what ? ww->q->what : "waitq", ww->q->owner, ww->q->len);
}

static const struct coil__wait_ops interruptible_ops = {
    .cancel = wq_cancel,
    .abandon = wq_abandon,
    .describe = wq_describe,
};
static const struct coil__wait_ops shielded_ops = {
    .cancel = wq_cancel_shielded,
    .abandon = wq_abandon,
    .describe = wq_describe,
};

int coil__waitq_wait(struct coil__waitq *q, struct coil__waiter *w,
                     enum coil__waitq_mode mode)
{
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    w->task = t;
    w->result = 0;
    w->granted = false; /* also when a pending cancel returns at once */
    bool pending = false;
    if (mode == COIL__WAITQ_SHIELD)
        pending = coil__task_take_cancel(t);
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    coil__list_push_back(&q->head, &w->link);
    q->len++;
    struct waitq_wait ww = {
        {mode == COIL__WAITQ_SHIELD ? &shielded_ops : &interruptible_ops,
         mode != COIL__WAITQ_GIVE_BACK},
        q,
        w,
    };
    err = coil__task_suspend(t, &ww.wait);
    if (pending)
        coil__task_rearm_cancel(t);
    return err;
}

void coil__waitq_grant(struct coil__waitq *q, struct coil__waiter *w,
                       int result)
{
    unlink_waiter(q, w);
    w->granted = true;
    w->result = result;
    coil__task_wake(w->task, result);
}

bool coil__waitq_grant_first(struct coil__waitq *q, int result)
{
    struct coil__waiter *w = coil__waitq_first(q);
    if (!w)
        return false;
    coil__waitq_grant(q, w, result);
    return true;
}

size_t coil__waitq_grant_all(struct coil__waitq *q, int result)
{
    size_t n = 0;
    struct coil__waiter *w;
    while ((w = coil__waitq_first(q))) {
        coil__waitq_grant(q, w, result);
        n++;
    }
    return n;
}
