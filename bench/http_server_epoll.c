/* SPDX-License-Identifier: MIT */
/*
 * http_server_epoll - the reference server of the HTTP benchmark: the
 * "Hello, World!" of examples/http_hello.c written as a plain,
 * single-threaded epoll loop, the 100% mark for coil's and libuv's.
 *
 *   http_server_epoll PORT
 *
 * Listens on 127.0.0.1:PORT only and answers every request with the same
 * bytes as http_hello (http_request.h has the responses and the parsing),
 * keeping connections alive. Level-triggered epoll, non-blocking sockets,
 * TCP_NODELAY.
 *
 * Each connection has an input buffer of one maximal request head and an
 * output buffer. A read appends to the input; every whole head in it
 * (ending in "\r\n\r\n") is answered in order, the answers gathered in
 * the output and sent with one send, so pipelined requests are handled;
 * what remains of a partial head moves to the front to wait for more.
 * When the kernel takes only part of the output, the connection stops
 * reading (EPOLLIN off) and waits for EPOLLOUT, and no more requests are
 * answered until the output has gone: a client that does not read cannot
 * make the server buffer without bound. An answer that ends the
 * connection (Connection: close, an error) is sent, then the connection
 * is closed and anything after that request is dropped.
 *
 * SIGINT and SIGTERM end the loop; every connection is closed and freed
 * before exiting 0 (server_epoll.h has the loop, the listening socket and
 * the signal handling).
 */
#include "http_request.h"
#include "server_epoll.h"

#define OUT_SIZE (16u << 10)

struct conn {
    struct server_conn base; /* first: a struct conn * is one */
    bool want_out;           /* waiting for EPOLLOUT, reading stopped */
    bool last;               /* the output ends with a closing answer */
    size_t in_len;           /* bytes in in[] */
    size_t out_off;          /* out[out_off..out_len) still to send */
    size_t out_len;
    char in[HTTP_MAX_HEAD];
    char out[OUT_SIZE];
};

/*
 * Answer the whole requests in the input, in order, into the output,
 * while the output has room for another answer (every answer is shorter
 * than OUT_SIZE / 2). Returns true if requests are left for later.
 */
static bool answer_requests(struct conn *c)
{
    size_t off = 0, used;
    struct http_answer a;
    bool left = false;
    while (!c->last &&
           http_next_request(c->in + off, c->in_len - off, &used, &a)) {
        if (c->out_len + a.len > OUT_SIZE) {
            left = true;
            break;
        }
        memcpy(c->out + c->out_len, a.data, a.len);
        c->out_len += a.len;
        c->last = a.close;
        off += used;
    }
    if (c->last) {
        c->in_len = 0; /* nothing after a closing answer is read */
    } else if (off > 0) {
        c->in_len -= off;
        memmove(c->in, c->in + off, c->in_len);
    }
    return left;
}

/* Send out[out_off..out_len); see server_send. Empties the output when
 * done. */
static int flush(struct conn *c)
{
    int r = server_send(c->base.fd, c->out, &c->out_off, c->out_len);
    if (r > 0)
        c->out_off = c->out_len = 0;
    return r;
}

/*
 * Answer what the input holds and send it, until no whole request is
 * left or the kernel takes no more; then wait for whichever of EPOLLIN
 * and EPOLLOUT applies. Closes the connection after a closing answer or
 * on an error.
 */
static void serve(struct conn *c)
{
    for (;;) {
        bool left = answer_requests(c);
        int r = flush(c);
        if (r < 0 || (r > 0 && c->last)) {
            server_conn_close(&c->base);
            return;
        }
        if (r == 0) {
            if (!c->want_out)
                server_watch(&c->base, EPOLLOUT, EPOLL_CTL_MOD);
            c->want_out = true;
            return;
        }
        if (!left)
            break;
    }
    if (c->want_out)
        server_watch(&c->base, EPOLLIN, EPOLL_CTL_MOD);
    c->want_out = false;
}

/* Readable: append to the input (never full here: a full input always
 * holds a whole request or is answered 431) and serve it. */
static void on_readable(struct conn *c)
{
    ssize_t n;
    do
        n = recv(c->base.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) { /* end of stream or error */
        server_conn_close(&c->base);
        return;
    }
    c->in_len += (size_t)n;
    serve(c);
}

static void on_ready(struct server_conn *base, uint32_t events)
{
    /* An error or hang-up shows as the send or recv failing. */
    (void)events;
    struct conn *c = (struct conn *)base;
    if (c->want_out)
        serve(c);
    else
        on_readable(c);
}

static struct server_conn *new_conn(int fd)
{
    (void)fd;
    struct conn *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    c->want_out = c->last = false;
    c->in_len = c->out_off = c->out_len = 0;
    return &c->base;
}

int main(int argc, char **argv)
{
    /* http_hello's backlog */
    server_epoll_run(argc, argv, "http_server_epoll", 1024, new_conn, on_ready);
    return 0;
}
