/* SPDX-License-Identifier: MIT */
/*
 * stream.c - buffered streams over sockets (coil/stream.h).
 *
 * Reading is done by the reading task itself, receiving into the stream's
 * read buffer (or straight into the caller's buffer when nothing is
 * buffered and the caller takes whatever comes). The only suspension
 * point is the wait on the stream's watch before a recv(2): once bytes are
 * out of the kernel they are in a buffer and no cancel can lose them.
 * Calls that need several chunks (readuntil, read_exactly, read_all)
 * gather them in the stream's buffer and consume only when they return
 * success. The buffer grows with the data, at most doubling per receive,
 * so what a peer announces never decides an allocation by itself.
 *
 * Writing is asyncio's transport: write sends at once what the socket
 * takes when nothing is queued, buffers the rest, and the watch's writer
 * (a lasting user, called from the poll) sends the buffer whenever the
 * socket is writable, then stops. Drain waits on a future shared by every
 * draining task (awaited with coil_shield: one task's cancel must not
 * complete it for the others), completed when the buffer falls to the
 * low-water mark, when the sender fails, or when the stream closes.
 *
 * Lifecycle, one state changed by set_state:
 *
 *   OPEN ---close---> CLOSING ---buffer sent, or sender failed---> CLOSED
 *     \                                                          /
 *      +------ abort, close with nothing to send, loop close ---+
 *
 * Leaving OPEN stops receiving at once: a task waiting to read wakes with
 * -EBADF, a drainer with -EPIPE if data is still unsent; what was received
 * stays readable. In CLOSING the writer still flushes; CLOSED has closed
 * the fd (through the watch, once) and dropped what was unsent.
 *
 * Lifetime: user_refs counts the users (coil_stream_ref/unref; the last
 * one closes the stream), refs the holders of its memory: the users (one
 * hold while there are any), each call suspended on the stream (so that
 * the last unref may come from another task meanwhile: the call wakes
 * with -EBADF and returns before the memory goes), and the writer while it
 * flushes a stream that is CLOSING (the stream lives on until CLOSED).
 * The stream holds a reference on its loop. Every stream not CLOSED is a
 * close hook of its loop: closing the loop closes it.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "coil/stream.h"
#include "connect.h"
#include "loop_internal.h"
#include "net_internal.h"
#include "stream_internal.h"
#include "sys.h"
#include "watch_wait.h"

/* The smallest read buffer, and the first size of the write buffer. */
#define RBUF_MIN 4096

enum stream_state {
    OPEN,
    CLOSING,
    CLOSED,
};

struct coil_stream {
    unsigned refs;             /* holders of the memory (see the top) */
    unsigned user_refs;        /* coil_stream_ref / coil_stream_unref */
    unsigned calls;            /* of refs: calls that may be suspended */
    bool flush_hold;           /* the writer holds one of refs */
    uint8_t state;             /* enum stream_state */
    struct coil_loop *loop;    /* referenced */
    int fd;                    /* -1 over a transport */
    /* Over a transport (stream_internal.h) instead of an fd: its calls
     * replace the fd's below, and the watch is unused. */
    const struct coil__transport_ops *tp;
    void *tp_arg;
    bool sock;                 /* a socket (or a transport): recv/send;
                                  else read/write */
    bool fifo;                 /* a pipe or FIFO (write_eof closes it) */
    bool was_blocking;         /* not a socket, and O_NONBLOCK was off:
                                  it is put back at the close */
    bool detached;             /* the fd was handed on: not closed */
    bool aborted;              /* abort: the transport ends abruptly */
    struct coil__watch watch;  /* of fd, bound until CLOSED */
    struct coil__close_hook hook; /* linked until CLOSED */
    /* reading */
    char *rbuf;
    size_t rpos, rlen, rcap; /* data is rbuf[rpos, rpos + rlen) */
    size_t limit;
    coil_task_t *reader;  /* the task suspended reading, or NULL */
    bool drained;         /* the last receive came up short */
    size_t last_got;      /* what it brought (0: none yet, or failed) */
    bool eof;             /* the peer ended the stream */
    int read_err;         /* a sticky read error (-ECONNRESET...) or 0 */
    /* writing */
    char *wbuf;
    size_t wpos, wlen, wcap;
    size_t high, low;
    int write_err;        /* the sender's failure, or 0 */
    bool eof_requested;   /* write_eof called */
    bool eof_done;        /* shutdown(SHUT_WR) issued */
    bool dropped;         /* closed with unsent data discarded */
    coil_future_t *drain_fut;  /* shared by draining tasks, or NULL */
    coil_future_t *closed_fut; /* for wait_closed, or NULL */
};

