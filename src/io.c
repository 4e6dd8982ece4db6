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
 *
 * A direction is used either by a callback (add_reader/add_writer) or by
 * one task suspended in coil__io_wait, never both (-EBUSY). A waiting task
 * is woken straight from the event (its own node is queued), without a
 * hop through the direction's node.
 *
 * Task waits leave their interest armed ("lazy disarm"). A task that
 * reads a socket in a loop does recv -> EAGAIN -> wait -> recv ...; with
 * the interest removed after every wake that is two epoll_ctl calls per
 * wait (arm, disarm), with it left armed it is none: the next wait finds
 * its bit still in w->mask and only records the task. The interest is
 * narrowed only when an event arrives for a direction that nobody uses
 * (a level-triggered fd would otherwise wake every poll), or when a
 * callback watcher is removed (as before). So in steady state a wait
 * costs no syscall, a wait after such a narrowing costs one (the
 * re-arm), and a direction that is ready while no task waits costs one
 * more. A writer, whose socket is nearly always writable, typically pays
 * both; a reader waiting for requests pays none.
 *
 * The price: the loop cannot see a raw close(). If an fd whose interest is
 * armed is closed and its number reused by a new file, epoll and kqueue
 * have dropped the old registration silently, and a wait that trusts the
 * armed bit would sleep forever. So an fd used with task waits must be
 * closed through coil_sock_close (coil__io_forget_fd: wakes its waiters
 * with -EBADF, forgets the interest), and the fds coil itself creates
 * (coil_socket, coil_sock_accept) forget whatever was recorded for their
 * number before they are returned; an fd of the user's adopted by a
 * stream (coil_stream_from_fd) has its next wait re-register
 * (coil__io_adopt_fd). Those calls find the loop only when
 * one runs in the calling thread; outside a running loop (a program
 * setting up or tearing down between runs) they bump a process-wide
 * epoch instead, and a wait that finds its interest armed under an older
 * epoch re-registers it (one epoll_ctl, which also detects a reused
 * number) before trusting it. The poll backend notices a closed or reused
 * fd on its own (COIL__EV_INVALID); waiting tasks then get -EBADF.
 */
#include <assert.h>
#include <fcntl.h>
#include <stdatomic.h>

#include "task.h"

/* Bumped when an fd was closed or created while no loop ran in the
 * calling thread: armed interests from before must be checked again. */
static atomic_uint io_epoch;

static unsigned epoch_now(void)
{
    return atomic_load_explicit(&io_epoch, memory_order_relaxed);
}

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

int coil__fd_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

