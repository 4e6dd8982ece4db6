/* SPDX-License-Identifier: MIT */
/*
 * fuzz_api.c - a libFuzzer target for sequences of networking calls:
 * streams (coil/stream.h) over Unix socketpairs and over loopback TCP
 * through a coil server, raw socketpair fds with coil_sock_recv and
 * coil_sock_send_all (coil/net.h), and a pair of UDP endpoints
 * (coil/udp.h), driven by a script of operations in any order, with
 * cancellation, timeout scopes, injected syscall and allocation failures
 * and chaos I/O mixed in.
 *
 * One input is one run on a fresh loop. A driver task plays the script:
 * calls that do not suspend (write, write_eof, close, abort, unref,
 * set_limit, sends on UDP...) it makes itself; calls that may suspend it
 * hands to a worker task of their own, so that they overlap freely and
 * are cancelled or cut short by timeouts while waiting.
 *
 * The model. Every byte written is byte i of a pattern of its direction,
 * so a receiver checks that what it gets is exactly the next bytes sent,
 * in order, with nothing lost, duplicated or made up. A direction may
 * lose bytes at its end only where the headers say data is dropped: its
 * sender aborted, one end closed while bytes sent to it were unread (the
 * kernel then resets the connection), one end wrote after the other
 * closed, or an injected peer error (ECONNRESET, EPIPE...) fired. Every
 * call's result is checked against the set the header documents for it
 * in the state the model knows (-EBADF only once the end was closed,
 * -EBUSY only with another task reading, -EPIPE from write only after
 * close or write_eof, -ENOMEM only once an allocation failed, end of
 * stream only after the peer shut down and then only once everything
 * sent was received...). After the script, every surviving direction is
 * flushed (drain to an empty buffer, write_eof) and read to its end:
 * unless the direction may lose bytes, the receiver must get every byte
 * sent and then the end of the stream. Then everything is closed and the
 * loop freed: every allocation coil made must be freed and the number of
 * open fds back where it was. A safety timer turns a hang into an abort.
 *
 * Input layout (bytes past the end read as 0):
 *
 *   [0]    options: bit 0 small socket buffers on the socketpairs;
 *          bit 1 chaos I/O on from the start (when COIL_CHAOS_IO is set,
 *          or the target sets it: see chaos below)
 *   [1]    the number of operations, N (at most MAX_OPS)
 *   [2..]  N operations of 4 bytes: code, a, b, c
 *
 * Operations (code % OP_COUNT); "end" is a % 8: stream pair (end / 2),
 * side (end % 2). Pairs 0 and 1 are socketpairs, 2 and 3 TCP.
 *   write(end, b * (1 + c % 64) bytes)   read(end; kind c & 7, size b, c)
 *   drain(end)                           wait_closed(end)
 *   write_eof(end) close(end) abort(end) unref(end)
 *   set_limit(end, b + 256 * (c & 3))    set_write_limits(end, 64b, 64c)
 *   reopen(pair)                         raw send_all / recv / shutdown,
 *   close or reopen                      udp send / recv / close, reopen
 *   cancel(a worker)                     the next worker in a timeout
 *                                        scope of b * 50 us
 *   yield a % 8 times, or sleep b * 20 us
 *   server: close, close_clients, restart
 *   fail syscalls: coil_test_fail(op, nth, count, -errno)
 *   fail allocations: skip b, then fail 1 + c % 8
 *   chaos I/O on or off
 *
 * It links libcoil_testing for the testing kit's faults (coil/testing.h),
 * the chaos I/O switch of its syscall seam (src/sys.h) and its internal
 * asserts. FUZZ_API_TRACE=1 prints every operation and result.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil.h"
#include "coil/testing.h"
#include "fuzz_common.h"
#include "sys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 64
#define NPAIRS 4        /* stream pairs: 0-1 socketpairs, 2-3 TCP */
#define MAX_CONNS 16    /* stream pairs made in one run (reopen) */
#define MAX_RAW 4       /* raw socketpairs made in one run */
#define MAX_UDP 4       /* UDP pairs made in one run */
#define MAX_WORKERS 160
#define MAX_DGRAMS 64   /* datagrams sent per direction and UDP pair */
#define MAX_SERVERS 6
#define HANG_SECONDS 10

/* ------------------------------------------------------------------ */
/* The model                                                            */
/* ------------------------------------------------------------------ */

/* The bytes one end sends the other: byte i is pattern(seed, i). */
struct dir {
    uint64_t sent;     /* handed over (write returned 0, send_all's count) */
    uint64_t inflight; /* a send_all in progress may have sent this many */
    uint64_t recvd;    /* returned to the receiver so far */
    unsigned seed;
    bool shut;  /* the sender sends no more (write_eof, close, shutdown) */
    bool lossy; /* bytes may be lost at the end (see the top) */
    bool eof;   /* the receiver saw the end */
};

static uint8_t pattern(unsigned seed, uint64_t i)
{
    uint64_t k = i + seed;
    return (k * 7 % 61 == 0) ? '\n' : (uint8_t)('a' + k % 26);
}

/* One end of a stream pair. */
struct end {
    coil_stream_t *s; /* the model's reference; NULL once unref'd */
    bool closed;      /* close or abort was called */
    bool eof_sent;    /* write_eof returned 0 */
    bool nomem_write; /* a write said -ENOMEM with nothing buffered: the
                         stream may have failed for writing for good
                         (a prefix went, the rest could not be kept) */
    bool handled;     /* a server's end: its handler holds a reference
                         until the stream is closed, so dropping the
                         model's reference closes it as well */
    size_t limit;
    unsigned readers; /* workers inside a reading call */
    struct dir *out, *in;
    struct end *peer;
};

/* A stream pair: dir[i] goes from end[i] to end[1 - i]. */
struct conn {
    struct end end[2];
    struct dir dir[2];
};

/* A raw socketpair used with coil_sock_recv / coil_sock_send_all. */
struct raw {
    int fd[2];
    bool closed[2];
    unsigned readers[2];
    bool sending[2];
    struct dir dir[2];
};

/* Two UDP endpoints; u[0] sends to u[1]'s address with sendto, u[1] is
 * connected to u[0]. Each datagram: a 4-byte sequence number, then
 * pattern bytes. */
struct udp {
    coil_udp_t *u[2];
    bool closed[2];
    unsigned receivers[2];
    struct sockaddr_storage addr[2];
    socklen_t addrlen[2];
    uint32_t next[2];     /* datagrams sent from side i */
    int64_t last[2];      /* the last sequence side i received, or -1 */
    uint16_t len[2][MAX_DGRAMS];
};

enum work {
    W_READ,
    W_READ_EXACTLY,
    W_READLINE,
    W_READUNTIL,
    W_DRAIN,
    W_WAIT_CLOSED,
    W_RAW_RECV,
    W_RAW_SEND,
    W_UDP_RECV,
    W_SINK,      /* the end: read a stream to its end */
    W_FLUSH,     /* the end: drain to empty, then write_eof */
    W_RAW_SINK,  /* the end: read a raw fd to its end */
};

