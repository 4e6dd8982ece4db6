/* SPDX-License-Identifier: MIT */
/*
 * test_stream.c - streams (coil/stream.h) over Unix socketpairs and
 * loopback TCP pairs: readline/readuntil (limit overrun and a too small
 * buffer leave the data buffered), read_exactly short at end of stream,
 * 2 MiB both ways through small socket buffers in odd-sized pieces, drain
 * backpressure, write_eof half-close, peer reset while reading and while
 * writing, cancellation of a pending read and drain (nothing lost), the
 * last unref flushing in the background, close waking a reader, a second
 * reader refused (-EBUSY) without taking bytes from the first, a timeout
 * scope around a read (nothing consumed), received data still readable
 * after close, a stream on an fd number closed behind the loop's back and
 * reused, interrupted and failing recv/send (the fault seam), bad
 * arguments, -EPERM outside a task, allocation failure.
 *
 * Tasks only record what they see; the assertions run on the main stack
 * after the loop has returned.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static void small_buffers(int fd)
{
    int sz = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

/* A connected loopback TCP pair, both ends non-blocking. */
static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, len), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, (struct sockaddr *)&a, len), 0);
    int s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(s >= 0);
    assert_int_equal(fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK), 0);
    close(l);
    fds[0] = c;
    fds[1] = s;
}

static void make_pair(int sv[2], bool small)
{
    test_socketpair(sv);
    if (small) {
        small_buffers(sv[0]);
        small_buffers(sv[1]);
    }
}

static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    coil_sock_close(fd);
}

/* ------------------------------------------------------------------ */
/* readline / readuntil / read_exactly                                  */
/* ------------------------------------------------------------------ */

struct lines {
    int fds[2];
    int r[16];
    size_t len[16];
    char got[16][64];
    bool eof_before, eof_after;
    size_t buffered;
    char overrun[64];
    size_t overrun_len;
};

/* Send s to the peer end fd; inside a task a short send is noted for
 * test_run_task instead of asserting on the task's stack. */
static void put(int fd, const char *s)
{
    size_t n = strlen(s);
    bool ok = send(fd, s, n, 0) == (ssize_t)n;
    if (coil_current_task()) {
        if (!ok)
            test_task_failure();
    } else {
        assert_true(ok);
    }
}

static int lines_main(void *arg)
{
    struct lines *L = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(L->fds[0], &s))
        return -1;
    int peer = L->fds[1];
    int k = 0;
    put(peer, "hello\nworld\r\n\r\nabc");
    L->r[k] = coil_stream_readline(s, L->got[k], 64, &L->len[k]), k++;
    L->r[k] = coil_stream_readuntil(s, "\r\n\r\n", 4, L->got[k], 64,
                                    &L->len[k]), k++;
    /* Overrun: the limit is 8 and the line is longer. */
    coil_stream_set_limit(s, 8);
    put(peer, "0123456789ABCDEF\n");
    L->r[k] = coil_stream_readline(s, L->got[k], 64, &L->len[k]), k++; /*2*/
    L->buffered = coil_stream_read_buffered(s);
    /* Still usable: everything is there for read(). */
    while (L->overrun_len < 20) {
        ssize_t n = coil_stream_read(s, L->overrun + L->overrun_len,
                                     sizeof(L->overrun) - L->overrun_len);
        if (n <= 0)
            break;
        L->overrun_len += (size_t)n;
    }
    coil_stream_set_limit(s, 64);
    /* Too small a buffer: nothing consumed. */
    put(peer, "xyzxyz\n");
    L->r[k] = coil_stream_readline(s, L->got[k], 3, &L->len[k]), k++; /*3*/
    L->r[k] = coil_stream_readline(s, L->got[k], 64, &L->len[k]), k++; /*4*/
    /* End of stream: the last line without its newline, then empty. */
    put(peer, "tail");
    shutdown(peer, SHUT_WR);
    L->eof_before = coil_stream_at_eof(s);
    L->r[k] = coil_stream_readline(s, L->got[k], 64, &L->len[k]), k++; /*5*/
    L->r[k] = coil_stream_readline(s, L->got[k], 64, &L->len[k]), k++; /*6*/
    L->r[k] = coil_stream_readuntil(s, "--", 2, L->got[k], 64,
                                    &L->len[k]), k++;                  /*7*/
    L->eof_after = coil_stream_at_eof(s);
    coil_stream_unref(s);
    return 0;
}

static void test_readline_readuntil(void **state)
{
    struct lines L = {0};
    make_pair(L.fds, false);
    assert_int_equal(test_run_task(test_loop(state), lines_main, &L), 0);
    close(L.fds[1]);
    assert_int_equal(L.r[0], 0);
    assert_int_equal(L.len[0], 6);
    assert_memory_equal(L.got[0], "hello\n", 6);
    assert_int_equal(L.r[1], 0);
    assert_int_equal(L.len[1], 9);
    assert_memory_equal(L.got[1], "world\r\n\r\n", 9);
    assert_int_equal(L.r[2], -EMSGSIZE);
    assert_true(L.buffered >= 3);
    assert_int_equal(L.overrun_len, 20);
    assert_memory_equal(L.overrun, "abc0123456789ABCDEF\n", 20);
    assert_int_equal(L.r[3], -ENOBUFS);
    assert_int_equal(L.len[3], 7);
    assert_int_equal(L.r[4], 0);
    assert_int_equal(L.len[4], 7);
    assert_memory_equal(L.got[4], "xyzxyz\n", 7);
    assert_false(L.eof_before);
    assert_int_equal(L.r[5], 0);
    assert_int_equal(L.len[5], 4);
    assert_memory_equal(L.got[5], "tail", 4);
    assert_int_equal(L.r[6], 0);
    assert_int_equal(L.len[6], 0);
    assert_int_equal(L.r[7], -EPIPE);
    assert_int_equal(L.len[7], 0);
    assert_true(L.eof_after);
}

struct exact {
    int fds[2];
    int r1, r2;
    size_t got1, got2;
    char b1[16], b2[16];
};

static int exact_main(void *arg)
{
    struct exact *e = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(e->fds[0], &s))
        return -1;
    put(e->fds[1], "0123456789abc");
    shutdown(e->fds[1], SHUT_WR);
    e->r1 = coil_stream_read_exactly(s, e->b1, 10, &e->got1);
    e->r2 = coil_stream_read_exactly(s, e->b2, 10, &e->got2);
    coil_stream_unref(s);
    return 0;
}

static void test_read_exactly_short(void **state)
{
    struct exact e = {0};
    make_pair(e.fds, false);
    assert_int_equal(test_run_task(test_loop(state), exact_main, &e), 0);
    close(e.fds[1]);
    assert_int_equal(e.r1, 0);
    assert_int_equal(e.got1, 10);
    assert_memory_equal(e.b1, "0123456789", 10);
    assert_int_equal(e.r2, -EPIPE);
    assert_int_equal(e.got2, 3);
    assert_memory_equal(e.b2, "abc", 3);
}

/* ------------------------------------------------------------------ */
/* Bulk through small buffers, both directions at once                 */
/* ------------------------------------------------------------------ */

#define BULK (2u << 20)

struct bulk {
    coil_loop_t *loop;
    coil_stream_t *s[2];
    int werr[2];
    int rerr[2];
    size_t rgot[2];
    size_t bad[2];
    unsigned seed;
};

struct side {
    struct bulk *b;
    int i;
};

static int bulk_writer(void *arg)
{
    struct side *sd = arg;
    coil_stream_t *s = sd->b->s[sd->i];
    enum { CHUNK = 70001 }; /* more than a task's stack can hold */
    unsigned char *chunk = malloc(CHUNK);
    if (!chunk)
        return -ENOMEM;
    size_t off = 0;
    unsigned r = 1234u + (unsigned)sd->i;
    while (off < BULK) {
        r = r * 1103515245u + 12345u;
        size_t n = 1 + (r >> 8) % CHUNK;
        if (n > BULK - off)
            n = BULK - off;
        for (size_t j = 0; j < n; j++)
            chunk[j] = test_pattern(off + j, (unsigned)sd->i);
        int err = coil_stream_write(s, chunk, n);
        if (!err)
            err = coil_stream_drain(s);
        if (err) {
            sd->b->werr[sd->i] = err;
            free(chunk);
            return 0;
        }
        off += n;
    }
    free(chunk);
    sd->b->werr[sd->i] = coil_stream_write_eof(s);
    return 0;
}

static int bulk_reader(void *arg)
{
    struct side *sd = arg;
    coil_stream_t *s = sd->b->s[sd->i];
    unsigned peer = (unsigned)(1 - sd->i);
    unsigned char buf[5003];
    unsigned r = 77u + (unsigned)sd->i;
    for (;;) {
        r = r * 1103515245u + 12345u;
        size_t want = 1 + (r >> 8) % sizeof(buf);
        ssize_t n;
        if (r & 0x10000) {
            size_t got = 0;
            int e = coil_stream_read_exactly(s, buf, want, &got);
            n = e == 0 || e == -EPIPE ? (ssize_t)got : e;
            if (e == -EPIPE && got == 0)
                n = 0;
        } else {
            n = coil_stream_read(s, buf, want);
        }
        if (n < 0) {
            sd->b->rerr[sd->i] = (int)n;
            return 0;
        }
        if (n == 0)
            return 0;
        for (ssize_t j = 0; j < n; j++)
            if (buf[j] != test_pattern(sd->b->rgot[sd->i] + (size_t)j, peer))
                sd->b->bad[sd->i]++;
        sd->b->rgot[sd->i] += (size_t)n;
    }
}

static int bulk_main(void *arg)
{
    struct bulk *b = arg;
    struct side sd[2] = {{b, 0}, {b, 1}};
    coil_task_t *t[4];
    t[0] = test_spawn(b->loop, bulk_writer, &sd[0]);
    t[1] = test_spawn(b->loop, bulk_writer, &sd[1]);
    t[2] = test_spawn(b->loop, bulk_reader, &sd[0]);
    t[3] = test_spawn(b->loop, bulk_reader, &sd[1]);
    for (int i = 0; i < 4; i++)
        test_join(t[i]);
    return 0;
}

struct wrap {
    int fds[2];
    coil_stream_t **out;
    int r;
};

