/* SPDX-License-Identifier: MIT */
/*
 * http_server_libuv - the HTTP benchmark's server on libuv, for
 * comparison with http_server_epoll (the reference) and coil's
 * examples/http_hello.c.
 *
 *   http_server_libuv PORT
 *
 * Listens on 127.0.0.1:PORT only and answers every request with the same
 * bytes as http_hello (http_request.h has the responses and the parsing),
 * keeping connections alive; the structure is http_server_epoll's, in
 * libuv's terms.
 *
 * Each connection has an input buffer of one maximal request head, which
 * the allocation callback hands to libuv piece by piece (the part after
 * what is already there). After each read, every whole head is answered
 * in order; the answers are gathered in one block and sent with one
 * uv_write, so pipelined requests are handled, and what remains of a
 * partial head moves to the front. Blocks (a uv_write_t and its bytes)
 * are recycled through a free list, so a steady run allocates nothing.
 *
 * Backpressure: when more than HIGH_WATER bytes wait in the write queue
 * (the client does not read), the connection stops reading and answering
 * until the queue falls under half of that. An answer that ends the
 * connection (Connection: close, an error) stops reading; the connection
 * is closed once that answer has been written.
 *
 * SIGINT and SIGTERM close every handle; the loop then ends and is
 * closed, and the program exits 0 (server_libuv.h has the listening,
 * accepting and signal handling).
 */
#include <stdbool.h>

#include "http_request.h"
#include "server_libuv.h"

#define OUT_SIZE (16u << 10)
#define HIGH_WATER (64u << 10)

struct block {
    struct server_uv_block base; /* first: the write request */
    size_t len;                  /* bytes in data[] */
    bool last;                   /* ends with a closing answer */
    char data[OUT_SIZE];
};

struct client {
    uv_tcp_t tcp;  /* first: the handle's address is the client's */
    bool paused;   /* reading stopped for backpressure */
    bool last;     /* a closing answer is written: read no more */
    size_t in_len; /* bytes in in[] */
    char in[HTTP_MAX_HEAD];
};

static void close_client(struct client *c)
{
    server_uv_close((uv_handle_t *)&c->tcp);
}

/* The free part of the input buffer (never empty while reading: a full
 * input always holds a whole request or is answered 431). */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct client *c = h->data;
    *buf =
        uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_write(uv_write_t *req, int status);

/*
 * Answer the whole requests in the input, in order: gather answers in a
 * block while it has room for another (each is shorter than OUT_SIZE / 2),
 * send it with one uv_write, go on with the next block. Stops when no
 * whole request is left, after a closing answer (reading stops for good),
 * or when the write queue passes HIGH_WATER (reading stops until on_write
 * resumes it: paused).
 */
static void answer_requests(struct client *c)
{
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    size_t off = 0, used;
    struct http_answer a;
    while (!c->last && !c->paused) {
        struct block *b = NULL;
        while (!c->last && (!b || b->len + OUT_SIZE / 2 <= OUT_SIZE) &&
               http_next_request(c->in + off, c->in_len - off, &used, &a)) {
            if (!b) {
                if (!(b = server_uv_block_get(sizeof(*b)))) {
                    close_client(c);
                    return;
                }
                b->len = 0;
            }
            memcpy(b->data + b->len, a.data, a.len);
            b->len += a.len;
            b->last = c->last = a.close; /* then the loop ends */
            off += used;
        }
        if (!b)
            break; /* no whole request left */
        uv_buf_t out = uv_buf_init(b->data, (unsigned)b->len);
        if (uv_write(&b->base.req, s, &out, 1, on_write) != 0) {
            server_uv_block_put(b);
            close_client(c);
            return;
        }
        if (uv_stream_get_write_queue_size(s) > HIGH_WATER) {
            uv_read_stop(s);
            c->paused = true;
        }
    }
    if (c->last) {
        uv_read_stop(s);
        c->in_len = 0; /* nothing after a closing answer is read */
    } else if (off > 0) {
        c->in_len -= off;
        memmove(c->in, c->in + off, c->in_len);
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct block *b = (struct block *)req;
    struct client *c = req->handle->data;
    bool closing_answer = b->last;
    server_uv_block_put(b);
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (status < 0 || closing_answer) {
        close_client(c); /* failed, or the closing answer is out */
        return;
    }
    if (c->paused &&
        uv_stream_get_write_queue_size(req->handle) <= HIGH_WATER / 2) {
        c->paused = false;
        /* Answer what arrived before the pause, then read again. */
        answer_requests(c);
        if (!c->paused && !c->last && !uv_is_closing((uv_handle_t *)&c->tcp) &&
            uv_read_start(req->handle, on_alloc, on_read) != 0)
            close_client(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = s->data;
    if (nread < 0) { /* end of stream or error */
        close_client(c);
        return;
    }
    c->in_len += (size_t)nread; /* 0: nothing read (EAGAIN) */
    answer_requests(c);
}

static void on_connection(uv_stream_t *srv, int status)
{
    uv_tcp_t *tcp = server_uv_accept(srv, status, sizeof(struct client),
                                     "http_server_libuv");
    if (tcp && uv_read_start((uv_stream_t *)tcp, on_alloc, on_read) != 0)
        close_client(tcp->data);
}

int main(int argc, char **argv)
{
    /* http_hello's backlog */
    server_uv_run(argc, argv, "http_server_libuv", 1024, on_connection);
    return 0;
}
