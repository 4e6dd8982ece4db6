/* SPDX-License-Identifier: MIT */
/*
 * net.c - suspending socket calls for tasks (coil/net.h), and their
 * internal forms for the objects that own sockets (net_internal.h).
 *
 * Every call has the same shape: try the non-blocking system call; on
 * EAGAIN suspend on the fd's watch (watch_wait.h) until the fd is ready,
 * then try again. A raw fd's watch is the loop's (io_internal.h), found
 * or made only when a call must wait.
 * The wait is the only suspension point, so cancellation, timeout scopes
 * and loop close all act through it, between two system calls: a call
 * that is cancelled has consumed nothing (recv, accept) or reports what
 * it handed to the kernel (send_all, sendfile).
 *
 * The system calls go through the syscall seam (sys.h) so that tests can
 * make them fail with EINTR, EAGAIN or a peer error on their Nth use.
 * close() is deliberately not behind the seam and never retried.
 */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/sendfile.h>
#define HAVE_SENDFILE 1
#endif

#include "io_internal.h"
#include "loop_internal.h"
#include "net_internal.h"
#include "sys.h"
#include "task_internal.h"
#include "watch_wait.h"


/* The size of sendfile's copy buffer when sendfile(2) cannot be used. */
#define COPY_BUF (64 * 1024)

/* A blocking fd would freeze the loop in accept/connect/sendfile. */
static int check_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    return (fl & O_NONBLOCK) ? 0 : -EINVAL;
}

/* ------------------------------------------------------------------ */
/* Sockets                                                              */
/* ------------------------------------------------------------------ */

int coil_sock_open(int domain, int type, int protocol)
{
#ifdef SOCK_NONBLOCK
    int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        return -errno;
#else
    int fd = socket(domain, type, protocol);
    if (fd < 0)
        return -errno;
    int err = coil__fd_nonblock_cloexec(fd);
    if (err) {
        close(fd);
        return err;
    }
#endif
    coil__sock_no_sigpipe(fd);
    return fd;
}

int coil_sock_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    coil_loop_t *loop;
    if ((loop = coil_running_loop())) {
        int err = coil__io_forget(loop, fd);
        if (err)
            return err; /* a coil object's fd: close that instead */
    }
    /* Once, whatever it says (see net.h). */
    if (close(fd) < 0 && errno != EINTR)
        return -errno;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Receiving                                                            */
/* ------------------------------------------------------------------ */

/* The start every suspending socket call shares: -EPERM outside a task,
 * -ECANCELED for a pending cancel (delivered here), -EBADF for a negative
 * fd. */
static int sock_begin(int fd)
{
    struct coil_task *t;
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    return fd < 0 ? -EBADF : 0;
}

int coil__sock_wait(struct coil__watch *w, int fd, unsigned dir)
{
    if (!w) {
        struct coil_task *t = coil__task_current();
        if (!t)
            return -EPERM;
        int err = coil__io_watch(coil__task_loop(t), fd, &w);
        if (err)
            return err;
    }
    return coil__watch_wait(w, dir);
}

/* A non-blocking socket call on fd failed with errno e: returns 0 when the
 * call should simply be made again (e was EINTR, or the fd was not ready
 * and the running task waited until it is: may suspend), or the negative
 * error to return (e itself, or the wait's: -ECANCELED, -EBADF...). */
static int again(struct coil__watch *w, int fd, unsigned dir, int e)
{
    if (e == EINTR)
        return 0;
    if (!coil__would_block(e))
        return -e;
    return coil__sock_wait(w, fd, dir);
}

