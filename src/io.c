/* SPDX-License-Identifier: MIT */
/*
 * io.c - fd watchers: add_reader / add_writer / remove_*.
 *
 * Each fd that was ever watched has a struct coil__watch (by_fd[fd]) that
 * lives until the loop is destroyed, so a node of it that is still queued
 * can never dangle. A watch has a reader and a writer direction; each
 * direction's node is queued at most once per poll.
 *
 * Stale events are stopped at two gates:
 *  - every registration with the poller carries a fresh tag, and an event
 *    whose tag is not the watch's current one is dropped (an fd number
 *    closed and reused while the kernel kept the old registration);
 *  - every add/remove bumps the direction's gen, and a queued node whose
 *    gen is out of date is skipped (the watcher changed between the poll
 *    and the callback's turn).
 */
#include <fcntl.h>

#include "loop.h"

enum { READER = 0, WRITER = 1 };

static const unsigned dir_mask[2] = {COIL__EV_READ, COIL__EV_WRITE};

static void dir_run(struct coil_loop *loop, struct coil__watch_dir *d)
{
    (void)loop;
    d->queued = false;
    if (d->fn && d->gen == d->queued_gen)
        d->fn(d->arg);
}

static void reader_run(struct coil_loop *loop, struct coil__ready *node)
{
    dir_run(loop, coil__container_of(node, struct coil__watch_dir, node));
}

static void writer_run(struct coil_loop *loop, struct coil__ready *node)
{
    dir_run(loop, coil__container_of(node, struct coil__watch_dir, node));
}

static void dir_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    coil__container_of(node, struct coil__watch_dir, node)->queued = false;
}

static const struct coil__ready_ops dir_ops[2] = {
    {reader_run, dir_discard},
    {writer_run, dir_discard},
};

void coil__io_init(struct coil_loop *loop)
{
    loop->io.by_fd = NULL;
    loop->io.len = 0;
    loop->io.next_tag = COIL__WAKE_TAG + 1;
}

void coil__io_term(struct coil_loop *loop)
{
    for (int fd = 0; fd < loop->io.len; fd++)
        coil__free(loop->io.by_fd[fd]);
    coil__free(loop->io.by_fd);
    loop->io.by_fd = NULL;
    loop->io.len = 0;
}

static uint32_t new_tag(struct coil_loop *loop)
{
    uint32_t tag = loop->io.next_tag++;
    if (tag == COIL__WAKE_TAG)
        tag = loop->io.next_tag++;
    return tag;
}

static void clear_dir(struct coil__watch_dir *d)
{
    d->fn = NULL;
    d->arg = NULL;
    d->gen++;
}

void coil__io_drop_all(struct coil_loop *loop)
{
    for (int fd = 0; fd < loop->io.len; fd++) {
        struct coil__watch *w = loop->io.by_fd[fd];
        if (!w)
            continue;
        if (w->mask)
            loop->pops->watch(loop->poller, fd, w->mask, 0, 0);
        w->mask = 0;
        clear_dir(&w->dir[READER]);
        clear_dir(&w->dir[WRITER]);
    }
}

static struct coil__watch *get_watch(struct coil_loop *loop, int fd)
{
    if (fd < loop->io.len && loop->io.by_fd[fd])
        return loop->io.by_fd[fd];
    if (fd >= loop->io.len) {
        int len = loop->io.len ? loop->io.len : 64;
        while (len <= fd) {
            if (len > INT32_MAX / 2)
                return NULL;
            len *= 2;
        }
        struct coil__watch **v =
            coil__realloc(loop->io.by_fd, (size_t)len * sizeof(*v));
        if (!v)
            return NULL;
        for (int i = loop->io.len; i < len; i++)
            v[i] = NULL;
        loop->io.by_fd = v;
        loop->io.len = len;
    }
    struct coil__watch *w = coil__calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->fd = fd;
    for (int d = 0; d < 2; d++)
        w->dir[d].node.ops = &dir_ops[d];
    loop->io.by_fd[fd] = w;
    return w;
}

/* Tell the poller the watch's interest; on failure nothing changes. */
static int update(struct coil_loop *loop, struct coil__watch *w,
                  unsigned mask, bool force)
{
    if (mask == w->mask && !force)
        return 0;
    uint32_t tag = mask ? new_tag(loop) : 0;
    int err = loop->pops->watch(loop->poller, w->fd, w->mask, mask, tag);
    if (err < 0)
        return err;
    w->mask = mask;
    w->tag = tag;
    return err;
}