void coil__io_init(struct coil_loop *loop)
{
    loop->io.by_fd = NULL;
    loop->io.len = 0;
    loop->io.next_tag = COIL__WAKE_TAG + 1;
    coil__list_init(&loop->io.jobs);
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

/* Wake the direction's waiting task, if any, with result. */
static void wake_dir(struct coil__watch_dir *d, int result)
{
    struct coil_task *t = d->task;
    if (t) {
        d->task = NULL;
        coil__task_wake(t, result);
    }
}

void coil__io_drop_all(struct coil_loop *loop)
{
    /* Jobs first: they may still hold what they would deliver. */
    struct coil__list *l;
    while ((l = coil__list_first(&loop->io.jobs))) {
        struct coil__io_job *job =
            coil__container_of(l, struct coil__io_job, link);
        coil__list_remove(l);
        job->on_close(job);
    }
    for (int fd = 0; fd < loop->io.len; fd++) {
        struct coil__watch *w = loop->io.by_fd[fd];
        if (!w)
            continue;
        if (w->mask)
            loop->pops->watch(loop->poller, fd, w->mask, 0, 0);
        w->mask = 0;
        clear_dir(&w->dir[READER]);
        clear_dir(&w->dir[WRITER]);
        /* Tasks were abandoned already (their waits cleared these). */
        w->dir[READER].task = NULL;
        w->dir[WRITER].task = NULL;
    }
}

void coil__io_job_add(struct coil_loop *loop, struct coil__io_job *job)
{
    coil__list_push_back(&loop->io.jobs, &job->link);
}

void coil__io_job_remove(struct coil__io_job *job)
{
    coil__list_remove(&job->link);
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
    unsigned epoch = epoch_now();
    int err = loop->pops->watch(loop->poller, w->fd, w->mask, mask, tag);
    if (err < 0)
        return err;
    w->mask = mask;
    w->tag = tag;
    w->epoch = epoch;
    return err;
}

/* The fd is gone: forget both directions without calling their
 * callbacks; waiting tasks wake with -EBADF. */
static void forget(struct coil_loop *loop, struct coil__watch *w)
{
    if (w->mask)
        loop->pops->watch(loop->poller, w->fd, w->mask, 0, 0);
    w->mask = 0;
    for (int which = 0; which < 2; which++) {
        clear_dir(&w->dir[which]);
        wake_dir(&w->dir[which], -EBADF);
    }
}

/* The number names a new file: the user of direction which was watching
 * the closed one. Drop it (a callback is reported, a task gets -EBADF). */
static void drop_stale(struct coil_loop *loop, struct coil__watch *w,
                       int which)
{
    struct coil__watch_dir *d = &w->dir[which];
    if (d->fn)
        coil__loop_report(loop, -EBADF,
                          "fd %d was closed while watched; its old "
                          "watcher was removed",
                          w->fd);
    clear_dir(d);
    wake_dir(d, -EBADF);
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
    if (w->dir[which].task)
        return -EBUSY; /* a task waits in that direction */
    int err = update(loop, w, w->mask | dir_mask[which], true);
    if (err == 1) {
        /* The number names a new file: the other direction's user was
         * for the closed one. Drop it (narrowing cannot fail in a way
         * that matters: at worst the new file is watched both ways and
         * the unwatched direction's events narrow it later). */
        drop_stale(loop, w, 1 - which);
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
         * direction's watcher (a waiting task gets -EBADF). */
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
        /* Reported when a callback watched (a waiting task hears of it
         * through its -EBADF; an interest left armed with no user is
         * nobody's business). */
        bool watched = w->dir[READER].fn || w->dir[WRITER].fn;
        forget(loop, w);
        if (watched)
            coil__loop_report(loop, -EBADF,
                              "fd %d was closed while watched; its "
                              "watchers were removed",
                              fd);
        return;
    }
    unsigned idle = 0;
    for (int which = 0; which < 2; which++) {
        struct coil__watch_dir *d = &w->dir[which];
        if (!(ev->events & dir_mask[which]))
            continue;
        if (d->task) {
            wake_dir(d, 0);
        } else if (d->fn) {
            if (!d->queued) {
                d->queued = true;
                d->queued_gen = d->gen;
                coil__readyq_push(&loop->ready, &d->node);
            }
        } else {
            idle |= w->mask & dir_mask[which];
        }
    }
    if (idle) {
        /* Armed by a task wait that is over, and ready with nobody to
         * tell: narrow now (lazy disarm, see the top of this file), or a
         * level-triggered fd would wake every poll. If that fails (the fd
         * was closed behind our back, the kernel is out of memory), stop
         * watching the fd altogether, as del() does. */
        int err = update(loop, w, w->mask & ~idle, false);
        if (err) {
            bool watched = w->dir[READER].fn || w->dir[WRITER].fn;
            forget(loop, w);
            if (watched)
                coil__loop_report(loop, err == 1 ? -EBADF : err,
                                  "fd %d: could not narrow its watch; its "
                                  "watchers were removed",
                                  fd);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Task waits                                                           */
/* ------------------------------------------------------------------ */

struct io_wait {
    struct coil__wait wait;
    struct coil__watch_dir *d; /* lives until the loop is destroyed */
    struct coil_task *task;
};

static bool io_wait_cancel(struct coil__wait *w, struct coil_task *t)
{
    struct coil__watch_dir *d = ((struct io_wait *)w)->d;
    /* Called only while t is not queued: every wake clears d->task
     * first, so t is still the direction's waiter. The interest stays
     * armed for the next wait (lazy disarm); nothing refers to t. */
    assert(d->task == t);
    d->task = NULL;
    coil__task_wake(t, -ECANCELED);
    return true;
}

static void io_wait_abandon(struct coil__wait *w)
{
    struct io_wait *iw = (struct io_wait *)w;
    /* The loop closes and the task goes: leave no pointer to it (another
     * task may have started waiting after this one was woken, and is
     * abandoned by its own wait). coil__io_drop_all forgets the
     * interest. */
    if (iw->d->task == iw->task)
        iw->d->task = NULL;
}

static const struct coil__wait_ops io_wait_ops = {io_wait_cancel, NULL,
                                                  io_wait_abandon};

/* Add direction which to the interest of a watch (force: register again
 * even if the mask has it, to notice a reused number). */
static int arm(struct coil_loop *loop, struct coil__watch *w, int which,
               bool force)
{
    int err = update(loop, w, w->mask | dir_mask[which], force);
    if (err == 1) {
        drop_stale(loop, w, 1 - which);
        (void)update(loop, w, dir_mask[which], false);
        return 0;
    }
    if (err == -EBADF)
        forget(loop, w); /* whatever was under this number is gone */
    return err;
}

int coil__io_wait(struct coil_loop *loop, int fd, unsigned dir)
{
    struct coil_task *t;
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    assert(loop == t->loop);
    assert(dir == COIL__EV_READ || dir == COIL__EV_WRITE);
    if (fd < 0)
        return -EBADF;
    int which = dir == COIL__EV_WRITE ? WRITER : READER;
    struct coil__watch *w;
    if (fd < loop->io.len && loop->io.by_fd[fd]) {
        w = loop->io.by_fd[fd];
    } else {
        /* A number never seen: is it open, before growing the table? */
        if (fd >= loop->io.len && fcntl(fd, F_GETFD) == -1)
            return -EBADF;
        if (!(w = get_watch(loop, fd)))
            return -ENOMEM;
    }
    struct coil__watch_dir *d = &w->dir[which];
    if (d->fn || d->task)
        return -EBUSY;
    /* The fast path: the interest is still armed from the last wait (and
     * no fd was closed outside a running loop since: else check it). */
    if (!(w->mask & dir_mask[which]) || w->epoch != epoch_now()) {
        if ((err = arm(loop, w, which, true)))
            return err;
    }
    d->task = t;
    /* Readiness carries no data: a cancel racing with the wake is
     * delivered here, and the caller's retried I/O has lost nothing. */
    struct io_wait iw = {{&io_wait_ops, false}, d, t};
    return coil__task_suspend(t, &iw.wait);
}

void coil__io_forget_fd(struct coil_loop *loop, int fd)
{
    if (!loop) {
        atomic_fetch_add_explicit(&io_epoch, 1, memory_order_relaxed);
        return;
    }
    if (fd < 0 || fd >= loop->io.len || !loop->io.by_fd[fd])
        return;
    struct coil__watch *w = loop->io.by_fd[fd];
    if (!w->mask && !w->dir[READER].fn && !w->dir[WRITER].fn &&
        !w->dir[READER].task && !w->dir[WRITER].task)
        return;
    forget(loop, w);
    /* A later registration of this number is a new file: new tag. */
}

int coil__io_adopt_fd(struct coil_loop *loop, int fd)
{
    bool known = fd < loop->io.len && loop->io.by_fd[fd];
    struct coil__watch *w = get_watch(loop, fd);
    if (!w)
        return -ENOMEM;
    /* Any epoch but the current one: the next wait re-registers. */
    if (known)
        w->epoch = epoch_now() - 1;
    return 0;
}