ssize_t coil__sock_recv(struct coil__watch *w, int fd, void *buf, size_t n,
                        int flags, struct sockaddr *addr, socklen_t *addrlen,
                        bool from)
{
    int err = sock_begin(fd);
    if (err)
        return err;
    if ((!buf && n) || (!addr != !addrlen))
        return -EINVAL;
    socklen_t cap = addrlen ? *addrlen : 0;
    for (;;) {
        ssize_t r;
        if (from) {
            if (addrlen)
                *addrlen = cap;
            r = COIL__RR_IN(COIL__SYS_RECVFROM, buf, n, addr, addrlen,
                            COIL__SYS(COIL__SYS_RECVFROM,
                                      recvfrom(fd, buf, n,
                                               COIL__DONTWAIT | flags, addr,
                                               addrlen)));
        } else {
            r = COIL__RR_IN(COIL__SYS_RECV, buf, n, NULL, NULL,
                            COIL__SYS(COIL__SYS_RECV,
                                      recv(fd, buf, COIL__CHAOS_LEN(fd, n),
                                           COIL__DONTWAIT | flags)));
        }
        if (r >= 0)
            return r;
        err = again(w, fd, COIL__EV_READ, errno);
        if (err)
            return err;
    }
}

/*
 * A stream's receive on its own socket. Where the loop's backend
 * completes receives (io_uring: watch.h), a read that would wait submits
 * a receive of up to a buffer (4 KiB), which completes with the bytes:
 * one system call less than readiness followed by recv(2). It tries
 * recv(2) first when the last receive filled its room (more is likely
 * waiting), else submits at once. Messages that come a buffer or more at
 * a time (the last receive brought that much) say bulk data: such a read
 * waits for readiness and takes all there is with one recv(2), as on the
 * other backends. What a completion brings is kept by the watch until
 * taken, so a cancel loses nothing, and no recv(2) is made while a
 * receive is in flight. The testing kit's receive faults and chaos
 * lengths apply where kept bytes are taken. Record and replay see
 * recv(2) calls: no receive is submitted while either runs.
 */
ssize_t coil__sock_recv_owned(struct coil__watch *w, int fd, void *buf,
                              size_t n, bool wait_first, size_t last)
{
    bool submit = coil__watch_can_recv(w, last);
#ifdef COIL_TESTING
    submit &= coil__rr_mode == 0;
#endif
    if (!submit && coil__watch_recv_peek(w) == -EAGAIN) {
        ssize_t r = wait_first ? coil__sock_wait(w, fd, COIL__EV_READ) : 0;
        return r ? r : coil__sock_recv(w, fd, buf, n, 0, NULL, NULL, false);
    }
    int err = sock_begin(fd);
    if (err)
        return err;
    if (!buf || n == 0)
        return -EINVAL;
    for (;;) {
        ssize_t st = coil__watch_recv_peek(w);
        if (st != -EAGAIN && st != -EINPROGRESS) {
            int f = COIL__FAULT(COIL__SYS_RECV);
            if (f == EINTR)
                continue; /* as recv(2) interrupted: at once */
            if (f == EAGAIN) {
                /* As a spurious EAGAIN on the other backends: a turn of
                 * the loop before the bytes are taken. */
                if ((err = coil_yield()) != 0)
                    return err;
                continue;
            }
            if (f)
                return -f;
            ssize_t r = coil__watch_recv_take(w, buf, COIL__CHAOS_LEN(fd, n));
            if (r == -ENOBUFS) /* no buffer was free: the plain way */
                return coil__sock_recv(w, fd, buf, n, 0, NULL, NULL, false);
            return r;
        }
        if (st == -EAGAIN) {
            if (!wait_first) {
                ssize_t r = COIL__SYS(COIL__SYS_RECV,
                                      recv(fd, buf, COIL__CHAOS_LEN(fd, n),
                                           COIL__DONTWAIT));
                if (r >= 0)
                    return r;
                if (errno == EINTR)
                    continue;
                if (!coil__would_block(errno))
                    return -errno;
                wait_first = true;
            }
            err = submit ? coil__watch_recv(w, n) : -ENOTSUP;
            if (err == -ENOTSUP || err == -ENOMEM) /* this time: readiness */
                return coil__sock_recv(w, fd, buf, n, 0, NULL, NULL, false);
            if (err)
                return err;
        }
        err = coil__watch_wait_recv(w);
        if (err)
            return err;
    }
}

