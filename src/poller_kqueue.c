/* SPDX-License-Identifier: MIT */
/*
 * poller_kqueue.c - the kqueue backend (the BSDs, macOS). Built only where
 * <sys/event.h> has kqueue(); the LIBKQUEUE branches serve builds against
 * the libkqueue emulation library.
 *
 * kqueue has one registration (knote) per fd and direction: EVFILT_READ
 * and EVFILT_WRITE. A knote's ident is the fd, its udata the loop's tag.
 * Knotes are level-triggered (no EV_CLEAR) and close() removes them, so a
 * closed fd never yields a stale event, nor a COIL__EV_INVALID one: as
 * with epoll, a watched fd closed behind the loop's back goes quiet.
 *
 * watch() is one kevent() call. Its changelist holds the filters added
 * afresh, then the kept ones (added again: EV_ADD updates a knote in place
 * to carry the new tag), then the dropped ones. Without room for errors,
 * kevent() stops at the first failing change, those before it applied: so
 * when an addition fails the kept filters still have their old tag, and
 * undoing the fresh ones leaves everything as it was. Deletions come last
 * and fail only with ENOENT (the fd was closed and reused: its knotes went
 * with the close), which is success. EV_ADD alone enables a knote; adding
 * EV_ENABLE would make libkqueue keep the old udata. An addition for an fd
 * that is not open is -EBADF whatever kqueue said (libkqueue: EFAULT).
 *
 * libkqueue cannot update a knote in place, so there kept filters are
 * deleted first and added afresh (one more call; a failed re-addition
 * loses the filter). It does not see close() either: a closed fd's knotes
 * linger until deleted.
 *
 * watch() returns 1 (a fresh registration) when a deletion finds the
 * knote gone, which is how a closed and reused fd number shows. When the
 * interest is unchanged kqueue cannot tell a reused number from the old
 * file, so on kqueue, as on epoll when a dup keeps the old file open,
 * remove watchers before closing fds.
 *
 * wait() reports one event per knote: an fd ready both ways gives two
 * events with the same fd and tag, which the loop handles (it queues each
 * direction once per poll). EV_EOF comes on each filter that sees it (a
 * full hang-up wakes both directions, a half-close only the reader);
 * EV_ERROR is reported as READ|WRITE. The timeout is a timespec, so
 * needs no rounding (kqueue never wakes early); it is capped at 10^8 s,
 * which every kqueue accepts.
 *
 * A kqueue is not inherited across fork(): a child process must make its
 * own loop rather than use its parent's.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "poller.h"
#include "sys.h"

#define KQ_MAX_TIMEOUT_S 100000000 /* 10^8 s, over three years */

struct coil__poller {
    int kq;
    struct kevent events[COIL__POLLER_BATCH];
};

static int kq_open(struct coil__poller **out)
{
    struct coil__poller *p = coil__malloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->kq = COIL__SYS(COIL__SYS_KQUEUE, kqueue());
    if (p->kq < 0) {
        int err = -errno;
        coil__free(p);
        return err;
    }
    /* Not inherited by fork() anyway; this keeps it from an exec(). */
    (void)fcntl(p->kq, F_SETFD, FD_CLOEXEC);
    *out = p;
    return 0;
}

static void kq_close(struct coil__poller *p)
{
    close(p->kq);
    coil__free(p);
}

static short filter_of(unsigned dir)
{
    return dir == COIL__EV_READ ? EVFILT_READ : EVFILT_WRITE;
}

/* Append to ch a change of fd's filter for each direction in dirs. */
static int put(struct kevent *ch, int n, int fd, unsigned dirs,
               unsigned short flags, uint32_t tag)
{
    for (unsigned dir = COIL__EV_READ; dir <= COIL__EV_WRITE; dir <<= 1) {
        if (!(dirs & dir))
            continue;
        EV_SET(&ch[n], (uintptr_t)fd, filter_of(dir), flags, 0, 0, 0);
        /* udata is a pointer on most systems, an intptr_t on some. */
        ch[n].udata = (__typeof__(ch[n].udata))(uintptr_t)tag;
        n++;
    }
    return n;
}

