/* SPDX-License-Identifier: MIT */
/**
 * @file coil/sync.h
 * synchronisation between the tasks of one loop: locks,
 * events, conditions, semaphores and barriers (asyncio.Lock, Event,
 * Condition, Semaphore, BoundedSemaphore, Barrier).
 *
 * These coordinate tasks, not threads: every object belongs to the loop it
 * was made on, and only that loop's thread may use it. The waits suspend
 * the calling task (never the loop) and return -EPERM outside a task and
 * -EINVAL in a task of another loop.
 *
 * Fairness: waiters are served first come, first served. What a release
 * frees goes straight to the first waiter (the lock is handed over, the
 * permit granted), so a task arriving later cannot take it first, and no
 * waiter is skipped or woken twice.
 *
 * Cancellation, at every wait (a timeout scope's deadline is a cancel):
 *  - a waiter cancelled while it waits leaves the line and gets
 *    -ECANCELED; it holds nothing;
 *  - a waiter cancelled after it was granted what it waited for but
 *    before it ran again gives it back and gets -ECANCELED: the lock
 *    passes to the next waiter, the permit is released. Nothing is lost
 *    or granted twice. (A barrier's passage cannot be given back: see
 *    coil_barrier_wait.)
 *  - a cancellation pending when a call starts is delivered only if the
 *    call would suspend: acquiring a free lock succeeds (asyncio's rule).
 *
 * Lifetime: _new gives one reference; _ref/_unref share the object. Hold
 * a reference for as long as you use it. If the last reference goes while
 * tasks wait on the object, they wake with -EBADF and the memory goes
 * when the last has left. Every object holds its loop: after the loop is
 * closed (its waiting tasks abandoned) it is still safe to query and to
 * unref.
 */
#ifndef COIL_SYNC_H
#define COIL_SYNC_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A lock (asyncio.Lock). */
typedef struct coil_lock coil_lock_t;
/** An event (asyncio.Event). */
typedef struct coil_event coil_event_t;
/** A condition variable (asyncio.Condition). */
typedef struct coil_condition coil_condition_t;
/** A semaphore, bounded or not (asyncio.Semaphore, BoundedSemaphore). */
typedef struct coil_semaphore coil_semaphore_t;
/** A barrier (asyncio.Barrier). */
typedef struct coil_barrier coil_barrier_t;

/* ------------------------------------------------------------------ */
/* Lock (asyncio.Lock)                                                  */
/* ------------------------------------------------------------------ */

/**
 * A mutual-exclusion lock held by one task at a time. Unlike asyncio's,
 * it knows its holder: only the task that acquired it may release it,
 * and acquiring it again from that task is refused rather than a
 * deadlock. Not recursive.
 *
 * Errors: -EINVAL (loop or lock_out NULL), -EBADF (loop closed), -ENOMEM.
 */
COIL_API int coil_lock_new(coil_loop_t *loop, coil_lock_t **lock_out);

/** Take a reference; returns lock. NULL gives NULL, as does a lock whose
 * last reference was dropped (a misuse, reported to the loop's exception
 * handler). */
COIL_API coil_lock_t *coil_lock_ref(coil_lock_t *lock);

/** Drop a reference. Accepts NULL. The last one wakes waiters with -EBADF
 * (see the top of this file). */
COIL_API void coil_lock_unref(coil_lock_t *lock);

/**
 * Acquire the lock for the running task, waiting in line while another
 * task holds it. Returns 0 when the task holds it.
 *
 * May suspend. Errors: -EPERM (not in a task), -EINVAL (NULL, or a task
 * of another loop), -EDEADLK (the task holds it already), -ECANCELED
 * (cancelled while waiting, or after the lock was handed over but before
 * the task ran: it was passed on to the next waiter), -EBADF (the last
 * reference was dropped while waiting).
 */
COIL_API int coil_lock_acquire(coil_lock_t *lock);

/** Acquire the lock if it is free and nobody waits for it; never
 * suspends. Errors: -EAGAIN (held, or others wait), and as
 * coil_lock_acquire. */
COIL_API int coil_lock_try_acquire(coil_lock_t *lock);

/**
 * Release the lock; the first waiter, if any, holds it from now on.
 * Errors: -EINVAL (NULL), -EPERM (the caller is not the task that holds
 * it: another task, a callback, or nobody holds it). Does not suspend.
 */
COIL_API int coil_lock_release(coil_lock_t *lock);

