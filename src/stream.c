/* SPDX-License-Identifier: MIT */
/*
 * stream.c - buffered streams over sockets (coil/stream.h).
 *
 * Reading is done by the reading task itself, through coil_sock_recv into
 * the stream's read buffer (or straight into the caller's buffer when
 * nothing is buffered and the caller takes whatever comes). The only
 * suspension point is inside coil_sock_recv, before the recv(2) that
 * moves bytes: once bytes are out of the kernel they are in a buffer and
 * no cancel can lose them. Calls that need several chunks (readuntil,
 * read_exactly) gather them in the stream's buffer and consume only when
 * they return success.
 *
 * Writing is asyncio's transport: write sends at once what the socket
 * takes when nothing is queued, buffers the rest, and a writer watcher
 * (coil_add_writer) sends the buffer whenever the socket is writable,
 * then removes itself. Drain waits on a future shared by every draining
 * task (awaited with coil_shield: one task's cancel must not complete it
 * for the others), completed when the buffer falls to the low-water mark,
 * when the sender fails, or when the fd is closed.
 *
 * Lifetime: refs counts the users. A stream whose last reference is
 * dropped while data is still buffered stays alive, owned by its writer
 * watcher, until the data is out (or the sender fails); it is then linked
 * as an io job so that a loop closed meanwhile closes its fd and frees it.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "connect.h"
#include "sock.h"
#include "coil/combinators.h"
#include "coil/group.h"
#include "coil/stream.h"
#include "sys.h"
#include "task.h"


/* The smallest read buffer, and how much a plain fill asks for. */
#define RBUF_MIN 4096

struct coil_stream {
    unsigned refs;
    struct coil_loop *loop;
    int fd;               /* -1 once closed */
    /* reading */
    char *rbuf;
    size_t rpos, rlen, rcap; /* data is rbuf[rpos, rpos + rlen) */
    size_t limit;
    coil_task_t *reader;  /* the task suspended reading, or NULL */
    bool drained;         /* the last receive came up short */
    bool eof;             /* the peer ended the stream */
    int read_err;         /* a sticky read error (-ECONNRESET...) or 0 */
    /* writing */
    char *wbuf;
    size_t wpos, wlen, wcap;
    size_t high, low;
    int write_err;        /* the sender's failure, or 0 */
    bool eof_requested;   /* write_eof called */
    bool eof_done;        /* shutdown(SHUT_WR) issued */
    bool writer_on;       /* the writer watcher is registered */
    bool closing;         /* close or abort called */
    bool dropped;         /* closed with unsent data discarded */
    coil_future_t *drain_fut;  /* shared by draining tasks, or NULL */
    coil_future_t *closed_fut; /* for wait_closed, or NULL */
    struct coil__io_job job;   /* linked while orphaned and flushing */
    bool job_linked;
};

static void *grow(void *p, size_t n)
{
    return p ? coil__realloc(p, n) : coil__malloc(n);
}

/* ------------------------------------------------------------------ */
/* Making and freeing                                                   */
/* ------------------------------------------------------------------ */

int coil_stream_from_fd(int fd, coil_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!out)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    coil_loop_t *loop;
    if (coil_get_running_loop(&loop) != 0)
        return -EPERM;
    if (fcntl(fd, F_GETFD) < 0)
        return -EBADF;
    struct coil_stream *s = coil__malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    /* The loop's watch of fd made now, so that starting the background
     * sender later needs no memory of the loop's (see start_writer). */
    if (coil__io_adopt_fd(loop, fd)) {
        coil__free(s);
        return -ENOMEM;
    }
    memset(s, 0, sizeof(*s));
    s->refs = 1;
    s->loop = loop;
    s->fd = fd;
    s->limit = COIL_STREAM_LIMIT;
    s->high = COIL_STREAM_HIGH_WATER;
    s->low = COIL_STREAM_LOW_WATER;
    coil__sock_no_sigpipe(fd);
    coil__sock_nodelay(fd);
    *out = s;
    return 0;
}