static int wrap_main(void *arg)
{
    struct wrap *w = arg;
    w->r = coil_stream_open_fd(w->fds[0], &w->out[0]);
    if (!w->r)
        w->r = coil_stream_open_fd(w->fds[1], &w->out[1]);
    return 0;
}

static void bulk_run(coil_loop_t *loop, int fds[2])
{
    struct bulk b = {.loop = loop};
    struct wrap w = {{fds[0], fds[1]}, b.s, 0};
    assert_int_equal(test_run_task(loop, wrap_main, &w), 0);
    assert_int_equal(w.r, 0);
    size_t high = 0, low = 0;
    assert_int_equal(coil_stream_write_limits(b.s[0], &high, &low), 0);
    assert_int_equal(high, COIL_STREAM_HIGH_WATER);
    assert_int_equal(low, COIL_STREAM_LOW_WATER);
    coil_stream_set_write_limits(b.s[0], 8192, 1024);
    assert_int_equal(coil_stream_write_limits(b.s[0], &high, NULL), 0);
    assert_int_equal(coil_stream_write_limits(b.s[0], NULL, &low), 0);
    assert_int_equal(high, 8192);
    assert_int_equal(low, 1024);
    assert_int_equal(coil_stream_write_limits(NULL, &high, &low), -EINVAL);
    assert_int_equal(test_run_task(loop, bulk_main, &b), 0);
    coil_stream_unref(b.s[0]);
    coil_stream_unref(b.s[1]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(b.werr[i], 0);
        assert_int_equal(b.rerr[i], 0);
        assert_int_equal(b.rgot[i], BULK);
        assert_int_equal(b.bad[i], 0);
    }
}

static void test_bulk_small_buffers_unix(void **state)
{
    int fds[2];
    make_pair(fds, true);
    bulk_run(test_loop(state), fds);
}

static void test_bulk_small_buffers_tcp(void **state)
{
    int fds[2];
    tcp_pair(fds);
    bulk_run(test_loop(state), fds);
}

/* ------------------------------------------------------------------ */
/* drain                                                                */
/* ------------------------------------------------------------------ */

#define PUSH (512u * 1024)

struct bp {
    coil_loop_t *loop;
    int fds[2];
    coil_stream_t *s;
    int wr, dr;
    bool in_drain, drained;
    size_t buffered_before, buffered_after;
    bool blocked_while_unread;
    size_t received;
    coil_task_t *writer;
};

static int bp_writer(void *arg)
{
    struct bp *b = arg;
    char *big = malloc(PUSH);
    if (!big)
        return -ENOMEM;
    memset(big, 'x', PUSH);
    b->wr = coil_stream_write(b->s, big, PUSH);
    free(big);
    b->buffered_before = coil_stream_write_buffered(b->s);
    b->in_drain = true;
    b->dr = coil_stream_drain(b->s);
    b->drained = true;
    b->buffered_after = coil_stream_write_buffered(b->s);
    return 0;
}

static int bp_main(void *arg)
{
    struct bp *b = arg;
    if (coil_stream_open_fd(b->fds[0], &b->s))
        return -1;
    coil_task_t *w = test_spawn(b->loop, bp_writer, b);
    coil_sleep(50 * COIL_MSEC); /* the peer reads nothing meanwhile */
    b->blocked_while_unread = b->in_drain && !b->drained;
    char buf[8192];
    while (b->received < PUSH) {
        ssize_t n = coil_sock_recv(b->fds[1], buf, sizeof(buf));
        if (n <= 0)
            break;
        b->received += (size_t)n;
    }
    test_join(w);
    coil_stream_unref(b->s);
    return 0;
}

static void test_drain_backpressure(void **state)
{
    struct bp b = {.loop = test_loop(state)};
    make_pair(b.fds, true);
    assert_int_equal(test_run_task(b.loop, bp_main, &b), 0);
    coil_sock_close(b.fds[1]);
    assert_int_equal(b.wr, 0);
    assert_true(b.buffered_before > COIL_STREAM_HIGH_WATER);
    assert_true(b.blocked_while_unread);
    assert_int_equal(b.dr, 0);
    assert_true(b.drained);
    assert_true(b.buffered_after <= COIL_STREAM_LOW_WATER);
    assert_int_equal(b.received, PUSH);
}

/* A cancelled drain: the buffered data is still sent, all of it. */
static int bp_cancel_main(void *arg)
{
    struct bp *b = arg;
    if (coil_stream_open_fd(b->fds[0], &b->s))
        return -1;
    coil_task_t *w = test_spawn(b->loop, bp_writer, b);
    coil_sleep(20 * COIL_MSEC);
    coil_task_cancel(w);
    test_join(w);
    char buf[8192];
    while (b->received < PUSH) {
        ssize_t n = coil_sock_recv(b->fds[1], buf, sizeof(buf));
        if (n <= 0)
            break;
        b->received += (size_t)n;
    }
    coil_stream_unref(b->s);
    return 0;
}

static void test_drain_cancel(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    struct bp b = {.loop = test_loop(state)};
    make_pair(b.fds, true);
    assert_int_equal(test_run_task(b.loop, bp_cancel_main, &b), 0);
    coil_sock_close(b.fds[1]);
    assert_int_equal(b.wr, 0);
    assert_int_equal(b.dr, -ECANCELED);
    assert_int_equal(b.received, PUSH);
}

/* The last unref with data buffered: it is flushed, then the fd closed. */
static int orphan_main(void *arg)
{
    struct bp *b = arg;
    if (coil_stream_open_fd(b->fds[0], &b->s))
        return -1;
    char *big = malloc(PUSH);
    if (!big)
        return -ENOMEM;
    for (size_t i = 0; i < PUSH; i++)
        big[i] = (char)test_pattern(i, 3);
    b->wr = coil_stream_write(b->s, big, PUSH);
    b->buffered_before = coil_stream_write_buffered(b->s);
    coil_stream_unref(b->s);
    char buf[8192];
    size_t bad = 0;
    for (;;) {
        ssize_t n = coil_sock_recv(b->fds[1], buf, sizeof(buf));
        if (n <= 0) {
            b->dr = (int)n;
            break;
        }
        for (ssize_t j = 0; j < n; j++)
            bad += buf[j] != big[b->received + (size_t)j];
        b->received += (size_t)n;
    }
    free(big);
    return (int)bad;
}

static void test_unref_flushes(void **state)
{
    struct bp b = {.loop = test_loop(state)};
    make_pair(b.fds, true);
    assert_int_equal(test_run_task(b.loop, orphan_main, &b), 0);
    coil_sock_close(b.fds[1]);
    assert_int_equal(b.wr, 0);
    assert_true(b.buffered_before > 0);
    assert_int_equal(b.received, PUSH);
    assert_int_equal(b.dr, 0); /* end of stream: the fd was closed */
}

/* ------------------------------------------------------------------ */
/* Half-close, reset, close                                             */
/* ------------------------------------------------------------------ */

struct half {
    coil_loop_t *loop;
    int fds[2];
    coil_stream_t *a, *b;
    int eof_r, write_after, b_eof;
    char a_got[8], b_got[8];
    ssize_t a_n, a_end, b_n;
};

static int half_b(void *arg)
{
    struct half *h = arg;
    size_t len = 0;
    h->b_n = coil_stream_read_exactly(h->b, h->b_got, 4, &len);
    char x;
    h->b_eof = (int)coil_stream_read(h->b, &x, 1);
    coil_stream_write(h->b, "pong", 4);
    coil_stream_close(h->b);
    return coil_stream_wait_closed(h->b);
}

static int half_main(void *arg)
{
    struct half *h = arg;
    if (coil_stream_open_fd(h->fds[0], &h->a) ||
        coil_stream_open_fd(h->fds[1], &h->b))
        return -1;
    coil_task_t *t = test_spawn(h->loop, half_b, h);
    coil_stream_write(h->a, "ping", 4);
    h->eof_r = coil_stream_write_eof(h->a);
    h->write_after = coil_stream_write(h->a, "x", 1);
    size_t got = 0;
    h->a_n = coil_stream_read_exactly(h->a, h->a_got, 4, &got);
    h->a_n = h->a_n ? h->a_n : (ssize_t)got;
    h->a_end = coil_stream_read(h->a, h->a_got + 4, 4);
    test_join(t);
    coil_stream_unref(h->a);
    coil_stream_unref(h->b);
    return 0;
}

static void test_write_eof_half_close(void **state)
{
    struct half h = {.loop = test_loop(state)};
    make_pair(h.fds, false);
    assert_int_equal(test_run_task(h.loop, half_main, &h), 0);
    assert_int_equal(h.eof_r, 0);
    assert_int_equal(h.write_after, -EPIPE);
    assert_int_equal(h.b_n, 0);
    assert_memory_equal(h.b_got, "ping", 4);
    assert_int_equal(h.b_eof, 0);
    assert_int_equal(h.a_n, 4);
    assert_memory_equal(h.a_got, "pong", 4);
    assert_int_equal(h.a_end, 0);
}

struct rst {
    coil_loop_t *loop;
    int fds[2];
    coil_stream_t *s;
    int r1, r2, werr;
    size_t len;
    char buf[64];
};

static int rst_reader(void *arg)
{
    struct rst *r = arg;
    r->r1 = coil_stream_readline(r->s, r->buf, sizeof(r->buf), &r->len);
    r->r2 = (int)coil_stream_read(r->s, r->buf, sizeof(r->buf));
    return 0;
}

static int rst_read_main(void *arg)
{
    struct rst *r = arg;
    if (coil_stream_open_fd(r->fds[0], &r->s))
        return -1;
    coil_task_t *t = test_spawn(r->loop, rst_reader, r);
    coil_sleep(10 * COIL_MSEC);
    reset_close(r->fds[1]);
    test_join(t);
    coil_stream_unref(r->s);
    return 0;
}

static void test_peer_reset_read(void **state)
{
    struct rst r = {.loop = test_loop(state)};
    tcp_pair(r.fds);
    assert_int_equal(test_run_task(r.loop, rst_read_main, &r), 0);
    assert_int_equal(r.r1, -ECONNRESET);
    assert_int_equal(r.r2, -ECONNRESET); /* sticky */
}

static int rst_later(void *arg)
{
    struct rst *r = arg;
    coil_sleep(10 * COIL_MSEC); /* the writer is blocked in drain */
    reset_close(r->fds[1]);
    return 0;
}

