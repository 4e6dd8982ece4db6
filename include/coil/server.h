/* SPDX-License-Identifier: MIT */
/**
 * @file coil/server.h
 * servers: listening sockets that hand each accepted
 * connection to a task of its own, with a stream (asyncio's start_server
 * and Server).
 *
 * The conventions of coil/net.h and coil/stream.h apply: negative errno
 * returns, -EPERM outside a task for calls that may suspend, -ECANCELED
 * when the waiting task is cancelled. A server belongs to the loop of the
 * task that started it and is used from that loop's thread only. Closing
 * the loop closes the server (and its connections' streams); the server's
 * memory stays until its last coil_server_unref.
 */
#ifndef COIL_SERVER_H
#define COIL_SERVER_H

#include "common.h"
#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A server: its listening sockets and its connections' tasks. */
typedef struct coil_server coil_server_t;

/**
 * A connection handler: runs in a task of its own for each accepted
 * connection (started on the server's loop), with a stream holding one
 * reference that is dropped when the handler returns (which closes the
 * stream, flushing it, unless the handler took a reference of its own).
 * Its return value is the task's outcome and is otherwise ignored.
 */
typedef int (*coil_conn_handler_fn)(coil_stream_t *s, void *arg);

/** Options for the listening sockets; zero-initialise. NULL options mean
 * the defaults. */
typedef struct coil_server_options {
    int backlog;           /**< listen(2) backlog; 0: 100 (asyncio's) */
    bool no_reuse_address; /**< do not set SO_REUSEADDR (set by default) */
    bool reuse_port;       /**< set SO_REUSEPORT (-EOPNOTSUPP if missing) */
    bool keep_socket_file; /**< Unix servers: leave the file at close */
} coil_server_options_t;

/**
 * Listen on every address host resolves to (NULL: every interface, IPv4
 * and IPv6) at port ("0", or NULL, picks a free port, per listening
 * socket; see coil_server_port), and serve: one accept task per
 * listening socket, one task per connection running handler(stream,
 * arg). IPv6 sockets are
 * IPV6_V6ONLY so that both families can share a port. Accepting goes on
 * through EMFILE/ENFILE/ENOBUFS/ENOMEM: the accept task sleeps 100 ms,
 * doubling up to 1 s while the error lasts, then tries again (connections
 * wait in the backlog meanwhile); any other accept error is reported
 * through the loop's exception handler and met with the same pause: a
 * server stops accepting only when closed. The server is returned in
 * *out; free it with coil_server_unref. Errors: -EINVAL (handler or out NULL,
 * negative backlog), the resolver's errors, bind/listen/socket errors
 * (-EADDRINUSE, -EACCES, ...; every socket made is closed again),
 * -EAFNOSUPPORT (no address of a family this system can listen on),
 * -EPERM (not in a task), -ECANCELED (cancelled while resolving: nothing
 * was made), -ENOMEM. May suspend (resolving).
 */
COIL_API int coil_server_open(const char *host, const char *port,
                              coil_conn_handler_fn handler, void *arg,
                              const coil_server_options_t *opts,
                              coil_server_t **out);

/**
 * As coil_server_open, on a Unix-domain socket bound at path. A socket
 * file already at path that nothing accepts on (left by a server that is
 * gone) is removed first; a live server's socket or any other file there
 * gives -EADDRINUSE. The socket file is removed when the server is
 * closed (coil_server_close, coil_server_unref), unless it was replaced
 * meanwhile or opts->keep_socket_file is set (asyncio's cleanup_socket).
 * Errors as coil_server_open, and -EINVAL (path NULL or empty),
 * -ENAMETOOLONG (path does not fit sockaddr_un), the errors of removing
 * a stale socket file (unlink: -EACCES, ...). Must be called inside a
 * task (-EPERM otherwise) although it does not suspend.
 */
COIL_API int coil_server_open_unix(const char *path,
                                   coil_conn_handler_fn handler, void *arg,
                                   const coil_server_options_t *opts,
                                   coil_server_t **out);

/**
 * Stop serving: the listening sockets are closed at once and their accept
 * tasks end; connections already accepted carry on. Calling it again
 * does nothing. Returns 0 or -EINVAL. Does not suspend.
 */
COIL_API int coil_server_close(coil_server_t *server);

/** Cancel the task of every open connection (their handlers see
 * -ECANCELED from their current or next wait). Returns how many were
 * cancelled, or -EINVAL. Does not suspend. */
COIL_API int coil_server_close_clients(coil_server_t *server);

/**
 * Wait until the server is closed and every connection task (and accept
 * task) has finished and been cleaned up: after it returns 0, freeing the
 * server releases everything at once. Returns 0, -EINVAL, -EPERM, -ECANCELED.
 * May suspend.
 */
COIL_API int coil_server_wait_closed(coil_server_t *server);

/**
 * Wait until the server is closed (by coil_server_close from another
 * task). If the waiting task is cancelled the server is closed and
 * -ECANCELED returned (asyncio's serve_forever). Returns 0, -EINVAL,
 * -EPERM, -ECANCELED. May suspend.
 */
COIL_API int coil_server_serve_forever(coil_server_t *server);

/** Whether the server still accepts. false for NULL. */
COIL_API bool coil_server_is_serving(const coil_server_t *server);

/** The loop the server belongs to (asyncio's Server.get_loop): the one
 * running where it was opened. No new reference; NULL for NULL. */
COIL_API coil_loop_t *coil_server_loop(const coil_server_t *server);

/** The local port of the first listening socket (the one to use with port
 * "0"), or -EINVAL (NULL, a Unix server) or -EBADF (closed). */
COIL_API int coil_server_port(const coil_server_t *server);

/** How many connection tasks are running. 0 for NULL. */
COIL_API size_t coil_server_connections(const coil_server_t *server);

/** Take another reference; returns server. NULL gives NULL. Only while
 * the caller holds a reference: on a server whose last one was dropped
 * (and whose memory its connection tasks still hold) it reports the
 * misuse through the exception handler and returns NULL. */
COIL_API coil_server_t *coil_server_ref(coil_server_t *server);

/**
 * Drop a reference; the last one closes the server (coil_server_close).
 * Connection tasks still running keep what they use; the memory goes when
 * the last one finishes. Accepts NULL. One unref too many, while the
 * memory is still held, is reported through the exception handler and
 * ignored. Does not suspend.
 */
COIL_API void coil_server_unref(coil_server_t *server);

#ifdef __cplusplus
}
#endif

#endif /* COIL_SERVER_H */
