/* SPDX-License-Identifier: MIT */
/*
 * tls.c - TLS streams on OpenSSL (coil/tls.h): a stream transport
 * (stream_internal.h) that owns the socket through a watch and runs
 * OpenSSL over a BIO of its own, which never blocks and never waits: it
 * only moves bytes between OpenSSL and the socket's non-blocking calls.
 *
 * Reading: SSL_read, whose BIO receives from the socket (with OpenSSL's
 * read-ahead, as much as its buffer takes in one recv); when the socket
 * is empty the BIO says "retry", and the reading task waits for the
 * socket through the watch (the one suspension: a cancel there takes
 * nothing), then reads again. Writing: SSL_write turns at most 16 KiB of
 * plaintext into records at a time; the BIO sends them at once as far as
 * the socket takes them, and keeps the rest in the transport's own
 * buffer, flushed by the watch's writer whenever the socket is writable.
 * That buffer counts as unsent for the stream (the pending op): drain and
 * close wait for it. Past 64 KiB of it, send takes no more plaintext
 * (-EAGAIN) until it shrinks. Neither way copies the ciphertext once more
 * than OpenSSL itself does (memory BIOs would, twice each way).
 *
 * The handshake runs in the task that opens the connection, before the
 * stream exists, under a timeout scope. Verification failures become
 * -EKEYREJECTED, other handshake failures -EPROTO, with the reason kept
 * per thread for coil_tls_last_error. OpenSSL's error queue is cleared
 * before each call and emptied after a failure.
 *
 * Lifetime: the connection is the stream's (close, once), and also held
 * by a read in progress, which may wake (with -EBADF) after the stream
 * closed; the last of them frees it. A read abandoned with its loop
 * never wakes: the close drops its hold.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil/tls.h"

static _Thread_local char last_error[256];

const char *coil_tls_last_error(void)
{
    return last_error;
}

#ifndef COIL_HAVE_OPENSSL

bool coil_tls_available(void)
{
    return false;
}

static int none(void)
{
    snprintf(last_error, sizeof(last_error),
             "this build of coil has no TLS (OpenSSL was not found when "
             "it was configured)");
    return -ENOTSUP;
}

int coil_tls_context_new(bool server, coil_tls_context_t **out)
{
    (void)server;
    if (out)
        *out = NULL;
    return out ? none() : -EINVAL;
}

coil_tls_context_t *coil_tls_context_ref(coil_tls_context_t *ctx)
{
    return ctx;
}

void coil_tls_context_unref(coil_tls_context_t *ctx)
{
    (void)ctx;
}

int coil_tls_context_load_cert(coil_tls_context_t *ctx, const char *cert,
                               const char *key)
{
    (void)ctx, (void)cert, (void)key;
    return none();
}

int coil_tls_context_load_ca(coil_tls_context_t *ctx, const char *ca)
{
    (void)ctx, (void)ca;
    return none();
}

int coil_tls_context_set_verify(coil_tls_context_t *ctx,
                                coil_tls_verify_t mode)
{
    (void)ctx, (void)mode;
    return none();
}

int coil_tls_context_set_alpn(coil_tls_context_t *ctx,
                              const char *const *protocols, size_t n)
{
    (void)ctx, (void)protocols, (void)n;
    return none();
}

int coil_tls_open(const char *host, const char *port, coil_tls_context_t *ctx,
                  const coil_tls_options_t *opts, coil_stream_t **out)
{
    (void)host, (void)port, (void)ctx, (void)opts;
    if (out)
        *out = NULL;
    return none();
}

int coil_tls_start(coil_stream_t *plain, coil_tls_context_t *ctx,
                   bool server, const coil_tls_options_t *opts,
                   coil_stream_t **out)
{
    (void)plain, (void)ctx, (void)server, (void)opts;
    if (out)
        *out = NULL;
    return none();
}

int coil_tls_server_open(const char *host, const char *port,
                         coil_tls_context_t *ctx, coil_conn_handler_fn handler,
                         void *arg, const coil_server_options_t *server_opts,
                         const coil_tls_options_t *opts, coil_server_t **out)
{
    (void)host, (void)port, (void)ctx, (void)handler, (void)arg,
        (void)server_opts, (void)opts;
    if (out)
        *out = NULL;
    return none();
}

const char *coil_tls_alpn(const coil_stream_t *s)
{
    (void)s;
    return NULL;
}

const char *coil_tls_version(const coil_stream_t *s)
{
    (void)s;
    return NULL;
}

#else /* COIL_HAVE_OPENSSL */

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "connect.h"
#include "loop_internal.h"
#include "net_internal.h"
#include "server_internal.h"
#include "stream_internal.h"
#include "sys.h"
#include "watch.h"

