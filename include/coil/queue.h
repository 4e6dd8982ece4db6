/* SPDX-License-Identifier: MIT */
/**
 * @file coil/queue.h
 * queues between tasks (asyncio.Queue, PriorityQueue,
 * LifoQueue), with task_done/join and Python 3.13's shutdown, and a put
 * that plain threads may call.
 *
 * Items are void pointers, stored as given (NULL is an item like any
 * other). Ownership travels with the item: a successful put hands it to
 * the queue, a successful get hands it to the getter; a put that fails
 * leaves it with the caller. Items the queue itself discards (an
 * immediate shutdown, the last unref with items left) go to the
 * options' drop function, if one was given.
 *
 * The waits (put on a full queue, get on an empty one, join) suspend the
 * calling task; they return -EPERM outside a task and -EINVAL in a task of
 * another loop. Waiters are served first come, first served: an item put
 * while getters wait is promised to the first of them (it stays in the
 * queue until that getter runs and takes it: in a FIFO that very item, in
 * a LIFO or priority queue the next one out), a place freed while putters
 * wait is promised to the first putter, so later arrivals (the _nowait
 * calls too) cannot take them first.
 *
 * Cancellation, at every wait (a timeout scope's deadline is a cancel):
 * a waiter cancelled in line gets -ECANCELED and nothing happened; a
 * getter cancelled after an item was promised to it, before it ran,
 * gets -ECANCELED and the item stays at the head of the queue for the
 * next getter; a putter cancelled after a place was promised gets
 * -ECANCELED, its item was not put (it is still the caller's), and the
 * place goes to the next putter. Nothing is lost or delivered twice.
 *
 * Lifetime as the objects of coil/sync.h: _new gives a reference,
 * _ref/_unref share it; the last unref wakes waiters with -EBADF and
 * drops the items left (drop function); the queue holds its loop.
 */
#ifndef COIL_QUEUE_H
#define COIL_QUEUE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A queue between the tasks of one loop (see the top of this file). */
typedef struct coil_queue coil_queue_t;

/** The order items come out in. */
typedef enum coil_queue_kind {
    COIL_QUEUE_FIFO = 0, /**< first in, first out (asyncio.Queue) */
    COIL_QUEUE_LIFO,     /**< last in, first out (asyncio.LifoQueue) */
    COIL_QUEUE_PRIORITY, /**< smallest first by compare; equal items in the
                            order they were put (asyncio.PriorityQueue) */
} coil_queue_kind_t;

/** Options for coil_queue_new; zero-initialise, then set fields. */
typedef struct coil_queue_options {
    /** The most items the queue holds; 0: no limit. */
    size_t maxsize;
    coil_queue_kind_t kind; /**< the order (0: COIL_QUEUE_FIFO) */
    /** COIL_QUEUE_PRIORITY only, and required there: negative if a comes
     * out before b, 0 if equal, positive if after. */
    int (*compare)(const void *a, const void *b);
    /** Called with each item the queue discards, and drop_arg; NULL: the
     * items are forgotten. Runs on the loop's thread, outside any lock. */
    void (*drop)(void *item, void *drop_arg);
    void *drop_arg; /**< passed to drop with each item */
    /** Allow coil_queue_put_threadsafe. Every call on the queue then takes
     * a mutex (uncontended: tens of nanoseconds). */
    bool threadsafe;
} coil_queue_options_t;

/**
 * Make a queue on loop (opts NULL: an unbounded FIFO).
 * Errors: -EINVAL (loop or queue_out NULL, an unknown kind, a priority
 * queue without compare), -EBADF (loop closed), -ENOMEM, or the error
 * pthread_mutex_init gave (threadsafe).
 */
COIL_API int coil_queue_new(coil_loop_t *loop, const coil_queue_options_t *opts,
                            coil_queue_t **queue_out);

/** Take a reference; returns queue. NULL gives NULL, as does a queue whose
 * last reference was dropped (a misuse, reported to the loop's exception
 * handler). */
COIL_API coil_queue_t *coil_queue_ref(coil_queue_t *queue);

/** Drop a reference. Accepts NULL. The last one wakes waiters with -EBADF
 * and drops the items left. No thread may be putting then. */
COIL_API void coil_queue_unref(coil_queue_t *queue);