coil_stream_t *coil_stream_ref(coil_stream_t *s)
{
    if (s)
        s->refs++;
    return s;
}

static void destroy(struct coil_stream *s)
{
    coil_future_unref(s->drain_fut);
    coil_future_unref(s->closed_fut);
    coil__free(s->rbuf);
    coil__free(s->wbuf);
    coil__free(s);
}

static void stop_writer(struct coil_stream *s)
{
    if (s->writer_on) {
        s->writer_on = false;
        if (!coil_loop_is_closed(s->loop))
            (void)coil_remove_writer(s->loop, s->fd);
    }
}

/* Close the fd now; whatever is unsent is dropped. Never frees s. */
static void finish_close(struct coil_stream *s)
{
    if (s->fd < 0)
        return;
    stop_writer(s);
    if (s->wlen) {
        s->dropped = true;
        s->wlen = 0;
        s->wpos = 0;
    }
    (void)coil_sock_close(s->fd);
    s->fd = -1;
    if (s->job_linked) {
        coil__io_job_remove(&s->job);
        s->job_linked = false;
    }
    coil__future_settle(&s->drain_fut);
    coil__future_settle(&s->closed_fut);
}

/* The loop closes with an orphaned stream still flushing. */
static void on_loop_close(struct coil__io_job *job)
{
    struct coil_stream *s = coil__container_of(job, struct coil_stream, job);
    s->job_linked = false; /* unlinked by the loop */
    s->writer_on = false;  /* the loop drops its watchers */
    s->wlen = 0;
    (void)coil_sock_close(s->fd);
    s->fd = -1;
    coil_future_unref(s->drain_fut);
    coil_future_unref(s->closed_fut);
    s->drain_fut = s->closed_fut = NULL;
    if (s->refs == 0)
        destroy(s);
}

static int start_writer(struct coil_stream *s);

/* Begin closing (close and the last unref). */
static void begin_close(struct coil_stream *s)
{
    s->closing = true;
    if (s->fd < 0)
        return;
    if (s->wlen == 0 || s->write_err || coil_loop_is_closed(s->loop) ||
        start_writer(s) != 0)
        finish_close(s);
    /* else the writer watcher sends the rest, then closes */
}

void coil_stream_unref(coil_stream_t *s)
{
    if (!s || --s->refs > 0)
        return;
    if (!s->closing)
        begin_close(s);
    if (s->fd >= 0) {
        /* Still flushing: the watcher owns it now. */
        coil__io_job_add(s->loop, &s->job);
        s->job.on_close = on_loop_close;
        s->job_linked = true;
        return;
    }
    destroy(s);
}

int coil_stream_fd(const coil_stream_t *s)
{
    return s ? s->fd : -1;
}

int coil_stream_close(coil_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (!s->closing)
        begin_close(s);
    return 0;
}

int coil_stream_abort(coil_stream_t *s)
{
    if (!s)
        return -EINVAL;
    s->closing = true;
    finish_close(s);
    return 0;
}

bool coil_stream_is_closing(const coil_stream_t *s)
{
    return s && s->closing;
}

/* ------------------------------------------------------------------ */
/* Reading                                                              */
/* ------------------------------------------------------------------ */

static bool sticky(int err)
{
    return err != -ECANCELED && err != -EBUSY && err != -ENOMEM &&
           err != -EPERM && err != -EINTR && err != -EAGAIN;
}

/* Checks shared by the reading calls: 0 if reading may go on. A closed
 * stream still gives what is buffered: only receiving more is refused
 * (recv_some). */
static int read_check(struct coil_stream *s)
{
    if (!s)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    if (s->reader)
        return -EBUSY;
    return 0;
}

/*
 * What a receive would return without touching the socket: -EBADF (the
 * stream is closed), the sticky read error, 0 (end of stream); or 1: it
 * must receive.
 */
static ssize_t settled(const struct coil_stream *s)
{
    if (s->closing || s->fd < 0)
        return -EBADF;
    if (s->read_err)
        return s->read_err;
    return s->eof ? 0 : 1;
}

