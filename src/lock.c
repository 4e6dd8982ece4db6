/* SPDX-License-Identifier: MIT */
/*
 * lock.c - asyncio.Lock and asyncio.Condition (sync.h).
 *
 * The lock records its holder. A release with tasks waiting hands the
 * lock straight to the first of them, so it is never free while someone
 * waits and a later arrival cannot take it first. A waiter cancelled
 * after the hand-over, before it ran, passes the lock on in turn.
 *
 * A condition's wait releases the lock, waits in the condition's line,
 * and takes the lock again in a wait that a cancel cannot interrupt, so
 * the task holds the lock whenever the wait returns, as asyncio's does. A
 * waiter cancelled after a notify reached it passes the notify on to the
 * next waiter (asyncio 3.13), so no notification is lost.
 */
#include <limits.h>

#include "loop_internal.h"
#include "sync_internal.h"
#include "task_internal.h"

struct coil_lock {
    struct coil__sync s;
    struct coil__waitq waiters;
    struct coil_task *holder;
};

static void lock_destroy(struct coil__sync *s)
{
    coil__free(coil__container_of(s, struct coil_lock, s));
}

/* The loop closed with a task waiting for the lock: if it had been
 * handed the lock, the lock passes on (or is free). */
static void lock_abandoned(void *owner, struct coil__waiter *w)
{
    struct coil_lock *l = coil__container_of(owner, struct coil_lock, s);
    if (w->granted && w->result == 0)
        coil__lock_pass(l);
    coil__sync_drop(&l->s);
}

int coil_lock_new(coil_loop_t *loop, coil_lock_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct coil_lock *l;
    int err =
        coil__sync_new(loop, sizeof(*l), "lock", lock_destroy, (void **)&l);
    if (err)
        return err;
    coil__waitq_init(&l->waiters, lock_abandoned, &l->s);
    l->waiters.what = "lock";
    l->holder = NULL;
    *out = l;
    return 0;
}

coil_lock_t *coil_lock_ref(coil_lock_t *l)
{
    return l && coil__sync_ref(&l->s) ? l : NULL;
}

void coil_lock_unref(coil_lock_t *l)
{
    if (!l || !coil__sync_unref(&l->s))
        return;
    coil__waitq_grant_all(&l->waiters, -EBADF);
    coil__sync_release(&l->s);
}

bool coil__lock_held_by(const coil_lock_t *l, const struct coil_task *t)
{
    return t && l->holder == t;
}

/* The holder lets go: the first waiter holds the lock from now on. */
void coil__lock_pass(coil_lock_t *l)
{
    struct coil__waiter *w = coil__waitq_first(&l->waiters);
    l->holder = w ? w->task : NULL;
    if (w)
        coil__waitq_grant(&l->waiters, w, 0);
}

static int wait_turn(struct coil_lock *l, enum coil__waitq_mode mode)
{
    struct coil__waiter w;
    coil__sync_hold(&l->s);
    int err = coil__waitq_wait(&l->waiters, &w, mode);
    if (err == -ECANCELED && w.granted && w.result == 0)
        coil__lock_pass(l); /* handed over, then cancelled before it ran */
    coil__sync_drop(&l->s);
    return err;
}

int coil_lock_try_acquire(coil_lock_t *l)
{
    if (!l)
        return -EINVAL;
    struct coil_task *t;
    int err = coil__sync_task(&l->s, &t);
    if (err)
        return err;
    if (l->holder == t)
        return -EDEADLK;
    if (l->holder)
        return -EAGAIN;
    l->holder = t;
    return 0;
}

int coil_lock_acquire(coil_lock_t *l)
{
    int err = coil_lock_try_acquire(l);
    if (err != -EAGAIN)
        return err;
    return wait_turn(l, COIL__WAITQ_GIVE_BACK);
}

int coil__lock_reacquire(coil_lock_t *l, struct coil_task *t)
{
    if (!l->holder) {
        l->holder = t;
        return 0;
    }
    return wait_turn(l, COIL__WAITQ_SHIELD);
}

int coil_lock_release(coil_lock_t *l)
{
    if (!l)
        return -EINVAL;
    struct coil_task *t = coil__task_current();
    if (!coil__lock_held_by(l, t))
        return -EPERM;
    coil__lock_pass(l);
    return 0;
}

bool coil_lock_locked(const coil_lock_t *l)
{
    return l && l->holder;
}

/* ------------------------------------------------------------------ */
/* Condition                                                            */
/* ------------------------------------------------------------------ */

struct coil_condition {
    struct coil__sync s;
    struct coil__waitq waiters;
    struct coil_lock *lock; /* referenced */
};