/* The fd is gone: forget both directions without calling them. */
static void forget(struct coil_loop *loop, struct coil__watch *w)
{
    if (w->mask)
        loop->pops->watch(loop->poller, w->fd, w->mask, 0, 0);
    w->mask = 0;
    clear_dir(&w->dir[READER]);
    clear_dir(&w->dir[WRITER]);
}

static int add(coil_loop_t *loop, int fd, int which, coil_callback_fn fn,
               void *arg)
{
    if (!loop || !fn)
        return -EINVAL;
    if (loop->state == COIL__LOOP_CLOSED || fd < 0)
        return -EBADF;
    /* Before growing the table for a number never seen: is it open? A
     * closed huge number must not cost a huge table. */
    if (fd >= loop->io.len && fcntl(fd, F_GETFD) == -1)
        return -EBADF;
    struct coil__watch *w = get_watch(loop, fd);
    if (!w)
        return -ENOMEM;
    int err = update(loop, w, w->mask | dir_mask[which], true);
    if (err == 1) {
        /* The number names a new file: the other direction's watcher was
         * for the closed one. Drop it (narrowing cannot fail in a way
         * that matters: at worst the new file is watched both ways and
         * the unwatched direction's events are ignored). */
        if (w->dir[1 - which].fn)
            coil__loop_report(loop, -EBADF,
                              "fd %d was closed while watched; its old "
                              "watcher was removed",
                              fd);
        clear_dir(&w->dir[1 - which]);
        (void)update(loop, w, dir_mask[which], false);
        err = 0;
    }
    if (err == -EBADF) {
        /* The fd is not open: whatever was watched under this number
         * was closed behind our back. Drop it so the number is clean. */
        forget(loop, w);
        return err;
    }
    if (err)
        return err;
    struct coil__watch_dir *d = &w->dir[which];
    d->fn = fn;
    d->arg = arg;
    d->gen++;
    return 0;
}

static int del(coil_loop_t *loop, int fd, int which)
{
    if (!loop || fd < 0)
        return -EINVAL;
    if (fd >= loop->io.len || !loop->io.by_fd[fd])
        return 0;
    struct coil__watch *w = loop->io.by_fd[fd];
    struct coil__watch_dir *d = &w->dir[which];
    if (!d->fn)
        return 0;
    clear_dir(d);
    unsigned mask = w->mask & ~dir_mask[which];
    int err = update(loop, w, mask, false);
    if (err) {
        /* Narrowing the interest failed: the fd was closed behind our back
         * (-EBADF), or the kernel is out of memory. Either way stop
         * watching the fd altogether and say so if that drops the other
         * direction's watcher. */
        if (w->dir[1 - which].fn)
            coil__loop_report(loop, err == -EBADF ? -EBADF : -EIO,
                              err == -EBADF
                                  ? "fd %d was closed while watched; its %s "
                                    "was removed"
                                  : "fd %d: could not narrow its watch; its "
                                    "%s was removed too",
                              fd, which == READER ? "writer" : "reader");
        forget(loop, w);
    }
    return 1;
}

int coil_add_reader(coil_loop_t *loop, int fd, coil_callback_fn fn, void *arg)
{
    return add(loop, fd, READER, fn, arg);
}

int coil_add_writer(coil_loop_t *loop, int fd, coil_callback_fn fn, void *arg)
{
    return add(loop, fd, WRITER, fn, arg);
}

int coil_remove_reader(coil_loop_t *loop, int fd)
{
    return del(loop, fd, READER);
}

int coil_remove_writer(coil_loop_t *loop, int fd)
{
    return del(loop, fd, WRITER);
}

void coil__io_event(struct coil_loop *loop, const struct coil__event *ev)
{
    int fd = ev->fd;
    if (fd < 0 || fd >= loop->io.len)
        return;
    struct coil__watch *w = loop->io.by_fd[fd];
    if (!w || !w->mask || w->tag != ev->tag)
        return; /* stale: from a registration that no longer exists */
    if (ev->events & COIL__EV_INVALID) {
        forget(loop, w);
        coil__loop_report(loop, -EBADF,
                          "fd %d was closed while watched; its watchers "
                          "were removed",
                          fd);
        return;
    }
    for (int which = 0; which < 2; which++) {
        struct coil__watch_dir *d = &w->dir[which];
        if ((ev->events & dir_mask[which]) && d->fn && !d->queued) {
            d->queued = true;
            d->queued_gen = d->gen;
            coil__readyq_push(&loop->ready, &d->node);
        }
    }
}