static int rst_write_main(void *arg)
{
    struct rst *r = arg;
    if (coil_stream_open_fd(r->fds[0], &r->s))
        return -1;
    static char chunk[65536];
    int err = 0;
    coil_task_t *t = test_spawn(r->loop, rst_later, r);
    for (int i = 0; i < 1000 && !err; i++) {
        err = coil_stream_write(r->s, chunk, sizeof(chunk));
        if (!err)
            err = coil_stream_drain(r->s);
    }
    r->werr = err;
    r->r1 = coil_stream_write(r->s, "x", 1); /* the error sticks */
    test_join(t);
    coil_stream_unref(r->s);
    return 0;
}

static void test_peer_reset_write(void **state)
{
    struct rst r = {.loop = test_loop(state)};
    tcp_pair(r.fds);
    small_buffers(r.fds[0]);
    assert_int_equal(test_run_task(r.loop, rst_write_main, &r), 0);
    assert_true(r.werr == -ECONNRESET || r.werr == -EPIPE);
    assert_int_equal(r.r1, r.werr);
}

/* ------------------------------------------------------------------ */
/* Cancellation of a read keeps what arrived                            */
/* ------------------------------------------------------------------ */

static int cancel_reader(void *arg)
{
    struct rst *r = arg;
    r->r1 = coil_stream_readline(r->s, r->buf, sizeof(r->buf), &r->len);
    return 0;
}

static int cancel_read_main(void *arg)
{
    struct rst *r = arg;
    if (coil_stream_open_fd(r->fds[0], &r->s))
        return -1;
    coil_task_t *t = test_spawn(r->loop, cancel_reader, r);
    coil_sleep(5 * COIL_MSEC);
    put(r->fds[1], "partial");
    coil_sleep(10 * COIL_MSEC); /* the reader buffers it and waits on */
    coil_task_cancel(t);
    test_join(t);
    r->werr = (int)coil_stream_read_buffered(r->s);
    put(r->fds[1], "rest\n");
    r->r2 = coil_stream_readline(r->s, r->buf, sizeof(r->buf), &r->len);
    coil_stream_unref(r->s);
    return 0;
}

static void test_cancel_read_keeps_data(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    struct rst r = {.loop = test_loop(state)};
    make_pair(r.fds, false);
    assert_int_equal(test_run_task(r.loop, cancel_read_main, &r), 0);
    close(r.fds[1]);
    assert_int_equal(r.r1, -ECANCELED);
    assert_int_equal(r.werr, 7);
    assert_int_equal(r.r2, 0);
    assert_int_equal(r.len, 12);
    assert_memory_equal(r.buf, "partialrest\n", 12);
}

static int close_reader(void *arg)
{
    struct rst *r = arg;
    r->r1 = (int)coil_stream_read(r->s, r->buf, sizeof(r->buf));
    return 0;
}

static int close_main(void *arg)
{
    struct rst *r = arg;
    if (coil_stream_open_fd(r->fds[0], &r->s))
        return -1;
    coil_task_t *t = test_spawn(r->loop, close_reader, r);
    coil_sleep(5 * COIL_MSEC);
    coil_stream_close(r->s);
    r->werr = coil_stream_wait_closed(r->s);
    test_join(t);
    r->r2 = (int)coil_stream_read(r->s, r->buf, 1);
    r->len = (size_t)coil_stream_write(r->s, "x", 1);
    coil_stream_unref(r->s);
    return 0;
}

static void test_close_wakes_reader(void **state)
{
    struct rst r = {.loop = test_loop(state)};
    make_pair(r.fds, false);
    assert_int_equal(test_run_task(r.loop, close_main, &r), 0);
    close(r.fds[1]);
    assert_int_equal(r.r1, -EBADF);
    assert_int_equal(r.werr, 0);
    assert_int_equal(r.r2, -EBADF);
    assert_int_equal((int)r.len, -EPIPE);
}

/* ------------------------------------------------------------------ */
/* One reader at a time; a timeout around a read; reading after close   */
/* ------------------------------------------------------------------ */

struct two {
    coil_loop_t *loop;
    int fds[2];
    coil_stream_t *s;
    int a_r, b_read, b_line, b_exact, b_until, next_r;
    size_t a_len, buffered, next_len;
    char a_buf[64], next_buf[64];
};

static int first_reader(void *arg)
{
    struct two *w = arg;
    w->a_r = coil_stream_readline(w->s, w->a_buf, sizeof(w->a_buf),
                                  &w->a_len);
    return 0;
}

static int two_main(void *arg)
{
    struct two *w = arg;
    if (coil_stream_open_fd(w->fds[0], &w->s))
        return -1;
    coil_task_t *t = test_spawn(w->loop, first_reader, w);
    coil_sleep(5 * COIL_MSEC);
    put(w->fds[1], "par");
    coil_sleep(10 * COIL_MSEC); /* the first reader holds "par", waits on */
    char b[8];
    size_t len;
    w->b_read = (int)coil_stream_read(w->s, b, sizeof(b));
    w->b_line = coil_stream_readline(w->s, b, sizeof(b), &len);
    w->b_exact = coil_stream_read_exactly(w->s, b, 2, &len);
    w->b_until = coil_stream_readuntil(w->s, "r", 1, b, sizeof(b), &len);
    w->buffered = coil_stream_read_buffered(w->s);
    put(w->fds[1], "tial\nnext\n");
    test_join(t);
    /* Once the first reader is done, anyone may read. */
    w->next_r = coil_stream_readline(w->s, w->next_buf, sizeof(w->next_buf),
                                     &w->next_len);
    coil_stream_unref(w->s);
    return 0;
}

static void test_two_readers(void **state)
{
    struct two w = {.loop = test_loop(state)};
    make_pair(w.fds, false);
    assert_int_equal(test_run_task(w.loop, two_main, &w), 0);
    close(w.fds[1]);
    assert_int_equal(w.b_read, -EBUSY);
    assert_int_equal(w.b_line, -EBUSY);
    assert_int_equal(w.b_exact, -EBUSY);
    assert_int_equal(w.b_until, -EBUSY);
    assert_int_equal(w.buffered, 3); /* nothing taken from under it */
    assert_int_equal(w.a_r, 0);
    assert_int_equal(w.a_len, 8);
    assert_memory_equal(w.a_buf, "partial\n", 8);
    assert_int_equal(w.next_r, 0);
    assert_int_equal(w.next_len, 5);
    assert_memory_equal(w.next_buf, "next\n", 5);
}

struct tmo {
    int fds[2];
    int line_r, exact_r, line2_r;
    size_t buffered_line, buffered_exact, exact_got, len;
    char buf[64];
};

/* readline/read_exactly inside a 20 ms timeout scope. */
static int read_within(coil_stream_t *s, bool exact, struct tmo *t)
{
    coil_timeout_t *scope;
    int r = coil_timeout_begin(20 * COIL_MSEC, &scope);
    if (r)
        return r;
    if (exact)
        r = coil_stream_read_exactly(s, t->buf, 10, &t->exact_got);
    else
        r = coil_stream_readline(s, t->buf, sizeof(t->buf), &t->len);
    return coil_timeout_end(scope, r);
}

static int tmo_main(void *arg)
{
    struct tmo *t = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(t->fds[0], &s))
        return -1;
    put(t->fds[1], "ab");
    t->line_r = read_within(s, false, t);
    t->buffered_line = coil_stream_read_buffered(s);
    t->exact_r = read_within(s, true, t);
    t->buffered_exact = coil_stream_read_buffered(s);
    put(t->fds[1], "c\n");
    t->line2_r = coil_stream_readline(s, t->buf, sizeof(t->buf), &t->len);
    coil_stream_unref(s);
    return 0;
}

static void test_timeout_around_read(void **state)
{
    struct tmo t = {0};
    make_pair(t.fds, false);
    assert_int_equal(test_run_task(test_loop(state), tmo_main, &t), 0);
    close(t.fds[1]);
    assert_int_equal(t.line_r, -ETIMEDOUT);
    assert_int_equal(t.buffered_line, 2);
    assert_int_equal(t.exact_r, -ETIMEDOUT);
    assert_int_equal(t.exact_got, 0);
    assert_int_equal(t.buffered_exact, 2);
    assert_int_equal(t.line2_r, 0);
    assert_int_equal(t.len, 4);
    assert_memory_equal(t.buf, "abc\n", 4);
}

struct after {
    int fds[2];
    int line_r, line2_r, exact_r, exact2_r, read_r, read2_r;
    size_t len, got;
    bool at_eof;
    char line[16], rest[4];
};

static int after_main(void *arg)
{
    struct after *a = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(a->fds[0], &s))
        return -1;
    put(a->fds[1], "abc\nde");
    a->line_r = coil_stream_readline(s, a->line, sizeof(a->line), &a->len);
    coil_stream_close(s);
    size_t len;
    char b[8];
    /* What needs the socket fails and consumes nothing... */
    a->line2_r = coil_stream_readline(s, b, sizeof(b), &len);
    a->exact_r = coil_stream_read_exactly(s, b, 3, &a->got);
    /* ...what was received is still there. */
    a->read_r = (int)coil_stream_read(s, a->rest, 1);
    a->exact2_r = coil_stream_read_exactly(s, a->rest + 1, 1, NULL);
    a->read2_r = (int)coil_stream_read(s, b, 1);
    a->at_eof = coil_stream_at_eof(s);
    coil_stream_unref(s);
    return 0;
}

static void test_read_after_close(void **state)
{
    struct after a = {0};
    make_pair(a.fds, false);
    assert_int_equal(test_run_task(test_loop(state), after_main, &a), 0);
    close(a.fds[1]);
    assert_int_equal(a.line_r, 0);
    assert_int_equal(a.len, 4);
    assert_int_equal(a.line2_r, -EBADF);
    assert_int_equal(a.exact_r, -EBADF);
    assert_int_equal(a.got, 0);
    assert_int_equal(a.read_r, 1);
    assert_int_equal(a.exact2_r, 0);
    assert_memory_equal(a.rest, "de", 2);
    assert_int_equal(a.read2_r, -EBADF);
    assert_false(a.at_eof);
}

