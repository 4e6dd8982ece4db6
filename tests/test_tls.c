/* SPDX-License-Identifier: MIT */
/*
 * test_tls.c - TLS streams (coil/tls.h), coil to coil over TCP loopback,
 * every run through the testing kit's fixture (nothing may be left):
 *
 *  - echo integrity, large and tiny writes both ways, ALPN agreed, the
 *    version; a graceful close is the peer's end of stream (close_notify)
 *    and an abort is not taken for one (-ECONNABORTED / -ECONNRESET);
 *  - verification: an unknown authority, a wrong host name, an expired
 *    certificate, a self-signed one, each -EKEYREJECTED with the reason
 *    said;
 *  - the handshake's limit against a peer that never answers, and a
 *    cancel during the handshake;
 *  - start_tls over a plain conversation, with the client's first TLS
 *    bytes already in the server's plain buffer;
 *  - peers coil did not write: coil's client against `openssl s_server
 *    -rev`, `openssl s_client` against coil's server (skipped, and said
 *    so, where the openssl command is missing; CI installs it);
 *  - argument checks; and, in a build without OpenSSL, -ENOTSUP.
 *
 * The certificates are made at run time (tls_helpers.c): no key is ever
 * committed. Faults and odd peers (key updates, renegotiation, resets in
 * the handshake, the error queue, cancels, the options) are in
 * test_tls_faults.c.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coil/testing.h"
#include "coil/tls.h"
#include "helpers.h"
#include "tls_helpers.h"

#ifndef COIL_HAVE_OPENSSL

static void test_not_built(void **state)
{
    (void)state;
    assert_false(coil_tls_available());
    coil_tls_context_t *ctx = (void *)1;
    assert_int_equal(coil_tls_context_new(false, &ctx), -ENOTSUP);
    assert_null(ctx);
    assert_non_null(strstr(coil_tls_last_error(), "no TLS"));
    assert_null(coil_tls_alpn(NULL));
    coil_server_t *srv = (void *)1;
    assert_int_equal(coil_tls_server_open("127.0.0.1", "0", NULL, NULL, NULL,
                                          NULL, NULL, &srv),
                     -ENOTSUP);
    assert_null(srv);
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_not_built),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

/* ------------------------------------------------------------------ */
/* A TLS echo server (start_tls in the handler)                         */
/* ------------------------------------------------------------------ */

struct server {
    coil_tls_context_t *ctx;
    coil_server_t *srv;
    char port[16];
    bool silent;      /* accept, then say nothing (a slowloris's peer) */
    bool abort_after; /* echo one line, then abort */
    int handshake;    /* the last connection's handshake outcome */
    int end;          /* its last read: 0 after close_notify */
    char alpn[32];
};

static int echo_handler(coil_stream_t *plain, void *arg)
{
    struct server *sv = arg;
    if (sv->silent)
        return coil_sleep(3600 * COIL_SEC);
    coil_stream_t *s;
    sv->handshake = coil_tls_start(plain, sv->ctx, true, NULL, &s);
    if (sv->handshake)
        return 0; /* said through sv: the client checks what it saw */
    const char *alpn = coil_tls_alpn(s);
    snprintf(sv->alpn, sizeof(sv->alpn), "%s", alpn ? alpn : "");
    char buf[8192];
    int err = 0;
    for (;;) {
        ssize_t n = coil_stream_read(s, buf, sizeof(buf));
        if (n <= 0) {
            err = sv->end = (int)n;
            break;
        }
        if ((err = coil_stream_write(s, buf, (size_t)n)) != 0 ||
            (err = coil_stream_drain(s)) != 0)
            break;
        if (sv->abort_after) {
            coil_stream_abort(s);
            break;
        }
    }
    coil_stream_unref(s);
    return err == -ECONNABORTED ? 0 : err;
}

static int server_open(struct server *sv, const char *cert)
{
    int err = coil_tls_context_new(true, &sv->ctx);
    if (!err)
        err = coil_tls_context_load_cert(sv->ctx, cert, key_pem);
    if (!err)
        err = plain_server(echo_handler, sv, &sv->srv, sv->port);
    return err;
}

static int server_close(struct server *sv)
{
    int err = end_server(sv->srv, 0);
    coil_tls_context_unref(sv->ctx);
    return err;
}

/* ------------------------------------------------------------------ */
/* Echo                                                                 */
/* ------------------------------------------------------------------ */

#define BULK (300 * 1024)

struct echo {
    struct server sv;
    char alpn[32];
    char version[16];
    size_t got;
    bool same;
    int after_close;
};

