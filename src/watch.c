/* SPDX-License-Identifier: MIT */
/*
 * watch.c - the fd watcher (watch.h): the loop's table of bound watches,
 * registration with the poller, and the dispatch of the poller's events.
 *
 * Stale events are stopped at two gates. Every registration carries a
 * fresh tag, which the poller returns with each event; an event whose tag
 * is not the bound watch's current one is dropped (an fd closed and its
 * number reused while the kernel kept the old registration alive through
 * a dup). And the table maps an fd number to the watch bound to it now:
 * an event for a number nobody watches any more finds nothing.
 *
 * A user is called synchronously and may close, free or rebind anything,
 * including the watch being dispatched; after each call the dispatcher
 * looks the number up again and stops if the watch is gone or changed.
 */
#include <fcntl.h>
#include <string.h>

#include "loop_internal.h"
#include "sys.h"
#include "watch.h"

static int which(unsigned dir)
{
    return dir == COIL__EV_WRITE;
}

/* ------------------------------------------------------------------ */
/* The loop's part                                                      */
/* ------------------------------------------------------------------ */

int coil__watch_part_init(struct coil_loop *loop, const char *backend)
{
    struct coil__loop_watch *p = &loop->watch;
    p->by_fd = NULL;
    p->len = 0;
    p->next_tag = 1;
    p->poller = NULL;
    return coil__poller_open(backend, &p->pops, &p->poller);
}

static void unbind(struct coil__watch *w)
{
    w->loop->watch.by_fd[w->fd] = NULL;
    w->bound = false;
}

void coil__watch_part_close(struct coil_loop *loop)
{
    struct coil__loop_watch *p = &loop->watch;
    for (int fd = 0; fd < p->len; fd++) {
        struct coil__watch *w = p->by_fd[fd];
        if (!w)
            continue;
        /* The poller goes next, and every registration with it (and
         * every receive and buffer). */
        w->armed = 0;
        w->rx.state = COIL__RX_IDLE;
        w->user[0].fn = w->user[1].fn = NULL;
        unbind(w);
        if (w->unbound)
            w->unbound(w);
    }
    coil__free(p->by_fd);
    p->by_fd = NULL;
    p->len = 0;
    if (p->poller)
        p->pops->close(p->poller);
    p->poller = NULL;
}

const char *coil__watch_backend(const struct coil_loop *loop)
{
    return loop->watch.pops->name;
}

struct coil__watch *coil__watch_find(struct coil_loop *loop, int fd)
{
    struct coil__loop_watch *p = &loop->watch;
    return fd >= 0 && fd < p->len ? p->by_fd[fd] : NULL;
}

/* ------------------------------------------------------------------ */
/* Registration                                                         */
/* ------------------------------------------------------------------ */

static uint32_t new_tag(struct coil__loop_watch *p)
{
    uint32_t tag = p->next_tag++;
    if (tag == 0)
        tag = p->next_tag++;
    return tag;
}

/* Tell the poller the interest mask (0: none). Returns 0, 1 (the number
 * names another file than the one registered: it is registered afresh),
 * or -errno with nothing changed. */
static int reg(struct coil__watch *w, unsigned mask)
{
    struct coil__loop_watch *p = &w->loop->watch;
    uint32_t tag = mask ? new_tag(p) : 0;
    unsigned owned =
        mask && w->kind == COIL__WATCH_OWNED ? COIL__EV_OWNED : 0;
    int r = p->pops->watch(p->poller, w->fd, w->armed, mask | owned, tag);
    if (r < 0)
        return r;
    w->armed = mask;
    w->tag = tag;
    return r;
}

/*
 * The fd is gone, or can no longer be watched: drop the interest and both
 * users, and tell them -EBADF. If the loop did this on its own (asked is
 * false) and a lasting user (a callback) was dropped, say so through the
 * exception handler: err -EBADF (the fd was closed, or its number reused)
 * or the poller's error. The users are called last: they may free w.
 */
