/* SPDX-License-Identifier: MIT */
/*
 * server_libuv.h - the frame the libuv servers of the benchmarks share
 * (echo_server_libuv, http_server_libuv): the command line, a TCP server
 * on 127.0.0.1, accepting clients, and a clean stop on SIGINT or SIGTERM.
 *
 * A server's client record starts with its uv_tcp_t, whose data points
 * back at the record; server_uv_accept makes one and server_uv_close
 * closes and frees it. Write requests come with their bytes in blocks
 * recycled through a free list (server_uv_block_get/put), so a steady run
 * allocates nothing. On a signal every handle is closed, the loop ends
 * and is closed, and server_uv_run returns. SIGPIPE is ignored: libuv
 * writes with write(2), not send(MSG_NOSIGNAL), and a client that closes
 * with an answer still in flight must give EPIPE, not kill the server.
 */
#ifndef COIL_BENCH_SERVER_LIBUV_H
#define COIL_BENCH_SERVER_LIBUV_H

#include <sys/socket.h>
#include <uv.h>

#include "bench.h"

static uv_loop_t server_loop;

/* What a server's write block starts with: the request, and the link in
 * the free list. A server uses blocks of one size only. */
struct server_uv_block {
    uv_write_t req;
    struct server_uv_block *next;
};

#define SERVER_UV_FREE_MAX 256 /* blocks kept for reuse at most */

static struct server_uv_block *server_uv_free;
static int server_uv_nfree;

/* A block of size bytes: a recycled one, or a new one (NULL if out of
 * memory). */
static void *server_uv_block_get(size_t size)
{
    struct server_uv_block *b = server_uv_free;
    if (!b)
        return malloc(size);
    server_uv_free = b->next;
    server_uv_nfree--;
    return b;
}

/* Give back a block from server_uv_block_get. */
static void server_uv_block_put(void *block)
{
    struct server_uv_block *b = block;
    if (server_uv_nfree >= SERVER_UV_FREE_MAX) {
        free(b);
        return;
    }
    b->next = server_uv_free;
    server_uv_free = b;
    server_uv_nfree++;
}

static void server_uv_free_data(uv_handle_t *h)
{
    free(h->data); /* a client record; NULL for the server and signals */
}

/* Close handle h, if not closing already; its data is freed after. */
static void server_uv_close(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, server_uv_free_data);
}

/*
 * Accept the pending connection on srv into a new zeroed client record
 * of size bytes (a uv_tcp_t first), with TCP_NODELAY. Returns the
 * record's handle, or NULL (reported on stderr) if that failed.
 */
static uv_tcp_t *server_uv_accept(uv_stream_t *srv, int status, size_t size,
                                  const char *name)
{
    if (status < 0) {
        fprintf(stderr, "%s: listen: %s\n", name, uv_strerror(status));
        return NULL;
    }
    uv_tcp_t *tcp = calloc(1, size);
    if (!tcp) {
        fprintf(stderr, "%s: out of memory\n", name);
        return NULL;
    }
    uv_tcp_init(&server_loop, tcp);
    tcp->data = tcp;
    if (uv_accept(srv, (uv_stream_t *)tcp) != 0) {
        server_uv_close((uv_handle_t *)tcp);
        return NULL;
    }
    uv_tcp_nodelay(tcp, 1);
    return tcp;
}

static void server_uv_close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    server_uv_close(h);
}

static void server_uv_on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_walk(s->loop, server_uv_close_any, NULL);
}

/*
 * Serve "NAME PORT" (argc, argv) on 127.0.0.1:PORT with on_connection
 * as the listen callback: print a "listening" line, run the loop until
 * SIGINT or SIGTERM, close the loop and free the recycled blocks.
 */
static void server_uv_run(int argc, char **argv, const char *name, int backlog,
                          uv_connection_cb on_connection)
{
    int port = bench_port_arg(argc, argv, name);
    signal(SIGPIPE, SIG_IGN);

    static uv_tcp_t server;
    static uv_signal_t sig_int, sig_term;
    int err = uv_loop_init(&server_loop);
    if (err)
        bench_fail("uv_loop_init: %s", uv_strerror(err));
    uv_signal_init(&server_loop, &sig_int);
    uv_signal_init(&server_loop, &sig_term);
    sig_int.data = sig_term.data = NULL;
    uv_signal_start(&sig_int, server_uv_on_signal, SIGINT);
    uv_signal_start(&sig_term, server_uv_on_signal, SIGTERM);

    uv_tcp_init(&server_loop, &server);
    server.data = NULL;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    /* BENCH_REUSEPORT=1: a socket of our own with SO_REUSEPORT (libuv
     * 1.44 has no flag for it), so that several processes share the
     * port (bench/scale.sh). */
    const char *reuse = getenv("BENCH_REUSEPORT");
    if (reuse && strcmp(reuse, "1") == 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
            bind(fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0)
            bench_fail("SO_REUSEPORT socket on port %d", port);
        err = uv_tcp_open(&server, fd);
    } else {
        err = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    }
    if (!err)
        err = uv_listen((uv_stream_t *)&server, backlog, on_connection);
    if (err)
        bench_fail("listen on 127.0.0.1:%d: %s", port, uv_strerror(err));
    printf("%s: listening on 127.0.0.1:%d\n", name, port);
    fflush(stdout);

    uv_run(&server_loop, UV_RUN_DEFAULT);

    if (uv_loop_close(&server_loop) != 0)
        bench_fail("uv_loop_close: handles still open");
    while (server_uv_free) {
        struct server_uv_block *b = server_uv_free;
        server_uv_free = b->next;
        free(b);
    }
}

#endif /* COIL_BENCH_SERVER_LIBUV_H */