/* ------------------------------------------------------------------ */
/* A stream made from an fd number that was closed behind the loop     */
/* ------------------------------------------------------------------ */

struct reuse {
    coil_loop_t *loop;
    int peer;
    int wait_r, line_r;
    bool reused;
    size_t len;
    char buf[16];
};

static int late_sender(void *arg)
{
    struct reuse *u = arg;
    coil_sleep(5 * COIL_MSEC);
    put(u->peer, "hi\n");
    return 0;
}

static int reuse_main(void *arg)
{
    struct reuse *u = arg;
    int a[2], b[2];
    test_socketpair(a);
    /* A wait that times out leaves the read interest armed... */
    coil_timeout_t *scope;
    char c;
    if (coil_timeout_begin(COIL_MSEC, &scope))
        return -1;
    u->wait_r = coil_timeout_end(scope, (int)coil_sock_recv(a[0], &c, 1));
    /* ...and a plain close() is not seen by the loop. The number is then
     * given to a new socket, as the kernel would. */
    int num = a[0];
    close(a[0]);
    close(a[1]);
    test_socketpair(b);
    if (b[0] != num) {
        u->reused = dup2(b[0], num) == num;
        close(b[0]);
    } else {
        u->reused = true;
    }
    u->peer = b[1];
    coil_stream_t *s;
    if (coil_stream_open_fd(num, &s))
        return -1;
    coil_task_t *t = test_spawn(u->loop, late_sender, u);
    if (coil_timeout_begin(2 * COIL_SEC, &scope))
        return -1;
    u->line_r = coil_timeout_end(
        scope, coil_stream_readline(s, u->buf, sizeof(u->buf), &u->len));
    test_join(t);
    coil_stream_unref(s);
    close(b[1]);
    return 0;
}

static void test_stream_on_reused_number(void **state)
{
    struct reuse u = {.loop = test_loop(state)};
    assert_int_equal(test_run_task(u.loop, reuse_main, &u), 0);
    assert_int_equal(u.wait_r, -ETIMEDOUT);
    assert_true(u.reused);
    assert_int_equal(u.line_r, 0);
    assert_int_equal(u.len, 3);
    assert_memory_equal(u.buf, "hi\n", 3);
}

/* ------------------------------------------------------------------ */
/* Failing system calls under the stream (the fault seam)              */
/* ------------------------------------------------------------------ */

struct faults {
    int fds[2];
    int eintr_r, reset_r, reset2_r, send_eintr_r, send_fail_r, send_fail2_r;
    int drain_r, bg_r, bg_write_r;
    unsigned reset_calls;
    size_t len, peer_got;
    char buf[16];
};

static int faults_main(void *arg)
{
    struct faults *f = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(f->fds[0], &s))
        return -1;
    /* Interrupted receives are retried. */
    put(f->fds[1], "hi\n");
    coil_test_fail(COIL_TEST_RECV, 1, 3, -EINTR);
    f->eintr_r = coil_stream_readline(s, f->buf, sizeof(f->buf), &f->len);
    /* Interrupted sends too: every byte arrives once. */
    coil_test_fail(COIL_TEST_SEND, 1, 2, -EINTR);
    f->send_eintr_r = coil_stream_write(s, "0123456789", 10);
    f->peer_got = (size_t)recv(f->fds[1], f->buf + 3, 10, MSG_DONTWAIT);
    /* A reset is returned, and stays without another receive. */
    put(f->fds[1], "more");
    coil_test_fail(COIL_TEST_RECV, 1, 1, -ECONNRESET);
    f->reset_r = (int)coil_stream_read(s, f->buf, sizeof(f->buf));
    f->reset2_r = (int)coil_stream_read(s, f->buf, sizeof(f->buf));
    f->reset_calls = coil_test_calls(COIL_TEST_RECV);
    /* A failed send is returned now, by every later write and by drain. */
    coil_test_fail(COIL_TEST_SEND, 1, 1, -EPIPE);
    f->send_fail_r = coil_stream_write(s, "x", 1);
    f->send_fail2_r = coil_stream_write(s, "y", 1);
    f->drain_r = coil_stream_drain(s);
    coil_test_reset_faults();
    coil_stream_unref(s);
    return 0;
}

static void test_syscall_faults(void **state)
{
    test_exact_io(); /* exact syscall counts, one write sends all */
    struct faults f = {0};
    make_pair(f.fds, false);
    assert_int_equal(test_run_task(test_loop(state), faults_main, &f), 0);
    close(f.fds[1]);
    assert_int_equal(f.eintr_r, 0);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.buf, "hi\n", 3);
    assert_int_equal(f.send_eintr_r, 0);
    assert_int_equal(f.peer_got, 10);
    assert_memory_equal(f.buf + 3, "0123456789", 10);
    assert_int_equal(f.reset_r, -ECONNRESET);
    assert_int_equal(f.reset2_r, -ECONNRESET);
    assert_int_equal(f.reset_calls, 1);
    assert_int_equal(f.send_fail_r, -EPIPE);
    assert_int_equal(f.send_fail2_r, -EPIPE);
    assert_int_equal(f.drain_r, -EPIPE);
}

