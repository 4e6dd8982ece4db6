/* SPDX-License-Identifier: MIT */
/*
 * sync_internal.h - what the synchronisation objects (sync.h: locks,
 * events, conditions, semaphores, barriers; queue.h) share: the life of
 * an object bound to a loop, and the lock's calls a condition needs.
 *
 * Life: the users' references (_new gives one, _ref adds, _unref drops)
 * and the holds of the calls suspended on the object. The last unref
 * wakes every waiter with -EBADF (the object's own close) and the memory
 * goes when the last of them has left; a waiter abandoned by a closing
 * loop drops its hold through the line's abandon hook. Every object
 * holds a reference on its loop, so it stays safe to query and to unref
 * after the loop is gone.
 */
#ifndef COIL_SYNC_INTERNAL_H
#define COIL_SYNC_INTERNAL_H

#include "coil/sync.h"
#include "task_internal.h"
#include "waitq.h"

struct coil_loop;
struct coil_task;

struct coil__sync {
    struct coil_loop *loop; /* referenced */
    unsigned refs;          /* the users' */
    unsigned holds;         /* calls suspended on the object */
    const char *what;       /* "lock", "queue"...: for reports */
    void (*destroy)(struct coil__sync *s); /* free the object's memory */
};

/* Bind s to loop (a loop reference). Errors: -EINVAL (NULL loop),
 * -EBADF (closed loop). */
int coil__sync_init(struct coil__sync *s, struct coil_loop *loop,
                    const char *what, void (*destroy)(struct coil__sync *));

/* Allocate an object of size bytes that begins with its struct
 * coil__sync, bound to loop (coil__sync_init); *out is the object, its
 * other fields uninitialised. Errors: as coil__sync_init, -ENOMEM. */
int coil__sync_new(struct coil_loop *loop, size_t size, const char *what,
                   void (*destroy)(struct coil__sync *), void **out);

/* _ref: false (and a report) after the last unref. */
bool coil__sync_ref(struct coil__sync *s);
/* _unref: true if that was the last reference (the caller then wakes its
 * waiters with -EBADF and calls coil__sync_release); a report and false
 * for one unref too many. */
bool coil__sync_unref(struct coil__sync *s);
/* Free the object if nobody holds it any more. */
void coil__sync_release(struct coil__sync *s);

/* The running task, if it may wait on s: 0 and *out, or -EPERM (not in
 * a task) or -EINVAL (a task of another loop). */
static inline int coil__sync_task(const struct coil__sync *s,
                                  struct coil_task **out)
{
    struct coil_task *t = coil__task_current();
    *out = t;
    if (coil__unlikely(!t))
        return -EPERM;
    if (coil__unlikely(coil__task_loop(t) != s->loop))
        return -EINVAL;
    return 0;
}

/* A wait begins / ends (the end may free the object: touch nothing of
 * it afterwards). */
static inline void coil__sync_hold(struct coil__sync *s)
{
    s->holds++;
}
static inline void coil__sync_drop(struct coil__sync *s)
{
    if (--s->holds == 0 && s->refs == 0)
        coil__sync_release(s);
}
/* The abandon hook of a line whose grants need no giving back (waitq.h):
 * owner is the coil__sync; drops the wait's hold. */
void coil__sync_abandoned(void *owner, struct coil__waiter *w);

/* The lock's calls a condition uses (lock.c). */
/* Whether t holds l. */
bool coil__lock_held_by(const coil_lock_t *l, const struct coil_task *t);
/* Release l, held by the running task, to the next waiter. */
void coil__lock_pass(coil_lock_t *l);
/* Take l again for the running task t, whatever cancels come (they are
 * delivered by the next wait). Returns 0, or -EBADF if l's last
 * reference went while waiting (l is then not held). */
int coil__lock_reacquire(coil_lock_t *l, struct coil_task *t);

#endif /* COIL_SYNC_INTERNAL_H */