/** Whether some task holds the lock. false for NULL. */
COIL_API bool coil_lock_locked(const coil_lock_t *lock);

/* ------------------------------------------------------------------ */
/* Event (asyncio.Event)                                                */
/* ------------------------------------------------------------------ */

/** A flag tasks can wait for, initially clear. Errors as coil_lock_new. */
COIL_API int coil_event_new(coil_loop_t *loop, coil_event_t **event_out);
/** References, as coil_lock_ref / coil_lock_unref. */
COIL_API coil_event_t *coil_event_ref(coil_event_t *event);
/** @copydoc coil_event_ref */
COIL_API void coil_event_unref(coil_event_t *event);

/** Set the flag and wake every waiter. Setting a set event does nothing.
 * May be called from a task or a callback of the loop. -EINVAL for NULL. */
COIL_API int coil_event_set(coil_event_t *event);

/** Clear the flag. Waiters already woken stay woken. -EINVAL for NULL. */
COIL_API int coil_event_clear(coil_event_t *event);

/** Whether the flag is set. false for NULL. */
COIL_API bool coil_event_is_set(const coil_event_t *event);

/**
 * Wait until the flag is set; 0 at once if it is. May suspend. Errors:
 * -EPERM, -EINVAL (as coil_lock_acquire), -ECANCELED (cancelled while
 * waiting, also after the set but before the task ran: the event is
 * unchanged, nothing to give back), -EBADF (last reference dropped).
 */
COIL_API int coil_event_wait(coil_event_t *event);

/* ------------------------------------------------------------------ */
/* Condition (asyncio.Condition)                                        */
/* ------------------------------------------------------------------ */

/**
 * A condition variable over a lock: lock, or (NULL) a new lock of its
 * own. The condition holds a reference on its lock. Errors as
 * coil_lock_new, and -EINVAL for a lock of another loop.
 */
COIL_API int coil_condition_new(coil_loop_t *loop, coil_lock_t *lock,
                                coil_condition_t **cond_out);
/** References, as coil_lock_ref / coil_lock_unref. */
COIL_API coil_condition_t *coil_condition_ref(coil_condition_t *cond);
/** @copydoc coil_condition_ref */
COIL_API void coil_condition_unref(coil_condition_t *cond);

/** The condition's lock (no new reference): acquire and release it with
 * coil_lock_acquire / coil_lock_release. NULL for NULL. */
COIL_API coil_lock_t *coil_condition_lock(coil_condition_t *cond);

/**
 * Release the lock, wait until notified, then take the lock again. The
 * calling task must hold the lock; it holds it again whenever this
 * returns, whatever the result, except -EBADF (re-taking the lock is not
 * interrupted by a cancel: one arriving then is delivered by the task's
 * next wait).
 * Returns 0 when notified.
 *
 * May suspend. Errors: -EPERM (not in a task, or the task does not hold
 * the lock: nothing is released), -EINVAL, -ECANCELED (cancelled while
 * waiting; if a notification had reached this waiter, it is passed on to
 * the next one, so none is lost), -EBADF (the condition's last reference
 * was dropped while waiting: the lock is then NOT taken again, since it
 * may have gone with the condition).
 */
COIL_API int coil_condition_wait(coil_condition_t *cond);

/**
 * Wait until pred(arg) is true: pred is evaluated with the lock held,
 * first at once, then after each notification. Returns 0 when it is true;
 * errors as coil_condition_wait (the lock is held on return in every
 * case where coil_condition_wait would hold it). -EINVAL if pred is NULL.
 */
COIL_API int coil_condition_wait_for(coil_condition_t *cond,
                                     bool (*pred)(void *arg), void *arg);

/**
 * Wake up to n waiters (first come, first served); returns how many were
 * woken. The calling task must hold the lock. Does not suspend. Errors:
 * -EINVAL (NULL), -EPERM (the caller does not hold the lock).
 */
COIL_API int coil_condition_notify(coil_condition_t *cond, unsigned n);

/** Wake every waiter; returns how many. Errors as coil_condition_notify. */
COIL_API int coil_condition_notify_all(coil_condition_t *cond);

/* ------------------------------------------------------------------ */
/* Semaphore and BoundedSemaphore                                       */
/* ------------------------------------------------------------------ */

/**
 * A counter of permits: acquire takes one (waiting while there are
 * none), release gives one back. Any task or callback of the loop may
 * release; nothing records who acquired. value is the initial number of
 * permits (0 to INT_MAX). Errors as coil_lock_new, and -EINVAL for a value
 * out of range.
 */
