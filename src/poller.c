/* SPDX-License-Identifier: MIT */
/*
 * poller.c - the table of backends built into this library, and the
 * choice among them: an explicit name, else COIL_BACKEND, else the first
 * (best) entry.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "poller.h"

#ifdef COIL_HAVE_EPOLL
extern const struct coil__poller_ops coil__poller_epoll;
#endif
#ifdef COIL_HAVE_IO_URING
extern const struct coil__poller_ops coil__poller_io_uring;
#endif
#ifdef COIL_HAVE_KQUEUE
extern const struct coil__poller_ops coil__poller_kqueue;
#endif
extern const struct coil__poller_ops coil__poller_poll;

static const struct coil__poller_ops *const backends[] = {
#ifdef COIL_HAVE_EPOLL
    &coil__poller_epoll,
#endif
#ifdef COIL_HAVE_IO_URING
    &coil__poller_io_uring,
#endif
#ifdef COIL_HAVE_KQUEUE
    &coil__poller_kqueue,
#endif
    &coil__poller_poll,
};

static const char *const known[] = {"epoll", "io_uring", "kqueue", "poll"};

int coil__poller_find(const char *name, const struct coil__poller_ops **out)
{
    return coil__pick(name, "COIL_BACKEND", (const void *const *)backends,
                      sizeof(backends) / sizeof(*backends), known,
                      sizeof(known) / sizeof(*known), (const void **)out);
}

#if defined(COIL_HAVE_IO_URING) && defined(COIL_HAVE_EPOLL)
/* Why io_uring_setup said no, for the fallback's warning. */
static const char *refusal(int err)
{
    switch (err) {
    case -EPERM:
        return "refused: a seccomp filter, or kernel.io_uring_disabled";
    case -ENOSYS:
        return "this kernel has no io_uring, or one older than 5.11";
    case -ENOBUFS:
        return "the kernel could not lock the ring's memory "
               "(RLIMIT_MEMLOCK)";
    default:
        return coil_strerror(err);
    }
}
#endif

int coil__poller_open(const char *name, const struct coil__poller_ops **ops,
                      struct coil__poller **out)
{
    int err = coil__poller_find(name, ops);
    if (err)
        return err;
    err = (*ops)->open(out);
#if defined(COIL_HAVE_IO_URING) && defined(COIL_HAVE_EPOLL)
    /* io_uring is the one backend a kernel may refuse while another
     * works: say why, and go on with epoll. Out of memory or fds, epoll
     * would fail too. */
    if (err && *ops == &coil__poller_io_uring && err != -ENOMEM &&
        err != -EMFILE && err != -ENFILE) {
        coil__log(NULL, COIL_LOG_WARNING,
                  "io_uring cannot be used (%s): the loop uses epoll",
                  refusal(err));
        *ops = &coil__poller_epoll;
        err = (*ops)->open(out);
    }
#endif
    return err;
}

bool coil_backend_available(const char *backend)
{
    /* Built, and the kernel lets it be opened (io_uring may be refused
     * while the others work). */
    const struct coil__poller_ops *ops;
    struct coil__poller *p;
    if (!backend || coil__poller_find(backend, &ops) != 0 ||
        ops->open(&p) != 0)
        return false;
    ops->close(p);
    return true;
}

_Static_assert(offsetof(struct coil__poller_ops, name) == 0,
               "coil__pick reads an ops table's name as its first member");

/* Files whose inode others share: pipes and FIFOs (both ends), and
 * anonymous-inode files (no file type: eventfd, timerfd, signalfd...). */
static bool shares_inode(const struct stat *st)
{
    return S_ISFIFO(st->st_mode) || (st->st_mode & S_IFMT) == 0;
}

bool coil__file_identify(int fd, struct coil__file_id *id)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return false;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->mode = -1;
    if (shares_inode(&st)) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
            return false;
        id->mode = fl & O_ACCMODE;
    }
    return true;
}

bool coil__file_same(const struct coil__file_id *a,
                     const struct coil__file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->mode == b->mode;
}