static int submit(struct coil__poller *p, const struct kevent *ch, int n)
{
    return COIL__SYS(COIL__SYS_KEVENT, kevent(p->kq, ch, n, NULL, 0, NULL));
}

/* Delete fd's filters for dirs, ignoring filters already gone. */
static void drop(struct coil__poller *p, int fd, unsigned dirs)
{
    struct kevent ch[2];
    int n = put(ch, 0, fd, dirs, EV_DELETE, 0);
    /* kevent() stops at the first failure: give the second its own go. */
    if (n && submit(p, ch, n) < 0 && n == 2)
        (void)submit(p, ch + 1, 1);
}

static int kq_watch(struct coil__poller *p, int fd, unsigned old_mask,
                    unsigned mask, uint32_t tag)
{
    if (mask == 0) {
        drop(p, fd, old_mask);
        return 0;
    }
    mask &= COIL__EV_READ | COIL__EV_WRITE; /* not COIL__EV_OWNED */
#ifdef LIBKQUEUE
    drop(p, fd, mask & old_mask);
    old_mask &= ~mask;
#endif
    unsigned fresh = mask & ~old_mask;
    struct kevent ch[2];
    int n = put(ch, 0, fd, fresh, EV_ADD, tag);
    n = put(ch, n, fd, mask & old_mask, EV_ADD, tag);
    n = put(ch, n, fd, old_mask & ~mask, EV_DELETE, 0);
    if (submit(p, ch, n) == 0)
        return 0;
    /* A deletion found no knote: the fd was closed (its knotes went with
     * it) and the number now names a new file, registered just now. */
    if (errno == ENOENT)
        return 1;
    int err = errno;
    drop(p, fd, fresh);
    if (fcntl(fd, F_GETFD) == -1)
        return -EBADF;
    /* NetBSD refuses the write filter of a pipe whose reader is gone with
     * EBADF; the fd is open, so say EPIPE, as FreeBSD and macOS do. */
    if (err == EBADF)
        err = EPIPE;
    /* kqueue refuses a kind of fd it cannot watch (some devices, on some
     * systems) with EINVAL or ENODEV; the contract's word for it is EPERM. */
    if (err == EINVAL || err == ENODEV)
        return -EPERM;
    return -err;
}

static unsigned events_of(const struct kevent *k)
{
    if ((k->flags & EV_ERROR) && k->data == EBADF)
        return COIL__EV_INVALID;
    if (k->flags & EV_ERROR)
        return COIL__EV_READ | COIL__EV_WRITE;
    /* EV_EOF arrives on each filter that sees it, so a full hang-up wakes
     * both directions, while a peer that only shut down its writing side
     * wakes the reader alone, as with epoll. */
    return k->filter == EVFILT_READ ? COIL__EV_READ : COIL__EV_WRITE;
}

static int kq_wait(struct coil__poller *p, int64_t timeout_ns,
                   struct coil__event *out, int max)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        int64_t s = timeout_ns / 1000000000;
        ts.tv_sec = (time_t)(s > KQ_MAX_TIMEOUT_S ? KQ_MAX_TIMEOUT_S : s);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    if (max > COIL__POLLER_BATCH)
        max = COIL__POLLER_BATCH;
    int n = COIL__SYS(COIL__SYS_KEVENT,
                      kevent(p->kq, NULL, 0, p->events, max, tsp));
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        const struct kevent *k = &p->events[i];
        out[i].fd = (int)k->ident;
        out[i].tag = (uint32_t)(uintptr_t)k->udata;
        out[i].events = events_of(k);
    }
    return n;
}

const struct coil__poller_ops coil__poller_kqueue = {
    .name = "kqueue",
    .open = kq_open,
    .close = kq_close,
    .watch = kq_watch,
    .wait = kq_wait,
};