static void *grow(void *p, size_t n)
{
    return p ? coil__realloc(p, n) : coil__malloc(n);
}

/* a + b, or SIZE_MAX if that overflows (a limit of SIZE_MAX is allowed). */
static size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static void on_loop_close(struct coil__close_hook *hook);
static void on_writable(void *arg, int result);
static int start_writer(struct coil_stream *s);
static void stop_writer(struct coil_stream *s);
static void take_tp_error(struct coil_stream *s);
static void close_now(struct coil_stream *s);

/* Bytes the transport took but has not handed to the kernel yet (TLS's
 * records): part of what is unsent, for drain and close. */
static size_t tp_pending(const struct coil_stream *s)
{
    /* CLOSED: the transport is gone (a drainer woken by an abort). */
    return s->tp && s->tp->pending && s->state != CLOSED
               ? s->tp->pending(s->tp_arg)
               : 0;
}

/* Everything written and not yet handed to the kernel: the stream's
 * buffer and the transport's. What drain and the water marks count. */
static size_t unsent(const struct coil_stream *s)
{
    return s->wlen + tp_pending(s);
}

static bool all_sent(const struct coil_stream *s)
{
    return unsent(s) == 0;
}

/* ------------------------------------------------------------------ */
/* Making, states, freeing                                              */
/* ------------------------------------------------------------------ */

/*
 * fd may be a stream: a stream socket that is not listening, or a pipe,
 * FIFO, tty or other character device. A regular file, a directory or a
 * block device is always "ready", so the loop cannot wait on it: -EINVAL
 * (read those with coil_to_thread). Made non-blocking if it was not
 * (*was_blocking says so). 0, or -EBADF, -EPROTOTYPE (not SOCK_STREAM),
 * -EINVAL.
 */
static int check_stream_fd(int fd, bool *sock, bool *fifo, bool *was_blocking)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *sock = S_ISSOCK(st.st_mode);
    *fifo = S_ISFIFO(st.st_mode);
    if (*sock) {
        int v = 0;
        socklen_t len = sizeof(v);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0)
            return -errno;
        if (v != SOCK_STREAM)
            return -EPROTOTYPE;
#ifdef SO_ACCEPTCONN
        len = sizeof(v);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v)
            return -EINVAL;
#endif
    } else if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        return -EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    *was_blocking = !*sock && !(fl & O_NONBLOCK);
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* A pipe's or tty's O_NONBLOCK is its open file description's, shared with
 * whoever else has it (the shell, for stdin): put it back as it was, at
 * the close or when the open fails after setting it. */
static void restore_blocking(int fd, bool was_blocking)
{
    if (!was_blocking)
        return;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* What every stream starts with, on loop: one user, OPEN, the default
 * limits, closed with the loop. */
static void start(struct coil_stream *s, struct coil_loop *loop)
{
    s->refs = 1;
    s->user_refs = 1;
    s->state = OPEN;
    s->loop = loop;
    coil__loop_ref(loop);
    s->limit = COIL_STREAM_LIMIT;
    s->high = COIL_STREAM_HIGH_WATER;
    s->low = COIL_STREAM_LOW_WATER;
    s->hook.on_close = on_loop_close;
    coil__loop_on_close(loop, &s->hook);
}

int coil_stream_open_fd(int fd, coil_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!out)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    coil_loop_t *loop;
    if (!(loop = coil_running_loop()))
        return -EPERM;
    bool sock = false, fifo = false, was_blocking = false;
    int err = check_stream_fd(fd, &sock, &fifo, &was_blocking);
    if (err)
        return err;
    struct coil_stream *s = coil__calloc(1, sizeof(*s));
    if (!s) {
        restore_blocking(fd, was_blocking);
        return -ENOMEM;
    }
    /* Bound now, so that starting the writer later needs no memory of the
     * loop's (on epoll; see start_writer). -EBUSY if another coil object
     * owns fd. */
    err = coil__watch_init(&s->watch, loop, fd, COIL__WATCH_OWNED);
    if (err) {
        coil__free(s);
        restore_blocking(fd, was_blocking);
        return err;
    }
    s->sock = sock;
    s->fifo = fifo;
    s->was_blocking = was_blocking;
    s->fd = fd;
    start(s, loop);
    if (sock) {
        coil__sock_no_sigpipe(fd);
        coil__sock_nodelay(fd);
    }
    *out = s;
    return 0;
}

