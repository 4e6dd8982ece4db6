/* SPDX-License-Identifier: MIT */
/**
 * @file coil/stream.h
 * buffered byte streams over connected sockets, pipes,
 * FIFOs, ttys and other character devices (asyncio's open_connection,
 * StreamReader, StreamWriter, connect_read_pipe, connect_write_pipe).
 * Servers that hand each accepted connection to a task with a stream are
 * in coil/server.h.
 *
 * A coil_stream_t plays asyncio's StreamReader and StreamWriter together:
 * one object, one fd (a socket, a pipe, a tty...), a read buffer and a
 * write buffer.
 *
 * Ownership. A stream is reference counted. The creator gets one
 * reference; coil_stream_ref takes another, coil_stream_unref drops one.
 * The stream owns its fd (coil_sock_close and coil_loop_add_reader refuse
 * it: -EBUSY) and closes it itself. Dropping the last reference closes the
 * stream as coil_stream_close does: data still in the write buffer is
 * flushed in the background first (the stream then frees itself once
 * flushed, once the peer fails, or when the loop is closed). Closing the
 * loop closes every stream of it (fd closed, unsent data dropped); the
 * stream's memory, and the loop's, stay until the last unref. All calls
 * are for the loop's thread.
 *
 * Reading. Bytes received from the socket go into the stream's read
 * buffer before anything else can happen, and are only taken out of it
 * when a call returns them: a read that is cancelled (or cut short by a
 * timeout scope) has consumed nothing, and what had arrived stays
 * buffered for the next read. One task reads a stream at a time (a second
 * concurrent reader gets -EBUSY); one task may read while another writes.
 * The read buffer is bounded by a limit (64 KiB by default,
 * coil_stream_set_limit) for readline and readuntil: a separator not found
 * within the limit gives -EMSGSIZE (asyncio's LimitOverrunError) and the
 * data stays buffered, readable with coil_stream_read.
 *
 * Writing. coil_stream_write never suspends: it sends what the socket
 * takes at once (when nothing is queued before it) and buffers the rest,
 * which the loop sends in the background whenever the socket is writable
 * (a writer watcher, as asyncio's transports do), so buffered data always
 * goes out, drained or not. coil_stream_drain is the flow control: it
 * suspends while the buffer holds more than the high-water mark, until it
 * is down to the low-water mark (64 KiB / 16 KiB by default). A peer
 * error met by the background sender (-EPIPE, -ECONNRESET) discards the
 * buffer and is returned by the next drain and write.
 *
 * The conventions of coil/net.h apply: negative errno returns, -EPERM
 * outside a task for calls that may suspend, -ECANCELED when the waiting
 * task is cancelled, -ETIMEDOUT through timeout scopes.
 */
#ifndef COIL_STREAM_H
#define COIL_STREAM_H

#include <sys/socket.h>
#include <sys/types.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A byte stream over one fd (see the top of this file). */
typedef struct coil_stream coil_stream_t;

/* Defaults. */
/** The default limit of readline and readuntil (coil_stream_set_limit). */
#define COIL_STREAM_LIMIT (64 * 1024)
/** The default high-water mark of the write buffer
 * (coil_stream_set_write_limits). */
#define COIL_STREAM_HIGH_WATER (64 * 1024)
/** The default low-water mark of the write buffer
 * (coil_stream_set_write_limits). */
#define COIL_STREAM_LOW_WATER (16 * 1024)

/* ------------------------------------------------------------------ */
/* Making streams                                                       */
/* ------------------------------------------------------------------ */

/**
 * Connect to host (a name or a numeric address) at port (a number or a
 * service name) over TCP and return a stream in *out. The name is
 * resolved with coil_getaddrinfo (IPv4 and IPv6). With several addresses
 * they are raced in the resolver's order, as in RFC 8305 ("happy
 * eyeballs", simplified: no reordering by family): the first attempt
 * starts at once, and the next one starts when every attempt so far has
 * failed or 250 ms after the last start, whichever comes first, while the
 * earlier attempts keep trying. The first connection made wins; the other
 * attempts are cancelled and their sockets closed before the call
 * returns (also when the caller is cancelled or times out: nothing is
 * left behind). Each attempt is a child task (stack and all); a single
 * address is connected to directly, without one.
 * Returns 0, or (every address failed) the error of the first address
 * (-ECONNREFUSED, -ENETUNREACH, ...), the resolver's errors (coil/net.h),
 * -EINVAL (out, or both host and port, NULL), -EPERM, -ECANCELED, -ENOMEM.
 * *out is NULL on failure. May suspend.
 */
