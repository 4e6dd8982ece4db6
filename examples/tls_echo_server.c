/* SPDX-License-Identifier: MIT */
/*
 * tls_echo_server.c - echo_server over TLS: the same handler, the same
 * stream calls; only the server call differs (coil_tls_server_open),
 * and each connection's task makes the handshake before the handler
 * runs. Try it with `openssl s_client -connect 127.0.0.1:PORT`.
 *
 * Usage: tls_echo_server PORT CERT KEY   (PEM files; PORT 0: a free one)
 * Stop it with Ctrl-C.
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int echo(coil_stream_t *s, void *arg)
{
    (void)arg;
    /* As echo_server: a small buffer on the task's stack while messages
     * are small, one TLS record's worth on the heap while they are not. */
    enum { SMALL = 2048, BIG = 16 * 1024 };
    char small[SMALL];
    char *big = NULL;
    int err = 0;
    for (;;) {
        char *buf = big ? big : small;
        size_t cap = big ? BIG : SMALL;
        ssize_t n = coil_stream_read(s, buf, cap);
        if (n <= 0) {
            err = (int)n; /* 0: the peer's close_notify; else its error */
            break;
        }
        err = coil_stream_write(s, buf, (size_t)n);
        if (!err)
            err = coil_stream_drain(s);
        if (err)
            break;
        if (!big && (size_t)n == cap) {
            big = malloc(BIG); /* NULL: go on with the small one */
        } else if (big && (size_t)n <= SMALL) {
            free(big);
            big = NULL;
        }
    }
    free(big);
    return err;
}

struct args {
    const char *port, *cert, *key;
};

static int serve(void *arg)
{
    struct args *a = arg;
    coil_tls_context_t *ctx;
    int err = coil_tls_context_new(true, &ctx);
    if (!err)
        err = coil_tls_context_load_cert(ctx, a->cert, a->key);
    coil_server_t *srv = NULL;
    if (!err)
        err = coil_tls_server_open("127.0.0.1", a->port, ctx, echo, NULL,
                                   NULL, NULL, &srv);
    coil_tls_context_unref(ctx); /* the server holds its own */
    if (err) {
        fprintf(stderr, "tls_echo_server: %s%s%s\n", coil_strerror(err),
                coil_tls_last_error()[0] ? ": " : "", coil_tls_last_error());
        return err;
    }
    printf("tls_echo_server: listening on 127.0.0.1:%d\n",
           coil_server_port(srv));
    fflush(stdout);
    err = coil_server_serve_forever(srv);
    coil_server_unref(srv);
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tls_echo_server PORT CERT KEY\n");
        return 2;
    }
    struct args a = {argv[1], argv[2], argv[3]};
    return coil_run(serve, &a) < 0;
}
