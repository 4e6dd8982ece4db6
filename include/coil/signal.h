/* SPDX-License-Identifier: MIT */
/**
 * @file coil/signal.h
 * Unix signals as loop callbacks and task waits (asyncio's
 * loop.add_signal_handler / remove_signal_handler, and a wait for tasks).
 *
 * A handled signal never runs user code inside the signal handler: coil's
 * handler only counts the delivery and wakes the loop, and the loop calls
 * the callback from its ready queue, like a coil_loop_call_soon callback,
 * once per delivery it saw. The kernel merges deliveries of one signal
 * that arrive while an earlier one is still pending, so a burst may be
 * seen as fewer deliveries than were sent (never more); deliveries spaced
 * out in time are each seen.
 *
 * Any thread may receive the signal: coil does not require other threads
 * to block it, and never changes any thread's signal mask. A signal that
 * every thread of the process blocks stays pending and is not seen until
 * some thread unblocks it.
 *
 * Several loops: a signal belongs to one loop of the process at a time.
 * While a loop handles a signal (a handler added, or a task waiting for
 * it), another loop that asks for the same signal gets -EBUSY; once the
 * first loop has let it go (its handler removed and its waits over, or
 * the loop closed) another loop may take it.
 *
 * Dispositions: when a loop takes a signal, coil installs its handler
 * with sigaction and keeps the disposition that was in place; when the
 * loop lets it go (the last handler removed, the last wait over, the loop
 * closed), that disposition is put back. Do not change the disposition of
 * a signal coil handles behind its back (with signal() or sigaction()):
 * the change is lost when coil puts the old one back.
 *
 * Not every signal can be handled: SIGKILL and SIGSTOP cannot be caught,
 * and SIGSEGV, SIGBUS, SIGFPE and SIGILL report a fault of the
 * instruction that raised them, which returning from a handler would run
 * again (coil's task stack overflow report owns SIGSEGV and SIGBUS).
 * Those give -EINVAL; so do the numbers the C library keeps for itself
 * (glibc's 32 and 33), through sigaction.
 *
 * Every function here must be called from the thread of the loop it acts
 * on (the running task's, for coil_signal_wait).
 */
#ifndef COIL_SIGNAL_H
#define COIL_SIGNAL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Call fn(arg) on loop once per delivery of signal signum to the process,
 * from the ready queue (never inside the signal handler), until the
 * handler is removed or the loop closed. Adding a handler for a signal
 * that already has one on this loop replaces it (fn and arg; deliveries
 * seen but not yet dispatched go to the new one). Tasks waiting in
 * coil_signal_wait for the same signal see the same deliveries.
 *
 * Does not suspend. Errors: -EINVAL (loop or fn NULL, signum out of
 * range, or a signal that cannot be handled: see the top of this file),
 * -EBADF (loop closed), -EBUSY (another loop of the process handles
 * signum), -ENOMEM, -EMFILE/-ENFILE (no fd for the loop's signal
 * channel, made when a loop first handles a signal), or sigaction's
 * error. On error nothing changed: a handler that was there stays.
 */
COIL_API int coil_loop_add_signal_handler(coil_loop_t *loop, int signum,
                                          coil_callback_fn fn, void *arg);

/**
 * Remove loop's handler for signum. Deliveries seen but not yet
 * dispatched are dropped: once this returns, the callback is not called
 * again, and arg may be freed. If nothing else of the loop uses signum
 * (no task waits for it), the disposition that was in place before coil
 * took the signal is put back. May be called from the handler itself.
 *
 * Does not suspend. Returns 0 if a handler was removed. Errors: -ENOENT
 * (loop had no handler for signum; a closed loop has none; also the
 * numbers only sigaction refuses, glibc's 32 and 33, which no handler
 * can have), -EINVAL (loop NULL, signum out of range, or one of the
 * signals refused above whatever sigaction says).
 */
COIL_API int coil_loop_remove_signal_handler(coil_loop_t *loop, int signum);

/**
 * Suspend the running task until signal signum is delivered to the
 * process, and return signum. The running task's loop takes the signal
 * for as long as the wait lasts, as a handler does: with or without a
 * handler for signum on that loop (both see the delivery). Several tasks
 * may wait for the same signal: each delivery wakes every task waiting
 * at that moment. A delivery that arrives before the wait starts, or
 * while no task waits, is not kept for a later wait.
 *
 * May suspend. Errors: -EPERM (not in a task), -EINVAL (signum as
 * coil_loop_add_signal_handler refuses), -EBUSY (another loop of the
 * process handles signum), -ENOMEM, -EMFILE/-ENFILE, sigaction's error,
 * -ECANCELED (the task was cancelled while waiting, or a cancel was
 * pending when the call began). A cancelled wait leaves nothing behind:
 * if it was the signal's last user on the loop, the previous disposition
 * is back when it returns. A cancel that arrives after a delivery woke
 * the task but before it ran does not undo the delivery: the call
 * returns signum and the cancel is delivered by the task's next wait
 * (coil's rule that a completed result wins; a timeout scope around the
 * call turns its cancel into -ETIMEDOUT as usual).
 */
COIL_API int coil_signal_wait(int signum);

#ifdef __cplusplus
}
#endif

#endif /* COIL_SIGNAL_H */
