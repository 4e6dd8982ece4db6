/* SPDX-License-Identifier: MIT */
/*
 * poller_epoll.c - the Linux epoll backend (the default there).
 *
 * Level-triggered, one registration per fd carrying both directions. The
 * epoll data word holds the fd in its low half and the loop's tag in its
 * high half, so an event from a registration the kernel kept alive after
 * the fd number was closed and reused (a dup of the old file still open)
 * carries an old tag and is dropped by the loop.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "poller.h"
#include "sys.h"

struct coil__poller {
    int epfd;
    struct epoll_event events[COIL__POLLER_BATCH];
};

static int ep_open(struct coil__poller **out)
{
    struct coil__poller *p = coil__malloc(sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->epfd = COIL__SYS(COIL__SYS_EPOLL_CREATE, epoll_create1(EPOLL_CLOEXEC));
    if (p->epfd < 0) {
        int err = -errno;
        coil__free(p);
        return err;
    }
    *out = p;
    return 0;
}

static void ep_close(struct coil__poller *p)
{
    close(p->epfd);
    coil__free(p);
}

static int ctl(struct coil__poller *p, int op, int fd, unsigned mask,
               uint32_t tag)
{
    struct epoll_event ev = {0};
    if (mask & COIL__EV_READ)
        ev.events |= EPOLLIN;
    if (mask & COIL__EV_WRITE)
        ev.events |= EPOLLOUT;
    ev.data.u64 = ((uint64_t)tag << 32) | (uint32_t)fd;
    return COIL__SYS(COIL__SYS_EPOLL_CTL, epoll_ctl(p->epfd, op, fd, &ev));
}

static int ep_watch(struct coil__poller *p, int fd, unsigned old_mask,
                    unsigned mask, uint32_t tag)
{
    if (mask == 0) {
        /* The kernel drops closed fds by itself: ENOENT/EBADF are fine. */
        if (old_mask)
            (void)ctl(p, EPOLL_CTL_DEL, fd, 0, 0);
        return 0;
    }
    int op = old_mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (ctl(p, op, fd, mask, tag) == 0)
        return 0;
    /* MOD of an fd whose number was closed and reused: the kernel dropped
     * the old registration, so register afresh and say so. ADD of an fd
     * the kernel still knows: modify it instead. */
    int fresh = 0;
    if (op == EPOLL_CTL_MOD && errno == ENOENT) {
        op = EPOLL_CTL_ADD;
        fresh = 1;
    } else if (op == EPOLL_CTL_ADD && errno == EEXIST) {
        op = EPOLL_CTL_MOD;
    } else {
        return -errno;
    }
    return ctl(p, op, fd, mask, tag) == 0 ? fresh : -errno;
}

/*
 * epoll_pwait2 takes the timeout in nanoseconds (Linux 5.11+). With
 * epoll_wait's milliseconds, rounded up so as never to wake early, a loop
 * waiting for a timer 0.2 ms away sleeps a whole millisecond. Where the
 * kernel lacks it, the first ENOSYS switches this process to epoll_wait.
 */
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define HAVE_EPOLL_PWAIT2 1
static atomic_bool no_pwait2;
#endif

#if defined(COIL_TESTING) && defined(HAVE_EPOLL_PWAIT2)
/* Test build: forget an earlier fallback, so a test can provoke one. */
void coil__epoll_pwait2_reset(void);
void coil__epoll_pwait2_reset(void)
{
    atomic_store(&no_pwait2, false);
}
#endif

static int wait_ns(struct coil__poller *p, int max, int64_t timeout_ns)
{
#ifdef HAVE_EPOLL_PWAIT2
    if (timeout_ns > 0 && timeout_ns % 1000000 &&
        !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = {(time_t)(timeout_ns / 1000000000),
                              (long)(timeout_ns % 1000000000)};
        int n = COIL__SYS(COIL__SYS_EPOLL_PWAIT2,
                          epoll_pwait2(p->epfd, p->events, max, &ts, NULL));
        if (n >= 0 || errno != ENOSYS)
            return n;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
#endif
    return epoll_wait(p->epfd, p->events, max, coil__timeout_ms(timeout_ns));
}

static int ep_wait(struct coil__poller *p, int64_t timeout_ns,
                   struct coil__event *out, int max)
{
    if (max > COIL__POLLER_BATCH)
        max = COIL__POLLER_BATCH;
    int n = COIL__SYS(COIL__SYS_EPOLL_WAIT, wait_ns(p, max, timeout_ns));
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = p->events[i].events;
        unsigned ev = 0;
        if (e & EPOLLIN)
            ev |= COIL__EV_READ;
        if (e & EPOLLOUT)
            ev |= COIL__EV_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            ev |= COIL__EV_READ | COIL__EV_WRITE;
        out[i].fd = (int)(uint32_t)p->events[i].data.u64;
        out[i].tag = (uint32_t)(p->events[i].data.u64 >> 32);
        out[i].events = ev;
    }
    return n;
}

const struct coil__poller_ops coil__poller_epoll = {
    .name = "epoll",
    .open = ep_open,
    .close = ep_close,
    .watch = ep_watch,
    .wait = ep_wait,
};