struct run;

struct worker {
    struct run *R;
    coil_task_t *task;
    enum work kind;
    struct conn *conn; /* or raw / udp */
    struct raw *raw;
    struct udp *udp;
    int side;
    size_t a, b; /* the call's sizes */
    int64_t timeout; /* < 0: no scope */
    coil_timeout_t *scope; /* the call's timeout scope, if any */
    bool cancelled;
    size_t op; /* the script's operation that made it */
};

struct run {
    coil_loop_t *loop;
    const uint8_t *ops;
    size_t nops, op;
    struct conn conns[MAX_CONNS];
    size_t nconns;
    struct conn *pair[NPAIRS];
    struct raw raws[MAX_RAW];
    size_t nraws;
    struct raw *raw;
    struct udp udps[MAX_UDP];
    size_t nudps;
    struct udp *udp;
    struct worker *workers[MAX_WORKERS];
    size_t nworkers;
    int64_t next_timeout; /* for the next worker, < 0: none */
    coil_server_t *servers[MAX_SERVERS]; /* every one started */
    size_t nservers;
    coil_server_t *server; /* the one connections go to */
    int port;
    /* Streams the server's handler handed over, not yet matched to the
     * client end they belong to (a connection whose client gave up, on
     * an injected connect failure, may still be accepted, late). */
    coil_stream_t *acc[32];
    size_t nacc;
    bool small_bufs;
    /* injected failures */
    coil_test_op_t fault_call;
    unsigned fault_nth;
    bool fault_visible; /* the armed errno reaches callers */
    bool tainted;       /* a visible fault fired */
};

static bool tracing;

static const struct run *current; /* for checks without a run at hand */

static _Noreturn void fail(const struct run *R, const char *what, int line)
{
    if (!R)
        R = current;
    fprintf(stderr, "fuzz_api.c:%d: check failed: %s (operation %zu of %zu)\n",
            line, what, R->op, R->nops);
    abort();
}

#define CHECK(R, cond) ((cond) ? (void)0 : fail((R), #cond, __LINE__))

