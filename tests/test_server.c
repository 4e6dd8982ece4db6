/* SPDX-License-Identifier: MIT */
/*
 * test_server.c - servers and connecting (coil/stream.h), on loopback:
 * an echo server with many concurrent clients sending large payloads
 * (verified byte by byte), a Unix-socket server and client, serve_forever
 * and its cancellation, close with live connections (close_clients,
 * wait_closed), EMFILE at accept (the server backs off instead of
 * spinning and serves again once the limit is raised), refused
 * connections, bad arguments, -EPERM outside a task, and allocation
 * failure at each step of start_server and open_connection.
 *
 * Tasks only record what they see; the assertions run on the main stack
 * after the loop has returned.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static coil_loop_t *fixture_loop(void **state)
{
    return ((struct fixture *)*state)->loop;
}

static unsigned char pattern(size_t i, unsigned seed)
{
    return (unsigned char)((i * 131u + seed * 7u + (i >> 9)) & 0xff);
}

static int spawn_failures;

static coil_task_t *spawn(coil_loop_t *loop, coil_task_fn fn, void *arg)
{
    coil_task_t *t = NULL;
    if (coil_task_spawn(loop, fn, arg, &t) != 0)
        spawn_failures++;
    return t;
}

static void join(coil_task_t *t)
{
    coil_task_join(t);
    coil_task_unref(t);
}

static int run_task(coil_loop_t *loop, coil_task_fn fn, void *arg)
{
    spawn_failures = 0;
    int r = test_run_task(loop, fn, arg);
    assert_int_equal(spawn_failures, 0);
    return r;
}

/* The echo handler: everything back until end of stream. */
static int echo_handler(coil_stream_t *s, void *arg)
{
    int *served = arg;
    if (served)
        (*served)++;
    char buf[16384];
    for (;;) {
        ssize_t n = coil_stream_read(s, buf, sizeof(buf));
        if (n <= 0)
            return n < 0 ? (int)n : 0;
        int err = coil_stream_write(s, buf, (size_t)n);
        if (!err)
            err = coil_stream_drain(s);
        if (err)
            return err;
    }
}

/* ------------------------------------------------------------------ */
/* Echo with many clients                                               */
/* ------------------------------------------------------------------ */

#define CLIENTS 20
#define PAYLOAD (256u * 1024)

struct echo {
    coil_loop_t *loop;
    coil_server_t *srv;
    char port[16];
    const char *host;
    const char *unix_path;
    int served;
    int start, closed;
    int conn_err[CLIENTS];
    size_t got[CLIENTS];
    size_t bad[CLIENTS];
    int next;
};

struct client {
    struct echo *e;
    int i;
    coil_stream_t *s;
};

static int client_writer(void *arg)
{
    struct client *c = arg;
    unsigned char buf[7001];
    size_t off = 0;
    while (off < PAYLOAD) {
        size_t n = sizeof(buf) < PAYLOAD - off ? sizeof(buf) : PAYLOAD - off;
        for (size_t j = 0; j < n; j++)
            buf[j] = pattern(off + j, (unsigned)c->i);
        int err = coil_stream_write(c->s, buf, n);
        if (!err)
            err = coil_stream_drain(c->s);
        if (err)
            return err;
        off += n;
    }
    return coil_stream_write_eof(c->s);
}

static int client(void *arg)
{
    struct echo *e = arg;
    struct client c = {e, e->next++, NULL};
    int err = e->unix_path
                  ? coil_open_unix_connection(e->unix_path, &c.s)
                  : coil_open_connection(e->host, e->port, &c.s);
    if (err) {
        e->conn_err[c.i] = err;
        return 0;
    }
    coil_task_t *w = spawn(e->loop, client_writer, &c);
    unsigned char buf[9000];
    for (;;) {
        ssize_t n = coil_stream_read(c.s, buf, sizeof(buf));
        if (n <= 0) {
            if (n < 0)
                e->conn_err[c.i] = (int)n;
            break;
        }
        for (ssize_t j = 0; j < n; j++)
            if (buf[j] != pattern(e->got[c.i] + (size_t)j, (unsigned)c.i))
                e->bad[c.i]++;
        e->got[c.i] += (size_t)n;
    }
    coil_task_join(w);
    coil_task_unref(w);
    coil_stream_unref(c.s);
    return 0;
}