static int echo_body(void *arg)
{
    struct echo *e = arg;
    int err = server_open(&e->sv, cert_pem);
    static const char *const server_protos[] = {"http/1.1", "x-coil"};
    static const char *const client_protos[] = {"h2", "http/1.1"};
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *s = NULL;
    if (!err)
        err = coil_tls_context_set_alpn(e->sv.ctx, server_protos, 2);
    if (!err && !(err = client_ctx(ca_pem, &cctx)))
        err = coil_tls_context_set_alpn(cctx, client_protos, 2);
    if (!err)
        err = coil_tls_open("localhost", e->sv.port, cctx, NULL, &s);
    if (!err) {
        snprintf(e->alpn, sizeof(e->alpn), "%s",
                 coil_tls_alpn(s) ? coil_tls_alpn(s) : "");
        snprintf(e->version, sizeof(e->version), "%s",
                 coil_tls_version(s) ? coil_tls_version(s) : "");
    }
    /* Writes of every size, each followed by reading its echo. */
    unsigned char *buf = malloc(BULK), *back = malloc(BULK);
    e->same = true;
    size_t off = 0;
    unsigned rnd = 7;
    while (!err && buf && back && off < BULK) {
        rnd = rnd * 1103515245u + 12345u;
        size_t n = (rnd >> 8) % 4 == 0 ? 1 : 1 + (rnd >> 12) % 40000;
        if (n > BULK - off)
            n = BULK - off;
        for (size_t i = 0; i < n; i++)
            buf[off + i] = (unsigned char)((off + i) * 31 + 7);
        if (!(err = coil_stream_write(s, buf + off, n)) &&
            !(err = coil_stream_read_exactly(s, back + off, n, NULL)))
            e->same &= memcmp(buf + off, back + off, n) == 0;
        off += n;
    }
    e->got = off;
    free(buf);
    free(back);
    /* Closing: the server sees the end (close_notify) and ends too. */
    if (s) {
        coil_stream_close(s);
        e->after_close = coil_stream_wait_closed(s);
        coil_stream_unref(s);
    }
    coil_tls_context_unref(cctx);
    int e2 = server_close(&e->sv);
    return err ? err : e2;
}

static void test_echo(void **state)
{
    (void)state;
    struct echo e = {.sv.end = 1};
    run_ok(echo_body, &e);
    assert_int_equal(e.sv.end, 0); /* the client's close_notify */
    assert_int_equal(e.got, BULK);
    assert_true(e.same);
    assert_string_equal(e.alpn, "http/1.1");
    assert_string_equal(e.sv.alpn, "http/1.1");
    assert_string_equal(e.version, "TLSv1.3");
    assert_int_equal(e.after_close, 0);
}

/* Backpressure and the closing goodbye: 2 MiB written in 64 KiB pieces
 * with drain, to a server reading 1 KiB at a time and resting now and
 * then: the transport's records pile up to its limit, the writer waits,
 * the client closes while much is still on its way, and every byte
 * arrives, in order, before the end (close_notify). */
#define FLOOD (2 * 1024 * 1024)

struct flood {
    size_t got;
    bool same;
    int end;
};

static int flood_handler(coil_stream_t *s, void *arg)
{
    struct flood *f = arg;
    unsigned char buf[1024];
    f->same = true;
    for (;;) {
        ssize_t n = coil_stream_read(s, buf, sizeof(buf));
        if (n <= 0) {
            f->end = (int)n;
            return 0;
        }
        for (ssize_t i = 0; i < n; i++)
            f->same &= buf[i] == (unsigned char)((f->got + (size_t)i) % 251);
        f->got += (size_t)n;
        /* Slow: the client closes long before all has arrived, with the
         * server's session tickets unread in its socket (a close that
         * did not linger would reset the connection and lose the rest). */
        if (f->got % (64 * 1024) == 0)
            (void)coil_sleep(COIL_MSEC);
    }
}

static int flood_body(void *arg)
{
    struct flood *f = arg;
    coil_tls_context_t *cctx = NULL;
    coil_server_t *srv = NULL;
    char port[16];
    int err = tls_server(flood_handler, f, NULL, &srv, port);
    coil_stream_t *s = NULL;
    unsigned char *piece = malloc(64 * 1024);
    if (!piece)
        err = err ? err : -ENOMEM;
    if (!err && !(err = client_ctx(ca_pem, &cctx)))
        err = coil_tls_open("localhost", port, cctx, NULL, &s);
    for (size_t off = 0; !err && off < FLOOD; off += 64 * 1024) {
        for (size_t i = 0; i < 64 * 1024; i++)
            piece[i] = (unsigned char)((off + i) % 251);
        if (!(err = coil_stream_write(s, piece, 64 * 1024)))
            err = coil_stream_drain(s);
    }
    if (s) {
        coil_stream_close(s); /* flushes the rest, then close_notify */
        int e = coil_stream_wait_closed(s);
        err = err ? err : e;
        coil_stream_unref(s);
    }
    free(piece);
    coil_tls_context_unref(cctx);
    err = end_server(srv, err);
    return err;
}

static void test_backpressure(void **state)
{
    (void)state;
    struct flood f = {.end = 1};
    run_ok(flood_body, &f);
    assert_int_equal(f.got, FLOOD);
    assert_true(f.same);
    assert_int_equal(f.end, 0);
}

/* The server writes, then ends cleanly or aborts. */
struct ending {
    struct server sv;
    int read_end; /* what the read after the echo gave */
};

