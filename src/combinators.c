/* SPDX-License-Identifier: MIT */
/*
 * combinators.c - gather, wait and as_completed, on one mechanism: a watch
 * set.
 *
 * A watch set holds a reference to each future and registers one waiter
 * entry with it. When a future completes its entry runs (through the
 * ready queue, like any done callback): it counts the completion, notes
 * the order and the first error, and wakes the waiting task if the
 * caller's condition is now met. The task suspends in the set as in any
 * other wait, so cancellation and loop close follow the wait protocol
 * (task_internal.h). A cancel that arrives when what the caller waits
 * for is already in (the futures are done, their entries not run yet) is
 * refused: the result wins, and the cancel is delivered by the next wait
 * (asyncio's gather refuses such a cancel too).
 *
 * Lifetime: an entry may still be queued when the caller is done with the
 * set (wait() returns at the first completion while others completed in
 * the same iteration). The set is then orphaned and freed by the last
 * queued entry when it runs or is discarded.
 */
#include "loop_internal.h"
#include "task_internal.h"

struct entry {
    struct coil__fwaiter fw; /* linked in the future, then queued */
    struct watchset *ws;
    size_t index;
    bool ran;
};

enum cond {
    COND_ALL,         /* every future done */
    COND_ANY,         /* one done */
    COND_FIRST_ERROR, /* one failed or cancelled, or all done */
    COND_FIRST_EXC,   /* one failed (not cancelled), or all done */
    COND_ORDERED,     /* a completion not yet handed out (as_completed) */
};

struct watchset {
    struct coil__wait wait;
    struct coil_task *task;
    coil_future_t **futs;  /* referenced */
    struct entry *e;
    size_t *order;         /* indices in completion order */
    size_t n, ndone, nerror, nexc, delivered;
    int first_error;
    enum cond cond;
    coil_handle_t *timer;
    bool timed_out;
    bool suspended, woken, interruptible;
    bool orphan;           /* the caller let go; last entry frees */
};

static bool met(const struct watchset *ws)
{
    switch (ws->cond) {
    case COND_ALL:
        return ws->ndone == ws->n;
    case COND_ANY:
        return ws->ndone > 0;
    case COND_FIRST_ERROR:
        return ws->nerror > 0 || ws->ndone == ws->n;
    case COND_FIRST_EXC:
        return ws->nexc > 0 || ws->ndone == ws->n;
    case COND_ORDERED:
        return ws->delivered < ws->ndone;
    }
    return true;
}

static size_t queued_entries(const struct watchset *ws)
{
    size_t q = 0;
    for (size_t i = 0; i < ws->n; i++)
        if (!ws->e[i].ran && coil__list_empty(&ws->e[i].fw.link))
            q++;
    return q;
}

static void ws_release(struct watchset *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        coil_future_unref(ws->futs[i]);
    coil__free(ws);
}

static void try_free_orphan(struct watchset *ws)
{
    if (queued_entries(ws) == 0)
        ws_release(ws);
}

static void wake(struct watchset *ws, int result)
{
    if (ws->suspended && !ws->woken) {
        ws->woken = true;
        coil__task_wake(ws->task, result);
    }
}

static void entry_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct entry *e = coil__container_of(node, struct entry, fw.node);
    struct watchset *ws = e->ws;
    e->ran = true;
    if (ws->orphan) {
        try_free_orphan(ws);
        return;
    }
    int outcome = coil__future_outcome_take(ws->futs[e->index]);
    ws->order[ws->ndone++] = e->index;
    if (outcome < 0) {
        ws->nerror++;
        if (outcome != -ECANCELED)
            ws->nexc++;
        if (!ws->first_error)
            ws->first_error = outcome;
    }
    if (met(ws))
        wake(ws, 0);
}

static void entry_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct entry *e = coil__container_of(node, struct entry, fw.node);
    e->ran = true;
    if (e->ws->orphan)
        try_free_orphan(e->ws);
}

static const struct coil__ready_ops entry_ops = {entry_run, entry_discard};

static void on_timeout(void *arg)
{
    struct watchset *ws = arg;
    coil_handle_unref(ws->timer);
    ws->timer = NULL;
    ws->timed_out = true;
    wake(ws, -ETIMEDOUT);
}

/* Whether the condition holds for the futures as they are now, whether
 * or not their entries have run. */
