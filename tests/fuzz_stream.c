/* SPDX-License-Identifier: MIT */
/*
 * fuzz_stream.c - a libFuzzer target for the stream reader (coil/stream.h):
 * coil_stream_read, read_exactly, readline, readuntil, set_limit, at_eof
 * and read_buffered, checked call by call against a reference model.
 *
 * One input is one run on a fresh loop. A reader task plays a script of
 * reading calls on one end of a Unix socketpair wrapped in a stream; a
 * writer task sends the peer's bytes into the other end in chunks,
 * sleeping after each so that the reader sees partial data, separators
 * split across chunks and reads that must wait; then it shuts its side
 * down. The script always ends by reading to the end of the stream, and a
 * safety timer aborts a run that stops making progress, so every run ends.
 *
 * Input layout (bytes past the end of the input read as 0):
 *
 *   [0]    options: bits 0-1 small socket buffers (0 none, 1 both ends,
 *          2 the reader's receive buffer, 3 the writer's send buffer);
 *          bits 2-4 the fault to inject (below)
 *   [1]    the fault hits the (1 + [1])th use of what it targets
 *   [2]    and then (1 + ([2] & 7)) uses in a row
 *   [3]    the number of calls in the script, N
 *   [4..]  N calls of 3 bytes each: code, a, b
 *   rest   the peer's bytes as chunks: a length byte L, then L bytes (cut
 *          short by the end of the input); L = 0 is a pause alone
 *
 * Calls (code & 7):
 *   0  read(n = a); n == 0 passes a NULL buffer
 *   1  read_exactly(n = a + 256 * (b & 15))
 *   2  readline(cap = a + 256 * b)
 *   3  readuntil(seps[b & 7], cap = a + 256 * (b >> 3))
 *   4  readuntil(the one byte b, cap = a)
 *   5  set_limit(a + 256 * b); 0 must be refused with -EINVAL
 *   6  pause: sleep until the next poll, so the writer sends more and
 *      later calls find data already buffered
 *   7  read_exactly(n = a + 256 * b): buffers grown well past 4 KiB
 * code & 8 cancels the reader during the call, (code >> 4) * 16 loop
 * iterations after it starts (each 64 iterations let the loop poll once).
 *
 * Faults (options bits 2-4), through the test build's seams:
 *   1  recv(2) fails with EINTR      } invisible to the reader: the
 *   2  recv(2) fails with EAGAIN     } results must be the same as without
 *   3  recv(2) fails with ECONNRESET: the stream ends there, with an error
 *   4  the reader's allocations fail: -ENOMEM, nothing consumed
 *   else none.
 *
 * The model is the sequence of bytes sent, a cursor (what the calls have
 * returned so far) and where the stream ends (all of it, then end of
 * stream; or, after the injected reset, what had been received, then
 * -ECONNRESET). For every call it predicts the outcome the header
 * documents and checks the call against it: the bytes returned are the
 * next ones sent, in order; read returns what is buffered if anything is;
 * read_exactly returns n bytes, or at the end all that was left with
 * -EPIPE; readuntil and readline stop just after the first separator,
 * found within the limit and fitting cap, else -EMSGSIZE or -ENOBUFS with
 * nothing consumed; at the end readline returns the rest and readuntil
 * -EPIPE with it; set_limit takes effect. Around every call: nothing
 * buffered is lost, the buffer never holds more than the peer has sent,
 * at_eof is true exactly once the end was reported and stays so, and a
 * cancelled or failed (-ENOMEM) call consumed nothing. After the run every
 * allocation coil made is freed and the stream's fd is closed. Anything
 * else aborts, which libFuzzer reports with the input.
 *
 * It links libcoil_testing rather than libcoil: the testing kit's faults
 * (coil/testing.h, over the test build's syscall seam) are what let an
 * input make recv(2) fail, and its internal asserts stay on, so an
 * invariant broken inside the library stops the run as well.
 */
#include <errno.h>
#include <fcntl.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum call_kind {
    CALL_READ,
    CALL_READ_EXACTLY,
    CALL_READLINE,
    CALL_READUNTIL,
    CALL_READUNTIL_BYTE,
    CALL_SET_LIMIT,
    CALL_PAUSE,
    CALL_READ_EXACTLY_BIG,
};

