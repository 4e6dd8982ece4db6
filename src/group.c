/* SPDX-License-Identifier: MIT */
/*
 * group.c - task groups (structured concurrency; see coil/group.h).
 *
 * Each child has a member record: a waiter on the child's future (so the
 * group hears when it finishes) and a reference to the child. The group
 * counts children still running; the parent suspends in coil_group_wait
 * until that count is zero. Children may be added until the wait has
 * returned, also by a child while the parent waits (asyncio's TaskGroup
 * accepts tasks until it has finished).
 *
 * The group's life is one state, changed only by set_state:
 *
 *   OPEN -----> SHUTTING_DOWN -----> DONE        (coil_group_wait returned)
 *     \              |
 *      +-------------+-------------> ABANDONED   (unref'd, never waited)
 *
 * SHUTTING_DOWN: a child failed, the group was cancelled, or the parent
 * was cancelled from outside; the children are cancelled and a child
 * spawned now is born cancelled. The first child failure also cancels the
 * parent (a request the group withdraws in coil_group_wait, as a timeout
 * scope does), which interrupts whatever the parent waits for and sends
 * it to coil_group_wait.
 *
 * Outside cancellations are told from the group's own by the parent's
 * cancel count (coil_task_cancelling) against its level when the group
 * was made, as timeout scopes do. At the end of the wait, with the
 * group's own request withdrawn: a count above the level means the parent
 * was cancelled from outside. Then coil_group_wait returns -ECANCELED, or,
 * if a child failed, the child's error with the cancellation re-armed for
 * the parent's next wait (asyncio 3.13): neither is lost.
 *
 * The group is reference counted: the creator holds one, each member
 * record one (until its child finished), so a group dropped before it was
 * waited for lives on until its cancelled children are done. It holds a
 * reference on its parent task.
 */
#include "loop_internal.h"
#include "task_internal.h"

enum group_state {
    OPEN,
    SHUTTING_DOWN,
    DONE,
    ABANDONED,
};

struct member {
    struct coil__fwaiter fw; /* on the child's future */
    struct coil_group *g;
    struct coil_task *child; /* referenced */
    struct coil__list link;  /* in g->members */
};

struct coil_group {
    struct coil__wait wait;    /* the parent suspends here */
    struct coil_task *parent;  /* referenced */
    struct coil__list members; /* children not finished */
    size_t running;            /* how many */
    int first_error;           /* the first child error (never lost) */
    int *errors;               /* child errors, in the order they failed */
    size_t nerrors, cap;
    int lost_errors;           /* errors beyond the array (no memory) */
    unsigned refs;
    unsigned level;            /* the parent's cancel count at creation */
    uint8_t state;             /* enum group_state */
    bool cancelled_parent;     /* the group's own request on the parent */
    bool waiting;              /* the parent is suspended in the wait */
    bool released;             /* the creator's reference was dropped */
};

static void group_unref(struct coil_group *g)
{
    if (--g->refs)
        return;
    coil_task_unref(g->parent);
    coil__free(g->errors);
    coil__free(g);
}

static void cancel_children(struct coil_group *g)
{
    for (struct coil__list *l = g->members.next; l != &g->members;
         l = l->next)
        coil_task_cancel(coil__container_of(l, struct member, link)->child);
}

/* The one transition function (see the top). Leaving OPEN cancels the
 * children, except into DONE (none runs then) and on a closed loop (it
 * abandons them itself). */
static void set_state(struct coil_group *g, enum group_state to)
{
    enum group_state from = g->state;
    if (from == to || from == DONE || from == ABANDONED)
        return;
    g->state = (uint8_t)to;
    if (to != DONE && from == OPEN &&
        !coil__loop_closed(coil__task_loop(g->parent)))
        cancel_children(g);
}

static void record_error(struct coil_group *g, int err)
{
    if (!g->first_error)
        g->first_error = err;
    if (g->nerrors == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4;
        int *e = coil__realloc(g->errors, cap * sizeof(*e));
        if (!e) {
            /* Without room for the code, keep the count honest; the first
             * error is kept apart and is what coil_group_wait returns. */
            g->lost_errors++;
            return;
        }
        g->errors = e;
        g->cap = cap;
    }
    g->errors[g->nerrors++] = err;
}

static void member_free(struct member *m)
{
    struct coil_group *g = m->g;
    coil__list_remove(&m->link);
    g->running--;
    coil_task_unref(m->child);
    coil__free(m);
}

static void child_done(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct member *m = coil__container_of(node, struct member, fw.node);
    struct coil_group *g = m->g;
    int outcome = coil_future_error(coil_task_future(m->child));
    member_free(m);
    if (outcome < 0 && outcome != -ECANCELED) {
        record_error(g, outcome);
        if (g->state == OPEN) {
            set_state(g, SHUTTING_DOWN);
            /* Interrupt the parent, unless it is already waiting for us
             * (then it needs no push) or has left the group. */
            if (!g->waiting && !coil__task_done(g->parent)) {
                g->cancelled_parent = true;
                coil_task_cancel(g->parent);
            }
        }
    }
    if (g->running == 0 && g->waiting) {
        g->waiting = false;
        coil__task_wake(g->parent, 0);
    }
    group_unref(g);
}

static void child_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct member *m = coil__container_of(node, struct member, fw.node);
    struct coil_group *g = m->g;
    member_free(m);
    group_unref(g);
}

static const struct coil__ready_ops member_ops = {child_done, child_discard};

static bool group_cancel_op(struct coil__wait *w, struct coil_task *t)
{
    (void)t;
    struct coil_group *g = coil__container_of(w, struct coil_group, wait);
    /* Cancelled from outside while waiting: cancel the children, keep
     * waiting for them (true: the wait goes on, no cancel is pending; the
     * count tells coil_group_wait about it). */
    set_state(g, SHUTTING_DOWN);
    return true;
}

