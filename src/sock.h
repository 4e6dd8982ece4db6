/* SPDX-License-Identifier: MIT */
/*
 * sock.h - small socket helpers shared by net.c and stream.c.
 */
#ifndef COIL_SOCK_H
#define COIL_SOCK_H

#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* Flags for every send and recv: never raise SIGPIPE (where the platform
 * can say so per call), never block. */
#ifdef MSG_NOSIGNAL
#define COIL__SEND_FLAGS MSG_NOSIGNAL
#else
#define COIL__SEND_FLAGS 0
#endif
#ifdef MSG_DONTWAIT
#define COIL__DONTWAIT MSG_DONTWAIT
#else
#define COIL__DONTWAIT 0
#endif

/* Where MSG_NOSIGNAL is missing (macOS), keep SIGPIPE off the socket. */
static inline void coil__sock_no_sigpipe(int fd)
{
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#else
    (void)fd;
#endif
}

/*
 * Send small writes at once on TCP sockets (asyncio does the same for its
 * transports): with Nagle's algorithm, the tail of a response written in
 * pieces waits for the peer's delayed ACK, tens of milliseconds. Harmless
 * on other sockets (the call just fails there).
 */
static inline void coil__sock_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Whether errno e means "try again when the fd is ready". */
static inline bool coil__would_block(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK;
}

struct coil_loop;

/*
 * A non-blocking socket call on fd failed with errno e: returns 0 when the
 * call should simply be made again (e was EINTR, or the fd was not ready
 * and the running task waited until it is: may suspend), or the negative
 * error to return (e itself, or the wait's: -ECANCELED, -EBADF...).
 */
int coil__sock_again(struct coil_loop *loop, int fd, unsigned dir, int e);

/*
 * The receive loop of coil_sock_recv/recvfrom, with extra recv flags (UDP
 * endpoints pass MSG_TRUNC): in a task, wait until fd is readable and take
 * what is there. addr and addrlen both or neither; from: use recvfrom.
 */
ssize_t coil__sock_recv_flags(int fd, void *buf, size_t n, int flags,
                              struct sockaddr *addr, socklen_t *addrlen,
                              bool from);

#endif /* COIL_SOCK_H */