static void forget(struct coil__watch *w, int err, bool asked)
{
    coil__watch_recv_drop(w);
    if (w->armed)
        (void)reg(w, 0); /* forgetting never fails */
    struct coil__watch_user u[2] = {w->user[0], w->user[1]};
    w->user[0].fn = w->user[1].fn = NULL;
    if (!asked && ((u[0].fn && !u[0].once) || (u[1].fn && !u[1].once))) {
        if (err == -EBADF)
            coil__loop_report(w->loop, -EBADF,
                              "fd %d was closed while watched; its watchers "
                              "were removed",
                              w->fd);
        else
            coil__loop_report(w->loop, -EIO,
                              "fd %d could no longer be watched (%s); its "
                              "watchers were removed",
                              w->fd, coil_strerror(err));
    }
    for (int d = 0; d < 2; d++)
        if (u[d].fn)
            u[d].fn(u[d].arg, -EBADF);
}

/* The number was found to name a new file: direction d's user belonged
 * to the closed one. */
static void drop_stale(struct coil__watch *w, int d)
{
    struct coil__watch_user u = w->user[d];
    if (!u.fn)
        return;
    w->user[d].fn = NULL;
    if (!u.once)
        coil__loop_report(w->loop, -EBADF,
                          "fd %d was closed while watched; its old watcher "
                          "was removed",
                          w->fd);
    u.fn(u.arg, -EBADF);
}

/* ------------------------------------------------------------------ */
/* The verbs                                                            */
/* ------------------------------------------------------------------ */

static int grow(struct coil__loop_watch *p, int fd)
{
    struct coil__watch **t =
        coil__fd_table_grow(p->by_fd, &p->len, fd, sizeof(*t));
    if (!t)
        return -ENOMEM;
    p->by_fd = t; /* the new entries are zero: NULL */
    return 0;
}

int coil__watch_init(struct coil__watch *w, struct coil_loop *loop, int fd,
                     enum coil__watch_kind kind)
{
    *w = (struct coil__watch){.loop = loop, .fd = fd, .kind = (uint8_t)kind};
    if (fd < 0 || coil__loop_closed(loop))
        return -EBADF;
    struct coil__watch *old = coil__watch_find(loop, fd);
    if (old) {
        if (old->kind != COIL__WATCH_RAW || old->user[0].fn ||
            old->user[1].fn)
            return -EBUSY;
        /* What is left of earlier waits on the number: its interest goes
         * (the file it was for may be this one, or long closed). */
        if (old->armed)
            (void)reg(old, 0);
        unbind(old);
        if (old->unbound)
            old->unbound(old);
    }
    int err = grow(&loop->watch, fd);
    if (err)
        return err;
    loop->watch.by_fd[fd] = w;
    w->bound = true;
    return 0;
}

int coil__watch_start(struct coil__watch *w, unsigned dir, coil__watch_fn fn,
                      void *arg, unsigned flags)
{
    int d = which(dir);
    if (!w->bound)
        return -EBADF;
    if (w->user[d].fn && !(flags & COIL__WATCH_REPLACE))
        return -EBUSY;
    struct coil__watch_user user = {fn, arg, (flags & COIL__WATCH_ONCE) != 0};
    /* A raw fd's number may name a new file since the last registration:
     * register again whatever the mask says (the poller notices). */
    unsigned bit = coil__watch_dir(d);
    if (!(flags & COIL__WATCH_NOARM) &&
        (w->kind == COIL__WATCH_RAW || !(w->armed & bit))) {
        int r = reg(w, w->armed | bit);
        if (r == -EBADF) {
            forget(w, -EBADF, false); /* not open: whatever was is gone */
            return -EBADF;
        }
        if (r < 0)
            return r;
        if (r == 1) {
            /* A new file under the number: the other direction's user
             * was the old one's. Narrowing to this direction cannot
             * matter much: at worst the other one stays armed and
             * narrows at its first event. */
            (void)reg(w, bit);
            w->user[d] = user;
            drop_stale(w, 1 - d);
            return 0;
        }
    }
    w->user[d] = user;
    return 0;
}

void coil__watch_stop(struct coil__watch *w, unsigned dir)
{
    int d = which(dir);
    w->user[d].fn = NULL;
    if (!w->bound || w->kind != COIL__WATCH_RAW || !(w->armed & coil__watch_dir(d)))
        return;
    int err = reg(w, w->armed & ~coil__watch_dir(d));
    if (err)
        forget(w, err == 1 ? -EBADF : err, false);
}

