/* SPDX-License-Identifier: MIT */
/**
 * @file coil/loop_group.h
 * a loop per core: N loops on N threads, each running
 * its own copy of a main task, and tasks of one loop running work on
 * another and awaiting it.
 *
 * A loop's objects stay on its thread for life: tasks never migrate, and
 * a stream, future or lock of loop A is used only by A's tasks. Work
 * crosses loops in two ways: coil_task_spawn_on (a task of A runs fn as
 * a task on B and awaits the outcome through a future of A), and
 * coil_loop_call_soon_threadsafe (a bare callback). A server spread
 * over the group opens one listener per loop with
 * coil_server_options_t's reuse_port: the kernel spreads connections
 * over the loops (docs/architecture.md, "A loop per core", says why
 * rather than one acceptor handing connections over).
 */
#ifndef COIL_LOOP_GROUP_H
#define COIL_LOOP_GROUP_H

#include "common.h"
#include "executor.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A loop group: loops, each on a thread of its own. */
typedef struct coil_loop_group coil_loop_group_t;

/** Options for coil_loop_group_start; zero-initialise, then set fields. */
typedef struct coil_loop_group_options {
    /** How many loops (and threads); 0: one per online CPU. At most 1024. */
    unsigned loops;
    /** Each loop's options (backend, context, stack size); NULL fields as
     * coil_loop_new_opts. */
    coil_loop_options_t loop;
} coil_loop_group_options_t;

/**
 * Start the group: each of its threads makes its loop and runs main(arg)
 * there as that loop's first task, as coil_run does on one thread (when
 * main returns, the loop's other tasks are cancelled and awaited, its
 * default executor is shut down and the loop is closed; the thread then
 * ends). Every loop is made before any main runs, and *group_out is set
 * before any main runs, so main may read it from arg. A main learns which
 * loop it runs on with coil_running_loop and coil_loop_group_index.
 * Ctrl-C is not hooked (each loop may add its own signal handlers).
 *
 * Errors: -EINVAL (NULL main or group_out, loops over 1024, bad loop
 * options), -EAGAIN (a thread could not be started), and the errors of
 * coil_loop_new_opts and coil_task_spawn (each main is made before start
 * returns). On error no main has run, no thread is left running and
 * nothing is allocated.
 */
COIL_API int coil_loop_group_start(const coil_loop_group_options_t *opts,
                                   coil_task_fn main, void *arg,
                                   coil_loop_group_t **group_out);

/** How many loops the group has; 0 for NULL. Any thread. */
COIL_API unsigned coil_loop_group_size(const coil_loop_group_t *group);

/**
 * Loop i of the group (0 <= i < size), or NULL. Any thread; the loop
 * stays valid to post to (coil_loop_call_soon_threadsafe,
 * coil_task_spawn_on: -EBADF once it closed) until coil_loop_group_free.
 * No new reference. Use it only through the calls made for other
 * threads: it belongs to its own.
 */
COIL_API coil_loop_t *coil_loop_group_loop(const coil_loop_group_t *group,
                                           unsigned i);

/** The index of loop in the group, or -EINVAL (NULL, or not the group's). */
COIL_API int coil_loop_group_index(const coil_loop_group_t *group,
                                   const coil_loop_t *loop);

/**
 * Any thread: cancel every loop's main task that has not ended, as a
 * Ctrl-C cancels coil_run's. Each main unwinds as for any cancellation.
 * Errors: -EINVAL (NULL).
 */
COIL_API int coil_loop_group_cancel(coil_loop_group_t *group);

/**
 * Wait until every thread of the group has ended (every main returned
 * and its loop closed). Returns 0 if every main returned 0 or more, else
 * the first error in loop order other than -ECANCELED, else -ECANCELED
 * (a main that was cancelled, by coil_loop_group_cancel say). Call it
 * once, from a thread that is not one of the group's, and not at the same
 * time as coil_loop_group_free. Errors: -EINVAL (NULL), -EDEADLK (called
 * on one of the group's threads), -EALREADY (joined before).
 */
COIL_API int coil_loop_group_join(coil_loop_group_t *group);

/**
 * Free the group and its loops. Other threads must no longer post to its
 * loops, and no join may be under way. Accepts NULL. A group not joined yet
 * is cancelled and joined first. Called on one of the group's own threads it
 * does nothing (the group cannot end there).
 */
COIL_API void coil_loop_group_free(coil_loop_group_t *group);

/**
 * From a task of loop A (the running loop): run fn(arg) as a task on loop
 * target and make *fut_out, a future of A, that gets the task's outcome:
 * its result as (void *)(intptr_t)result, its error, or -ECANCELED if the
 * task was cancelled (coil_await gives it). target may be A itself.
 *
 * Who owns arg, as for executor jobs (coil/executor.h): while fn may run,
 * arg is the call's. When the future gets the outcome, arg is the
 * caller's again. When the future is done without it (cancelled, or
 * completed by the caller) or A closes first, the call keeps arg until fn
 * has returned and then calls dispose(arg, outcome) exactly once, on
 * whichever loop's thread finishes with it (NULL dispose: arg needs
 * nothing). So a caller may free arg once its await returned the
 * outcome, and never has to wait for a cancelled fn to unwind.
 *
 * Cancelling the future (coil_future_cancel, or cancelling the task that
 * awaits it) cancels the task on target; so does A closing, since
 * nobody waits any more. The future is then done at once. If target's
 * main ends first (its loop then cancels its tasks and closes), the
 * outcome is the task's, usually -ECANCELED; -EBADF if it never started.
 *
 * target must stay allocated while the call may post to it: a group's
 * loops until coil_loop_group_free; a loop of coil_run until that
 * returns.
 *
 * The caller owns one reference to *fut_out (coil_future_unref).
 * Errors: -EINVAL (NULL target, fn or fut_out), -EPERM (no loop runs on
 * this thread), -EBADF (target closed), -ENOMEM; on error arg stays the
 * caller's and dispose is not called.
 */
COIL_API int coil_task_spawn_on(coil_loop_t *target, coil_task_fn fn,
                                void *arg, coil_job_dispose_fn dispose,
                                coil_future_t **fut_out);

#ifdef __cplusplus
}
#endif

#endif /* COIL_LOOP_GROUP_H */
