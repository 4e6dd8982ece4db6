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
 * SIGINT and SIGTERM end the loop; every connection is closed and freed
 * before exiting 0 (server_epoll.h has the loop, the listening socket and
 * the signal handling).
 */
#include "server_epoll.h"

#define BUF_SIZE (64u << 10)

struct conn {
    struct server_conn base; /* first: a struct conn * is one */
    size_t off, len;         /* buf[off..len) still to send */
    unsigned char buf[BUF_SIZE];
};

/* Send buf[off..len); see server_send. Empties the buffer when done. */
static int flush(struct conn *c)
{
    int r = server_send(c->base.fd, c->buf, &c->off, c->len);
    if (r > 0)
        c->off = c->len = 0;
    return r;
}

/* Readable: read and echo until the socket is drained or the peer is full. */
static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->base.fd, c->buf, BUF_SIZE, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) { /* end of stream or error */
            server_conn_close(&c->base);
            return;
        }
        c->off = 0;
        c->len = (size_t)n;
        int r = flush(c);
        if (r < 0) {
            server_conn_close(&c->base);
            return;
        }
        if (r == 0) { /* wait until the kernel takes the rest */
            server_watch(&c->base, EPOLLOUT, EPOLL_CTL_MOD);
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
        server_conn_close(&c->base);
    else if (r > 0)
        server_watch(&c->base, EPOLLIN, EPOLL_CTL_MOD);
}

static void on_ready(struct server_conn *base, uint32_t events)
{
    struct conn *c = (struct conn *)base;
    if (c->off < c->len) /* waiting for EPOLLOUT (or error) */
        on_writable(c);
    else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
}

static struct server_conn *new_conn(int fd)
{
    (void)fd;
    struct conn *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    c->off = c->len = 0;
    return &c->base;
}

int main(int argc, char **argv)
{
    server_epoll_run(argc, argv, "echo_server_epoll", SOMAXCONN, new_conn,
                     on_ready);
    return 0;
}
