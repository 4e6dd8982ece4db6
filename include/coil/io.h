/* SPDX-License-Identifier: MIT */
/**
 * @file coil/io.h
 * fd readiness watchers (asyncio's add_reader / add_writer).
 *
 * A watcher's callback runs, through the loop, in every iteration in which
 * the fd is readable (or writable) until the watcher is removed: readiness
 * is level-triggered. Each fd has at most one reader and one writer; both
 * may be set at once. Errors and hang-ups wake both the reader and the
 * writer, so each sees the condition from its next read or write.
 *
 * The fd stays the caller's: coil never closes it. Remove the watchers
 * before closing the fd. A watched fd closed behind the loop's back is
 * dropped from the loop as soon as the loop notices (the exception handler
 * is told, with -EBADF), and its old watcher never receives events of a
 * new file that reuses the fd number. Cases coil cannot see: with epoll,
 * if the closed fd had a dup that stays open, the kernel keeps reporting
 * the old file (coil drops those events, but the loop wakes for them
 * until the dup is closed); with poll, a new file that shares the old
 * one's inode and access mode (another eventfd) looks like the old one;
 * with io_uring, the closed file stays open in the kernel (a peer sees no
 * end) until the loop next hears of it: when it becomes ready, or its
 * watcher is removed, since the backend's poll in flight holds it.
 * An fd that belongs to a coil object (a stream, server or UDP endpoint)
 * cannot be watched here (-EBUSY).
 */
#ifndef COIL_IO_H
#define COIL_IO_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Call fn(arg) whenever fd is readable. Replaces an existing reader of fd.
 * The fd should be non-blocking.
 * Errors: -EINVAL (NULL loop or fn), -EBADF (fd negative or not open, or
 * loop closed), -EPERM (fd cannot be polled, e.g. a regular file with
 * epoll), -EBUSY (a task is suspended waiting for this fd in this
 * direction, in a coil_sock_* call; or fd belongs to a stream, server or
 * UDP endpoint), -ENOMEM.
 */
COIL_API int coil_loop_add_reader(coil_loop_t *loop, int fd,
                                  coil_callback_fn fn, void *arg);

/** As coil_loop_add_reader, for writability. */
COIL_API int coil_loop_add_writer(coil_loop_t *loop, int fd,
                                  coil_callback_fn fn, void *arg);

/**
 * Stop watching fd for readability. May be called from the watcher's own
 * callback. Returns 1 if a reader was removed, 0 if there was none;
 * -EINVAL for NULL loop or a negative fd.
 */
COIL_API int coil_loop_remove_reader(coil_loop_t *loop, int fd);

/** As coil_loop_remove_reader, for the writer. */
COIL_API int coil_loop_remove_writer(coil_loop_t *loop, int fd);

#ifdef __cplusplus
}
#endif

#endif /* COIL_IO_H */