static void group_abandon(struct coil__wait *w)
{
    /* The loop closed: the children are abandoned by the same pass and
     * their member records discarded. The parent never resumes to drop
     * the group: the wait's reference goes here, and the creator's, which
     * the parent would have dropped after the wait. */
    struct coil_group *g = coil__container_of(w, struct coil_group, wait);
    g->waiting = false;
    set_state(g, ABANDONED);
    if (!g->released) {
        g->released = true;
        group_unref(g);
    }
    group_unref(g);
}

static void group_describe(struct coil__wait *w, struct coil_task *t,
                           char *buf, size_t n)
{
    (void)t;
    struct coil_group *g = coil__container_of(w, struct coil_group, wait);
    snprintf(buf, n, "group %p (%zu children running)", (void *)g,
             g->running);
}

static void group_each(struct coil__wait *w,
                       void (*fn)(coil_future_t *f, void *ctx), void *ctx)
{
    struct coil_group *g = coil__container_of(w, struct coil_group, wait);
    for (struct coil__list *l = g->members.next; l != &g->members;
         l = l->next)
        fn(coil_task_future(
               coil__container_of(l, struct member, link)->child),
           ctx);
}

static const struct coil__wait_ops group_wait_ops = {
    .cancel = group_cancel_op,
    .abandon = group_abandon,
    .describe = group_describe,
    .each_future = group_each,
};

int coil_group_new(coil_group_t **group_out)
{
    if (!group_out)
        return -EINVAL;
    *group_out = NULL;
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    struct coil_group *g = coil__calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->wait.ops = &group_wait_ops;
    g->wait.keep_result = true;
    g->parent = coil_task_ref(t);
    coil__list_init(&g->members);
    g->refs = 1;
    g->level = coil_task_cancelling(t);
    g->state = OPEN;
    *group_out = g;
    return 0;
}

int coil_group_spawn(coil_group_t *g, coil_task_fn fn, void *arg,
                     const coil_task_options_t *opts, coil_task_t **task_out)
{
    if (task_out)
        *task_out = NULL;
    if (!g || !fn)
        return -EINVAL;
    if (g->state == DONE || g->state == ABANDONED)
        return -EBADF;
    struct member *m = coil__malloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    coil_task_t *child;
    int err = coil_task_spawn_opts(coil__task_loop(g->parent), fn, arg, opts,
                                   &child);
    if (err) {
        coil__free(m);
        return err;
    }
    m->g = g;
    m->child = child;
    m->fw.node.ops = &member_ops;
    coil__list_push_back(&g->members, &m->link);
    g->running++;
    g->refs++;
    coil__future_add_waiter(coil_task_future(child), &m->fw);
    if (g->state == SHUTTING_DOWN)
        coil_task_cancel(child); /* never runs its body */
    if (task_out)
        *task_out = coil_task_ref(child);
    return 0;
}

int coil_group_cancel(coil_group_t *g)
{
    if (!g)
        return -EINVAL;
    set_state(g, SHUTTING_DOWN);
    return 0;
}

/* Whether the parent has cancel requests other than the group's own. */
static bool cancelled_outside(const struct coil_group *g)
{
    unsigned own = g->cancelled_parent ? 1 : 0;
    return coil_task_cancelling(g->parent) > g->level + own;
}

int coil_group_wait(coil_group_t *g)
{
    if (!g)
        return -EINVAL;
    struct coil_task *t = coil__task_current();
    if (!t || t != g->parent)
        return -EPERM;
    if (g->state == DONE || g->state == ABANDONED || g->waiting)
        return -EALREADY;
    if (cancelled_outside(g)) {
        /* The parent was cancelled from outside before it came here (its
         * body saw the cancel, or it is pending still): the children go
         * too. */
        set_state(g, SHUTTING_DOWN);
    } else if (g->cancelled_parent) {
        /* The group's own request, not delivered yet: it has brought the
         * parent here, which is all it was for. */
        (void)coil__task_take_cancel(t);
    }
    /* A child may spawn siblings while the parent waits: wait until none
     * runs. The wait holds the group (someone may drop it meanwhile). */
    g->refs++;
    while (g->running) {
        g->waiting = true;
        coil__task_suspend(t, &g->wait);
        g->waiting = false;
    }
    set_state(g, DONE);
    /* Withdraw the group's own request; what is left came from outside. */
    if (g->cancelled_parent) {
        g->cancelled_parent = false;
        coil_task_uncancel(t);
    }
    bool outside = coil_task_cancelling(t) > g->level;
    int err = g->first_error;
    group_unref(g);
    if (err) {
        /* Both survive: the error now, the cancellation at the next
         * wait. */
        if (outside)
            coil__task_rearm_cancel(t);
        return err;
    }
    if (outside) {
        (void)coil__task_take_cancel(t); /* delivered here */
        return -ECANCELED;
    }
    return 0;
}

int coil_group_errors(const coil_group_t *g, int *errors, size_t n)
{
    if (!g || (!errors && n))
        return -EINVAL;
    for (size_t i = 0; i < n && i < g->nerrors; i++)
        errors[i] = g->errors[i];
    return (int)(g->nerrors + (size_t)g->lost_errors);
}

void coil_group_unref(coil_group_t *g)
{
    if (!g || g->released)
        return;
    g->released = true;
    /* Never waited for (and nobody waits now): the children are
     * cancelled and finish on their own. */
    if (!g->waiting)
        set_state(g, ABANDONED);
    group_unref(g);
}