ssize_t coil_sock_recv(int fd, void *buf, size_t n)
{
    if (n == 0) {
        /* Nothing asked, nothing waited for (as documented), after the
         * checks every call makes. */
        return sock_begin(fd);
    }
    return coil__sock_recv(NULL, fd, buf, n, 0, NULL, NULL, false);
}

ssize_t coil_sock_recvfrom(int fd, void *buf, size_t n, struct sockaddr *addr,
                           socklen_t *addrlen)
{
    return coil__sock_recv(NULL, fd, buf, n, 0, addr, addrlen, true);
}

/* ------------------------------------------------------------------ */
/* Sending                                                              */
/* ------------------------------------------------------------------ */

/* Send all of buf; *sent counts what the kernel took, whatever happens. */
static int send_loop(int fd, const char *buf, size_t n, size_t *sent)
{
    *sent = 0;
    coil__sock_no_sigpipe(fd);
    while (*sent < n) {
        ssize_t r = COIL__RR(
            COIL__SYS_SEND, -1, n - *sent,
            COIL__SYS(COIL__SYS_SEND,
                      send(fd, buf + *sent, COIL__CHAOS_LEN(fd, n - *sent),
                           COIL__SEND_FLAGS | COIL__DONTWAIT)));
        if (r >= 0) {
            *sent += (size_t)r;
            continue;
        }
        int err = again(NULL, fd, COIL__EV_WRITE, errno);
        if (err)
            return err;
    }
    return 0;
}

int coil_sock_send_all(int fd, const void *buf, size_t n, size_t *sent_out)
{
    if (sent_out)
        *sent_out = 0;
    int err = sock_begin(fd);
    if (err)
        return err;
    if (!buf && n)
        return -EINVAL;
    if (n == 0)
        return 0;
    size_t sent;
    err = send_loop(fd, buf, n, &sent);
    if (sent_out)
        *sent_out = sent;
    return err;
}

ssize_t coil_sock_sendto(int fd, const void *buf, size_t n,
                         const struct sockaddr *addr, socklen_t addrlen)
{
    return coil__sock_sendto(NULL, fd, buf, n, addr, addrlen);
}

ssize_t coil__sock_sendto(struct coil__watch *w, int fd, const void *buf,
                          size_t n, const struct sockaddr *addr,
                          socklen_t addrlen)
{
    int err = sock_begin(fd);
    if (err)
        return err;
    if ((!buf && n) || (!addr != (addrlen == 0)))
        return -EINVAL;
    coil__sock_no_sigpipe(fd);
    for (;;) {
        ssize_t r = COIL__RR(
            COIL__SYS_SENDTO, -1, n,
            COIL__SYS(COIL__SYS_SENDTO,
                      sendto(fd, buf, n, COIL__SEND_FLAGS | COIL__DONTWAIT,
                             addr, addrlen)));
        if (r >= 0)
            return r;
        err = again(w, fd, COIL__EV_WRITE, errno);
        if (err)
            return err;
    }
}

/* ------------------------------------------------------------------ */
/* Accepting and connecting                                             */
/* ------------------------------------------------------------------ */

/*
 * Errors accept(2) returns for one queued connection rather than for the
 * listening socket: the connection was aborted, or (Linux passes them on
 * from the new socket) a network error was already pending on it.
 * EOPNOTSUPP, which Linux also lists, is left out: it is what accept on a
 * socket of the wrong type says, every time.
 */
static bool accept_conn_error(int e)
{
    switch (e) {
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENETUNREACH:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENOPROTOOPT:
#ifdef ENONET
    case ENONET:
#endif
        return true;
    default:
        return false;
    }
}

int coil_sock_accept(int fd, struct sockaddr *addr, socklen_t *addrlen)
{
    return coil__sock_accept(NULL, fd, addr, addrlen);
}

