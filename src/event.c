/* SPDX-License-Identifier: MIT */
/*
 * event.c - asyncio.Event: a flag tasks wait for (sync.h).
 */
#include "sync_internal.h"

struct coil_event {
    struct coil__sync s;
    struct coil__waitq waiters;
    bool set;
};

static void destroy(struct coil__sync *s)
{
    coil__free(coil__container_of(s, struct coil_event, s));
}

int coil_event_new(coil_loop_t *loop, coil_event_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct coil_event *e;
    int err = coil__sync_new(loop, sizeof(*e), "event", destroy, (void **)&e);
    if (err)
        return err;
    coil__waitq_init(&e->waiters, coil__sync_abandoned, &e->s);
    e->waiters.what = "event";
    e->set = false;
    *out = e;
    return 0;
}

coil_event_t *coil_event_ref(coil_event_t *e)
{
    return e && coil__sync_ref(&e->s) ? e : NULL;
}

void coil_event_unref(coil_event_t *e)
{
    if (!e || !coil__sync_unref(&e->s))
        return;
    coil__waitq_grant_all(&e->waiters, -EBADF);
    coil__sync_release(&e->s);
}

int coil_event_set(coil_event_t *e)
{
    if (!e)
        return -EINVAL;
    if (!e->set) {
        e->set = true;
        coil__waitq_grant_all(&e->waiters, 0);
    }
    return 0;
}

int coil_event_clear(coil_event_t *e)
{
    if (!e)
        return -EINVAL;
    e->set = false;
    return 0;
}

bool coil_event_is_set(const coil_event_t *e)
{
    return e && e->set;
}

int coil_event_wait(coil_event_t *e)
{
    if (!e)
        return -EINVAL;
    struct coil_task *t;
    int err = coil__sync_task(&e->s, &t);
    if (err)
        return err;
    if (e->set)
        return 0;
    struct coil__waiter w;
    coil__sync_hold(&e->s);
    /* A set that came before a cancel has nothing to give back: the
     * flag stays as it is for everyone else. */
    err = coil__waitq_wait(&e->waiters, &w, COIL__WAITQ_GIVE_BACK);
    coil__sync_drop(&e->s);
    return err;
}
