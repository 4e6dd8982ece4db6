/* SPDX-License-Identifier: MIT */
/*
 * sync.c - the life every synchronisation object shares (sync_internal.h):
 * bound to a loop, the users' references, the holds of suspended calls.
 */
#include "loop_internal.h"
#include "sync_internal.h"
#include "task_internal.h"

int coil__sync_init(struct coil__sync *s, struct coil_loop *loop,
                    const char *what, void (*destroy)(struct coil__sync *))
{
    if (!loop)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    s->loop = loop;
    s->refs = 1;
    s->holds = 0;
    s->what = what;
    s->destroy = destroy;
    coil__loop_ref(loop);
    return 0;
}

int coil__sync_new(struct coil_loop *loop, size_t size, const char *what,
                   void (*destroy)(struct coil__sync *), void **out)
{
    *out = NULL;
    if (!loop)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    struct coil__sync *s = coil__malloc(size);
    if (!s)
        return -ENOMEM;
    int err = coil__sync_init(s, loop, what, destroy);
    if (err) {
        coil__free(s);
        return err;
    }
    *out = s;
    return 0;
}

bool coil__sync_ref(struct coil__sync *s)
{
    if (s->refs == 0) {
        coil__loop_report(s->loop, 0,
                          "a reference taken on a %s whose last reference "
                          "was dropped",
                          s->what);
        return false;
    }
    s->refs++;
    return true;
}

bool coil__sync_unref(struct coil__sync *s)
{
    if (s->refs == 0) {
        coil__loop_report(s->loop, 0,
                          "a %s unref'd with no reference left (unref'd once "
                          "too often)",
                          s->what);
        return false;
    }
    return --s->refs == 0;
}

void coil__sync_release(struct coil__sync *s)
{
    if (s->refs || s->holds)
        return;
    struct coil_loop *loop = s->loop;
    s->destroy(s);
    coil__loop_unref(loop);
}

void coil__sync_abandoned(void *owner, struct coil__waiter *w)
{
    (void)w;
    coil__sync_drop(owner);
}