static int echo_main(void *arg)
{
    struct echo *e = arg;
    e->start = e->unix_path
                   ? coil_start_unix_server(e->unix_path, echo_handler,
                                            &e->served, NULL, &e->srv)
                   : coil_start_server(e->host, "0", echo_handler, &e->served,
                                       NULL, &e->srv);
    if (e->start)
        return 0;
    if (!e->unix_path)
        snprintf(e->port, sizeof(e->port), "%d", coil_server_port(e->srv));
    coil_task_t *t[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        t[i] = spawn(e->loop, client, e);
    for (int i = 0; i < CLIENTS; i++)
        join(t[i]);
    coil_server_close(e->srv);
    e->closed = coil_server_wait_closed(e->srv);
    coil_server_free(e->srv);
    return 0;
}

static void check_echo(struct echo *e)
{
    assert_int_equal(e->start, 0);
    assert_int_equal(e->closed, 0);
    assert_int_equal(e->served, CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        assert_int_equal(e->conn_err[i], 0);
        assert_int_equal(e->got[i], PAYLOAD);
        assert_int_equal(e->bad[i], 0);
    }
}

static void test_echo_many_clients(void **state)
{
    struct echo e = {.loop = fixture_loop(state), .host = "127.0.0.1"};
    assert_int_equal(run_task(e.loop, echo_main, &e), 0);
    check_echo(&e);
}

static void test_echo_unix(void **state)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/coil-test-%d.sock", (int)getpid());
    unlink(path);
    struct echo e = {.loop = fixture_loop(state), .unix_path = path};
    assert_int_equal(run_task(e.loop, echo_main, &e), 0);
    unlink(path);
    check_echo(&e);
}


/* ------------------------------------------------------------------ */
/* Closing with live connections, serve_forever                        */
/* ------------------------------------------------------------------ */

struct live {
    coil_loop_t *loop;
    coil_server_t *srv;
    char port[16];
    int handler_r[4];
    int nh;
    int accept_after_close;
    int cancelled, closed, serve_r, serve_cancel_r;
    size_t conns_before;
    bool serving_after;
};

/* Waits for a line that never comes, until cancelled. */
static int idle_handler(coil_stream_t *s, void *arg)
{
    struct live *l = arg;
    int k = l->nh++;
    char buf[16];
    size_t len;
    int r = coil_stream_readline(s, buf, sizeof(buf), &len);
    l->handler_r[k] = r;
    return r;
}

static int closer(void *arg)
{
    struct live *l = arg;
    coil_sleep(10 * COIL_MSEC);
    coil_server_close(l->srv);
    return 0;
}

static int live_main(void *arg)
{
    struct live *l = arg;
    if (coil_start_server("127.0.0.1", "0", idle_handler, l, NULL, &l->srv))
        return -1;
    snprintf(l->port, sizeof(l->port), "%d", coil_server_port(l->srv));
    coil_stream_t *c[3];
    for (int i = 0; i < 3; i++)
        if (coil_open_connection("127.0.0.1", l->port, &c[i]))
            return -2;
    while (l->nh < 3)
        coil_sleep(COIL_MSEC);
    l->conns_before = coil_server_connections(l->srv);
    coil_task_t *t = spawn(l->loop, closer, l);
    l->serve_r = coil_server_serve_forever(l->srv); /* until closer */
    join(t);
    l->serving_after = coil_server_is_serving(l->srv);
    /* No more connections are accepted. */
    coil_stream_t *x = NULL;
    l->accept_after_close = coil_open_connection("127.0.0.1", l->port, &x);
    coil_stream_unref(x);
    l->cancelled = coil_server_close_clients(l->srv);
    l->closed = coil_server_wait_closed(l->srv);
    coil_server_free(l->srv);
    for (int i = 0; i < 3; i++)
        coil_stream_unref(c[i]);
    return 0;
}