enum fault {
    FAULT_NONE,
    FAULT_EINTR,
    FAULT_EAGAIN,
    FAULT_RESET,
    FAULT_NOMEM,
};

/* Separators for readuntil: short and long, some overlapping themselves
 * (a partial match must not hide the real one), one a NUL byte. */
static const struct {
    const char *bytes;
    size_t len;
} seps[8] = {
    {"\n", 1},    {"\r\n", 2},   {"\r\n\r\n", 4}, {"aa", 2},
    {"aab", 3},   {"abab", 4},   {"\0", 1},       {"--boundary--", 12},
};

/* How long a run may go without finishing before it counts as hung. */
#define HANG_SECONDS 20

/* ------------------------------------------------------------------ */
/* One run                                                              */
/* ------------------------------------------------------------------ */

/* Cancels a task some loop iterations after being armed. */
struct canceller {
    coil_loop_t *loop;
    coil_task_t *task;
    unsigned hops; /* iterations still to wait */
    bool armed;
    bool queued; /* a hop is scheduled */
    bool fired;  /* it cancelled the task since it was armed */
};

struct run {
    /* the input */
    const uint8_t *script; /* 3 bytes a call */
    size_t ncalls;
    const uint8_t *chunks; /* length-prefixed chunks */
    size_t chunks_len;
    enum fault fault;
    /* the model */
    uint8_t *sent;  /* every byte the writer sends, in order */
    size_t total;   /* how many */
    size_t pos;     /* how many the reading calls returned */
    size_t end;     /* how many they can ever return */
    int end_err;    /* 0: then end of stream; else this error */
    size_t limit;   /* the stream's limit, as set */
    bool eof_told;  /* a call reported the end of stream */
    size_t call;    /* the script's call running (for reports) */
    /* the writer's progress */
    size_t sent_bound; /* bytes it may have handed to the kernel so far */
    bool writer_shut;  /* it shut its side down */
    bool reader_done;  /* the reader closed its end */
    /* the stream */
    int rfd, wfd;
    coil_stream_t *s;
    struct canceller cancel;
};

static _Noreturn void fail(const struct run *R, const char *what, int line)
{
    fprintf(stderr,
            "fuzz_stream.c:%d: check failed: %s\n"
            "  (call %zu of %zu; returned %zu of %zu bytes, end at %zu"
            " with %d; limit %zu)\n",
            line, what, R->call, R->ncalls, R->pos, R->total, R->end,
            R->end_err, R->limit);
    abort();
}

#define CHECK(R, cond) ((cond) ? (void)0 : fail((R), #cond, __LINE__))

/* FUZZ_STREAM_TRACE=1 in the environment prints every call and what it
 * returned, to follow an input that fails. */
static bool tracing;

static void trace(const struct run *R, const char *call, size_t arg, long r,
                  size_t len)
{
    if (tracing)
        fprintf(stderr,
                "  %zu: %s(%zu) = %ld %s, len %zu (at %zu of %zu, %zu "
                "buffered)\n",
                R->call, call, arg, r, r < 0 ? coil_err_name((int)r) : "",
                len, R->pos, R->end, coil_stream_read_buffered(R->s));
}

/* The next chunk at *at in the chunk area: its bytes and length. */
static const uint8_t *next_chunk(const struct run *R, size_t *at,
                                 size_t *len)
{
    size_t n = R->chunks[(*at)++];
    size_t left = R->chunks_len - *at;
    *len = n < left ? n : left;
    const uint8_t *p = R->chunks + *at;
    *at += *len;
    return p;
}

/* ------------------------------------------------------------------ */
/* The model                                                            */
/* ------------------------------------------------------------------ */

/* Take n bytes out of the model: the call returned them in got. */
static void take(struct run *R, const void *got, size_t n)
{
    CHECK(R, n <= R->end - R->pos);
    CHECK(R, n == 0 || memcmp(got, R->sent + R->pos, n) == 0);
    R->pos += n;
}

