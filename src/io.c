/* SPDX-License-Identifier: MIT */
/*
 * io.c - raw fds (io_internal.h) and the readers and writers of coil/io.h.
 *
 * A reader or writer is a callback that runs through the ready queue, in
 * every iteration in which its fd is ready (asyncio's add_reader): the
 * raw watch's user for that direction queues the callback's node at most
 * once per poll. Every add or remove bumps the direction's generation,
 * and a node queued before the change is skipped when its turn comes.
 *
 * Since nodes may be queued, a raw watch is freed only when none is: one
 * unbound while a node waits in the queue is an orphan, freed by the last
 * of its nodes to run or be discarded.
 */
#include <fcntl.h>

#include "io_internal.h"
#include "loop_internal.h"

struct raw_watch;

/* A callback watcher of one direction. */
struct raw_cb {
    struct raw_watch *rw;
    coil_callback_fn fn; /* NULL when no callback watches */
    void *arg;
    uint32_t gen;        /* bumped on every add/remove */
    uint32_t queued_gen; /* gen when the node was queued */
    bool queued;         /* node is in the ready queue */
    struct coil__ready node;
};

struct raw_watch {
    struct coil__watch w;
    struct raw_cb cb[2]; /* [0] reader, [1] writer */
    bool orphan;         /* unbound with a node queued */
};

static void maybe_free(struct raw_watch *rw)
{
    if (!rw->cb[0].queued && !rw->cb[1].queued)
        coil__free(rw);
}

static void cb_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct raw_cb *cb = coil__container_of(node, struct raw_cb, node);
    struct raw_watch *rw = cb->rw;
    cb->queued = false;
    if (rw->orphan) {
        maybe_free(rw);
        return;
    }
    if (cb->fn && cb->gen == cb->queued_gen)
        cb->fn(cb->arg); /* may free rw (coil_sock_close): last use */
}

static void cb_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct raw_cb *cb = coil__container_of(node, struct raw_cb, node);
    cb->queued = false;
    if (cb->rw->orphan)
        maybe_free(cb->rw);
}

static const struct coil__ready_ops cb_ops = {cb_run, cb_discard};

/* The watch's user for a direction with a callback: 0 queues the
 * callback (once per poll), -EBADF drops it (the watch reported it). */
static void cb_ready(void *arg, int result)
{
    struct raw_cb *cb = arg;
    if (result < 0) {
        cb->fn = NULL;
        cb->gen++;
        return;
    }
    if (!cb->queued && cb->fn) {
        cb->queued = true;
        cb->queued_gen = cb->gen;
        coil__ready_push(cb->rw->w.loop, &cb->node);
    }
}

/* The loop unbound the watch (another kind took the fd, or the loop
 * closes). */
static void raw_unbound(struct coil__watch *w)
{
    struct raw_watch *rw = coil__container_of(w, struct raw_watch, w);
    rw->cb[0].fn = rw->cb[1].fn = NULL;
    rw->orphan = true;
    maybe_free(rw);
}

int coil__io_watch(struct coil_loop *loop, int fd, struct coil__watch **out)
{
    *out = NULL;
    if (fd < 0 || coil__loop_closed(loop))
        return -EBADF;
    struct coil__watch *w = coil__watch_find(loop, fd);
    if (w) {
        if (w->kind != COIL__WATCH_RAW)
            return -EBUSY;
        *out = w;
        return 0;
    }
    /* A number never seen: is it open, before the table grows for it? A
     * closed huge number must not cost a huge table. */
    if (fcntl(fd, F_GETFD) == -1)
        return -EBADF;
    struct raw_watch *rw = coil__calloc(1, sizeof(*rw));
    if (!rw)
        return -ENOMEM;
    int err = coil__watch_init(&rw->w, loop, fd, COIL__WATCH_RAW);
    if (err) {
        coil__free(rw);
        return err;
    }
    rw->w.unbound = raw_unbound;
    for (int d = 0; d < 2; d++) {
        rw->cb[d].rw = rw;
        rw->cb[d].node.ops = &cb_ops;
    }
    *out = &rw->w;
    return 0;
}

int coil__io_forget(struct coil_loop *loop, int fd)
{
    struct coil__watch *w = coil__watch_find(loop, fd);
    if (!w)
        return 0;
    if (w->kind != COIL__WATCH_RAW)
        return -EBUSY;
    struct raw_watch *rw = coil__container_of(w, struct raw_watch, w);
    for (int d = 0; d < 2; d++)
        if (rw->cb[d].fn) {
            rw->cb[d].fn = NULL;
            rw->cb[d].gen++;
        }
    coil__watch_close(w);
    rw->orphan = true;
    maybe_free(rw);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Readers and writers                                                  */
/* ------------------------------------------------------------------ */

static int add(coil_loop_t *loop, int fd, int d, coil_callback_fn fn,
               void *arg)
{
    if (!loop || !fn)
        return -EINVAL;
    struct coil__watch *w;
    int err = coil__io_watch(loop, fd, &w);
    if (err)
        return err;
    struct raw_watch *rw = coil__container_of(w, struct raw_watch, w);
    struct raw_cb *cb = &rw->cb[d];
    if (coil__watch_busy(w, coil__watch_dir(d)) && !cb->fn)
        return -EBUSY; /* a task waits in that direction */
    /* Registered again even when it replaces a reader: the number may
     * name a new file since (watch.h). */
    err = coil__watch_start(w, coil__watch_dir(d), cb_ready, cb,
                            COIL__WATCH_REPLACE);
    if (err)
        return err;
    cb->fn = fn;
    cb->arg = arg;
    cb->gen++;
    return 0;
}

static int del(coil_loop_t *loop, int fd, int d)
{
    if (!loop || fd < 0)
        return -EINVAL;
    struct coil__watch *w = coil__watch_find(loop, fd);
    if (!w || w->kind != COIL__WATCH_RAW)
        return 0;
    struct raw_cb *cb = &coil__container_of(w, struct raw_watch, w)->cb[d];
    if (!cb->fn)
        return 0;
    cb->fn = NULL;
    cb->arg = NULL;
    cb->gen++;
    coil__watch_stop(w, coil__watch_dir(d));
    return 1;
}

int coil_loop_add_reader(coil_loop_t *loop, int fd, coil_callback_fn fn,
                         void *arg)
{
    return add(loop, fd, 0, fn, arg);
}

int coil_loop_add_writer(coil_loop_t *loop, int fd, coil_callback_fn fn,
                         void *arg)
{
    return add(loop, fd, 1, fn, arg);
}

int coil_loop_remove_reader(coil_loop_t *loop, int fd)
{
    return del(loop, fd, 0);
}

int coil_loop_remove_writer(coil_loop_t *loop, int fd)
{
    return del(loop, fd, 1);
}