/* The background sender meets the failure: drain reports it. */
static int bg_fault_main(void *arg)
{
    struct faults *f = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(f->fds[0], &s))
        return -1;
    static char chunk[65536];
    coil_stream_set_write_limits(s, 0, 0);
    f->bg_write_r = coil_stream_write(s, chunk, sizeof(chunk));
    size_t queued = coil_stream_write_buffered(s); /* the socket is full */
    coil_test_fail(COIL_TEST_SEND, 1, 1, -ECONNRESET);
    /* Make room at the peer so the socket turns writable. */
    char sink[4096];
    while (recv(f->fds[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
        ;
    f->bg_r = queued ? coil_stream_drain(s) : -1;
    f->len = coil_stream_write_buffered(s);
    coil_test_reset_faults();
    coil_stream_unref(s);
    return 0;
}

static void test_background_send_fault(void **state)
{
    struct faults f = {0};
    make_pair(f.fds, true);
    assert_int_equal(test_run_task(test_loop(state), bg_fault_main, &f), 0);
    close(f.fds[1]);
    assert_int_equal(f.bg_write_r, 0);
    assert_int_equal(f.bg_r, -ECONNRESET);
    assert_int_equal(f.len, 0); /* the buffer went with the failure */
}

/* ------------------------------------------------------------------ */
/* The background sender cannot be started (epoll_ctl fails)            */
/* ------------------------------------------------------------------ */

#define SENDER_BYTES (256u * 1024)

struct nosender {
    coil_loop_t *loop;
    int fds[2];
    coil_stream_t *s;
    int part_r, none_r, drain_r, bad;
    size_t buffered_after_part, buffered_before_none, buffered_after_none;
    size_t got;
};

static int sink(void *arg)
{
    struct nosender *x = arg;
    unsigned char b[8192];
    for (;;) {
        ssize_t n = coil_sock_recv(x->fds[1], b, sizeof(b));
        if (n <= 0)
            return (int)n;
        for (ssize_t i = 0; i < n; i++)
            x->bad += b[i] != test_pattern(x->got + (size_t)i, 3);
        x->got += (size_t)n;
    }
}

static int nosender_main(void *arg)
{
    struct nosender *x = arg;
    if (coil_stream_open_fd(x->fds[0], &x->s))
        return -1;
    static unsigned char data[SENDER_BYTES];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = test_pattern(i, 3);
    size_t half = sizeof(data) / 2;
    /* The kernel takes a prefix, the sender cannot be registered: the
     * rest is kept, in order. */
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    x->part_r = coil_stream_write(x->s, data, half);
    x->buffered_after_part = coil_stream_write_buffered(x->s);
    /* Nothing of this one can go out before the rest: a failure to start
     * the sender now takes nothing. */
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 1, 1, ENOMEM);
    x->buffered_before_none = coil_stream_write_buffered(x->s);
    x->none_r = coil_stream_write(x->s, data + half, half);
    x->buffered_after_none = coil_stream_write_buffered(x->s);
    coil_test_reset_faults();
    int err = x->none_r ? coil_stream_write(x->s, data + half, half) : 0;
    coil_task_t *t = test_spawn(x->loop, sink, x);
    coil_stream_set_write_limits(x->s, 0, 0);
    x->drain_r = err ? err : coil_stream_drain(x->s);
    coil_stream_close(x->s);
    coil_stream_wait_closed(x->s);
    test_join(t);
    coil_stream_unref(x->s);
    return 0;
}

static void test_sender_start_fails(void **state)
{
    test_exact_io(); /* the kernel must take a prefix, not all */
    struct nosender x = {.loop = test_loop(state)};
    make_pair(x.fds, true);
    assert_int_equal(test_run_task(x.loop, nosender_main, &x), 0);
    coil_sock_close(x.fds[1]);
    assert_int_equal(x.part_r, -ENOMEM);
    assert_true(x.buffered_after_part > 0);
    assert_true(x.buffered_after_part < SENDER_BYTES / 2);
    assert_int_equal(x.none_r, -ENOMEM);
    assert_int_equal(x.buffered_after_none, x.buffered_before_none);
    assert_int_equal(x.drain_r, 0);
    assert_int_equal(x.got, SENDER_BYTES); /* all of it, once, in order */
    assert_int_equal(x.bad, 0);
}

/* ------------------------------------------------------------------ */
/* Arguments, -EPERM, allocation failure                                */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Closing with unsent data; outliving the loop                         */
/* ------------------------------------------------------------------ */

struct unsent {
    int fds[2];
    coil_stream_t *s;
    int read_r, drain_r, join_r[2];
    size_t got;
    size_t buffered_at_close;
};

static int unsent_reader(void *arg)
{
    struct unsent *u = arg;
    char buf[100];
    u->read_r = coil_stream_read_exactly(u->s, buf, sizeof(buf), &u->got);
    return 0;
}

static int unsent_drainer(void *arg)
{
    struct unsent *u = arg;
    u->drain_r = coil_stream_drain(u->s);
    return 0;
}

static int unsent_main(void *arg)
{
    struct unsent *u = arg;
    if (coil_stream_open_fd(u->fds[0], &u->s))
        return -1;
    /* The peer reads nothing: most of this stays buffered. */
    static char big[1 << 20];
    if (coil_stream_write(u->s, big, sizeof(big)))
        return -2;
    coil_loop_t *loop = coil_running_loop();
    coil_task_t *r = test_spawn(loop, unsent_reader, u);
    coil_task_t *d = test_spawn(loop, unsent_drainer, u);
    coil_sleep(COIL_MSEC); /* both are suspended now */
    u->buffered_at_close = coil_stream_write_buffered(u->s);
    coil_stream_close(u->s);
    /* They wake at once; a second is far more than enough. */
    u->join_r[0] = coil_wait_for(coil_task_future(r), COIL_SEC, NULL);
    u->join_r[1] = coil_wait_for(coil_task_future(d), COIL_SEC, NULL);
    coil_task_unref(r);
    coil_task_unref(d);
    coil_stream_unref(u->s); /* still flushing: the loop closes it */
    return 0;
}

/* close() while data is still unsent (the peer reads nothing): a task in
 * read_exactly wakes with -EBADF, a drainer with -EPIPE, at once. */
static void test_close_with_unsent_wakes_waiters(void **state)
{
    struct unsent u = {.read_r = 1, .drain_r = 1};
    make_pair(u.fds, true);
    assert_int_equal(test_run_task(test_loop(state), unsent_main, &u), 0);
    assert_true(u.buffered_at_close > COIL_STREAM_HIGH_WATER);
    assert_int_equal(u.join_r[0], 0);
    assert_int_equal(u.join_r[1], 0);
    assert_int_equal(u.read_r, -EBADF);
    assert_int_equal(u.got, 0);
    assert_int_equal(u.drain_r, -EPIPE);
    close(u.fds[1]);
}

/* The last unref while another task is suspended reading: the reading
 * call holds the stream's memory until it returns, with -EBADF. */
struct lastu {
    int fds[2];
    coil_stream_t *s;
    ssize_t r;
    coil_stream_t *ref_after; /* coil_stream_ref after the last unref */
    struct exc_log exc;
};

static int lastu_reader(void *arg)
{
    struct lastu *l = arg;
    char buf[8];
    l->r = coil_stream_read(l->s, buf, sizeof(buf));
    return 0;
}

static int lastu_main(void *arg)
{
    struct lastu *l = arg;
    if (coil_stream_open_fd(l->fds[0], &l->s))
        return -1;
    coil_loop_t *loop = coil_running_loop();
    coil_loop_set_exception_handler(loop, test_exc_record, &l->exc);
    coil_task_t *t = test_spawn(loop, lastu_reader, l);
    coil_yield(); /* it waits for data */
    coil_stream_unref(l->s);
    /* The reader's call still holds the memory: a ref now, or one unref
     * too many, is a misuse that is reported, not a resurrection. */
    l->ref_after = coil_stream_ref(l->s);
    coil_stream_unref(l->s);
    test_join(t);
    coil_loop_set_exception_handler(loop, NULL, NULL);
    return 0;
}

static void test_last_unref_while_reading(void **state)
{
    struct lastu l = {.r = 1, .ref_after = (coil_stream_t *)1};
    make_pair(l.fds, false);
    assert_int_equal(test_run_task(test_loop(state), lastu_main, &l), 0);
    assert_int_equal(l.r, -EBADF);
    assert_null(l.ref_after);
    assert_int_equal(l.exc.count, 2);
    assert_int_equal(l.exc.last_error, 0);
    assert_non_null(strstr(l.exc.last_message, "once too often"));
    close(l.fds[1]);
}

struct outlive {
    int fds[2];
    coil_stream_t *s;
};

static int outlive_main(void *arg)
{
    struct outlive *o = arg;
    if (coil_stream_open_fd(o->fds[0], &o->s))
        return -1;
    static char big[1 << 20];
    if (coil_stream_write(o->s, big, sizeof(big)))
        return -2;
    return 0; /* the caller keeps the stream, with data unsent */
}

/* A stream with unsent data, kept past coil_loop_unref: the loop's close
 * closed it (its fd too); every call is still safe, and the last unref
 * frees it and, last of all, the loop's memory. Under ASan or valgrind a
 * read of the freed loop would show here. */
static void test_stream_outlives_loop(void **state)
{
    (void)state;
    long fds_before = test_fd_count();
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    long loop_fds = test_fd_count() - fds_before; /* poller, wake-up */
    struct outlive o = {0};
    make_pair(o.fds, true);
    assert_int_equal(test_run_task(loop, outlive_main, &o), 0);
    assert_true(coil_stream_write_buffered(o.s) > 0);
    long fds_open = test_fd_count();
    coil_loop_unref(loop);
    /* The loop's own fds and the stream's went. */
    assert_int_equal(test_fd_count(), fds_open - loop_fds - 1);
    assert_true(coil_stream_is_closing(o.s));
    assert_int_equal(coil_stream_fd(o.s), -1);
    assert_int_equal(coil_stream_write_buffered(o.s), 0);
    assert_int_equal(coil_stream_write(o.s, "x", 1), -EPIPE);
    assert_int_equal(coil_stream_close(o.s), 0);
    assert_false(coil_stream_at_eof(o.s));
    char b[4];
    assert_int_equal(coil_stream_read(o.s, b, 4), -EPERM);
    coil_stream_unref(o.s);
    close(o.fds[1]);
}

/* ------------------------------------------------------------------ */
/* Growing with the data; reading to the end; at_eof                    */
/* ------------------------------------------------------------------ */

struct huge {
    int fds[2];
    int r;
    size_t got;
    char buf[16];
    size_t largest;
};

static int huge_main(void *arg)
{
    struct huge *h = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(h->fds[0], &s))
        return -1;
    put(h->fds[1], "0123456789");
    shutdown(h->fds[1], SHUT_WR);
    test_alloc_largest(true);
    /* A peer announcing 64 GiB decides nothing: the buffer grows with
     * what arrives, and the short read at the end is returned. buf only
     * has to hold what arrives. */
    h->r = coil_stream_read_exactly(s, h->buf, (size_t)64 << 30, &h->got);
    h->largest = test_alloc_largest(false);
    coil_stream_unref(s);
    return 0;
}

static void test_read_exactly_grows_with_data(void **state)
{
    test_exact_io();
    struct huge h = {.r = 1};
    make_pair(h.fds, false);
    assert_int_equal(test_run_task(test_loop(state), huge_main, &h), 0);
    assert_int_equal(h.r, -EPIPE);
    assert_int_equal(h.got, 10);
    assert_memory_equal(h.buf, "0123456789", 10);
    assert_true(h.largest <= 64 * 1024);
    close(h.fds[1]);
}

struct all {
    int fds[2];
    int r[8];
    size_t len[8];
    char got[8][64];
    ssize_t n;
    bool eof[4];
};

static int all_main(void *arg)
{
    struct all *a = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(a->fds[0], &s))
        return -1;
    int peer = a->fds[1];
    /* More than the limit before the end: -EMSGSIZE, nothing consumed. */
    coil_stream_set_limit(s, 8);
    put(peer, "0123456789");
    a->r[0] = coil_stream_read_all(s, a->got[0], 64, &a->len[0]);
    a->n = coil_stream_read(s, a->got[1], 64); /* all ten are there */
    /* The end comes: everything up to it. */
    coil_stream_set_limit(s, 64);
    put(peer, "hello ");
    put(peer, "world");
    a->eof[0] = coil_stream_at_eof(s);
    shutdown(peer, SHUT_WR);
    /* Too small a buffer: -ENOBUFS with the length, nothing consumed. */
    a->r[1] = coil_stream_read_all(s, a->got[2], 4, &a->len[1]);
    a->r[2] = coil_stream_read_all(s, a->got[3], 64, &a->len[2]);
    /* At the end: 0 bytes, and at_eof without another read. */
    a->eof[1] = coil_stream_at_eof(s);
    a->r[3] = coil_stream_read_all(s, a->got[4], 64, &a->len[3]);
    a->r[4] = coil_stream_read_all(s, a->got[4], 64, NULL);
    coil_stream_unref(s);
    return 0;
}

static void test_read_all(void **state)
{
    struct all a;
    memset(&a, 0, sizeof(a));
    make_pair(a.fds, false);
    assert_int_equal(test_run_task(test_loop(state), all_main, &a), 0);
    assert_int_equal(a.r[0], -EMSGSIZE);
    assert_int_equal(a.len[0], 0);
    assert_int_equal(a.n, 10);
    assert_memory_equal(a.got[1], "0123456789", 10);
    assert_false(a.eof[0]);
    assert_int_equal(a.r[1], -ENOBUFS);
    assert_int_equal(a.len[1], 11);
    assert_int_equal(a.r[2], 0);
    assert_int_equal(a.len[2], 11);
    assert_memory_equal(a.got[3], "hello world", 11);
    assert_true(a.eof[1]);
    assert_int_equal(a.r[3], 0);
    assert_int_equal(a.len[3], 0);
    assert_int_equal(a.r[4], -EINVAL);
    close(a.fds[1]);
}

struct eofs {
    int fds[2];
    bool at[5];
    int r;
};

static int eofs_main(void *arg)
{
    struct eofs *e = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(e->fds[0], &s))
        return -1;
    char buf[8];
    put(e->fds[1], "abc");
    e->at[0] = coil_stream_at_eof(s); /* data, no end */
    e->r = coil_stream_read_exactly(s, buf, 3, NULL);
    e->at[1] = coil_stream_at_eof(s); /* all read, the peer still open */
    shutdown(e->fds[1], SHUT_WR);
    e->at[2] = coil_stream_at_eof(s); /* the end, with no read meeting it */
    e->at[3] = coil_stream_at_eof(s);
    coil_stream_unref(s);
    return 0;
}

/* at_eof once the peer has ended the stream and every byte was read,
 * without a read having met the end (asyncio's at_eof). */
static void test_at_eof_without_another_read(void **state)
{
    struct eofs e = {.r = 1};
    make_pair(e.fds, false);
    assert_int_equal(test_run_task(test_loop(state), eofs_main, &e), 0);
    assert_int_equal(e.r, 0);
    assert_false(e.at[0]);
    assert_false(e.at[1]);
    assert_true(e.at[2]);
    assert_true(e.at[3]);
    close(e.fds[1]);
}

/* A stream's fd is the stream's: coil_sock_close and a reader watcher on
 * it are refused (-EBUSY), and the stream goes on working. */