COIL_API int coil_stream_open(const char *host, const char *port,
                              coil_stream_t **out);

/** As coil_stream_open, to a Unix-domain stream socket at path. Errors as
 * coil_stream_open, and -EINVAL (path NULL or empty), -ENAMETOOLONG (a
 * path that does not fit sockaddr_un), -EAGAIN (the listener's backlog
 * is full: nothing is in progress, try again later). May suspend. */
COIL_API int coil_stream_open_unix(const char *path, coil_stream_t **out);

/**
 * Wrap fd: a connected stream socket (from coil_sock_open and
 * coil_sock_connect, coil_sock_accept, or a socketpair), or a pipe, a
 * FIFO, a tty or another character device (stdin and stdout: asyncio's
 * connect_read_pipe / connect_write_pipe). It is made non-blocking if it
 * is not. On success the stream owns fd and closes it with the stream
 * (pass dup(0) to keep stdin open); on failure fd is left to the caller.
 * TCP sockets get TCP_NODELAY (as asyncio's transports do: small writes
 * go out at once).
 *
 * What is not a socket is read with read(2) and written with write(2):
 * a write to a pipe whose reader is gone gives -EPIPE, never SIGPIPE.
 * A pipe's end works in its one direction (a read on the writing end
 * gives -EBADF). Its O_NONBLOCK flag belongs to the open file, shared
 * with whoever else holds it (the shell, for a terminal): if coil set it,
 * it is cleared again when the stream closes. A regular file, a directory
 * or a block device is always "ready", so the loop could not wait on it
 * and is refused (-EINVAL): read files with coil_to_thread (coil/
 * executor.h).
 *
 * Must be called on the thread of a running loop (inside a task or
 * callback): the stream belongs to that loop. Errors: -EBADF (fd < 0 or
 * not open), -EPROTOTYPE (a socket that is not a stream socket), -EINVAL
 * (out NULL, a listening socket, a regular file, directory or block
 * device), -EPERM (no running loop), -EBUSY (fd already belongs to a
 * stream, server or endpoint, or a callback watcher or waiting task uses
 * it), -ENOMEM. Does not suspend.
 */
COIL_API int coil_stream_open_fd(int fd, coil_stream_t **out);

/** Take a reference; returns s. NULL gives NULL. Only while the caller
 * holds a reference: on a stream whose last one was dropped (and whose
 * memory a call in progress still holds) it reports the misuse through
 * the exception handler and returns NULL. */
COIL_API coil_stream_t *coil_stream_ref(coil_stream_t *s);

/** Drop a reference (see the top of this file). Accepts NULL. One unref
 * too many, while the memory is still held, is reported through the
 * exception handler and ignored. */
COIL_API void coil_stream_unref(coil_stream_t *s);

/** The stream's socket, or -1 once it is closed, or if it has no fd (the
 * testing kit's in-memory streams). Do not close it. */
COIL_API int coil_stream_fd(const coil_stream_t *s);

/* ------------------------------------------------------------------ */
/* Reading (one reading task at a time)                                 */
/* ------------------------------------------------------------------ */

/**
 * Read up to n bytes into buf: what is buffered if anything is, else
 * waits for the socket. Returns how many (>= 1), 0 at end of stream (or
 * for n == 0), or -errno: -ECONNRESET, -EBADF (the stream was closed and
 * nothing is buffered),
 * -EINVAL (s NULL, buf NULL with n > 0), -EBUSY (another task is
 * reading), -EPERM, -ECANCELED, -ENOMEM. May suspend.
 */
COIL_API ssize_t coil_stream_read(coil_stream_t *s, void *buf, size_t n);

/**
 * Read exactly n bytes into buf. The bytes are gathered in the stream's
 * buffer and taken out together, so a cancelled call consumes nothing.
 * The buffer grows with the data (at most doubling per receive), never
 * to n at once: a peer announcing a huge length decides no allocation.
 * Returns 0 with *got (if not NULL) = n, or:
 *  -EPIPE  the stream ended before n bytes (asyncio's IncompleteReadError):
 *          the bytes that were there are in buf, *got says how many, and
 *          they are consumed. EPIPE ("the other end is gone") is what a
 *          read never returns otherwise (a reset is -ECONNRESET), so it
 *          means exactly this here;
 *  and the errors of coil_stream_read (*got = 0; nothing consumed).
 * May suspend.
 */