#define RECORD_MAX (16 * 1024)  /* plaintext per SSL_write */
#define PENDING_MAX (64 * 1024) /* records kept before send says -EAGAIN */
#define HANDSHAKE_LIMIT (60 * COIL_SEC) /* asyncio's ssl_handshake_timeout */
#define LINGER (30 * COIL_SEC) /* asyncio's ssl_shutdown_timeout */

bool coil_tls_available(void)
{
    return true;
}

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

/* Empty this thread's error queue (before an SSL call, whose outcome
 * SSL_get_error reads from it): a look first, since it is nearly always
 * empty and emptying costs more. */
static void clear_errors(void)
{
    if (ERR_peek_error())
        ERR_clear_error();
}

/* Keep OpenSSL's first queued reason (after what), and empty the queue. */
static void note_queue(const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[200] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    snprintf(last_error, sizeof(last_error), "%s%s%s", what,
             e ? ": " : "", reason);
    ERR_clear_error();
}

/* ------------------------------------------------------------------ */
/* Contexts                                                             */
/* ------------------------------------------------------------------ */

struct coil_tls_context {
    atomic_uint refs;
    bool server;
    SSL_CTX *ctx;
    unsigned char *alpn; /* the wire form: length-prefixed names */
    size_t alpn_len;
};

static int select_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned inlen, void *arg)
{
    (void)ssl;
    coil_tls_context_t *c = arg;
    unsigned char *sel;
    if (!c->alpn ||
        SSL_select_next_proto(&sel, outlen, c->alpn, (unsigned)c->alpn_len,
                              in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* none in common: go on without */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

int coil_tls_context_new(bool server, coil_tls_context_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    coil_tls_context_t *c = coil__calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!c->ctx) {
        note_queue("SSL_CTX_new");
        coil__free(c);
        return -ENOMEM;
    }
    atomic_init(&c->refs, 1);
    c->server = server;
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION);
    if (server) {
        SSL_CTX_set_alpn_select_cb(c->ctx, select_alpn, c);
    } else {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(c->ctx) != 1)
            ERR_clear_error(); /* no system store: load_ca may add one */
    }
    *out = c;
    return 0;
}

coil_tls_context_t *coil_tls_context_ref(coil_tls_context_t *ctx)
{
    if (ctx)
        atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

void coil_tls_context_unref(coil_tls_context_t *ctx)
{
    if (!ctx || atomic_fetch_sub(&ctx->refs, 1) != 1)
        return;
    SSL_CTX_free(ctx->ctx);
    coil__free(ctx->alpn);
    coil__free(ctx);
}

/* A file that cannot be read: its errno, said. */
static int file_error(const char *file)
{
    if (access(file, R_OK) == 0)
        return 0;
    int err = -errno;
    snprintf(last_error, sizeof(last_error), "%s: %s", file,
             strerror(-err));
    return err;
}

int coil_tls_context_load_cert(coil_tls_context_t *ctx, const char *cert,
                               const char *key)
{
    if (!ctx || !cert || !key)
        return -EINVAL;
    int err = file_error(cert);
    if (err || (err = file_error(key)))
        return err;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx->ctx, cert) != 1) {
        note_queue(cert);
        return -EKEYREJECTED;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ctx, key, SSL_FILETYPE_PEM) != 1) {
        note_queue(key);
        return -EKEYREJECTED;
    }
    if (SSL_CTX_check_private_key(ctx->ctx) != 1) {
        note_queue("the key does not match the certificate");
        return -EKEYREJECTED;
    }
    return 0;
}

int coil_tls_context_load_ca(coil_tls_context_t *ctx, const char *ca)
{
    if (!ctx || !ca)
        return -EINVAL;
    int err = file_error(ca);
    if (err)
        return err;
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx->ctx, ca, NULL) != 1) {
        note_queue(ca);
        return -EKEYREJECTED;
    }
    if (ctx->server) { /* the authorities a client may be certified by */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx->ctx, names);
        ERR_clear_error();
    }
    return 0;
}

int coil_tls_context_set_verify(coil_tls_context_t *ctx,
                                coil_tls_verify_t mode)
{
    if (!ctx)
        return -EINVAL;
    int m;
    switch (mode) {
    case COIL_TLS_VERIFY_NONE:
        m = SSL_VERIFY_NONE;
        break;
    case COIL_TLS_VERIFY_OPTIONAL:
        m = SSL_VERIFY_PEER;
        break;
    case COIL_TLS_VERIFY_REQUIRED:
        m = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        break;
    default:
        return -EINVAL;
    }
    SSL_CTX_set_verify(ctx->ctx, m, NULL);
    return 0;
}