/*
 * Receive up to n bytes into p: the one place a reading call suspends.
 * While it waits the stream is marked as being read, so that a second
 * task calling any reading function gets -EBUSY instead of taking bytes
 * out of the buffer under the first one. Returns > 0, 0 at end of stream
 * (s->eof set), -EBADF if the stream is or gets closed, or -errno (peer
 * errors stay: every later read returns them).
 *
 * After a receive that came up short the socket is most likely empty
 * (request/response traffic: the next request has not been sent yet), so
 * the next receive waits for readiness first instead of trying recv(2)
 * for an EAGAIN: one syscall less per request. A socket that filled the
 * room it was given (bulk data) is tried first, as usual.
 */
static ssize_t recv_some(struct coil_stream *s, void *p, size_t n)
{
    ssize_t r = settled(s);
    if (r <= 0)
        return r;
    s->reader = coil_current_task();
    r = 0;
    if (s->drained)
        r = coil__io_wait(s->loop, s->fd, COIL__EV_READ);
    if (r == 0)
        r = coil_sock_recv(s->fd, p, n);
    s->reader = NULL;
    s->drained = r > 0 && (size_t)r < n;
    if (r < 0 && (s->closing || s->fd < 0))
        return -EBADF;
    if (r == 0)
        s->eof = true;
    else if (r < 0 && sticky((int)r))
        s->read_err = (int)r;
    return r;
}

/*
 * Receive more into the read buffer, making room for at least `want`
 * bytes in all (the buffer grows to it). Returns > 0 (bytes received),
 * 0 at end of stream or -errno (recv_some).
 */
static ssize_t fill(struct coil_stream *s, size_t want)
{
    ssize_t r = settled(s);
    if (r <= 0)
        return r; /* before growing a buffer nothing will go into */
    if (s->rlen == 0)
        s->rpos = 0;
    size_t need = s->rlen + 1; /* room for one more byte at least */
    if (want > need)
        need = want;
    if (need < RBUF_MIN)
        need = RBUF_MIN;
    if (s->rcap - s->rpos - s->rlen < need - s->rlen) {
        if (s->rpos) {
            memmove(s->rbuf, s->rbuf + s->rpos, s->rlen);
            s->rpos = 0;
        }
        if (s->rcap < need) {
            char *nb = grow(s->rbuf, need);
            if (!nb)
                return -ENOMEM;
            s->rbuf = nb;
            s->rcap = need;
        }
    }
    size_t room = s->rcap - s->rpos - s->rlen;
    r = recv_some(s, s->rbuf + s->rpos + s->rlen, room);
    if (r > 0)
        s->rlen += (size_t)r;
    return r;
}

static void consume(struct coil_stream *s, void *buf, size_t n)
{
    if (n)
        memcpy(buf, s->rbuf + s->rpos, n);
    s->rpos += n;
    s->rlen -= n;
    if (s->rlen == 0)
        s->rpos = 0;
}

ssize_t coil_stream_read(coil_stream_t *s, void *buf, size_t n)
{
    int err = read_check(s);
    if (err)
        return err;
    if (!buf && n)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (s->rlen) {
        size_t k = s->rlen < n ? s->rlen : n;
        consume(s, buf, k);
        return (ssize_t)k;
    }
    /* Nothing buffered: receive straight into the caller's buffer. */
    return recv_some(s, buf, n);
}

int coil_stream_read_exactly(coil_stream_t *s, void *buf, size_t n,
                             size_t *got)
{
    if (got)
        *got = 0;
    int err = read_check(s);
    if (err)
        return err;
    if (!buf && n)
        return -EINVAL;
    while (s->rlen < n) {
        ssize_t r = fill(s, n);
        if (r < 0)
            return (int)r;
        if (r == 0) {
            size_t k = s->rlen;
            consume(s, buf, k);
            if (got)
                *got = k;
            return -EPIPE;
        }
    }
    consume(s, buf, n);
    if (got)
        *got = n;
    return 0;
}