static int ending_body(void *arg)
{
    struct ending *g = arg;
    int err = server_open(&g->sv, cert_pem);
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *s = NULL;
    if (!err && !(err = client_ctx(ca_pem, &cctx)))
        err = coil_tls_open("127.0.0.1", g->sv.port, cctx, NULL, &s);
    char buf[16];
    if (!err && !(err = coil_stream_write(s, "hello", 5)) &&
        !(err = coil_stream_read_exactly(s, buf, 5, NULL)))
        g->read_end = (int)coil_stream_read(s, buf, sizeof(buf));
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    int e2 = server_close(&g->sv);
    return err ? err : e2;
}

static void test_endings(void **state)
{
    (void)state;
    /* An abort is no close_notify: never taken for the end. */
    struct ending g = {.sv.abort_after = true};
    run_ok(ending_body, &g);
    assert_true(g.read_end == -ECONNABORTED || g.read_end == -ECONNRESET);
}

/* Half-close: the client ends its side (close_notify), the server reads
 * to the end and still answers; the client reads the answer, then the
 * server's end. */
struct half {
    char server_got[8];
    int server_end;
    char client_got[8];
    int client_end;
};

static int half_handler(coil_stream_t *plain, void *arg)
{
    struct half *h = arg;
    coil_tls_context_t *sctx;
    int err = coil_tls_context_new(true, &sctx);
    if (!err)
        err = coil_tls_context_load_cert(sctx, cert_pem, key_pem);
    coil_stream_t *s = NULL;
    if (!err)
        err = coil_tls_start(plain, sctx, true, NULL, &s);
    size_t len = 0;
    if (!err && !(err = coil_stream_read_all(s, h->server_got,
                                             sizeof(h->server_got), &len)))
        h->server_end = (int)coil_stream_read(s, h->server_got + len, 1);
    if (!err && !(err = coil_stream_write(s, "xyz", 3)))
        coil_stream_close(s);
    coil_stream_unref(s);
    coil_tls_context_unref(sctx);
    (void)err; /* the client checks what it saw */
    return 0;
}

static int half_body(void *arg)
{
    struct half *h = arg;
    coil_server_t *srv;
    char port[16];
    int err = plain_server(half_handler, h, &srv, port);
    if (err)
        return err;
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *s = NULL;
    size_t len = 0;
    if (!(err = client_ctx(ca_pem, &cctx)) &&
        !(err = coil_tls_open("localhost", port, cctx, NULL, &s)) &&
        !(err = coil_stream_write(s, "abc", 3)) &&
        !(err = coil_stream_write_eof(s)) &&
        !(err = coil_stream_read_all(s, h->client_got, sizeof(h->client_got),
                                     &len)))
        h->client_end = (int)coil_stream_read(s, h->client_got + len, 1);
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    return end_server(srv, err);
}

static void test_half_close(void **state)
{
    (void)state;
    struct half h = {.server_end = 1, .client_end = 1};
    run_ok(half_body, &h);
    assert_memory_equal(h.server_got, "abc", 3);
    assert_int_equal(h.server_end, 0);
    assert_memory_equal(h.client_got, "xyz", 3);
    assert_int_equal(h.client_end, 0);
}

/* ------------------------------------------------------------------ */
/* Verification                                                         */
/* ------------------------------------------------------------------ */

struct verify {
    const char *cert;      /* the server's */
    const char *ca;        /* the client trusts */
    const char *host;      /* connected to */
    const char *name;      /* verified as (options), or NULL */
    int open;
    char why[256];
};

static int verify_body(void *arg)
{
    struct verify *v = arg;
    struct server sv = {0};
    int err = server_open(&sv, v->cert);
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *s = NULL;
    if (!err && !(err = client_ctx(v->ca, &cctx))) {
        coil_tls_options_t o = {.server_hostname = v->name};
        v->open = coil_tls_open(v->host, sv.port, cctx, &o, &s);
        snprintf(v->why, sizeof(v->why), "%s", coil_tls_last_error());
    }
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    int e2 = server_close(&sv);
    return err ? err : e2;
}

static void verify_case(const char *cert, const char *ca, const char *host,
                        const char *name, int want, const char *why)
{
    struct verify v = {cert, ca, host, name, 1, ""};
    run_ok(verify_body, &v);
    if (v.open != want || (why && !strstr(v.why, why)))
        fail_msg("%s as %s: %s (%s), not %s", host, name ? name : host,
                 coil_err_name(v.open), v.why, coil_err_name(want));
}

static void test_verification(void **state)
{
    (void)state;
    verify_case(cert_pem, ca_pem, "localhost", NULL, 0, NULL);
    verify_case(cert_pem, ca_pem, "127.0.0.1", NULL, 0, NULL);
    /* An authority the client does not trust (not the system's either). */
    verify_case(cert_pem, other_ca_pem, "localhost", NULL, -EKEYREJECTED,
                "certificate verify failed");
    /* Another name than the certificate's. */
    verify_case(cert_pem, ca_pem, "127.0.0.1", "example.com",
                -EKEYREJECTED, "certificate verify failed");
    /* Expired. */
    verify_case(old_pem, ca_pem, "localhost", NULL, -EKEYREJECTED,
                "expired");
    /* Self-signed (the right name and key, no authority behind it). */
    verify_case(self_pem, ca_pem, "localhost", NULL, -EKEYREJECTED,
                "self-signed");
}