static bool arrived(const struct watchset *ws)
{
    size_t done = 0, nerror = 0, nexc = 0;
    for (size_t i = 0; i < ws->n; i++) {
        int outcome = coil__future_outcome_take(ws->futs[i]);
        if (outcome == -EINPROGRESS)
            continue;
        done++;
        if (outcome < 0) {
            nerror++;
            nexc += outcome != -ECANCELED;
        }
    }
    switch (ws->cond) {
    case COND_ALL:
        return done == ws->n;
    case COND_ANY:
        return done > 0;
    case COND_FIRST_ERROR:
        return nerror > 0 || done == ws->n;
    case COND_FIRST_EXC:
        return nexc > 0 || done == ws->n;
    case COND_ORDERED:
        return ws->delivered < done;
    }
    return true;
}

static bool ws_cancel(struct coil__wait *w, struct coil_task *t)
{
    (void)t;
    struct watchset *ws = (struct watchset *)w;
    if (!ws->interruptible || ws->woken || arrived(ws))
        return false;
    wake(ws, -ECANCELED);
    return true;
}

static void unlink_all(struct watchset *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        if (!coil__list_empty(&ws->e[i].fw.link)) {
            /* Not queued: it will never run, so it counts as done. */
            coil__list_remove(&ws->e[i].fw.link);
            ws->e[i].ran = true;
        }
}

static void disarm(struct watchset *ws)
{
    if (ws->timer) {
        coil_handle_cancel(ws->timer);
        coil_handle_unref(ws->timer);
        ws->timer = NULL;
    }
}

/* Let go of the set: what is still queued frees it later. */
static void ws_free(struct watchset *ws)
{
    if (!ws)
        return;
    disarm(ws);
    unlink_all(ws);
    ws->orphan = true;
    try_free_orphan(ws);
}

static void ws_abandon(struct coil__wait *w)
{
    ws_free((struct watchset *)w);
}

static void ws_describe(struct coil__wait *w, struct coil_task *t, char *buf,
                        size_t n)
{
    (void)t;
    struct watchset *ws = (struct watchset *)w;
    snprintf(buf, n, "%zu futures (%zu done)", ws->n, ws->ndone);
}

static void ws_each(struct coil__wait *w,
                    void (*fn)(coil_future_t *f, void *ctx), void *ctx)
{
    struct watchset *ws = (struct watchset *)w;
    for (size_t i = 0; i < ws->n; i++)
        if (!coil_future_done(ws->futs[i]))
            fn(ws->futs[i], ctx);
}

static bool ws_needs_all(struct coil__wait *w)
{
    struct watchset *ws = (struct watchset *)w;
    return !ws->timer && (ws->cond == COND_ALL || ws->n - ws->ndone <= 1);
}

static const struct coil__wait_ops ws_ops = {
    .cancel = ws_cancel,
    .abandon = ws_abandon,
    .describe = ws_describe,
    .each_future = ws_each,
    .needs_all = ws_needs_all,
};

static int check(coil_future_t *const *futs, size_t n, struct coil_task **t)
{
    *t = coil__task_current();
    if (!*t)
        return -EPERM;
    if (n && !futs)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!futs[i] || futs[i]->loop != coil__task_loop(*t))
            return -EINVAL;
    return 0;
}

static int ws_new(struct coil_task *t, coil_future_t *const *futs, size_t n,
                  int64_t timeout_ns, struct watchset **out)
{
    size_t size = sizeof(struct watchset);
    size_t total;
    if (__builtin_mul_overflow(n, sizeof(struct entry) +
                                      sizeof(coil_future_t *) + sizeof(size_t),
                               &total) ||
        __builtin_add_overflow(total, size, &total))
        return -ENOMEM;
    struct watchset *ws = coil__calloc(1, total);
    if (!ws)
        return -ENOMEM;
    ws->wait.ops = &ws_ops;
    ws->wait.keep_result = true;
    ws->task = t;
    ws->e = (struct entry *)(ws + 1);
    ws->futs = (coil_future_t **)(ws->e + n);
    ws->order = (size_t *)(ws->futs + n);
    ws->n = n;
    if (timeout_ns != COIL_NO_TIMEOUT) {
        /* No time left: time out in the next iteration, after the entries
         * of futures done already (queued below) have counted. */
        struct coil_loop *loop = coil__task_loop(t);
        int err = timeout_ns <= 0
                      ? coil_loop_call_soon(loop, on_timeout, ws, &ws->timer)
                      : coil_loop_call_later(loop, timeout_ns, on_timeout, ws,
                                             &ws->timer);
        if (err) {
            coil__free(ws);
            return err;
        }
    }
    for (size_t i = 0; i < n; i++) {
        ws->futs[i] = coil_future_ref(futs[i]);
        ws->e[i].ws = ws;
        ws->e[i].index = i;
        ws->e[i].fw.node.ops = &entry_ops;
        coil__future_add_waiter(futs[i], &ws->e[i].fw);
    }
    *out = ws;
    return 0;
}