/* Find sep in the buffer from offset from; the index or (size_t)-1. */
static size_t find(const struct coil_stream *s, const void *sep,
                   size_t seplen, size_t from)
{
    if (s->rlen < seplen || from > s->rlen - seplen)
        return (size_t)-1;
    const char *base = s->rbuf + s->rpos;
    const char *p = memmem(base + from, s->rlen - from, sep, seplen);
    return p ? (size_t)(p - base) : (size_t)-1;
}

static int readuntil(struct coil_stream *s, const void *sep, size_t seplen,
                     void *buf, size_t cap, size_t *len, bool line)
{
    if (len)
        *len = 0;
    int err = read_check(s);
    if (err)
        return err;
    if (!sep || !seplen || !len || (!buf && cap))
        return -EINVAL;
    size_t from = 0;
    for (;;) {
        size_t at = find(s, sep, seplen, from);
        if (at != (size_t)-1) {
            if (at > s->limit)
                return -EMSGSIZE;
            size_t total = at + seplen;
            *len = total;
            if (total > cap)
                return -ENOBUFS;
            consume(s, buf, total);
            return 0;
        }
        /* Not found: the next search starts where sep could begin. */
        from = s->rlen + 1 > seplen ? s->rlen + 1 - seplen : 0;
        if (from > s->limit)
            return -EMSGSIZE;
        ssize_t r = fill(s, s->limit + seplen);
        if (r < 0)
            return (int)r;
        if (r == 0) {
            *len = s->rlen;
            if (s->rlen > cap)
                return -ENOBUFS;
            consume(s, buf, s->rlen);
            return line ? 0 : -EPIPE;
        }
    }
}

int coil_stream_readuntil(coil_stream_t *s, const void *sep, size_t seplen,
                          void *buf, size_t cap, size_t *len)
{
    return readuntil(s, sep, seplen, buf, cap, len, false);
}

int coil_stream_readline(coil_stream_t *s, void *buf, size_t cap,
                         size_t *len)
{
    return readuntil(s, "\n", 1, buf, cap, len, true);
}

bool coil_stream_at_eof(const coil_stream_t *s)
{
    return s && s->eof && s->rlen == 0;
}

size_t coil_stream_read_buffered(const coil_stream_t *s)
{
    return s ? s->rlen : 0;
}

int coil_stream_set_limit(coil_stream_t *s, size_t limit)
{
    if (!s || limit == 0)
        return -EINVAL;
    s->limit = limit;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writing                                                              */
/* ------------------------------------------------------------------ */

/* send(2) once, without suspending: bytes sent, or -errno (-EAGAIN). */
static ssize_t raw_send(int fd, const char *buf, size_t n)
{
    for (;;) {
        ssize_t r = COIL__SYS(COIL__SYS_SEND,
                              send(fd, buf, COIL__CHAOS_LEN(fd, n),
                                   COIL__SEND_FLAGS | COIL__DONTWAIT));
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return coil__would_block(errno) ? -EAGAIN : -errno;
    }
}

/* The sender failed: everything buffered is lost; tell the drainers. */
static void fail_write(struct coil_stream *s, int err)
{
    s->write_err = err;
    s->wlen = 0;
    s->wpos = 0;
    stop_writer(s);
    coil__future_settle(&s->drain_fut);
}

static void do_shutdown(struct coil_stream *s)
{
    if (s->eof_done || s->fd < 0)
        return;
    s->eof_done = true;
    if (shutdown(s->fd, SHUT_WR) < 0 && errno != ENOTCONN)
        s->write_err = -errno;
}

/* Send what the socket takes now. Never frees s. */
static void flush_some(struct coil_stream *s)
{
    while (s->wlen) {
        ssize_t r = raw_send(s->fd, s->wbuf + s->wpos, s->wlen);
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            fail_write(s, (int)r);
            break;
        }
        s->wpos += (size_t)r;
        s->wlen -= (size_t)r;
    }
    if (s->wlen == 0) {
        s->wpos = 0;
        stop_writer(s);
        if (s->eof_requested && !s->write_err)
            do_shutdown(s);
    }
    if (s->wlen <= s->low)
        coil__future_settle(&s->drain_fut);
}