/* Client certificates: a server that requires one. */
struct mutual {
    bool client_cert;
    int server_start; /* the server's coil_tls_start */
    int client_r;     /* the client's open, then its first read */
    char got[8];
};

static int mutual_handler(coil_stream_t *plain, void *arg)
{
    struct mutual *m = arg;
    coil_tls_context_t *sctx;
    int err = coil_tls_context_new(true, &sctx);
    if (!err && !(err = coil_tls_context_load_cert(sctx, cert_pem, key_pem)) &&
        !(err = coil_tls_context_load_ca(sctx, ca_pem)))
        err = coil_tls_context_set_verify(sctx, COIL_TLS_VERIFY_REQUIRED);
    coil_stream_t *s = NULL;
    if (!err)
        err = m->server_start = coil_tls_start(plain, sctx, true, NULL, &s);
    if (!err && !(err = coil_stream_write(s, "hi", 2)))
        err = coil_stream_drain(s);
    coil_stream_unref(s);
    coil_tls_context_unref(sctx);
    (void)err; /* the client checks what it saw */
    return 0;
}

static int mutual_body(void *arg)
{
    struct mutual *m = arg;
    coil_server_t *srv;
    char port[16];
    int err = plain_server(mutual_handler, m, &srv, port);
    if (err)
        return err;
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *s = NULL;
    if (!(err = client_ctx(ca_pem, &cctx)) && m->client_cert)
        err = coil_tls_context_load_cert(cctx, cert_pem, key_pem);
    if (!err) {
        m->client_r = coil_tls_open("localhost", port, cctx, NULL, &s);
        /* TLS 1.3: the client may finish first; the server's refusal
         * then comes with the first read. */
        if (!m->client_r)
            m->client_r = coil_stream_read_exactly(s, m->got, 2, NULL);
    }
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    return end_server(srv, err);
}

static void test_client_certificates(void **state)
{
    (void)state;
    struct mutual with = {.client_cert = true, .server_start = 1};
    run_ok(mutual_body, &with);
    assert_int_equal(with.server_start, 0);
    assert_int_equal(with.client_r, 0);
    assert_memory_equal(with.got, "hi", 2);

    struct mutual without = {.server_start = 1};
    run_ok(mutual_body, &without);
    assert_int_equal(without.server_start, -EPROTO);
    assert_true(without.client_r == -EPROTO ||
                without.client_r == -ECONNABORTED ||
                without.client_r == -ECONNRESET);
}

/* ------------------------------------------------------------------ */
/* The handshake's limit, and a cancel during it                        */
/* ------------------------------------------------------------------ */

struct stalled {
    int open;
    char why[256];
    bool cancel;
};

static int stalled_body(void *arg)
{
    struct stalled *st = arg;
    struct server sv = {.silent = true};
    int err = server_open(&sv, cert_pem);
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *s = NULL;
    if (!err && !(err = client_ctx(ca_pem, &cctx))) {
        coil_tls_options_t o = {.handshake_timeout_ns = 100 * COIL_MSEC};
        coil_timeout_t *outer = NULL;
        if (st->cancel)
            err = coil_timeout_begin(20 * COIL_MSEC, &outer);
        if (!err) {
            st->open = coil_tls_open("localhost", sv.port, cctx, &o, &s);
            snprintf(st->why, sizeof(st->why), "%s", coil_tls_last_error());
        }
        if (outer)
            st->open = coil_timeout_end(outer, st->open);
    }
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    coil_server_close_clients(sv.srv);
    int e2 = server_close(&sv);
    return err ? err : e2;
}

static void test_handshake_limits(void **state)
{
    (void)state;
    struct stalled st = {0};
    run_ok(stalled_body, &st);
    assert_int_equal(st.open, -ETIMEDOUT);
    assert_non_null(strstr(st.why, "did not finish in time"));
    /* Cancelled (by an outer scope) while it waits for the server. */
    struct stalled c = {.cancel = true};
    run_ok(stalled_body, &c);
    assert_int_equal(c.open, -ETIMEDOUT); /* the outer scope's */
}

/* coil_tls_server_open: a slowloris (connects, never speaks) and a
 * client speaking plain HTTP are dropped by their handshakes; a real
 * client is served meanwhile and after. */
struct tserver {
    int served;
    char got[8];
};

static int tserver_handler(coil_stream_t *s, void *arg)
{
    struct tserver *ts = arg;
    char buf[4];
    int err = coil_stream_read_exactly(s, buf, 4, NULL);
    if (!err && !(err = coil_stream_write(s, buf, 4)))
        ts->served++;
    return err;
}