/* A call failed with err: if that is the injected reset, met for the
 * first time, the stream now ends with what had arrived. */
static void note_error(struct run *R, long err)
{
    if (err != -ECONNRESET || R->fault != FAULT_RESET || R->end_err)
        return;
    CHECK(R, !R->eof_told);
    R->end = R->pos + coil_stream_read_buffered(R->s);
    R->end_err = -ECONNRESET;
}

/* Errors a call may return when something made it fail: consuming
 * nothing, and leaving the stream as good as before. */
static bool transient(const struct run *R, long err)
{
    return (err == -ECANCELED && R->cancel.fired) ||
           (err == -ENOMEM && fuzz_mem.hit);
}

/* The stream ended, and a call said so. */
static void told_eof(struct run *R)
{
    CHECK(R, R->end_err == 0 && R->pos == R->end);
    CHECK(R, R->writer_shut);
    R->eof_told = true;
}

/* What readuntil (readline if line) must do with the next avail bytes of
 * the stream, ended after them if ended: its error, *len, and whether it
 * returns the rest of the stream without a separator. err is NEED_MORE if
 * those bytes do not decide it. */
#define NEED_MORE 1
struct until {
    int err;
    size_t len;
    bool rest;
};

static struct until expect_until(const struct run *R, const void *sep,
                                 size_t seplen, size_t cap, bool line,
                                 size_t avail, bool ended)
{
    const uint8_t *p = R->sent + R->pos;
    const uint8_t *hit = avail >= seplen ? memmem(p, avail, sep, seplen)
                                         : NULL;
    if (hit && (size_t)(hit - p) <= R->limit) {
        size_t len = (size_t)(hit - p) + seplen;
        return (struct until){len > cap ? -ENOBUFS : 0, len, false};
    }
    /* Past the limit, or so much without it that it cannot be within. */
    if (hit || avail >= R->limit + seplen)
        return (struct until){-EMSGSIZE, 0, false};
    if (!ended)
        return (struct until){NEED_MORE, 0, false};
    if (R->end_err)
        return (struct until){R->end_err, 0, false};
    if (avail > cap)
        return (struct until){-ENOBUFS, avail, false};
    return (struct until){line ? 0 : -EPIPE, avail, true};
}

/* ------------------------------------------------------------------ */
/* The calls                                                            */
/* ------------------------------------------------------------------ */

static void do_read(struct run *R, size_t n, size_t buffered)
{
    uint8_t *buf = n ? malloc(n) : NULL;
    CHECK(R, n == 0 || buf);
    fuzz_mem.armed = true;
    fuzz_mem.hit = false;
    ssize_t r = coil_stream_read(R->s, buf, n);
    fuzz_mem.armed = false;
    trace(R, "read", n, r, 0);
    note_error(R, r);
    if (n == 0) {
        CHECK(R, r == 0);
    } else if (r > 0) {
        CHECK(R, (size_t)r <= n);
        /* What is buffered comes first, without waiting for more. */
        if (buffered)
            CHECK(R, (size_t)r == (n < buffered ? n : buffered));
        take(R, buf, (size_t)r);
    } else if (transient(R, r)) {
        CHECK(R, buffered == 0); /* else it would not have waited */
    } else {
        CHECK(R, buffered == 0 && R->pos == R->end);
        if (r == 0)
            told_eof(R);
        else
            CHECK(R, r == R->end_err);
    }
    free(buf);
}

static void do_read_exactly(struct run *R, size_t n, size_t buffered)
{
    uint8_t *buf = n ? malloc(n) : NULL;
    CHECK(R, n == 0 || buf);
    size_t got = (size_t)-1;
    fuzz_mem.armed = true;
    fuzz_mem.hit = false;
    int r = coil_stream_read_exactly(R->s, buf, n, &got);
    fuzz_mem.armed = false;
    trace(R, "read_exactly", n, r, got);
    note_error(R, r);
    size_t left = R->end - R->pos;
    if (transient(R, r)) {
        CHECK(R, got == 0 && buffered < n);
    } else if (left >= n) {
        CHECK(R, r == 0 && got == n);
        take(R, buf, n);
    } else if (R->end_err) {
        CHECK(R, r == R->end_err && got == 0);
    } else {
        /* Short at the end: what was left is returned and consumed. */
        CHECK(R, r == -EPIPE && got == left);
        take(R, buf, got);
        told_eof(R);
    }
    free(buf);
}

