/* SPDX-License-Identifier: MIT */
/*
 * poller.h - the contract between the loop and an I/O readiness backend
 * (epoll, kqueue, poll). The loop includes this header and never names a
 * backend; adding one (io_uring, say) is adding a file and a line in
 * poller.c's table.
 *
 * Semantics every backend keeps:
 *  - Readiness is level-triggered: an fd that stays readable is reported
 *    again by every wait until it is unwatched.
 *  - Error and hang-up conditions wake every watched direction, so
 *    whichever side is watched sees the condition from its next syscall
 *    (epoll and poll report READ|WRITE; kqueue, one event per watched
 *    filter).
 *  - Each watched fd carries a 32-bit tag chosen by the loop, returned with
 *    every event. The loop changes the tag whenever it (re-)registers an
 *    fd, so an event from a stale registration (an fd closed and its
 *    number reused) is recognised and dropped.
 *  - wait() rounds its timeout up to the backend's resolution, so it never
 *    wakes early, and reports EINTR as zero events.
 *  - An fd the backend finds closed (poll's POLLNVAL), or whose number
 *    names another file than the one registered (poll), is reported with
 *    COIL__EV_INVALID. epoll and kqueue drop a closed fd's registration
 *    themselves: it goes quiet.
 *  - One fd may appear in two events of one batch (kqueue reports each
 *    direction separately); the loop queues each direction once.
 *  - A watch() that fails changes nothing.
 *  - io_uring keeps the contract with one-shot polls re-armed at each
 *    wait; a poll in flight holds its file open (poller_io_uring.c says
 *    what follows from that).
 */
#ifndef COIL_POLLER_H
#define COIL_POLLER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define COIL__EV_READ 1u
#define COIL__EV_WRITE 2u
#define COIL__EV_INVALID 4u
/*
 * Passed with a non-zero mask to watch(), never reported: the loop sees
 * every close of this fd before it happens (watch.h's OWNED kind), so a
 * backend may trust that the number still names the file it registered
 * and skip the checks it makes for raw fds (io_uring). Backends that do
 * not need it ignore it.
 */
#define COIL__EV_OWNED 8u
/*
 * Reported, alone, by a backend that completes receives (recv below): the
 * receive submitted on fd finished. The event's tag is the one recv was
 * given; res and data say how it went.
 */
#define COIL__EV_RECV 16u

struct coil__poller; /* each backend defines its own, privately */

struct coil__event {
    int fd;
    unsigned events; /* COIL__EV_* */
    uint32_t tag;    /* the tag the fd was watched with */
    /* COIL__EV_RECV only: res > 0 bytes at data, in the backend's buffer
     * number buf (the loop gives it back with recv_release); 0, the end
     * of the stream; or -errno (-ENOBUFS: no buffer was free, nothing was
     * received). */
    int32_t res;
    uint32_t buf;
    const char *data;
};

struct coil__poller_ops {
    const char *name; /* first: coil__pick (pick.c) reads it */
    /* Create the backend state. Errors: -ENOMEM, -EMFILE, -ENFILE... */
    int (*open)(struct coil__poller **out);
    /* Release everything, including the backend's own fd. */
    void (*close)(struct coil__poller *p);
    /*
     * Set fd's interest (fd >= 0) to mask (COIL__EV_READ|WRITE), 0 to
     * forget it.
     * old_mask is what the loop last set successfully (0 if none); tag is
     * as above. When old_mask is 0 the backend registers afresh.
     * Returns 0, or 1 when old_mask was not 0 but the fd now names another
     * file than the one registered (its number was closed and reused):
     * the new file is then registered with mask, and the loop knows the
     * old watchers are stale. A raw fd's watch calls watch on every start,
     * even with an unchanged mask, so that the new file under a reused
     * number is registered (epoll, poll: and noticed; kqueue re-adds its
     * filters, registering the new file, but cannot tell it apart, so
     * it returns 0 there; poll cannot tell apart two files that share
     * an inode and a mode, such as two eventfds).
     * Errors: -EBADF (fd not open), -EPERM (fd cannot be polled),
     * -EPIPE (kqueue: the write side of a pipe whose reader is gone),
     * -ENOMEM, -ENOSPC. Forgetting (mask 0) never fails: an fd the kernel
     * already dropped is simply forgotten.
     */
    int (*watch)(struct coil__poller *p, int fd, unsigned old_mask,
                 unsigned mask, uint32_t tag);
    /*
     * Wait up to timeout_ns (-1: forever, 0: poll) and fill at most max
     * events. Returns how many, or a negative errno that cannot be
     * retried.
     */
    int (*wait)(struct coil__poller *p, int64_t timeout_ns,
                struct coil__event *events, int max);

    /*
     * Optional: receiving by completion (io_uring; NULL elsewhere, and
     * the loop keeps to readiness). recv submits, with the next wait, one
     * receive of at most len bytes on the socket fd into a buffer the
     * backend owns, chosen when the bytes arrive (a receive that waits
     * pins no memory); its completion is reported by a wait as a
     * COIL__EV_RECV event with tag. At most one per fd. Errors: -ENOTSUP
     * (no buffer ring here: the kernel has none, or it could not be set
     * up; use readiness), -ENOMEM (no room to submit now).
     */
    int (*recv)(struct coil__poller *p, int fd, size_t len, uint32_t tag);
    /* The most one such receive takes (its buffers' size). */
    size_t recv_size;
    /* Cancel fd's receive in flight, at once (its owner may close fd
     * next). Unless report, its completion is never reported (a buffer
     * it filled goes back to the backend); with report it is, as usual:
     * -ECANCELED if the cancel came first, else what it received. */
    void (*recv_cancel)(struct coil__poller *p, int fd, bool report);
    /* Give back buffer buf of a reported receive: its data is gone. */
    void (*recv_release)(struct coil__poller *p, uint32_t buf);
};

/*
 * The backend of that name (NULL: COIL_BACKEND, else the best). Errors:
 * -EINVAL (unknown name), -ENOSYS (not built here).
 */
int coil__poller_find(const char *name, const struct coil__poller_ops **out);

/*
 * Find the backend as above and open it. When io_uring was asked for and
 * the kernel refuses it (seccomp, io_uring_disabled, too old), a warning
 * says why and epoll is opened instead: *ops says which was. Errors as
 * coil__poller_find and open.
 */
int coil__poller_open(const char *name, const struct coil__poller_ops **ops,
                      struct coil__poller **out);

/* Milliseconds for a poll-style timeout, rounded up; -1 stays -1. */
static inline int coil__timeout_ms(int64_t timeout_ns)
{
    if (timeout_ns < 0)
        return -1;
    int64_t ms = timeout_ns / 1000000 + (timeout_ns % 1000000 != 0);
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}



/*
 * Which file an fd number names, for the backends that register numbers
 * rather than open files (poll) or re-arm by number (io_uring): its
 * (device, inode), and for pipes and anonymous-inode files (eventfd,
 * timerfd...), whose inode other files share (both ends of a pipe), also
 * its access mode (else -1). Two files that share an inode and a mode
 * (two eventfds) look alike.
 */
struct coil__file_id {
    dev_t dev;
    ino_t ino;
    int mode;
};
/* false if fd is not open. Costs an fstat (and an fcntl for the files
 * that need the mode). */
bool coil__file_identify(int fd, struct coil__file_id *id);
bool coil__file_same(const struct coil__file_id *a,
                     const struct coil__file_id *b);

/* The most events one wait() delivers; the loop's buffer has this size. */
#define COIL__POLLER_BATCH 256
#endif /* COIL_POLLER_H */