/* The writer watcher: the socket is writable. */
static void on_writable(void *arg)
{
    struct coil_stream *s = arg;
    flush_some(s);
    if (s->closing && (s->wlen == 0 || s->write_err)) {
        finish_close(s);
        if (s->refs == 0)
            destroy(s);
    }
}

static int reserve(struct coil_stream *s, size_t extra)
{
    if (extra > SIZE_MAX - s->wlen)
        return -ENOMEM;
    size_t need = s->wlen + extra;
    if (s->wpos + need <= s->wcap)
        return 0;
    if (need <= s->wcap) {
        memmove(s->wbuf, s->wbuf + s->wpos, s->wlen);
        s->wpos = 0;
        return 0;
    }
    size_t ncap = s->wcap ? s->wcap : RBUF_MIN;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (s->wpos) {
        memmove(s->wbuf, s->wbuf + s->wpos, s->wlen);
        s->wpos = 0;
    }
    char *nb = grow(s->wbuf, ncap);
    if (!nb)
        return -ENOMEM;
    s->wbuf = nb;
    s->wcap = ncap;
    return 0;
}

int coil_stream_write(coil_stream_t *s, const void *buf, size_t n)
{
    if (!s || (!buf && n))
        return -EINVAL;
    if (s->write_err)
        return s->write_err;
    if (s->closing || s->eof_requested || s->fd < 0)
        return -EPIPE;
    if (n == 0)
        return 0;
    /* Room for all of it first, so that a failure changes nothing. */
    int err = reserve(s, n);
    if (err)
        return err;
    const char *p = buf;
    if (s->wlen == 0 && !s->writer_on) {
        ssize_t r = raw_send(s->fd, p, n);
        if (r < 0 && r != -EAGAIN) {
            s->write_err = (int)r;
            return (int)r;
        }
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        }
        if (n == 0)
            return 0;
    }
    memcpy(s->wbuf + s->wpos + s->wlen, p, n);
    s->wlen += n;
    if ((err = start_writer(s)) && p == buf)
        s->wlen -= n; /* nothing of buf went out: take it back */
    /* else if err, a prefix went out: the rest stays buffered for the
     * sender that drain, the next write or close starts */
    return err;
}

/*
 * Make sure the writer watcher runs while data is buffered. Its watch was
 * made with the stream, so on epoll this cannot fail for want of the
 * loop's memory; a backend that allocates per watcher (poll) or the
 * kernel (epoll_ctl) still may, and then the data stays buffered and the
 * next write, drain or close tries again.
 */
static int start_writer(struct coil_stream *s)
{
    if (s->writer_on || s->wlen == 0)
        return 0;
    int err = coil_add_writer(s->loop, s->fd, on_writable, s);
    if (!err)
        s->writer_on = true;
    return err;
}

int coil_stream_drain(coil_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    coil_stream_ref(s);
    /* A sender that could not be started by write is started here: if
     * it still cannot be, say so (the data stays buffered). */
    int err = s->write_err || s->fd < 0 ? 0 : start_writer(s);
    while (!err && !s->write_err && s->fd >= 0 && s->wlen > s->high) {
        if (!s->drain_fut && (err = coil_future_new(s->loop, &s->drain_fut)))
            break;
        coil_future_t *f = coil_future_ref(s->drain_fut);
        err = coil_shield(f, NULL);
        coil_future_unref(f);
        if (err)
            break;
        if (s->wlen <= s->low)
            break;
    }
    if (!err) {
        if (s->write_err)
            err = s->write_err;
        else if (s->dropped)
            err = -EPIPE;
    }
    coil_stream_unref(s);
    return err;
}

int coil_stream_set_write_limits(coil_stream_t *s, size_t high, size_t low)
{
    if (!s || low > high)
        return -EINVAL;
    s->high = high;
    s->low = low;
    if (s->wlen <= low)
        coil__future_settle(&s->drain_fut);
    return 0;
}