/* A call returned r, which is not in its documented set: report it. */
#define ALLOWED(R, what, r, cond)                                              \
    ((cond) ? (void)0 : bad_result((R), (what), (long)(r), #cond, __LINE__))

static _Noreturn void bad_result(const struct run *R, const char *what,
                                 long r, const char *cond, int line)
{
    fprintf(stderr, "fuzz_api.c:%d: %s returned %ld (%s): not allowed here"
            " (%s)\n", line, what, r, r < 0 ? coil_err_name((int)r) : "",
            cond);
    fail(R, "the result is one the header documents", line);
}

static void trace(const struct run *R, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void trace(const struct run *R, const char *fmt, ...)
{
    if (!tracing)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  [%zu] ", R->op);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Whether an injected visible fault has fired by now: from then on any
 * call may see it, and any direction may lose bytes. */
static bool tainted(struct run *R)
{
    if (!R->tainted && R->fault_visible &&
        coil_test_calls(R->fault_call) >= R->fault_nth)
        R->tainted = true;
    return R->tainted;
}

static bool lossy(struct run *R, const struct dir *d)
{
    return d->lossy || tainted(R);
}

/* Errors any call that may suspend may return in the worker's state. */
static bool common_err(struct run *R, const struct worker *w, long r)
{
    /* The call runs inside the scope: its deadline shows as -ECANCELED
     * (coil_timeout_end turns that into -ETIMEDOUT afterwards). */
    return (r == -ECANCELED &&
            (w->cancelled || (w->scope && coil_timeout_expired(w->scope)))) ||
           (r == -ENOMEM && fuzz_mem.hit);
}

/* n bytes arrived in buf on direction d: they must be the next sent. */
static void take(struct run *R, struct dir *d, const uint8_t *buf, size_t n)
{
    CHECK(R, d->recvd + n <= d->sent + d->inflight);
    for (size_t i = 0; i < n; i++)
        CHECK(R, buf[i] == pattern(d->seed, d->recvd + i));
    d->recvd += n;
}

/* The receiver of d saw the end of the stream. */
static void saw_eof(struct run *R, struct dir *d)
{
    CHECK(R, d->shut || tainted(R));
    if (!lossy(R, d))
        CHECK(R, d->recvd >= d->sent);
    d->eof = true;
}

/* Where sep first starts at or after recvd among the bytes sent, as an
 * offset from recvd, or SIZE_MAX. Looks at most max bytes ahead. */
static size_t first_sep(const struct dir *d, const uint8_t *sep,
                        size_t seplen, size_t max)
{
    uint64_t avail = d->sent - d->recvd;
    if (avail > max)
        avail = max;
    for (uint64_t i = 0; i + seplen <= avail; i++) {
        size_t k = 0;
        while (k < seplen && pattern(d->seed, d->recvd + i + k) == sep[k])
            k++;
        if (k == seplen)
            return (size_t)i;
    }
    return SIZE_MAX;
}

/* End e closes (close, abort or its last reference): bytes sent to it
 * and not read make the kernel reset the connection. */
static void end_gone(struct end *e, bool abort)
{
    e->out->shut = true;
    if (abort || e->in->sent + e->in->inflight > e->in->recvd)
        e->out->lossy = true;
    e->in->lossy = true; /* nobody reads it any more */
}

static bool peer_gone(const struct end *e)
{
    return e->peer->closed || !e->peer->s;
}

/* ------------------------------------------------------------------ */
/* Stream calls (in workers)                                            */
/* ------------------------------------------------------------------ */

static const struct {
    const char *bytes;
    size_t len;
} seps[4] = {{"\n", 1}, {"ab", 2}, {"xyz", 3}, {"\n\n", 2}};

/* Errors of the reading calls, beyond the common ones. */
static bool read_err(struct run *R, const struct worker *w, struct end *e,
                     long r)
{
    return common_err(R, w, r) || (r == -EBADF && e->closed) ||
           (r == -EBUSY && e->readers > 1) ||
           (r == -ECONNRESET && lossy(R, e->in));
}

static void stream_read(struct worker *w, struct end *e, coil_stream_t *s)
{
    struct run *R = w->R;
    struct dir *d = e->in;
    size_t n = w->a;
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(R, buf);
    ssize_t r = coil_stream_read(s, n ? buf : NULL, n);
    trace(R, "read(%zu) = %zd", n, r);
    if (r > 0) {
        ALLOWED(R, "read", r, (size_t)r <= n);
        take(R, d, buf, (size_t)r);
    } else if (r == 0) {
        if (n)
            saw_eof(R, d);
    } else {
        ALLOWED(R, "read", r, read_err(R, w, e, r));
    }
    free(buf);
}

static void stream_read_exactly(struct worker *w, struct end *e,
                                coil_stream_t *s)
{
    struct run *R = w->R;
    size_t n = w->a;
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(R, buf);
    size_t got = (size_t)-1;
    int r = coil_stream_read_exactly(s, n ? buf : NULL, n, &got);
    trace(R, "read_exactly(%zu) = %d, got %zu", n, r, got);
    if (r == 0) {
        CHECK(R, got == n);
        take(R, e->in, buf, n);
    } else if (r == -EPIPE) {
        CHECK(R, got < n);
        take(R, e->in, buf, got);
        saw_eof(R, e->in);
    } else {
        ALLOWED(R, "read_exactly", r, read_err(R, w, e, r));
        CHECK(R, got == 0);
    }
    free(buf);
}

static void stream_readuntil(struct worker *w, struct end *e,
                             coil_stream_t *s, bool line)
{
    struct run *R = w->R;
    struct dir *d = e->in;
    const uint8_t *sep = (const uint8_t *)seps[w->b & 3].bytes;
    size_t seplen = seps[w->b & 3].len, cap = w->a;
    if (line) {
        sep = (const uint8_t *)"\n";
        seplen = 1;
    }
    uint8_t *buf = malloc(cap ? cap : 1);
    CHECK(R, buf);
    size_t len = (size_t)-1;
    int r = line ? coil_stream_readline(s, cap ? buf : NULL, cap, &len)
                 : coil_stream_readuntil(s, sep, seplen, cap ? buf : NULL,
                                         cap, &len);
    trace(R, "%s(cap %zu) = %d, len %zu", line ? "readline" : "readuntil",
          cap, r, len);
    size_t f = first_sep(d, sep, seplen, e->limit + seplen + cap + 1);
    bool at_end = d->shut || tainted(R);
    if (r == 0 || r == -EPIPE) {
        CHECK(R, len <= cap);
        take(R, d, buf, len);
        bool found = len >= seplen &&
                     memcmp(buf + len - seplen, sep, seplen) == 0;
        if (r == 0 && found) {
            /* The first separator, within the limit. */
            CHECK(R, !memmem(buf, len - 1, sep, seplen));
            CHECK(R, len - seplen <= e->limit);
        } else {
            /* The rest of the stream: readline's last line, or -EPIPE. */
            ALLOWED(R, line ? "readline" : "readuntil", r,
                    line ? r == 0 : r == -EPIPE);
            saw_eof(R, d);
        }
    } else if (r == -EMSGSIZE) {
        ALLOWED(R, "readuntil", r,
                f == SIZE_MAX ? d->sent - d->recvd >= e->limit + seplen
                              : f > e->limit);
    } else if (r == -ENOBUFS) {
        ALLOWED(R, "readuntil", r,
                (f != SIZE_MAX && f + seplen > cap) ||
                    (at_end && d->sent - d->recvd > cap) || lossy(R, d));
        CHECK(R, len > cap);
    } else {
        ALLOWED(R, "readuntil", r, read_err(R, w, e, r));
    }
    free(buf);
}

static void stream_drain(struct worker *w, struct end *e, coil_stream_t *s)
{
    struct run *R = w->R;
    int r = coil_stream_drain(s);
    trace(R, "drain = %d", r);
    ALLOWED(R, "drain", r,
            r == 0 || common_err(R, w, r) ||
                (r == -ENOMEM && (fuzz_mem.hit || e->nomem_write)) ||
                ((r == -EPIPE || r == -ECONNRESET) &&
                 (e->closed || peer_gone(e) || tainted(R))));
}

/* The end of a run: read everything that is left, to the end. */
static void stream_sink(struct worker *w, struct end *e, coil_stream_t *s)
{
    struct run *R = w->R;
    uint8_t buf[4096];
    for (;;) {
        ssize_t r = coil_stream_read(s, buf, sizeof(buf));
        if (r > 0) {
            take(R, e->in, buf, (size_t)r);
            continue;
        }
        trace(R, "sink: read = %zd at %llu of %llu", r,
              (unsigned long long)e->in->recvd,
              (unsigned long long)e->in->sent);
        if (r == 0) {
            saw_eof(R, e->in);
        } else {
            ALLOWED(R, "read (sink)", r,
                    ((r == -ECONNRESET || r == -ENOMEM) && lossy(R, e->in)) ||
                        (r == -EBADF && e->closed));
            /* A reset met by the reader (here an injected one, the socket
             * itself being fine) ends the connection: abort, as a real
             * reset would have, or the peer's flush may wait forever for
             * room that this end, no longer reading, never makes. */
            if (r == -ECONNRESET)
                (void)coil_stream_abort(s);
        }
        break;
    }
}

static void stream_flush(struct worker *w, struct end *e, coil_stream_t *s)
{
    struct run *R = w->R;
    CHECK(R, coil_stream_set_write_limits(s, 0, 0) == 0);
    trace(R, "flush: %zu buffered", coil_stream_write_buffered(s));
    int r = coil_stream_drain(s);
    trace(R, "flush: drain = %d", r);
    ALLOWED(R, "drain (flush)", r,
            r == 0 || (r == -ENOMEM && (fuzz_mem.hit || e->nomem_write)) ||
                ((r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) &&
                 (e->out->lossy || tainted(R))));
    if (r != 0)
        e->out->lossy = true;
    r = coil_stream_write_eof(s);
    trace(R, "flush: write_eof = %d", r);
    ALLOWED(R, "write_eof (flush)", r,
            r == 0 || (r == -ENOMEM && (fuzz_mem.hit || e->nomem_write)) ||
                ((r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) &&
                 (e->out->lossy || tainted(R))));
    e->out->shut = true;
    if (r == 0) {
        e->eof_sent = true;
    } else {
        /* The stream failed but its socket lives on: only closing it
         * ends the peer's reading. What the peer sent it and it did not
         * read makes that close a reset, which the peer's own flush may
         * meet (end_gone). */
        e->out->lossy = true;
        end_gone(e, false);
        e->closed = true;
        CHECK(R, coil_stream_close(s) == 0);
    }
}

/* ------------------------------------------------------------------ */
/* Raw fd and UDP calls (in workers)                                    */
/* ------------------------------------------------------------------ */

static void raw_recv(struct worker *w, bool sink)
{
    struct run *R = w->R;
    struct raw *x = w->raw;
    int side = w->side;
    struct dir *d = &x->dir[1 - side];
    uint8_t buf[4096];
    size_t n = sink ? sizeof(buf) : (w->a < sizeof(buf) ? w->a : sizeof(buf));
    for (;;) {
        ssize_t r = coil_sock_recv(x->fd[side], n ? buf : NULL, n);
        trace(R, "sock_recv(%zu) = %zd", n, r);
        if (r > 0) {
            take(R, d, buf, (size_t)r);
            if (sink)
                continue;
        } else if (r == 0) {
            if (n)
                saw_eof(R, d);
        } else {
            ALLOWED(R, "sock_recv", r,
                    common_err(R, w, r) ||
                        (r == -EBADF && x->closed[side]) ||
                        (r == -EBUSY && x->readers[side] > 1) ||
                        (r == -ECONNRESET && lossy(R, d)));
        }
        break;
    }
}

static void raw_send(struct worker *w)
{
    struct run *R = w->R;
    struct raw *x = w->raw;
    int side = w->side;
    struct dir *d = &x->dir[side];
    size_t n = w->a;
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(R, buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(d->seed, d->sent + i);
    size_t sent = (size_t)-1;
    d->inflight = n;
    int r = coil_sock_send_all(x->fd[side], n ? buf : NULL, n, &sent);
    trace(R, "sock_send_all(%zu) = %d, sent %zu", n, r, sent);
    d->inflight = 0;
    CHECK(R, sent <= n);
    d->sent += sent;
    if (r == 0)
        CHECK(R, sent == n);
    else
        ALLOWED(R, "sock_send_all", r,
                common_err(R, w, r) || (r == -EBADF && x->closed[side]) ||
                    ((r == -EPIPE || r == -ECONNRESET) &&
                     (d->shut || x->closed[1 - side] || tainted(R))));
    free(buf);
}

static void udp_recv(struct worker *w)
{
    struct run *R = w->R;
    struct udp *x = w->udp;
    int side = w->side, from = 1 - side;
    size_t cap = 4 + w->a;
    uint8_t buf[4 + 256];
    ssize_t r = coil_udp_recv(x->u[side], buf, cap);
    trace(R, "udp_recv(%zu) = %zd", cap, r);
    if (r >= 0) {
        CHECK(R, r >= 4);
        uint32_t seq;
        memcpy(&seq, buf, 4);
        /* One of those sent, after the last one received (loopback
         * keeps the order; a full receive buffer may drop some). */
        CHECK(R, seq < x->next[from] && (int64_t)seq > x->last[side]);
        CHECK(R, (size_t)r == 4u + x->len[from][seq]);
        size_t n = (size_t)r < cap ? (size_t)r : cap;
        for (size_t i = 4; i < n; i++)
            CHECK(R, buf[i] == pattern(seq, i));
        x->last[side] = seq;
    } else {
        ALLOWED(R, "udp_recv", r,
                common_err(R, w, r) || (r == -EBADF && x->closed[side]) ||
                    (r == -EBUSY && x->receivers[side] > 1) ||
                    (r == -ECONNREFUSED &&
                     (x->closed[from] || tainted(R))));
    }
}

/* ------------------------------------------------------------------ */
/* Workers                                                              */
/* ------------------------------------------------------------------ */

/* Run w's call on its stream end, holding a reference meanwhile. */
static void stream_call(struct worker *w)
{
    struct end *e = &w->conn->end[w->side];
    if (!e->s)
        return; /* unref'd before the worker started */
    coil_stream_t *s = coil_stream_ref(e->s);
    bool reading = w->kind <= W_READUNTIL || w->kind == W_SINK;
    if (reading)
        e->readers++;
    switch (w->kind) {
    case W_READ:
        stream_read(w, e, s);
        break;
    case W_READ_EXACTLY:
        stream_read_exactly(w, e, s);
        break;
    case W_READLINE:
    case W_READUNTIL:
        stream_readuntil(w, e, s, w->kind == W_READLINE);
        break;
    case W_DRAIN:
        stream_drain(w, e, s);
        break;
    case W_WAIT_CLOSED: {
        int r = coil_stream_wait_closed(s);
        trace(w->R, "wait_closed = %d", r);
        ALLOWED(w->R, "wait_closed", r, r == 0 || common_err(w->R, w, r));
        if (r == 0)
            CHECK(w->R, e->closed || !e->s || coil_stream_is_closing(s));
        break;
    }
    case W_SINK:
        stream_sink(w, e, s);
        break;
    case W_FLUSH:
        stream_flush(w, e, s);
        break;
    default:
        CHECK(w->R, false);
    }
    if (reading)
        e->readers--;
    coil_stream_unref(s);
}

static int worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *R = w->R;
    if (w->timeout >= 0) {
        int r = coil_timeout_begin(w->timeout, &w->scope);
        ALLOWED(R, "timeout_begin", r, r == 0 || (r == -ENOMEM && fuzz_mem.hit));
        if (r)
            return 0;
    }
    switch (w->kind) {
    case W_RAW_RECV:
    case W_RAW_SINK:
        if (!w->raw->closed[w->side]) {
            w->raw->readers[w->side]++;
            raw_recv(w, w->kind == W_RAW_SINK);
            w->raw->readers[w->side]--;
        }
        break;
    case W_RAW_SEND:
        if (!w->raw->closed[w->side])
            raw_send(w);
        w->raw->sending[w->side] = false;
        break;
    case W_UDP_RECV:
        w->udp->receivers[w->side]++;
        udp_recv(w);
        w->udp->receivers[w->side]--;
        break;
    default:
        stream_call(w);
        break;
    }
    if (w->scope) {
        bool expired = coil_timeout_expired(w->scope);
        int r = coil_timeout_end(w->scope, -ECANCELED);
        CHECK(R, r == -ECANCELED || (expired && r == -ETIMEDOUT));
        w->scope = NULL;
    }
    return 0;
}

/* Hand a call to a new worker. Returns it, or NULL if it could not be
 * started (an injected allocation failure). */
static struct worker *spawn(struct run *R, enum work kind, size_t a,
                            size_t b)
{
    if (R->nworkers == MAX_WORKERS)
        return NULL;
    struct worker *w = calloc(1, sizeof(*w));
    CHECK(R, w);
    w->R = R;
    w->kind = kind;
    w->a = a;
    w->b = b;
    w->op = R->op;
    w->timeout = R->next_timeout;
    R->next_timeout = -1;
    int r = coil_task_spawn(R->loop, worker_main, w, &w->task);
    if (r) {
        ALLOWED(R, "task_spawn", r, r == -ENOMEM && fuzz_mem.hit);
        free(w);
        return NULL;
    }
    R->workers[R->nworkers++] = w;
    return w;
}

static void spawn_stream(struct run *R, enum work kind, struct conn *c,
                         int side, size_t a, size_t b)
{
    struct worker *w = spawn(R, kind, a, b);
    if (w) {
        w->conn = c;
        w->side = side;
    }
}

/* ------------------------------------------------------------------ */
/* Making pairs                                                         */
/* ------------------------------------------------------------------ */

static int handler(coil_stream_t *s, void *arg)
{
    struct run *R = arg;
    if (R->nacc < sizeof(R->acc) / sizeof(*R->acc)) {
        R->acc[R->nacc++] = coil_stream_ref(s);
        /* Stay around so that close_clients has a task to cancel. */
        int r = coil_stream_wait_closed(s);
        trace(R, "handler: wait_closed = %d", r);
    }
    return 0;
}

/* Take the accepted stream whose peer is the client stream c, or NULL. */
static coil_stream_t *take_accepted(struct run *R, coil_stream_t *c)
{
    struct sockaddr_storage me, peer;
    if (coil_stream_local_address(c, &me) <= 0 || me.ss_family != AF_INET)
        return NULL;
    const struct sockaddr_in *m = (const struct sockaddr_in *)&me;
    for (size_t k = 0; k < R->nacc; k++) {
        if (coil_stream_peer_address(R->acc[k], &peer) <= 0 ||
            peer.ss_family != AF_INET)
            continue;
        const struct sockaddr_in *p = (const struct sockaddr_in *)&peer;
        if (p->sin_port == m->sin_port &&
            p->sin_addr.s_addr == m->sin_addr.s_addr) {
            coil_stream_t *s = R->acc[k];
            R->acc[k] = R->acc[--R->nacc];
            return s;
        }
    }
    return NULL;
}

static void small_buffers(int fd)
{
    int size = 4096;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

static void init_conn(struct run *R, struct conn *c)
{
    for (int i = 0; i < 2; i++) {
        c->end[i].out = &c->dir[i];
        c->end[i].in = &c->dir[1 - i];
        c->end[i].peer = &c->end[1 - i];
        c->end[i].limit = COIL_STREAM_LIMIT;
        c->dir[i].seed = (unsigned)(R->nconns * 2 + (size_t)i) * 13u;
    }
}

/* Drop the model's reference to e's stream. */
static void unref_end(struct end *e)
{
    end_gone(e, false);
    if (e->handled) {
        CHECK(NULL, coil_stream_close(e->s) == 0);
        e->closed = true;
    }
    coil_stream_unref(e->s);
    e->s = NULL;
}

/* Drop whatever the model still holds of pair p's ends. */
static void drop_pair(struct conn *c)
{
    for (int i = 0; c && i < 2; i++)
        if (c->end[i].s)
            unref_end(&c->end[i]);
}

/* A new stream pair in slot p (socketpair or TCP). */
static void open_pair(struct run *R, size_t p)
{
    drop_pair(R->pair[p]);
    R->pair[p] = NULL;
    if (R->nconns == MAX_CONNS)
        return;
    struct conn *c = &R->conns[R->nconns];
    memset(c, 0, sizeof(*c));
    init_conn(R, c);
    if (p < 2) {
        int sv[2];
        CHECK(R, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            0, sv) == 0);
        if (R->small_bufs) {
            small_buffers(sv[0]);
            small_buffers(sv[1]);
        }
        for (int i = 0; i < 2; i++) {
            int r = coil_stream_open_fd(sv[i], &c->end[i].s);
            ALLOWED(R, "stream_from_fd", r, r == 0 || (r == -ENOMEM && fuzz_mem.hit));
            if (r)
                coil_sock_close(sv[i]);
        }
    } else {
        if (!R->server)
            return;
        char port[16];
        snprintf(port, sizeof(port), "%d", R->port);
        int r = coil_stream_open("127.0.0.1", port, &c->end[0].s);
        trace(R, "open_connection = %d", r);
        ALLOWED(R, "open_connection", r,
                r == 0 || (r == -ENOMEM && fuzz_mem.hit) ||
                    (r == -ECONNREFUSED && !coil_server_is_serving(R->server)) ||
                    (R->fault_call == COIL_TEST_CONNECT && tainted(R)));
        if (r)
            return;
        /* The server's end, from the handler. */
        coil_stream_t *mine = NULL;
        for (int i = 0; i < 4000 && !(mine = take_accepted(R, c->end[0].s));
             i++)
            (void)coil_sleep(COIL_MSEC / 2);
        CHECK(R, mine || fuzz_mem.hit);
        c->end[1].s = mine;
        c->end[1].handled = true;
    }
    R->nconns++;
    R->pair[p] = c;
    /* An end that could not be made counts as closed at once. */
    for (int i = 0; i < 2; i++)
        if (!c->end[i].s) {
            c->end[i].closed = true;
            end_gone(&c->end[i], true);
        }
}

static void open_raw(struct run *R)
{
    struct raw *x = R->raw;
    for (int i = 0; x && i < 2; i++)
        if (!x->closed[i]) {
            x->closed[i] = true;
            CHECK(R, coil_sock_close(x->fd[i]) == 0);
        }
    R->raw = NULL;
    if (R->nraws == MAX_RAW)
        return;
    x = &R->raws[R->nraws];
    memset(x, 0, sizeof(*x));
    CHECK(R, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                        x->fd) == 0);
    if (R->small_bufs) {
        small_buffers(x->fd[0]);
        small_buffers(x->fd[1]);
    }
    x->dir[0].seed = 1000u + 7u * (unsigned)R->nraws;
    x->dir[1].seed = 2000u + 7u * (unsigned)R->nraws;
    R->nraws++;
    R->raw = x;
}

static void open_udp(struct run *R)
{
    struct udp *x = R->udp;
    for (int i = 0; x && i < 2; i++)
        if (!x->closed[i]) {
            x->closed[i] = true;
            CHECK(R, coil_udp_close(x->u[i]) == 0);
        }
    R->udp = NULL;
    if (R->nudps == MAX_UDP)
        return;
    x = &R->udps[R->nudps];
    memset(x, 0, sizeof(*x));
    x->last[0] = x->last[1] = -1;
    int r = coil_udp_open("127.0.0.1", NULL, NULL, NULL, &x->u[0]);
    ALLOWED(R, "udp_open", r, r == 0 || (r == -ENOMEM && fuzz_mem.hit));
    if (r)
        return;
    x->addrlen[0] = (socklen_t)coil_udp_local_address(x->u[0], &x->addr[0]);
    char port[16];
    snprintf(port, sizeof(port), "%u",
             ntohs(((struct sockaddr_in *)&x->addr[0])->sin_port));
    r = coil_udp_open("127.0.0.1", NULL, "127.0.0.1", port, &x->u[1]);
    /* This one connects: an injected connect failure is its own. */
    ALLOWED(R, "udp_open", r,
            r == 0 || (r == -ENOMEM && fuzz_mem.hit) ||
                (R->fault_call == COIL_TEST_CONNECT && tainted(R)));
    if (r) {
        coil_udp_unref(x->u[0]);
        return;
    }
    x->addrlen[1] = (socklen_t)coil_udp_local_address(x->u[1], &x->addr[1]);
    R->nudps++;
    R->udp = x;
}

/* A new server (the old one keeps its connections until the end). */
static void start_server(struct run *R)
{
    if (R->nservers == MAX_SERVERS)
        return;
    if (R->server)
        CHECK(R, coil_server_close(R->server) == 0);
    R->server = NULL;
    coil_server_t *srv;
    int r = coil_server_open("127.0.0.1", "0", handler, R, NULL, &srv);
    ALLOWED(R, "start_server", r, r == 0 || (r == -ENOMEM && fuzz_mem.hit));
    if (r)
        return;
    R->server = R->servers[R->nservers++] = srv;
    R->port = coil_server_port(srv);
    CHECK(R, R->port > 0);
}

/* ------------------------------------------------------------------ */
/* The script                                                           */
/* ------------------------------------------------------------------ */

enum op {
    OP_WRITE,
    OP_READ,
    OP_DRAIN,
    OP_WAIT_CLOSED,
    OP_WRITE_EOF,
    OP_CLOSE,
    OP_ABORT,
    OP_UNREF,
    OP_SET_LIMIT,
    OP_SET_WRITE_LIMITS,
    OP_REOPEN,
    OP_RAW_SEND,
    OP_RAW_RECV,
    OP_RAW_OTHER,
    OP_UDP_SEND,
    OP_UDP_RECV,
    OP_UDP_OTHER,
    OP_CANCEL,
    OP_TIMEOUT,
    OP_PAUSE,
    OP_SERVER,
    OP_FAULT,
    OP_NOMEM,
    OP_CHAOS,
    OP_WRITE2, /* writes and reads are the heart of it: twice as likely */
    OP_READ2,
    OP_COUNT
};

static void op_write(struct run *R, struct end *e, size_t n)
{
    struct dir *d = e->out;
    uint8_t *buf = malloc(n ? n : 1);
    CHECK(R, buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(d->seed, d->sent + i);
    if (peer_gone(e))
        e->in->lossy = true; /* writing to a closed peer resets */
    size_t before = coil_stream_write_buffered(e->s);
    int r = coil_stream_write(e->s, n ? buf : NULL, n);
    trace(R, "write(%zu) = %d", n, r);
    if (r == 0) {
        if (e->closed || e->eof_sent)
            CHECK(R, n == 0 || !"write after close or write_eof");
        d->sent += n;
    } else {
        /* -ENOMEM: nothing of buf taken; or a prefix sent at once and
         * the rest buffered (the sender could not be started): then all
         * of it goes out later, and the buffer grew; or a prefix sent
         * and the rest not kept: the stream writes no more, and the
         * receiver may get up to n bytes past what was handed over. */
        if (r == -ENOMEM && coil_stream_write_buffered(e->s) > before)
            d->sent += n;
        else if (r == -ENOMEM) {
            d->inflight += n; /* the reader may get part of buf... */
            d->lossy = true;  /* ...and then the end, anywhere */
            e->nomem_write = true;
        }
        ALLOWED(R, "write", r,
                (r == -EPIPE && (e->closed || e->eof_sent)) ||
                    (r == -ENOMEM && (fuzz_mem.hit || e->nomem_write)) ||
                    ((r == -EPIPE || r == -ECONNRESET) &&
                     (peer_gone(e) || tainted(R) || e->out->lossy)));
    }
    free(buf);
}

static void op_stream(struct run *R, enum op code, const uint8_t *o)
{
    struct conn *c = R->pair[(o[1] % 8) / 2];
    int side = o[1] % 2;
    if (!c || !c->end[side].s)
        return;
    struct end *e = &c->end[side];
    size_t b = o[2], cc = o[3];
    int r;
    switch (code) {
    case OP_WRITE:
    case OP_WRITE2:
        op_write(R, e, b * (1 + cc % 64));
        break;
    case OP_READ:
    case OP_READ2:
        switch (cc & 7) {
        case 0:
        case 1:
            spawn_stream(R, W_READ, c, side, b * (1 + (cc >> 4)), 0);
            break;
        case 2:
        case 3:
            spawn_stream(R, W_READ_EXACTLY, c, side, b * (1 + (cc >> 3)), 0);
            break;
        case 4:
        case 5:
            spawn_stream(R, W_READLINE, c, side, b * (1 + (cc >> 4)), 0);
            break;
        default:
            spawn_stream(R, W_READUNTIL, c, side, b * (1 + (cc >> 5)),
                         cc >> 3);
            break;
        }
        break;
    case OP_DRAIN:
        spawn_stream(R, W_DRAIN, c, side, 0, 0);
        break;
    case OP_WAIT_CLOSED:
        spawn_stream(R, W_WAIT_CLOSED, c, side, 0, 0);
        break;
    case OP_WRITE_EOF:
        r = coil_stream_write_eof(e->s);
        trace(R, "write_eof = %d", r);
        /* -ENOMEM also after a write that could keep only part of its
         * data: the stream writes no more, and says so (sticky). */
        ALLOWED(R, "write_eof", r,
                r == 0 || (r == -EPIPE && e->closed) ||
                    (r == -ENOMEM && (fuzz_mem.hit || e->nomem_write)) ||
                    ((r == -EPIPE || r == -ECONNRESET || r == -ENOTCONN) &&
                     (peer_gone(e) || tainted(R) || e->out->lossy)));
        if (r == 0) {
            CHECK(R, !e->closed);
            e->eof_sent = true;
        }
        e->out->shut = e->out->shut || r == 0;
        break;
    case OP_CLOSE:
    case OP_ABORT:
        r = code == OP_CLOSE ? coil_stream_close(e->s)
                             : coil_stream_abort(e->s);
        trace(R, "%s = %d", code == OP_CLOSE ? "close" : "abort", r);
        CHECK(R, r == 0);
        CHECK(R, coil_stream_is_closing(e->s));
        end_gone(e, code == OP_ABORT || e->closed);
        e->closed = true;
        break;
    case OP_UNREF:
        trace(R, "unref");
        unref_end(e);
        break;
    case OP_SET_LIMIT: {
        size_t limit = b + 256 * (cc & 3);
        r = coil_stream_set_limit(e->s, limit);
        CHECK(R, r == (limit ? 0 : -EINVAL));
        if (limit)
            e->limit = limit;
        break;
    }
    case OP_SET_WRITE_LIMITS:
        r = coil_stream_set_write_limits(e->s, 64 * b, 64 * cc);
        CHECK(R, r == (cc <= b ? 0 : -EINVAL));
        break;
    default:
        break;
    }
}

static void op_raw(struct run *R, enum op code, const uint8_t *o)
{
    struct raw *x = R->raw;
    int side = o[1] & 1;
    if (code == OP_RAW_OTHER && (o[3] % 3 == 2 || !x)) {
        open_raw(R);
        return;
    }
    if (!x || x->closed[side])
        return;
    struct worker *w;
    switch (code) {
    case OP_RAW_SEND:
        if (x->sending[side])
            return; /* one sender at a time per direction (net.h) */
        if ((w = spawn(R, W_RAW_SEND, o[2] * (1 + o[3] % 64u), 0))) {
            w->raw = x;
            w->side = side;
            x->sending[side] = true;
        }
        break;
    case OP_RAW_RECV:
        if ((w = spawn(R, W_RAW_RECV, o[2] * (1 + o[3] % 16u), 0))) {
            w->raw = x;
            w->side = side;
        }
        break;
    default:
        if (o[3] % 3 == 0) {
            trace(R, "raw shutdown");
            CHECK(R, shutdown(x->fd[side], SHUT_WR) == 0);
            x->dir[side].shut = true;
        } else {
            trace(R, "raw close");
            if (x->dir[1 - side].sent + x->dir[1 - side].inflight >
                x->dir[1 - side].recvd)
                x->dir[side].lossy = true;
            x->dir[side].shut = true;
            x->dir[1 - side].lossy = true;
            x->closed[side] = true;
            CHECK(R, coil_sock_close(x->fd[side]) == 0);
        }
        break;
    }
}

static void op_udp(struct run *R, enum op code, const uint8_t *o)
{
    struct udp *x = R->udp;
    int side = o[1] & 1;
    if (code == OP_UDP_OTHER && (o[3] & 1 || !x)) {
        open_udp(R);
        return;
    }
    if (!x)
        return;
    if (code == OP_UDP_RECV) {
        struct worker *w = spawn(R, W_UDP_RECV, o[2], 0);
        if (w) {
            w->udp = x;
            w->side = side;
        }
        return;
    }
    if (code == OP_UDP_OTHER) {
        int r = coil_udp_close(x->u[side]);
        trace(R, "udp_close = %d", r);
        CHECK(R, r == 0); /* closing again is a no-op */
        x->closed[side] = true;
        return;
    }
    /* Send one datagram. */
    uint32_t seq = x->next[side];
    if (seq == MAX_DGRAMS)
        return;
    size_t n = 4 + o[2];
    uint8_t buf[4 + 256];
    memcpy(buf, &seq, 4);
    for (size_t i = 4; i < n; i++)
        buf[i] = pattern(seq, i);
    x->len[side][seq] = (uint16_t)(n - 4);
    x->next[side]++; /* before: a receiver may get it while this waits */
    ssize_t r = side ? coil_udp_send(x->u[1], buf, n)
                     : coil_udp_sendto(x->u[0], buf, n,
                                       (struct sockaddr *)&x->addr[1],
                                       x->addrlen[1]);
    trace(R, "udp_send(%zu) = %zd", n, r);
    ALLOWED(R, "udp_send", r,
            r == (ssize_t)n || (r == -EBADF && x->closed[side]) ||
                (r == -ENOMEM && fuzz_mem.hit) ||
                (r == -ECONNREFUSED && (x->closed[1 - side] || tainted(R))));
}

/* The syscall faults an input may arm, and which errnos reach callers. */
static const struct {
    coil_test_op_t op;
    int err;
    bool visible;
} faults[16] = {
    {COIL_TEST_RECV, EINTR, false},
    {COIL_TEST_RECV, EAGAIN, false},
    {COIL_TEST_RECV, ECONNRESET, true},
    {COIL_TEST_SEND, EINTR, false},
    {COIL_TEST_SEND, EAGAIN, false},
    {COIL_TEST_SEND, EPIPE, true},
    {COIL_TEST_SEND, ECONNRESET, true},
    {COIL_TEST_ACCEPT, EINTR, false},
    {COIL_TEST_ACCEPT, EAGAIN, false},
    {COIL_TEST_ACCEPT, ECONNABORTED, false},
    {COIL_TEST_CONNECT, EINTR, false},
    {COIL_TEST_CONNECT, ECONNREFUSED, true},
    {COIL_TEST_RECVFROM, EINTR, false},
    {COIL_TEST_RECVFROM, EAGAIN, false},
    {COIL_TEST_SENDTO, EINTR, false},
    {COIL_TEST_SENDTO, EAGAIN, false},
};

static void op_fault(struct run *R, const uint8_t *o)
{
    unsigned k = o[1] % 16;
    unsigned nth = 1u + o[2] % 32, count = 1u + o[3] % 4;
    /* A visible fault already fired stays in the model (tainted); one
     * armed at a time. */
    (void)tainted(R);
    coil_test_reset_faults(); /* the one armed before, whatever its op */
    R->fault_call = faults[k].op;
    R->fault_nth = nth;
    R->fault_visible = faults[k].visible;
    trace(R, "fault %u: nth %u, count %u", k, nth, count);
    coil_test_fail(faults[k].op, nth, count, -faults[k].err);
}

static void op_other(struct run *R, enum op code, const uint8_t *o)
{
    switch (code) {
    case OP_REOPEN:
        if (!fuzz_mem.armed || !fuzz_mem.failures) {
            open_pair(R, o[1] % NPAIRS);
        } else {
            /* Connecting waits for the server: not with failures armed
             * (the handler's task might never be made). */
            bool armed = fuzz_mem.armed;
            fuzz_mem.armed = false;
            open_pair(R, o[1] % NPAIRS);
            fuzz_mem.armed = armed;
        }
        break;
    case OP_CANCEL:
        if (R->nworkers) {
            struct worker *w = R->workers[(o[1] + 256u * o[2]) % R->nworkers];
            if (coil_task_cancel(w->task) == 0)
                w->cancelled = true;
        }
        break;
    case OP_TIMEOUT:
        R->next_timeout = (int64_t)o[2] * 50 * COIL_USEC;
        break;
    case OP_PAUSE:
        if (o[1] & 8)
            (void)coil_sleep((int64_t)o[2] * 20 * COIL_USEC);
        else
            for (unsigned i = 0; i < (o[1] & 7u); i++)
                (void)coil_yield();
        break;
    case OP_SERVER:
        if (o[3] % 3 == 0 && R->server) {
            CHECK(R, coil_server_close(R->server) == 0);
        } else if (o[3] % 3 == 1 && R->server) {
            size_t n = coil_server_connections(R->server);
            int r = coil_server_close_clients(R->server);
            trace(R, "close_clients = %d of %zu", r, n);
            CHECK(R, r >= 0 && (size_t)r <= n);
        } else {
            bool armed = fuzz_mem.armed;
            fuzz_mem.armed = false;
            start_server(R);
            fuzz_mem.armed = armed;
        }
        break;
    case OP_FAULT:
        op_fault(R, o);
        break;
    case OP_NOMEM:
        fuzz_mem_arm(NULL, o[2], 1u + o[3] % 8);
        fuzz_mem.armed = true;
        break;
    case OP_CHAOS:
        coil__chaos_pause(!(o[1] & 1));
        break;
    default:
        break;
    }
}

/* Cancel every worker still running and wait for them all. */
static void join_workers(struct run *R, size_t from)
{
    for (size_t i = from; i < R->nworkers; i++)
        if (!coil_future_done(coil_task_future(R->workers[i]->task)) &&
            coil_task_cancel(R->workers[i]->task) == 0)
            R->workers[i]->cancelled = true;
    for (size_t i = from; i < R->nworkers; i++)
        (void)coil_task_join(R->workers[i]->task);
}

/* The end of the script: flush and read every direction to its end. */
static void finish(struct run *R)
{
    size_t first = R->nworkers;
    for (size_t p = 0; p < NPAIRS; p++) {
        struct conn *c = R->pair[p];
        for (int i = 0; c && i < 2; i++) {
            struct end *e = &c->end[i];
            if (!e->s || e->closed)
                continue;
            spawn_stream(R, W_SINK, c, i, 0, 0);
            spawn_stream(R, W_FLUSH, c, i, 0, 0);
        }
    }
    struct raw *x = R->raw;
    for (int i = 0; x && i < 2; i++) {
        if (x->closed[i])
            continue;
        CHECK(R, shutdown(x->fd[i], SHUT_WR) == 0);
        x->dir[i].shut = true;
        struct worker *w = spawn(R, W_RAW_SINK, 0, 0);
        CHECK(R, w);
        w->raw = x;
        w->side = i;
    }
    CHECK(R, R->nworkers - first <= MAX_WORKERS);
    for (size_t i = first; i < R->nworkers; i++)
        CHECK(R, coil_task_join(R->workers[i]->task) == 0);

    /* Every direction that could not lose bytes delivered all of them. */
    for (size_t p = 0; p < NPAIRS; p++) {
        struct conn *c = R->pair[p];
        for (int i = 0; c && i < 2; i++) {
            struct dir *d = &c->dir[i];
            struct end *to = &c->end[1 - i];
            if (to->s && !to->closed && !lossy(R, d)) {
                trace(R, "pair %zu dir %d: %llu of %llu", p, i,
                      (unsigned long long)d->recvd,
                      (unsigned long long)d->sent);
                CHECK(R, d->eof && d->recvd == d->sent);
            }
        }
    }
    for (int i = 0; x && i < 2; i++)
        if (!x->closed[1 - i] && !lossy(R, &x->dir[i]))
            CHECK(R, x->dir[i].eof && x->dir[i].recvd == x->dir[i].sent);
}

static int driver_main(void *arg)
{
    struct run *R = arg;
    start_server(R);
    for (size_t p = 0; p < NPAIRS; p++)
        open_pair(R, p);
    open_raw(R);
    open_udp(R);

    for (R->op = 0; R->op < R->nops; R->op++) {
        const uint8_t *o = R->ops + 4 * R->op;
        enum op code = (enum op)(o[0] % OP_COUNT);
        if (code <= OP_SET_WRITE_LIMITS || code == OP_WRITE2 ||
            code == OP_READ2)
            op_stream(R, code, o);
        else if (code >= OP_RAW_SEND && code <= OP_RAW_OTHER)
            op_raw(R, code, o);
        else if (code >= OP_UDP_SEND && code <= OP_UDP_OTHER)
            op_udp(R, code, o);
        else
            op_other(R, code, o);
    }

    /* No more injected failures; what fired stays in the model. */
    (void)tainted(R);
    fuzz_mem.armed = false;
    coil_test_reset_faults();
    coil__chaos_pause(true);
    R->next_timeout = -1;
    join_workers(R, 0);
    finish(R);

    /* Close everything. */
    for (size_t c = 0; c < R->nconns; c++)
        for (int i = 0; i < 2; i++)
            if (R->conns[c].end[i].s) {
                coil_stream_abort(R->conns[c].end[i].s);
                coil_stream_unref(R->conns[c].end[i].s);
                R->conns[c].end[i].s = NULL;
            }
    for (size_t k = 0; k < R->nraws; k++)
        for (int i = 0; i < 2; i++)
            if (!R->raws[k].closed[i]) {
                R->raws[k].closed[i] = true;
                CHECK(R, coil_sock_close(R->raws[k].fd[i]) == 0);
            }
    for (size_t k = 0; k < R->nudps; k++)
        for (int i = 0; i < 2; i++)
            coil_udp_unref(R->udps[k].u[i]);
    while (R->nacc)
        coil_stream_unref(R->acc[--R->nacc]); /* strays */
    for (size_t k = 0; k < R->nservers; k++) {
        coil_server_t *srv = R->servers[k];
        CHECK(R, coil_server_close(srv) == 0);
        CHECK(R, !coil_server_is_serving(srv));
        int r = coil_server_close_clients(srv);
        CHECK(R, r >= 0 && (size_t)r <= coil_server_connections(srv));
        CHECK(R, coil_server_wait_closed(srv) == 0);
        CHECK(R, coil_server_connections(srv) == 0);
        coil_server_unref(srv);
    }
    /* Nothing else may be left running. */
    CHECK(R, coil_loop_tasks(R->loop, NULL, 0) == 1);
    return 0;
}

static void on_hang(void *arg)
{
    struct run *R = arg;
    /* Name what is still waiting, to tell where it hangs. */
    for (size_t i = 0; i < R->nworkers; i++) {
        struct worker *w = R->workers[i];
        if (!coil_future_done(coil_task_future(w->task)))
            fprintf(stderr, "fuzz_api: worker %zu (kind %d, from operation "
                            "%zu, side %d) is still waiting\n",
                    i, (int)w->kind, w->op, w->side);
    }
    fail(R, "the run ends in time (it hangs)", __LINE__);
}

static void on_exception(coil_loop_t *loop, int error, const char *message,
                         void *arg)
{
    (void)loop;
    if (tracing)
        trace(arg, "exception: %s: %s", message, coil_err_name(error));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    struct run *R = calloc(1, sizeof(*R));
    if (!R)
        abort();
    if (!once) {
        once = true;
        tracing = getenv("FUZZ_API_TRACE") != NULL;
        /* Chaos I/O is there for the script to switch on (seeded, so a
         * run replays the same), unless the environment chose a seed. */
        setenv("COIL_CHAOS_IO", "1", 0);
        CHECK(R, fuzz_mem_install() == 0);
    }
    current = R;
    CHECK(R, fuzz_mem.live == 0);
    long fds = fuzz_fd_count();
    unsigned options = fuzz_byte(data, size, 0);
    R->small_bufs = options & 1;
    coil__chaos_pause(!(options & 2));
    coil__chaos_restart();
    R->nops = fuzz_byte(data, size, 1);
    if (R->nops > MAX_OPS)
        R->nops = MAX_OPS;
    if (size < 2 + 4 * R->nops)
        R->nops = size > 2 ? (size - 2) / 4 : 0;
    R->ops = data + 2;
    R->next_timeout = -1;
    fuzz_mem_disarm();
    coil_test_reset_faults();

    coil_task_t *driver;
    CHECK(R, coil_loop_new(&R->loop) == 0);
    CHECK(R, coil_loop_set_exception_handler(R->loop, on_exception, R) == 0);
    CHECK(R, fuzz_hang_timer(R->loop, HANG_SECONDS, on_hang, R) == 0);
    CHECK(R, coil_task_spawn(R->loop, driver_main, R, &driver) == 0);
    CHECK(R, coil_loop_run_until_complete(R->loop, coil_task_future(driver)) ==
                 0);
    coil_task_unref(driver);
    for (size_t i = 0; i < R->nworkers; i++) {
        coil_task_unref(R->workers[i]->task);
        free(R->workers[i]);
    }
    CHECK(R, coil_loop_close(R->loop) == 0);
    coil_loop_unref(R->loop);
    coil_test_reset_faults();
    coil__chaos_pause(true);

    /* Everything made for the run is gone. */
    CHECK(R, fuzz_mem.live == 0);
    CHECK(R, fuzz_fd_count() == fds);
    free(R);
    return 0;
}
