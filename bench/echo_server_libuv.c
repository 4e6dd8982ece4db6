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
 * list (at most FREE_MAX kept), so a steady echo allocates nothing.
 *
 * Backpressure: when more than HIGH_WATER bytes wait in a connection's
 * write queue (the peer does not read), the server stops reading it
 * until the queue falls under half of that.
 *
 * SIGINT and SIGTERM (uv_signal_t) close every handle; the loop then ends
 * and is closed, and the program exits 0. SIGPIPE is ignored (libuv
 * writes with write(2), not send(MSG_NOSIGNAL)).
 */
#include <stddef.h>
#include <uv.h>

#include "bench.h"

#define BUF_SIZE (64u << 10)
#define FREE_MAX 256
#define HIGH_WATER (1u << 20)

struct block {
    uv_write_t req;
    struct block *next; /* in the free list */
    char data[BUF_SIZE];
};

struct client {
    uv_tcp_t tcp; /* first: the handle's address is the client's */
    int paused;   /* reading stopped for backpressure */
};

static uv_loop_t loop;
static uv_tcp_t server;
static uv_signal_t sig_int, sig_term;
static struct block *free_blocks;
static int nfree;

static struct block *block_of(char *data)
{
    return (struct block *)(data - offsetof(struct block, data));
}

static void block_put(struct block *b)
{
    if (nfree >= FREE_MAX) {
        free(b);
        return;
    }
    b->next = free_blocks;
    free_blocks = b;
    nfree++;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct block *b = free_blocks;
    if (b) {
        free_blocks = b->next;
        nfree--;
    } else {
        b = malloc(sizeof(*b));
    }
    if (!b) { /* libuv reports UV_ENOBUFS to the read callback */
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(b->data, BUF_SIZE);
}

static void on_close(uv_handle_t *h)
{
    free(h->data); /* the client; NULL for the server and signals */
}

static void close_client(struct client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct client *c = req->handle->data;
    block_put((struct block *)req);
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
            block_put(block_of(buf->base));
        if (nread < 0)
            close_client(c);
        return;
    }
    struct block *b = block_of(buf->base);
    uv_buf_t out = uv_buf_init(b->data, (unsigned)nread);
    int err = uv_write(&b->req, s, &out, 1, on_write);
    if (err) {
        block_put(b);
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
    if (status < 0) {
        fprintf(stderr, "echo_server_libuv: listen: %s\n",
                uv_strerror(status));
        return;
    }
    struct client *c = calloc(1, sizeof(*c));
    if (!c) {
        fprintf(stderr, "echo_server_libuv: out of memory\n");
        return;
    }
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        close_client(c);
}

static void close_any(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, on_close);
}

static void on_signal(uv_signal_t *s, int signum)
{
    uv_walk(&loop, close_any, NULL);
}

int main(int argc, char **argv)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 2 || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: echo_server_libuv PORT\n");
        return 2;
    }

    /* libuv writes with write(2): a peer that closes with an echo still
     * in flight must give EPIPE, not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    int err = uv_loop_init(&loop);
    if (err)
        bench_fail("uv_loop_init: %s", uv_strerror(err));
    uv_signal_init(&loop, &sig_int);
    uv_signal_init(&loop, &sig_term);
    sig_int.data = sig_term.data = NULL;
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);

    uv_tcp_init(&loop, &server);
    server.data = NULL;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", (int)port, &addr);
    err = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (!err)
        err = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
    if (err)
        bench_fail("listen on 127.0.0.1:%ld: %s", port, uv_strerror(err));

    uv_run(&loop, UV_RUN_DEFAULT);

    if (uv_loop_close(&loop) != 0)
        bench_fail("uv_loop_close: handles still open");
    while (free_blocks) {
        struct block *b = free_blocks;
        free_blocks = b->next;
        free(b);
    }
    return 0;
}