size_t coil_stream_write_buffered(const coil_stream_t *s)
{
    return s ? s->wlen : 0;
}

int coil_stream_write_eof(coil_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (s->closing || s->fd < 0)
        return -EPIPE;
    if (s->write_err)
        return s->write_err;
    if (s->eof_requested)
        return 0;
    if (s->wlen) {
        /* The sender shuts the socket once the buffer is out. */
        int err = start_writer(s);
        if (err)
            return err; /* nothing changed: try again */
        s->eof_requested = true;
        return 0;
    }
    s->eof_requested = true;
    s->eof_done = true;
    if (shutdown(s->fd, SHUT_WR) < 0)
        return -errno;
    return 0;
}

int coil_stream_wait_closed(coil_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    if (s->fd < 0)
        return 0;
    coil_stream_ref(s);
    int err = 0;
    if (!s->closed_fut)
        err = coil_future_new(s->loop, &s->closed_fut);
    if (!err) {
        coil_future_t *f = coil_future_ref(s->closed_fut);
        err = coil_shield(f, NULL);
        coil_future_unref(f);
    }
    coil_stream_unref(s);
    return err;
}

static int address(const coil_stream_t *s, struct sockaddr_storage *addr,
                   bool peer)
{
    if (!s || !addr)
        return -EINVAL;
    if (s->fd < 0)
        return -EBADF;
    socklen_t len = sizeof(*addr);
    memset(addr, 0, sizeof(*addr));
    int r = peer ? getpeername(s->fd, (struct sockaddr *)addr, &len)
                 : getsockname(s->fd, (struct sockaddr *)addr, &len);
    if (r < 0)
        return -errno;
    return (int)len;
}

int coil_stream_peer_address(const coil_stream_t *s,
                             struct sockaddr_storage *addr)
{
    return address(s, addr, true);
}

int coil_stream_local_address(const coil_stream_t *s,
                              struct sockaddr_storage *addr)
{
    return address(s, addr, false);
}

/* ------------------------------------------------------------------ */
/* Connecting                                                           */
/* ------------------------------------------------------------------ */

/* A socket of family connected to addr, wrapped in a stream. */
static int connect_to(int family, const struct sockaddr *addr,
                      socklen_t len, coil_stream_t **out)
{
    int fd = coil_socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = coil_sock_connect(fd, addr, len);
    if (!err)
        err = coil_stream_from_fd(fd, out);
    if (err)
        (void)coil_sock_close(fd);
    return err;
}

/*
 * The connection race (connect.h). One child task per attempt, in a task
 * group owned by the racing task: the group guarantees that every attempt
 * has finished before the race returns, whatever happens to the caller
 * (cancelled, timed out, out of memory), so no socket outlives it except
 * the winner's. The attempts never fail as far as the group is concerned
 * (a failure must not cancel the siblings): each records its outcome in
 * its struct attempt and returns 0.
 */
struct attempt {
    const struct addrinfo *ai;
    const bool *over;  /* the race is decided: a late winner closes itself */
    coil_task_t *task; /* NULL until started */
    int fd;            /* connected socket, or -1 */
    int err;           /* its failure, or 0 */
    bool finished;     /* fn ran to its end (a task cancelled before it
                          started never runs fn) */
};

static int attempt_run(void *arg)
{
    struct attempt *a = arg;
    int fd = coil_socket(a->ai->ai_family, SOCK_STREAM, 0);
    int err = fd;
    if (fd >= 0)
        err = coil_sock_connect(fd, a->ai->ai_addr, a->ai->ai_addrlen);
    /* Connected after the race was decided (the cancel lost to the
     * connect's completion): nobody will take this socket. */
    if (err == 0 && *a->over)
        err = -ECANCELED;
    if (err) {
        if (fd >= 0)
            (void)coil_sock_close(fd);
        a->err = err;
    } else {
        a->fd = fd;
    }
    a->finished = true;
    return 0;
}