int coil__sock_accept(struct coil__watch *w, int fd, struct sockaddr *addr,
                      socklen_t *addrlen)
{
    int err = sock_begin(fd);
    if (err)
        return err;
    if (!addr != !addrlen)
        return -EINVAL;
    if ((err = check_nonblocking(fd)))
        return err;
    socklen_t cap = addrlen ? *addrlen : 0;
    for (;;) {
        if (addrlen)
            *addrlen = cap;
#ifdef SOCK_NONBLOCK
        int c = COIL__RR_ACCEPT(
            addr, addrlen,
            COIL__SYS(COIL__SYS_ACCEPT,
                      accept4(fd, addr, addrlen,
                              SOCK_NONBLOCK | SOCK_CLOEXEC)));
#else
        int c = COIL__RR_ACCEPT(
            addr, addrlen,
            COIL__SYS(COIL__SYS_ACCEPT, accept(fd, addr, addrlen)));
        if (c >= 0 && (err = coil__fd_nonblock_cloexec(c))) {
            close(c);
            return err;
        }
#endif
        if (c >= 0) {
            coil__sock_no_sigpipe(c);
            return c;
        }
        int e = errno;
        /* Interrupted, or a connection that died in the queue: take the
         * next one (the queue empty gives EAGAIN, so no spin). */
        if (e == EINTR || accept_conn_error(e))
            continue;
        if (!coil__would_block(e)) {
            if (addrlen)
                *addrlen = cap;
            return -e;
        }
        if ((err = coil__sock_wait(w, fd, COIL__EV_READ)))
            return err;
    }
}

/* How a connection attempt ended: 0 or -errno. */
static int so_error(int fd)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return -errno;
    if (soerr)
        errno = soerr; /* as a failed call would leave it (recorded) */
    return -soerr;
}

int coil_sock_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    int err = sock_begin(fd);
    if (err)
        return err;
    if (!addr || len == 0)
        return -EINVAL;
    if ((err = check_nonblocking(fd)))
        return err;
    /* The seam's "after" form: an injected EINTR leaves the attempt under
     * way, as a real signal would. */
    if (COIL__RR(COIL__SYS_CONNECT, -1, 0,
                 COIL__SYS_AFTER(COIL__SYS_CONNECT,
                                 connect(fd, addr, len))) == 0)
        return 0;
    int e = errno;
    /* EINTR: the attempt goes on in the kernel (POSIX), and connecting
     * again would say EALREADY; both complete through writability. */
    if (e != EINPROGRESS && e != EINTR)
        return -e;
    if ((err = coil__sock_wait(NULL, fd, COIL__EV_WRITE)))
        return err;
    return COIL__RR(COIL__SYS_SOERROR, -4095, 0, so_error(fd));
}

/* ------------------------------------------------------------------ */
/* sendfile                                                             */
/* ------------------------------------------------------------------ */

/* Copy through a buffer, reading at an explicit position so that bytes
 * read but not sent are not lost from the file's position. */
static ssize_t copy_file(int out_fd, int in_fd, off_t *offset,
                         size_t count)
{
    off_t pos = offset ? *offset : lseek(in_fd, 0, SEEK_CUR);
    if (pos < 0)
        return -errno;
    char *buf = coil__malloc(COPY_BUF);
    if (!buf)
        return -ENOMEM;
    size_t total = 0;
    ssize_t result;
    for (;;) {
        if (total == count) {
            result = (ssize_t)total;
            break;
        }
        size_t want = count - total < COPY_BUF ? count - total : COPY_BUF;
        ssize_t r = COIL__SYS(COIL__SYS_PREAD, pread(in_fd, buf, want, pos));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            result = r < 0 ? -errno : (ssize_t)total;
            break;
        }
        size_t sent;
        int err = send_loop(out_fd, buf, (size_t)r, &sent);
        pos += (off_t)sent;
        total += sent;
        if (err) {
            result = err;
            break;
        }
    }
    coil__free(buf);
    if (offset)
        *offset = pos;
    else
        (void)lseek(in_fd, pos, SEEK_SET);
    return result;
}

/*
 * Run call(args) with SIGPIPE blocked in this thread, and if it raised
 * one that was not already pending, take it back before unblocking: for
 * the calls that have no MSG_NOSIGNAL (write, sendfile).
 */
