/* SPDX-License-Identifier: MIT */
/**
 * @file coil/tls.h
 * TLS streams (asyncio's open_connection(ssl=...) and
 * start_tls), on OpenSSL.
 *
 * A TLS stream is a coil_stream_t like any other: every call of
 * coil/stream.h works on it unchanged (reading calls, write, drain and
 * the water marks, close, wait_closed), and its cancellation rules are
 * the same: a read cancelled while it waits loses nothing. Underneath,
 * the loop owns the socket and OpenSSL only ever gets what the socket
 * has without waiting, so no OpenSSL call ever blocks the loop.
 *
 * TLS is optional: coil is built with it when CMake finds OpenSSL's
 * headers (Debian: libssl-dev), and says at configure time whether it
 * did. Without it every call here is present but fails with -ENOTSUP
 * (coil_tls_available says which build this is).
 *
 * Verification is on by default for clients: the server's certificate
 * must chain to a trusted authority (the system's store, or those given
 * with coil_tls_context_load_ca) and name the host connected to. A
 * failure is -EKEYREJECTED, and coil_tls_last_error says why.
 *
 * Ending: close sends TLS's close_notify after everything written, then
 * lets the socket linger until the peer's end (shutdown_timeout_ns);
 * abort sends nothing. A peer's close_notify is the end of the stream (a
 * read returns 0); a connection that ends without one (the peer vanished,
 * or someone cut the stream short) makes the read fail with
 * -ECONNABORTED, so that a truncated reply is never taken for a whole
 * one (unless accept_unclean_eof). write_eof sends close_notify and keeps
 * reading (TLS 1.3's half-close).
 *
 * Renegotiation is refused (OpenSSL's default for servers, and set for
 * clients); TLS 1.3 key updates and session tickets are handled inside
 * the reads. OpenSSL's error queue is cleared around every call, so an
 * error of one connection never shows on another.
 */
#ifndef COIL_TLS_H
#define COIL_TLS_H

#include "common.h"
#include "server.h"
#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A TLS configuration (OpenSSL's SSL_CTX): reference counted, shared by
 * any number of connections, of any loop; set it up before the first
 * connection uses it. */
typedef struct coil_tls_context coil_tls_context_t;

/** Whether this build of coil has TLS. */
COIL_API bool coil_tls_available(void);

/**
 * A context for clients (server false) or servers. A client's verifies
 * the peer against the system's trusted authorities; a server's asks
 * for no client certificate and needs its own (coil_tls_context_load_cert)
 * before use. TLS 1.2 at least. Errors: -EINVAL (out NULL), -ENOMEM,
 * -ENOTSUP (no TLS in this build).
 */
COIL_API int coil_tls_context_new(bool server, coil_tls_context_t **out);
/** Take a reference; returns ctx. NULL gives NULL. Thread-safe. */
COIL_API coil_tls_context_t *coil_tls_context_ref(coil_tls_context_t *ctx);
/** Drop a reference; the last one frees the context. Accepts NULL.
 * Thread-safe. Every TLS stream (and a handshake in progress) holds a
 * reference of its own to the context it was made with, so a context may
 * be dropped while its connections live. */
COIL_API void coil_tls_context_unref(coil_tls_context_t *ctx);

/** The certificate chain (PEM, the leaf first) and its private key (PEM)
 * this side presents: a server's, or a client's when the server asks
 * for one. Errors: -EINVAL, -ENOENT/-EACCES (the files), -EKEYREJECTED
 * (not a certificate or key, or the key does not match; see
 * coil_tls_last_error), -ENOTSUP. */
COIL_API int coil_tls_context_load_cert(coil_tls_context_t *ctx,
                                        const char *cert_file,
                                        const char *key_file);

/** Trust the authorities in ca_file (PEM) too (a client: the servers'; a
 * server: the clients'). Errors as coil_tls_context_load_cert. */
COIL_API int coil_tls_context_load_ca(coil_tls_context_t *ctx,
                                      const char *ca_file);

/** How the peer's certificate is checked (coil_tls_context_set_verify). */
typedef enum coil_tls_verify {
    COIL_TLS_VERIFY_NONE,     /**< take any certificate, or none */
    COIL_TLS_VERIFY_OPTIONAL, /**< a server: ask, check one if given */
    COIL_TLS_VERIFY_REQUIRED, /**< the default for clients */
} coil_tls_verify_t;

/** How the peer's certificate is checked. Errors: -EINVAL, -ENOTSUP. */
COIL_API int coil_tls_context_set_verify(coil_tls_context_t *ctx,
                                         coil_tls_verify_t mode);

/** The application protocols offered (a client) or accepted (a server,
 * which picks the first of its own that the client offers), in order of
 * preference, e.g.\ {"h2", "http/1.1"}. Errors: -EINVAL (a name empty or
 * longer than 255 bytes, n 0), -ENOMEM, -ENOTSUP. */
COIL_API int coil_tls_context_set_alpn(coil_tls_context_t *ctx,
                                       const char *const *protocols,
                                       size_t n);