static int raw_client(const char *port, const char *say, int *fd_out)
{
    int fd = coil_sock_open(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)atoi(port)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int err = coil_sock_connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    if (!err && say)
        err = coil_sock_send_all(fd, say, strlen(say), NULL);
    if (err) {
        coil_sock_close(fd);
        return err;
    }
    *fd_out = fd;
    return 0;
}

static int tserver_body(void *arg)
{
    struct tserver *ts = arg;
    coil_tls_context_t *sctx = NULL, *cctx = NULL;
    coil_server_t *srv = NULL;
    int err = coil_tls_context_new(true, &sctx);
    if (!err)
        err = coil_tls_context_load_cert(sctx, cert_pem, key_pem);
    coil_tls_options_t o = {.handshake_timeout_ns = 200 * COIL_MSEC};
    if (!err)
        err = coil_tls_server_open("127.0.0.1", "0", sctx, tserver_handler,
                                   ts, NULL, &o, &srv);
    coil_tls_context_unref(sctx); /* the server holds its own */
    char port[16];
    snprintf(port, sizeof(port), "%d", srv ? coil_server_port(srv) : 0);
    int slow = -1, http = -1;
    if (!err)
        err = raw_client(port, NULL, &slow);
    if (!err)
        err = raw_client(port, "GET / HTTP/1.0\r\n\r\n", &http);
    coil_stream_t *s = NULL;
    if (!err && !(err = client_ctx(ca_pem, &cctx)) &&
        !(err = coil_tls_open("localhost", port, cctx, NULL, &s)) &&
        !(err = coil_stream_write(s, "ping", 4)))
        err = coil_stream_read_exactly(s, ts->got, 4, NULL);
    /* Both dropped by the server: their sockets end (an alert first for
     * the HTTP one). */
    char junk[256];
    ssize_t n = 1;
    while (!err && slow >= 0 && n > 0)
        n = coil_sock_recv(slow, junk, sizeof(junk));
    n = 1;
    while (!err && http >= 0 && n > 0)
        n = coil_sock_recv(http, junk, sizeof(junk));
    if (slow >= 0)
        coil_sock_close(slow);
    if (http >= 0)
        coil_sock_close(http);
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    err = end_server(srv, err);
    return err;
}

static void test_tls_server(void **state)
{
    (void)state;
    struct tserver ts = {0};
    run_ok(tserver_body, &ts);
    assert_int_equal(ts.served, 1);
    assert_memory_equal(ts.got, "ping", 4);
}

/* ------------------------------------------------------------------ */
/* start_tls                                                            */
/* ------------------------------------------------------------------ */

struct starttls {
    coil_tls_context_t *sctx;
    size_t bulk;      /* plain bytes before the line, read late */
    bool bulk_ok;
    bool timed_out_read; /* the client's read timed out before start */
    int timed_out_r;
    char said[32];
    int server_r;
    char reply[16];
};

static int starttls_handler(coil_stream_t *plain, void *arg)
{
    struct starttls *st = arg;
    size_t len = 0;
    int err = 0;
    if (st->bulk) { /* late, so that the client's kernel cannot take all */
        char *b = malloc(st->bulk);
        if (!b)
            return -ENOMEM;
        if (!(err = coil_sleep(50 * COIL_MSEC)) &&
            !(err = coil_stream_read_exactly(plain, b, st->bulk, NULL)))
            st->bulk_ok = b[0] == 'b' && b[st->bulk - 1] == 'b' &&
                          memchr(b, '\n', st->bulk) == NULL;
        free(b);
    }
    /* The line, and (likely) the start of the client's handshake right
     * behind it, in the plain stream's buffer. */
    if (!err)
        err = coil_stream_readline(plain, st->said, sizeof(st->said), &len);
    coil_stream_t *s = NULL;
    if (!err)
        err = coil_tls_start(plain, st->sctx, true, NULL, &s);
    char buf[8];
    if (!err && !(err = coil_stream_read_exactly(s, buf, 4, NULL)))
        err = coil_stream_write(s, "pong", 4);
    if (s) {
        coil_stream_close(s);
        (void)coil_stream_wait_closed(s);
    }
    coil_stream_unref(s);
    st->server_r = err;
    return 0;
}

