/* SPDX-License-Identifier: MIT */
/*
 * tls_echo_server_epoll - the reference server of the TLS echo benchmark:
 * echo_server_epoll with OpenSSL written the obvious way, the 100% mark
 * coil's examples/tls_echo_server is measured against.
 *
 *   tls_echo_server_epoll PORT CERT KEY     (PEM files)
 *
 * Listens on 127.0.0.1:PORT only (server_epoll.h's frame: level-triggered
 * epoll, non-blocking sockets, TCP_NODELAY, SIGINT and SIGTERM end it).
 * Each connection has one SSL on its socket (SSL_set_fd) and one 16 KiB
 * buffer, a TLS record's worth of plaintext, as coil's example reads:
 * SSL_accept until the handshake is done, then SSL_read into the buffer
 * and SSL_write it back, until SSL_read wants more from the socket. An
 * SSL_ERROR_WANT_READ or WANT_WRITE waits for the socket to be readable
 * or writable (EPOLLIN or EPOLLOUT, one of them at a time) and then makes
 * the same call again; a write OpenSSL could not finish keeps the buffer,
 * and no more is read until it is done, so a client that does not read
 * cannot make the server buffer without bound.
 *
 * The TLS settings are those of coil_tls_context_new for a server:
 * OpenSSL's defaults, TLS 1.2 at least, no renegotiation; so both servers
 * agree on TLS 1.3 and the same cipher with the same client.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "server_epoll.h"

#define BUF_SIZE (16u << 10)

struct conn {
    struct server_conn base; /* first: a struct conn * is one */
    SSL *ssl;
    bool ready;      /* handshake done */
    uint32_t events; /* what the socket is watched for */
    size_t len;      /* buf[0..len) read and not yet written */
    unsigned char buf[BUF_SIZE];
};

static SSL_CTX *ctx;

static void watch(struct conn *c, uint32_t events)
{
    if (c->events != events) {
        server_watch(&c->base, events, EPOLL_CTL_MOD);
        c->events = events;
    }
}

static void end(struct conn *c)
{
    /* One connection's failure must not stay in the thread's error queue,
     * where SSL_get_error would find it for the next connection. */
    ERR_clear_error();
    server_conn_close(&c->base);
}

/*
 * An SSL call returned r <= 0: wait for what it wants, or end the
 * connection: the peer's close_notify is answered with ours, any other
 * outcome (an error, the peer gone without close_notify) just closes.
 */
static void wait_or_end(struct conn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        watch(c, EPOLLIN);
        return;
    case SSL_ERROR_WANT_WRITE:
        watch(c, EPOLLOUT);
        return;
    case SSL_ERROR_ZERO_RETURN:
        SSL_shutdown(c->ssl); /* best effort: we close either way */
        break;
    default:
        break;
    }
    end(c);
}

/* Write buf[0..len) back. False if it has to wait (or the connection
 * ended). Without SSL_MODE_ENABLE_PARTIAL_WRITE SSL_write writes all or
 * nothing, and a retry must pass the same buffer and length: it does. */
static bool flush(struct conn *c)
{
    int r = SSL_write(c->ssl, c->buf, (int)c->len);
    if (r <= 0) {
        wait_or_end(c, r);
        return false;
    }
    c->len = 0;
    return true;
}

static void on_ready(struct server_conn *base, uint32_t events)
{
    (void)events; /* every call is retried whatever woke it */
    struct conn *c = (struct conn *)base;
    if (!c->ready) {
        int r = SSL_accept(c->ssl);
        if (r != 1) {
            wait_or_end(c, r);
            return;
        }
        c->ready = true;
    }
    if (c->len && !flush(c))
        return;
    for (;;) {
        int n = SSL_read(c->ssl, c->buf, BUF_SIZE);
        if (n <= 0) {
            wait_or_end(c, n);
            return;
        }
        c->len = (size_t)n;
        if (!flush(c))
            return;
    }
}

static struct server_conn *new_conn(int fd)
{
    struct conn *c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    c->ssl = SSL_new(ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
        SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        return NULL;
    }
    c->ready = false;
    c->events = EPOLLIN; /* as the frame registers it */
    c->len = 0;
    return &c->base;
}

static void free_ssl(struct server_conn *base)
{
    SSL_free(((struct conn *)base)->ssl); /* leaves the socket open */
}

int main(int argc, char **argv)
{
    char *end;
    long port = argc == 4 ? strtol(argv[1], &end, 10) : -1;
    if (argc != 4 || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: tls_echo_server_epoll PORT CERT KEY\n");
        return 2;
    }
    /* The socket BIO writes with write(), not send(MSG_NOSIGNAL): a peer
     * gone mid-echo must be an error, not a SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        bench_fail("SSL_CTX_new failed");
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_print_errors_fp(stderr);
        bench_fail("cannot load the certificate %s and key %s", argv[2],
                   argv[3]);
    }
    server_on_close = free_ssl;
    server_epoll_serve((int)port, "tls_echo_server_epoll", SOMAXCONN, new_conn,
                       on_ready);
    SSL_CTX_free(ctx);
    return 0;
}
