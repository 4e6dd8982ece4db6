/* SPDX-License-Identifier: MIT */
/*
 * tls_fetch.c - an https-style fetch: a small TLS server on a free port
 * of 127.0.0.1 answers one HTTP/1.1 request, and a client fetches it over
 * TLS, verifying the server's certificate and its name, as a browser
 * would. Both run as tasks of one loop; each reads like blocking code.
 *
 * Usage: tls_fetch CERT KEY
 *   CERT: the server's certificate (PEM), which the client also trusts
 *   (a self-signed one for "localhost": make one with
 *     openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
 *       -nodes -days 1 -subj /CN=localhost \
 *       -addext subjectAltName=DNS:localhost -keyout key.pem -out cert.pem)
 *   KEY: its private key (PEM).
 */
#include <coil.h>

#include <stdio.h>
#include <string.h>

static const char body[] = "hello over TLS\n";

/* The server's side of one connection: read the request's head, answer. */
static int serve(coil_stream_t *s, void *arg)
{
    (void)arg;
    char line[1024];
    size_t len;
    int err;
    do /* the request line and the headers, up to the blank line */
        err = coil_stream_readline(s, line, sizeof(line), &len);
    while (!err && !(len <= 2 && (line[0] == '\n' || line[0] == '\r')));
    if (err)
        return err;
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     sizeof(body) - 1);
    if (!(err = coil_stream_write(s, head, (size_t)n)) &&
        !(err = coil_stream_write(s, body, sizeof(body) - 1)))
        err = coil_stream_drain(s);
    return err; /* the stream is closed after: close_notify, then FIN */
}

struct args {
    const char *cert, *key;
};

static int fetch(void *arg)
{
    struct args *a = arg;
    coil_tls_context_t *sctx = NULL, *cctx = NULL;
    coil_server_t *srv = NULL;
    coil_stream_t *s = NULL;
    int err = coil_tls_context_new(true, &sctx);
    if (!err)
        err = coil_tls_context_load_cert(sctx, a->cert, a->key);
    if (!err)
        err = coil_tls_server_open("127.0.0.1", "0", sctx, serve, NULL, NULL,
                                   NULL, &srv);
    /* The client: verification and the name check are on by default;
     * it trusts the server's certificate instead of the system's. */
    if (!err && !(err = coil_tls_context_new(false, &cctx)))
        err = coil_tls_context_load_ca(cctx, a->cert);
    char port[16];
    snprintf(port, sizeof(port), "%d", srv ? coil_server_port(srv) : 0);
    if (!err)
        err = coil_tls_open("localhost", port, cctx, NULL, &s);
    static const char request[] =
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    char reply[1024];
    size_t len = 0;
    if (!err && !(err = coil_stream_write(s, request, sizeof(request) - 1)))
        err = coil_stream_read_all(s, reply, sizeof(reply) - 1, &len);
    if (!err) {
        reply[len] = '\0';
        char *first_end = strstr(reply, "\r\n");
        char *payload = strstr(reply, "\r\n\r\n");
        printf("%.*s (%s)\n", first_end ? (int)(first_end - reply) : 0,
               reply, coil_tls_version(s));
        printf("%s", payload ? payload + 4 : "");
    } else {
        fprintf(stderr, "tls_fetch: %s%s%s\n", coil_err_name(err),
                coil_tls_last_error()[0] ? ": " : "",
                coil_tls_last_error());
    }
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    coil_tls_context_unref(sctx);
    if (srv) {
        coil_server_close(srv);
        (void)coil_server_wait_closed(srv);
        coil_server_unref(srv);
    }
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: tls_fetch CERT KEY\n");
        return 2;
    }
    if (!coil_tls_available()) {
        fprintf(stderr, "tls_fetch: this coil was built without TLS\n");
        return 1;
    }
    struct args a = {argv[1], argv[2]};
    return coil_run(fetch, &a) == 0 ? 0 : 1;
}
