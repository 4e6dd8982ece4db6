/* SPDX-License-Identifier: MIT */
/*
 * semaphore.c - asyncio.Semaphore and BoundedSemaphore (sync.h).
 *
 * A release with tasks waiting grants its permit straight to the first
 * of them (value does not change), so value > 0 only while nobody waits:
 * a task arriving later cannot take a permit meant for a waiter. A waiter
 * cancelled after its grant, before it ran, releases the permit again.
 */
#include <limits.h>

#include "sync_internal.h"

struct coil_semaphore {
    struct coil__sync s;
    struct coil__waitq waiters;
    int value;
    int bound; /* INT_MAX: unbounded */
};

static void sem_abandoned(void *owner, struct coil__waiter *w);

static void destroy(struct coil__sync *s)
{
    coil__free(coil__container_of(s, struct coil_semaphore, s));
}

static int make(coil_loop_t *loop, int value, int bound,
                coil_semaphore_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (value < 0)
        return -EINVAL;
    struct coil_semaphore *sem;
    int err = coil__sync_new(loop, sizeof(*sem), "semaphore", destroy,
                             (void **)&sem);
    if (err)
        return err;
    coil__waitq_init(&sem->waiters, sem_abandoned, &sem->s);
    sem->waiters.what = "semaphore";
    sem->value = value;
    sem->bound = bound;
    *out = sem;
    return 0;
}

int coil_semaphore_new(coil_loop_t *loop, int value, coil_semaphore_t **out)
{
    return make(loop, value, INT_MAX, out);
}

int coil_semaphore_new_bounded(coil_loop_t *loop, int value,
                               coil_semaphore_t **out)
{
    return make(loop, value, value, out);
}

coil_semaphore_t *coil_semaphore_ref(coil_semaphore_t *sem)
{
    return sem && coil__sync_ref(&sem->s) ? sem : NULL;
}

void coil_semaphore_unref(coil_semaphore_t *sem)
{
    if (!sem || !coil__sync_unref(&sem->s))
        return;
    coil__waitq_grant_all(&sem->waiters, -EBADF);
    coil__sync_release(&sem->s);
}

/* A permit comes back: to the first waiter, else to the count. */
static void give(struct coil_semaphore *sem)
{
    if (!coil__waitq_grant_first(&sem->waiters, 0))
        sem->value++;
}

/* The loop closed with a task waiting for a permit: one it had been
 * granted comes back. */
static void sem_abandoned(void *owner, struct coil__waiter *w)
{
    struct coil_semaphore *sem =
        coil__container_of(owner, struct coil_semaphore, s);
    if (w->granted && w->result == 0)
        give(sem);
    coil__sync_drop(&sem->s);
}

int coil_semaphore_try_acquire(coil_semaphore_t *sem)
{
    if (!sem)
        return -EINVAL;
    if (sem->value == 0)
        return -EAGAIN;
    sem->value--;
    return 0;
}

int coil_semaphore_acquire(coil_semaphore_t *sem)
{
    if (!sem)
        return -EINVAL;
    struct coil_task *t;
    int err = coil__sync_task(&sem->s, &t);
    if (err)
        return err;
    if (sem->value > 0) {
        sem->value--;
        return 0;
    }
    struct coil__waiter w;
    coil__sync_hold(&sem->s);
    err = coil__waitq_wait(&sem->waiters, &w, COIL__WAITQ_GIVE_BACK);
    if (err == -ECANCELED && w.granted && w.result == 0)
        give(sem); /* granted, then cancelled before it ran */
    coil__sync_drop(&sem->s);
    return err;
}

int coil_semaphore_release(coil_semaphore_t *sem)
{
    if (!sem)
        return -EINVAL;
    if (sem->value >= sem->bound)
        return -EOVERFLOW;
    give(sem);
    return 0;
}

int coil_semaphore_value(const coil_semaphore_t *sem)
{
    return sem ? sem->value : 0;
}
