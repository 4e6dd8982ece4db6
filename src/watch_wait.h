/* SPDX-License-Identifier: MIT */
/*
 * watch_wait.h - a task waits for an fd (the "wait" verb of watch.h, at
 * the task layer, since it suspends).
 */
#ifndef COIL_WATCH_WAIT_H
#define COIL_WATCH_WAIT_H

#include "watch.h"

/*
 * Suspend the running task until direction dir (COIL__EV_READ or
 * COIL__EV_WRITE) of w is ready, or the fd has an error or hang-up. Call
 * it after the fd's non-blocking I/O said EAGAIN. Returns 0 (ready: try
 * the I/O again), -EBADF (w was closed, or the fd found closed, while
 * waiting; or w is not bound), -ECANCELED (the task was cancelled; a
 * cancel pending at the call is delivered at once), -EPERM (not in a
 * task, or the fd cannot be polled), -EBUSY (another task, or a callback
 * watcher, has that direction), -ENOMEM.
 */
int coil__watch_wait(struct coil__watch *w, unsigned dir);

/*
 * Suspend the running task until the receive submitted on w
 * (coil__watch_recv) completes: 0 (take it: coil__watch_recv_take;
 * returned at once if it already completed, or none is in flight),
 * -EBADF (w closed, or its read side shut), -ECANCELED (the receive stays
 * in flight and what it gets is kept for the next reader), and the
 * errors of coil__watch_wait. Arms no readiness.
 */
int coil__watch_wait_recv(struct coil__watch *w);

/*
 * End a receive left in flight on w (a cancelled reader's) and wait for
 * its completion, which comes soon: what it received is then kept in w
 * (nothing, if the cancel came first). 0 at once if none is in
 * flight (w bound or not). Errors as coil__watch_wait_recv.
 */
int coil__watch_recv_settle(struct coil__watch *w);

#endif /* COIL_WATCH_WAIT_H */
