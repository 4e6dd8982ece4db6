/* SPDX-License-Identifier: MIT */
/*
 * executor_internal.h - what the executors give the modules above them.
 */
#ifndef COIL_EXECUTOR_INTERNAL_H
#define COIL_EXECUTOR_INTERNAL_H

#include "coil/executor.h"

struct coil_loop;

/*
 * coil_executor_run on ex for the running task t of loop: submit, then
 * await the outcome (the future is let go however the wait ends, also if
 * the loop closes while the task waits). -ECANCELED means the job has
 * arg (executor.h); any other error, that the caller has it back.
 */
int coil__executor_run(coil_executor_t *ex, struct coil_loop *loop,
                       coil_job_fn fn, void *arg, coil_job_dispose_fn dispose);

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
