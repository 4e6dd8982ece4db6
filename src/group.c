/* SPDX-License-Identifier: MIT */
/*
 * group.c - task groups (structured concurrency; see coil/group.h).
 *
 * Each child has a member record: a waiter on the child's future (so the
 * group hears when it finishes) and a reference to the child. The group
 * counts children still running; the parent suspends in coil_group_wait
 * until that count is zero.
 *
 * The first child failure shuts the group down: every other child is
 * cancelled, and so is the parent (with a request the group withdraws in
 * coil_group_wait, as a timeout scope does), which interrupts whatever the
 * parent is waiting for and sends it to coil_group_wait. A cancellation of
 * the parent from outside, seen while it waits for the group, cancels the
 * children; the parent keeps waiting until they are all done.
 *
 * The group is reference counted: the creator holds one, each member
 * record one (until its child finished), so a group freed before it was
 * waited for lives on until its cancelled children are done.
 */
#include "task.h"

struct member {
    struct coil__fwaiter fw; /* on the child's future */
    struct coil_group *g;
    struct coil_task *child; /* referenced */
    struct coil__list link;  /* in g->members */
};

struct coil_group {
    struct coil__wait wait;    /* the parent suspends here */
    struct coil_task *parent;
    struct coil__list members; /* children not finished */
    size_t running;            /* how many */
    int first_error;           /* the first child error (never lost) */
    int *errors;               /* child errors, in the order they failed */
    size_t nerrors, cap;
    int lost_errors;           /* errors beyond the array (no memory) */
    unsigned refs;
    bool shutting_down;        /* a child failed, or the group cancelled */
    bool cancelled_parent;     /* the group's own request on the parent */
    bool outside_cancel;       /* the parent was cancelled from outside */
    bool waiting, woken, waited, freed;
};

static void group_unref(struct coil_group *g)
{
    if (--g->refs)
        return;
    coil__free(g->errors);
    coil__free(g);
}

static void cancel_children(struct coil_group *g)
{
    for (struct coil__list *l = g->members.next; l != &g->members;
         l = l->next)
        coil_task_cancel(coil__container_of(l, struct member, link)->child);
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

static void child_done(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct member *m = coil__container_of(node, struct member, fw.node);
    struct coil_group *g = m->g;
    int outcome = m->child->fut.outcome;
    coil__list_remove(&m->link);
    g->running--;
    coil_task_unref(m->child);
    coil__free(m);
    if (outcome < 0 && outcome != -ECANCELED) {
        record_error(g, outcome);
        if (!g->shutting_down) {
            g->shutting_down = true;
            cancel_children(g);
            /* Interrupt the parent, unless it is already waiting for us
             * (then it needs no push) or gone (group freed unwaited). */
            if (!g->waiting && !g->freed && !g->waited &&
                g->parent->state != COIL__TASK_DONE) {
                g->cancelled_parent = true;
                coil_task_cancel(g->parent);
            }
        }
    }
    if (g->running == 0 && g->waiting && !g->woken) {
        g->woken = true;
        coil__task_wake(g->parent, 0);
    }
    group_unref(g);
}

static void child_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct member *m = coil__container_of(node, struct member, fw.node);
    struct coil_group *g = m->g;
    coil__list_remove(&m->link);
    g->running--;
    coil_task_unref(m->child);
    coil__free(m);
    group_unref(g);
}

static const struct coil__ready_ops member_ops = {child_done, child_discard};

static bool group_cancel_op(struct coil__wait *w, struct coil_task *t)
{
    (void)t;
    struct coil_group *g = coil__container_of(w, struct coil_group, wait);
    /* Cancelled from outside while waiting: cancel the children, keep
     * waiting for them (true: the wait goes on, no cancel is pending). */
    g->outside_cancel = true;
    g->shutting_down = true;
    cancel_children(g);
    return true;
}

static void group_abandon(struct coil__wait *w)
{
    /* The loop closed: the children are abandoned by the same pass and
     * their member records discarded. The parent never resumes to free
     * the group, so its reference goes here. */
    struct coil_group *g = coil__container_of(w, struct coil_group, wait);
    g->freed = true;
    group_unref(g);
}

static const struct coil__wait_ops group_wait_ops = {group_cancel_op, NULL,
                                                     group_abandon};

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
    g->parent = t;
    coil__list_init(&g->members);
    g->refs = 1;
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
    if (g->waited || g->freed)
        return -EBADF;
    struct member *m = coil__malloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    coil_task_t *child;
    int err = coil_task_spawn_opts(g->parent->fut.loop, fn, arg, opts, &child);
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
    coil__future_add_waiter(&child->fut, &m->fw);
    if (g->shutting_down)
        coil_task_cancel(child); /* never runs its body */
    if (task_out)
        *task_out = coil_task_ref(child);
    return 0;
}

int coil_group_cancel(coil_group_t *g)
{
    if (!g)
        return -EINVAL;
    g->shutting_down = true;
    cancel_children(g);
    return 0;
}

int coil_group_wait(coil_group_t *g)
{
    if (!g)
        return -EINVAL;
    struct coil_task *t = coil__task_current();
    if (!t || t != g->parent)
        return -EPERM;
    if (g->waited)
        return -EALREADY;
    g->waited = true;
    /* A cancel already pending for the parent (from outside, or ours not
     * yet delivered) shuts the group down too; ours is withdrawn below. */
    if (t->must_cancel && !g->cancelled_parent) {
        g->outside_cancel = true;
        g->shutting_down = true;
        cancel_children(g);
    }
    if (g->running) {
        g->waiting = true;
        g->woken = false;
        coil__task_suspend(t, &g->wait);
        g->waiting = false;
    }
    /* Withdraw the group's own request. One left over came from outside:
     * it may have been delivered together with ours (one -ECANCELED for
     * both), so it is delivered again at the next wait. */
    if (g->cancelled_parent && coil_task_uncancel(t) > 0)
        g->outside_cancel = true;
    if (g->first_error) {
        /* An outside cancel stays pending for the parent's next wait. */
        if (g->outside_cancel)
            t->must_cancel = true;
        return g->first_error;
    }
    if (g->outside_cancel) {
        t->must_cancel = false; /* delivered here */
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

void coil_group_free(coil_group_t *g)
{
    if (!g)
        return;
    g->freed = true;
    if (g->running)
        cancel_children(g);
    group_unref(g);
}
