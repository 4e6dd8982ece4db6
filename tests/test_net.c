/* SPDX-License-Identifier: MIT */
/*
 * test_net.c - the suspending socket calls (coil/net.h) and the fd wait
 * under them, on loopback only (127.0.0.1, ::1, Unix socketpairs):
 * a 4 MiB echo through small socket buffers, 50 concurrent echo clients,
 * accept/connect over IPv4 and IPv6, refused connections, timeouts on
 * recv and accept (and no registration left behind), peer reset, peer
 * gone mid-write without SIGPIPE (in a child with SIGPIPE at its
 * default), end of stream, cancellation of every pending call leaving the
 * fd usable, one waiter per direction (-EBUSY), EINTR/EAGAIN/ECONNRESET
 * injected through the syscall seam (connect issued once), EMFILE on
 * accept, UDP, sendfile (and its copy fallback), getaddrinfo (numeric
 * names parsed at once without suspending; a lookup, its
 * cancellation and the loop closing under it), coil_sock_close waking
 * waiters, fd numbers reused, the number of epoll_ctl calls per wait,
 * bad arguments, -EPERM outside a task, and allocation failure.
 *
 * Tasks only record what they see; the assertions run on the main stack
 * after the loop has returned.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

/* resolve.c: helper threads still working (test build internals). */

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

static void loopback(int family, int port, struct sockaddr_storage *ss,
                     socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        *len = sizeof(*a);
    }
}

