/* SPDX-License-Identifier: MIT */
/*
 * stream_internal.h - a stream over a transport instead of an fd.
 *
 * A coil_stream_t normally owns a socket or pipe and moves its bytes
 * with recv/send through the fd watcher. Over a transport, the same
 * buffered stream (its buffers, limits, water marks, drain, half-close,
 * the lifecycle of stream.c) moves them through these calls instead:
 * the testing kit's in-memory pair is one; a layer that transforms the
 * bytes (TLS over a socket) would be another. The stream calls them only
 * from its loop's thread, in the orders stated.
 */
#ifndef COIL_STREAM_INTERNAL_H
#define COIL_STREAM_INTERNAL_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "coil/stream.h"

struct coil__transport_ops {
    /*
     * Receive up to n (> 0) bytes into p, suspending the calling task
     * until some come: > 0, 0 at the end of the stream, or -errno. Once
     * shut_read was called, -EBADF (a receive waiting then wakes with
     * it). A cancel while waiting returns -ECANCELED with nothing taken.
     * wait_first: the last receive came up short (a hint). At most one
     * receive at a time.
     */
    ssize_t (*recv)(void *t, void *p, size_t n, bool wait_first);
    /* Without suspending or taking anything: 1 if bytes are waiting, 0
     * at the end of the stream, -EAGAIN if neither yet, or -errno. */
    int (*peek)(void *t);
    /* Send from p up to n (> 0) bytes without suspending: how many were
     * taken (> 0), -EAGAIN if none could be now, or -errno. */
    ssize_t (*send)(void *t, const void *p, size_t n);
    /* The writer: call fn(arg, 0) from the loop (never from within these
     * calls) whenever send may take more, until writer_stop. 0 or
     * -errno (then the stream keeps its data and tries again later). */
    int (*writer_start)(void *t, void (*fn)(void *arg, int result),
                        void *arg);
    void (*writer_stop)(void *t);
    bool (*writer_busy)(const void *t);
    /* End the sending side (after what was sent): 0 or -errno. */
    int (*shutdown)(void *t);
    /* The stream left OPEN: nothing more is received. */
    void (*shut_read)(void *t);
    /* The stream is CLOSED: release everything, once; no call of fn
     * after it. clean: everything written was sent and the stream was
     * not aborted (TLS then ends with close_notify). A task still
     * suspended in recv (possible only when the loop closed, abandoning
     * it) never returns. */
    void (*close)(void *t, bool clean);
    /* The local or peer address into addr (zeroed by the caller): its
     * length, or -errno. */
    int (*address)(void *t, struct sockaddr_storage *addr, bool peer);
    /* Optional: bytes taken by send (or queued by shutdown) and not yet
     * handed to the kernel. The stream counts them as unsent: drain waits
     * for them, close flushes them first, and the writer stays started
     * while there are any; the transport calls the writer when they
     * shrink. NULL: none are ever kept. */
    size_t (*pending)(const void *t);
    /* Optional: why the transport failed to send bytes it had taken (and
     * dropped them), or 0. The stream takes it as its write error, so a
     * drain, close or write reports it. NULL: sends fail only in send. */
    int (*send_error)(const void *t);
};

/*
 * A stream over the transport t, on loop (NULL: the running loop; -EPERM
 * without one). The stream owns t from here: it calls close(t) when it
 * closes. Errors: -EINVAL (a closed loop too), -EPERM, -ENOMEM (then t is
 * the caller's still).
 */
int coil__stream_open_transport(const struct coil__transport_ops *ops,
                                void *t, coil_loop_t *loop,
                                coil_stream_t **out);

/*
 * Take s's socket away from it, for a layer that goes on over the same
 * connection (TLS's start_tls): *fd_out receives the fd, now the
 * caller's (still non-blocking, unwatched), and *rest (coil__free it)
 * the *rest_len bytes s had received and not yet given out, which came
 * from the peer after what was read. s is closed without closing the fd;
 * its references stay the caller's. Errors: -EINVAL (s NULL, over a
 * transport, or not a socket), -EPIPE (s not open, or its end written),
 * -EBUSY (a task is reading s, or s holds unsent data:
 * coil__stream_flush it first), s's write error, -ENOMEM (nothing
 * changed).
 */
int coil__stream_detach(coil_stream_t *s, int *fd_out, char **rest,
                        size_t *rest_len);

/* Wait until everything written to s has gone to the kernel (drain waits
 * only until the low-water mark); s's water marks are left alone. Then,
 * if no task reads s, end a receive a cancelled read left in flight
 * (io_uring), keeping what it got: after a flush, coil__stream_detach
 * finds nothing in flight. coil_stream_drain's errors (-EPERM outside a
 * task); suspends. */
int coil__stream_flush(coil_stream_t *s);

/* The transport of s if it is over one with these ops and not closed,
 * else NULL. */
void *coil__stream_transport(const coil_stream_t *s,
                             const struct coil__transport_ops *ops);

#endif /* COIL_STREAM_INTERNAL_H */
