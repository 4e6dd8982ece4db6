/* SPDX-License-Identifier: MIT */
/*
 * watch.h - the one internal fd watcher.
 *
 * Every fd the loop waits on is represented by a struct coil__watch:
 * embedded in the object that owns the fd (a stream, a UDP endpoint, a
 * server's listening socket, the loop's own wake-up fd; any object that
 * owns an fd), or made by the loop for a raw fd that the user hands to
 * coil_loop_add_reader or a coil_sock_* call (io.c).
 * Its life is five calls, and each is the only way to do its thing:
 *
 *   coil__watch_init   bind the watch to (loop, fd): the loop routes
 *                      fd's events to it
 *   coil__watch_start  give one direction (read or write) a user: a
 *                      function the poll calls when the direction is
 *                      ready, or when the fd is gone
 *   coil__watch_stop   take a direction's user away
 *   coil__watch_wait   suspend the running task until a direction is
 *                      ready (the task layer's, watch_wait.h)
 *   coil__watch_close  forget the fd before its owner closes it: users
 *                      are told -EBADF, the interest goes, the watch is
 *                      unbound. Idempotent.
 *
 * Users are called from the poll, as soon as the event is seen (libuv
 * calls its I/O callbacks the same way), not through the ready queue:
 * waking a waiting task costs no extra hop, and an owner may free its
 * watch at any time after closing it, since nothing of the watch is ever
 * queued. A user is called with 0 (the direction is ready: try the I/O)
 * or -EBADF (the fd is gone: closed through the watch, found closed by
 * the poller, or its number now names another file). A user may do
 * anything in its call, including closing and freeing the watch. A
 * one-shot user (a waiting task) is dropped before it is called;
 * a lasting one stays until stopped.
 *
 * Interest. A watch keeps the interest it registered with the poller
 * (armed) after its user goes, so that a task reading in a loop pays no
 * epoll_ctl per wait; an event for a direction with no user narrows the
 * interest then (a level-triggered fd would otherwise wake every poll).
 * That is safe only while the loop sees every close of the fd, which
 * decides between the two kinds:
 *
 *  - COIL__WATCH_OWNED: the fd belongs to a coil object that closes it
 *    only after coil__watch_close. Interest armed stays trusted.
 *  - COIL__WATCH_RAW: the user's fd, which the user may close(2) behind
 *    the loop's back and whose number the kernel may hand to a new
 *    file. Every start registers again (one epoll_ctl, which also tells
 *    a reused number: the poller answers "fresh"), and a stop narrows at
 *    once. No rule about closing follows for the user.
 */
#ifndef COIL_WATCH_H
#define COIL_WATCH_H

#include <errno.h>
#include <sys/types.h>

#include "internal.h"
#include "poller.h"

struct coil_loop;

enum coil__watch_kind {
    COIL__WATCH_OWNED,
    COIL__WATCH_RAW,
};

/* A direction's user: called with 0 (ready) or -EBADF (the fd is gone). */
typedef void (*coil__watch_fn)(void *arg, int result);

struct coil__watch_user {
    coil__watch_fn fn; /* NULL: the direction has no user */
    void *arg;
    bool once;         /* dropped before it is called */
};

/* A receive by completion (coil__watch_recv): its state and what it left. */
enum coil__watch_rx_state {
    COIL__RX_IDLE,     /* none submitted */
    COIL__RX_INFLIGHT, /* submitted, not completed */
    COIL__RX_KEPT,     /* completed: res and the bytes left are kept */
};

struct coil__watch_rx {
    const char *data; /* KEPT with res > 0: the bytes left */
    uint32_t len;     /* how many */
    int32_t res;      /* KEPT: > 0 (bytes), 0 (end of stream), -errno */
    uint32_t buf;     /* the backend's buffer holding them */
    uint32_t tag;     /* INFLIGHT: the tag its completion carries */
    uint8_t state;    /* enum coil__watch_rx_state */
};