static int starttls_body(void *arg)
{
    struct starttls *st = arg;
    coil_server_t *srv = NULL;
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *plain = NULL, *s = NULL;
    char port[16] = "0";
    int err = coil_tls_context_new(true, &st->sctx);
    if (!err)
        err = coil_tls_context_load_cert(st->sctx, cert_pem, key_pem);
    if (!err)
        err = plain_server(starttls_handler, st, &srv, port);
    if (!err)
        err = client_ctx(ca_pem, &cctx);
    if (!err)
        err = coil_stream_open("127.0.0.1", port, &plain);
    coil_tls_options_t o = {.server_hostname = "localhost"};
    if (!err && st->bulk) {
        /* Limits above it all: drain alone would not wait for it to go. */
        char *b = malloc(st->bulk);
        if (b) {
            memset(b, 'b', st->bulk);
            if (!(err = coil_stream_set_write_limits(plain, 2 * st->bulk,
                                                     2 * st->bulk)))
                err = coil_stream_write(plain, b, st->bulk);
        }
        free(b);
        err = b ? err : -ENOMEM;
    }
    if (!err && !(err = coil_stream_write(plain, "STARTTLS\n", 9)) &&
        st->timed_out_read) {
        /* The server says nothing before the handshake: this read ends
         * by its timeout, and on io_uring leaves a receive in flight,
         * which start_tls must end (keeping what it got) before it takes
         * the socket. */
        coil_timeout_t *scope;
        char c;
        if (!(err = coil_timeout_begin(10 * COIL_MSEC, &scope)))
            st->timed_out_r = coil_timeout_end(
                scope, (int)coil_stream_read(plain, &c, 1));
    }
    if (!err)
        err = coil_tls_start(plain, cctx, false, &o, &s);
    if (!err && !(err = coil_stream_write(s, "ping", 4)))
        err = coil_stream_read_exactly(s, st->reply, 4, NULL);
    coil_stream_unref(s);
    coil_stream_unref(plain);
    coil_tls_context_unref(cctx);
    err = end_server(srv, err);
    coil_tls_context_unref(st->sctx);
    return err;
}

static void test_start_tls(void **state)
{
    (void)state;
    struct starttls st = {0};
    run_ok(starttls_body, &st);
    assert_string_equal(st.said, "STARTTLS\n");
    assert_int_equal(st.server_r, 0);
    assert_memory_equal(st.reply, "pong", 4);
    /* After more plain data than the kernel takes at once: start_tls
     * waits for all of it to go (not only drain's low-water mark), then
     * the TLS bytes follow it. */
    /* After a read that timed out: nothing of the conversation lost. */
    struct starttls late = {.timed_out_read = true};
    run_ok(starttls_body, &late);
    assert_int_equal(late.timed_out_r, -ETIMEDOUT);
    assert_int_equal(late.server_r, 0);
    assert_memory_equal(late.reply, "pong", 4);
    struct starttls big = {.bulk = 16 << 20};
    run_ok(starttls_body, &big);
    assert_true(big.bulk_ok);
    assert_string_equal(big.said, "STARTTLS\n");
    assert_int_equal(big.server_r, 0);
    assert_memory_equal(big.reply, "pong", 4);
}

/* The server's context dropped by its last other holder while a
 * handshake made with it waits for the client's hello: the connection
 * holds its own reference (the ALPN callback reads the context's list
 * then), and the handshake goes through with the protocol chosen. */
struct ctx_dropped {
    coil_tls_context_t *sctx;
    bool waiting; /* the handler is about to start the handshake */
    int server_r;
    char alpn[32];
    char reply[4];
};

static int ctx_dropped_handler(coil_stream_t *plain, void *arg)
{
    struct ctx_dropped *d = arg;
    coil_stream_t *s;
    d->waiting = true;
    d->server_r = coil_tls_start(plain, d->sctx, true, NULL, &s);
    if (d->server_r)
        return 0;
    snprintf(d->alpn, sizeof(d->alpn), "%s",
             coil_tls_alpn(s) ? coil_tls_alpn(s) : "");
    char buf[4];
    int err = coil_stream_read_exactly(s, buf, 4, NULL);
    if (!err)
        err = coil_stream_write(s, "pong", 4);
    if (!err)
        err = coil_stream_drain(s);
    coil_stream_unref(s);
    return err;
}

static int ctx_dropped_body(void *arg)
{
    struct ctx_dropped *d = arg;
    static const char *const protos[] = {"x-coil"};
    coil_server_t *srv = NULL;
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *plain = NULL, *s = NULL;
    char port[16] = "0";
    int err = coil_tls_context_new(true, &d->sctx);
    if (!err)
        err = coil_tls_context_load_cert(d->sctx, cert_pem, key_pem);
    if (!err)
        err = coil_tls_context_set_alpn(d->sctx, protos, 1);
    if (!err)
        err = plain_server(ctx_dropped_handler, d, &srv, port);
    if (!err && !(err = client_ctx(ca_pem, &cctx)))
        err = coil_tls_context_set_alpn(cctx, protos, 1);
    if (!err)
        err = coil_stream_open("127.0.0.1", port, &plain);
    for (int i = 0; !err && !d->waiting && i < 1000; i++)
        err = coil_sleep(COIL_MSEC);
    if (!err)
        err = coil_yield(); /* the handler now waits for the hello */
    coil_tls_context_unref(d->sctx); /* the only reference but its own */
    d->sctx = NULL;
    coil_tls_options_t o = {.server_hostname = "localhost"};
    if (!err)
        err = coil_tls_start(plain, cctx, false, &o, &s);
    if (!err && !(err = coil_stream_write(s, "ping", 4)))
        err = coil_stream_read_exactly(s, d->reply, 4, NULL);
    coil_stream_unref(s);
    coil_stream_unref(plain);
    coil_tls_context_unref(cctx);
    return end_server(srv, err);
}