struct nosigpipe {
    sigset_t set, old;
    bool was_pending;
};

static void nosigpipe_begin(struct nosigpipe *n)
{
    sigemptyset(&n->set);
    sigaddset(&n->set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &n->set, &n->old);
    /* A SIGPIPE can be pending here only if it was blocked already (an
     * unblocked one would have been delivered): only then ask. */
    sigset_t pending;
    n->was_pending = sigismember(&n->old, SIGPIPE) == 1 &&
                     sigpending(&pending) == 0 &&
                     sigismember(&pending, SIGPIPE) == 1;
}

static void nosigpipe_end(struct nosigpipe *n, ssize_t r, int e)
{
    if (r < 0 && e == EPIPE && !n->was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&n->set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &n->old, NULL);
    errno = e;
}

#ifdef HAVE_SENDFILE
static ssize_t sendfile_nosigpipe(int out_fd, int in_fd, off_t *offset,
                                  size_t n)
{
    struct nosigpipe ns;
    nosigpipe_begin(&ns);
    ssize_t r = COIL__SYS(COIL__SYS_SENDFILE,
                          sendfile(out_fd, in_fd, offset,
                                   COIL__CHAOS_LEN(out_fd, n)));
    nosigpipe_end(&ns, r, errno);
    return r;
}
#endif

ssize_t coil__fd_write_nosigpipe(int fd, const void *buf, size_t n)
{
    struct nosigpipe ns;
    nosigpipe_begin(&ns);
    ssize_t r;
    do
        r = COIL__RR(COIL__SYS_SEND, -1, n,
                     COIL__SYS(COIL__SYS_SEND,
                               write(fd, buf, COIL__CHAOS_LEN(fd, n))));
    while (r < 0 && errno == EINTR);
    nosigpipe_end(&ns, r, errno);
    if (r >= 0)
        return r;
    return coil__would_block(errno) ? -EAGAIN : -errno;
}

ssize_t coil__fd_read(struct coil__watch *w, int fd, void *buf, size_t n)
{
    int err = sock_begin(fd);
    if (err)
        return err;
    if (!buf && n)
        return -EINVAL;
    for (;;) {
        ssize_t r = COIL__RR_IN(
            COIL__SYS_RECV, buf, n, NULL, NULL,
            COIL__SYS(COIL__SYS_RECV, read(fd, buf, COIL__CHAOS_LEN(fd, n))));
        if (r >= 0)
            return r;
        err = again(w, fd, COIL__EV_READ, errno);
        if (err)
            return err;
    }
}

ssize_t coil_sock_sendfile(int out_fd, int in_fd, off_t *offset,
                           size_t count)
{
    int err = sock_begin(out_fd);
    if (err)
        return err;
    if (in_fd < 0)
        return -EBADF;
    if (offset && *offset < 0)
        return -EINVAL;
#ifdef COIL_TESTING
    if (coil__rr_mode)
        coil__rr_unsupported("coil_sock_sendfile");
#endif
    if ((err = check_nonblocking(out_fd)))
        return err;
    if (count > SSIZE_MAX)
        count = SSIZE_MAX;
#ifdef HAVE_SENDFILE
    size_t total = 0;
    while (total < count) {
        size_t n = count - total;
        if (n > 0x7ffff000) /* the most Linux moves per call */
            n = 0x7ffff000;
        ssize_t r = sendfile_nosigpipe(out_fd, in_fd, offset, n);
        if (r > 0) {
            total += (size_t)r;
            continue;
        }
        if (r == 0)
            break; /* end of file */
        int e = errno;
        if (e == EINTR)
            continue;
        if (coil__would_block(e)) {
            if ((err = coil__sock_wait(NULL, out_fd, COIL__EV_WRITE)))
                return err;
            continue;
        }
        if ((e == EINVAL || e == ENOSYS) && total == 0)
            return copy_file(out_fd, in_fd, offset, count);
        return -e;
    }
    return (ssize_t)total;
#else
    return copy_file(out_fd, in_fd, offset, count);
#endif
}
