/* SPDX-License-Identifier: MIT */
/**
 * @file coil/net.h
 * suspending socket calls for tasks on raw, non-blocking fds
 * (asyncio's loop.sock_recv, sock_sendall, sock_accept, sock_connect,
 * sock_recvfrom, sock_sendto, sock_sendfile and getaddrinfo).
 *
 * Each call first tries the system call; if it would block, the task
 * suspends until the fd is ready and tries again, so other tasks run in
 * the meantime and the loop never blocks. Rules shared by every call that
 * "may suspend":
 *
 *  - -EPERM outside a task. A cancellation pending when the call starts
 *    is delivered at once (-ECANCELED, nothing done). Cancelling a task
 *    suspended in one of these calls makes it return -ECANCELED; what was
 *    done before the cancel is described per call (no data is lost
 *    silently: a recv that was cancelled consumed nothing). Timeout scopes
 *    (coil_timeout_begin, coil_wait_for) cut these calls short the same
 *    way: the scope turns the -ECANCELED into -ETIMEDOUT.
 *  - The fd is the caller's: coil never closes it, except coil_sock_close.
 *    It must be non-blocking (coil_sock_open and coil_sock_accept make it so;
 *    recv/send-style calls pass MSG_DONTWAIT and cannot block anyway;
 *    accept, connect and sendfile check and return -EINVAL for a blocking
 *    fd rather than freeze the loop).
 *  - One task at a time per fd and direction: a second task reading (or
 *    writing) an fd that a task is already suspended on gets -EBUSY, as
 *    does a task when a callback watcher (coil_loop_add_reader/_writer) holds
 *    that direction, and coil_loop_add_reader/_writer when a task waits there.
 *    Reading and writing one fd from two tasks at once is fine.
 *  - EINTR is retried inside (recv, send, accept...); connect is never
 *    re-issued after EINTR (the attempt goes on; the call waits for it).
 *  - SIGPIPE is never raised: sends use MSG_NOSIGNAL (SO_NOSIGPIPE where
 *    that is missing) and a closed peer gives -EPIPE or -ECONNRESET.
 *  - Peer and system errors come back as negative errno (-ECONNRESET,
 *    -EPIPE, -ECONNREFUSED, -ENOTCONN, -EMFILE, ...).
 *
 * Closing. These are raw fds: close them with close(2) or coil_sock_close as
 * you like. Every wait registers the fd with the poller again (one epoll_ctl
 * per wait; asyncio's sock_recv pays two), so a number closed and given to a
 * new file is always watched as the new file. coil_sock_close adds one
 * thing: called on the loop's thread, it wakes a task suspended on the fd
 * with -EBADF (after a plain close(2) such a task sleeps on: epoll and
 * kqueue forget a closed fd silently; poll notices and wakes it with
 * -EBADF). On io_uring, prefer coil_sock_close: after a wait the loop keeps
 * a poll armed on the fd, and that poll holds the file open in the kernel,
 * so after a plain close(2) a peer sees no end until the number is watched
 * again or the loop closes; coil_sock_close removes the poll first. An fd
 * that belongs to a coil object (a stream, a server, a UDP endpoint) is that
 * object's: these calls refuse it with -EBUSY; use the object's own calls.
 */
#ifndef COIL_NET_H
#define COIL_NET_H

#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "common.h"

/* <netdb.h> declares it only with POSIX features on (not in strict C11). */
struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

/**
 * socket(2) made for coil: non-blocking and close-on-exec (and
 * SO_NOSIGPIPE where MSG_NOSIGNAL is missing, as on macOS). Returns the
 * new fd (the caller's, to close with close(2) or coil_sock_close: see
 * "Closing" above) or -errno
 * (-EAFNOSUPPORT, -EPROTONOSUPPORT, -EINVAL, -EMFILE, -ENFILE, -ENOBUFS,
 * -ENOMEM, -EACCES). Does not suspend; works outside a task.
 */
COIL_API int coil_sock_open(int domain, int type, int protocol);

/**
 * Close fd once (never retried: on Linux the number is released even
 * when close reports EINTR, and a retry could close another thread's new
 * fd; EINTR therefore counts as success). Called from a thread that runs
 * a loop (a task or a callback), the loop first forgets fd: tasks
 * suspended on it wake with -EBADF, callback watchers are removed without
 * being called. Outside a running loop it is close(2). Returns 0 or -errno
 * (-EBADF, -EIO, -EBUSY: fd belongs to a stream, server or UDP endpoint
 * of the running loop, and is left open). Does not suspend.
 */
COIL_API int coil_sock_close(int fd);

