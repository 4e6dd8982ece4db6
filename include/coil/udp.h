/* SPDX-License-Identifier: MIT */
/**
 * @file coil/udp.h
 * UDP endpoints for tasks (asyncio's create_datagram_endpoint,
 * in coil's suspending style: no protocol callbacks, a task calls recv and
 * is suspended until a datagram arrives).
 *
 * An endpoint is one non-blocking UDP socket, bound to a local address
 * and/or connected to a remote one. Sends and receives follow the rules of
 * coil/net.h: every call that may suspend returns -EPERM outside a task,
 * -ECANCELED when its task is cancelled (nothing was received or sent),
 * -ETIMEDOUT when a timeout scope cuts it short, and -EBUSY when another
 * task is already receiving (or sending) on the same endpoint; one task
 * may receive while another sends. Endpoints belong to the loop of the
 * task that opened them and are used from that loop's thread only.
 *
 *     coil_udp_t *u;
 *     int err = coil_udp_open(NULL, NULL, "127.0.0.1", "5353", &u);
 *     if (err) return err;
 *     coil_udp_send(u, "ping", 4);
 *     char buf[1500];
 *     ssize_t n = coil_udp_recv(u, buf, sizeof(buf));
 *     coil_udp_unref(u);
 */
#ifndef COIL_UDP_H
#define COIL_UDP_H

#include <sys/socket.h>
#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A UDP endpoint (see the top of this file). */
typedef struct coil_udp coil_udp_t;

/**
 * Open an endpoint. Names are resolved with coil_getaddrinfo (numeric
 * addresses and names, IPv4 and IPv6; ports as numbers or service names).
 *
 *  - local_host/local_port: the address to bind. local_host NULL binds
 *    the wildcard address; local_port NULL with local_host set binds an
 *    ephemeral port; both NULL: no bind (the kernel picks a local address
 *    at the first send).
 *  - remote_host/remote_port: the peer to connect to (both needed; both
 *    NULL: unconnected). A connected endpoint receives only the peer's
 *    datagrams, and uses coil_udp_send.
 *
 * At least one side must be given: it decides the address family (with a
 * remote, its addresses are tried in the resolver's order with a local
 * address of the same family, if any; otherwise the local addresses are
 * tried in order), and the first that works is used.
 * Returns 0 with the endpoint in *out (the caller's, to free with
 * coil_udp_unref), or -errno, *out then NULL: -EINVAL (out NULL, nothing
 * given, or only one of remote_host/remote_port), -EPERM (not in a task),
 * the resolver's errors (coil/net.h: -ENOENT...), -EADDRNOTAVAIL (no
 * local address of the remote's family), the first failure of socket,
 * bind or connect (-EADDRINUSE, -EACCES, ...), -ECANCELED, -ENOMEM.
 * May suspend (name resolution).
 */
COIL_API int coil_udp_open(const char *local_host, const char *local_port,
                           const char *remote_host, const char *remote_port,
                           coil_udp_t **out);

/**
 * Send one datagram of n bytes (n may be 0) to the connected peer.
 * Returns n, or -errno: -EDESTADDRREQ (not connected), -EMSGSIZE (too
 * large for UDP), -ECONNREFUSED (the peer's port was closed: an ICMP
 * error from an earlier datagram is reported once, by the next send or
 * receive), -EBADF (closed), -EINVAL (u NULL, or buf NULL with n > 0),
 * -EBUSY, -EPERM, -ECANCELED (nothing sent), -ENOMEM. May suspend (only
 * while the socket's send buffer is full).
 */
COIL_API ssize_t coil_udp_send(coil_udp_t *u, const void *buf, size_t n);

/**
 * Send one datagram to addr (addrlen bytes) from an unconnected endpoint.
 * Returns n, or -errno as coil_udp_send, and -EISCONN (the endpoint is
 * connected: use coil_udp_send), -EINVAL (addr NULL or addrlen 0),
 * -EAFNOSUPPORT (addr of another family). May suspend.
 */
COIL_API ssize_t coil_udp_sendto(coil_udp_t *u, const void *buf, size_t n,
                                 const struct sockaddr *addr,
                                 socklen_t addrlen);

/**
 * Receive one datagram into buf (up to n bytes), suspending until one
 * arrives. Returns the datagram's full size: a datagram longer than n is
 * truncated to n bytes in buf, the rest discarded, and the return value
 * is still its full size (greater than n), so truncation shows as a
 * result > n (on Linux, with MSG_TRUNC; elsewhere the result is the number
 * of bytes stored and truncation goes unreported). 0 is an empty
 * datagram. Errors (-errno): -ECONNREFUSED (connected endpoint, an
 * earlier datagram hit a closed port), -EBADF (closed, also when
 * coil_udp_close is called while waiting), -EINVAL (u NULL, buf NULL with
 * n > 0), -EBUSY (another task is receiving), -EPERM, -ECANCELED (nothing
 * was consumed: the datagram stays queued for the next receive),
 * -ETIMEDOUT (in a timeout scope), -ENOMEM. May suspend.
 */
COIL_API ssize_t coil_udp_recv(coil_udp_t *u, void *buf, size_t n);

/**
 * As coil_udp_recv, and the sender's address into addr (*addrlen is the
 * capacity in, the address's length out; both NULL, or both set:
 * -EINVAL otherwise). May suspend.
 */
COIL_API ssize_t coil_udp_recvfrom(coil_udp_t *u, void *buf, size_t n,
                                   struct sockaddr *addr, socklen_t *addrlen);

/**
 * The endpoint's local address (getsockname) into *addr. Returns its
 * length, or -errno: -EINVAL (NULL argument), -EBADF (closed). An
 * endpoint never bound nor used reports the wildcard address, port 0.
 * Does not suspend.
 */
COIL_API int coil_udp_local_address(const coil_udp_t *u,
                                    struct sockaddr_storage *addr);

/**
 * The connected peer's address (getpeername) into *addr. Returns its
 * length, or -errno: -EINVAL, -EBADF (closed), -ENOTCONN (unconnected).
 * Does not suspend.
 */
COIL_API int coil_udp_peer_address(const coil_udp_t *u,
                                   struct sockaddr_storage *addr);

/**
 * Close the socket: tasks suspended in a receive or send on the endpoint
 * wake with -EBADF, and every later call returns -EBADF. The endpoint
 * itself stays valid until its last coil_udp_unref. Closing the loop
 * closes it too. Returns 0 (also when closed already: closing is
 * idempotent, as every _close) or -EINVAL (NULL). Does not suspend.
 */
COIL_API int coil_udp_close(coil_udp_t *u);

/** Take a reference; returns u. NULL gives NULL. Only while the caller
 * holds a reference: on an endpoint whose last one was dropped (and whose
 * memory a call in progress still holds) it reports the misuse through
 * the exception handler and returns NULL. */
COIL_API coil_udp_t *coil_udp_ref(coil_udp_t *u);

/**
 * Drop a reference; the last one closes the endpoint (if coil_udp_close
 * was not called) and frees it. A call in progress holds a reference of
 * its own, so a task still suspended on the endpoint is safe: it wakes
 * with -EBADF. Accepts NULL. One unref too many, while the memory is
 * still held, is reported through the exception handler and ignored.
 * Does not suspend.
 */
COIL_API void coil_udp_unref(coil_udp_t *u);

#ifdef __cplusplus
}
#endif

#endif /* COIL_UDP_H */
