/* SPDX-License-Identifier: MIT */
/*
 * watch_wait.c - a task waits for an fd (watch_wait.h): the task is the
 * direction's one-shot user, woken straight from the poll.
 *
 * The user's argument is the task itself, not the wait on its stack, so
 * that waking thousands of readers touches no stack. Readiness carries no
 * data: a cancel racing with the wake is delivered by this wait, and the
 * caller's retried I/O has lost nothing.
 */
#include <assert.h>

#include "loop_internal.h"
#include "task_internal.h"
#include "watch_wait.h"

struct watch_wait {
    struct coil__wait wait;
    struct coil__watch *w;
    unsigned dir;
    struct coil_task *task;
};

static void woken(void *task, int result)
{
    coil__task_wake(task, result);
}

static bool ww_cancel(struct coil__wait *wait, struct coil_task *t)
{
    struct watch_wait *ww = (struct watch_wait *)wait;
    /* Called only while t is not queued: a wake drops the user first,
     * so t is still the direction's user. */
    coil__watch_stop(ww->w, ww->dir);
    coil__task_wake(t, -ECANCELED);
    return true;
}

static void ww_abandon(struct coil__wait *wait)
{
    struct watch_wait *ww = (struct watch_wait *)wait;
    /* The loop closes and the task goes: leave no pointer to it (unless
     * it was woken already and the user is another task by now). */
    if (coil__watch_user_is(ww->w, ww->dir, ww->task))
        coil__watch_stop(ww->w, ww->dir);
}

static void ww_describe(struct coil__wait *w, struct coil_task *t, char *buf,
                        size_t n)
{
    (void)t;
    struct watch_wait *ww = (struct watch_wait *)w;
    snprintf(buf, n, "fd %d %s", ww->w->fd,
             ww->dir == COIL__EV_WRITE ? "writable" : "readable");
}

static const struct coil__wait_ops ww_ops = {
    .cancel = ww_cancel,
    .abandon = ww_abandon,
    .describe = ww_describe,
};

static int wait_flags(struct coil__watch *w, unsigned dir, unsigned flags)
{
    struct coil_task *t;
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    assert(dir == COIL__EV_READ || dir == COIL__EV_WRITE);
    err = coil__watch_start(w, dir, woken, t, COIL__WATCH_ONCE | flags);
    if (err)
        return err;
    struct watch_wait ww = {{&ww_ops, false}, w, dir, t};
    return coil__task_suspend(t, &ww.wait);
}

int coil__watch_wait(struct coil__watch *w, unsigned dir)
{
    return wait_flags(w, dir, 0);
}

int coil__watch_recv_settle(struct coil__watch *w)
{
    bool cut = false;
    while (w->rx.state == COIL__RX_INFLIGHT) {
        if (!cut)
            coil__watch_recv_cut(w);
        cut = true;
        int err = wait_flags(w, COIL__EV_READ, COIL__WATCH_NOARM);
        if (err)
            return err;
    }
    return 0; /* (a watch closed meanwhile woke the wait with -EBADF) */
}

int coil__watch_wait_recv(struct coil__watch *w)
{
    if (w->rx.state != COIL__RX_INFLIGHT)
        return w->bound ? 0 : -EBADF; /* completed, or none to wait for */
    return wait_flags(w, COIL__EV_READ, COIL__WATCH_NOARM);
}