static void do_readuntil(struct run *R, const void *sep, size_t seplen,
                         size_t cap, bool line, size_t buffered)
{
    uint8_t *buf = cap ? malloc(cap) : NULL;
    CHECK(R, cap == 0 || buf);
    size_t len = (size_t)-1;
    fuzz_mem.armed = true;
    fuzz_mem.hit = false;
    int r = line ? coil_stream_readline(R->s, buf, cap, &len)
                 : coil_stream_readuntil(R->s, sep, seplen, buf, cap, &len);
    fuzz_mem.armed = false;
    trace(R, line ? "readline" : "readuntil", cap, r, len);
    note_error(R, r);
    if (transient(R, r)) {
        /* Only a call that had to receive more can fail this way. */
        struct until now = expect_until(R, sep, seplen, cap, line, buffered,
                                        false);
        CHECK(R, now.err == NEED_MORE);
        free(buf);
        return;
    }
    struct until want = expect_until(R, sep, seplen, cap, line,
                                     R->end - R->pos, true);
    CHECK(R, r == want.err);
    if (r == -ENOBUFS)
        CHECK(R, len == want.len); /* how long it is, nothing consumed */
    if (r == 0 || r == -EPIPE) {
        CHECK(R, len == want.len && len <= cap);
        take(R, buf, len);
        if (want.rest) {
            told_eof(R); /* readline's last line, readuntil's -EPIPE */
        } else {
            /* It ends with the first separator, found within the limit. */
            CHECK(R, len >= seplen && len - seplen <= R->limit &&
                         memcmp(buf + len - seplen, sep, seplen) == 0);
            CHECK(R, !memmem(buf, len - 1, sep, seplen));
        }
    }
    free(buf);
}

static void do_set_limit(struct run *R, size_t limit)
{
    int r = coil_stream_set_limit(R->s, limit);
    trace(R, "set_limit", limit, r, 0);
    CHECK(R, r == (limit ? 0 : -EINVAL));
    if (limit)
        R->limit = limit;
}

/* Checks that hold between any two calls. */
static void check_between(struct run *R, size_t pos_before,
                          size_t buffered_before)
{
    size_t buffered = coil_stream_read_buffered(R->s);
    /* Nothing leaves the buffer but what a call returned. */
    CHECK(R, buffered + (R->pos - pos_before) >= buffered_before);
    /* Never more than the peer sent (or than had come before a reset). */
    CHECK(R, R->pos + buffered <= R->end);
    CHECK(R, R->pos + buffered <= R->sent_bound);
    bool at_eof = coil_stream_at_eof(R->s);
    if (R->eof_told)
        CHECK(R, at_eof);
    if (at_eof)
        CHECK(R, R->end_err == 0 && R->pos == R->total && buffered == 0 &&
                     R->writer_shut);
}

/* ------------------------------------------------------------------ */
/* Cancelling the reader                                                */
/* ------------------------------------------------------------------ */

static void cancel_hop(void *arg)
{
    struct canceller *c = arg;
    c->queued = false;
    if (!c->armed)
        return;
    if (c->hops > 0) {
        c->hops--;
        c->queued = coil_loop_call_soon(c->loop, cancel_hop, c, NULL) == 0;
        return;
    }
    c->armed = false;
    c->fired = coil_task_cancel(c->task) == 0;
}

static void cancel_arm(struct canceller *c, unsigned hops)
{
    c->armed = true;
    c->fired = false;
    c->hops = hops;
    if (!c->queued)
        c->queued = coil_loop_call_soon(c->loop, cancel_hop, c, NULL) == 0;
}

/* After the call: no cancel may reach a later one. */
static void cancel_disarm(struct canceller *c)
{
    c->armed = false;
    c->fired = false;
    while (coil_task_cancelling(c->task) > 0)
        (void)coil_task_uncancel(c->task);
}

