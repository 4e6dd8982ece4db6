/* SPDX-License-Identifier: MIT */
/*
 * poller_poll.c - the portable poll(2) backend.
 *
 * Keeps a dense pollfd array (handed to poll() as is) and, per fd number,
 * the fd's slot in it; removal swaps the last slot in, so every operation
 * is O(1) and wait is O(watched fds). When more fds are ready than one
 * batch holds, a cursor makes the next wait start after the last fd
 * reported, so the ones at the end of the array get their turn.
 *
 * poll() names fds by number only, so an fd closed while watched and whose
 * number was reused would silently report the new file's readiness. Each
 * slot therefore remembers the identity of the file it was registered
 * for: its (device, inode), and for pipes and anonymous-inode files
 * (eventfd, timerfd...), whose inode other files share (both ends of a
 * pipe), also its access mode. An event from a slot whose fd no longer
 * names that file is reported as COIL__EV_INVALID instead. That costs an
 * fstat per watch change and per event (plus an fcntl for the files that
 * need the mode), acceptable for the portable fallback.
 *
 * Known limit: two files that share an inode and a mode look alike (two
 * eventfds, two read ends of one pipe). If one was closed while watched
 * and the other took its number, poll goes on reporting the new file
 * under the old registration; epoll and kqueue do not (they track open
 * files, not numbers). Remove watchers before closing such fds.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>

#include "internal.h"
#include "poller.h"
#include "sys.h"

struct slot_info {
    uint32_t tag;             /* the loop's tag */
    struct coil__file_id id;  /* the file registered */
};

struct coil__poller {
    struct pollfd *fds; /* dense array of watched fds */
    struct slot_info *info; /* info[i] belongs to fds[i] */
    int len, cap;
    int *slot;          /* slot[fd] = index in fds, or -1 */
    int nslot;
    int cursor;         /* where the next wait starts reporting */
};

static int pl_open(struct coil__poller **out)
{
    struct coil__poller *p = coil__calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    *out = p;
    return 0;
}

static void pl_close(struct coil__poller *p)
{
    coil__free(p->fds);
    coil__free(p->info);
    coil__free(p->slot);
    coil__free(p);
}

static int grow_slots(struct coil__poller *p, int fd)
{
    int old = p->nslot;
    int *t = coil__fd_table_grow(p->slot, &p->nslot, fd, sizeof(*t));
    if (!t)
        return -ENOMEM;
    for (int i = old; i < p->nslot; i++)
        t[i] = -1; /* no slot */
    p->slot = t;
    return 0;
}

static int grow_fds(struct coil__poller *p)
{
    if (p->len < p->cap)
        return 0;
    int cap = p->cap ? p->cap * 2 : 16;
    struct pollfd *f = coil__realloc(p->fds, (size_t)cap * sizeof(*f));
    if (!f)
        return -ENOMEM;
    p->fds = f;
    struct slot_info *t = coil__realloc(p->info, (size_t)cap * sizeof(*t));
    if (!t)
        return -ENOMEM; /* fds grew already; harmless, cap unchanged */
    p->info = t;
    p->cap = cap;
    return 0;
}

static short to_poll(unsigned mask)
{
    return (short)(((mask & COIL__EV_READ) ? POLLIN : 0) |
                   ((mask & COIL__EV_WRITE) ? POLLOUT : 0));
}

static int pl_watch(struct coil__poller *p, int fd, unsigned old_mask,
                    unsigned mask, uint32_t tag)
{
    (void)old_mask;
    int i = fd < p->nslot ? p->slot[fd] : -1;
    if (mask == 0) {
        if (i < 0)
            return 0;
        int last = --p->len;
        if (i != last) {
            p->fds[i] = p->fds[last];
            p->info[i] = p->info[last];
            p->slot[p->fds[i].fd] = i;
        }
        p->slot[fd] = -1;
        return 0;
    }
    /* poll() cannot refuse an fd; check it is open and can be polled, as
     * epoll would, and note which file it names now. */
#ifdef O_PATH
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_PATH))
        return -EBADF; /* not open, or only a path (poll says POLLNVAL) */
#endif
    struct coil__file_id id;
    if (!coil__file_identify(fd, &id))
        return -EBADF;
    int fresh = i >= 0 && !coil__file_same(&id, &p->info[i].id);
    if (i < 0) {
        int err = grow_slots(p, fd);
        if (!err)
            err = grow_fds(p);
        if (err)
            return err;
        i = p->len++;
        p->fds[i].fd = fd;
        p->slot[fd] = i;
    }
    p->fds[i].events = to_poll(mask); /* (COIL__EV_OWNED: not needed) */
    p->fds[i].revents = 0;
    p->info[i] = (struct slot_info){.tag = tag, .id = id};
    return fresh;
}

static int pl_wait(struct coil__poller *p, int64_t timeout_ns,
                   struct coil__event *out, int max)
{
    int r = COIL__SYS(COIL__SYS_POLL,
                      poll(p->fds, (nfds_t)p->len,
                           coil__timeout_ms(timeout_ns)));
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    int n = 0;
    int len = p->len;
    int start = len ? p->cursor % len : 0;
    int i = start;
    for (int k = 0; k < len && r > 0 && n < max; k++) {
        i = (start + k) % len;
        short re = p->fds[i].revents;
        if (!re)
            continue;
        r--;
        unsigned ev = 0;
        if (re & POLLIN)
            ev |= COIL__EV_READ;
        if (re & POLLOUT)
            ev |= COIL__EV_WRITE;
        if (re & (POLLERR | POLLHUP))
            ev |= COIL__EV_READ | COIL__EV_WRITE;
        struct coil__file_id id;
        if ((re & POLLNVAL) || !coil__file_identify(p->fds[i].fd, &id) ||
            !coil__file_same(&id, &p->info[i].id))
            ev = COIL__EV_INVALID;
        out[n].fd = p->fds[i].fd;
        out[n].tag = p->info[i].tag;
        out[n].events = ev;
        n++;
    }
    /* When the batch filled up, the next wait starts just after the last
     * fd reported, so every ready fd gets its turn. */
    p->cursor = n == max ? i + 1 : start;
    return n;
}

const struct coil__poller_ops coil__poller_poll = {
    .name = "poll",
    .open = pl_open,
    .close = pl_close,
    .watch = pl_watch,
    .wait = pl_wait,
};