/** Options of the connecting calls; zero-initialise. */
typedef struct coil_tls_options {
    /** The name to verify the server's certificate against and send as
     * SNI (a client); NULL: the host given to coil_tls_open (an address
     * is verified as an address and sends no SNI). coil_tls_start as a
     * client that verifies needs it (it knows no host). "": -EINVAL. */
    const char *server_hostname;
    /** The handshake's limit; 0: 60 s (asyncio's). Negative: -EINVAL. */
    int64_t handshake_timeout_ns;
    /** A clean close (coil_stream_close) sends close_notify after what is
     * unsent, shuts the socket's write side, then keeps reading (and
     * dropping) until the peer's end, so that the kernel does not reset
     * the connection under data the peer has not read yet. This is that
     * wait's limit, after which the socket is closed anyway; the stream
     * itself is closed at once (coil_stream_wait_closed does not wait
     * for it). 0: 30 s (asyncio's). Negative: -EINVAL. */
    int64_t shutdown_timeout_ns;
    /** false (the default): the peer's end without close_notify is an
     * error, -ECONNABORTED, since what came may have been cut short by
     * an attacker. true: it is an end of stream (0) like a clean one;
     * for protocols that frame their own messages (HTTP with
     * Content-Length), whose servers often skip close_notify. */
    bool accept_unclean_eof;
} coil_tls_options_t;

/**
 * Connect to host:port (coil_stream_open's resolution and connection
 * race) and make the TLS handshake as a client with ctx; *out receives
 * the TLS stream. Errors: coil_stream_open's; -EKEYREJECTED (the
 * server's certificate failed verification), -EPROTO (the handshake
 * failed otherwise: no common version or cipher, a corrupted record),
 * -ECONNRESET / -ECONNABORTED / -EPIPE (the peer went during the
 * handshake), -ETIMEDOUT (the handshake's limit), -ECANCELED, -EINVAL
 * (ctx or out NULL, ctx a server's, a negative limit, an empty
 * server_hostname), -EPERM (not in a task), -ENOMEM, -ENOTSUP. Every
 * failure closes what was made, and so does closing the loop while the
 * handshake waits. coil_tls_last_error gives the reason in words.
 * Suspends; a cancel during it is -ECANCELED (or the timeout scope's
 * -ETIMEDOUT), with everything closed.
 *
 * Once open, a TLS stream's errors are a plain stream's, plus -EPROTO
 * (a record that fails its checks, a fatal alert from the peer: the
 * reason in coil_tls_last_error) and -ECONNABORTED (the peer's end
 * without close_notify, unless accept_unclean_eof). A send that fails
 * after the stream handed its bytes to TLS is reported by the next
 * drain, write or close, as on a plain stream.
 */
COIL_API int coil_tls_open(const char *host, const char *port,
                           coil_tls_context_t *ctx,
                           const coil_tls_options_t *opts,
                           coil_stream_t **out);

/**
 * start_tls: go on over plain's connection with TLS, as a client (server
 * false) or a server, with ctx (of that side); *out receives the TLS
 * stream. Whatever plain had received and not given out is the start of
 * the TLS conversation. plain must be a socket stream, open, with no
 * task reading it (what was written to it goes out first); it is then
 * closed without closing the socket (unref it as usual). Errors: -EINVAL
 * (also: a client whose context verifies, without opts->server_hostname),
 * -EPIPE, -EBUSY (a task reads plain), a reset or other peer error plain
 * met and had not reported yet, and coil_tls_open's from the handshake;
 * on a handshake failure the connection is closed. Suspends: first until
 * what was written to plain has gone, and (io_uring) until a receive a
 * cancelled read of plain left running has ended, so that what it got
 * goes to TLS too.
 */
COIL_API int coil_tls_start(coil_stream_t *plain, coil_tls_context_t *ctx,
                            bool server, const coil_tls_options_t *opts,
                            coil_stream_t **out);

/**
 * A server whose every connection is TLS (asyncio's start_server(ssl=...)):
 * as coil_server_open, except that each connection's task first makes
 * the handshake as a server with ctx (a server's context; opts may set
 * its limit, 60 s by default), then calls handler with the TLS stream
 * (whose reference is dropped when the handler returns, as for a plain
 * server). A connection whose handshake fails (a scanner, a client that
 * distrusts the certificate, one that never speaks) ends there: its
 * task's outcome is the handshake's error, and the server goes on. The
 * server holds a reference on ctx. Errors: coil_server_open's, and
 * -EINVAL (ctx not a server's), -ENOTSUP. May suspend (resolving host).
 */
COIL_API int coil_tls_server_open(const char *host, const char *port,
                                  coil_tls_context_t *ctx,
                                  coil_conn_handler_fn handler, void *arg,
                                  const coil_server_options_t *server_opts,
                                  const coil_tls_options_t *opts,
                                  coil_server_t **out);

/** The application protocol agreed (ALPN), or NULL (none, or s not a TLS
 * stream). Valid while s is. */
COIL_API const char *coil_tls_alpn(const coil_stream_t *s);

/** The protocol version in use ("TLSv1.3"...), or NULL if s is not a TLS
 * stream. */
COIL_API const char *coil_tls_version(const coil_stream_t *s);

/** Why this thread's last TLS call failed, in words (OpenSSL's reason,
 * the verification's); "" if nothing is known. */
COIL_API const char *coil_tls_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* COIL_TLS_H */
