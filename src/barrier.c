/* SPDX-License-Identifier: MIT */
/*
 * barrier.c - asyncio.Barrier (sync.h).
 *
 * The tasks of a round wait in one line; the last arrival grants each of
 * them its arrival index (its place in the line) and the barrier is
 * empty for the next round at once: the passage is granted, so no task of
 * this round can be counted in the next one (asyncio needs a "draining"
 * state for that; direct grants do not). A cancel while waiting takes the
 * task out of the round. A cancel after the grant cannot undo a passage
 * the others have made: the wait keeps its index (COIL__WAITQ_KEEP).
 */
#include "sync_internal.h"

struct coil_barrier {
    struct coil__sync s;
    struct coil__waitq waiters; /* this round's, in arrival order */
    unsigned parties;
    bool broken;
};

static void destroy(struct coil__sync *s)
{
    coil__free(coil__container_of(s, struct coil_barrier, s));
}

int coil_barrier_new(coil_loop_t *loop, unsigned parties,
                     coil_barrier_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (parties == 0 || parties > INT32_MAX)
        return -EINVAL;
    struct coil_barrier *b;
    int err = coil__sync_new(loop, sizeof(*b), "barrier", destroy, (void **)&b);
    if (err)
        return err;
    coil__waitq_init(&b->waiters, coil__sync_abandoned, &b->s);
    b->waiters.what = "barrier";
    b->parties = parties;
    b->broken = false;
    *out = b;
    return 0;
}

coil_barrier_t *coil_barrier_ref(coil_barrier_t *b)
{
    return b && coil__sync_ref(&b->s) ? b : NULL;
}

void coil_barrier_unref(coil_barrier_t *b)
{
    if (!b || !coil__sync_unref(&b->s))
        return;
    coil__waitq_grant_all(&b->waiters, -EBADF);
    coil__sync_release(&b->s);
}

int coil_barrier_wait(coil_barrier_t *b)
{
    if (!b)
        return -EINVAL;
    struct coil_task *t;
    int err = coil__sync_task(&b->s, &t);
    if (err)
        return err;
    if (b->broken)
        return -EPIPE;
    if (b->waiters.len + 1 == b->parties) {
        int index = 0;
        struct coil__waiter *w;
        while ((w = coil__waitq_first(&b->waiters)))
            coil__waitq_grant(&b->waiters, w, index++);
        return index;
    }
    struct coil__waiter w;
    coil__sync_hold(&b->s);
    err = coil__waitq_wait(&b->waiters, &w, COIL__WAITQ_KEEP);
    coil__sync_drop(&b->s);
    return err;
}

int coil_barrier_abort(coil_barrier_t *b)
{
    if (!b)
        return -EINVAL;
    b->broken = true;
    coil__waitq_grant_all(&b->waiters, -EPIPE);
    return 0;
}

int coil_barrier_reset(coil_barrier_t *b)
{
    if (!b)
        return -EINVAL;
    b->broken = false;
    coil__waitq_grant_all(&b->waiters, -EPIPE);
    return 0;
}

unsigned coil_barrier_parties(const coil_barrier_t *b)
{
    return b ? b->parties : 0;
}

unsigned coil_barrier_waiting(const coil_barrier_t *b)
{
    return b ? (unsigned)b->waiters.len : 0;
}

bool coil_barrier_broken(const coil_barrier_t *b)
{
    return b && b->broken;
}
