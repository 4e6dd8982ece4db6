/* SPDX-License-Identifier: MIT */
/*
 * net_internal.h - the socket calls of net.c as the objects that own
 * sockets use them (streams, UDP endpoints, servers: through their own
 * watch), and small socket helpers.
 *
 * Each call takes the watch of its fd; NULL means a raw fd (the loop's
 * raw watch is found or made at the first wait, io_internal.h). A call
 * tries the syscall and, on EAGAIN, waits on the watch until the fd is
 * ready, then tries again; the conventions are those of coil/net.h.
 */
#ifndef COIL_NET_INTERNAL_H
#define COIL_NET_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

struct coil__watch;

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

/* Wait until fd (of watch w, or raw) is ready in direction dir
 * (COIL__EV_READ or COIL__EV_WRITE). Errors as coil__watch_wait. */
int coil__sock_wait(struct coil__watch *w, int fd, unsigned dir);

/*
 * The receive loop of coil_sock_recv/recvfrom, with extra recv flags (UDP
 * endpoints pass MSG_TRUNC): in a task, wait until fd is readable and take
 * what is there. addr and addrlen both or neither; from: use recvfrom.
 */
ssize_t coil__sock_recv(struct coil__watch *w, int fd, void *buf, size_t n,
                        int flags, struct sockaddr *addr, socklen_t *addrlen,
                        bool from);

/*
 * A stream's receive on fd, its own socket (OWNED watch w): up to n (> 0)
 * bytes into buf, waiting for some. wait_first: the last receive came up
 * short, so wait before trying; last: how much it brought (0: none yet).
 * By completion where the loop's backend has it (net.c says how), else as
 * coil__sock_recv. Errors as coil__sock_recv.
 */
ssize_t coil__sock_recv_owned(struct coil__watch *w, int fd, void *buf,
                              size_t n, bool wait_first, size_t last);

/* coil_sock_sendto on fd of watch w. */
ssize_t coil__sock_sendto(struct coil__watch *w, int fd, const void *buf,
                          size_t n, const struct sockaddr *addr,
                          socklen_t addrlen);

/* The receive loop for an fd that is not a socket (a pipe, a tty, a
 * character device): read(2) instead of recv(2). As coil__sock_recv. */
ssize_t coil__fd_read(struct coil__watch *w, int fd, void *buf, size_t n);

/* write(2) once on an fd that is not a socket, without suspending and
 * without raising SIGPIPE (write has no MSG_NOSIGNAL: SIGPIPE is blocked
 * in this thread around it, and taken back if the write raised it):
 * bytes written, or -errno (-EAGAIN, -EPIPE...). */
ssize_t coil__fd_write_nosigpipe(int fd, const void *buf, size_t n);

/* coil_sock_accept on listening socket fd of watch w. */
int coil__sock_accept(struct coil__watch *w, int fd, struct sockaddr *addr,
                      socklen_t *addrlen);

#endif /* COIL_NET_INTERNAL_H */