void coil__watch_shut(struct coil__watch *w, unsigned dir)
{
    if (dir == COIL__EV_READ)
        coil__watch_recv_drop(w);
    struct coil__watch_user u = w->user[which(dir)];
    coil__watch_stop(w, dir);
    if (u.fn)
        u.fn(u.arg, -EBADF);
}

void coil__watch_close(struct coil__watch *w)
{
    if (!w->bound) {
        w->user[0].fn = w->user[1].fn = NULL;
        w->rx.state = COIL__RX_IDLE;
        return;
    }
    unbind(w);
    forget(w, -EBADF, true);
}

/* ------------------------------------------------------------------ */
/* Receiving by completion                                              */
/* ------------------------------------------------------------------ */

bool coil__watch_can_recv(const struct coil__watch *w, size_t last)
{
    const struct coil__loop_watch *p = &w->loop->watch;
    return w->bound && w->kind == COIL__WATCH_OWNED && p->pops->recv &&
           !p->no_recv && last < p->pops->recv_size;
}

int coil__watch_recv(struct coil__watch *w, size_t len)
{
    struct coil__loop_watch *p = &w->loop->watch;
    if (!w->bound)
        return -EBADF;
    if (w->kind != COIL__WATCH_OWNED || !p->pops->recv || p->no_recv)
        return -ENOTSUP;
    if (w->rx.state != COIL__RX_IDLE)
        return -EBUSY;
    uint32_t tag = new_tag(p);
    int err = p->pops->recv(p->poller, w->fd, len, tag);
    if (err == -ENOTSUP)
        p->no_recv = true;
    if (err)
        return err;
    w->rx.state = COIL__RX_INFLIGHT;
    w->rx.tag = tag;
    return 0;
}

static void release(struct coil__watch *w)
{
    if (w->rx.res > 0) {
        struct coil__loop_watch *p = &w->loop->watch;
        p->pops->recv_release(p->poller, w->rx.buf);
    }
    w->rx.state = COIL__RX_IDLE;
}

ssize_t coil__watch_recv_take(struct coil__watch *w, void *p, size_t n)
{
    struct coil__watch_rx *rx = &w->rx;
    if (rx->state != COIL__RX_KEPT)
        return -EAGAIN;
    if (rx->res <= 0) {
        rx->state = COIL__RX_IDLE;
        return rx->res;
    }
    size_t k = n < rx->len ? n : rx->len;
    memcpy(p, rx->data, k);
    rx->data += k;
    rx->len -= (uint32_t)k;
    if (rx->len == 0)
        release(w);
    return (ssize_t)k;
}

void coil__watch_recv_drop(struct coil__watch *w)
{
    struct coil__loop_watch *p = &w->loop->watch;
    if (w->rx.state == COIL__RX_INFLIGHT)
        p->pops->recv_cancel(p->poller, w->fd, false);
    else if (w->rx.state == COIL__RX_KEPT)
        release(w);
    w->rx.state = COIL__RX_IDLE;
}

void coil__watch_recv_cut(struct coil__watch *w)
{
    struct coil__loop_watch *p = &w->loop->watch;
    if (w->rx.state == COIL__RX_INFLIGHT)
        p->pops->recv_cancel(p->poller, w->fd, true);
}

/* A receive completed: keep it and wake the reader. A completion for a
 * receive since dropped (its watch closed, and the number taken by
 * another) gives its buffer back. */