int coil__stream_open_transport(const struct coil__transport_ops *ops,
                                void *t, coil_loop_t *loop,
                                coil_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!ops || !out)
        return -EINVAL;
    if (!loop && !(loop = coil_running_loop()))
        return -EPERM;
    if (coil__loop_closed(loop))
        return -EINVAL;
    struct coil_stream *s = coil__calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->tp = ops;
    s->tp_arg = t;
    s->sock = true;
    s->fd = -1;
    start(s, loop);
    *out = s;
    return 0;
}

int coil__stream_detach(coil_stream_t *s, int *fd_out, char **rest,
                        size_t *rest_len)
{
    *fd_out = -1;
    *rest = NULL;
    *rest_len = 0;
    if (!s || s->tp || !s->sock)
        return -EINVAL;
    if (s->state != OPEN || s->eof_requested)
        return -EPIPE;
    if (s->write_err)
        return s->write_err;
    /* A receive a cancelled read left in flight may still bring bytes
     * that belong after rest. */
    ssize_t rx = coil__watch_recv_peek(&s->watch);
    if (s->reader || s->wlen || rx == -EINPROGRESS)
        return -EBUSY;
    if (rx < 0 && rx != -EAGAIN && rx != -ENOBUFS)
        return (int)rx; /* a reset a receive met: the connection's end */
    size_t kept = rx > 0 ? (size_t)rx : 0;
    if (s->rlen || kept) {
        if (!(*rest = coil__malloc(s->rlen + kept)))
            return -ENOMEM;
        if (s->rlen)
            memcpy(*rest, s->rbuf + s->rpos, s->rlen);
        if (kept)
            (void)coil__watch_recv_take(&s->watch, *rest + s->rlen, kept);
        *rest_len = s->rlen + kept;
        s->rlen = 0;
        s->rpos = 0;
    }
    *fd_out = s->fd;
    s->detached = true;
    close_now(s); /* the caller's reference keeps s */
    return 0;
}

void *coil__stream_transport(const coil_stream_t *s,
                             const struct coil__transport_ops *ops)
{
    return s && s->tp == ops && s->state != CLOSED ? s->tp_arg : NULL;
}

/*
 * A stream used after its memory went (its last unref, then its last
 * call): debug mode keeps the memory poisoned a while (destroy), and
 * every public call checks for the poison first.
 */
static COIL__COLD _Noreturn void used_after_free(const void *s,
                                                 const char *call)
{
    coil__misuse(NULL,
                 "%s(%p): the stream was used after its last unref (its "
                 "memory is gone)",
                 call, s);
}

#define STREAM_CHECK(s, call)                                                  \
    do {                                                                       \
        if ((s) && coil__unlikely((s)->user_refs == COIL__POISON32))           \
            used_after_free(s, call);                                          \
    } while (0)

coil_stream_t *coil_stream_ref(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_ref");
    if (!s)
        return NULL;
    if (s->user_refs == 0) {
        coil__loop_report(s->loop, 0,
                          "coil_stream_ref on a stream whose last reference "
                          "was dropped");
        return NULL;
    }
    s->user_refs++;
    return s;
}

static void destroy(struct coil_stream *s);

/* Drop a hold on the memory; the last frees the stream. */
static void release(struct coil_stream *s)
{
    if (--s->refs == 0)
        destroy(s);
}

/* A call that may suspend holds the memory until it returns. */
static void hold(struct coil_stream *s)
{
    s->refs++;
    s->calls++;
}

static void unhold(struct coil_stream *s)
{
    s->calls--;
    release(s);
}

static void stream_release(struct coil_loop *loop, void *s)
{
    (void)loop;
    coil__free(s);
}

static void destroy(struct coil_stream *s)
{
    struct coil_loop *loop = s->loop;
    coil_future_unref(s->drain_fut);
    coil_future_unref(s->closed_fut);
    coil__free(s->rbuf);
    coil__free(s->wbuf);
    if (coil__likely(!coil__loop_debug_on(loop)) ||
        !coil__debug_quarantine(loop, s, sizeof(*s), stream_release))
        coil__free(s);
    coil__loop_unref(loop);
}