struct owned {
    int fds[2];
    int close_r, reader_r, sock_r;
    ssize_t n;
};

static void never(void *arg)
{
    (void)arg;
}

static int owned_main(void *arg)
{
    struct owned *o = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(o->fds[0], &s))
        return -1;
    coil_loop_t *loop = coil_running_loop();
    o->close_r = coil_sock_close(o->fds[0]);
    o->reader_r = coil_loop_add_reader(loop, o->fds[0], never, NULL);
    char c;
    o->sock_r = (int)coil_sock_recv(o->fds[0], &c, 1);
    put(o->fds[1], "z");
    o->n = coil_stream_read(s, &c, 1);
    coil_stream_unref(s);
    return 0;
}

static void test_stream_fd_is_owned(void **state)
{
    struct owned o = {0};
    make_pair(o.fds, false);
    assert_int_equal(test_run_task(test_loop(state), owned_main, &o), 0);
    assert_int_equal(o.close_r, -EBUSY);
    assert_int_equal(o.reader_r, -EBUSY);
    assert_int_equal(o.sock_r, -EBUSY); /* it would have to wait: refused */
    assert_int_equal(o.n, 1);
    close(o.fds[1]);
}

/* What coil_stream_open_fd refuses: anything but a stream socket that is
 * not listening (each left open for the caller, *out NULL); a blocking
 * one is made non-blocking. */
struct wrong {
    int r[5];
    bool null_out[5], still_open[5];
    bool made_nonblocking;
};

static int wrong_main(void *arg)
{
    struct wrong *w = arg;
    int sv[2];
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char path[] = "/tmp/coil-stream-XXXXXX";
    int file = mkstemp(path);
    if (file >= 0)
        unlink(path);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (dir < 0 || file < 0 || udp < 0 || lst < 0 ||
        bind(lst, (struct sockaddr *)&a, sizeof(a)) || listen(lst, 1) ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return -1;
    int fds[4] = {dir, file, udp, lst};
    for (int i = 0; i < 4; i++) {
        coil_stream_t *s = (coil_stream_t *)1;
        w->r[i] = coil_stream_open_fd(fds[i], &s);
        w->null_out[i] = s == NULL;
        w->still_open[i] = fcntl(fds[i], F_GETFD) >= 0;
    }
    coil_stream_t *s = NULL;
    w->r[4] = coil_stream_open_fd(sv[0], &s); /* blocking */
    w->made_nonblocking = (fcntl(sv[0], F_GETFL) & O_NONBLOCK) != 0;
    coil_stream_unref(s);
    close(dir);
    close(file);
    close(udp);
    close(lst);
    close(sv[1]);
    return 0;
}

static void test_open_fd_wrong_files(void **state)
{
    struct wrong w;
    memset(&w, 0, sizeof(w));
    assert_int_equal(test_run_task(test_loop(state), wrong_main, &w), 0);
    assert_int_equal(w.r[0], -EINVAL); /* a directory */
    assert_int_equal(w.r[1], -EINVAL); /* a regular file */
    assert_int_equal(w.r[2], -EPROTOTYPE); /* a datagram socket */
    assert_int_equal(w.r[3], -EINVAL);     /* a listening socket */
    for (int i = 0; i < 4; i++) {
        assert_true(w.null_out[i]);
        assert_true(w.still_open[i]);
    }
    assert_int_equal(w.r[4], 0);
    assert_true(w.made_nonblocking);
}

/* at_eof looks into the socket without reading: a reset it meets there
 * is kept for the next read, not taken for the end of the stream. */
static int eof_rst_main(void *arg)
{
    struct rst *r = arg;
    if (coil_stream_open_fd(r->fds[0], &r->s))
        return -1;
    reset_close(r->fds[1]);
    coil_sleep(10 * COIL_MSEC); /* the reset arrives */
    r->werr = coil_stream_at_eof(r->s);
    r->r1 = (int)coil_stream_read(r->s, r->buf, sizeof(r->buf));
    r->r2 = (int)coil_stream_read(r->s, r->buf, sizeof(r->buf));
    coil_stream_unref(r->s);
    return 0;
}

static void test_at_eof_keeps_reset(void **state)
{
    struct rst r = {.loop = test_loop(state), .werr = 1};
    tcp_pair(r.fds);
    assert_int_equal(test_run_task(r.loop, eof_rst_main, &r), 0);
    assert_int_equal(r.werr, false);
    assert_int_equal(r.r1, -ECONNRESET);
    assert_int_equal(r.r2, -ECONNRESET);
}

/* A limit of SIZE_MAX (allowed: no limit) must not wrap the size the
 * buffer grows towards: 256 KiB take a few receives, not one per byte. */
struct nolimit {
    int fds[2];
    int r;
    size_t len;
    unsigned recvs;
};

static int nolimit_writer(void *arg)
{
    struct nolimit *n = arg;
    static char data[256 * 1024];
    int err = coil_sock_send_all(n->fds[1], data, sizeof(data), NULL);
    shutdown(n->fds[1], SHUT_WR);
    return err;
}

static int nolimit_main(void *arg)
{
    struct nolimit *n = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(n->fds[0], &s))
        return -1;
    coil_stream_set_limit(s, SIZE_MAX);
    static char buf[256 * 1024];
    coil_task_t *t = test_spawn(coil_running_loop(), nolimit_writer, n);
    coil_test_reset_faults();
    n->r = coil_stream_read_all(s, buf, sizeof(buf), &n->len);
    n->recvs = coil_test_calls(COIL_TEST_RECV);
    test_join(t);
    coil_stream_unref(s);
    return 0;
}

static void test_read_all_without_limit(void **state)
{
    test_exact_io(); /* receives of what is there, not chaos's pieces */
    struct nolimit n = {.r = 1};
    make_pair(n.fds, false);
    assert_int_equal(test_run_task(test_loop(state), nolimit_main, &n), 0);
    assert_int_equal(n.r, 0);
    assert_int_equal(n.len, 256 * 1024);
    assert_true(n.recvs > 0);
    assert_true(n.recvs < 1000);
    close(n.fds[1]);
}

static int make_one(void *arg)
{
    struct rst *r = arg;
    return coil_stream_open_fd(r->fds[0], &r->s);
}

/* A number that is not open (the pair's, closed): -EBADF, *out NULL. */
static int make_on_closed(void *arg)
{
    struct rst *r = arg;
    int sv[2];
    test_socketpair(sv);
    close(sv[0]);
    close(sv[1]);
    r->s = (coil_stream_t *)1;
    r->r1 = coil_stream_open_fd(sv[0], &r->s);
    return 0;
}

static void test_bad_arguments(void **state)
{
    test_exact_io(); /* one write outside a loop sends all */
    coil_stream_t *s = (coil_stream_t *)1;
    char b[4];
    size_t len;
    assert_int_equal(coil_stream_open_fd(3, NULL), -EINVAL);
    assert_int_equal(coil_stream_open_fd(-1, &s), -EBADF);
    assert_null(s);
    assert_int_equal(coil_stream_open_fd(0, &s), -EPERM); /* no loop */
    assert_int_equal(coil_stream_read(NULL, b, 1), -EINVAL);
    assert_int_equal(coil_stream_read_exactly(NULL, b, 1, NULL), -EINVAL);
    assert_int_equal(coil_stream_readline(NULL, b, 4, &len), -EINVAL);
    len = 7;
    assert_int_equal(coil_stream_read_all(NULL, b, 4, &len), -EINVAL);
    assert_int_equal(len, 0);
    assert_int_equal(coil_stream_write(NULL, b, 1), -EINVAL);
    assert_int_equal(coil_stream_drain(NULL), -EINVAL);
    assert_int_equal(coil_stream_write_eof(NULL), -EINVAL);
    assert_int_equal(coil_stream_close(NULL), -EINVAL);
    assert_int_equal(coil_stream_abort(NULL), -EINVAL);
    assert_int_equal(coil_stream_wait_closed(NULL), -EINVAL);
    assert_int_equal(coil_stream_set_limit(NULL, 1), -EINVAL);
    assert_int_equal(coil_stream_set_write_limits(NULL, 2, 1), -EINVAL);
    assert_int_equal(coil_stream_peer_address(NULL, NULL), -EINVAL);
    assert_int_equal(coil_stream_fd(NULL), -1);
    assert_false(coil_stream_at_eof(NULL));
    coil_stream_unref(NULL);
    assert_null(coil_stream_ref(NULL));

    struct rst r = {0};
    assert_int_equal(test_run_task(test_loop(state), make_on_closed, &r), 0);
    assert_int_equal(r.r1, -EBADF);
    assert_null(r.s);
    make_pair(r.fds, false);
    assert_int_equal(test_run_task(test_loop(state), make_one, &r), 0);
    /* Outside a task. */
    assert_int_equal(coil_stream_read(r.s, b, 1), -EPERM);
    assert_int_equal(coil_stream_read_exactly(r.s, b, 1, &len), -EPERM);
    assert_int_equal(coil_stream_readline(r.s, b, 4, &len), -EPERM);
    assert_int_equal(coil_stream_readuntil(r.s, "x", 1, b, 4, &len), -EPERM);
    assert_int_equal(coil_stream_read_all(r.s, b, 4, &len), -EPERM);
    assert_int_equal(coil_stream_drain(r.s), -EPERM);
    assert_int_equal(coil_stream_wait_closed(r.s), -EPERM);
    /* Bad values. */
    assert_int_equal(coil_stream_set_limit(r.s, 0), -EINVAL);
    assert_int_equal(coil_stream_set_write_limits(r.s, 1, 2), -EINVAL);
    assert_int_equal(coil_stream_write(r.s, NULL, 1), -EINVAL);
    assert_int_equal(coil_stream_write(r.s, "ok", 2), 0); /* any thread */
    assert_int_equal(recv(r.fds[1], b, 4, 0), 2);
    struct sockaddr_storage ss;
    assert_true(coil_stream_local_address(r.s, &ss) > 0);
    assert_int_equal(ss.ss_family, AF_UNIX);
    assert_int_equal(coil_stream_fd(r.s), r.fds[0]);
    assert_int_equal(coil_stream_close(r.s), 0);
    assert_int_equal(coil_stream_close(r.s), 0);
    assert_true(coil_stream_is_closing(r.s));
    assert_int_equal(coil_stream_fd(r.s), -1);
    assert_int_equal(coil_stream_peer_address(r.s, &ss), -EBADF);
    coil_stream_unref(r.s);
    close(r.fds[1]);
}