static void recv_done(struct coil_loop *loop, const struct coil__event *ev)
{
    struct coil__loop_watch *p = &loop->watch;
    struct coil__watch *w = coil__watch_find(loop, ev->fd);
    if (!w || w->rx.state != COIL__RX_INFLIGHT || w->rx.tag != ev->tag) {
        if (ev->res > 0)
            p->pops->recv_release(p->poller, ev->buf);
        return;
    }
    bool nothing = ev->res == -ECANCELED || ev->res == -EINTR ||
                   ev->res == -EAGAIN; /* the kernel's, not the peer's */
    w->rx = (struct coil__watch_rx){.data = ev->data,
                                    .len = ev->res > 0 ? (uint32_t)ev->res
                                                       : 0,
                                    .res = ev->res,
                                    .buf = ev->buf,
                                    .state = nothing ? COIL__RX_IDLE
                                                     : COIL__RX_KEPT};
    struct coil__watch_user u = w->user[0];
    if (!u.fn)
        return;
    if (u.once)
        w->user[0].fn = NULL;
    u.fn(u.arg, 0);
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                             */
/* ------------------------------------------------------------------ */

static void dispatch(struct coil_loop *loop, const struct coil__event *ev)
{
    if (ev->events & COIL__EV_RECV) {
        recv_done(loop, ev);
        return;
    }
    struct coil__watch *w = coil__watch_find(loop, ev->fd);
    if (!w || !w->armed || w->tag != ev->tag)
        return; /* stale: from a registration that no longer exists */
    if (ev->events & COIL__EV_INVALID) {
        forget(w, -EBADF, false);
        return;
    }
    int fd = ev->fd;
    uint32_t tag = w->tag;
    unsigned idle = 0;
    for (int d = 0; d < 2; d++) {
        if (!(ev->events & coil__watch_dir(d)))
            continue;
        struct coil__watch_user u = w->user[d];
        if (!u.fn) {
            idle |= coil__watch_dir(d);
            continue;
        }
        if (u.once)
            w->user[d].fn = NULL;
        u.fn(u.arg, 0);
        /* The user may have closed, freed or rebound the watch. */
        if (coil__watch_find(loop, fd) != w || w->tag != tag)
            return;
    }
    /* Armed by a user that is gone (lazy disarm, watch.h), and ready with
     * nobody to tell: narrow now, or a level-triggered fd would wake
     * every poll. If that fails (the fd was closed behind the loop's
     * back, the kernel is out of memory), stop watching it at all. */
    idle &= w->armed;
    for (int d = 0; d < 2; d++)
        if (w->user[d].fn)
            idle &= ~coil__watch_dir(d);
    if (idle) {
        int err = reg(w, w->armed & ~idle);
        if (err)
            forget(w, err == 1 ? -EBADF : err, false);
    }
}

#ifdef COIL_TESTING
/* A replayed event's fd: the one watched now with the registration tag
 * it was recorded with (a replayed connection's fd may have another
 * number), else the recorded one (the event is then stale). */
static int fd_of_tag(const struct coil__loop_watch *p, uint32_t tag, int fd)
{
    for (int i = 0; i < p->len; i++) {
        const struct coil__watch *w = p->by_fd[i];
        if (w && w->armed && w->tag == tag)
            return i;
    }
    return fd;
}
#endif

int coil__watch_poll(struct coil_loop *loop, int64_t timeout_ns)
{
    struct coil__loop_watch *p = &loop->watch;
    int n;
#ifdef COIL_TESTING
    bool replayed = false;
    if (coil__rr_mode == 2) {
        n = coil__rr_replay_poll(p->events, COIL__POLLER_BATCH, &replayed);
        for (int i = 0; replayed && i < n; i++)
            p->events[i].fd = fd_of_tag(p, p->events[i].tag,
                                        p->events[i].fd);
    }
    if (!replayed) {
        n = p->pops->wait(p->poller, timeout_ns, p->events,
                          COIL__POLLER_BATCH);
        if (n >= 0)
            coil__shuffle(p->events, (size_t)n, sizeof(*p->events));
        if (coil__rr_mode == 1)
            coil__rr_record_poll(p->events, n, -n);
    }
#else
    n = p->pops->wait(p->poller, timeout_ns, p->events, COIL__POLLER_BATCH);
#endif
    if (n < 0)
        return n;
#ifdef COIL_TESTING
    if (n > 0 && coil__sched_seed())
        coil__run_timers_first(loop);
#endif
    for (int i = 0; i < n; i++) {
        COIL__TRACE(COIL__TRACE_IO,
                    (uint64_t)p->events[i].tag << 32 | p->events[i].events);
        dispatch(loop, &p->events[i]);
    }
    return n;
}

size_t coil__watch_active(const struct coil_loop *loop, const int *except,
                          size_t nexcept)
{
    const struct coil__loop_watch *p = &loop->watch;
    size_t n = 0;
    for (int fd = 0; fd < p->len; fd++) {
        const struct coil__watch *w = p->by_fd[fd];
        if (!w || (!w->user[0].fn && !w->user[1].fn))
            continue;
        bool skip = false;
        for (size_t i = 0; i < nexcept; i++)
            skip |= except[i] == fd;
        n += !skip;
    }
    return n;
}
