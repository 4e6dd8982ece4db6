/* SPDX-License-Identifier: MIT */
/*
 * executor_internal.h - what the executors give the modules above them.
 */
#ifndef COIL_EXECUTOR_INTERNAL_H
#define COIL_EXECUTOR_INTERNAL_H

#include "coil/executor.h"

struct coil_loop;

/*
 * coil_await(fut, value_out), consuming the caller's reference to fut
 * whatever happens, also if the loop closes while the task waits (the
 * task is abandoned and never returns here: a task hook drops it then).
 */
int coil__executor_await(coil_future_t *fut, void **value_out);

/* coil_run's: shut the loop's default executor down, if it has one,
 * waiting for its jobs as asyncio.run does (300 s), the loop running
 * meanwhile. The loop must not be running. */
void coil__loop_shutdown_default_executor(struct coil_loop *loop);

/* Threads of the loop's resolver pool: name lookups run there, apart
 * from the default executor, so that user jobs cannot starve them. */
#define COIL__RESOLVER_THREADS 4

/* The loop's resolver pool, made on first use (no new reference).
 * Errors: -EBADF (loop closed), -ENOMEM, pthread's. */
int coil__loop_resolver(struct coil_loop *loop, coil_executor_t **out);

#endif /* COIL_EXECUTOR_INTERNAL_H */
