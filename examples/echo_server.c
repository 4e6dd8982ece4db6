/* SPDX-License-Identifier: MIT */
/*
 * echo_server.c - a TCP echo server: every connection gets a task of its
 * own that reads and writes back until the peer closes. The code reads
 * like blocking code; each read and drain suspends only its own task.
 *
 * Usage: echo_server PORT [HOST]   (HOST defaults to 127.0.0.1)
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
    /* Memory while idle is what a server with many connections pays for:
     * a connection waiting to read keeps only its task's touched stack
     * (one page) and a small buffer on it. A read that fills the small
     * buffer says big messages are coming: they go through 64 KiB on the
     * heap, given back when a read brings a small one again. */
    enum { SMALL = 2048, BIG = 64 * 1024 };
    char small[SMALL];
    char *big = NULL;
    int err = 0;
    for (;;) {
        char *buf = big ? big : small;
        size_t cap = big ? BIG : SMALL;
        ssize_t n = coil_stream_read(s, buf, cap);
        if (n <= 0) {
            err = (int)n; /* 0: the peer closed; else its error */
            break;
        }
        err = coil_stream_write(s, buf, (size_t)n);
        if (!err)
            err = coil_stream_drain(s); /* backpressure: wait if behind */
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
    const char *host, *port;
};

static int serve(void *arg)
{
    struct args *a = arg;
    coil_server_t *srv;
    int err = coil_server_open(a->host, a->port, echo, NULL, NULL, &srv);
    if (err) {
        fprintf(stderr, "echo_server: %s:%s: %s\n", a->host, a->port,
                coil_strerror(err));
        return err;
    }
    printf("echo_server: listening on %s:%d\n", a->host, coil_server_port(srv));
    fflush(stdout);
    err = coil_server_serve_forever(srv);
    coil_server_unref(srv);
    return err;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr, "usage: echo_server PORT [HOST]\n");
        return 2;
    }
    struct args a = {argc == 3 ? argv[2] : "127.0.0.1", argv[1]};
    return coil_run(serve, &a) < 0;
}
