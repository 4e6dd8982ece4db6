/* SPDX-License-Identifier: MIT */
/**
 * @file coil/group.h
 * task groups: structured concurrency (asyncio.TaskGroup).
 *
 * A group belongs to the task that made it (its parent). Children are
 * spawned into it; coil_group_wait suspends the parent until every child
 * has finished. The first child to fail (return an error other than
 * -ECANCELED) cancels every sibling and the parent's current wait, so the
 * parent stops what it is doing and comes to coil_group_wait, which
 * returns that first error. Every child error is kept
 * (coil_group_errors): none is lost.
 *
 * If the parent is cancelled from outside (while it waits, or before it
 * came to the wait: its body saw the cancel), the children are cancelled
 * and waited for, and coil_group_wait returns -ECANCELED; if a child
 * failed as well, the child's error is returned and the cancellation is
 * re-armed for the parent's next wait: neither is lost (asyncio 3.13).
 * "From outside" means the parent's cancel count (coil_task_cancelling)
 * grew since the group was made: a cancel the parent once swallowed does
 * not count.
 *
 *     coil_group_t *g;
 *     coil_group_new(&g);
 *     coil_group_spawn(g, fetch, &a, NULL, NULL);
 *     coil_group_spawn(g, fetch, &b, NULL, NULL);
 *     int err = coil_group_wait(g);   // both finished, or one failed
 *     coil_group_unref(g);
 */
#ifndef COIL_GROUP_H
#define COIL_GROUP_H

#include "common.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A task group (see the top of this file). */
typedef struct coil_group coil_group_t;

/** A group whose parent is the running task.
 * Errors: -EINVAL (NULL), -EPERM (not in a task), -ENOMEM. */
COIL_API int coil_group_new(coil_group_t **group_out);

/**
 * Spawn a child (as coil_task_spawn_opts on the parent's loop; opts may be
 * NULL). Any task may add children (a child its siblings) until
 * coil_group_wait has returned, also while the parent waits: the wait
 * covers them. If the group is already shutting down (a child failed, it
 * was cancelled), the child is created cancelled: it never runs. Errors:
 * -EINVAL, -EBADF (the wait has returned, or the group was dropped
 * without being waited for), -ENOMEM.
 */
COIL_API int coil_group_spawn(coil_group_t *group, coil_task_fn fn, void *arg,
                              const coil_task_options_t *opts,
                              coil_task_t **task_out);

/** Cancel every child still running. Errors: -EINVAL. */
COIL_API int coil_group_cancel(coil_group_t *group);

/**
 * Wait for every child (see the top of this file). Only the parent may
 * call it, once. Returns 0, the first child error, or -ECANCELED.
 * Errors: -EINVAL, -EPERM (not the parent), -EALREADY (called before).
 * May suspend.
 */
COIL_API int coil_group_wait(coil_group_t *group);

/**
 * The errors of the children that failed, in the order they failed:
 * fills errors[0..n) and returns how many there are in all (if memory ran
 * out while recording them, the count still includes every failure but
 * the array holds only those recorded; the first is always returned by
 * coil_group_wait).
 * -EINVAL for NULL group, or errors NULL with n > 0.
 */
COIL_API int coil_group_errors(const coil_group_t *group, int *errors,
                               size_t n);

/**
 * Drop the group (its one holder is the parent; there is no _ref). If it
 * was not waited for, its children are cancelled (and finish on their
 * own; the memory goes with the last of them). If the loop closes while
 * the parent waits, the group goes with the parent. Accepts NULL.
 */
COIL_API void coil_group_unref(coil_group_t *group);

#ifdef __cplusplus
}
#endif

#endif /* COIL_GROUP_H */