int coil_tls_context_set_alpn(coil_tls_context_t *ctx,
                              const char *const *protocols, size_t n)
{
    if (!ctx || !protocols || n == 0)
        return -EINVAL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = protocols[i] ? strlen(protocols[i]) : 0;
        if (l == 0 || l > 255)
            return -EINVAL;
        len += 1 + l;
    }
    unsigned char *wire = coil__malloc(len);
    if (!wire)
        return -ENOMEM;
    unsigned char *p = wire;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(protocols[i]);
        *p++ = (unsigned char)l;
        memcpy(p, protocols[i], l);
        p += l;
    }
    /* A client offers them; a server picks from them (select_alpn). */
    if (!ctx->server &&
        SSL_CTX_set_alpn_protos(ctx->ctx, wire, (unsigned)len) != 0) {
        coil__free(wire);
        note_queue("SSL_CTX_set_alpn_protos");
        return -ENOMEM;
    }
    coil__free(ctx->alpn);
    ctx->alpn = wire;
    ctx->alpn_len = len;
    return 0;
}

/* ------------------------------------------------------------------ */
/* A connection                                                         */
/* ------------------------------------------------------------------ */

struct tls {
    unsigned refs;         /* the stream's, and a read in progress */
    coil_loop_t *loop;
    int fd;
    struct coil__watch watch; /* of fd: reads wait on it, its writer
                                 flushes the records */
    SSL *ssl;              /* over a BIO of ours (the SSL owns it) */
    char *out;             /* records not yet sent: out[out_pos, out_len) */
    size_t out_pos, out_len, out_cap;
    char *pre;             /* start_tls: what came before, read first */
    size_t pre_pos, pre_len;
    int rerr;              /* the socket's receive error, or 0 */
    bool eof;              /* the socket's end came */
    bool peer_ended;       /* lingering: the peer's end came first */
    void (*wfn)(void *, int); /* the stream's writer, while started */
    void *warg;
    int werr;              /* the socket's send error, sticky */
    bool read_shut;
    bool closed;
    bool in_recv;
    /* After a clean close: the socket stays open, its write side shut,
     * what comes is read and dropped until the peer's end or the limit;
     * closing with unread bytes would make the kernel reset the
     * connection, and the peer lose what it had not read yet. */
    bool lingering;
    bool unclean_eof_ok;   /* the options' accept_unclean_eof */
    int64_t linger_ns;     /* the options' shutdown_timeout_ns */
    coil_handle_t *linger_timer;
    struct coil__close_hook hook;
    /* A reference to the context it was made with: the server's ALPN
     * callback reads the context's list during the handshake, whoever
     * else drops theirs meanwhile. */
    coil_tls_context_t *ctx;
    char alpn[256];
};

static void tls_free(struct tls *t)
{
    SSL_free(t->ssl);
    coil_tls_context_unref(t->ctx);
    coil__free(t->out);
    coil__free(t->pre);
    coil__free(t);
}

static void release(struct tls *t)
{
    if (--t->refs == 0)
        tls_free(t);
}

static size_t unsent(const struct tls *t)
{
    return t->out_len - t->out_pos;
}

/* Send what the socket takes now, from p, without waiting: the count
 * sent; a failure is kept in werr (every later send fails with it). */
static size_t send_now(struct tls *t, const char *p, size_t n)
{
    size_t done = 0;
    while (!t->werr && done < n) {
        ssize_t r = COIL__SYS(COIL__SYS_SEND,
                              send(t->fd, p + done, n - done,
                                   COIL__SEND_FLAGS | COIL__DONTWAIT));
        if (r >= 0)
            done += (size_t)r;
        else if (errno != EINTR && !coil__would_block(errno))
            t->werr = -errno;
        else if (errno != EINTR)
            break;
    }
    return done;
}

/* Send the records kept, as far as the socket takes them. 0, or the
 * send error (kept: every later send fails with it). */
static int push(struct tls *t)
{
    if (t->out_pos < t->out_len)
        t->out_pos +=
            send_now(t, t->out + t->out_pos, t->out_len - t->out_pos);
    if (t->werr || t->out_pos == t->out_len)
        t->out_pos = t->out_len = 0; /* what failed is dropped */
    return t->werr;
}