/* ------------------------------------------------------------------ */
/* The tasks                                                            */
/* ------------------------------------------------------------------ */

static void run_call(struct run *R, const uint8_t *op)
{
    unsigned kind = op[0] & 7;
    bool cancel = (op[0] & 8) != 0;
    size_t a = op[1], b = op[2];
    size_t pos = R->pos;
    size_t buffered = coil_stream_read_buffered(R->s);
    if (cancel)
        cancel_arm(&R->cancel, (op[0] >> 4) * 16u);
    switch (kind) {
    case CALL_READ:
        do_read(R, a, buffered);
        break;
    case CALL_READ_EXACTLY:
        do_read_exactly(R, a + 256 * (b & 15), buffered);
        break;
    case CALL_READLINE:
        do_readuntil(R, "\n", 1, a + 256 * b, true, buffered);
        break;
    case CALL_READUNTIL:
        do_readuntil(R, seps[b & 7].bytes, seps[b & 7].len,
                     a + 256 * (b >> 3), false, buffered);
        break;
    case CALL_READUNTIL_BYTE: {
        uint8_t sep = (uint8_t)b;
        do_readuntil(R, &sep, 1, a, false, buffered);
        break;
    }
    case CALL_SET_LIMIT:
        do_set_limit(R, a + 256 * b);
        break;
    case CALL_PAUSE:
        (void)coil_sleep(1); /* -ECANCELED if cancelled: fine */
        break;
    case CALL_READ_EXACTLY_BIG:
    default:
        do_read_exactly(R, a + 256 * b, buffered);
        break;
    }
    if (cancel)
        cancel_disarm(&R->cancel);
    check_between(R, pos, buffered);
}

static int reader_main(void *arg)
{
    struct run *R = arg;
    CHECK(R, coil_stream_open_fd(R->rfd, &R->s) == 0);
    for (R->call = 0; R->call < R->ncalls; R->call++)
        run_call(R, R->script + 3 * R->call);

    /* Read to the end; each round returns bytes or ends it (or fails for
     * a few rounds with -ENOMEM). */
    size_t rounds = 0;
    while (!R->eof_told && !(R->end_err && R->pos == R->end)) {
        CHECK(R, rounds++ <= R->total + 16);
        size_t pos = R->pos;
        size_t buffered = coil_stream_read_buffered(R->s);
        do_read(R, 4096, buffered);
        check_between(R, pos, buffered);
    }
    CHECK(R, R->pos == R->end);
    CHECK(R, R->end_err || (R->end == R->total && coil_stream_at_eof(R->s)));
    CHECK(R, coil_stream_read_buffered(R->s) == 0);

    /* Closing lets a writer still sending (after a reset) fail and end. */
    coil_stream_unref(R->s);
    R->s = NULL;
    R->reader_done = true;
    return 0;
}

static int writer_main(void *arg)
{
    struct run *R = arg;
    size_t at = 0, off = 0;
    while (at < R->chunks_len) {
        size_t len;
        const uint8_t *p = next_chunk(R, &at, &len);
        if (len) {
            size_t sent = 0;
            R->sent_bound = off + len;
            int err = coil_sock_send_all(R->wfd, p, len, &sent);
            off += sent;
            R->sent_bound = off;
            if (err) {
                /* Only once the reader has gone. */
                CHECK(R, R->reader_done &&
                             (err == -EPIPE || err == -ECONNRESET));
                return 0;
            }
        }
        (void)coil_sleep(1); /* let the reader see what came so far */
    }
    CHECK(R, off == R->total);
    CHECK(R, shutdown(R->wfd, SHUT_WR) == 0 || R->reader_done);
    R->writer_shut = true;
    return 0;
}

static void on_hang(void *arg)
{
    fail(arg, "the run ends in time (it hangs)", __LINE__);
}

/* ------------------------------------------------------------------ */
/* The entry point                                                      */
/* ------------------------------------------------------------------ */

static void small_buffer(int fd, int opt)
{
    int size = 4096;
    (void)setsockopt(fd, SOL_SOCKET, opt, &size, sizeof(size));
}