static void test_close_with_live_connections(void **state)
{
    struct live l = {.loop = fixture_loop(state)};
    assert_int_equal(run_task(l.loop, live_main, &l), 0);
    assert_int_equal(l.conns_before, 3);
    assert_int_equal(l.serve_r, 0);
    assert_false(l.serving_after);
    assert_int_equal(l.accept_after_close, -ECONNREFUSED);
    assert_int_equal(l.cancelled, 3);
    assert_int_equal(l.closed, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(l.handler_r[i], -ECANCELED);
}

static int serve_task(void *arg)
{
    struct live *l = arg;
    l->serve_cancel_r = coil_server_serve_forever(l->srv);
    return 0;
}

static int serve_cancel_main(void *arg)
{
    struct live *l = arg;
    if (coil_start_server("127.0.0.1", "0", idle_handler, l, NULL, &l->srv))
        return -1;
    coil_task_t *t = spawn(l->loop, serve_task, l);
    coil_sleep(5 * COIL_MSEC);
    coil_task_cancel(t);
    join(t);
    l->serving_after = coil_server_is_serving(l->srv);
    l->closed = coil_server_wait_closed(l->srv);
    coil_server_free(l->srv);
    return 0;
}

static void test_serve_forever_cancel(void **state)
{
    struct live l = {.loop = fixture_loop(state)};
    assert_int_equal(run_task(l.loop, serve_cancel_main, &l), 0);
    assert_int_equal(l.serve_cancel_r, -ECANCELED);
    assert_false(l.serving_after);
    assert_int_equal(l.closed, 0);
}

/* ------------------------------------------------------------------ */
/* EMFILE at accept                                                     */
/* ------------------------------------------------------------------ */

static bool nofile_limit_works(void)
{
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload"))
        return false;
    struct rlimit old;
    return getrlimit(RLIMIT_NOFILE, &old) == 0;
}

static int lowest_free(void)
{
    int fd = dup(0);
    if (fd >= 0)
        close(fd);
    return fd;
}

struct mf {
    coil_loop_t *loop;
    coil_server_t *srv;
    char port[16];
    struct rlimit old;
    int served, conn, echo_r, closed;
    unsigned attempts_limited;
    char buf[8];
    ssize_t n;
};

static int mf_main(void *arg)
{
    struct mf *m = arg;
    if (coil_start_server("127.0.0.1", "0", echo_handler, &m->served, NULL,
                          &m->srv))
        return -1;
    snprintf(m->port, sizeof(m->port), "%d", coil_server_port(m->srv));
    /* Connect with a raw socket made before the limit drops. */
    int c = coil_socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(m->port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct rlimit low = m->old;
    low.rlim_cur = (rlim_t)lowest_free();
    setrlimit(RLIMIT_NOFILE, &low);
    coil__fault_reset();
    m->conn = coil_sock_connect(c, (struct sockaddr *)&a, sizeof(a));
    /* 350 ms at the limit: the accept task backs off (100, 200 ms). */
    coil_sleep(350 * COIL_MSEC);
    m->attempts_limited = coil__fault_calls(COIL__SYS_ACCEPT);
    setrlimit(RLIMIT_NOFILE, &m->old);
    send(c, "hi", 2, 0);
    m->n = coil_sock_recv(c, m->buf, sizeof(m->buf));
    coil_sock_close(c);
    coil_server_close(m->srv);
    m->closed = coil_server_wait_closed(m->srv);
    coil_server_free(m->srv);
    return 0;
}

static void test_accept_emfile_backoff(void **state)
{
    struct mf m = {.loop = fixture_loop(state)};
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &m.old), 0);
    int r = run_task(m.loop, mf_main, &m);
    setrlimit(RLIMIT_NOFILE, &m.old);
    assert_int_equal(r, 0);
    assert_int_equal(m.conn, 0);
    /* A few attempts (first try, then after 100 and 300 ms), not a spin. */
    assert_true(m.attempts_limited >= 3); /* EMFILE, then retried */
    assert_true(m.attempts_limited <= 4);
    assert_int_equal(m.n, 2);
    assert_memory_equal(m.buf, "hi", 2);
    assert_int_equal(m.served, 1);
    assert_int_equal(m.closed, 0);
}

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

struct errs {
    int refused, noname, toolong, unix_missing, inuse, badopts, eperm_port;
    int port_closed;
};

static int errs_main(void *arg)
{
    struct errs *e = arg;
    coil_stream_t *s = NULL;
    coil_server_t *srv = NULL;
    /* A port nobody listens on: bind one, close it. */
    if (coil_start_server("127.0.0.1", "0", echo_handler, NULL, NULL, &srv))
        return -1;
    char port[16];
    snprintf(port, sizeof(port), "%d", coil_server_port(srv));
    coil_server_t *srv2 = NULL;
    e->inuse = coil_start_server("127.0.0.1", port, echo_handler, NULL,
                                 &(coil_server_options_t){
                                     .no_reuse_address = true},
                                 &srv2);
    coil_server_close(srv);
    e->port_closed = coil_server_port(srv);
    coil_server_wait_closed(srv);
    coil_server_free(srv);
    e->refused = coil_open_connection("127.0.0.1", port, &s);
    e->noname = coil_open_connection("no-such-host.invalid", "80", &s);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = 0;
    e->toolong = coil_open_unix_connection(longp, &s);
    e->unix_missing = coil_open_unix_connection("/nonexistent/coil.sock", &s);
    e->badopts = coil_start_server("127.0.0.1", "0", echo_handler, NULL,
                                   &(coil_server_options_t){.backlog = -1},
                                   &srv2);
    return 0;
}