static void test_context_dropped_mid_handshake(void **state)
{
    (void)state;
    struct ctx_dropped d = {0};
    run_ok(ctx_dropped_body, &d);
    assert_true(d.waiting);
    assert_int_equal(d.server_r, 0);
    assert_string_equal(d.alpn, "x-coil");
    assert_memory_equal(d.reply, "pong", 4);
}

/* ------------------------------------------------------------------ */
/* A peer coil did not write: openssl s_server and s_client             */
/* ------------------------------------------------------------------ */

/* Whether the openssl command is there (skipped, said, if not). */
static bool have_openssl_cmd(void)
{
    return system("openssl version >/dev/null 2>&1") == 0;
}

struct interop {
    char line[64];
    int open;
    char out[64];
    size_t out_len;
    int code;
};

/* coil's client against s_server -rev (each line sent back reversed). */
static int s_server_body(void *arg)
{
    struct interop *in = arg;
    char a0[] = "openssl", a1[] = "s_server", a2[] = "-accept",
         a3[] = "127.0.0.1:0", a4[] = "-cert", a6[] = "-key", a8[] = "-rev",
         a9[] = "-naccept", a10[] = "1";
    char *argv[] = {a0, a1, a2, a3, a4, cert_pem, a6, key_pem, a8, a9, a10,
                    NULL};
    coil_process_options_t po = {.stdout_mode = COIL_STDIO_PIPE,
                                 .stderr_mode = COIL_STDIO_DEVNULL,
                                 .stdin_mode = COIL_STDIO_DEVNULL};
    coil_process_t *p;
    int err = coil_process_spawn("openssl", argv, &po, &p);
    if (err)
        return err;
    /* "ACCEPT 127.0.0.1:PORT" once it listens. */
    char port[16] = "";
    for (int i = 0; i < 10 && !err && !port[0]; i++) {
        char l[128];
        size_t len = 0;
        if (!(err = coil_stream_readline(coil_process_stdout(p), l,
                                         sizeof(l) - 1, &len))) {
            l[len] = '\0';
            char *colon = strncmp(l, "ACCEPT", 6) ? NULL : strrchr(l, ':');
            if (colon)
                snprintf(port, sizeof(port), "%d", atoi(colon + 1));
        }
    }
    coil_tls_context_t *cctx = NULL;
    coil_stream_t *s = NULL;
    if (!err && !(err = client_ctx(ca_pem, &cctx))) {
        in->open = coil_tls_open("localhost", port, cctx, NULL, &s);
        size_t len = 0;
        if (!in->open &&
            !(err = coil_stream_write(s, "hello, coil\n", 12)) &&
            !(err = coil_stream_readline(s, in->line, sizeof(in->line) - 1,
                                         &len)))
            in->line[len] = '\0';
    }
    coil_stream_unref(s);
    coil_tls_context_unref(cctx);
    (void)coil_process_kill(p);
    (void)coil_process_wait(p, NULL);
    coil_process_unref(p);
    return err;
}

/* s_client against coil's server: a line there and back. */
static int s_client_body(void *arg)
{
    struct interop *in = arg;
    struct server sv = {0};
    int err = server_open(&sv, cert_pem);
    char connect[32];
    snprintf(connect, sizeof(connect), "127.0.0.1:%s", sv.port);
    char a0[] = "openssl", a1[] = "s_client", a2[] = "-connect",
         a4[] = "-CAfile", a6[] = "-servername", a7[] = "localhost",
         a8[] = "-verify_return_error", a9[] = "-quiet",
         a10[] = "-no_ign_eof";
    char *argv[] = {a0, a1, a2, connect, a4, ca_pem, a6, a7, a8, a9, a10,
                    NULL};
    coil_process_options_t po = {.stdin_mode = COIL_STDIO_PIPE,
                                 .stdout_mode = COIL_STDIO_PIPE,
                                 .stderr_mode = COIL_STDIO_DEVNULL};
    coil_process_t *p = NULL;
    if (!err)
        err = coil_process_spawn("openssl", argv, &po, &p);
    char *out = NULL, *errout = NULL;
    size_t out_len = 0, err_len = 0;
    /* The line, then (after its echo had time to come) the end. */
    if (!err && !(err = coil_stream_write(coil_process_stdin(p),
                                          "ping from s_client\n", 19)) &&
        !(err = coil_stream_readline(coil_process_stdout(p), in->out,
                                     sizeof(in->out), &in->out_len)))
        err = coil_process_communicate(p, NULL, 0, &out, &out_len, &errout,
                                       &err_len);
    coil_process_free_output(out);
    coil_process_free_output(errout);
    if (p) {
        if (err)
            (void)coil_process_kill(p);
        (void)coil_process_wait(p, &in->code);
        coil_process_unref(p);
    }
    coil_server_close_clients(sv.srv);
    int e2 = server_close(&sv);
    return err ? err : e2;
}

