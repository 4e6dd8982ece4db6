/* SPDX-License-Identifier: MIT */
/*
 * tls_helpers.c - what the TLS tests share (tls_helpers.h).
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "coil/testing.h"
#include "coil/tls.h"
#include "helpers.h"
#include "tls_helpers.h"

static char dir[64];
char ca_pem[96], cert_pem[96], key_pem[96], old_pem[96], other_ca_pem[96],
    self_pem[96];

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key, signed by issuer (NULL: itself), valid from
 * days_from to days_to (days from now). */
static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       const char *cn, const char *san, bool ca,
                       long days_from, long days_to)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), days_from * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), days_to * 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    add_ext(x, issuer ? issuer : x, NID_basic_constraints,
            ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (ca)
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san)
        add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) >
                0);
    return x;
}

static void write_cert(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void write_key(const char *path, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

int make_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/coil-tls-%d", (int)getpid());
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
    snprintf(other_ca_pem, sizeof(other_ca_pem), "%s/other-ca.pem", dir);
    snprintf(cert_pem, sizeof(cert_pem), "%s/cert.pem", dir);
    snprintf(key_pem, sizeof(key_pem), "%s/key.pem", dir);
    snprintf(old_pem, sizeof(old_pem), "%s/old.pem", dir);
    snprintf(self_pem, sizeof(self_pem), "%s/self.pem", dir);
    EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!ca_key || !other_key || !key)
        return -1;
    X509 *ca = make_cert(ca_key, NULL, NULL, "coil test authority", NULL,
                         true, -1, 30);
    X509 *other = make_cert(other_key, NULL, NULL, "another authority",
                            NULL, true, -1, 30);
    X509 *cert = make_cert(key, ca, ca_key, "localhost",
                           "DNS:localhost,IP:127.0.0.1", false, -1, 30);
    X509 *old = make_cert(key, ca, ca_key, "localhost",
                          "DNS:localhost,IP:127.0.0.1", false, -30, -1);
    X509 *self = make_cert(key, NULL, NULL, "localhost",
                           "DNS:localhost,IP:127.0.0.1", false, -1, 30);
    write_cert(ca_pem, ca);
    write_cert(other_ca_pem, other);
    write_cert(cert_pem, cert);
    write_cert(old_pem, old);
    write_cert(self_pem, self);
    write_key(key_pem, key);
    X509_free(ca);
    X509_free(other);
    X509_free(cert);
    X509_free(old);
    X509_free(self);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(other_key);
    EVP_PKEY_free(key);
    return 0;
}

int remove_certs(void **state)
{
    (void)state;
    unlink(ca_pem);
    unlink(other_ca_pem);
    unlink(cert_pem);
    unlink(key_pem);
    unlink(old_pem);
    unlink(self_pem);
    rmdir(dir);
    return 0;
}

void run_ok(coil_task_fn body, void *arg)
{
    coil_test_result_t r;
    int err = coil_test_run(body, arg, NULL, &r);
    if (err)
        fail_msg("coil_test_run: %s: %s", coil_err_name(err), r.message);
}

/* Close srv (NULL: none), wait for its connections, drop it: err, or
 * the wait's error if err is 0. */
int end_server(coil_server_t *srv, int err)
{
    if (!srv)
        return err;
    coil_server_close(srv);
    int e = coil_server_wait_closed(srv);
    coil_server_unref(srv);
    return err ? err : e;
}

int client_ctx(const char *ca, coil_tls_context_t **out)
{
    int err = coil_tls_context_new(false, out);
    if (!err && ca)
        err = coil_tls_context_load_ca(*out, ca);
    return err;
}

int plain_server(coil_conn_handler_fn handler, void *arg,
                 coil_server_t **srv, char port[16])
{
    snprintf(port, 16, "0");
    int err = coil_server_open("127.0.0.1", "0", handler, arg, NULL, srv);
    if (!err)
        snprintf(port, 16, "%d", coil_server_port(*srv));
    return err;
}

int tls_server(coil_conn_handler_fn handler, void *arg,
               const coil_tls_options_t *opts, coil_server_t **srv,
               char port[16])
{
    coil_tls_context_t *sctx = NULL;
    *srv = NULL;
    snprintf(port, 16, "0");
    int err = coil_tls_context_new(true, &sctx);
    if (!err)
        err = coil_tls_context_load_cert(sctx, cert_pem, key_pem);
    if (!err)
        err = coil_tls_server_open("127.0.0.1", "0", sctx, handler, arg,
                                   NULL, opts, srv);
    coil_tls_context_unref(sctx); /* the server holds its own */
    if (!err)
        snprintf(port, 16, "%d", coil_server_port(*srv));
    return err;
}

struct pair_server {
    coil_stream_t *plain;
    coil_stream_t *out;
};

static int pair_server(void *arg)
{
    struct pair_server *p = arg;
    coil_tls_context_t *sctx = NULL;
    int err = coil_tls_context_new(true, &sctx);
    if (!err)
        err = coil_tls_context_load_cert(sctx, cert_pem, key_pem);
    if (!err)
        err = coil_tls_start(p->plain, sctx, true, NULL, &p->out);
    coil_tls_context_unref(sctx);
    return err;
}

int tls_pair(int sndbuf, coil_tls_context_t *cctx,
             const coil_tls_options_t *opts, coil_stream_t **client,
             coil_stream_t **server, int *server_fd)
{
    int sv[2];
    *client = *server = NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return -errno;
    if (sndbuf > 0)
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (server_fd)
        *server_fd = sv[1];
    coil_stream_t *plain = NULL;
    struct pair_server ps = {0};
    coil_task_t *task = NULL;
    coil_tls_context_t *own = NULL;
    int err = coil_stream_open_fd(sv[0], &plain);
    if (err) {
        close(sv[0]);
        close(sv[1]);
        return err;
    }
    if ((err = coil_stream_open_fd(sv[1], &ps.plain)) != 0) {
        close(sv[1]);
        coil_stream_unref(plain);
        return err;
    }
    if (!cctx && !(err = client_ctx(ca_pem, &own)))
        cctx = own;
    if (!err)
        err = coil_task_spawn(coil_running_loop(), pair_server, &ps, &task);
    if (!err) {
        err = coil_tls_start(plain, cctx, false, opts, client);
        if (err)
            coil_task_cancel(task); /* it would wait for the handshake */
        int e = coil_task_join(task);
        err = err ? err : e;
    }
    coil_task_unref(task);
    coil_tls_context_unref(own);
    coil_stream_unref(plain);
    coil_stream_unref(ps.plain);
    *server = ps.out;
    if (err) {
        coil_stream_unref(*client);
        coil_stream_unref(*server);
        *client = *server = NULL;
    }
    return err;
}
