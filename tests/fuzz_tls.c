/* SPDX-License-Identifier: MIT */
/*
 * fuzz_tls.c - a libFuzzer target for the TLS record path (tls.c): a
 * coil client and a coil server talk TLS through a man in the middle
 * that corrupts the bytes as the input says. Whatever it does, both ends
 * must end with data or an error, never a crash, a hang or a leak (the
 * testing kit's fixture checks; the virtual clock makes the timeouts of
 * a stalled exchange pass at once).
 *
 * Input: pairs of bytes (skip, xor): skip bytes pass untouched, then one
 * byte is XORed with xor (0: cut the connection there instead); the even
 * pairs act on the client's bytes, the odd ones on the server's.
 *
 * The certificate is made once per process with OpenSSL (no key is
 * committed).
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil.h"
#include "coil/testing.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static coil_tls_context_t *server_ctx, *client_ctx;

/* A self-signed certificate for localhost, and both contexts. */
static void setup(void)
{
    char cert[64], key[64];
    snprintf(cert, sizeof(cert), "/tmp/coil-fuzz-tls-%d-cert.pem",
             (int)getpid());
    snprintf(key, sizeof(key), "/tmp/coil-fuzz-tls-%d-key.pem", (int)getpid());
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    if (!pk || !x)
        abort();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, pk, EVP_sha256());
    FILE *f = fopen(cert, "w");
    FILE *g = fopen(key, "w");
    if (!f || !g || PEM_write_X509(f, x) != 1 ||
        PEM_write_PrivateKey(g, pk, NULL, NULL, 0, NULL, NULL) != 1)
        abort();
    fclose(f);
    fclose(g);
    X509_free(x);
    EVP_PKEY_free(pk);
    if (coil_tls_context_new(true, &server_ctx) ||
        coil_tls_context_load_cert(server_ctx, cert, key) ||
        coil_tls_context_new(false, &client_ctx) ||
        coil_tls_context_load_ca(client_ctx, cert))
        abort();
    unlink(cert);
    unlink(key);
}

struct run {
    const uint8_t *data;
    size_t size;
    int fds[4]; /* client, mitm's client side, mitm's server side, server */
    char got[2][16]; /* what the client [0] and the server [1] read */
};

/* One direction of the man in the middle: copy, corrupting. */
struct pipe_dir {
    struct run *r;
    int from, to;
    int parity; /* which pairs of the input act here */
};

static int relay(void *arg)
{
    struct pipe_dir *d = arg;
    size_t pair = (size_t)d->parity;
    size_t skip = fuzz_byte(d->r->data, d->r->size, 2 * pair);
    bool have = 2 * pair < d->r->size;
    unsigned char buf[4096];
    int err = 0;
    for (;;) {
        ssize_t n = coil_sock_recv(d->from, buf, sizeof(buf));
        if (n <= 0) {
            err = (int)n;
            break;
        }
        bool cut = false;
        size_t at = 0;
        while (have && at + skip < (size_t)n) {
            at += skip;
            uint8_t x = fuzz_byte(d->r->data, d->r->size, 2 * pair + 1);
            if (x == 0) {
                cut = true;
                n = (ssize_t)at;
                break;
            }
            buf[at++] ^= x;
            pair += 2;
            have = 2 * pair < d->r->size;
            skip = fuzz_byte(d->r->data, d->r->size, 2 * pair);
        }
        if (have)
            skip -= (size_t)n - at;
        if (n > 0 && (err = coil_sock_send_all(d->to, buf, (size_t)n, NULL)))
            break;
        if (cut)
            break;
    }
    shutdown(d->to, SHUT_WR);
    (void)err; /* a peer gone is the run's business, not a failure */
    return 0;
}

static int side(void *arg, bool server)
{
    struct run *r = arg;
    coil_stream_t *plain, *s = NULL;
    int fd = r->fds[server ? 3 : 0];
    int err = coil_stream_open_fd(fd, &plain);
    if (err) {
        close(fd);
        return 0;
    }
    r->fds[server ? 3 : 0] = -1;
    coil_tls_options_t o = {.server_hostname = "localhost",
                            .handshake_timeout_ns = COIL_SEC};
    err = coil_tls_start(plain, server ? server_ctx : client_ctx, server,
                         server ? NULL : &o, &s);
    coil_stream_unref(plain);
    if (err)
        return 0;
    coil_timeout_t *t;
    char buf[256];
    size_t len;
    if (coil_timeout_begin(COIL_SEC, &t) == 0) {
        err = coil_stream_write(s, server ? "from the server" : "hello", 5);
        if (!err)
            err = coil_stream_write_eof(s); /* close_notify: the peer's end */
        if (!err)
            err = coil_stream_read_all(s, buf, sizeof(buf), &len);
        if (!coil_timeout_end(t, err))
            snprintf(r->got[server], sizeof(r->got[server]), "%.*s",
                     (int)len, buf);
    }
    coil_stream_close(s);
    coil_stream_unref(s);
    return 0;
}

static int client(void *arg)
{
    return side(arg, false);
}

static int server(void *arg)
{
    return side(arg, true);
}

static int body(void *arg)
{
    struct run *r = arg;
    int a[2], b[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   a) < 0)
        return -errno;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   b) < 0) {
        close(a[0]);
        close(a[1]);
        return -errno;
    }
    r->fds[0] = a[0];
    r->fds[1] = a[1];
    r->fds[2] = b[0];
    r->fds[3] = b[1];
    struct pipe_dir up = {r, a[1], b[0], 0}, down = {r, b[0], a[1], 1};
    coil_loop_t *loop = coil_running_loop();
    coil_task_t *t[4] = {0};
    coil_task_spawn(loop, relay, &up, &t[0]);
    coil_task_spawn(loop, relay, &down, &t[1]);
    coil_task_spawn(loop, client, r, &t[2]);
    coil_task_spawn(loop, server, r, &t[3]);
    for (int i = 0; i < 4; i++) {
        if (t[i])
            (void)coil_task_join(t[i]);
        coil_task_unref(t[i]);
    }
    for (int i = 0; i < 4; i++)
        if (r->fds[i] >= 0 && i != 1 && i != 2)
            close(r->fds[i]);
    coil_sock_close(a[1]);
    coil_sock_close(b[0]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    struct run r = {data, size, {-1, -1, -1, -1}, {"", ""}};
    coil_test_options_t o = {.virtual_clock = true,
                             .timeout_ns = 60 * COIL_SEC};
    coil_test_result_t res;
    int err = coil_test_run(body, &r, &o, &res);
    /* Untouched, the exchange must go through: the harness works. */
    if (size == 0 && (strcmp(r.got[0], "from ") || strcmp(r.got[1], "hello"))) {
        fprintf(stderr, "fuzz_tls: the clean exchange failed: \"%s\", "
                        "\"%s\"\n", r.got[0], r.got[1]);
        abort();
    }
    if (err && (res.allocations_left || res.fds_left || res.tasks_left ||
                err == -ETIMEDOUT)) {
        fprintf(stderr, "fuzz_tls: %s: %s\n", coil_err_name(err),
                res.message);
        abort();
    }
    return 0;
}