COIL_API int coil_stream_read_exactly(coil_stream_t *s, void *buf, size_t n,
                                      size_t *got);

/**
 * Read everything up to the end of the stream (asyncio's read(-1)) into
 * buf (cap bytes); *len receives the length. The data is gathered in the
 * stream's buffer, bounded by the stream's limit, and taken out only on
 * success. Returns 0 once the peer has ended the stream, or:
 *  -EMSGSIZE  more than the limit arrived before the end: nothing is
 *             consumed; read it with coil_stream_read;
 *  -ENOBUFS   all of it arrived but does not fit in cap: nothing consumed,
 *             *len says how long it is;
 *  and the errors of coil_stream_read (-EINVAL also for len NULL).
 * May suspend; a cancelled call consumes nothing (what arrived stays
 * buffered).
 */
COIL_API int coil_stream_read_all(coil_stream_t *s, void *buf, size_t cap,
                                  size_t *len);

/**
 * Read up to and including the first occurrence of sep (seplen >= 1
 * bytes) into buf (cap bytes); *len receives the length (sep included).
 * Returns 0, or:
 *  -EMSGSIZE  sep was not found within the stream's limit (or was found
 *             past it): nothing is consumed, the data stays buffered and
 *             can be read with coil_stream_read (asyncio's
 *             LimitOverrunError);
 *  -ENOBUFS   the data up to sep is longer than cap: nothing consumed, *len
 *             says how long it is;
 *  -EPIPE     end of stream before sep: the rest of the data (maybe none)
 *             is in buf and consumed, *len says how much (if it does not
 *             fit in cap: -ENOBUFS, nothing consumed);
 *  and the errors of coil_stream_read (-EINVAL also for sep NULL, seplen
 *  0, len NULL). May suspend.
 */
COIL_API int coil_stream_readuntil(coil_stream_t *s, const void *sep,
                                   size_t seplen, void *buf, size_t cap,
                                   size_t *len);

/**
 * coil_stream_readuntil with "\n", except that at end of stream the rest
 * of the data is returned as the last line (0, not -EPIPE) and an empty
 * *len means the stream ended (asyncio's readline). Not NUL-terminated.
 */
COIL_API int coil_stream_readline(coil_stream_t *s, void *buf, size_t cap,
                                  size_t *len);

/** Whether the peer ended the stream and everything buffered was read
 * (asyncio's at_eof). With nothing buffered it looks at the socket
 * (without taking anything: one recv with MSG_PEEK), so it is true as
 * soon as the end has arrived, without another read; on io_uring, after a
 * read that was cancelled while it waited, only once the loop has taken
 * in the receive that read left running (a turn of the loop later: until
 * then it says false, since that receive may hold bytes before the end).
 * false for NULL and for a closed stream. Does not suspend. */
COIL_API bool coil_stream_at_eof(coil_stream_t *s);

/** How many received bytes are buffered, not yet read. 0 for NULL. */
COIL_API size_t coil_stream_read_buffered(const coil_stream_t *s);

/** Set the limit of readline/readuntil (>= 1). Errors: -EINVAL. */
COIL_API int coil_stream_set_limit(coil_stream_t *s, size_t limit);

/* ------------------------------------------------------------------ */
/* Writing                                                              */
/* ------------------------------------------------------------------ */

/**
 * Queue n bytes for sending (see the top of this file). Returns 0 (every
 * byte sent or buffered), or -errno: -EPIPE (the stream was closed or
 * write_eof'd), the peer error met earlier or right now (-EPIPE,
 * -ECONNRESET; then nothing of buf was sent), -EINVAL (s NULL, buf NULL
 * with n > 0), -ENOMEM: nothing of buf was sent or buffered; or, when
 * the kernel took part of buf at once but the background sender could
 * not be started (the poller out of memory), the rest is buffered, in
 * order, and goes out once a later write, drain or close starts the
 * sender; or, when the kernel took part of buf at once and the rest
 * could not be buffered (out of memory), the stream fails for writing:
 * this and every later write and drain say -ENOMEM, and the peer gets
 * that part, then the end when the stream closes (over TLS, an end
 * without close_notify: -ECONNABORTED there). Nothing is dropped without
 * an error here.
 * Memory: what the kernel takes at once is never copied; only the rest
 * is buffered, and the buffer is freed once it has gone, so an idle
 * stream holds none. Does not suspend; works outside a task.
 */
