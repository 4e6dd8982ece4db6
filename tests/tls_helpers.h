/* SPDX-License-Identifier: MIT */
/*
 * tls_helpers.h - what the TLS tests (test_tls.c, test_tls_faults.c)
 * share.
 *
 * Certificates, made at run time with OpenSSL in a directory of their own
 * under /tmp (make_certs, a cmocka group setup) and removed after
 * (remove_certs), so that no key is ever committed:
 *
 *  - ca_pem: an authority; cert_pem / key_pem: a certificate it signed
 *    for localhost and 127.0.0.1, and its key (EC P-256);
 *  - old_pem: the same, expired; self_pem: the same, signed by its own
 *    key (self-signed); other_ca_pem: an unrelated authority.
 */
#ifndef COIL_TEST_TLS_HELPERS_H
#define COIL_TEST_TLS_HELPERS_H

#include "coil/tls.h"

extern char ca_pem[96], cert_pem[96], key_pem[96], old_pem[96],
    other_ca_pem[96], self_pem[96];

int make_certs(void **state);
int remove_certs(void **state);

/* Run body through the testing kit's fixture; fail the test (naming
 * the kit's message) if it fails. */
void run_ok(coil_task_fn body, void *arg);

/* Close srv (NULL: none), wait for its connections, drop it: err, or
 * the wait's error if err is 0. */
int end_server(coil_server_t *srv, int err);

/* A plain server on 127.0.0.1, on a free port (in port, "0" on
 * failure), calling handler(s, arg) for each connection (which makes its
 * own TLS with coil_tls_start, or not). *srv NULL on failure. */
int plain_server(coil_conn_handler_fn handler, void *arg,
                 coil_server_t **srv, char port[16]);

/* A TLS server on 127.0.0.1, on a free port (in port, "0" on failure),
 * with cert_pem: handler(s, arg) for each connection; opts may be NULL.
 * *srv NULL on failure. */
int tls_server(coil_conn_handler_fn handler, void *arg,
               const coil_tls_options_t *opts, coil_server_t **srv,
               char port[16]);

/* A TLS conversation over a Unix socket pair, made in the running loop
 * (suspends): *client (with cctx, NULL: trusting ca_pem; opts as for
 * coil_tls_start) and *server (cert_pem); *server_fd (if not NULL) is the
 * server's socket, for tests that write raw bytes to the client. sndbuf
 * > 0 sets the client socket's SO_SNDBUF. On failure both are NULL. */
int tls_pair(int sndbuf, coil_tls_context_t *cctx,
             const coil_tls_options_t *opts, coil_stream_t **client,
             coil_stream_t **server, int *server_fd);

/* A client context trusting ca (NULL: the system's store only). */
int client_ctx(const char *ca, coil_tls_context_t **out);

#endif