static void parse(struct run *R, const uint8_t *data, size_t size)
{
    R->ncalls = fuzz_byte(data, size, 3);
    size_t script_at = 4, chunks_at = script_at + 3 * R->ncalls;
    if (chunks_at > size) {
        R->ncalls = size > script_at ? (size - script_at) / 3 : 0;
        chunks_at = size;
    }
    R->script = data + script_at;
    R->chunks = data + chunks_at;
    R->chunks_len = size - chunks_at;

    /* The reference: every chunk's bytes, in order. */
    R->sent = malloc(R->chunks_len ? R->chunks_len : 1);
    CHECK(R, R->sent);
    size_t at = 0;
    while (at < R->chunks_len) {
        size_t len;
        const uint8_t *p = next_chunk(R, &at, &len);
        memcpy(R->sent + R->total, p, len);
        R->total += len;
    }
    R->end = R->total;
    R->limit = COIL_STREAM_LIMIT;
}

static void arm_fault(struct run *R, const uint8_t *data, size_t size)
{
    unsigned options = fuzz_byte(data, size, 0);
    unsigned nth = 1u + fuzz_byte(data, size, 1);
    unsigned count = 1u + (fuzz_byte(data, size, 2) & 7u);
    R->fault = (enum fault)((options >> 2) & 7);
    switch (R->fault) {
    case FAULT_EINTR:
        coil_test_fail(COIL_TEST_RECV, nth, count, -EINTR);
        break;
    case FAULT_EAGAIN:
        coil_test_fail(COIL_TEST_RECV, nth, count, -EAGAIN);
        break;
    case FAULT_RESET:
        coil_test_fail(COIL_TEST_RECV, nth, 1, -ECONNRESET);
        break;
    case FAULT_NOMEM:
        fuzz_mem_arm(NULL, nth - 1, count);
        break;
    default:
        R->fault = FAULT_NONE;
        break;
    }
    unsigned bufs = options & 3;
    if (bufs == 1 || bufs == 2)
        small_buffer(R->rfd, SO_RCVBUF);
    if (bufs == 1 || bufs == 3)
        small_buffer(R->wfd, SO_SNDBUF);
}

/* Run until the task is done; its outcome must be 0. */
static void finish(struct run *R, coil_loop_t *loop, coil_task_t *task)
{
    CHECK(R, coil_loop_run_until_complete(loop, coil_task_future(task)) ==
                 0);
    coil_task_unref(task);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run run, *R = &run;
    memset(R, 0, sizeof(*R));
    CHECK(R, fuzz_mem_install() == 0);
    tracing = getenv("FUZZ_STREAM_TRACE") != NULL;
    CHECK(R, fuzz_mem.live == 0);
    parse(R, data, size);

    int sv[2];
    CHECK(R, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        0, sv) == 0);
    R->rfd = sv[0];
    R->wfd = sv[1];
    coil_test_reset_faults();
    fuzz_mem_disarm();
    arm_fault(R, data, size);

    coil_loop_t *loop;
    coil_task_t *reader, *writer;
    CHECK(R, coil_loop_new(&loop) == 0);
    CHECK(R, coil_task_spawn(loop, reader_main, R, &reader) == 0);
    CHECK(R, coil_task_spawn(loop, writer_main, R, &writer) == 0);
    fuzz_mem.only = reader;
    R->cancel.loop = loop;
    R->cancel.task = reader;
    CHECK(R, fuzz_hang_timer(loop, HANG_SECONDS, on_hang, R) == 0);

    finish(R, loop, reader);
    finish(R, loop, writer);
    fuzz_mem.only = NULL;
    CHECK(R, coil_loop_close(loop) == 0);
    coil_loop_unref(loop);
    coil_test_reset_faults();
    close(R->wfd);

    /* Everything made for the run is gone, the stream's fd included. */
    CHECK(R, fuzz_mem.live == 0);
    CHECK(R, fcntl(R->rfd, F_GETFD) == -1 && errno == EBADF);
    free(R->sent);
    return 0;
}