/* Keep p[0, n) after the records kept. -ENOMEM, or 0. */
static int keep(struct tls *t, const char *p, size_t n)
{
    if (t->out_pos == t->out_len)
        t->out_pos = t->out_len = 0;
    if (t->out_cap - t->out_len < n) {
        if (t->out_pos) {
            memmove(t->out, t->out + t->out_pos, t->out_len - t->out_pos);
            t->out_len -= t->out_pos;
            t->out_pos = 0;
        }
        size_t cap = t->out_cap ? t->out_cap : 4096;
        while (cap - t->out_len < n)
            cap *= 2;
        if (cap != t->out_cap) {
            char *b = t->out ? coil__realloc(t->out, cap)
                             : coil__malloc(cap);
            if (!b)
                return -ENOMEM;
            t->out = b;
            t->out_cap = cap;
        }
    }
    memcpy(t->out + t->out_len, p, n);
    t->out_len += n;
    return 0;
}

/* ---- the BIO: OpenSSL's ciphertext to and from the socket ---- */

/* Records from OpenSSL: sent at once as far as the socket takes them
 * (when none are kept from before: the order stays), the rest kept. All
 * is taken: a failure to send or keep becomes werr, which the caller
 * reports. */
static int bio_write(BIO *b, const char *p, int len)
{
    struct tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t n = len > 0 ? (size_t)len : 0, done = 0;
    if (t->werr)
        return len;
    if (t->out_pos == t->out_len)
        done = send_now(t, p, n);
    if (!t->werr && done < n && keep(t, p + done, n - done) != 0)
        t->werr = -ENOMEM; /* a record cut short: no more writing */
    return len;
}

/* Ciphertext for OpenSSL: what start_tls found first, then the socket.
 * An empty socket is "retry" (SSL_ERROR_WANT_READ); its end, 0 with eof
 * set; its error, -1 with rerr set. */