/*
 * The one transition function (see the top). Never frees s. Going to
 * CLOSED closes the fd; its unsent data is dropped (dropped says so).
 */
static void set_state(struct coil_stream *s, enum stream_state to)
{
    enum stream_state from = s->state;
    if (to <= from)
        return;
    bool held = to == CLOSED && tp_pending(s) > 0; /* before: then gone */
    s->state = (uint8_t)to;
    if (from == OPEN) {
        /* Nothing more is received: a waiting reader wakes (-EBADF), and
         * so do the drainers (the drain future is done). */
        if (s->tp)
            s->tp->shut_read(s->tp_arg);
        else
            coil__watch_shut(&s->watch, COIL__EV_READ);
        coil__future_settle(&s->drain_fut);
    }
    if (to == CLOSED) {
        stop_writer(s);
        if (s->wlen) {
            s->dropped = true;
            s->wlen = 0;
            s->wpos = 0;
        }
        if (s->tp) {
            /* Clean: everything written went out, nothing aborted. What
             * the transport still holds goes only with a clean close. */
            bool clean = !s->dropped && !s->write_err && !s->aborted;
            if (!clean && held)
                s->dropped = true;
            s->tp->close(s->tp_arg, clean);
        } else {
            coil__watch_close(&s->watch);
            if (!s->detached) {
                restore_blocking(s->fd, s->was_blocking);
                (void)close(s->fd); /* once, whatever it says */
            }
        }
        coil__loop_on_close_cancel(&s->hook);
        coil__future_settle(&s->closed_fut);
    }
}

static void close_now(struct coil_stream *s);

/* Closing (close, and the last unref): flush first if there is anything
 * to flush and a writer to flush it; the writer holds the stream until
 * it is done. Never frees s. */
static void begin_close(struct coil_stream *s)
{
    if (s->state != OPEN)
        return;
    take_tp_error(s);
    set_state(s, CLOSING);
    if (all_sent(s) || s->write_err || start_writer(s) != 0) {
        close_now(s); /* the caller's hold keeps s */
        return;
    }
    s->flush_hold = true;
    s->refs++;
}

/* Close at once (abort, the loop's close, the flush's end); the writer's
 * hold goes, which may free s. On a closed loop every task was abandoned
 * first: a call still suspended on the stream will never return, so its
 * hold goes too. */
static void close_now(struct coil_stream *s)
{
    set_state(s, CLOSED);
    if (coil__loop_closed(s->loop) && s->calls) {
        s->refs -= s->calls - 1; /* the last one goes through release */
        s->calls = 0;
        s->reader = NULL;
        release(s);
    }
    if (s->flush_hold) {
        s->flush_hold = false;
        release(s);
    }
}

/* The loop closes: so does the stream, at once. */
static void on_loop_close(struct coil__close_hook *hook)
{
    close_now(coil__container_of(hook, struct coil_stream, hook));
}

void coil_stream_unref(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_unref");
    if (!s)
        return;
    if (s->user_refs == 0) {
        coil__loop_report(s->loop, 0,
                          "coil_stream_unref on a stream with no reference "
                          "left (unref'd once too often)");
        return;
    }
    if (--s->user_refs > 0)
        return;
    begin_close(s);
    release(s); /* the users' hold */
}

int coil_stream_fd(const coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_fd");
    return s && s->state != CLOSED ? s->fd : -1;
}

int coil_stream_close(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_close");
    if (!s)
        return -EINVAL;
    begin_close(s);
    return 0;
}

int coil_stream_abort(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_abort");
    if (!s)
        return -EINVAL;
    s->aborted = true;
    close_now(s); /* the caller's hold keeps s */
    return 0;
}

bool coil_stream_is_closing(const coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_is_closing");
    return s && s->state != OPEN;
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
 * stream is closing or closed), the sticky read error, 0 (end of stream);
 * or 1: it must receive.
 */