/**
 * Put item, waiting in line while the queue is full. Returns 0.
 * May suspend. Errors: -EPERM (not in a task), -EINVAL (NULL, a task of
 * another loop), -ESHUTDOWN (the queue is shut down, or was while
 * waiting), -ECANCELED (cancelled while waiting: the item was not put),
 * -ENOMEM (the queue could not grow), -EBADF (last reference dropped
 * while waiting). On any error the item is still the caller's.
 */
COIL_API int coil_queue_put(coil_queue_t *queue, void *item);

/**
 * Take the next item into *item_out, waiting in line while there is none.
 * Returns 0. May suspend. Errors: -EPERM, -EINVAL (as coil_queue_put, or
 * item_out NULL), -ESHUTDOWN (shut down and nothing left for this getter),
 * -ECANCELED (cancelled while waiting: no item was taken), -EBADF.
 */
COIL_API int coil_queue_get(coil_queue_t *queue, void **item_out);

/** Put without waiting; needs no task. Errors: -EINVAL, -EAGAIN (full,
 * or its free places are promised to waiting putters), -ESHUTDOWN,
 * -ENOMEM. */
COIL_API int coil_queue_put_nowait(coil_queue_t *queue, void *item);

/** Get without waiting; needs no task. Errors: -EINVAL, -EAGAIN (empty,
 * or its items are promised to waiting getters), -ESHUTDOWN (shut down
 * and empty). */
COIL_API int coil_queue_get_nowait(coil_queue_t *queue, void **item_out);

/**
 * Put from any thread, never waiting: for handing work from plain
 * threads to tasks. The queue must have been made threadsafe. Called on
 * the loop's thread it is coil_queue_put_nowait. Items are seen by the
 * loop in the order each thread put them; getters are woken through the
 * same path as coil_loop_call_soon_threadsafe (one wake-up per burst).
 * Errors: -EINVAL (NULL, not threadsafe), -EAGAIN (full), -ESHUTDOWN,
 * -ENOMEM, -EBADF (the loop is closed). The queue must outlive every
 * call: stop the threads before the last unref.
 */
COIL_API int coil_queue_put_threadsafe(coil_queue_t *queue, void *item);

/** Items in the queue, including those promised to woken getters that
 * have not taken them yet. 0 for NULL. */
COIL_API size_t coil_queue_size(coil_queue_t *queue);
/** The limit (0: none). 0 for NULL. */
COIL_API size_t coil_queue_maxsize(const coil_queue_t *queue);
/** Whether coil_queue_size is 0 (true for NULL). */
COIL_API bool coil_queue_empty(coil_queue_t *queue);
/** Whether a put would have to wait: the limit is reached, counting the
 * places promised to woken putters (false for NULL and unbounded). */
COIL_API bool coil_queue_full(coil_queue_t *queue);

/**
 * A getter says it has finished with an item (asyncio's task_done). Every
 * put counts one unfinished item; when the count reaches 0, the tasks in
 * coil_queue_join wake. Errors: -EINVAL (NULL), -EOVERFLOW (called more
 * times than items were put). Does not suspend.
 */
COIL_API int coil_queue_task_done(coil_queue_t *queue);

/** How many items were put and not yet marked done. 0 for NULL. */
COIL_API size_t coil_queue_unfinished(coil_queue_t *queue);

/**
 * Wait until every item put has been marked done; 0 at once if so.
 * May suspend. Errors: -EPERM, -EINVAL, -ECANCELED (nothing changes),
 * -EBADF.
 */
COIL_API int coil_queue_join(coil_queue_t *queue);

/**
 * Shut the queue down (Python 3.13): puts fail with -ESHUTDOWN from now
 * on, and waiting putters wake with it.
 *  - graceful (immediate false): gets go on taking what is left, then
 *    fail with -ESHUTDOWN; waiting getters wake with it at once if
 *    nothing is left for them.
 *  - immediate: the items left are removed and given to the drop
 *    function (in the order gets would have taken them), each counted
 *    as done (so join returns when the getters have finished theirs),
 *    and every waiter wakes with -ESHUTDOWN, including getters an item
 *    was promised to.
 *
 * Returns how many items were dropped (0 when graceful). Shutting down
 * again is allowed (graceful then immediate drops what is left).
 * Errors: -EINVAL (NULL). Does not suspend.
 */
COIL_API int coil_queue_shutdown(coil_queue_t *queue, bool immediate);

/** Whether coil_queue_shutdown was called. false for NULL. */
COIL_API bool coil_queue_is_shutdown(coil_queue_t *queue);

#ifdef __cplusplus
}
#endif

#endif /* COIL_QUEUE_H */