/* The local port of fd, -1 if it has none (usable inside tasks). */
static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void small_buffers(int fd)
{
    int sz = 4096;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

/* A non-blocking listener on the loopback of family, any port. */
static int listener(int family, int backlog, bool small)
{
    int fd = coil_sock_open(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (small)
        small_buffers(fd);
    struct sockaddr_storage ss;
    socklen_t len;
    loopback(family, 0, &ss, &len);
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(listen(fd, backlog), 0);
    return fd;
}

/* A connected TCP pair made outside any task (blocking connect on the
 * loopback completes at once), both ends non-blocking. */
static void tcp_pair_opt(int family, int fds[2], bool small)
{
    /* Small buffers must be set before connecting: shrinking them on a
     * live connection makes the peer overrun the advertised window and
     * crawl through retransmissions. */
    int l = listener(family, 4, small);
    struct sockaddr_storage ss;
    socklen_t len;
    loopback(family, port_of(l), &ss, &len);
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    if (small)
        small_buffers(c);
    assert_int_equal(connect(c, (struct sockaddr *)&ss, len), 0);
    int s = -1;
    for (int i = 0; i < 1000 && s < 0; i++) {
        s = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (s < 0)
            usleep(1000);
    }
    assert_true(s >= 0);
    int fl = fcntl(c, F_GETFL);
    assert_int_equal(fcntl(c, F_SETFL, fl | O_NONBLOCK), 0);
    close(l);
    fds[0] = c;
    fds[1] = s;
}

static void tcp_pair(int family, int fds[2])
{
    tcp_pair_opt(family, fds, false);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}


/* Spawn from inside a task: no assertion there, a failure is counted
 * and checked by run_task (coil_task_join(NULL) is -EINVAL, harmless). */
/* ------------------------------------------------------------------ */
/* Echo                                                                 */
/* ------------------------------------------------------------------ */

#define BIG (4u << 20)

struct echo {
    coil_loop_t *loop;
    int family;
    int lfd;          /* listener */
    int port;
    size_t size;      /* bytes each client sends */
    unsigned seed;
    /* results */
    int accept_err, serve_err, connect_err, send_err, recv_err;
    size_t received, mismatches, sent;
    int cfd;
};

/* Echo everything until end of stream, then close. */
static int serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[3000];
    int err = 0;
    for (;;) {
        ssize_t n = coil_sock_recv(fd, buf, sizeof(buf));
        if (n <= 0) {
            err = (int)n;
            break;
        }
        if ((err = coil_sock_send_all(fd, buf, (size_t)n, NULL)))
            break;
    }
    coil_sock_close(fd);
    return err;
}

struct client_writer {
    int fd;
    size_t size;
    unsigned seed;
    int err;
    size_t sent;
};

static int client_write(void *arg)
{
    struct client_writer *w = arg;
    unsigned char *buf = malloc(w->size);
    for (size_t i = 0; i < w->size; i++)
        buf[i] = test_pattern(i, w->seed);
    /* In uneven pieces, to cross buffer boundaries in odd places. */
    size_t off = 0, piece = 1;
    while (off < w->size && !w->err) {
        size_t n = w->size - off < piece ? w->size - off : piece;
        size_t s = 0;
        w->err = coil_sock_send_all(w->fd, buf + off, n, &s);
        off += s;
        piece = piece * 3 + 7;
        if (piece > 200000)
            piece = 1;
    }
    w->sent = off;
    shutdown(w->fd, SHUT_WR);
    free(buf);
    return 0;
}

/* Connect, write size bytes from a second task while reading the echo
 * back here, verify every byte. */
static int echo_client(void *arg)
{
    struct echo *e = arg;
    int fd = coil_sock_open(e->family, SOCK_STREAM, 0);
    if (fd < 0) {
        e->connect_err = fd;
        return 0;
    }
    if (e->size >= BIG)
        small_buffers(fd);
    struct sockaddr_storage ss;
    socklen_t len;
    loopback(e->family, e->port, &ss, &len);
    e->connect_err = coil_sock_connect(fd, (struct sockaddr *)&ss, len);
    if (e->connect_err) {
        coil_sock_close(fd);
        return 0;
    }
    struct client_writer w = {fd, e->size, e->seed, 0, 0};
    coil_task_t *wt = test_spawn(e->loop, client_write, &w);
    unsigned char buf[7000];
    for (;;) {
        ssize_t n = coil_sock_recv(fd, buf, sizeof(buf));
        if (n < 0) {
            e->recv_err = (int)n;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != test_pattern(e->received + (size_t)i, e->seed))
                e->mismatches++;
        e->received += (size_t)n;
    }
    coil_task_join(wt);
    coil_task_unref(wt);
    e->send_err = w.err;
    e->sent = w.sent;
    coil_sock_close(fd);
    return 0;
}

/* Accept n connections, one echo task each; wait for them all. */
struct server {
    coil_loop_t *loop;
    int lfd;
    int n;
    int accept_err;
    int serve_errs;
};

static int echo_server(void *arg)
{
    struct server *s = arg;
    coil_task_t **conns = calloc((size_t)s->n, sizeof(*conns));
    int got = 0;
    for (; got < s->n; got++) {
        int c = coil_sock_accept(s->lfd, NULL, NULL);
        if (c < 0) {
            s->accept_err = c;
            break;
        }
        conns[got] = test_spawn(s->loop, serve_conn, (void *)(intptr_t)c);
    }
    for (int i = 0; i < got; i++) {
        if (coil_task_join(conns[i]) != 0)
            s->serve_errs++;
        coil_task_unref(conns[i]);
    }
    free(conns);
    return 0;
}

struct echo_run {
    coil_loop_t *loop;
    struct server srv;
    struct echo *clients;
    int n;
};

static int echo_main(void *arg)
{
    struct echo_run *r = arg;
    coil_task_t *srv = test_spawn(r->loop, echo_server, &r->srv);
    coil_task_t **cl = calloc((size_t)r->n, sizeof(*cl));
    for (int i = 0; i < r->n; i++)
        cl[i] = test_spawn(r->loop, echo_client, &r->clients[i]);
    for (int i = 0; i < r->n; i++) {
        coil_task_join(cl[i]);
        coil_task_unref(cl[i]);
    }
    coil_task_join(srv);
    coil_task_unref(srv);
    free(cl);
    return 0;
}

static void run_echo(coil_loop_t *loop, int family, int n, size_t size)
{
    struct echo_run r = {.loop = loop, .n = n};
    int lfd = listener(family, 128, size >= BIG);
    r.srv = (struct server){loop, lfd, n, 0, 0};
    r.clients = calloc((size_t)n, sizeof(*r.clients));
    for (int i = 0; i < n; i++)
        r.clients[i] = (struct echo){.loop = loop, .family = family,
                                     .lfd = lfd, .port = port_of(lfd),
                                     .size = size, .seed = (unsigned)i + 1};
    assert_int_equal(test_run_task(loop, echo_main, &r), 0);
    assert_int_equal(r.srv.accept_err, 0);
    assert_int_equal(r.srv.serve_errs, 0);
    for (int i = 0; i < n; i++) {
        struct echo *e = &r.clients[i];
        assert_int_equal(e->connect_err, 0);
        assert_int_equal(e->send_err, 0);
        assert_int_equal(e->recv_err, 0);
        assert_int_equal(e->sent, size);
        assert_int_equal(e->received, size);
        assert_int_equal(e->mismatches, 0);
    }
    free(r.clients);
    coil_sock_close(lfd);
    test_assert_no_tasks(loop);
}

static void test_echo_4mib(void **state)
{
    run_echo(test_loop(state), AF_INET, 1, BIG);
}

static void test_echo_50_clients(void **state)
{
    run_echo(test_loop(state), AF_INET, 50, 100000);
}

static void test_echo_ipv6(void **state)
{
    run_echo(test_loop(state), AF_INET6, 3, 50000);
}

/* ------------------------------------------------------------------ */
/* accept and connect                                                   */
/* ------------------------------------------------------------------ */

struct ac {
    coil_loop_t *loop;
    int family;
    int lfd, port;
    int accepted, connected;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    int client_port;
    int flags_ok;
    int cfd;
};

static int ac_accept(void *arg)
{
    struct ac *a = arg;
    a->peer_len = sizeof(a->peer);
    a->accepted = coil_sock_accept(a->lfd, (struct sockaddr *)&a->peer,
                                   &a->peer_len);
    if (a->accepted >= 0) {
        int fl = fcntl(a->accepted, F_GETFL);
        int fd = fcntl(a->accepted, F_GETFD);
        a->flags_ok = (fl & O_NONBLOCK) && (fd & FD_CLOEXEC);
    }
    return 0;
}

static int ac_connect(void *arg)
{
    struct ac *a = arg;
    a->cfd = coil_sock_open(a->family, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    loopback(a->family, a->port, &ss, &len);
    a->connected = coil_sock_connect(a->cfd, (struct sockaddr *)&ss, len);
    a->client_port = port_of(a->cfd);
    return 0;
}

static int ac_main(void *arg)
{
    struct ac *a = arg;
    coil_task_t *t1 = test_spawn(a->loop, ac_accept, a);
    coil_task_t *t2 = test_spawn(a->loop, ac_connect, a);
    coil_task_join(t1);
    coil_task_join(t2);
    coil_task_unref(t1);
    coil_task_unref(t2);
    return 0;
}

static void accept_connect(coil_loop_t *loop, int family)
{
    struct ac a = {.loop = loop, .family = family};
    a.lfd = listener(family, 8, false);
    a.port = port_of(a.lfd);
    assert_int_equal(test_run_task(loop, ac_main, &a), 0);
    assert_true(a.accepted >= 0);
    assert_int_equal(a.connected, 0);
    assert_true(a.flags_ok);
    assert_int_equal(a.peer.ss_family, family);
    int peer_port = family == AF_INET
                        ? ntohs(((struct sockaddr_in *)&a.peer)->sin_port)
                        : ntohs(((struct sockaddr_in6 *)&a.peer)->sin6_port);
    assert_int_equal(peer_port, a.client_port);
    coil_sock_close(a.accepted);
    coil_sock_close(a.cfd);
    coil_sock_close(a.lfd);
}

static void test_accept_connect_ipv4(void **state)
{
    accept_connect(test_loop(state), AF_INET);
}

static void test_accept_connect_ipv6(void **state)
{
    accept_connect(test_loop(state), AF_INET6);
}

/* Also over a Unix-domain socket (connect completes at once). */
struct simple {
    coil_loop_t *loop;
    int fd, fd2;
    int r, r2, r3;
    ssize_t n;
    char buf[64];
    size_t sent;
    struct sockaddr_storage ss;
    socklen_t len;
    coil_task_t *other;
};

static int connect_once(void *arg)
{
    struct simple *s = arg;
    s->r = coil_sock_connect(s->fd, (struct sockaddr *)&s->ss, s->len);
    return 0;
}

static void test_connect_refused(void **state)
{
    coil_loop_t *loop = test_loop(state);
    /* A port bound and then released: nobody listens there. */
    int l = coil_sock_open(AF_INET, SOCK_STREAM, 0);
    struct simple s = {.loop = loop};
    loopback(AF_INET, 0, &s.ss, &s.len);
    assert_int_equal(bind(l, (struct sockaddr *)&s.ss, s.len), 0);
    loopback(AF_INET, port_of(l), &s.ss, &s.len);
    coil_sock_close(l);
    s.fd = coil_sock_open(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(test_run_task(loop, connect_once, &s), 0);
    assert_int_equal(s.r, -ECONNREFUSED);
    coil_sock_close(s.fd);
}

/* EINTR from connect: not issued again, completed through writability. */
static void test_connect_eintr_not_reissued(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int l = listener(AF_INET, 8, false);
    struct simple s = {.loop = loop};
    loopback(AF_INET, port_of(l), &s.ss, &s.len);
    s.fd = coil_sock_open(AF_INET, SOCK_STREAM, 0);
    coil_test_fail(COIL_TEST_CONNECT, 1, 1, -EINTR);
    assert_int_equal(test_run_task(loop, connect_once, &s), 0);
    assert_int_equal(s.r, 0);
    assert_int_equal(coil_test_calls(COIL_TEST_CONNECT), 1);
    int c = accept(l, NULL, NULL);
    assert_true(c >= 0);
    close(c);
    coil_sock_close(s.fd);
    coil_sock_close(l);

    /* A Unix-domain connect that completed, reported as EINTR. */
    int u = coil_sock_open(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un *sun = (struct sockaddr_un *)&s.ss;
    memset(&s.ss, 0, sizeof(s.ss));
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "coil-net-%d",
             (int)getpid()); /* abstract namespace: nothing to remove */
    s.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                        strlen(sun->sun_path + 1));
    assert_int_equal(bind(u, (struct sockaddr *)&s.ss, s.len), 0);
    assert_int_equal(listen(u, 4), 0);
    s.fd = coil_sock_open(AF_UNIX, SOCK_STREAM, 0);
    coil_test_fail(COIL_TEST_CONNECT, 1, 1, -EINTR);
    assert_int_equal(test_run_task(loop, connect_once, &s), 0);
    assert_int_equal(s.r, 0);
    assert_int_equal(coil_test_calls(COIL_TEST_CONNECT), 1);
    coil_sock_close(s.fd);
    coil_sock_close(u);
}

/* ------------------------------------------------------------------ */
/* Timeouts and cancellation                                            */
/* ------------------------------------------------------------------ */

static int recv_in_scope(void *arg)
{
    struct simple *s = arg;
    coil_timeout_t *sc;
    int err = coil_timeout_begin(50 * COIL_MSEC, &sc);
    if (err)
        return err;
    s->n = coil_sock_recv(s->fd, s->buf, sizeof(s->buf));
    s->r = coil_timeout_end(sc, (int)s->n);
    /* Nothing left registered: the fd takes a callback watcher... */
    s->r2 = coil_loop_add_reader(s->loop, s->fd, test_stop_cb, s->loop);
    coil_loop_remove_reader(s->loop, s->fd);
    /* ... and a later recv gets the data. */
    send(s->fd2, "late", 4, 0);
    s->n = coil_sock_recv(s->fd, s->buf, sizeof(s->buf));
    return 0;
}

static int recv_task(void *arg)
{
    struct simple *s = arg;
    return (int)coil_sock_recv(s->fd, s->buf, sizeof(s->buf));
}

static int wait_for_recv(void *arg)
{
    struct simple *s = arg;
    coil_task_t *t = test_spawn(s->loop, recv_task, s);
    s->r = coil_wait_for(coil_task_future(t), 30 * COIL_MSEC, NULL);
    s->r2 = coil_future_error(coil_task_future(t));
    coil_task_unref(t);
    /* The cancelled recv left nothing behind: another one works. */
    send(s->fd2, "again", 5, 0);
    s->n = coil_sock_recv(s->fd, s->buf, sizeof(s->buf));
    return 0;
}

static void test_recv_timeout(void **state)
{
    test_exact_io(); /* one recv gets all that was sent */
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    tcp_pair(AF_INET, sv);
    struct simple s = {.loop = loop, .fd = sv[0], .fd2 = sv[1]};
    assert_int_equal(test_run_task(loop, recv_in_scope, &s), 0);
    assert_int_equal(s.r, -ETIMEDOUT);
    assert_int_equal(s.r2, 0);
    assert_int_equal(s.n, 4);
    assert_memory_equal(s.buf, "late", 4);

    s = (struct simple){.loop = loop, .fd = sv[0], .fd2 = sv[1]};
    assert_int_equal(test_run_task(loop, wait_for_recv, &s), 0);
    assert_int_equal(s.r, -ETIMEDOUT);
    assert_int_equal(s.r2, -ECANCELED);
    assert_int_equal(s.n, 5);
    test_assert_no_tasks(loop);
    coil_sock_close(sv[0]);
    coil_sock_close(sv[1]);
}

static int accept_in_scope(void *arg)
{
    struct simple *s = arg;
    coil_timeout_t *sc;
    int err = coil_timeout_begin(20 * COIL_MSEC, &sc);
    if (err)
        return err;
    s->r = coil_timeout_end(sc, coil_sock_accept(s->fd, NULL, NULL));
    return 0;
}

static void test_accept_timeout(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct simple s = {.loop = loop, .fd = listener(AF_INET, 4, false)};
    assert_int_equal(test_run_task(loop, accept_in_scope, &s), 0);
    assert_int_equal(s.r, -ETIMEDOUT);
    /* The listener still works. */
    struct ac a = {.loop = loop, .family = AF_INET, .lfd = s.fd,
                   .port = port_of(s.fd)};
    assert_int_equal(test_run_task(loop, ac_main, &a), 0);
    assert_true(a.accepted >= 0);
    assert_int_equal(a.connected, 0);
    coil_sock_close(a.accepted);
    coil_sock_close(a.cfd);
    coil_sock_close(s.fd);
}

/* Cancel each kind of pending call right after it suspends; the fd must
 * then work for the same kind of call. */
struct cancel_case {
    coil_loop_t *loop;
    int kind; /* 0 recv, 1 send, 2 accept, 3 connect */
    int fd, peer;
    struct sockaddr_storage ss;
    socklen_t len;
    int first;       /* the cancelled call's result */
    size_t sent;     /* send: what it handed over before the cancel */
    int second;      /* the call made afterwards */
    coil_task_t *victim;
};

static char fill_buf[1 << 16];

static int cancel_victim(void *arg)
{
    struct cancel_case *c = arg;
    char buf[16];
    switch (c->kind) {
    case 0:
        c->first = (int)coil_sock_recv(c->fd, buf, sizeof(buf));
        break;
    case 1:
        c->first = coil_sock_send_all(c->fd, fill_buf, sizeof(fill_buf),
                                      &c->sent);
        break;
    case 2:
        c->first = coil_sock_accept(c->fd, NULL, NULL);
        break;
    case 3:
        c->first = coil_sock_connect(c->fd, (struct sockaddr *)&c->ss, c->len);
        break;
    }
    return 0;
}

static int cancel_main(void *arg)
{
    struct cancel_case *c = arg;
    c->victim = test_spawn(c->loop, cancel_victim, c);
    coil_yield(); /* the victim runs and suspends */
    coil_task_cancel(c->victim);
    coil_task_join(c->victim);
    coil_task_unref(c->victim);
    static char buf[1 << 16]; /* not on the task's stack */
    switch (c->kind) {
    case 0:
        send(c->peer, "ok", 2, 0);
        c->second = (int)coil_sock_recv(c->fd, buf, sizeof(buf));
        break;
    case 1: {
        /* Drain what was sent, then send again. */
        size_t drained = 0;
        while (drained < c->sent) {
            ssize_t n = coil_sock_recv(c->peer, buf, sizeof(buf));
            if (n <= 0)
                break;
            drained += (size_t)n;
        }
        c->second = coil_sock_send_all(c->fd, "more", 4, NULL);
        break;
    }
    case 2: {
        int cfd = coil_sock_open(AF_INET, SOCK_STREAM, 0);
        coil_sock_connect(cfd, (struct sockaddr *)&c->ss, c->len);
        c->second = coil_sock_accept(c->fd, NULL, NULL);
        if (c->second >= 0) {
            coil_sock_close(c->second);
            c->second = 0;
        }
        coil_sock_close(cfd);
        break;
    }
    case 3:
        /* The kernel finished connecting meanwhile: the socket works. */
        c->second = coil_sock_send_all(c->fd, "hi", 2, NULL);
        if (!c->second) {
            int a = coil_sock_accept(c->peer, NULL, NULL);
            c->second = a >= 0 ? (int)coil_sock_recv(a, buf, sizeof(buf)) : a;
            if (a >= 0)
                coil_sock_close(a);
        }
        break;
    }
    return 0;
}

static void test_cancel_pending_calls(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    test_exact_io(); /* one recv gets all that was sent */
    coil_loop_t *loop = test_loop(state);
    for (int kind = 0; kind < 4; kind++) {
        struct cancel_case c = {.loop = loop, .kind = kind};
        int sv[2] = {-1, -1};
        if (kind < 2) {
            tcp_pair_opt(AF_INET, sv, true);
            c.fd = sv[0];
            c.peer = sv[1];
        } else if (kind == 2) {
            sv[0] = c.fd = listener(AF_INET, 8, false);
            loopback(AF_INET, port_of(c.fd), &c.ss, &c.len);
        } else {
            sv[1] = c.peer = listener(AF_INET, 8, false);
            loopback(AF_INET, port_of(c.peer), &c.ss, &c.len);
            sv[0] = c.fd = coil_sock_open(AF_INET, SOCK_STREAM, 0);
        }
        assert_int_equal(test_run_task(loop, cancel_main, &c), 0);
        if (kind == 3 && c.first == 0) {
            /* Connected before the cancel could land: still fine. */
        } else {
            assert_int_equal(c.first, -ECANCELED);
        }
        switch (kind) {
        case 0:
            assert_int_equal(c.second, 2);
            break;
        case 1:
            assert_true(c.sent < sizeof(fill_buf));
            assert_int_equal(c.second, 0);
            break;
        case 2:
            assert_int_equal(c.second, 0);
            break;
        case 3:
            assert_int_equal(c.second, 2);
            break;
        }
        coil_sock_close(sv[0]);
        coil_sock_close(sv[1]);
    }
}

/* ------------------------------------------------------------------ */
/* Peer errors, EOF, SIGPIPE                                            */
/* ------------------------------------------------------------------ */

static int reset_peer(void *arg)
{
    struct simple *s = arg;
    coil_yield(); /* the reader is suspended now */
    struct linger lg = {1, 0};
    setsockopt(s->fd2, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    coil_sock_close(s->fd2);
    s->fd2 = -1;
    return 0;
}

static int reader_and_resetter(void *arg)
{
    struct simple *s = arg;
    coil_task_t *r = test_spawn(s->loop, recv_task, s);
    coil_task_t *k = test_spawn(s->loop, reset_peer, s);
    s->r = coil_task_join(r);
    coil_task_join(k);
    coil_task_unref(r);
    coil_task_unref(k);
    return 0;
}

static void test_peer_reset(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    tcp_pair(AF_INET, sv);
    struct simple s = {.loop = loop, .fd = sv[0], .fd2 = sv[1]};
    assert_int_equal(test_run_task(loop, reader_and_resetter, &s), 0);
    assert_int_equal(s.r, -ECONNRESET);
    coil_sock_close(sv[0]);
}

static int eof_reader(void *arg)
{
    struct simple *s = arg;
    s->n = coil_sock_recv(s->fd, s->buf, sizeof(s->buf));
    s->r = (int)coil_sock_recv(s->fd, s->buf, sizeof(s->buf));
    return 0;
}

static void test_eof(void **state)
{
    test_exact_io(); /* one recv gets all that was sent */
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    tcp_pair(AF_INET, sv);
    assert_int_equal(send(sv[1], "bye", 3, 0), 3);
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
    struct simple s = {.loop = loop, .fd = sv[0]};
    assert_int_equal(test_run_task(loop, eof_reader, &s), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.r, 0);
    coil_sock_close(sv[0]);
    coil_sock_close(sv[1]);
}

/* In a child with SIGPIPE at its default action: writing to a peer that
 * is gone must return -EPIPE/-ECONNRESET, never kill the process. */
struct pipe_case {
    int tcp[2], unix_[2];
    int tcp_err, unix_err, sendfile_err;
    int file;
};

static int write_to_gone_peer(void *arg)
{
    struct pipe_case *p = arg;
    static char big[1 << 20];
    size_t sent;
    p->unix_err = coil_sock_send_all(p->unix_[0], big, sizeof(big), &sent);
    for (int i = 0; i < 100 && !p->tcp_err; i++) {
        p->tcp_err = coil_sock_send_all(p->tcp[0], big, sizeof(big), &sent);
        if (!p->tcp_err)
            coil_sleep(COIL_MSEC);
    }
    off_t off = 0;
    ssize_t r = coil_sock_sendfile(p->unix_[0], p->file, &off, 4096);
    p->sendfile_err = r < 0 ? (int)r : 0;
    return 0;
}

static int pipe_child(struct pipe_case *p)
{
    signal(SIGPIPE, SIG_DFL);
    coil_loop_t *loop;
    if (coil_loop_new(&loop))
        return 10;
    coil_task_t *t;
    if (coil_task_spawn(loop, write_to_gone_peer, p, &t))
        return 13;
    coil_loop_run_until_complete(loop, coil_task_future(t));
    coil_task_unref(t);
    coil_loop_unref(loop);
    if (p->unix_err != -EPIPE)
        return 20;
    if (p->tcp_err != -EPIPE && p->tcp_err != -ECONNRESET)
        return 21;
    if (p->sendfile_err != -EPIPE)
        return 22;
    return 0;
}

static void test_no_sigpipe(void **state)
{
    (void)state;
    /* Everything is made here; the child only runs the loop (a failing
     * assertion in the child would go on running tests there). */
    struct pipe_case p = {0};
    tcp_pair(AF_INET, p.tcp);
    test_socketpair(p.unix_);
    char path[] = "/tmp/coil-net-XXXXXX";
    p.file = mkstemp(path);
    assert_true(p.file >= 0);
    unlink(path);
    char data[4096] = {1};
    assert_int_equal(write(p.file, data, sizeof(data)), sizeof(data));
    /* The peers go before the fork, so that no copy keeps them open. */
    close_fds(&p.tcp[1], 1);
    close_fds(&p.unix_[1], 1);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(pipe_child(&p));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close_fds(p.tcp, 2);
    close_fds(p.unix_, 2);
    close(p.file);
    if (WIFSIGNALED(status))
        fail_msg("child killed by signal %d", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ------------------------------------------------------------------ */
/* One waiter per direction; coil_sock_close wakes waiters              */
/* ------------------------------------------------------------------ */

static int second_reader(void *arg)
{
    struct simple *s = arg;
    coil_task_t *first = test_spawn(s->loop, recv_task, s);
    coil_yield(); /* first is suspended in recv */
    char b[4];
    s->r = (int)coil_sock_recv(s->fd, b, sizeof(b));
    s->r2 = coil_loop_add_reader(s->loop, s->fd, test_stop_cb, s->loop);
    /* The other direction is free. */
    s->r3 = coil_sock_send_all(s->fd, "x", 1, NULL);
    send(s->fd2, "data", 4, 0);
    s->n = coil_task_join(first);
    coil_task_unref(first);
    return 0;
}

static void test_two_readers_ebusy(void **state)
{
    test_exact_io(); /* one recv gets all that was sent */
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct simple s = {.loop = loop, .fd = sv[0], .fd2 = sv[1]};
    assert_int_equal(test_run_task(loop, second_reader, &s), 0);
    assert_int_equal(s.r, -EBUSY);
    assert_int_equal(s.r2, -EBUSY);
    assert_int_equal(s.r3, 0);
    assert_int_equal(s.n, 4);
    /* A callback watcher holds the direction: tasks get -EBUSY. */
    assert_int_equal(coil_loop_add_reader(loop, sv[0], test_stop_cb, loop), 0);
    s.r = 0;
    assert_int_equal(test_run_task(loop, recv_task, &s), -EBUSY);
    assert_int_equal(coil_loop_remove_reader(loop, sv[0]), 1);
    coil_sock_close(sv[0]);
    coil_sock_close(sv[1]);
}

static int closer(void *arg)
{
    struct simple *s = arg;
    coil_task_t *r = test_spawn(s->loop, recv_task, s);
    coil_yield();
    s->r2 = coil_sock_close(s->fd);
    s->r = coil_task_join(r);
    coil_task_unref(r);
    /* The number comes back for a new socket: waits on it work. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0) {
        s->r3 = sv[0] == s->fd || sv[1] == s->fd;
        s->fd = sv[0];
        s->fd2 = sv[1];
        coil_task_t *r2 = test_spawn(s->loop, recv_task, s);
        coil_yield();
        send(sv[1], "new", 3, 0);
        s->n = coil_task_join(r2);
        coil_task_unref(r2);
    }
    return 0;
}

static void test_sock_close_wakes_waiter(void **state)
{
    test_exact_io(); /* one recv gets all that was sent */
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct simple s = {.loop = loop, .fd = sv[0], .fd2 = sv[1]};
    int old2 = sv[1];
    assert_int_equal(test_run_task(loop, closer, &s), 0);
    assert_int_equal(s.r2, 0);
    assert_int_equal(s.r, -EBADF);
    assert_true(s.r3);
    assert_int_equal(s.n, 3);
    coil_sock_close(s.fd);
    coil_sock_close(s.fd2);
    coil_sock_close(old2);
    assert_int_equal(coil_sock_close(-1), -EBADF);
}

/* A raw close() of an fd whose interest stayed armed, then the number
 * comes back from coil_sock_accept: the wait on it must not hang. */
struct reuse {
    coil_loop_t *loop;
    int lfd, port;
    int peer, victim;
    int accepted;
    ssize_t n;
};

static int reuse_main(void *arg)
{
    struct reuse *r = arg;
    /* a wait on the victim, so that its read interest stays armed */
    struct simple s = {.loop = r->loop, .fd = r->victim};
    coil_task_t *t = test_spawn(r->loop, recv_task, &s);
    coil_yield();
    send(r->peer, "1", 1, 0);
    coil_task_join(t);
    coil_task_unref(t);
    int c = coil_sock_open(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    loopback(AF_INET, r->port, &ss, &len);
    coil_sock_connect(c, (struct sockaddr *)&ss, len);
    close(r->victim); /* behind the loop's back */
    r->accepted = coil_sock_accept(r->lfd, NULL, NULL); /* same number */
    coil_sock_send_all(c, "3", 1, NULL);
    s.fd = r->accepted;
    t = test_spawn(r->loop, recv_task, &s);
    r->n = coil_task_join(t);
    coil_task_unref(t);
    coil_sock_close(c);
    return 0;
}

static void test_reused_number_from_accept(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct reuse r = {.loop = loop};
    r.lfd = listener(AF_INET, 4, false);
    r.port = port_of(r.lfd);
    int sv[2];
    test_socketpair(sv);
    r.victim = sv[0];
    r.peer = sv[1];
    assert_int_equal(test_run_task(loop, reuse_main, &r), 0);
    if (r.accepted != sv[0])
        print_message("[ NOTE     ] accept got fd %d, not the closed %d: "
                      "the reuse was not exercised\n",
                      r.accepted, sv[0]);
    assert_int_equal(r.accepted, sv[0]);
    assert_int_equal(r.n, 1);
    coil_sock_close(r.accepted);
    coil_sock_close(sv[1]);
    coil_sock_close(r.lfd);
}

/* ------------------------------------------------------------------ */
/* The syscall seam                                                     */
/* ------------------------------------------------------------------ */

struct inj {
    coil_loop_t *loop;
    int fd, peer, lfd;
    ssize_t n;
    int r, r2;
    char buf[16];
};

static int inj_recv(void *arg)
{
    struct inj *i = arg;
    i->n = coil_sock_recv(i->fd, i->buf, sizeof(i->buf));
    return 0;
}

static int inj_send(void *arg)
{
    struct inj *i = arg;
    i->r = coil_sock_send_all(i->fd, "hello", 5, NULL);
    i->n = recv(i->peer, i->buf, sizeof(i->buf), 0);
    return 0;
}

static int inj_accept(void *arg)
{
    struct inj *i = arg;
    i->r = coil_sock_accept(i->lfd, NULL, NULL);
    return 0;
}

static void test_injected_errors(void **state)
{
    test_exact_io(); /* exact syscall counts */
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct inj i = {.loop = loop, .fd = sv[0], .peer = sv[1]};

    /* recv: EINTR three times, retried; EAGAIN with data there: waits,
     * wakes at once (level-triggered), reads. */
    send(sv[1], "abc", 3, 0);
    coil_test_fail(COIL_TEST_RECV, 1, 3, -EINTR);
    assert_int_equal(test_run_task(loop, inj_recv, &i), 0);
    assert_int_equal(i.n, 3);
    assert_int_equal(coil_test_calls(COIL_TEST_RECV), 4);
    send(sv[1], "de", 2, 0);
    coil_test_fail(COIL_TEST_RECV, 1, 1, -EAGAIN);
    assert_int_equal(test_run_task(loop, inj_recv, &i), 0);
    assert_int_equal(i.n, 2);
    coil_test_fail(COIL_TEST_RECV, 1, 1, -ECONNRESET);
    assert_int_equal(test_run_task(loop, inj_recv, &i), 0);
    assert_int_equal(i.n, -ECONNRESET);

    /* send: EINTR, EAGAIN retried; EPIPE returned. */
    coil_test_fail(COIL_TEST_SEND, 1, 2, -EINTR);
    assert_int_equal(test_run_task(loop, inj_send, &i), 0);
    assert_int_equal(i.r, 0);
    assert_int_equal(i.n, 5);
    assert_int_equal(coil_test_calls(COIL_TEST_SEND), 3);
    coil_test_fail(COIL_TEST_SEND, 1, 1, -EAGAIN);
    assert_int_equal(test_run_task(loop, inj_send, &i), 0);
    assert_int_equal(i.r, 0);
    assert_int_equal(i.n, 5);
    coil_test_fail(COIL_TEST_SEND, 1, 1, -EPIPE);
    assert_int_equal(test_run_task(loop, inj_send, &i), 0);
    assert_int_equal(i.r, -EPIPE);

    /* accept: EINTR and ECONNABORTED retried, EMFILE returned. */
    i.lfd = listener(AF_INET, 4, false);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    loopback(AF_INET, port_of(i.lfd), &ss, &len);
    assert_int_equal(connect(c, (struct sockaddr *)&ss, len), 0);
    coil_test_fail(COIL_TEST_ACCEPT, 1, 1, -EMFILE);
    assert_int_equal(test_run_task(loop, inj_accept, &i), 0);
    assert_int_equal(i.r, -EMFILE);
    coil_test_fail(COIL_TEST_ACCEPT, 1, 3, -EINTR);
    assert_int_equal(test_run_task(loop, inj_accept, &i), 0);
    assert_true(i.r >= 0);
    assert_int_equal(coil_test_calls(COIL_TEST_ACCEPT), 4);
    coil_sock_close(i.r);
    close(c);
    c = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(c, (struct sockaddr *)&ss, len), 0);
    coil_test_fail(COIL_TEST_ACCEPT, 1, 2, -ECONNABORTED);
    assert_int_equal(test_run_task(loop, inj_accept, &i), 0);
    assert_true(i.r >= 0);
    coil_sock_close(i.r);
    close(c);
    /* A network error pending on the queued connection is its own, not
     * the listener's: skipped the same way. */
    static const int conn_errs[] = {EPROTO, ENETDOWN, EHOSTUNREACH};
    for (size_t k = 0; k < sizeof(conn_errs) / sizeof(*conn_errs); k++) {
        c = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(c, (struct sockaddr *)&ss, len), 0);
        coil_test_fail(COIL_TEST_ACCEPT, 1, 1, -conn_errs[k]);
        assert_int_equal(test_run_task(loop, inj_accept, &i), 0);
        assert_true(i.r >= 0);
        assert_int_equal(coil_test_calls(COIL_TEST_ACCEPT), 2);
        coil_sock_close(i.r);
        close(c);
    }
    coil_sock_close(i.lfd);
    coil_sock_close(sv[0]);
    coil_sock_close(sv[1]);
}

/* ------------------------------------------------------------------ */
/* EMFILE on accept (real limit)                                        */
/* ------------------------------------------------------------------ */

/* The lowest fd number not in use. */
static int lowest_free(void)
{
    int fd = dup(0);
    if (fd >= 0)
        close(fd);
    return fd;
}

static void test_accept_emfile(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct inj i = {.loop = loop};
    i.lfd = listener(AF_INET, 4, false);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    loopback(AF_INET, port_of(i.lfd), &ss, &len);
    assert_int_equal(connect(c, (struct sockaddr *)&ss, len), 0);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest_free();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int err = test_run_task(loop, inj_accept, &i);
    int first = i.r;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(err, 0);
    assert_int_equal(first, -EMFILE);
    /* The connection stayed queued: with the limit back, it comes. */
    assert_int_equal(test_run_task(loop, inj_accept, &i), 0);
    assert_true(i.r >= 0);
    coil_sock_close(i.r);
    close(c);
    coil_sock_close(i.lfd);
}

/* ------------------------------------------------------------------ */
/* UDP                                                                  */
/* ------------------------------------------------------------------ */

struct udp {
    coil_loop_t *loop;
    int a, b;
    struct sockaddr_storage a_addr;
    socklen_t a_len;
    ssize_t got, sent, reply;
    char buf[64];
    struct sockaddr_storage from;
    socklen_t from_len;
    int from_port_ok;
};

static int udp_server(void *arg)
{
    struct udp *u = arg;
    u->from_len = sizeof(u->from);
    u->got = coil_sock_recvfrom(u->a, u->buf, sizeof(u->buf),
                                (struct sockaddr *)&u->from, &u->from_len);
    if (u->got > 0)
        u->reply = coil_sock_sendto(u->a, u->buf, (size_t)u->got,
                                    (struct sockaddr *)&u->from, u->from_len);
    return 0;
}

static int udp_main(void *arg)
{
    struct udp *u = arg;
    coil_task_t *srv = test_spawn(u->loop, udp_server, u);
    coil_yield(); /* the server waits in recvfrom */
    u->sent = coil_sock_sendto(u->b, "ping", 4, (struct sockaddr *)&u->a_addr,
                               u->a_len);
    char buf[64];
    ssize_t n = coil_sock_recvfrom(u->b, buf, sizeof(buf), NULL, NULL);
    u->from_port_ok = n == 4 && memcmp(buf, "ping", 4) == 0 &&
                      ntohs(((struct sockaddr_in *)&u->from)->sin_port) ==
                          port_of(u->b);
    coil_task_join(srv);
    coil_task_unref(srv);
    return 0;
}

static void test_udp_roundtrip(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct udp u = {.loop = loop};
    u.a = coil_sock_open(AF_INET, SOCK_DGRAM, 0);
    u.b = coil_sock_open(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_storage any;
    socklen_t len;
    loopback(AF_INET, 0, &any, &len);
    assert_int_equal(bind(u.a, (struct sockaddr *)&any, len), 0);
    assert_int_equal(bind(u.b, (struct sockaddr *)&any, len), 0);
    loopback(AF_INET, port_of(u.a), &u.a_addr, &u.a_len);
    assert_int_equal(test_run_task(loop, udp_main, &u), 0);
    assert_int_equal(u.got, 4);
    assert_int_equal(u.sent, 4);
    assert_int_equal(u.reply, 4);
    assert_true(u.from_port_ok);
    coil_sock_close(u.a);
    coil_sock_close(u.b);
}

/* ------------------------------------------------------------------ */
/* sendfile                                                             */
/* ------------------------------------------------------------------ */

#define FILE_SIZE (1u << 20)

struct sf {
    coil_loop_t *loop;
    int file, out, in;
    off_t offset;
    bool use_offset;
    ssize_t sent;
    size_t received, mismatches;
    off_t start;
};

static int sf_sender(void *arg)
{
    struct sf *s = arg;
    s->sent = coil_sock_sendfile(s->out, s->file,
                                 s->use_offset ? &s->offset : NULL,
                                 FILE_SIZE * 2);
    shutdown(s->out, SHUT_WR);
    return 0;
}

static int sf_main(void *arg)
{
    struct sf *s = arg;
    coil_task_t *t = test_spawn(s->loop, sf_sender, s);
    unsigned char buf[5000];
    for (;;) {
        ssize_t n = coil_sock_recv(s->in, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] !=
                test_pattern((size_t)s->start + s->received + (size_t)i, 9))
                s->mismatches++;
        s->received += (size_t)n;
    }
    coil_task_join(t);
    coil_task_unref(t);
    return 0;
}

static void sendfile_case(coil_loop_t *loop, bool use_offset, bool fallback)
{
    char path[] = "/tmp/coil-net-XXXXXX";
    int file = mkstemp(path);
    assert_true(file >= 0);
    unlink(path);
    unsigned char *data = malloc(FILE_SIZE);
    for (size_t i = 0; i < FILE_SIZE; i++)
        data[i] = test_pattern(i, 9);
    assert_int_equal(write(file, data, FILE_SIZE), (ssize_t)FILE_SIZE);
    free(data);
    int sv[2];
    tcp_pair_opt(AF_INET, sv, true);
    struct sf s = {.loop = loop, .file = file, .out = sv[0], .in = sv[1],
                   .use_offset = use_offset, .offset = 100, .start = 100};
    /* Without an offset, the file's own position is the start. */
    assert_int_equal(lseek(file, 100, SEEK_SET), 100);
    coil_test_reset_faults(); /* sendfile: no fault, count from here */
    coil__fault_arm(COIL__SYS_PREAD, 0, 0, 0); /* count from here */
    if (fallback)
        coil_test_fail(COIL_TEST_SENDFILE, 1, 1, -ENOSYS);
    assert_int_equal(test_run_task(loop, sf_main, &s), 0);
    /* Which path ran: the fallback copies with pread after one refused
     * sendfile; the other never reads the file itself. */
    if (fallback) {
        assert_int_equal(coil_test_calls(COIL_TEST_SENDFILE), 1);
        assert_true(coil__fault_calls(COIL__SYS_PREAD) >= 1);
    } else {
        assert_true(coil_test_calls(COIL_TEST_SENDFILE) >= 1);
        assert_int_equal(coil__fault_calls(COIL__SYS_PREAD), 0);
    }
    assert_int_equal(s.sent, FILE_SIZE - 100);
    assert_int_equal(s.received, FILE_SIZE - 100);
    assert_int_equal(s.mismatches, 0);
    if (use_offset) {
        assert_int_equal(s.offset, FILE_SIZE);
        assert_int_equal(lseek(file, 0, SEEK_CUR), 100); /* untouched */
    } else {
        assert_int_equal(lseek(file, 0, SEEK_CUR), FILE_SIZE);
    }
    close(file);
    coil_sock_close(sv[0]);
    coil_sock_close(sv[1]);
}

static void test_sendfile(void **state)
{
    coil_loop_t *loop = test_loop(state);
    sendfile_case(loop, true, false);
    sendfile_case(loop, false, false);
    sendfile_case(loop, true, true);
    sendfile_case(loop, false, true);
}

/* ------------------------------------------------------------------ */
/* getaddrinfo                                                          */
/* ------------------------------------------------------------------ */

struct gai {
    coil_loop_t *loop;
    const char *host, *service;
    int flags, family;
    int r;
    int found_v4, found_v6, port_ok, count;
    coil_task_t *t;
};

static int gai_task(void *arg)
{
    struct gai *g = arg;
    struct addrinfo hints = {.ai_flags = g->flags, .ai_family = g->family,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    g->r = coil_getaddrinfo(g->host, g->service, &hints, &res);
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        g->count++;
        if (a->ai_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)a->ai_addr;
            g->found_v4 += in->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
            g->port_ok += ntohs(in->sin_port) == 80;
        } else if (a->ai_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)a->ai_addr;
            g->found_v6 += memcmp(&in6->sin6_addr, &in6addr_loopback,
                                  sizeof(in6addr_loopback)) == 0;
            g->port_ok += ntohs(in6->sin6_port) == 80;
        }
    }
    coil_freeaddrinfo(res);
    return 0;
}

static void test_getaddrinfo(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct gai g = {.loop = loop, .host = "localhost", .service = "80"};
    assert_int_equal(test_run_task(loop, gai_task, &g), 0);
    assert_int_equal(g.r, 0);
    assert_true(g.found_v4 + g.found_v6 >= 1);
    assert_int_equal(g.port_ok, g.count);

    g = (struct gai){.loop = loop, .host = "127.0.0.1", .service = "80",
                     .flags = AI_NUMERICHOST};
    assert_int_equal(test_run_task(loop, gai_task, &g), 0);
    assert_int_equal(g.r, 0);
    assert_true(g.found_v4 >= 1);

    g = (struct gai){.loop = loop, .host = "::1", .service = "80",
                     .flags = AI_NUMERICHOST};
    assert_int_equal(test_run_task(loop, gai_task, &g), 0);
    assert_int_equal(g.r, 0);
    assert_int_equal(g.found_v6, g.count);

    /* Errors, without the network: a name that is not a number. */
    g = (struct gai){.loop = loop, .host = "not-a-number", .service = "80",
                     .flags = AI_NUMERICHOST};
    assert_int_equal(test_run_task(loop, gai_task, &g), 0);
    assert_int_equal(g.r, -ENOENT);
    g = (struct gai){.loop = loop, .host = "127.0.0.1", .service = "80",
                     .family = 12345};
    assert_int_equal(test_run_task(loop, gai_task, &g), 0);
    assert_int_equal(g.r, -EAFNOSUPPORT);
}

/* Numeric hosts and ports are parsed on the spot: no helper thread, no
 * suspension (a task spawned before the call has not run after it). */
struct gai_num {
    coil_loop_t *loop;
    bool other_ran, ran_during[3];
    int r[3], family[3];
};

static int note_ran(void *arg)
{
    ((struct gai_num *)arg)->other_ran = true;
    return 0;
}

static int gai_num_main(void *arg)
{
    struct gai_num *g = arg;
    static const char *const hosts[3] = {"127.0.0.1", "::1", NULL};
    struct addrinfo hints = {.ai_flags = AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    for (int i = 0; i < 3; i++) {
        g->other_ran = false;
        coil_task_t *t = test_spawn(g->loop, note_ran, g);
        struct addrinfo *res = NULL;
        g->r[i] = coil_getaddrinfo(hosts[i], "8080", &hints, &res);
        g->ran_during[i] = g->other_ran;
        g->family[i] = res ? res->ai_family : -1;
        coil_freeaddrinfo(res);
        test_join(t);
    }
    return 0;
}

static void test_getaddrinfo_numeric_inline(void **state)
{
    struct gai_num g = {.loop = test_loop(state)};
    assert_int_equal(test_run_task(g.loop, gai_num_main, &g), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g.r[i], 0);
        assert_false(g.ran_during[i]);
    }
    assert_int_equal(g.family[0], AF_INET);
    assert_int_equal(g.family[1], AF_INET6);
    assert_true(g.family[2] == AF_INET || g.family[2] == AF_INET6);
}

static int gai_cancel_main(void *arg)
{
    struct gai *g = arg;
    g->t = test_spawn(g->loop, gai_task, g);
    coil_yield(); /* the lookup is under way */
    coil_task_cancel(g->t);
    coil_task_join(g->t);
    coil_task_unref(g->t);
    return 0;
}

static void test_getaddrinfo_cancel(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    coil_loop_t *loop = test_loop(state);
    struct gai g = {.loop = loop, .host = "localhost", .service = "80"};
    assert_int_equal(test_run_task(loop, gai_cancel_main, &g), 0);
    assert_int_equal(g.r, -ECANCELED);
}

/* getnameinfo: numbers at once, a lookup on the resolver threads, a
 * name too long for its buffer, bad arguments, a cancel. */
struct gni {
    int num_r, look_r, small_r, bad_r[4], cancel_r;
    char num_host[64], num_serv[16], look_host[256], small[4];
    coil_task_t *t;
};

static int gni_cancelled(void *arg)
{
    struct gni *g = arg;
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons(80),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char host[256];
    g->cancel_r = coil_getnameinfo((struct sockaddr *)&sin, sizeof(sin), host,
                                   sizeof(host), NULL, 0, 0);
    return 0;
}

static int gni_main(void *arg)
{
    struct gni *g = arg;
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons(8080),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const struct sockaddr *sa = (struct sockaddr *)&sin;
    g->num_r = coil_getnameinfo(sa, sizeof(sin), g->num_host,
                                sizeof(g->num_host), g->num_serv,
                                sizeof(g->num_serv),
                                NI_NUMERICHOST | NI_NUMERICSERV);
    g->look_r = coil_getnameinfo(sa, sizeof(sin), g->look_host,
                                 sizeof(g->look_host), NULL, 0, NI_NAMEREQD);
    g->small_r = coil_getnameinfo(sa, sizeof(sin), g->small, sizeof(g->small),
                                  NULL, 0, NI_NUMERICHOST);
    g->bad_r[0] = coil_getnameinfo(NULL, sizeof(sin), g->small, 4, NULL, 0, 0);
    g->bad_r[1] = coil_getnameinfo(sa, 0, g->small, 4, NULL, 0, 0);
    g->bad_r[2] = coil_getnameinfo(sa, sizeof(sin), NULL, 0, NULL, 0, 0);
    g->bad_r[3] = coil_getnameinfo(sa, sizeof(sin), g->small, 0, NULL, 0, 0);
    g->t = test_spawn(coil_running_loop(), gni_cancelled, g);
    coil_yield(); /* the lookup is under way */
    coil_task_cancel(g->t);
    test_join(g->t);
    return 0;
}

static void test_getnameinfo(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    coil_loop_t *loop = test_loop(state);
    struct gni g = {.cancel_r = 1};
    assert_int_equal(test_run_task(loop, gni_main, &g), 0);
    assert_int_equal(g.num_r, 0);
    assert_string_equal(g.num_host, "127.0.0.1");
    assert_string_equal(g.num_serv, "8080");
    assert_int_equal(g.look_r, 0);
    assert_true(strlen(g.look_host) > 0); /* "localhost", as a rule */
    assert_int_equal(g.small_r, -EOVERFLOW); /* "127.0.0.1" needs 10 */
    for (int i = 0; i < 4; i++)
        assert_int_equal(g.bad_r[i], -EINVAL);
    assert_int_equal(g.cancel_r, -ECANCELED);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    char h[16];
    assert_int_equal(coil_getnameinfo((struct sockaddr *)&sin, sizeof(sin), h,
                                      sizeof(h), NULL, 0, NI_NUMERICHOST),
                     -EPERM);
}

/* The loop is closed with the lookup under way, or with the task
 * cancelled and the lookup still running. */
static void test_getaddrinfo_loop_closed(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        coil_loop_t *loop;
        assert_int_equal(coil_loop_new(&loop), 0);
        struct gai g = {.loop = loop, .host = "localhost", .service = "80"};
        coil_task_t *t = test_spawn(loop, gai_task, &g);
        /* one iteration: the task starts its lookup and suspends */
        coil_loop_stop(loop);
        assert_int_equal(coil_loop_run_forever(loop), 0);
        if (mode == 1) {
            coil_task_cancel(t);
            coil_loop_stop(loop);
            assert_int_equal(coil_loop_run_forever(loop), 0);
        }
        coil_task_unref(t);
        coil_loop_unref(loop);
        test_wait_executor_threads(); /* the lookup's job ends on its own */
    }
}

/* ------------------------------------------------------------------ */
/* Raw fds closed with close(2) and their numbers reused                */
/* ------------------------------------------------------------------ */

struct rawreuse {
    coil_loop_t *loop;
    int num;  /* the number reused */
    int peer; /* the new file's peer */
    ssize_t n1, n2, n0;
    char c1, c2;
};

static void send_z(void *arg)
{
    struct rawreuse *r = arg;
    (void)send(r->peer, "z", 1, 0);
}

static int rawreuse_main(void *arg)
{
    struct rawreuse *r = arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
        return -1;
    /* A wait on the raw fd (its interest is left registered after). */
    (void)send(sv[1], "a", 1, 0);
    r->n1 = coil_sock_recv(sv[0], &r->c1, 1);
    /* Closed behind the loop's back, the number given to a new file. */
    int num = sv[0];
    close(sv[0]);
    close(sv[1]);
    int nb[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, nb))
        return -1;
    if (nb[1] == num) { /* either end will do: the one with the number */
        int tmp = nb[0];
        nb[0] = nb[1];
        nb[1] = tmp;
    }
    if (nb[0] != num) {
        if (dup3(nb[0], num, O_CLOEXEC) < 0)
            return -1;
        close(nb[0]);
    }
    r->num = num;
    r->peer = nb[1];
    /* A wait on the new file under the old number: its data, sent after
     * the wait began, must wake it. */
    coil_loop_call_later(r->loop, COIL_MSEC, send_z, r, NULL);
    r->n2 = coil_sock_recv(num, &r->c2, 1);
    /* recv of 0 bytes: 0 at once, nothing waited for. */
    r->n0 = coil_sock_recv(num, &r->c2, 0);
    return 0;
}

