/* SPDX-License-Identifier: MIT */
/*
 * echo_server_epoll - the reference echo server for the echo benchmarks:
 * what a plain, hand-written, single-threaded epoll loop does, the 100%
 * mark the other servers are measured against.
 *
 *   echo_server_epoll PORT
 *
 * Listens on 127.0.0.1:PORT only and sends back every byte it receives.
 * Level-triggered epoll, non-blocking sockets, TCP_NODELAY. Each
 * connection has one buffer: a read fills it, a write sends it back; when
 * the kernel takes only part of it, the rest waits in the buffer, the
 * connection stops reading (EPOLLIN off) and waits for EPOLLOUT, so a
 * client that does not read cannot make the server buffer without bound.
 * SIGINT and SIGTERM arrive through a signalfd in the same epoll set and
 * end the loop; every connection is closed and freed before exiting 0.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "bench.h"

#define BUF_SIZE (64u << 10)

struct conn {
    int fd;
    size_t off, len; /* buf[off..len) still to send */
    struct conn *prev, *next;
    unsigned char buf[BUF_SIZE];
};

static int epfd;
static struct conn *conns; /* every open connection, for the exit */

/* Markers for the two non-connection descriptors in the epoll set. */
static char listen_tag, signal_tag;

static void watch(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0)
        bench_fail("epoll_ctl: %s", strerror(errno));
}

static void conn_close(struct conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

/*
 * Send buf[off..len). Returns 1 when all is sent, 0 when the kernel is
 * full (the rest stays), -1 when the connection failed.
 */
static int flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off,
                         MSG_NOSIGNAL);
        if (n > 0)
            c->off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return -1;
    }
    c->off = c->len = 0;
    return 1;
}

/* Readable: read and echo until the socket is drained or the peer is full. */
static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf, BUF_SIZE, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) { /* end of stream or error */
            conn_close(c);
            return;
        }
        c->off = 0;
        c->len = (size_t)n;
        int r = flush(c);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0) { /* wait until the kernel takes the rest */
            watch(c, EPOLLOUT, EPOLL_CTL_MOD);
            return;
        }
        /* A short read means the socket is very likely empty: save the
         * recv that would only say EAGAIN (level-triggered, so anything
         * that arrives later is reported again). */
        if ((size_t)n < BUF_SIZE)
            return;
    }
}

static void on_writable(struct conn *c)
{
    int r = flush(c);
    if (r < 0)
        conn_close(c);
    else if (r > 0)
        watch(c, EPOLLIN, EPOLL_CTL_MOD);
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EMFILE and the like: report, keep serving the others. */
            fprintf(stderr, "echo_server_epoll: accept: %s\n",
                    strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = malloc(sizeof(*c));
        if (!c) {
            fprintf(stderr, "echo_server_epoll: out of memory\n");
            close(fd);
            continue;
        }
        c->fd = fd;
        c->off = c->len = 0;
        c->prev = NULL;
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        watch(c, EPOLLIN, EPOLL_CTL_ADD);
    }
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        bench_fail("bind 127.0.0.1:%d: %s", port, strerror(errno));
    if (listen(fd, SOMAXCONN) < 0)
        bench_fail("listen: %s", strerror(errno));
    return fd;
}

int main(int argc, char **argv)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: echo_server_epoll PORT\n");
        return 2;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
        bench_fail("sigprocmask: %s", strerror(errno));
    int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        bench_fail("signalfd: %s", strerror(errno));

    int lfd = listen_on((int)port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        bench_fail("epoll_create1: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
        bench_fail("epoll_ctl: %s", strerror(errno));
    ev.data.ptr = &signal_tag;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev) < 0)
        bench_fail("epoll_ctl: %s", strerror(errno));

    struct epoll_event evs[256];
    bool running = true;
    while (running) {
        int n = epoll_wait(epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bench_fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (p == &listen_tag) {
                on_accept(lfd);
            } else if (p == &signal_tag) {
                running = false;
            } else {
                /* A connection closed earlier in this batch cannot show
                 * up later in it: the kernel removed it from the set on
                 * close, and a batch holds one event per descriptor. */
                struct conn *c = p;
                if (c->off < c->len) /* waiting for EPOLLOUT (or error) */
                    on_writable(c);
                else if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    on_readable(c);
            }
        }
    }

    while (conns)
        conn_close(conns);
    close(lfd);
    close(sfd);
    close(epfd);
    return 0;
}