COIL_API int coil_stream_write(coil_stream_t *s, const void *buf, size_t n);

/**
 * Flow control: if more than the high-water mark is buffered, wait until
 * the buffer is down to the low-water mark. Returns 0, or the peer error
 * the background sender met (-EPIPE, -ECONNRESET; also when it met it
 * while this call waited), -EPIPE if the stream was closed with data
 * still unsent, -ENOMEM (the background sender could not be started: see
 * coil_stream_write; the data stays buffered, try again), -EINVAL,
 * -EPERM, -ECANCELED (the buffered data stays queued and is still sent).
 * May suspend; several tasks may drain.
 */
COIL_API int coil_stream_drain(coil_stream_t *s);

/**
 * Set the high- and low-water marks of the write buffer (low <= high;
 * high 0 makes drain wait for an empty buffer). Errors: -EINVAL.
 */
COIL_API int coil_stream_set_write_limits(coil_stream_t *s, size_t high,
                                          size_t low);

/** The write buffer's high and low water marks (asyncio's
 * get_write_buffer_limits), into *high_out and *low_out (either may be
 * NULL). Errors: -EINVAL (s NULL). */
COIL_API int coil_stream_write_limits(const coil_stream_t *s, size_t *high_out,
                                      size_t *low_out);

/** How many bytes are buffered, not yet handed to the kernel. 0 for NULL. */
COIL_API size_t coil_stream_write_buffered(const coil_stream_t *s);

/**
 * Half-close: once the buffered data is sent, shut the sending side
 * (shutdown SHUT_WR): the peer reads end of stream and may still send.
 * Later writes give -EPIPE. Calling it again does nothing. Returns 0, or
 * -EINVAL, -EPIPE (closed), the error a write met earlier (a peer's, or
 * -ENOMEM after a write that sent a part and could not keep the rest:
 * the stream writes no more), -ENOTCONN,
 * -ENOMEM (the background sender could not be started, see
 * coil_stream_write: nothing changed, try again). Does not suspend.
 * On a pipe's (or FIFO's) writing end it closes the stream
 * (coil_stream_close: the reader sees the end once the buffer is out);
 * on anything else that is not a socket (a tty, a reading end) it gives
 * -ENOTSUP.
 */
COIL_API int coil_stream_write_eof(coil_stream_t *s);

/**
 * Close the stream: nothing more is received and no more writes are taken
 * (-EPIPE); data still in the write buffer is sent in the background,
 * then the fd is closed (at once if nothing is buffered, or the peer
 * failed). What was already received stays readable: a reading call is
 * served from the read buffer if it can be, and otherwise returns -EBADF
 * (consuming nothing). A task suspended reading the stream wakes with
 * -EBADF at once (what it had gathered stays buffered), and so do tasks
 * in coil_stream_drain (-EPIPE if data is still unsent), whether or not
 * the flush goes on. Calling it again does nothing. Returns 0 or -EINVAL.
 * Does not suspend. The references are not dropped.
 */
COIL_API int coil_stream_close(coil_stream_t *s);

/** As coil_stream_close, discarding the unsent data: the fd is closed at
 * once (received data stays readable, as after close). Returns 0 or
 * -EINVAL. */
COIL_API int coil_stream_abort(coil_stream_t *s);

/** Whether close (or abort) was called. false for NULL. */
COIL_API bool coil_stream_is_closing(const coil_stream_t *s);

/**
 * Wait until the fd is closed (after coil_stream_close, once the buffer
 * is flushed). Returns 0, -EINVAL, -EPERM, -ECANCELED (the close goes on).
 * May suspend.
 */
COIL_API int coil_stream_wait_closed(coil_stream_t *s);

/**
 * The address of the peer (getpeername) or of this end (getsockname),
 * into *addr. Returns the address's length (> 0), or -EINVAL (NULL),
 * -EBADF (closed), -ENOTCONN, ... Does not suspend.
 */
COIL_API int coil_stream_peer_address(const coil_stream_t *s,
                                      struct sockaddr_storage *addr);
/** @copydoc coil_stream_peer_address */
COIL_API int coil_stream_local_address(const coil_stream_t *s,
                                       struct sockaddr_storage *addr);

#ifdef __cplusplus
}
#endif

#endif /* COIL_STREAM_H */
