/* SPDX-License-Identifier: MIT */
/*
 * connect.h - the connection race behind coil_stream_open (stream.c),
 * visible to the tests.
 */
#ifndef COIL_SRC_CONNECT_H
#define COIL_SRC_CONNECT_H

#include <netdb.h>
#include <stdint.h>

/* The delay before the next address is tried while the previous one is
 * still connecting (RFC 8305's "Connection Attempt Delay"). */
#define COIL__CONNECT_DELAY (250 * 1000 * 1000LL)

/*
 * Connect a TCP socket to one of the addresses of list, racing them:
 * the first attempt starts at once; each next one starts when the
 * previous ones have all failed or delay_ns after the last start,
 * whichever is first, while earlier attempts keep going. The first to
 * connect wins; the others are cancelled and their sockets closed (they
 * are waited for before returning). On success returns 0 with the
 * connected non-blocking fd in *fd_out (the caller's, to close with
 * coil_sock_close). On failure *fd_out is -1 and the result is the first
 * address's error, or -ENOENT (empty list), -ECANCELED, -ENOMEM, -EPERM.
 * May suspend.
 */
int coil__connect_race(const struct addrinfo *list, int64_t delay_ns,
                       int *fd_out);

/* Resolve host:port (TCP, any family this machine has) and race its
 * addresses (coil__connect_race, with its delay): what coil_stream_open
 * and coil_tls_open connect with. The resolver's errors, and the race's.
 * May suspend. */
int coil__connect_host(const char *host, const char *port, int *fd_out);

#endif /* COIL_SRC_CONNECT_H */