COIL_API int coil_semaphore_new(coil_loop_t *loop, int value,
                                coil_semaphore_t **sem_out);

/** As coil_semaphore_new, bounded: releasing more permits than value (the
 * initial number) is refused with -EOVERFLOW (asyncio's ValueError). */
COIL_API int coil_semaphore_new_bounded(coil_loop_t *loop, int value,
                                        coil_semaphore_t **sem_out);

/** References, as coil_lock_ref / coil_lock_unref. */
COIL_API coil_semaphore_t *coil_semaphore_ref(coil_semaphore_t *sem);
/** @copydoc coil_semaphore_ref */
COIL_API void coil_semaphore_unref(coil_semaphore_t *sem);

/**
 * Take a permit, waiting in line while there is none. Returns 0.
 * May suspend. Errors: -EPERM, -EINVAL (as coil_lock_acquire),
 * -ECANCELED (cancelled while waiting, or after a permit was granted but
 * before the task ran: the permit was released again), -EBADF (last
 * reference dropped while waiting).
 */
COIL_API int coil_semaphore_acquire(coil_semaphore_t *sem);

/** Take a permit if one is free and nobody waits; never suspends and needs
 * no task. Errors: -EINVAL (NULL), -EAGAIN (none free). */
COIL_API int coil_semaphore_try_acquire(coil_semaphore_t *sem);

/**
 * Give a permit back; it goes to the first waiter if there is one.
 * Errors: -EINVAL (NULL), -EOVERFLOW (a bounded semaphore already has
 * all its permits; nothing changes). Does not suspend.
 */
COIL_API int coil_semaphore_release(coil_semaphore_t *sem);

/** The number of free permits (asyncio's locked() is value == 0). 0 for
 * NULL. */
COIL_API int coil_semaphore_value(const coil_semaphore_t *sem);

/* ------------------------------------------------------------------ */
/* Barrier (asyncio.Barrier)                                            */
/* ------------------------------------------------------------------ */

/**
 * A meeting point for parties tasks (at least 1): each wait blocks until
 * parties tasks are waiting, then all pass together and the barrier is
 * ready for the next round. Errors as coil_lock_new, -EINVAL for 0
 * parties or more than INT32_MAX (an index must fit the int returned).
 */
COIL_API int coil_barrier_new(coil_loop_t *loop, unsigned parties,
                              coil_barrier_t **barrier_out);
/** References, as coil_lock_ref / coil_lock_unref. */
COIL_API coil_barrier_t *coil_barrier_ref(coil_barrier_t *barrier);
/** @copydoc coil_barrier_ref */
COIL_API void coil_barrier_unref(coil_barrier_t *barrier);

/**
 * Wait for the round to fill; returns this task's arrival index in the
 * round (0 for the first, parties - 1 for the last, whose call does not
 * suspend and lets the others pass).
 *
 * May suspend. Errors: -EPERM, -EINVAL (as coil_lock_acquire), -EPIPE
 * (the barrier is broken: coil_barrier_abort, or coil_barrier_reset while
 * waiting; every waiter gets it), -ECANCELED (cancelled while waiting:
 * the task leaves the round, which then needs one more arrival; a cancel
 * that comes after the round filled cannot undo the passage: the index
 * is returned and the cancel is delivered by the task's next wait),
 * -EBADF (last reference dropped while waiting).
 */
COIL_API int coil_barrier_wait(coil_barrier_t *barrier);

/** Break the barrier: every waiter, and every later wait until
 * coil_barrier_reset, gets -EPIPE. -EINVAL for NULL. */
COIL_API int coil_barrier_abort(coil_barrier_t *barrier);

/** Back to an empty round, not broken; tasks waiting in the round get
 * -EPIPE. -EINVAL for NULL. */
COIL_API int coil_barrier_reset(coil_barrier_t *barrier);

/** The number of parties; 0 for NULL. */
COIL_API unsigned coil_barrier_parties(const coil_barrier_t *barrier);

/** How many tasks wait in the current round; 0 for NULL. */
COIL_API unsigned coil_barrier_waiting(const coil_barrier_t *barrier);

/** Whether the barrier is broken; false for NULL. */
COIL_API bool coil_barrier_broken(const coil_barrier_t *barrier);

#ifdef __cplusplus
}
#endif

#endif /* COIL_SYNC_H */