static void cond_destroy(struct coil__sync *s)
{
    struct coil_condition *c = coil__container_of(s, struct coil_condition, s);
    coil_lock_unref(c->lock);
    coil__free(c);
}

/* The loop closed with a task waiting on the condition: a notification
 * it had been given goes to the next waiter. */
static void cond_abandoned(void *owner, struct coil__waiter *w)
{
    struct coil_condition *c = coil__container_of(owner, struct coil_condition,
                                                  s);
    if (w->granted && w->result == 0)
        (void)coil__waitq_grant_first(&c->waiters, 0);
    coil__sync_drop(&c->s);
}

int coil_condition_new(coil_loop_t *loop, coil_lock_t *lock,
                       coil_condition_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (lock && lock->s.loop != loop)
        return -EINVAL;
    struct coil_condition *c;
    int err = coil__sync_new(loop, sizeof(*c), "condition", cond_destroy,
                             (void **)&c);
    if (err)
        return err;
    if (lock)
        err = coil_lock_ref(lock) ? 0 : -EINVAL;
    else
        err = coil_lock_new(loop, &lock);
    if (err) {
        coil__loop_unref(loop);
        coil__free(c);
        return err;
    }
    coil__waitq_init(&c->waiters, cond_abandoned, &c->s);
    c->waiters.what = "condition";
    c->lock = lock;
    *out = c;
    return 0;
}

coil_condition_t *coil_condition_ref(coil_condition_t *c)
{
    return c && coil__sync_ref(&c->s) ? c : NULL;
}

void coil_condition_unref(coil_condition_t *c)
{
    if (!c || !coil__sync_unref(&c->s))
        return;
    coil__waitq_grant_all(&c->waiters, -EBADF);
    coil__sync_release(&c->s);
}

coil_lock_t *coil_condition_lock(coil_condition_t *c)
{
    return c ? c->lock : NULL;
}

/* The running task, holding c's lock: 0, or -EINVAL/-EPERM. */
static int holder_check(struct coil_condition *c, struct coil_task **t)
{
    if (!c)
        return -EINVAL;
    int err = coil__sync_task(&c->s, t);
    if (err)
        return err;
    return coil__lock_held_by(c->lock, *t) ? 0 : -EPERM;
}

/* The condition's hold while its waiter takes the lock again: that wait
 * is the lock's line, whose abandon hook knows nothing of the condition,
 * so a task abandoned there (its loop closed) drops the hold through a
 * task hook instead. */
struct cond_hold {
    struct coil__task_hook hook;
    struct coil_condition *c;
};

static void cond_hold_abandoned(struct coil__task_hook *hook,
                                struct coil_task *t)
{
    (void)t;
    coil__sync_drop(&coil__container_of(hook, struct cond_hold, hook)->c->s);
}

int coil_condition_wait(coil_condition_t *c)
{
    struct coil_task *t;
    int err = holder_check(c, &t);
    if (err)
        return err;
    struct coil_lock *l = c->lock;
    struct coil__waiter w;
    coil__sync_hold(&c->s);
    coil__lock_pass(l);
    err = coil__waitq_wait(&c->waiters, &w, COIL__WAITQ_GIVE_BACK);
    if (err == -ECANCELED && w.granted && w.result == 0)
        (void)coil__waitq_grant_first(&c->waiters, 0); /* pass it on */
    /* The condition's last reference went while we waited: its lock may
     * go with it, so it is not taken again (sync.h says so). */
    if (err == -EBADF && w.granted) {
        coil__sync_drop(&c->s);
        return err;
    }
    struct cond_hold h = {{.on_finish = cond_hold_abandoned}, c};
    coil__task_hook_add(t, &h.hook);
    int lerr = coil__lock_reacquire(l, t);
    coil__task_hook_remove(&h.hook);
    coil__sync_drop(&c->s);
    return lerr ? lerr : err;
}

int coil_condition_wait_for(coil_condition_t *c, bool (*pred)(void *arg),
                            void *arg)
{
    struct coil_task *t;
    int err = holder_check(c, &t);
    if (err)
        return err;
    if (!pred)
        return -EINVAL;
    while (!pred(arg)) {
        err = coil_condition_wait(c);
        if (err)
            return err;
    }
    return 0;
}

int coil_condition_notify(coil_condition_t *c, unsigned n)
{
    if (!c)
        return -EINVAL;
    if (!coil__lock_held_by(c->lock, coil__task_current()))
        return -EPERM;
    int woken = 0;
    while ((unsigned)woken < n && woken < INT_MAX &&
           coil__waitq_grant_first(&c->waiters, 0))
        woken++;
    return woken;
}

int coil_condition_notify_all(coil_condition_t *c)
{
    return coil_condition_notify(c, UINT_MAX);
}