static void test_openssl_peers(void **state)
{
    (void)state;
    if (!have_openssl_cmd()) {
        fprintf(stderr, "openssl (the command) is not installed: "
                        "the test against it is skipped\n");
        skip();
    }
    struct interop a = {.open = 1};
    run_ok(s_server_body, &a);
    assert_int_equal(a.open, 0);
    assert_string_equal(a.line, "lioc ,olleh\n");

    struct interop b = {0};
    run_ok(s_client_body, &b);
    assert_int_equal(b.out_len, 19);
    assert_memory_equal(b.out, "ping from s_client\n", 19);
    assert_int_equal(b.code, 0);
}

/* ------------------------------------------------------------------ */
/* Arguments                                                            */
/* ------------------------------------------------------------------ */

static int arguments(void *arg)
{
    (void)arg;
    coil_tls_context_t *c, *sctx;
    coil_stream_t *s = (void *)1;
    if (coil_tls_context_new(false, &c) || coil_tls_context_new(true, &sctx))
        return -EPROTO;
    int bad = 0;
    bad |= coil_tls_context_new(false, NULL) != -EINVAL;
    bad |= coil_tls_context_load_cert(c, "/nonexistent.pem", key_pem) !=
           -ENOENT;
    bad |= coil_tls_context_load_cert(c, ca_pem, ca_pem) != -EKEYREJECTED;
    bad |= coil_tls_context_load_cert(NULL, ca_pem, key_pem) != -EINVAL;
    bad |= coil_tls_context_load_ca(c, "/nonexistent.pem") != -ENOENT;
    bad |= coil_tls_context_load_ca(c, key_pem) != -EKEYREJECTED;
    bad |= coil_tls_context_set_verify(c, (coil_tls_verify_t)9) != -EINVAL;
    bad |= coil_tls_context_set_verify(NULL, COIL_TLS_VERIFY_NONE) != -EINVAL;
    bad |= coil_tls_context_load_ca(NULL, ca_pem) != -EINVAL;
    const char *one[] = {"h2"};
    bad |= coil_tls_context_set_alpn(NULL, one, 1) != -EINVAL;
    bad |= coil_tls_context_set_alpn(c, one, 0) != -EINVAL;
    const char *empty[] = {""};
    bad |= coil_tls_context_set_alpn(c, empty, 1) != -EINVAL;
    bad |= coil_tls_context_set_alpn(c, NULL, 1) != -EINVAL;
    bad |= coil_tls_open("localhost", "1", NULL, NULL, &s) != -EINVAL ||
           s != NULL;
    bad |= coil_tls_open("localhost", "1", sctx, NULL, &s) != -EINVAL;
    bad |= coil_tls_start(NULL, c, false, NULL, &s) != -EINVAL;
    /* A plain stream already closed: -EPIPE (nothing of it to take). */
    int sv[2];
    coil_stream_t *plain = NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
        if (coil_stream_open_fd(sv[0], &plain) == 0) {
            coil_stream_close(plain);
            bad |= coil_tls_start(plain, sctx, true, NULL, &s) != -EPIPE;
            coil_stream_unref(plain);
        } else {
            close(sv[0]);
            bad = true;
        }
        close(sv[1]);
    } else {
        bad = true;
    }
    coil_server_t *srv = (void *)1;
    bad |= coil_tls_server_open("127.0.0.1", "0", c, echo_handler, NULL,
                                NULL, NULL, &srv) != -EINVAL ||
           srv != NULL;
    bad |= coil_tls_server_open("127.0.0.1", "0", sctx, NULL, NULL, NULL,
                                NULL, &srv) != -EINVAL;
    bad |= coil_tls_alpn(NULL) != NULL || coil_tls_version(NULL) != NULL;
    bad |= coil_tls_context_ref(c) != c;
    coil_tls_context_unref(c);
    coil_tls_context_unref(c);
    coil_tls_context_unref(sctx);
    coil_tls_context_unref(NULL);
    return bad ? -EPROTO : 0;
}

static void test_arguments(void **state)
{
    (void)state;
    assert_true(coil_tls_available());
    run_ok(arguments, NULL);
    coil_tls_context_t *c;
    assert_int_equal(coil_tls_context_new(false, &c), 0);
    coil_stream_t *s;
    /* Not in a task. */
    assert_int_equal(coil_tls_open("localhost", "1", c, NULL, &s), -EPERM);
    coil_tls_context_unref(c);
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_echo),
        TEST_NOLOOP(test_backpressure),
        TEST_NOLOOP(test_endings),
        TEST_NOLOOP(test_half_close),
        TEST_NOLOOP(test_verification),
        TEST_NOLOOP(test_client_certificates),
        TEST_NOLOOP(test_handshake_limits),
        TEST_NOLOOP(test_tls_server),
        TEST_NOLOOP(test_start_tls),
        TEST_NOLOOP(test_context_dropped_mid_handshake),
        TEST_NOLOOP(test_openssl_peers),
        TEST_NOLOOP(test_arguments),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}

#endif /* COIL_HAVE_OPENSSL */
