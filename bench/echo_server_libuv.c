/* SPDX-License-Identifier: MIT */
/*
 * echo_server_libuv - the echo benchmark's server on libuv, for
 * comparison with echo_server_epoll (the reference) and coil's server.
 *
 *   echo_server_libuv PORT
 *
 * Listens on 127.0.0.1:PORT only and sends back every byte it receives,
 * the usual libuv way: uv_read_start with an allocation callback, and one
 * uv_write per read that sends the very buffer the read filled.
 *
 * Buffer lifetime: a buffer belongs to a block that also holds its
 * uv_write_t. alloc_cb hands out a block's buffer; the read callback
 * either writes it (the block then lives until the write callback) or,
 * on an empty read or an error, gives it back at once. The write callback
 * gives it back whatever its status, including UV_ECANCELED when the
 * connection closes with writes queued. Given-back blocks go to a free
 * list (server_libuv.h), so a steady echo allocates nothing.
 *
 * Backpressure: when more than HIGH_WATER bytes wait in a connection's
 * write queue (the peer does not read), the server stops reading it
 * until the queue falls under half of that.
 *
 * SIGINT and SIGTERM close every handle; the loop then ends and is
 * closed, and the program exits 0 (server_libuv.h has the listening,
 * accepting and signal handling).
 */
#include <stddef.h>

#include "server_libuv.h"

#define BUF_SIZE (64u << 10)
#define HIGH_WATER (1u << 20)

struct block {
    struct server_uv_block base; /* first: the write request */
    char data[BUF_SIZE];
};

struct client {
    uv_tcp_t tcp; /* first: the handle's address is the client's */
    int paused;   /* reading stopped for backpressure */
};

static struct block *block_of(char *data)
{
    return (struct block *)(data - offsetof(struct block, data));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct block *b = server_uv_block_get(sizeof(*b));
    if (!b) { /* libuv reports UV_ENOBUFS to the read callback */
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(b->data, BUF_SIZE);
}

static void close_client(struct client *c)
{
    server_uv_close((uv_handle_t *)&c->tcp);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct client *c = req->handle->data;
    server_uv_block_put((struct block *)req);
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (status < 0) {
        close_client(c);
        return;
    }
    if (c->paused &&
        uv_stream_get_write_queue_size(req->handle) <= HIGH_WATER / 2) {
        c->paused = 0;
        int err = uv_read_start(req->handle, on_alloc, on_read);
        if (err)
            close_client(c);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = s->data;
    if (nread <= 0) { /* 0: nothing read (EAGAIN); < 0: EOF or error */
        if (buf->base)
            server_uv_block_put(block_of(buf->base));
        if (nread < 0)
            close_client(c);
        return;
    }
    struct block *b = block_of(buf->base);
    uv_buf_t out = uv_buf_init(b->data, (unsigned)nread);
    int err = uv_write(&b->base.req, s, &out, 1, on_write);
    if (err) {
        server_uv_block_put(b);
        close_client(c);
        return;
    }
    if (uv_stream_get_write_queue_size(s) > HIGH_WATER) {
        uv_read_stop(s);
        c->paused = 1;
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    uv_tcp_t *tcp = server_uv_accept(srv, status, sizeof(struct client),
                                     "echo_server_libuv");
    if (tcp && uv_read_start((uv_stream_t *)tcp, on_alloc, on_read) != 0)
        close_client(tcp->data);
}

int main(int argc, char **argv)
{
    server_uv_run(argc, argv, "echo_server_libuv", SOMAXCONN, on_connection);
    return 0;
}
