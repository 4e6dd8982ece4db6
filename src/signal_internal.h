/* SPDX-License-Identifier: MIT */
/*
 * signal_internal.h - the signal module's internal calls (signal.c): a
 * hook of coil's own on a signal, for the runner's "the first SIGINT
 * cancels the main task, a second one takes the default action".
 *
 * An internal hook is a fallback: it hears a signal only while nothing
 * of the user's on the same loop does (no handler added with
 * coil_loop_add_signal_handler, no task in coil_signal_wait for it). A
 * user handler or waiter on the same signal displaces it, as a handler
 * added with asyncio's loop.add_signal_handler(SIGINT) displaces
 * asyncio.Runner's; when they go, the hook hears the signal again. It
 * counts as a user of the signal like any other: the loop takes the
 * signal (-EBUSY if another loop has it), and closing the loop removes
 * it and puts the previous disposition back.
 */
#ifndef COIL_SIGNAL_INTERNAL_H
#define COIL_SIGNAL_INTERNAL_H

#include "internal.h"

struct coil_loop;

/* Flags of coil__signal_add_internal. */

/*
 * One shot: the hook runs at most once. While it is the only user of the
 * signal in the process, coil's handler is installed with SA_RESETHAND,
 * so the kernel itself puts SIG_DFL back as it delivers the signal: a
 * second delivery takes the default action at once, even if the loop is
 * stuck and never dispatches the first. When the loop sees the delivery
 * the hook is spent (removed; coil__signal_remove_internal gives
 * -ENOENT), its fn(arg) runs once from the ready queue, and the
 * disposition from before coil's is put back.
 */
#define COIL__SIGNAL_ONCE 1u
/*
 * Only if the program has not taken the signal itself: -EEXIST unless
 * the disposition coil would put back (the one in place now, if no loop
 * of the process handles the signal) is SIG_DFL. asyncio.Runner installs
 * its SIGINT handler only over Python's default one for the same reason:
 * a program that ignores SIGINT (started in the background) or handles
 * it keeps its choice.
 */
#define COIL__SIGNAL_IF_DEFAULT 2u
/*
 * Not a source of wake-ups for the stuck-loop check of debug mode
 * (dump.c): the runner's SIGINT, the dump's own signal. A loop whose
 * tasks wait with nothing else to wake them is stuck, whether or not
 * someone could still press Ctrl-C.
 */
#define COIL__SIGNAL_QUIET 4u

/*
 * Give loop an internal hook on signum: fn(arg) runs from the ready
 * queue, like a handler's callback, for the deliveries it hears (see the
 * top). Adding again replaces the hook (fn, arg and flags); deliveries
 * already dispatched to the old one still run it. Call from the loop's
 * thread. Errors: as coil_loop_add_signal_handler (-EINVAL, -EBADF,
 * -EBUSY, -ENOMEM, -EMFILE...), and -EEXIST (COIL__SIGNAL_IF_DEFAULT).
 * On error nothing changed.
 */
int coil__signal_add_internal(struct coil_loop *loop, int signum,
                              coil_callback_fn fn, void *arg, unsigned flags);

/*
 * Remove loop's internal hook on signum; a call it was owed and has not
 * run is dropped. Returns 0, or -ENOENT (none, or a one-shot hook that
 * fired), -EINVAL (bad loop or signum). The previous disposition is back
 * if nothing else of the loop uses the signal.
 */
int coil__signal_remove_internal(struct coil_loop *loop, int signum);

/*
 * Whether a delivery could wake something of loop (a handler, a waiter,
 * an internal hook that is not QUIET, calls owed); *chan_fd: the loop's
 * signal channel (-1: none), which the caller does not count as an fd
 * of the program's.
 */
bool coil__signal_may_wake(struct coil_loop *loop, int *chan_fd);

#endif /* COIL_SIGNAL_INTERNAL_H */