/* Suspend until the condition holds (or a timeout / cancel). */
static int ws_wait(struct watchset *ws, enum cond cond, bool interruptible)
{
    ws->cond = cond;
    if (met(ws))
        return 0;
    if (ws->timed_out)
        return -ETIMEDOUT;
    ws->woken = false;
    ws->interruptible = interruptible;
    ws->suspended = true;
    int err = coil__task_suspend(ws->task, &ws->wait);
    ws->suspended = false;
    return err;
}

static void cancel_pending(struct watchset *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        if (!coil_future_done(ws->futs[i]))
            coil_future_cancel(ws->futs[i]);
}

int coil_gather(coil_future_t *const *futs, size_t n, void **results,
                unsigned flags)
{
    struct coil_task *t;
    int err = check(futs, n, &t);
    if (err)
        return err;
    if (flags & ~COIL_GATHER_RETURN_ERRORS)
        return -EINVAL;
    /* A cancellation pending at the call goes into the futures, as if it
     * had come while gather waited; unless every future is done already:
     * then the results win and the cancel waits for the next wait. */
    bool all_done = true;
    for (size_t i = 0; i < n && all_done; i++)
        all_done = coil_future_done(futs[i]);
    struct watchset *ws;
    if ((err = ws_new(t, futs, n, COIL_NO_TIMEOUT, &ws)))
        return err;
    bool cancelled = !all_done && coil__task_take_cancel(t);
    bool per_slot = flags & COIL_GATHER_RETURN_ERRORS;
    err = cancelled ? -ECANCELED
                    : ws_wait(ws, per_slot ? COND_ALL : COND_FIRST_ERROR,
                              true);
    if (err || ws->ndone < n) {
        /* A failure or our own cancellation: nothing is left running.
         * This wait cannot be interrupted; a further cancel of ours
         * stays pending for the next wait. */
        cancel_pending(ws);
        ws_wait(ws, COND_ALL, false);
    }
    if (!err)
        err = per_slot ? 0 : ws->first_error;
    if (results)
        for (size_t i = 0; i < n; i++)
            results[i] = futs[i]->outcome == 0 ? futs[i]->value : NULL;
    ws_free(ws);
    return err;
}

int coil_wait(coil_future_t *const *futs, size_t n, enum coil_wait_mode mode,
              int64_t timeout_ns)
{
    struct coil_task *t;
    int err = check(futs, n, &t);
    if (err)
        return err;
    static const enum cond conds[] = {COND_ALL, COND_ANY, COND_FIRST_EXC};
    if ((unsigned)mode > COIL_FIRST_EXCEPTION)
        return -EINVAL;
    if ((err = coil__task_begin_wait(&t)))
        return err;
    if (n == 0)
        return 0; /* nothing to wait for (asyncio refuses an empty set) */
    struct watchset *ws;
    if ((err = ws_new(t, futs, n, timeout_ns, &ws)))
        return err;
    err = ws_wait(ws, conds[mode], true);
    ws_free(ws);
    if (err == -ECANCELED)
        return err;
    int done = 0;
    for (size_t i = 0; i < n; i++)
        done += coil_future_done(futs[i]);
    return done;
}

struct coil_as_completed {
    struct watchset *ws;
    coil_future_t *const *futs; /* the caller's array */
};

int coil_as_completed_begin(coil_future_t *const *futs, size_t n,
                            int64_t timeout_ns, coil_as_completed_t **it_out)
{
    if (!it_out)
        return -EINVAL;
    *it_out = NULL;
    struct coil_task *t;
    int err = check(futs, n, &t);
    if (err)
        return err;
    struct coil_as_completed *it = coil__malloc(sizeof(*it));
    if (!it)
        return -ENOMEM;
    if ((err = ws_new(t, futs, n, timeout_ns, &it->ws))) {
        coil__free(it);
        return err;
    }
    it->futs = futs;
    *it_out = it;
    return 0;
}

int coil_as_completed_next(coil_as_completed_t *it, coil_future_t **fut_out)
{
    if (!it || !fut_out)
        return -EINVAL;
    *fut_out = NULL;
    struct watchset *ws = it->ws;
    if (ws->task != coil__task_current())
        return -EPERM;
    if (ws->delivered == ws->n)
        return 0;
    struct coil_task *t;
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    err = ws_wait(ws, COND_ORDERED, true);
    if (err)
        return err;
    *fut_out = it->futs[ws->order[ws->delivered++]];
    return 1;
}

void coil_as_completed_end(coil_as_completed_t *it)
{
    if (!it)
        return;
    ws_free(it->ws);
    coil__free(it);
}
