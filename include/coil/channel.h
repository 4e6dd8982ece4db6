/* SPDX-License-Identifier: MIT */
/**
 * @file coil/channel.h
 * a queue between loops: tasks of any loops (and plain
 * threads, without waiting) put pointers in and get them out, first in,
 * first out, with backpressure.
 *
 * A coil_queue (coil/queue.h) belongs to one loop; a channel belongs to
 * none, so that a producer on loop A and a consumer on loop B (a loop
 * group's, say) share one. Items are opaque pointers, handed over whole:
 * each put item is got exactly once, or stays in the channel. A waiting
 * task is woken through its own loop's door (call_soon_threadsafe's), so
 * a hand-off between loops costs one wake-up of the receiving loop.
 *
 * Cancellation keeps data: a put whose item was taken, or a get that was
 * handed an item, before a cancel reached it returns 0 (the item went, or
 * came), and the cancel is delivered by the task's next wait, as for a
 * lock granted at the same moment. A getter whose loop closes after an
 * item was handed to it gives the item back to the channel, first in
 * line.
 */
#ifndef COIL_CHANNEL_H
#define COIL_CHANNEL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A channel between loops (see the top of this file). */
typedef struct coil_channel coil_channel_t;

/**
 * Make a channel holding at most capacity items (0: no limit; puts then
 * never wait). The caller owns the one reference. Thread-safe.
 * Errors: -EINVAL (out NULL), -ENOMEM.
 */
COIL_API int coil_channel_new(size_t capacity, coil_channel_t **out);

/** Take a reference; returns ch (NULL gives NULL). Any thread. */
COIL_API coil_channel_t *coil_channel_ref(coil_channel_t *ch);

/** Drop a reference; the last one frees the channel with whatever items
 * it still holds (they are the caller's to have drained). No task may
 * be waiting on it then. Accepts NULL. Any thread. */
COIL_API void coil_channel_unref(coil_channel_t *ch);

/**
 * From a task of any loop: put item, waiting while the channel is full.
 * May suspend. Returns 0 (the item is in the channel, or was handed to a
 * getter). Errors: -EINVAL (NULL ch), -EPERM (not in a task), -EPIPE
 * (the channel is closed: the item stays the caller's), -ECANCELED (the
 * task was cancelled while waiting: the item stays the caller's), -ENOMEM.
 */
COIL_API int coil_channel_put(coil_channel_t *ch, void *item);

/**
 * From a task of any loop: take the first item into *item_out, waiting
 * while the channel is empty. May suspend. Errors: -EINVAL (NULL),
 * -EPERM (not in a task), -EPIPE (closed and empty), -ECANCELED (the task
 * was cancelled while waiting: nothing was taken).
 */
COIL_API int coil_channel_get(coil_channel_t *ch, void **item_out);

/**
 * From any thread, never waiting: put, or -EAGAIN when full; take, or
 * -EAGAIN when empty. Errors also -EINVAL (NULL), -EPIPE (closed; for
 * try_get, closed and empty), -ENOMEM (try_put).
 */
COIL_API int coil_channel_try_put(coil_channel_t *ch, void *item);
/** @copydoc coil_channel_try_put */
COIL_API int coil_channel_try_get(coil_channel_t *ch, void **item_out);

/**
 * Close: later puts get -EPIPE, and so do the waiting putters (their
 * items stay theirs); getters take what is left, then get -EPIPE, the
 * waiting ones at once. Closing twice does nothing. Any thread.
 * Errors: -EINVAL (NULL).
 */
COIL_API int coil_channel_close(coil_channel_t *ch);

/** How many items the channel holds now (0 for NULL). Any thread. */
COIL_API size_t coil_channel_size(coil_channel_t *ch);

#ifdef __cplusplus
}
#endif

#endif /* COIL_CHANNEL_H */