static void test_errors(void **state)
{
    struct errs e = {0};
    assert_int_equal(run_task(fixture_loop(state), errs_main, &e), 0);
    assert_int_equal(e.inuse, -EADDRINUSE);
    assert_int_equal(e.port_closed, -EBADF);
    assert_int_equal(e.refused, -ECONNREFUSED);
    assert_true(e.noname == -ENOENT || e.noname == -EAGAIN ||
                e.noname == -EIO);
    assert_int_equal(e.toolong, -ENAMETOOLONG);
    assert_int_equal(e.unix_missing, -ENOENT);
    assert_int_equal(e.badopts, -EINVAL);
}

static void test_bad_arguments_eperm(void **state)
{
    (void)state;
    coil_stream_t *s = (coil_stream_t *)1;
    coil_server_t *srv = (coil_server_t *)1;
    assert_int_equal(coil_open_connection("h", "1", NULL), -EINVAL);
    assert_int_equal(coil_open_connection(NULL, NULL, &s), -EINVAL);
    assert_null(s);
    s = (coil_stream_t *)1;
    assert_int_equal(coil_open_connection("127.0.0.1", "1", &s), -EPERM);
    assert_null(s);
    assert_int_equal(coil_open_unix_connection("/x", &s), -EPERM);
    assert_int_equal(coil_open_unix_connection(NULL, &s), -EINVAL);
    assert_int_equal(coil_start_server(NULL, "0", NULL, NULL, NULL, &srv),
                     -EINVAL);
    assert_null(srv);
    assert_int_equal(
        coil_start_server(NULL, "0", echo_handler, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(
        coil_start_server(NULL, "0", echo_handler, NULL, NULL, &srv), -EPERM);
    assert_int_equal(
        coil_start_unix_server("/tmp/x", echo_handler, NULL, NULL, &srv),
        -EPERM);
    assert_int_equal(
        coil_start_unix_server(NULL, echo_handler, NULL, NULL, &srv), -EINVAL);
    assert_int_equal(coil_server_close(NULL), -EINVAL);
    assert_int_equal(coil_server_close_clients(NULL), -EINVAL);
    assert_int_equal(coil_server_wait_closed(NULL), -EINVAL);
    assert_int_equal(coil_server_serve_forever(NULL), -EINVAL);
    assert_int_equal(coil_server_port(NULL), -EINVAL);
    assert_false(coil_server_is_serving(NULL));
    assert_int_equal(coil_server_connections(NULL), 0);
    coil_server_free(NULL);
}

/* ------------------------------------------------------------------ */
/* Allocation failure                                                   */
/* ------------------------------------------------------------------ */

struct oom {
    long nth;
    int start, conn;
    bool failed;
    ssize_t echoed;
};

static int oom_main(void *arg)
{
    struct oom *o = arg;
    coil_server_t *srv = NULL;
    coil_stream_t *s = NULL;
    test_alloc_fail_after(o->nth);
    o->start = coil_start_server("127.0.0.1", "0", echo_handler, NULL, NULL,
                                 &srv);
    if (!o->start) {
        char port[16];
        snprintf(port, sizeof(port), "%d", coil_server_port(srv));
        o->conn = coil_open_connection("127.0.0.1", port, &s);
    }
    o->failed = test_alloc_failed();
    test_alloc_fail_after(0);
    if (s) {
        char b[4];
        coil_stream_write(s, "abc", 3);
        coil_stream_write_eof(s);
        size_t got = 0;
        /* The server may have lost the connection to the failure. */
        int r = coil_stream_read_exactly(s, b, 3, &got);
        o->echoed = r == 0 ? 3 : r;
        coil_stream_unref(s);
    }
    if (srv) {
        coil_server_close(srv);
        coil_server_wait_closed(srv);
        coil_server_free(srv);
    }
    return 0;
}

static void test_alloc_failure(void **state)
{
    bool done = false;
    for (long nth = 1; nth < 200 && !done; nth++) {
        struct oom o = {.nth = nth};
        assert_int_equal(run_task(fixture_loop(state), oom_main, &o), 0);
        if (!o.failed) {
            done = true;
            assert_int_equal(o.start, 0);
            assert_int_equal(o.conn, 0);
            assert_int_equal(o.echoed, 3);
            continue;
        }
        assert_true(o.start == -ENOMEM || o.conn == -ENOMEM ||
                    o.start == 0);
    }
    assert_true(done);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_echo_many_clients),
        T(test_echo_unix),
        T(test_close_with_live_connections),
        T(test_serve_forever_cancel),
        T(test_errors),
        T(test_bad_arguments_eperm),
        T(test_alloc_failure),
    };
    const struct CMUnitTest emfile_tests[] = {
        T(test_accept_emfile_backoff),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (nofile_limit_works())
        failed += cmocka_run_group_tests(emfile_tests, NULL, NULL);
    else
        print_message("[ N/A      ] EMFILE test not registered: RLIMIT_NOFILE "
                      "cannot be lowered usefully under valgrind\n");
    return failed;
}