struct coil__watch {
    struct coil_loop *loop;
    int fd;
    unsigned armed;    /* interest registered with the poller */
    uint32_t tag;      /* that registration's tag (poller.h) */
    uint8_t kind;      /* enum coil__watch_kind */
    bool bound;        /* the loop routes fd's events here */
    struct coil__watch_user user[2]; /* [0] read, [1] write */
    /* RAW watches only: the loop unbinds the watch on its own (a watch
     * of another kind took the fd, or the loop closes); io.c frees it. */
    void (*unbound)(struct coil__watch *w);
    struct coil__watch_rx rx; /* OWNED watches only */
};

/* The loop's part owned by watch.c: the poller and the fd table. */
struct coil__loop_watch {
    const struct coil__poller_ops *pops;
    struct coil__poller *poller;
    struct coil__watch **by_fd; /* by_fd[fd]: the bound watch, or NULL */
    int len;                    /* entries in by_fd */
    uint32_t next_tag;
    bool no_recv; /* the poller refused a receive by completion */
    struct coil__event events[COIL__POLLER_BATCH];
};

/* Open the poller (backend: a name, or NULL for the default). Errors as
 * coil_loop_new: -EINVAL, -ENOSYS, -ENOMEM, -EMFILE... */
int coil__watch_part_init(struct coil_loop *loop, const char *backend);
/* Loop close: unbind every watch without calling its users, free the
 * table, close the poller. Nothing is left for the loop's destroy. */
void coil__watch_part_close(struct coil_loop *loop);
/* The poller's name ("epoll", ...). */
const char *coil__watch_backend(const struct coil_loop *loop);

/*
 * Wait for I/O for up to timeout_ns (-1: no limit; 0: just look) and
 * call the users of every ready direction. Returns how many events the
 * poller gave, or the poller's error that cannot be retried.
 */
int coil__watch_poll(struct coil_loop *loop, int64_t timeout_ns);

/*
 * Bind w to fd on loop (kind: enum coil__watch_kind). If a RAW watch
 * holds fd with no user (what is left of earlier waits on a number since
 * closed), it is unbound first. Errors: -EBADF (fd < 0, loop closed),
 * -EBUSY (fd is bound to an OWNED watch, or to a RAW one with a user),
 * -ENOMEM (the table could not grow). On error w is not bound.
 */
int coil__watch_init(struct coil__watch *w, struct coil_loop *loop, int fd,
                     enum coil__watch_kind kind);

/* The watch bound to fd on loop, or NULL. */
struct coil__watch *coil__watch_find(struct coil_loop *loop, int fd);

/* Flags of coil__watch_start. */
#define COIL__WATCH_ONCE 1u    /* the user is dropped before it is called */
#define COIL__WATCH_REPLACE 2u /* replace the direction's user, if any */
#define COIL__WATCH_NOARM 4u   /* no readiness wanted: the user waits for a
                                  receive's completion (coil__watch_recv) */

/*
 * Give direction dir (COIL__EV_READ or COIL__EV_WRITE) the user fn(arg)
 * and make sure the poller watches it. Errors: -EBUSY (the direction has
 * a user, without COIL__WATCH_REPLACE), -EBADF (w unbound, or the fd is
 * not open), -EPERM (the fd cannot be polled), -ENOMEM, -ENOSPC. On error
 * nothing changed, except that an fd found not open is forgotten (its
 * other user is told -EBADF).
 */
int coil__watch_start(struct coil__watch *w, unsigned dir, coil__watch_fn fn,
                      void *arg, unsigned flags);

/* Drop dir's user (not called). A RAW watch narrows its interest at once;
 * if that fails the fd is forgotten and the other user told -EBADF. */
void coil__watch_stop(struct coil__watch *w, unsigned dir);

/* The owner shut one direction for good (a stream closing while it still
 * flushes): dir's user, if any, is dropped and told -EBADF. */