static int bio_read(BIO *b, char *p, int len)
{
    struct tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t n = len > 0 ? (size_t)len : 0;
    if (t->pre_pos < t->pre_len) {
        size_t k = t->pre_len - t->pre_pos < n ? t->pre_len - t->pre_pos : n;
        memcpy(p, t->pre + t->pre_pos, k);
        t->pre_pos += k;
        return (int)k;
    }
    for (;;) {
        ssize_t r = COIL__RR_IN(COIL__SYS_RECV, p, n, NULL, NULL,
                                COIL__SYS(COIL__SYS_RECV,
                                          recv(t->fd, p,
                                               COIL__CHAOS_LEN(t->fd, n),
                                               COIL__DONTWAIT)));
        if (r > 0)
            return (int)r;
        if (r == 0) {
            t->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (coil__would_block(errno)) {
            BIO_set_retry_read(b);
            return -1;
        }
        t->rerr = -errno;
        return -1;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH; /* the records are sent as they come */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "coil");
    if (m && (BIO_meth_set_write(m, bio_write) != 1 ||
              BIO_meth_set_read(m, bio_read) != 1 ||
              BIO_meth_set_ctrl(m, bio_ctrl) != 1 ||
              BIO_meth_set_create(m, bio_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    bio_method = m; /* kept for the program's life */
}

static void on_fd_writable(void *arg, int result);

/* Send what is kept; keep the writer going while records remain. */
static int flush(struct tls *t)
{
    int err = push(t);
    if ((t->out_pos < t->out_len || t->wfn) &&
        !coil__watch_busy(&t->watch, COIL__EV_WRITE) && !t->werr)
        (void)coil__watch_start(&t->watch, COIL__EV_WRITE, on_fd_writable, t,
                                0); /* on failure the next flush tries */
    return err;
}

/* The socket is writable: send, then tell the stream (which may close
 * it: t is not touched after). */
static void on_fd_writable(void *arg, int result)
{
    struct tls *t = arg;
    if (result < 0 && !t->werr)
        t->werr = -EBADF;
    (void)push(t);
    if (t->out_pos == t->out_len || t->werr)
        coil__watch_stop(&t->watch, COIL__EV_WRITE);
    if (t->wfn)
        t->wfn(t->warg, 0);
}

/* A failed SSL call (e: SSL_get_error's): its error, and why. */
static int failed(struct tls *t, int e)
{
    /* The verification's own failure only: with VERIFY_NONE a failed
     * result is kept but ignored, and must not name later errors. */
    unsigned long top = ERR_peek_error();
    long v = SSL_get_verify_result(t->ssl);
    if (e == SSL_ERROR_SSL && v != X509_V_OK &&
        ERR_GET_LIB(top) == ERR_LIB_SSL &&
        ERR_GET_REASON(top) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(last_error, sizeof(last_error),
                 "certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
        return -EKEYREJECTED;
    }
    note_queue(e == SSL_ERROR_SSL ? "TLS protocol error"
                                  : "TLS: unexpected state");
    return -EPROTO;
}

/* The socket's end came: -ECONNABORTED, said (no close_notify came
 * first, so what came may have been cut short). */
static int unclean_end(void)
{
    snprintf(last_error, sizeof(last_error),
             "the peer closed the connection without TLS's close_notify: "
             "what came may be cut short");
    return -ECONNABORTED;
}

/* An SSL call that wanted more (or failed on the socket): the socket's
 * state, if that is why (its end, its error); else 0. */
static int socket_state(const struct tls *t)
{
    return t->rerr ? t->rerr : t->eof ? unclean_end() : 0;
}

/* ---- the transport ---- */

/* After SSL_read or SSL_peek returned r: r (> 0), 0 at the end
 * (close_notify; an unclean end too, if asked for), -EAGAIN if OpenSSL
 * wants more from the socket, or the error. What reading made (key
 * updates, alerts) is sent. */
static int read_outcome(struct tls *t, int r)
{
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    (void)flush(t);
    if (r > 0)
        return r;
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    int err = socket_state(t);
    if (err || e == SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        if (err == -ECONNABORTED && t->unclean_eof_ok)
            return 0; /* asked for: the end, without close_notify */
        return err ? err : -EAGAIN;
    }
    return failed(t, e);
}

static ssize_t tls_recv(void *arg, void *p, size_t n, bool wait_first)
{
    struct tls *t = arg;
    /* After a short read the socket is most likely empty: wait first,
     * unless OpenSSL holds bytes already (read-ahead). */
    bool wait = wait_first && !SSL_has_pending(t->ssl) && !t->eof &&
                !t->rerr && t->pre_pos == t->pre_len;
    for (;;) {
        if (t->read_shut)
            return -EBADF;
        if (wait) {
            t->refs++;
            t->in_recv = true;
            int err = coil__sock_wait(&t->watch, t->fd, COIL__EV_READ);
            t->in_recv = false;
            bool closed = t->closed;
            release(t);
            if (closed)
                return -EBADF;
            if (err)
                return err;
        }
        clear_errors();
        int r = read_outcome(
            t, SSL_read(t->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n));
        if (r != -EAGAIN)
            return r;
        wait = true;
    }
}

/* at_eof's look: what has arrived is processed (SSL_peek moves records
 * from the socket into OpenSSL, where the next read finds them), so a
 * close_notify that came shows as the end. Not while a task waits to
 * read: taking the socket's bytes would leave it waiting for them. */
static int tls_peek(void *arg)
{
    struct tls *t = arg;
    if (SSL_pending(t->ssl) > 0)
        return 1;
    if (t->in_recv || t->read_shut)
        return -EAGAIN;
    char c;
    clear_errors();
    int r = read_outcome(t, SSL_peek(t->ssl, &c, 1));
    return r > 0 ? 1 : r;
}

static ssize_t tls_send(void *arg, const void *p, size_t n)
{
    struct tls *t = arg;
    if (t->werr)
        return t->werr;
    if (unsent(t) >= PENDING_MAX)
        return -EAGAIN; /* the writer is called as it shrinks */
    clear_errors();
    int r = SSL_write(t->ssl, p, n > RECORD_MAX ? RECORD_MAX : (int)n);
    if (r <= 0)
        return t->werr ? t->werr : failed(t, SSL_get_error(t->ssl, r));
    int err = flush(t);
    return err ? err : r;
}

static int tls_writer_start(void *arg, void (*fn)(void *, int), void *warg)
{
    struct tls *t = arg;
    t->wfn = fn;
    t->warg = warg;
    if (coil__watch_busy(&t->watch, COIL__EV_WRITE))
        return 0;
    return coil__watch_start(&t->watch, COIL__EV_WRITE, on_fd_writable, t, 0);
}

static void tls_writer_stop(void *arg)
{
    struct tls *t = arg;
    t->wfn = NULL;
    t->warg = NULL;
    if (t->out_pos == t->out_len)
        coil__watch_stop(&t->watch, COIL__EV_WRITE);
}

static bool tls_writer_busy(const void *arg)
{
    const struct tls *t = arg;
    return t->wfn != NULL;
}

static size_t tls_pending(const void *arg)
{
    return unsent(arg);
}

static int tls_send_error(const void *arg)
{
    const struct tls *t = arg;
    return t->werr;
}

static int tls_shutdown(void *arg)
{
    struct tls *t = arg;
    clear_errors();
    if (SSL_shutdown(t->ssl) < 0)
        ERR_clear_error();
    return flush(t);
}

static void tls_shut_read(void *arg)
{
    struct tls *t = arg;
    t->read_shut = true;
    coil__watch_shut(&t->watch, COIL__EV_READ);
}

/* The lingering close is over: the socket goes, and the hold. */
static void linger_end(struct tls *t)
{
    if (!t->lingering)
        return;
    t->lingering = false;
    if (t->linger_timer) {
        coil_handle_cancel(t->linger_timer);
        coil_handle_unref(t->linger_timer);
        t->linger_timer = NULL;
    }
    coil__loop_on_close_cancel(&t->hook);
    coil__watch_close(&t->watch);
    (void)close(t->fd);
    release(t);
}

static void linger_timeout(void *arg)
{
    struct tls *t = arg;
    coil_handle_unref(t->linger_timer);
    t->linger_timer = NULL;
    linger_end(t);
}

static void linger_loop_close(struct coil__close_hook *hook)
{
    linger_end(coil__container_of(hook, struct tls, hook));
}

/* Readable while lingering: drop what came. The peer's end ends the
 * linger once the records still unsent are out too (the peer may have
 * shut only its own side, and still read); an error ends it at once. */
static void linger_readable(void *arg, int result)
{
    struct tls *t = arg;
    char drop[4096];
    for (;;) {
        ssize_t n = result < 0 ? -1
                               : recv(t->fd, drop, sizeof(drop),
                                      COIL__DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && result >= 0 && errno == EINTR)
            continue;
        if (n < 0 && result >= 0 && coil__would_block(errno))
            return;
        if (n == 0 && t->out_pos < t->out_len && !t->werr) {
            t->peer_ended = true; /* linger_writable ends it */
            coil__watch_stop(&t->watch, COIL__EV_READ);
            return;
        }
        linger_end(t);
        return;
    }
}

static void linger_writable(void *arg, int result)
{
    struct tls *t = arg;
    if (result < 0 || push(t) || t->out_pos == t->out_len) {
        coil__watch_stop(&t->watch, COIL__EV_WRITE);
        if (!t->werr && result >= 0)
            (void)shutdown(t->fd, SHUT_WR);
        if (t->peer_ended || t->werr || result < 0)
            linger_end(t);
    }
}

/* Close cleanly: close_notify after everything, the write side shut once
 * it is out, then linger (above). 0, or an error: close at once. */
static int linger_begin(struct tls *t)
{
    clear_errors();
    if (SSL_shutdown(t->ssl) < 0)
        ERR_clear_error();
    int err = t->werr ? t->werr : push(t);
    if (err)
        return err;
    coil__watch_stop(&t->watch, COIL__EV_WRITE);
    if (t->out_pos == t->out_len)
        (void)shutdown(t->fd, SHUT_WR);
    else if ((err = coil__watch_start(&t->watch, COIL__EV_WRITE,
                                      linger_writable, t, 0)) != 0)
        return err;
    if ((err = coil__watch_start(&t->watch, COIL__EV_READ, linger_readable,
                                 t, COIL__WATCH_REPLACE)) != 0 ||
        (err = coil_loop_call_later(t->loop, t->linger_ns, linger_timeout,
                                    t, &t->linger_timer)) != 0) {
        coil__watch_stop(&t->watch, COIL__EV_READ);
        coil__watch_stop(&t->watch, COIL__EV_WRITE);
        return err;
    }
    t->lingering = true;
    t->refs++;
    t->hook.on_close = linger_loop_close;
    coil__loop_on_close(t->loop, &t->hook);
    return 0;
}

static void tls_close(void *arg, bool clean)
{
    struct tls *t = arg;
    t->closed = true;
    t->wfn = NULL;
    if (!(clean && !t->werr && !coil__loop_closed(t->loop) &&
          linger_begin(t) == 0)) {
        coil__watch_close(&t->watch);
        (void)close(t->fd);
    }
    if (t->in_recv && coil__loop_closed(t->loop)) {
        t->in_recv = false; /* abandoned with the loop: never wakes */
        release(t);
    }
    release(t);
}

static int tls_address(void *arg, struct sockaddr_storage *addr, bool peer)
{
    struct tls *t = arg;
    socklen_t len = sizeof(*addr);
    int r = peer ? getpeername(t->fd, (struct sockaddr *)addr, &len)
                 : getsockname(t->fd, (struct sockaddr *)addr, &len);
    return r < 0 ? -errno : (int)len;
}

static const struct coil__transport_ops tls_ops = {
    .recv = tls_recv,
    .peek = tls_peek,
    .send = tls_send,
    .writer_start = tls_writer_start,
    .writer_stop = tls_writer_stop,
    .writer_busy = tls_writer_busy,
    .shutdown = tls_shutdown,
    .shut_read = tls_shut_read,
    .close = tls_close,
    .address = tls_address,
    .pending = tls_pending,
    .send_error = tls_send_error,
};

/* ---- the handshake ---- */

/* Send every record made so far, waiting for the socket as needed. */
static int flush_wait(struct tls *t)
{
    int err;
    while (!(err = push(t)) && t->out_pos < t->out_len)
        err = coil__sock_wait(&t->watch, t->fd, COIL__EV_WRITE);
    return err;
}

static int handshake(struct tls *t, int64_t timeout)
{
    coil_timeout_t *scope;
    int err = coil_timeout_begin(timeout, &scope);
    if (err)
        return err;
    for (;;) {
        clear_errors();
        int r = SSL_do_handshake(t->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
        if ((err = flush_wait(t)) != 0) /* an alert too, on failure */
            break;
        if (r == 1)
            break;
        if ((err = socket_state(t)) != 0)
            break;
        if (e != SSL_ERROR_WANT_READ) {
            err = failed(t, e);
            break;
        }
        if ((err = coil__sock_wait(&t->watch, t->fd, COIL__EV_READ)) != 0)
            break;
    }
    err = coil_timeout_end(scope, err);
    if (err == -ETIMEDOUT)
        snprintf(last_error, sizeof(last_error),
                 "the TLS handshake did not finish in time");
    return err;
}

/* The loop closed while the handshake waited: its task never resumes,
 * so what it made is let go here. */
static void handshake_loop_close(struct coil__close_hook *hook)
{
    struct tls *t = coil__container_of(hook, struct tls, hook);
    coil__watch_close(&t->watch);
    (void)close(t->fd);
    tls_free(t);
}

/* The name (or address) the certificate must have, and SNI. */
static int set_host(struct tls *t, const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    bool ip = inet_pton(AF_INET, host, buf) == 1 ||
              inet_pton(AF_INET6, host, buf) == 1;
    X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set_hostflags(param,
                                    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip)
        return X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 ? 0 : -EINVAL;
    char name[256]; /* SNI's macro takes a mutable pointer */
    if (strlen(host) >= sizeof(name))
        return -EINVAL;
    memcpy(name, host, strlen(host) + 1);
    if (SSL_set1_host(t->ssl, host) != 1 ||
        SSL_set_tlsext_host_name(t->ssl, name) != 1)
        return -ENOMEM;
    return 0;
}

/*
 * The connection over fd (the caller's until this returns: on failure it
 * is closed here), handshake made, as a stream in *out.
 */
static int connect_tls(int fd, coil_tls_context_t *ctx, bool server,
                       const char *host, const char *rest, size_t rest_len,
                       const coil_tls_options_t *opts, coil_stream_t **out)
{
    last_error[0] = '\0';
    coil_loop_t *loop = coil_running_loop();
    struct tls *t = coil__calloc(1, sizeof(*t));
    if (!t) {
        (void)close(fd);
        return -ENOMEM;
    }
    t->refs = 1;
    t->loop = loop;
    t->fd = fd;
    coil__list_init(&t->hook.link); /* linked only while it waits */
    int err = coil__watch_init(&t->watch, loop, fd, COIL__WATCH_OWNED);
    if (err) {
        coil__free(t);
        (void)close(fd);
        return err;
    }
    t->ctx = coil_tls_context_ref(ctx);
    coil__sock_no_sigpipe(fd);
    coil__sock_nodelay(fd);
    ERR_clear_error();
    (void)pthread_once(&bio_once, bio_method_init);
    BIO *bio = NULL;
    if (!bio_method || !(t->ssl = SSL_new(ctx->ctx)) ||
        !(bio = BIO_new(bio_method))) {
        note_queue("SSL_new");
        err = -ENOMEM;
        goto fail;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* one BIO both ways, the SSL's */
    SSL_set_read_ahead(t->ssl, 1); /* whole records, and more, per recv */
    /* OpenSSL's record buffers (some 34 KiB) only while records are in
     * them: an idle connection keeps none. */
    SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        const char *name = opts && opts->server_hostname
                               ? opts->server_hostname
                               : host;
        if (name && (err = set_host(t, name)) != 0)
            goto fail;
    }
    if (rest_len) {
        if (!(t->pre = coil__malloc(rest_len))) {
            err = -ENOMEM;
            goto fail;
        }
        memcpy(t->pre, rest, rest_len);
        t->pre_len = rest_len;
    }
    int64_t limit = opts && opts->handshake_timeout_ns > 0
                        ? opts->handshake_timeout_ns
                        : HANDSHAKE_LIMIT;
    t->linger_ns = opts && opts->shutdown_timeout_ns > 0
                       ? opts->shutdown_timeout_ns
                       : LINGER;
    t->unclean_eof_ok = opts && opts->accept_unclean_eof;
    t->hook.on_close = handshake_loop_close;
    coil__loop_on_close(loop, &t->hook);
    err = handshake(t, limit);
    coil__loop_on_close_cancel(&t->hook);
    if (err)
        goto fail;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    if (alpn && alpn_len) {
        memcpy(t->alpn, alpn, alpn_len);
        t->alpn[alpn_len] = '\0';
    }
    if ((err = coil__stream_open_transport(&tls_ops, t, loop, out)) != 0)
        goto fail;
    return 0;

fail:
    ERR_clear_error();
    coil__watch_close(&t->watch);
    (void)close(fd);
    tls_free(t);
    return err;
}

static bool bad_options(const coil_tls_options_t *opts)
{
    return opts &&
           (opts->handshake_timeout_ns < 0 || opts->shutdown_timeout_ns < 0 ||
            (opts->server_hostname && !opts->server_hostname[0]));
}

static int check(coil_tls_context_t *ctx, const coil_tls_options_t *opts,
                 coil_stream_t **out)
{
    if (out)
        *out = NULL;
    if (!ctx || !out || bad_options(opts))
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    return 0;
}

int coil_tls_open(const char *host, const char *port, coil_tls_context_t *ctx,
                  const coil_tls_options_t *opts, coil_stream_t **out)
{
    int err = check(ctx, opts, out);
    if (err)
        return err;
    if (ctx->server || !host)
        return -EINVAL;
    int fd;
    if ((err = coil__connect_host(host, port, &fd)) != 0)
        return err;
    return connect_tls(fd, ctx, false, host, NULL, 0, opts, out);
}

int coil_tls_start(coil_stream_t *plain, coil_tls_context_t *ctx,
                   bool server, const coil_tls_options_t *opts,
                   coil_stream_t **out)
{
    int err = check(ctx, opts, out);
    if (err)
        return err;
    if (!plain || ctx->server != server)
        return -EINVAL;
    /* A client that verifies must know whom: any trusted certificate
     * would do otherwise. */
    if (!server && !(opts && opts->server_hostname) &&
        (SSL_CTX_get_verify_mode(ctx->ctx) & SSL_VERIFY_PEER)) {
        snprintf(last_error, sizeof(last_error),
                 "start_tls as a client that verifies needs "
                 "opts->server_hostname");
        return -EINVAL;
    }
    if ((err = coil__stream_flush(plain)) != 0)
        return err;
    int fd;
    char *rest;
    size_t rest_len;
    if ((err = coil__stream_detach(plain, &fd, &rest, &rest_len)) != 0)
        return err;
    err = connect_tls(fd, ctx, server, NULL, rest, rest_len, opts, out);
    coil__free(rest);
    return err;
}

/* A TLS server: a plain one whose handler is this, over the user's. */
struct tls_server {
    coil_tls_context_t *ctx;
    coil_conn_handler_fn handler;
    void *arg;
    coil_tls_options_t opts;
};

static int tls_conn(coil_stream_t *plain, void *arg)
{
    struct tls_server *ts = arg;
    coil_stream_t *s;
    int err = coil_tls_start(plain, ts->ctx, true, &ts->opts, &s);
    if (err)
        return err; /* this connection only: the server goes on */
    err = ts->handler(s, ts->arg);
    coil_stream_unref(s);
    return err;
}

static void tls_server_free(void *arg)
{
    struct tls_server *ts = arg;
    coil_tls_context_unref(ts->ctx);
    coil__free(ts);
}

int coil_tls_server_open(const char *host, const char *port,
                         coil_tls_context_t *ctx, coil_conn_handler_fn handler,
                         void *arg, const coil_server_options_t *server_opts,
                         const coil_tls_options_t *opts, coil_server_t **out)
{
    if (out)
        *out = NULL;
    if (!ctx || !ctx->server || !handler || !out || bad_options(opts))
        return -EINVAL;
    struct tls_server *ts = coil__calloc(1, sizeof(*ts));
    if (!ts)
        return -ENOMEM;
    ts->ctx = coil_tls_context_ref(ctx);
    ts->handler = handler;
    ts->arg = arg;
    if (opts) {
        ts->opts = *opts;
        ts->opts.server_hostname = NULL; /* a client's; not kept */
    }
    int err =
        coil_server_open(host, port, tls_conn, ts, server_opts, out);
    if (err) {
        tls_server_free(ts);
        return err;
    }
    coil__server_set_arg_free(*out, tls_server_free);
    return 0;
}

const char *coil_tls_alpn(const coil_stream_t *s)
{
    const struct tls *t = coil__stream_transport(s, &tls_ops);
    return t && t->alpn[0] ? t->alpn : NULL;
}

const char *coil_tls_version(const coil_stream_t *s)
{
    const struct tls *t = coil__stream_transport(s, &tls_ops);
    return t ? SSL_get_version(t->ssl) : NULL;
}

#endif /* COIL_HAVE_OPENSSL */