/**
 * Receive up to n bytes into buf (recv(2) with no flags). Returns how
 * many (>= 1), 0 at end of stream (the peer shut down writing; also for
 * n == 0), or -errno: -ECONNRESET (peer reset), -ENOTCONN, -ETIMEDOUT
 * (TCP keepalive), -EBADF (fd < 0, not open, or closed with
 * coil_sock_close while waiting), -EINVAL (buf NULL with n > 0), -EBUSY,
 * -EPERM, -ECANCELED (nothing was consumed), -ENOMEM.
 * May suspend. asyncio's sock_recv_into is this call: C reads into the
 * caller's buffer anyway, so there is no separate _into variant.
 */
COIL_API ssize_t coil_sock_recv(int fd, void *buf, size_t n);

/**
 * Send all n bytes of buf, suspending as often as needed. Returns 0 when
 * every byte was handed to the kernel, or -errno: -EPIPE or -ECONNRESET
 * (peer gone; no SIGPIPE), -EBADF, -EINVAL (buf NULL with n > 0),
 * -EBUSY, -EPERM, -ECANCELED, -ENOMEM, ...
 * *sent_out (if sent_out is not NULL) receives how many bytes were
 * handed to the kernel, on success (n) and on every error alike: a
 * cancelled or failed call may have sent a prefix of buf, and the stream
 * continues after exactly that prefix. May suspend. n == 0 returns 0.
 */
COIL_API int coil_sock_send_all(int fd, const void *buf, size_t n,
                                size_t *sent_out);

/**
 * Accept a connection on listening socket fd. Returns the new connection's
 * fd, non-blocking and close-on-exec (accept4 where available; the
 * caller owns it), with its peer address in addr/addrlen as accept(2)
 * (both NULL, or both set; *addrlen is the capacity in, the length out).
 * Connections that died before they were accepted are skipped, not
 * returned: ECONNABORTED, and the network errors Linux passes on from
 * the new connection (EPROTO, ENETDOWN, ENETUNREACH, EHOSTDOWN,
 * EHOSTUNREACH, ENOPROTOOPT, ENONET). -EMFILE/-ENFILE/-ENOBUFS/-ENOMEM are
 * returned: the pending connection stays queued and fd stays readable, so
 * back off (close fds, sleep) before accepting again. Other errors:
 * -EBADF, -EINVAL (not listening, blocking fd, addr without addrlen or
 * the reverse), -ENOTSOCK, -EOPNOTSUPP, -EBUSY, -EPERM, -ECANCELED
 * (nothing was accepted). May suspend.
 */
COIL_API int coil_sock_accept(int fd, struct sockaddr *addr,
                              socklen_t *addrlen);

/**
 * Connect fd to addr (len bytes). A connection in progress (EINPROGRESS,
 * or EINTR: the attempt goes on and connect is not issued again) is
 * waited for until fd is writable, and its outcome read with SO_ERROR.
 * Returns 0 once connected, or -errno: -ECONNREFUSED, -ETIMEDOUT,
 * -ENETUNREACH, -EHOSTUNREACH, -EADDRNOTAVAIL, -EISCONN, -EALREADY,
 * -EAGAIN (a Unix-domain listener's backlog is full: nothing is in
 * progress, try again later), -EBADF, -EINVAL (addr NULL, len 0, or a
 * blocking fd), -EBUSY, -EPERM, -ECANCELED (the attempt may still
 * complete in the kernel: close the socket), -ENOMEM. May suspend.
 */
COIL_API int coil_sock_connect(int fd, const struct sockaddr *addr,
                               socklen_t len);

/**
 * Receive one datagram (recvfrom(2)): up to n bytes into buf, the
 * sender's address into addr/addrlen (both NULL or both set, as
 * coil_sock_accept). Returns the datagram's length as received (a longer
 * datagram is truncated to n), 0 for an empty datagram (or end of stream
 * on a stream socket), or -errno as coil_sock_recv. May suspend.
 */
COIL_API ssize_t coil_sock_recvfrom(int fd, void *buf, size_t n,
                                    struct sockaddr *addr, socklen_t *addrlen);

/**
 * Send one datagram of n bytes to addr (addrlen bytes; addr NULL with
 * addrlen 0 on a connected socket). Returns n, or -errno: -EMSGSIZE,
 * -ECONNREFUSED (a previous datagram was refused, on a connected UDP
 * socket), -EDESTADDRREQ, -EINVAL (buf NULL with n > 0, addr and addrlen
 * disagree), -EBADF, -EBUSY, -EPERM, -ECANCELED (nothing was sent),
 * -EPIPE, -ENOMEM. May suspend.
 */
COIL_API ssize_t coil_sock_sendto(int fd, const void *buf, size_t n,
                                  const struct sockaddr *addr,
                                  socklen_t addrlen);