void coil__watch_shut(struct coil__watch *w, unsigned dir);

/* The direction of user slot d: 0 read, 1 write. */
static inline unsigned coil__watch_dir(int d)
{
    return d ? COIL__EV_WRITE : COIL__EV_READ;
}

/* Whether dir has a user. */
static inline bool coil__watch_busy(const struct coil__watch *w, unsigned dir)
{
    return w->user[dir == COIL__EV_WRITE].fn != NULL;
}

/* Whether dir's user has the argument arg. */
static inline bool coil__watch_user_is(const struct coil__watch *w,
                                       unsigned dir, const void *arg)
{
    const struct coil__watch_user *u = &w->user[dir == COIL__EV_WRITE];
    return u->fn && u->arg == arg;
}

/*
 * Receiving by completion. On a backend that completes receives
 * (io_uring), an OWNED watch of a socket may have the kernel receive for
 * it instead of reporting readiness: coil__watch_recv submits a receive
 * (it goes to the kernel with the loop's next wait), and its completion
 * is kept in w->rx and wakes the read direction's user with 0 (a task
 * waits for it with coil__watch_wait_recv, watch_wait.h). The bytes land
 * in the loop's buffers, never in a caller's: a cancelled waiter loses
 * nothing, since the completion is kept for the next reader. Leaving the
 * read direction (coil__watch_shut of READ, coil__watch_close, the fd
 * found gone) cancels what is in flight and drops what is kept.
 */

/* Whether coil__watch_recv may work on w and is worth it: an OWNED
 * bound watch on a backend that completes receives (and has not refused
 * one), whose last receive brought less than one of its buffers holds
 * (last bytes; a bigger one says bulk data, better taken whole by one
 * recv(2) than a buffer per completion). */
bool coil__watch_can_recv(const struct coil__watch *w, size_t last);

/*
 * Submit a receive of at most len (> 0) bytes on w's socket. Errors:
 * -ENOTSUP (not here: use readiness, for good), -EBUSY (one in flight or
 * kept), -EBADF (w unbound), -ENOMEM.
 */
int coil__watch_recv(struct coil__watch *w, size_t len);

/*
 * Take what a completed receive left: up to n (> 0) bytes into p (what is
 * left stays kept), or its end (0: end of stream; -errno, -ENOBUFS if no
 * buffer was free: nothing was received), which is taken whole. -EAGAIN:
 * nothing is kept. A receive the kernel ended without a word about the
 * peer (-ECANCELED: cancelled; -EINTR, -EAGAIN) keeps nothing: its
 * watch is idle again, as if none had been submitted.
 */
ssize_t coil__watch_recv_take(struct coil__watch *w, void *p, size_t n);

/* Where w's receive stands: -EAGAIN (none), -EINPROGRESS (in flight),
 * else what is kept: the bytes left (> 0), 0 (end of stream) or -errno. */
static inline ssize_t coil__watch_recv_peek(const struct coil__watch *w)
{
    const struct coil__watch_rx *rx = &w->rx;
    if (rx->state == COIL__RX_INFLIGHT)
        return -EINPROGRESS;
    if (rx->state != COIL__RX_KEPT)
        return -EAGAIN;
    return rx->res > 0 ? (ssize_t)rx->len : rx->res;
}

/* Ask the kernel to end a receive in flight now: it completes soon,
 * with -ECANCELED or with what it received first. */
void coil__watch_recv_cut(struct coil__watch *w);

/* Cancel a receive in flight and drop what is kept. */
void coil__watch_recv_drop(struct coil__watch *w);

/* Forget the fd (see the top). Idempotent; w may be freed right after. */
void coil__watch_close(struct coil__watch *w);

/* How many fds of loop have a user in either direction, not counting
 * the nexcept fds in except (the stuck-loop check of debug mode). */
size_t coil__watch_active(const struct coil_loop *loop, const int *except,
                          size_t nexcept);

#endif /* COIL_WATCH_H */