static ssize_t settled(const struct coil_stream *s)
{
    if (s->state != OPEN)
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
    if (s->tp)
        r = s->tp->recv(s->tp_arg, p, n, s->drained);
    else if (s->sock)
        r = coil__sock_recv_owned(&s->watch, s->fd, p, n, s->drained,
                                  s->last_got);
    else {
        if (s->drained)
            r = coil__sock_wait(&s->watch, s->fd, COIL__EV_READ);
        if (r == 0)
            r = coil__fd_read(&s->watch, s->fd, p, n);
    }
    s->reader = NULL;
    s->drained = r > 0 && (size_t)r < n;
    s->last_got = r > 0 ? (size_t)r : 0;
    if (r < 0 && s->state != OPEN)
        return -EBADF;
    if (r == 0)
        s->eof = true;
    else if (r < 0 && sticky((int)r))
        s->read_err = (int)r;
    return r;
}

/*
 * Receive more into the read buffer, which is to hold `want` bytes in all
 * in the end. The buffer grows towards that with the data, at most
 * doubling per receive, and always has room for one more byte. Returns
 * > 0 (bytes received), 0 at end of stream or -errno (recv_some).
 */
static ssize_t fill(struct coil_stream *s, size_t want)
{
    ssize_t r = settled(s);
    if (r <= 0)
        return r; /* before growing a buffer nothing will go into */
    if (s->rlen == 0)
        s->rpos = 0;
    size_t step = s->rcap < RBUF_MIN / 2   ? RBUF_MIN
                  : s->rcap > SIZE_MAX / 2 ? SIZE_MAX
                                           : 2 * s->rcap;
    size_t need = want < step ? want : step;
    if (need <= s->rlen)
        need = s->rlen + 1;
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

/*
 * The reading calls are wrappers that hold the stream's memory while the
 * call may suspend (the last unref may come meanwhile), around these.
 */
static ssize_t read_some(coil_stream_t *s, void *buf, size_t n)
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

static int read_exactly(coil_stream_t *s, void *buf, size_t n, size_t *got)
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

static int read_all(coil_stream_t *s, void *buf, size_t cap, size_t *len)
{
    if (len)
        *len = 0;
    int err = read_check(s);
    if (err)
        return err;
    if (!len || (!buf && cap))
        return -EINVAL;
    while (!s->eof) {
        if (s->rlen > s->limit)
            return -EMSGSIZE;
        ssize_t r = fill(s, add_sat(s->limit, 1));
        if (r < 0)
            return (int)r;
    }
    *len = s->rlen;
    if (s->rlen > cap)
        return -ENOBUFS;
    consume(s, buf, s->rlen);
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
        ssize_t r = fill(s, add_sat(s->limit, seplen));
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

ssize_t coil_stream_read(coil_stream_t *s, void *buf, size_t n)
{
    STREAM_CHECK(s, "coil_stream_read");
    if (s)
        hold(s);
    ssize_t r = read_some(s, buf, n);
    if (s)
        unhold(s);
    return r;
}

int coil_stream_read_exactly(coil_stream_t *s, void *buf, size_t n,
                             size_t *got)
{
    STREAM_CHECK(s, "coil_stream_read_exactly");
    if (s)
        hold(s);
    int r = read_exactly(s, buf, n, got);
    if (s)
        unhold(s);
    return r;
}

int coil_stream_read_all(coil_stream_t *s, void *buf, size_t cap,
                         size_t *len)
{
    STREAM_CHECK(s, "coil_stream_read_all");
    if (s)
        hold(s);
    int r = read_all(s, buf, cap, len);
    if (s)
        unhold(s);
    return r;
}

static int readuntil_held(coil_stream_t *s, const void *sep, size_t seplen,
                          void *buf, size_t cap, size_t *len, bool line)
{
    if (s)
        hold(s);
    int r = readuntil(s, sep, seplen, buf, cap, len, line);
    if (s)
        unhold(s);
    return r;
}

int coil_stream_readuntil(coil_stream_t *s, const void *sep, size_t seplen,
                          void *buf, size_t cap, size_t *len)
{
    STREAM_CHECK(s, "coil_stream_readuntil");
    return readuntil_held(s, sep, seplen, buf, cap, len, false);
}

int coil_stream_readline(coil_stream_t *s, void *buf, size_t cap,
                         size_t *len)
{
    STREAM_CHECK(s, "coil_stream_readline");
    return readuntil_held(s, "\n", 1, buf, cap, len, true);
}

bool coil_stream_at_eof(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_at_eof");
    if (!s || s->rlen)
        return false;
    if (s->eof)
        return true;
    if (s->state != OPEN || s->read_err)
        return false;
    /* Reading is lazy (only a reading call receives), so the end may be
     * waiting in the socket behind the last byte read: look, without
     * taking anything. A pipe cannot be peeked at: what is there is
     * taken into the buffer instead (where the next read finds it). */
    ssize_t r;
    if (s->tp) {
        r = s->tp->peek(s->tp_arg);
        if (r < 0) {
            errno = (int)-r;
            r = -1;
        }
    } else if (s->sock) {
        /* What a receive by completion brought is kept by the watch. */
        ssize_t rx = coil__watch_recv_peek(&s->watch);
        if (rx == -EINPROGRESS)
            return false; /* it may hold bytes taken before what a peek
                             would see: its completion tells */
        if (rx == 0) {
            s->eof = true;
            return true;
        }
        if (rx > 0 || (rx != -EAGAIN && rx != -ENOBUFS))
            return false; /* bytes, or an error for the next read */
        char c;
        r = COIL__RR_IN(COIL__SYS_RECV, &c, 1, NULL, NULL,
                        recv(s->fd, &c, 1, MSG_PEEK | COIL__DONTWAIT));
    } else {
        /* A task reading takes what comes in (into its own buffer, or
         * gathering in ours): nothing to take from under it. */
        if (s->reader)
            return false;
        if (s->rcap == 0) {
            char *b = grow(s->rbuf, 64);
            if (!b)
                return false;
            s->rbuf = b;
            s->rcap = 64;
        }
        s->rpos = 0;
        do
            r = COIL__RR_IN(
                COIL__SYS_RECV, s->rbuf, s->rcap, NULL, NULL,
                COIL__SYS(COIL__SYS_RECV, read(s->fd, s->rbuf, s->rcap)));
        while (r < 0 && errno == EINTR);
        if (r > 0) {
            s->rlen = (size_t)r;
            return false;
        }
    }
    if (r == 0)
        s->eof = true;
    else if (r < 0 && !coil__would_block(errno) && sticky(-errno))
        s->read_err = -errno; /* the peek took it (a reset): keep it */
    return s->eof;
}

size_t coil_stream_read_buffered(const coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_read_buffered");
    return s ? s->rlen : 0;
}

int coil_stream_set_limit(coil_stream_t *s, size_t limit)
{
    STREAM_CHECK(s, "coil_stream_set_limit");
    if (!s || limit == 0)
        return -EINVAL;
    s->limit = limit;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Writing                                                              */
/* ------------------------------------------------------------------ */

/* send(2) once (write(2) if fd is no socket), without suspending: bytes
 * sent, or -errno (-EAGAIN). */
static ssize_t raw_send(const struct coil_stream *s, const char *buf,
                        size_t n)
{
    if (s->tp)
        return s->tp->send(s->tp_arg, buf, n);
    int fd = s->fd;
    if (!s->sock)
        return coil__fd_write_nosigpipe(fd, buf, n);
    for (;;) {
        ssize_t r = COIL__RR(
            COIL__SYS_SEND, -1, n,
            COIL__SYS(COIL__SYS_SEND,
                      send(fd, buf, COIL__CHAOS_LEN(fd, n),
                           COIL__SEND_FLAGS | COIL__DONTWAIT)));
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

/* End the sending side: shutdown(SHUT_WR), or the transport's. */
static int shut_write(struct coil_stream *s)
{
    if (s->tp)
        return s->tp->shutdown(s->tp_arg);
    return COIL__RR(COIL__SYS_SHUTDOWN, -1, 0, shutdown(s->fd, SHUT_WR)) < 0
               ? -errno
               : 0;
}

static void do_shutdown(struct coil_stream *s)
{
    if (s->eof_done || s->state == CLOSED || !s->sock)
        return;
    s->eof_done = true;
    int err = shut_write(s);
    if (err && err != -ENOTCONN)
        s->write_err = err;
}

/* An empty write buffer is given back: an idle connection keeps none. */
static void release_wbuf(struct coil_stream *s)
{
    coil__free(s->wbuf);
    s->wbuf = NULL;
    s->wpos = s->wcap = 0;
}

/* The transport failed to send what it had taken: that is the stream's
 * write error from now on (fail_write). */
static void take_tp_error(struct coil_stream *s)
{
    int err;
    if (s->tp && s->tp->send_error && s->state != CLOSED && !s->write_err &&
        (err = s->tp->send_error(s->tp_arg)) != 0)
        fail_write(s, err);
}

/* Send what the socket takes now. Never frees s. */
static void flush_some(struct coil_stream *s)
{
    take_tp_error(s);
    while (s->wlen) {
        ssize_t r = raw_send(s, s->wbuf + s->wpos, s->wlen);
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
        release_wbuf(s);
        if (s->eof_requested && !s->write_err)
            do_shutdown(s); /* a transport may queue its own end here */
        if (all_sent(s))
            stop_writer(s);
    }
    if (unsent(s) <= s->low)
        coil__future_settle(&s->drain_fut);
}

/* The writer: the socket is writable (0), or its fd was found gone. */
static void on_writable(void *arg, int result)
{
    struct coil_stream *s = arg;
    if (result < 0)
        fail_write(s, -EBADF);
    else
        flush_some(s);
    if (s->state == CLOSING && (all_sent(s) || s->write_err))
        close_now(s); /* may free s */
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

static bool writer_on(const struct coil_stream *s)
{
    if (s->tp)
        return s->tp->writer_busy(s->tp_arg);
    return coil__watch_busy(&s->watch, COIL__EV_WRITE);
}

static void stop_writer(struct coil_stream *s)
{
    if (s->tp)
        s->tp->writer_stop(s->tp_arg);
    else
        coil__watch_stop(&s->watch, COIL__EV_WRITE);
}

int coil_stream_write(coil_stream_t *s, const void *buf, size_t n)
{
    STREAM_CHECK(s, "coil_stream_write");
    if (!s || (!buf && n))
        return -EINVAL;
    if (s->write_err)
        return s->write_err;
    if (s->state != OPEN || s->eof_requested)
        return -EPIPE;
    if (n == 0)
        return 0;
    /* Nothing queued: straight to the kernel, and only what it does not
     * take is buffered. Request/response traffic never allocates, and an
     * idle stream holds no write buffer. */
    const char *p = buf;
    if (s->wlen == 0 && !writer_on(s)) {
        ssize_t r = raw_send(s, p, n);
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
    int err = reserve(s, n);
    if (err) {
        /* With a prefix gone, the rest cannot be taken back or kept: the
         * stream can write no more (the peer has a cut stream). */
        if (p != buf)
            fail_write(s, err);
        return err;
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
 * Make sure the writer runs while data is buffered. The watch was bound
 * with the stream, so on epoll this cannot fail for want of the loop's
 * memory; a backend that allocates per registration (poll) or the kernel
 * (epoll_ctl) still may, and then the data stays buffered and the next
 * write, drain or close tries again.
 */
static int start_writer(struct coil_stream *s)
{
    if (writer_on(s) || all_sent(s))
        return 0;
    if (s->tp)
        return s->tp->writer_start(s->tp_arg, on_writable, s);
    return coil__watch_start(&s->watch, COIL__EV_WRITE, on_writable, s, 0);
}

/* Wait until at most high is unsent, then on to low; coil_stream_drain's
 * errors. The writer wakes waiters at the stream's low-water mark and
 * below, so a caller asking for less waits again until it is reached. */
static int drain_to(struct coil_stream *s, size_t high, size_t low)
{
    hold(s);
    /* A sender that could not be started by write is started here: if
     * it still cannot be, say so (the data stays buffered). */
    take_tp_error(s);
    int err = s->write_err || s->state != OPEN ? 0 : start_writer(s);
    while (!err && !s->write_err && s->state == OPEN && unsent(s) > high) {
        if (!s->drain_fut && (err = coil_future_new(s->loop, &s->drain_fut)))
            break;
        coil_future_t *f = coil_future_ref(s->drain_fut);
        err = coil_shield(f, NULL);
        coil_future_unref(f);
        if (err)
            break;
        take_tp_error(s);
        if (unsent(s) <= low)
            break;
    }
    if (!err) {
        if (s->write_err)
            err = s->write_err;
        else if (s->dropped || (s->state != OPEN && unsent(s)))
            err = -EPIPE; /* closed with data still unsent */
    }
    unhold(s);
    return err;
}

int coil_stream_drain(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_drain");
    if (!s)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    return drain_to(s, s->high, s->low);
}

int coil__stream_flush(coil_stream_t *s)
{
    if (!s)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    int err = drain_to(s, 0, 0);
    if (err || s->tp || !s->sock || s->reader)
        return err;
    /* A receive a cancelled read left in flight: end it, so that what it
     * got is kept for detach and nothing comes in after. */
    hold(s);
    err = coil__watch_recv_settle(&s->watch);
    unhold(s);
    return err;
}

int coil_stream_set_write_limits(coil_stream_t *s, size_t high, size_t low)
{
    STREAM_CHECK(s, "coil_stream_set_write_limits");
    if (!s || low > high)
        return -EINVAL;
    s->high = high;
    s->low = low;
    if (unsent(s) <= low)
        coil__future_settle(&s->drain_fut);
    return 0;
}

int coil_stream_write_limits(const coil_stream_t *s, size_t *high_out,
                             size_t *low_out)
{
    STREAM_CHECK(s, "coil_stream_write_limits");
    if (!s)
        return -EINVAL;
    if (high_out)
        *high_out = s->high;
    if (low_out)
        *low_out = s->low;
    return 0;
}

size_t coil_stream_write_buffered(const coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_write_buffered");
    return s ? s->wlen : 0;
}

int coil_stream_write_eof(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_write_eof");
    if (!s)
        return -EINVAL;
    if (s->state != OPEN)
        return -EPIPE;
    if (s->write_err)
        return s->write_err;
    if (s->eof_requested)
        return 0;
    if (!s->sock) {
        /* A pipe's writing end ends the stream by closing; anything else
         * (a tty, a reading end) cannot be half-closed. */
        int fl = fcntl(s->fd, F_GETFL);
        if (fl < 0)
            return -errno;
        if (!s->fifo || (fl & O_ACCMODE) != O_WRONLY)
            return -ENOTSUP;
        s->eof_requested = true;
        return coil_stream_close(s);
    }
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
    return shut_write(s);
}

int coil_stream_wait_closed(coil_stream_t *s)
{
    STREAM_CHECK(s, "coil_stream_wait_closed");
    if (!s)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    if (s->state == CLOSED)
        return 0;
    hold(s);
    int err = 0;
    if (!s->closed_fut)
        err = coil_future_new(s->loop, &s->closed_fut);
    if (!err) {
        coil_future_t *f = coil_future_ref(s->closed_fut);
        err = coil_shield(f, NULL);
        coil_future_unref(f);
    }
    unhold(s);
    return err;
}

static int address(const coil_stream_t *s, struct sockaddr_storage *addr,
                   bool peer)
{
    if (!s || !addr)
        return -EINVAL;
    if (s->state == CLOSED)
        return -EBADF;
    memset(addr, 0, sizeof(*addr));
    if (s->tp)
        return s->tp->address(s->tp_arg, addr, peer);
    socklen_t len = sizeof(*addr);
    int r = peer ? getpeername(s->fd, (struct sockaddr *)addr, &len)
                 : getsockname(s->fd, (struct sockaddr *)addr, &len);
    if (r < 0)
        return -errno;
    return (int)len;
}

int coil_stream_peer_address(const coil_stream_t *s,
                             struct sockaddr_storage *addr)
{
    STREAM_CHECK(s, "coil_stream_peer_address");
    return address(s, addr, true);
}

int coil_stream_local_address(const coil_stream_t *s,
                              struct sockaddr_storage *addr)
{
    STREAM_CHECK(s, "coil_stream_local_address");
    return address(s, addr, false);
}

/* ------------------------------------------------------------------ */
/* Connecting                                                           */
/* ------------------------------------------------------------------ */

/* A connected fd's stream; on failure the fd is closed. */
static int wrap(int fd, coil_stream_t **out)
{
    int err = coil_stream_open_fd(fd, out);
    if (err)
        (void)coil_sock_close(fd);
    return err;
}

int coil_stream_open(const char *host, const char *port, coil_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!out || (!host && !port))
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    int fd;
    int err = coil__connect_host(host, port, &fd);
    if (err)
        return err;
    return wrap(fd, out);
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

int coil_stream_open_unix(const char *path, coil_stream_t **out)
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
    int fd = coil_sock_open(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    err = coil_sock_connect(fd, (struct sockaddr *)&sun, len);
    if (err) {
        (void)coil_sock_close(fd);
        return err;
    }
    return wrap(fd, out);
}