/* The single-address case: no race, no task. */
static int connect_one(const struct addrinfo *ai, int *fd_out)
{
    int fd = coil_socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = coil_sock_connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (err) {
        (void)coil_sock_close(fd);
        return err;
    }
    *fd_out = fd;
    return 0;
}

int coil__connect_race(const struct addrinfo *list, int64_t delay_ns,
                       int *fd_out)
{
    if (fd_out)
        *fd_out = -1;
    if (!fd_out)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    size_t n = 0;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
        n++;
    if (n == 0)
        return -ENOENT;
    if (n == 1)
        return connect_one(list, fd_out);

    struct attempt *at = coil__calloc(n, sizeof(*at));
    coil_future_t **futs = coil__calloc(n, sizeof(*futs));
    coil_group_t *g = NULL;
    int err = (!at || !futs) ? -ENOMEM : coil_group_new(&g);
    if (err) {
        coil__free(at);
        coil__free(futs);
        return err;
    }
    bool over = false;
    size_t i = 0;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next, i++) {
        at[i].ai = ai;
        at[i].over = &over;
        at[i].fd = -1;
    }

    size_t started = 0;
    ssize_t winner = -1;
    for (;;) {
        /* Start the next address: at first, after a failure, and after
         * the delay with no outcome. */
        if (started < n) {
            err = coil_group_spawn(g, attempt_run, &at[started], NULL,
                                   &at[started].task);
            if (err)
                break;
            started++;
        }
        size_t m = 0;
        for (size_t k = 0; k < started; k++)
            if (!at[k].finished)
                futs[m++] = coil_task_future(at[k].task);
        if (m == 0 && started == n) {
            err = at[0].err;
            break;
        }
        if (m > 0) {
            int r = coil_wait(futs, m, COIL_FIRST_COMPLETED,
                              started < n ? delay_ns : -1);
            if (r < 0) {
                err = r;
                break;
            }
        }
        for (size_t k = 0; k < started && winner < 0; k++)
            if (at[k].fd >= 0)
                winner = (ssize_t)k;
        if (winner >= 0) {
            err = 0;
            break;
        }
        bool all_done = true;
        for (size_t k = 0; k < started; k++)
            all_done = all_done && at[k].finished;
        if (all_done && started == n) {
            err = at[0].err;
            break;
        }
    }

    /* Decided: stop the others and wait for them (the group does, even
     * if this task is cancelled meanwhile). */
    over = true;
    (void)coil_group_cancel(g);
    int w = coil_group_wait(g);
    if (w == -ECANCELED && err == 0)
        err = -ECANCELED;
    coil_group_free(g);
    for (size_t k = 0; k < started; k++) {
        if (at[k].fd >= 0 && (err || (ssize_t)k != winner))
            (void)coil_sock_close(at[k].fd);
        coil_task_unref(at[k].task);
    }
    if (!err)
        *fd_out = at[winner].fd;
    coil__free(at);
    coil__free(futs);
    return err;
}

int coil_open_connection(const char *host, const char *port,
                         coil_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!out || (!host && !port))
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    struct addrinfo *res;
    int err = coil_getaddrinfo(host, port, &hints, &res);
    if (err)
        return err;
    int fd;
    err = coil__connect_race(res, COIL__CONNECT_DELAY, &fd);
    coil_freeaddrinfo(res);
    if (err)
        return err;
    err = coil_stream_from_fd(fd, out);
    if (err)
        (void)coil_sock_close(fd);
    return err;
}

static int unix_address(const char *path, struct sockaddr_un *sun,
                       socklen_t *len)
{
    if (!path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof(sun->sun_path))
        return -ENAMETOOLONG;
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int coil_open_unix_connection(const char *path, coil_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!out)
        return -EINVAL;
    struct sockaddr_un sun;
    socklen_t len;
    int err = unix_address(path, &sun, &len);
    if (err)
        return err;
    if (!coil_current_task())
        return -EPERM;
    return connect_to(AF_UNIX, (struct sockaddr *)&sun, len, out);
}
