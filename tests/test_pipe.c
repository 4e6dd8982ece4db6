/* SPDX-License-Identifier: MIT */
/*
 * test_pipe.c - streams over fds that are not sockets (coil/stream.h):
 * a pipe's reading end (lines, the end, at_eof taking what is there into
 * the buffer), its writing end (a megabyte through two pipe streams with
 * drain, write_eof closing it), a write to a pipe whose reader is gone
 * (-EPIPE, no SIGPIPE), write_eof refused where nothing can be
 * half-closed, O_NONBLOCK put back on the shared open file at the close,
 * a pseudo-terminal and /dev/null (character devices), a cancelled read
 * losing nothing, at_eof never taking bytes from a task reading, a failed
 * open leaving O_NONBLOCK as it found it, write_eof refused on a
 * write-only tty.
 *
 * Tasks record, the assertions run on the main stack.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "helpers.h"

/* A blocking or non-blocking pipe, close-on-exec. */
static void make_pipe(int p[2], bool nonblock)
{
    assert_int_equal(pipe2(p, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)), 0);
}

/* ------------------------------------------------------------------ */
/* Reading end                                                          */
/* ------------------------------------------------------------------ */

struct rd {
    int p[2];
    char l1[16], l2[16];
    size_t n1, n2;
    int r1, r2, r_end;
    bool eof_before, eof_after;
};

static int rd_main(void *arg)
{
    struct rd *c = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(c->p[0], &s))
        return -1;
    c->p[0] = -1;
    c->eof_before = coil_stream_at_eof(s);
    c->r1 = coil_stream_readline(s, c->l1, sizeof(c->l1), &c->n1);
    c->r2 = coil_stream_readline(s, c->l2, sizeof(c->l2), &c->n2);
    char b[4];
    c->r_end = (int)coil_stream_read(s, b, sizeof(b));
    c->eof_after = coil_stream_at_eof(s);
    coil_stream_unref(s);
    return 0;
}

static void test_pipe_read_end(void **state)
{
    struct rd c = {0};
    make_pipe(c.p, false);
    assert_int_equal(write(c.p[1], "hello\nworld\n", 12), 12);
    close(c.p[1]);
    c.p[1] = -1;
    assert_int_equal(test_run_task(test_loop(state), rd_main, &c), 0);
    assert_false(c.eof_before); /* the data was taken into the buffer */
    assert_int_equal(c.r1, 0);
    assert_int_equal(c.n1, 6);
    assert_memory_equal(c.l1, "hello\n", 6);
    assert_int_equal(c.r2, 0);
    assert_memory_equal(c.l2, "world\n", 6);
    assert_int_equal(c.r_end, 0);
    assert_true(c.eof_after);
}

/* ------------------------------------------------------------------ */
/* Writing end: a megabyte through, then the end                        */
/* ------------------------------------------------------------------ */

#define BIG (1 << 20)

struct big {
    int p[2];
    coil_stream_t *w, *r;
    int wr, drain_r, eof_r, read_r, after_r;
    size_t got;
    bool same;
};

static int big_writer(void *arg)
{
    struct big *c = arg;
    unsigned char *buf = malloc(4096);
    if (!buf)
        return -1;
    for (size_t off = 0; off < BIG && !c->wr; off += 4096) {
        for (size_t i = 0; i < 4096; i++)
            buf[i] = test_pattern(off + i, 3);
        c->wr = coil_stream_write(c->w, buf, 4096);
        if (!c->wr)
            c->drain_r = coil_stream_drain(c->w);
    }
    free(buf);
    c->eof_r = coil_stream_write_eof(c->w); /* closes the pipe's end */
    return 0;
}

static int big_main(void *arg)
{
    struct big *c = arg;
    if (coil_stream_open_fd(c->p[0], &c->r))
        return -1;
    if (coil_stream_open_fd(c->p[1], &c->w))
        return -1;
    coil_stream_set_limit(c->r, BIG + 1);
    coil_task_t *t = test_spawn(coil_running_loop(), big_writer, c);
    unsigned char *buf = malloc(BIG);
    if (!buf)
        return -1;
    c->read_r = coil_stream_read_exactly(c->r, buf, BIG, &c->got);
    c->same = true;
    for (size_t i = 0; i < c->got; i++)
        if (buf[i] != test_pattern(i, 3)) {
            c->same = false;
            break;
        }
    c->after_r = (int)coil_stream_read(c->r, buf, 1); /* the end */
    free(buf);
    test_join(t);
    coil_stream_unref(c->w);
    coil_stream_unref(c->r);
    return 0;
}

static void test_pipe_megabyte(void **state)
{
    struct big c = {0};
    make_pipe(c.p, false);
    assert_int_equal(test_run_task(test_loop(state), big_main, &c), 0);
    assert_int_equal(c.wr, 0);
    assert_int_equal(c.drain_r, 0);
    assert_int_equal(c.eof_r, 0);
    assert_int_equal(c.read_r, 0);
    assert_int_equal(c.got, BIG);
    assert_true(c.same);
    assert_int_equal(c.after_r, 0);
}

