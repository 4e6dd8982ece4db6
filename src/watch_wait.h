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

#endif /* COIL_WATCH_WAIT_H */