static void test_raw_close_and_reuse(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct rawreuse r = {.loop = loop, .n1 = -1, .n2 = -1, .n0 = -1};
    assert_int_equal(test_run_task(loop, rawreuse_main, &r), 0);
    assert_int_equal(r.n1, 1);
    assert_int_equal(r.c1, 'a');
    assert_int_equal(r.n2, 1);
    assert_int_equal(r.c2, 'z');
    assert_int_equal(r.n0, 0);
    close(r.num);
    close(r.peer);
}

static int recv_zero_main(void *arg)
{
    struct simple *s = arg;
    s->n = coil_sock_recv(s->fd, s->buf, 0);
    s->r = (int)coil_sock_recv(-1, s->buf, 0);
    return 0;
}

/* recv of 0 bytes returns 0 at once, as documented: no waiting for
 * data that nobody sends. */
static void test_recv_zero(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct simple s = {.loop = loop, .fd = sv[0], .n = -1};
    assert_int_equal(test_run_task(loop, recv_zero_main, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.r, -EBADF);
    close(sv[0]);
    close(sv[1]);
}

/* ------------------------------------------------------------------ */
/* Registrations per wait: none for fds coil owns, one for raw fds      */
/* ------------------------------------------------------------------ */

struct pingpong {
    coil_loop_t *loop;
    int a, b;
    coil_stream_t *sa, *sb; /* streams over a and b, or NULL: raw */
    int rounds, done;
    unsigned ctl_calls;
};

static int pp_send(struct pingpong *p, int fd, coil_stream_t *s, char c)
{
    return s ? coil_stream_write(s, &c, 1)
             : coil_sock_send_all(fd, &c, 1, NULL);
}

static ssize_t pp_recv(struct pingpong *p, int fd, coil_stream_t *s, char *c)
{
    (void)p;
    return s ? coil_stream_read(s, c, 1) : coil_sock_recv(fd, c, 1);
}

static int pong(void *arg)
{
    struct pingpong *p = arg;
    char c;
    for (int i = 0; i < p->rounds; i++) {
        if (pp_recv(p, p->b, p->sb, &c) != 1)
            break;
        if (pp_send(p, p->b, p->sb, c))
            break;
    }
    return 0;
}

static int ping(void *arg)
{
    struct pingpong *p = arg;
    coil_task_t *t = test_spawn(p->loop, pong, p);
    coil__fault_arm(COIL__SYS_EPOLL_CTL, 0, 0, 0); /* count from here */
    char c = 'x';
    for (int i = 0; i < p->rounds; i++) {
        if (pp_send(p, p->a, p->sa, c))
            break;
        if (pp_recv(p, p->a, p->sa, &c) != 1)
            break;
        p->done++;
    }
    p->ctl_calls = coil__fault_calls(COIL__SYS_EPOLL_CTL);
    coil_task_join(t);
    coil_task_unref(t);
    return 0;
}

static int stream_ping(void *arg)
{
    struct pingpong *p = arg;
    if (coil_stream_open_fd(p->a, &p->sa) || coil_stream_open_fd(p->b, &p->sb))
        return -ENOMEM;
    ping(p);
    coil_stream_unref(p->sa);
    coil_stream_unref(p->sb);
    return 0;
}

static void test_registrations_per_wait(void **state)
{
    test_exact_io(); /* exact epoll_ctl counts */
    coil_loop_t *loop = test_loop(state);
    int sv[2];

    /* A stream owns its fd and closes it through its watch: its interest
     * stays armed between waits (lazy disarm), 400 waits cost no
     * epoll_ctl beyond one registration per fd. */
    test_socketpair(sv);
    struct pingpong p = {.loop = loop, .a = sv[0], .b = sv[1], .rounds = 200};
    assert_int_equal(test_run_task(loop, stream_ping, &p), 0);
    assert_int_equal(p.done, 200);
    assert_true(p.ctl_calls <= 4);

    /* A raw fd may be closed and its number reused behind the loop's
     * back: every wait registers again (which would notice a new file),
     * at most one epoll_ctl per wait. */
    test_socketpair(sv);
    p = (struct pingpong){.loop = loop, .a = sv[0], .b = sv[1], .rounds = 200};
    assert_int_equal(test_run_task(loop, ping, &p), 0);
    assert_int_equal(p.done, 200);
    assert_true(p.ctl_calls >= 200);
    assert_true(p.ctl_calls <= 2 * 200 + 2);
    coil_sock_close(sv[0]);
    coil_sock_close(sv[1]);
}

/* ------------------------------------------------------------------ */
/* Closing the loop with waiting tasks                                   */
/* ------------------------------------------------------------------ */

static void test_loop_close_with_waiters(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    int sv[2];
    test_socketpair(sv);
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct simple s = {.loop = loop, .fd = sv[0]};
    coil_task_t *t = test_spawn(loop, recv_task, &s);
    struct simple s2 = {.loop = loop, .fd = sv[1]};
    coil_task_t *t2 = test_spawn(loop, recv_task, &s2);
    coil_loop_stop(loop);
    assert_int_equal(coil_loop_run_forever(loop), 0);
    assert_false(coil_future_done(coil_task_future(t)));
    coil_loop_unref(loop);
    assert_true(coil_future_cancelled(coil_task_future(t)));
    coil_task_unref(t);
    coil_task_unref(t2);
    /* The fds are the caller's: still open, still working. */
    assert_int_equal(send(sv[1], "z", 1, 0), 1);
    char c;
    assert_int_equal(recv(sv[0], &c, 1, 0), 1);
    close(sv[0]);
    close(sv[1]);
}

/* With poll, a plain close() while a task waits is noticed: -EBADF. */
static int close_behind(void *arg)
{
    struct simple *s = arg;
    coil_task_t *r = test_spawn(s->loop, recv_task, s);
    coil_yield();
    close(s->fd);
    s->r = coil_task_join(r);
    coil_task_unref(r);
    return 0;
}

static void test_poll_plain_close_ebadf(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct simple s = {.loop = loop, .fd = sv[0]};
    assert_int_equal(test_run_task(loop, close_behind, &s), 0);
    assert_int_equal(s.r, -EBADF);
    close(sv[1]);
}

/* ------------------------------------------------------------------ */
/* Arguments, -EPERM, pending cancellation                               */
/* ------------------------------------------------------------------ */

struct args {
    int r[40];
    int n;
    int fd, blocking;
};

#define REC(x) (a->r[a->n++] = (int)(x))

static int bad_args(void *arg)
{
    struct args *a = arg;
    char b[4];
    socklen_t len = sizeof(struct sockaddr_in);
    struct sockaddr_in sin = {0};
    size_t sent = 99;
    off_t neg = -1;
    REC(coil_sock_recv(-1, b, 4));                       /* EBADF */
    REC(coil_sock_recv(a->fd, NULL, 4));                 /* EINVAL */
    REC(coil_sock_recvfrom(a->fd, b, 4, NULL, &len));    /* EINVAL */
    REC(coil_sock_recvfrom(a->fd, b, 4, (struct sockaddr *)&sin, NULL));
    REC(coil_sock_send_all(-1, b, 4, &sent));            /* EBADF */
    REC(sent);                                           /* 0 */
    REC(coil_sock_send_all(a->fd, NULL, 4, NULL));       /* EINVAL */
    REC(coil_sock_send_all(a->fd, NULL, 0, NULL));       /* 0 */
    REC(coil_sock_sendto(-1, b, 4, NULL, 0));            /* EBADF */
    REC(coil_sock_sendto(a->fd, NULL, 4, NULL, 0));      /* EINVAL */
    REC(coil_sock_sendto(a->fd, b, 4, NULL, 4));         /* EINVAL */
    REC(coil_sock_sendto(a->fd, b, 4, (struct sockaddr *)&sin, 0));
    REC(coil_sock_accept(-1, NULL, NULL));               /* EBADF */
    REC(coil_sock_accept(a->fd, (struct sockaddr *)&sin, NULL));
    REC(coil_sock_accept(a->blocking, NULL, NULL));      /* EINVAL */
    REC(coil_sock_connect(-1, (struct sockaddr *)&sin, len));
    REC(coil_sock_connect(a->fd, NULL, len));            /* EINVAL */
    REC(coil_sock_connect(a->fd, (struct sockaddr *)&sin, 0));
    REC(coil_sock_connect(a->blocking, (struct sockaddr *)&sin, len));
    REC(coil_sock_sendfile(-1, 0, NULL, 1));             /* EBADF */
    REC(coil_sock_sendfile(a->fd, -1, NULL, 1));         /* EBADF */
    REC(coil_sock_sendfile(a->fd, 0, &neg, 1));          /* EINVAL */
    REC(coil_sock_sendfile(a->blocking, 0, NULL, 1));    /* EINVAL */
    struct addrinfo *res = (struct addrinfo *)1;
    REC(coil_getaddrinfo("localhost", "80", NULL, NULL)); /* EINVAL */
    REC(coil_getaddrinfo(NULL, NULL, NULL, &res));       /* EINVAL */
    REC(res == NULL);                                    /* 1 */
    REC(coil_sock_accept(1000000, NULL, NULL));          /* EBADF */
    REC(coil_sock_recv(1000000, b, 4));                  /* EBADF */
    /* A pending cancellation is delivered before anything is done. */
    coil_task_cancel(coil_current_task());
    REC(coil_sock_recv(a->fd, b, 4));                    /* ECANCELED */
    return 0;
}

static void test_bad_arguments(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int sv[2];
    test_socketpair(sv);
    struct args a = {.fd = sv[0]};
    a.blocking = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(test_run_task(loop, bad_args, &a), 0);
    const int want[] = {
        -EBADF, -EINVAL, -EINVAL, -EINVAL, -EBADF, 0, -EINVAL, 0,
        -EBADF, -EINVAL, -EINVAL, -EINVAL, -EBADF, -EINVAL, -EINVAL,
        -EBADF, -EINVAL, -EINVAL, -EINVAL, -EBADF, -EBADF, -EINVAL,
        -EINVAL, -EINVAL, -EINVAL, 1, -EBADF, -EBADF, -ECANCELED,
    };
    assert_int_equal(a.n, sizeof(want) / sizeof(*want));
    for (int i = 0; i < a.n; i++) {
        if (a.r[i] != want[i])
            fail_msg("call %d: got %d (%s), want %d", i, a.r[i],
                     coil_err_name(a.r[i]), want[i]);
    }
    close(a.blocking);
    coil_sock_close(sv[0]);
    coil_sock_close(sv[1]);
}

static void test_eperm_outside_task(void **state)
{
    (void)state;
    int sv[2];
    test_socketpair(sv);
    char b[4];
    size_t sent = 7;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct addrinfo *res = (struct addrinfo *)1;
    off_t off = 0;
    assert_int_equal(coil_sock_recv(sv[0], b, 4), -EPERM);
    assert_int_equal(coil_sock_recvfrom(sv[0], b, 4, NULL, NULL), -EPERM);
    assert_int_equal(coil_sock_send_all(sv[0], "x", 1, &sent), -EPERM);
    assert_int_equal(sent, 0);
    assert_int_equal(coil_sock_sendto(sv[0], "x", 1, NULL, 0), -EPERM);
    assert_int_equal(coil_sock_accept(sv[0], NULL, NULL), -EPERM);
    assert_int_equal(coil_sock_connect(sv[0], (struct sockaddr *)&sin,
                                       sizeof(sin)),
                     -EPERM);
    assert_int_equal(coil_sock_sendfile(sv[0], 0, &off, 1), -EPERM);
    assert_int_equal(coil_getaddrinfo("localhost", "80", NULL, &res), -EPERM);
    assert_null(res);
    /* Not suspending: these work anywhere. */
    int fd = coil_sock_open(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    assert_int_equal(coil_sock_close(fd), 0);
    assert_int_equal(coil_sock_open(12345, SOCK_STREAM, 0), -EAFNOSUPPORT);
    coil_freeaddrinfo(NULL);
    close(sv[0]);
    close(sv[1]);
}

/* ------------------------------------------------------------------ */
/* Allocation failure                                                   */
/* ------------------------------------------------------------------ */

struct oom {
    coil_loop_t *loop;
    int fd, peer;
    long nth;
    int r;
    bool failed;
};

static int oom_recv(void *arg)
{
    struct oom *o = arg;
    char b[4];
    test_alloc_fail_after(o->nth);
    /* The first wait on this fd number in this loop allocates. */
    o->r = (int)coil_sock_recv(o->fd, b, sizeof(b));
    o->failed = test_alloc_failed();
    test_alloc_fail_after(0);
    return 0;
}

static int oom_feeder(void *arg)
{
    struct oom *o = arg;
    coil_yield();
    send(o->peer, "ab", 2, 0);
    return 0;
}

static int oom_main(void *arg)
{
    struct oom *o = arg;
    coil_task_t *f = test_spawn(o->loop, oom_feeder, o);
    coil_task_t *r = test_spawn(o->loop, oom_recv, o);
    coil_task_join(r);
    coil_task_join(f);
    coil_task_unref(r);
    coil_task_unref(f);
    return 0;
}

static void test_wait_alloc_failure(void **state)
{
    test_exact_io(); /* one recv gets all that was sent */
    (void)state;
    int nth;
    for (nth = 1; nth < 50; nth++) {
        coil_loop_t *loop;
        assert_int_equal(coil_loop_new(&loop), 0);
        int sv[2];
        test_socketpair(sv);
        /* A number above the table's first size, so it must grow. */
        int hi = fcntl(sv[0], F_DUPFD_CLOEXEC, 200);
        assert_true(hi >= 200);
        struct oom o = {.loop = loop, .fd = hi, .peer = sv[1], .nth = nth};
        assert_int_equal(test_run_task(loop, oom_main, &o), 0);
        coil_loop_unref(loop);
        close(hi);
        close(sv[0]);
        close(sv[1]);
        if (!o.failed) {
            assert_int_equal(o.r, 2);
            break;
        }
        /* The failure was reported, or did not matter. */
        assert_true(o.r == -ENOMEM || o.r == 2);
    }
    assert_true(nth > 1);
}

static int oom_gai(void *arg)
{
    struct oom *o = arg;
    struct addrinfo *res = NULL;
    test_alloc_fail_after(o->nth);
    o->r = coil_getaddrinfo("localhost", "80", NULL, &res); /* a lookup */
    o->failed = test_alloc_failed();
    test_alloc_fail_after(0);
    coil_freeaddrinfo(res);
    return 0;
}

static void test_getaddrinfo_alloc_failure(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int nth;
    for (nth = 1; nth < 50; nth++) {
        struct oom o = {.loop = loop, .nth = nth};
        assert_int_equal(test_run_task(loop, oom_gai, &o), 0);
        if (!o.failed) {
            assert_int_equal(o.r, 0);
            break;
        }
        /* The helper's own allocation failing is retried: 0 then. */
        assert_true(o.r == -ENOMEM || o.r == 0);
    }
    assert_true(nth > 1);
}

/* ------------------------------------------------------------------ */

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_raw_close_and_reuse),
        TEST_FAKE(test_recv_zero),
        TEST(test_echo_4mib),
        TEST(test_echo_50_clients),
        TEST(test_accept_connect_ipv4),
        TEST(test_connect_refused),
        TEST(test_connect_eintr_not_reissued),
        TEST_FAKE(test_recv_timeout),
        TEST(test_accept_timeout),
        TEST(test_cancel_pending_calls),
        TEST(test_peer_reset),
        TEST(test_eof),
        TEST_NOLOOP(test_no_sigpipe),
        TEST(test_two_readers_ebusy),
        TEST(test_sock_close_wakes_waiter),
        TEST(test_reused_number_from_accept),
        TEST(test_injected_errors),
        TEST(test_udp_roundtrip),
        TEST(test_sendfile),
        TEST(test_getaddrinfo),
        TEST(test_getaddrinfo_numeric_inline),
        TEST(test_getaddrinfo_cancel),
        TEST(test_getnameinfo),
        TEST_NOLOOP(test_getaddrinfo_loop_closed),
        TEST_NOLOOP(test_loop_close_with_waiters),
        TEST(test_bad_arguments),
        TEST_NOLOOP(test_eperm_outside_task),
        TEST_NOLOOP(test_wait_alloc_failure),
        TEST(test_getaddrinfo_alloc_failure),
    };
    const struct CMUnitTest ipv6_tests[] = {
        TEST(test_accept_connect_ipv6),
        TEST(test_echo_ipv6),
    };
    const struct CMUnitTest emfile_tests[] = {
        TEST(test_accept_emfile),
    };
    const struct CMUnitTest epoll_tests[] = {
        TEST(test_registrations_per_wait),
    };
    const struct CMUnitTest poll_tests[] = {
        TEST(test_poll_plain_close_ebadf),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += TEST_RUN_IF_IPV6(ipv6_tests);
    failed += TEST_RUN_IF_NOFILE(emfile_tests);
    failed += TEST_RUN_IF(TEST_ON_EPOLL, "they count epoll_ctl calls",
                          epoll_tests);
    failed += TEST_RUN_IF(strcmp(test_backend(), "poll") == 0,
                          "only poll sees a plain close by itself",
                          poll_tests);
    return failed;
}