/* ------------------------------------------------------------------ */
/* The reader is gone: -EPIPE, and no SIGPIPE                           */
/* ------------------------------------------------------------------ */

struct gone {
    int p[2];
    int w1, w2, eof_r;
    bool pipe_pending;
};

static int gone_main(void *arg)
{
    struct gone *c = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(c->p[1], &s))
        return -1;
    c->w1 = coil_stream_write(s, "x", 1);
    c->w2 = coil_stream_write(s, "y", 1);
    sigset_t pending;
    sigpending(&pending);
    c->pipe_pending = sigismember(&pending, SIGPIPE) == 1;
    coil_stream_unref(s);
    return 0;
}

static void test_pipe_reader_gone(void **state)
{
    test_exact_io(); /* the first write's own result is checked */
    struct gone c = {0};
    make_pipe(c.p, false);
    close(c.p[0]);
    /* Had SIGPIPE been raised, the default action would end the test
     * program here. */
    assert_int_equal(test_run_task(test_loop(state), gone_main, &c), 0);
    assert_int_equal(c.w1, -EPIPE);
    assert_int_equal(c.w2, -EPIPE);
    assert_false(c.pipe_pending);
}

/* ------------------------------------------------------------------ */
/* Half-closing what cannot be, and the blocking flag put back          */
/* ------------------------------------------------------------------ */

struct flags {
    int p[2], dup0;
    int eof_r;
    bool nonblock_while_open, nonblock_after;
};

static int flags_main(void *arg)
{
    struct flags *c = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(c->p[0], &s))
        return -1;
    c->eof_r = coil_stream_write_eof(s); /* a reading end */
    c->nonblock_while_open = (fcntl(c->dup0, F_GETFL) & O_NONBLOCK) != 0;
    coil_stream_unref(s);
    c->nonblock_after = (fcntl(c->dup0, F_GETFL) & O_NONBLOCK) != 0;
    return 0;
}

static void test_pipe_flags(void **state)
{
    struct flags c = {0};
    make_pipe(c.p, false);
    c.dup0 = dup(c.p[0]); /* shares the open file, as a shell's stdin */
    assert_true(c.dup0 >= 0);
    assert_int_equal(test_run_task(test_loop(state), flags_main, &c), 0);
    assert_int_equal(c.eof_r, -ENOTSUP);
    assert_true(c.nonblock_while_open);
    assert_false(c.nonblock_after);
    close(c.dup0);
    close(c.p[1]);
}

/* ------------------------------------------------------------------ */
/* Character devices: a pseudo-terminal, /dev/null                     */
/* ------------------------------------------------------------------ */

struct tty {
    int master, slave, null;
    char line[16];
    size_t n;
    int r, null_read, null_write, open_r[3], ping_r;
};

static int tty_main(void *arg)
{
    struct tty *c = arg;
    coil_stream_t *m, *sl, *nul;
    c->open_r[0] = coil_stream_open_fd(c->master, &m);
    c->open_r[1] = coil_stream_open_fd(c->slave, &sl);
    c->open_r[2] = coil_stream_open_fd(c->null, &nul);
    if (c->open_r[0] || c->open_r[1] || c->open_r[2])
        return -1;
    c->ping_r = coil_stream_write(m, "ping\n", 5);
    c->r = coil_stream_readline(sl, c->line, sizeof(c->line), &c->n);
    char b[4];
    c->null_read = (int)coil_stream_read(nul, b, sizeof(b));
    c->null_write = coil_stream_write(nul, "zzz", 3);
    coil_stream_unref(nul);
    coil_stream_unref(sl);
    coil_stream_unref(m);
    return 0;
}