struct oom {
    int fds[2];
    long nth;
    int r1, r2;
    bool failed;
};

static int oom_main(void *arg)
{
    struct oom *o = arg;
    coil_stream_t *s = NULL;
    static char big[8192];
    test_alloc_fail_after(o->nth);
    o->r1 = coil_stream_open_fd(o->fds[0], &s);
    if (!o->r1) {
        /* Fill the socket, then buffer: the buffer allocates. */
        o->r2 = 0;
        for (int i = 0; i < 200 && !o->r2; i++)
            o->r2 = coil_stream_write(s, big, sizeof(big));
    }
    o->failed = test_alloc_failed();
    test_alloc_fail_after(0);
    coil_stream_unref(s);
    return 0;
}

static void test_alloc_failure(void **state)
{
    bool done = false;
    for (long nth = 1; nth < 50 && !done; nth++) {
        struct oom o = {.nth = nth};
        make_pair(o.fds, true);
        assert_int_equal(test_run_task(test_loop(state), oom_main, &o), 0);
        if (o.r1) {
            assert_int_equal(o.r1, -ENOMEM);
            close(o.fds[0]);
        }
        close(o.fds[1]);
        if (!o.failed)
            done = true;
        else
            assert_true(o.r1 == -ENOMEM || o.r2 == -ENOMEM);
    }
    assert_true(done);
}

/* Memory while idle: a write the kernel takes whole allocates nothing; a
 * write buffer exists only while bytes wait in it. And when the kernel
 * took a prefix and the rest cannot be buffered, the stream fails for
 * writing (-ENOMEM from then on; nothing is dropped without an error).
 * The peer reads with coil_stream_read, straight into its buffer, so
 * that only the writer's allocations count. */
struct idle {
    coil_loop_t *loop;
    int fds[2];
    long after_small, while_buffered, after_flush;
    bool same;
    int partial_r, later_r, drain_r;
};

static int idle_main(void *arg)
{
    struct idle *x = arg;
    coil_stream_t *s = NULL, *peer = NULL;
    if (coil_stream_open_fd(x->fds[0], &s) ||
        coil_stream_open_fd(x->fds[1], &peer))
        return -1;
    static unsigned char data[SENDER_BYTES], got[SENDER_BYTES];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = test_pattern(i, 5);
    long base = coil_test_alloc_live();
    int err = coil_stream_write(s, data, 64);
    if (!err) /* read: straight into got (read_exactly keeps a buffer) */
        err = coil_stream_read(peer, got, 64) == 64 ? 0 : -EIO;
    x->after_small = coil_test_alloc_live() - base;
    if (!err)
        err = coil_stream_write(s, data, sizeof(data)); /* > the socket */
    x->while_buffered = coil_test_alloc_live() - base;
    if (!err)
        err = coil_stream_set_write_limits(s, 0, 0);
    for (size_t n = 0; !err && n < sizeof(got);) {
        ssize_t r = coil_stream_read(peer, got + n, sizeof(got) - n);
        if (r <= 0)
            err = r ? (int)r : -EPIPE;
        else
            n += (size_t)r;
    }
    if (!err)
        err = coil_stream_drain(s);
    x->same = memcmp(data, got, sizeof(data)) == 0;
    x->after_flush = coil_test_alloc_live() - base;
    /* A prefix goes (the socket is empty), the rest cannot be kept. */
    coil_test_alloc_fail_after(1);
    x->partial_r = coil_stream_write(s, data, sizeof(data));
    coil_test_alloc_fail_after(0);
    x->later_r = coil_stream_write(s, data, 1);
    x->drain_r = coil_stream_drain(s);
    coil_stream_close(s);
    coil_stream_close(peer);
    coil_stream_unref(s);
    coil_stream_unref(peer);
    return err;
}

static void test_idle_buffers(void **state)
{
    test_exact_io(); /* the kernel must take what it can, at once */
    struct idle x = {.loop = test_loop(state)};
    make_pair(x.fds, true);
    assert_int_equal(test_run_task(x.loop, idle_main, &x), 0);
    assert_int_equal(x.after_small, 0);
    assert_true(x.while_buffered >= 1);
    assert_true(x.same);
    assert_int_equal(x.after_flush, 0); /* the write buffer given back */
    assert_int_equal(x.partial_r, -ENOMEM);
    assert_int_equal(x.later_r, -ENOMEM);
    assert_int_equal(x.drain_r, -ENOMEM);
}

/* ------------------------------------------------------------------ */
/* Receives left in flight by cancelled reads                           */
/* ------------------------------------------------------------------ */

struct cancelled_read {
    coil_stream_t *s;
    int r;
};

static int cancelled_read_task(void *arg)
{
    struct cancelled_read *c = arg;
    char b[64];
    c->r = (int)coil_stream_read(c->s, b, sizeof(b));
    return 0;
}

/* Leave a cancelled read on each of the n streams: a reader waits on
 * each, then all are cancelled (on io_uring their receives stay in
 * flight). Returns how many reads ended otherwise than -ECANCELED. */
static int cancel_reads(coil_loop_t *loop, coil_stream_t **s, int n)
{
    struct cancelled_read *c = calloc((size_t)n, sizeof(*c));
    coil_task_t **t = calloc((size_t)n, sizeof(*t));
    if (!c || !t) {
        free(c);
        free(t);
        return n;
    }
    for (int i = 0; i < n; i++) {
        c[i] = (struct cancelled_read){s[i], 1};
        t[i] = test_spawn(loop, cancelled_read_task, &c[i]);
    }
    coil_sleep(5 * COIL_MSEC); /* each reader waits */
    for (int i = 0; i < n; i++)
        coil_task_cancel(t[i]);
    int other = 0;
    for (int i = 0; i < n; i++) {
        test_join(t[i]);
        other += c[i].r != -ECANCELED;
    }
    free(c);
    free(t);
    return other;
}

/* Many socket pairs, a stream on end 0 of each: the tests of receives
 * left in flight, more of them than io_uring's 256 buffers. */
#define MANY_MAX 270

struct many {
    int n;
    int fds[MANY_MAX][2];
    coil_stream_t *s[MANY_MAX];
};

/* Before the test's task: the pairs (each test cancels reads on purpose). */
static void many_pairs(struct many *m, int n)
{
    test_allow_reports("swallowed its cancellation");
    m->n = n;
    for (int i = 0; i < n; i++)
        make_pair(m->fds[i], false);
}

/* In the task: the streams. 0, or -1 if one could not be opened. */
static int many_open(struct many *m)
{
    for (int i = 0; i < m->n; i++)
        if (coil_stream_open_fd(m->fds[i][0], &m->s[i]))
            return -1;
    return 0;
}

/* After the task: the peers' ends. */
static void many_close_peers(struct many *m)
{
    for (int i = 0; i < m->n; i++)
        close(m->fds[i][1]);
}

/*
 * On io_uring a reader's receive is submitted to the kernel and lands in
 * one of the loop's buffers (256 of them); a cancelled reader leaves it
 * in flight, and what it brings is kept, holding its buffer, until the
 * next read. More streams than buffers: those that found none read the
 * plain way. Every byte arrives, in order, on every backend; and the
 * buffers come back (a second round reads the same way).
 */
#define HELD_STREAMS 270

struct held {
    coil_loop_t *loop;
    struct many m;
    int not_cancelled; /* reads that ended otherwise */
    int eof_early; /* at_eof said true with bytes waiting */
    int wrong;     /* reads that did not give back what was sent */
    int eof_r[HELD_STREAMS];
};

static int held_main(void *arg)
{
    struct held *h = arg;
    if (many_open(&h->m))
        return -1;
    for (int round = 0; round < 2; round++) {
        h->not_cancelled += cancel_reads(h->loop, h->m.s, HELD_STREAMS);
        char msg[32], got[64];
        for (int i = 0; i < HELD_STREAMS; i++) {
            snprintf(msg, sizeof(msg), "round %d stream %03d", round, i);
            put(h->m.fds[i][1], msg);
        }
        coil_sleep(10 * COIL_MSEC); /* the receives in flight complete */
        for (int i = 0; i < HELD_STREAMS; i++) {
            snprintf(msg, sizeof(msg), "round %d stream %03d", round, i);
            size_t n = strlen(msg), k = 0;
            h->eof_early += coil_stream_at_eof(h->m.s[i]);
            /* A few bytes a read: what is kept is taken in pieces. */
            while (k < n) {
                ssize_t r = coil_stream_read(h->m.s[i], got + k, 5);
                if (r <= 0)
                    break;
                k += (size_t)r;
            }
            h->wrong += k != n || memcmp(got, msg, n) != 0;
        }
    }
    for (int i = 0; i < HELD_STREAMS; i++) {
        shutdown(h->m.fds[i][1], SHUT_WR);
        char c;
        h->eof_r[i] = (int)coil_stream_read(h->m.s[i], &c, 1);
        coil_stream_unref(h->m.s[i]);
    }
    return 0;
}

static void test_cancelled_reads_keep_what_comes(void **state)
{
    static struct held h;
    memset(&h, 0, sizeof(h));
    h.loop = test_loop(state);
    many_pairs(&h.m, HELD_STREAMS);
    assert_int_equal(test_run_task(h.loop, held_main, &h), 0);
    many_close_peers(&h.m);
    assert_int_equal(h.not_cancelled, 0);
    for (int i = 0; i < HELD_STREAMS; i++)
        assert_int_equal(h.eof_r[i], 0);
    assert_int_equal(h.eof_early, 0);
    assert_int_equal(h.wrong, 0);
}

/*
 * The receive faults of the testing kit reach a read that waited first
 * (after a short one), where io_uring takes a completed receive instead
 * of calling recv(2): interruptions and spurious EAGAINs are retried, a
 * reset stays.
 */
struct waited_faults {
    int fds[2];
    ssize_t first, eintr, eagain, reset, reset2;
    char buf[16];
};