/**
 * Send up to count bytes of the file in_fd to socket out_fd, starting at
 * *offset (advanced as bytes are sent; in_fd's own position is left
 * alone) or, with offset NULL, at in_fd's position (which advances).
 * Stops at end of file. Returns the number of bytes sent (less than count
 * only at end of file), or -errno: -EPIPE/-ECONNRESET (no SIGPIPE),
 * -EBADF, -EINVAL (blocking out_fd, *offset negative), -ESPIPE (in_fd not
 * seekable where the copy below is needed), -EBUSY, -EPERM, -ECANCELED,
 * -ENOMEM. On every error the progress is in *offset, or in in_fd's
 * position: exactly the bytes sent were consumed. count is capped at
 * SSIZE_MAX.
 * Uses sendfile(2) on Linux (with SIGPIPE blocked around each call, two
 * extra syscalls); elsewhere, or when sendfile says EINVAL/ENOSYS before
 * sending anything, copies through a 64 KiB buffer with pread and sends
 * (the buffer is allocated: -ENOMEM). May suspend.
 */
COIL_API ssize_t coil_sock_sendfile(int out_fd, int in_fd, off_t *offset,
                                    size_t count);

/**
 * getaddrinfo(3) without blocking the loop: the lookup runs on one of the
 * loop's resolver threads (a pool of 4 kept apart from the default
 * executor, so that jobs there cannot hold lookups up) while the task is
 * suspended. On success
 * returns 0 and *res_out holds the list (free it with coil_freeaddrinfo;
 * plain freeaddrinfo is the same function). host or service may be NULL
 * (not both); hints may be NULL. On failure *res_out is NULL.
 * The `EAI_*` codes map to:
 *
 *     EAI_NONAME, EAI_NODATA    -> -ENOENT        no such name (or address)
 *     EAI_ADDRFAMILY            -> -EADDRNOTAVAIL no address in that family
 *     EAI_SERVICE               -> -EPROTONOSUPPORT service not available
 *                                                  for that socket type
 *     EAI_AGAIN                 -> -EAGAIN        temporary failure: retry
 *     EAI_FAIL                  -> -EIO           permanent failure
 *     EAI_MEMORY                -> -ENOMEM
 *     EAI_FAMILY                -> -EAFNOSUPPORT
 *     EAI_SOCKTYPE              -> -ESOCKTNOSUPPORT
 *     EAI_BADFLAGS              -> -EINVAL
 *     EAI_OVERFLOW              -> -EOVERFLOW
 *     EAI_SYSTEM                -> -errno (-EIO if errno was 0)
 *     anything else             -> -EIO
 *
 * Other errors: -EINVAL (res_out NULL, host and service both NULL), -EPERM,
 * -ENOMEM, -EAGAIN (no thread could be started), -ECANCELED: the call returns
 * at once; the lookup finishes on its own and its result is freed then (nothing
 * leaks, also if the loop is closed meanwhile). A result that arrived before
 * the cancel is returned (the cancel is delivered by the task's next wait). May
 * suspend; a numeric host (or none) with a numeric port (or none) needs no
 * lookup and is answered at once, without a thread and without suspending.
 */
COIL_API int coil_getaddrinfo(const char *host, const char *service,
                              const struct addrinfo *hints,
                              struct addrinfo **res_out);

/** Free a list from coil_getaddrinfo (freeaddrinfo). Accepts NULL. */
COIL_API void coil_freeaddrinfo(struct addrinfo *res);

/**
 * getnameinfo(3) without blocking the loop: the name (and/or service) of
 * the address sa (salen bytes, copied) into host (hostlen bytes) and serv
 * (servlen bytes); either may be NULL, not both. flags are getnameinfo's
 * (NI_NUMERICHOST, NI_NUMERICSERV, NI_NAMEREQD, NI_DGRAM...). A lookup
 * runs on the loop's resolver threads, as coil_getaddrinfo's do; numeric
 * answers (NI_NUMERICHOST and NI_NUMERICSERV for what is asked) are given
 * at once, without suspending. Returns 0, or the EAI_* codes mapped as
 * for coil_getaddrinfo (a name that does not fit its buffer: -EOVERFLOW,
 * and nothing is written to that buffer), -EINVAL (sa NULL, salen 0 or
 * larger than a sockaddr_storage, host and serv both NULL, a length of
 * 0), -EPERM (not in a task), -ENOMEM, -ECANCELED (the lookup finishes on
 * its own and is freed then). May suspend.
 */
COIL_API int coil_getnameinfo(const struct sockaddr *sa, socklen_t salen,
                              char *host, size_t hostlen, char *serv,
                              size_t servlen, int flags);

#ifdef __cplusplus
}
#endif

#endif /* COIL_NET_H */