static void test_char_devices(void **state)
{
    /* /dev/null never says "try again", and the kernel cannot poll it
     * (epoll refuses it): chaos I/O's made-up EAGAIN would have the
     * stream wait on it. */
    test_exact_io();
    struct tty c = {0};
    c.master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(c.master >= 0);
    assert_int_equal(grantpt(c.master), 0);
    assert_int_equal(unlockpt(c.master), 0);
    c.slave = open(ptsname(c.master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(c.slave >= 0);
    struct termios t;
    assert_int_equal(tcgetattr(c.slave, &t), 0);
    cfmakeraw(&t);
    t.c_iflag |= ICRNL; /* keep it simple: bytes through as they are */
    assert_int_equal(tcsetattr(c.slave, TCSANOW, &t), 0);
    c.null = open("/dev/null", O_RDWR | O_CLOEXEC);
    assert_true(c.null >= 0);
    int r = test_run_task(test_loop(state), tty_main, &c);
    assert_int_equal(c.open_r[0], 0);
    assert_int_equal(c.open_r[1], 0);
    assert_int_equal(c.open_r[2], 0);
    assert_int_equal(r, 0);
    assert_int_equal(c.ping_r, 0);
    assert_int_equal(c.r, 0);
    assert_int_equal(c.n, 5);
    assert_memory_equal(c.line, "ping\n", 5);
    assert_int_equal(c.null_read, 0); /* the end at once */
    assert_int_equal(c.null_write, 0);
}

/* ------------------------------------------------------------------ */
/* A cancelled read loses nothing                                       */
/* ------------------------------------------------------------------ */

struct cr {
    int p[2];
    coil_stream_t *s;
    int r_cancelled, r_next;
    char buf[8];
};

static int cr_reader(void *arg)
{
    struct cr *c = arg;
    c->r_cancelled = (int)coil_stream_read(c->s, c->buf, sizeof(c->buf));
    return 0;
}

static int cr_main(void *arg)
{
    struct cr *c = arg;
    if (coil_stream_open_fd(c->p[0], &c->s))
        return -1;
    coil_task_t *t = test_spawn(coil_running_loop(), cr_reader, c);
    coil_sleep(COIL_MSEC); /* it waits for data */
    coil_task_cancel(t);
    test_join(t);
    if (write(c->p[1], "abc", 3) != 3)
        return -1;
    c->r_next = (int)coil_stream_read(c->s, c->buf, sizeof(c->buf));
    coil_stream_unref(c->s);
    return 0;
}

static void test_pipe_cancelled_read(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    struct cr c = {0};
    make_pipe(c.p, true);
    assert_int_equal(test_run_task(test_loop(state), cr_main, &c), 0);
    assert_int_equal(c.r_cancelled, -ECANCELED);
    assert_int_equal(c.r_next, 3);
    assert_memory_equal(c.buf, "abc", 3);
    close(c.p[1]);
}

/* ------------------------------------------------------------------ */
/* at_eof while a task reads; a failed open puts O_NONBLOCK back        */
/* ------------------------------------------------------------------ */

struct ar {
    int p[2];
    coil_stream_t *s;
    bool eof_seen;
    int r;
    char buf[8];
};

static int ar_reader(void *arg)
{
    struct ar *c = arg;
    c->r = (int)coil_stream_read(c->s, c->buf, sizeof(c->buf));
    return 0;
}

static int ar_main(void *arg)
{
    struct ar *c = arg;
    if (coil_stream_open_fd(c->p[0], &c->s))
        return -1;
    coil_task_t *t = test_spawn(coil_running_loop(), ar_reader, c);
    coil_sleep(COIL_MSEC); /* it waits in the read */
    if (write(c->p[1], "xyz", 3) != 3)
        return -1;
    /* Before the reader runs: at_eof must not take its bytes. */
    c->eof_seen = coil_stream_at_eof(c->s);
    test_join(t);
    coil_stream_unref(c->s);
    return 0;
}

static void test_pipe_at_eof_while_reading(void **state)
{
    struct ar c = {0};
    make_pipe(c.p, false);
    assert_int_equal(test_run_task(test_loop(state), ar_main, &c), 0);
    assert_false(c.eof_seen);
    assert_int_equal(c.r, 3);
    assert_memory_equal(c.buf, "xyz", 3);
    close(c.p[1]);
}

struct of {
    int fd;
    int r;
    bool nonblock_after;
};

static int of_main(void *arg)
{
    struct of *c = arg;
    coil_stream_t *s = (coil_stream_t *)1;
    test_alloc_fail_after(1);
    c->r = coil_stream_open_fd(c->fd, &s);
    test_alloc_fail_after(0);
    c->nonblock_after = (fcntl(c->fd, F_GETFL) & O_NONBLOCK) != 0;
    return s == NULL ? 0 : -1;
}

static void test_pipe_open_failure_restores_flags(void **state)
{
    int p[2];
    make_pipe(p, false);
    struct of c = {.fd = p[0]};
    assert_int_equal(test_run_task(test_loop(state), of_main, &c), 0);
    assert_int_equal(c.r, -ENOMEM);
    assert_false(c.nonblock_after); /* left to the caller as it came */
    close(p[0]);
    close(p[1]);
}

/* A write-only tty is no pipe: write_eof cannot close it for an end. */
struct wt {
    int fd;
    int r;
    bool open_after;
};

static int wt_main(void *arg)
{
    struct wt *c = arg;
    coil_stream_t *s;
    if (coil_stream_open_fd(c->fd, &s))
        return -1;
    c->r = coil_stream_write_eof(s);
    c->open_after = !coil_stream_is_closing(s);
    coil_stream_unref(s);
    return 0;
}

static void test_tty_write_eof(void **state)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    struct wt c = {.fd = open(ptsname(master), O_WRONLY | O_NOCTTY |
                                                   O_CLOEXEC)};
    assert_true(c.fd >= 0);
    assert_int_equal(test_run_task(test_loop(state), wt_main, &c), 0);
    assert_int_equal(c.r, -ENOTSUP);
    assert_true(c.open_after);
    close(master);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_pipe_read_end),
        TEST(test_pipe_megabyte),
        TEST(test_pipe_reader_gone),
        TEST(test_pipe_flags),
        TEST(test_char_devices),
        TEST_FAKE(test_pipe_cancelled_read),
        TEST_FAKE(test_pipe_at_eof_while_reading),
        TEST(test_pipe_open_failure_restores_flags),
        TEST(test_tty_write_eof),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