static int waited_faults_main(void *arg)
{
    struct waited_faults *f = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(f->fds[0], &s))
        return -1;
    put(f->fds[1], "a");
    f->first = coil_stream_read(s, f->buf, sizeof(f->buf)); /* short */
    put(f->fds[1], "bc");
    coil_test_fail(COIL_TEST_RECV, 1, 3, -EINTR);
    f->eintr = coil_stream_read(s, f->buf, sizeof(f->buf));
    put(f->fds[1], "e");
    coil_test_fail(COIL_TEST_RECV, 1, 2, -EAGAIN);
    f->eagain = coil_stream_read(s, f->buf + 2, sizeof(f->buf) - 2);
    put(f->fds[1], "d");
    coil_test_fail(COIL_TEST_RECV, 1, 1, -ECONNRESET);
    f->reset = coil_stream_read(s, f->buf + 3, sizeof(f->buf) - 3);
    f->reset2 = coil_stream_read(s, f->buf + 3, sizeof(f->buf) - 3);
    coil_test_reset_faults();
    coil_stream_unref(s);
    return 0;
}

static void test_faults_after_a_wait(void **state)
{
    test_exact_io(); /* whole messages per read */
    struct waited_faults f = {0};
    make_pair(f.fds, false);
    assert_int_equal(test_run_task(test_loop(state), waited_faults_main, &f),
                     0);
    close(f.fds[1]);
    assert_int_equal(f.first, 1);
    assert_int_equal(f.eintr, 2);
    assert_memory_equal(f.buf, "bce", 3);
    assert_int_equal(f.eagain, 1);
    assert_int_equal(f.reset, -ECONNRESET);
    assert_int_equal(f.reset2, -ECONNRESET);
}

/*
 * Closing a stream while its reader waits lets the socket go at once: the
 * peer sees the end (on io_uring the receive in flight, which holds the
 * file, is cancelled first).
 */
struct close_seen {
    coil_loop_t *loop;
    int fds[2];
    coil_stream_t *s;
    int read_r;
    ssize_t peer_r;
};

static int close_seen_reader(void *arg)
{
    struct close_seen *c = arg;
    char b[8];
    c->read_r = (int)coil_stream_read(c->s, b, sizeof(b));
    return 0;
}

static int close_seen_main(void *arg)
{
    struct close_seen *c = arg;
    if (coil_stream_open_fd(c->fds[0], &c->s))
        return -1;
    coil_task_t *t = test_spawn(c->loop, close_seen_reader, c);
    coil_sleep(5 * COIL_MSEC);
    coil_stream_close(c->s);
    test_join(t);
    coil_sleep(5 * COIL_MSEC);
    char b;
    c->peer_r = recv(c->fds[1], &b, 1, MSG_DONTWAIT);
    coil_stream_unref(c->s);
    return 0;
}

static void test_close_while_receiving(void **state)
{
    struct close_seen c = {.loop = test_loop(state), .peer_r = -2};
    tcp_pair(c.fds);
    assert_int_equal(test_run_task(c.loop, close_seen_main, &c), 0);
    close(c.fds[1]);
    assert_int_equal(c.read_r, -EBADF);
    assert_int_equal(c.peer_r, 0);
}

/*
 * at_eof while a cancelled reader's receive is still in flight: the
 * receive may already hold bytes that came before the end (its
 * completion not yet handed over: a wait hands over at most 256), so a
 * peek at the socket, which sees only the end, must not decide. The
 * pipes' wake-ups and the sockets' bytes and ends come interleaved, more
 * than one wait hands over; every pipe reader woken asks each socket
 * stream at_eof before anything is read from them. Every stream then
 * gives its bytes, and only then its end.
 */
#define EOF_SOCKS 200
#define EOF_PIPES 100

struct eof_flight {
    coil_loop_t *loop;
    struct many m;
    int pp[EOF_PIPES][2];
    coil_stream_t *ps[EOF_PIPES];
    int not_cancelled, eof_early, ok, lost, eof_after;
};

struct eof_arg {
    struct eof_flight *e;
    int i;
};

static int eof_pipe_reader(void *arg)
{
    struct eof_arg *a = arg;
    struct eof_flight *e = a->e;
    char c;
    (void)coil_stream_read(e->ps[a->i], &c, 1);
    for (int i = 0; i < EOF_SOCKS; i++)
        e->eof_early += coil_stream_at_eof(e->m.s[i]);
    return 0;
}

static int eof_flight_main(void *arg)
{
    struct eof_flight *e = arg;
    static struct eof_arg pa[EOF_PIPES];
    coil_task_t *pt[EOF_PIPES];
    if (many_open(&e->m))
        return -1;
    for (int k = 0; k < EOF_PIPES; k++)
        if (coil_stream_open_fd(e->pp[k][0], &e->ps[k]))
            return -1;
    e->not_cancelled = cancel_reads(e->loop, e->m.s, EOF_SOCKS);
    for (int k = 0; k < EOF_PIPES; k++) {
        pa[k] = (struct eof_arg){e, k};
        pt[k] = test_spawn(e->loop, eof_pipe_reader, &pa[k]);
    }
    coil_sleep(5 * COIL_MSEC);
    for (int i = 0; i < EOF_SOCKS; i++) {
        if (i % 2 == 0 && write(e->pp[i / 2][1], "x", 1) != 1)
            test_task_failure();
        put(e->m.fds[i][1], "data");
        shutdown(e->m.fds[i][1], SHUT_WR);
    }
    for (int k = 0; k < EOF_PIPES; k++)
        test_join(pt[k]);
    for (int i = 0; i < EOF_SOCKS; i++) {
        char got[64];
        ssize_t r = coil_stream_read(e->m.s[i], got, sizeof(got));
        if (r == 4 && memcmp(got, "data", 4) == 0)
            e->ok++;
        else
            e->lost++;
        e->eof_after += coil_stream_read(e->m.s[i], got, sizeof(got)) == 0 &&
                        coil_stream_at_eof(e->m.s[i]);
        coil_stream_unref(e->m.s[i]);
    }
    for (int k = 0; k < EOF_PIPES; k++)
        coil_stream_unref(e->ps[k]);
    return 0;
}

static void test_at_eof_with_receive_in_flight(void **state)
{
    test_exact_io(); /* each stream's four bytes in one read */
    static struct eof_flight e;
    memset(&e, 0, sizeof(e));
    e.loop = test_loop(state);
    many_pairs(&e.m, EOF_SOCKS);
    for (int k = 0; k < EOF_PIPES; k++)
        assert_int_equal(pipe(e.pp[k]), 0);
    assert_int_equal(test_run_task(e.loop, eof_flight_main, &e), 0);
    many_close_peers(&e.m);
    for (int k = 0; k < EOF_PIPES; k++)
        close(e.pp[k][1]);
    assert_int_equal(e.not_cancelled, 0);
    assert_int_equal(e.eof_early, 0);
    assert_int_equal(e.lost, 0);
    assert_int_equal(e.ok, EOF_SOCKS);
    assert_int_equal(e.eof_after, EOF_SOCKS);
}

/*
 * Closing streams whose cancelled readers left receives in flight, while
 * the kernel takes no submissions (io_uring's enter failing): the cancels
 * that find no room are owed and go at the next wait, so every peer sees
 * the end (a receive left running would hold its socket open). The
 * failure touches no other backend here: nothing waits meanwhile.
 */
#define OWED_STREAMS 270

struct owed {
    coil_loop_t *loop;
    struct many m;
    int not_cancelled;
    int ended; /* peers that saw the end */
};

static int owed_main(void *arg)
{
    struct owed *o = arg;
    if (many_open(&o->m))
        return -1;
    o->not_cancelled = cancel_reads(o->loop, o->m.s, OWED_STREAMS);
    coil_test_fail(COIL_TEST_POLL, 1, 0, -ENOMEM);
    for (int i = 0; i < OWED_STREAMS; i++)
        coil_stream_unref(o->m.s[i]);
    coil_test_reset_faults();
    coil_sleep(10 * COIL_MSEC);
    for (int i = 0; i < OWED_STREAMS; i++) {
        char c;
        o->ended += recv(o->m.fds[i][1], &c, 1, MSG_DONTWAIT) == 0;
    }
    return 0;
}

static void test_close_with_no_room_to_cancel(void **state)
{
    static struct owed o;
    memset(&o, 0, sizeof(o));
    o.loop = test_loop(state);
    many_pairs(&o.m, OWED_STREAMS);
    assert_int_equal(test_run_task(o.loop, owed_main, &o), 0);
    many_close_peers(&o.m);
    assert_int_equal(o.not_cancelled, 0);
    assert_int_equal(o.ended, OWED_STREAMS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_readline_readuntil),
        TEST(test_read_exactly_short),
        TEST(test_bulk_small_buffers_unix),
        TEST(test_bulk_small_buffers_tcp),
        TEST(test_drain_backpressure),
        TEST(test_drain_cancel),
        TEST(test_unref_flushes),
        TEST(test_write_eof_half_close),
        TEST(test_peer_reset_read),
        TEST(test_peer_reset_write),
        TEST(test_cancel_read_keeps_data),
        TEST(test_close_wakes_reader),
        TEST(test_two_readers),
        TEST(test_timeout_around_read),
        TEST(test_read_after_close),
        TEST(test_stream_on_reused_number),
        TEST(test_syscall_faults),
        TEST(test_background_send_fault),
        TEST(test_close_with_unsent_wakes_waiters),
        TEST_NOLOOP(test_stream_outlives_loop),
        TEST(test_last_unref_while_reading),
        TEST(test_read_exactly_grows_with_data),
        TEST(test_read_all),
        TEST(test_at_eof_without_another_read),
        TEST(test_stream_fd_is_owned),
        TEST(test_bad_arguments),
        TEST(test_open_fd_wrong_files),
        TEST(test_at_eof_keeps_reset),
        TEST(test_read_all_without_limit),
        TEST(test_alloc_failure),
        TEST(test_idle_buffers),
        TEST(test_cancelled_reads_keep_what_comes),
        TEST(test_faults_after_a_wait),
        TEST(test_close_while_receiving),
        TEST(test_at_eof_with_receive_in_flight),
        TEST(test_close_with_no_room_to_cancel),
    };
    const struct CMUnitTest epoll_tests[] = {
        TEST(test_sender_start_fails),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += TEST_RUN_IF(TEST_ON_EPOLL, "it injects an epoll_ctl fault",
                          epoll_tests);
    return failed;
}
