/* SPDX-License-Identifier: MIT */
/*
 * runner_internal.h - what coil_run (runner.c) and a loop group's threads
 * (loop_group.c) share: running a loop's main task to its end, asyncio.run
 * style.
 */
#ifndef COIL_RUNNER_INTERNAL_H
#define COIL_RUNNER_INTERNAL_H

#include "internal.h"

/*
 * Run loop until its main task t finishes (cancelling t if the loop was
 * stopped before), then cancel every other task of the loop and run it
 * until they have all finished. The caller then shuts the default
 * executor down (coil__loop_shutdown_default_executor) and takes the
 * outcome (coil__run_outcome).
 */
void coil__run_main_to_end(coil_loop_t *loop, coil_task_t *t);

/* The finished main task's outcome as coil_run returns it: its result
 * (>= 0) or its error. */
int coil__run_outcome(coil_task_t *t);

#endif /* COIL_RUNNER_INTERNAL_H */
