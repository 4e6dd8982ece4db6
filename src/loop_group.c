/* SPDX-License-Identifier: MIT */
/*
 * loop_group.c - a loop per core (coil/loop_group.h): N threads, each
 * running its loop for one main task as coil_run does, and
 * coil_task_spawn_on, a task of one loop running work on another.
 *
 * It sits with the runner: it composes tasks, the loop's door for other
 * threads (threadsafe.h) and executors, and touches each loop only on
 * its own thread, except through that door.
 *
 * A cross-loop call is one record shared by the two loops, A (the
 * caller's) and B (the target). Each side touches only its own fields,
 * on its own thread; what passes between them goes in nodes posted
 * through the other loop's door (start and cancel to B, done to A),
 * whose FIFO orders them and publishes what was written before the
 * post. The record is freed when the last of its parties lets go: A's
 * part (until the future's done callback ran, or A closed), B's (until
 * its done node ran or was discarded, or could not be posted), and a
 * cancel node in flight.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "coil/executor.h"
#include "coil/loop_group.h"
#include "executor_internal.h"
#include "loop_internal.h"
#include "runner_internal.h"
#include "sys.h"
#include "task_internal.h"
#include "threadsafe.h"

/* ------------------------------------------------------------------ */
/* coil_task_spawn_on                                                   */
/* ------------------------------------------------------------------ */

struct xcall {
    atomic_int refs;
    struct coil_loop *a, *b;
    coil_task_fn fn;
    void *arg;
    coil_job_dispose_fn dispose;
    struct coil__ready start, cancel; /* posted to B */
    struct coil__ready done;          /* posted to A */
    int outcome;                      /* B writes it before posting done */
    void *value;
    /*
     * Under lock: whether each loop may still be posted to. A loop's
     * memory may go once it has closed; a side clears its flag before
     * that (A in its close hook, B once it has reported), and the other
     * side posts only while holding the lock with the flag set.
     */
    pthread_mutex_t lock;
    bool a_open;   /* A has not closed; it still wants the outcome */
    bool b_busy;   /* B has not reported */
    /* A's thread only */
    coil_future_t *fut;               /* a reference */
    struct coil__close_hook a_hook;
    bool a_linked, a_finished, reported;
    /* B's thread only */
    coil_task_t *task;                /* a reference, while it runs */
    struct coil__close_hook b_hook;
};

static void release(struct xcall *x)
{
    if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1) {
        pthread_mutex_destroy(&x->lock);
        coil__free(x);
    }
}

/* Nobody will take the outcome: arg goes to dispose, once. */
static void dispose(struct xcall *x, int outcome)
{
    if (x->dispose)
        x->dispose(x->arg, outcome);
}

static void a_fut_done(coil_future_t *fut, void *arg);

/*
 * A: the part of A ends: the future is done (by the outcome, by a
 * cancel, by the caller), or A closes. Unless the outcome came, the
 * task on B is cancelled: nobody waits for it any more.
 */
static void a_finish(struct xcall *x, bool closing)
{
    if (x->a_finished)
        return;
    x->a_finished = true;
    if (x->a_linked)
        coil__loop_on_close_cancel(&x->a_hook);
    x->a_linked = false;
    pthread_mutex_lock(&x->lock);
    if (closing)
        x->a_open = false;
    if (!x->reported && x->b_busy) {
        atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
        if (coil__threadsafe_post(x->b, &x->cancel) != 0)
            release(x); /* B closed: its task went with it */
    }
    pthread_mutex_unlock(&x->lock);
    coil__threadsafe_release(x->a);
    /* At A's close the future may be pending with our callback on it,
     * which would never run (nor let go of it). */
    coil_future_remove_done_callback(x->fut, a_fut_done, x);
    coil_future_unref(x->fut);
    x->fut = NULL;
    release(x);
}

static void a_close(struct coil__close_hook *hook)
{
    struct xcall *x = coil__container_of(hook, struct xcall, a_hook);
    x->a_linked = false; /* the loop unlinks its hooks as it runs them */
    a_finish(x, true);
}

static void a_fut_done(coil_future_t *fut, void *arg)
{
    (void)fut;
    a_finish(arg, false);
}

static void cancel_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct xcall *x = coil__container_of(node, struct xcall, cancel);
    if (x->task)
        coil_task_cancel(x->task);
    release(x);
}

static void cancel_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    release(coil__container_of(node, struct xcall, cancel));
}

static const struct coil__ready_ops cancel_ops = {cancel_run, cancel_discard};

/* A: the outcome arrived. The caller gets it (and arg back) if the
 * future still waits for it; else arg goes to dispose. */
static void done_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct xcall *x = coil__container_of(node, struct xcall, done);
    x->reported = true;
    if (x->a_finished || coil_future_done(x->fut)) {
        dispose(x, x->outcome);
    } else if (x->outcome == -ECANCELED) {
        coil_future_cancel(x->fut); /* the task there was cancelled */
    } else if (x->outcome < 0) {
        coil_future_set_error(x->fut, x->outcome);
    } else {
        coil_future_set_result(x->fut, x->value);
    }
    release(x); /* B's part */
}

static void done_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct xcall *x = coil__container_of(node, struct xcall, done);
    dispose(x, x->outcome); /* A is closing: nobody takes it */
    release(x);
}

static const struct coil__ready_ops done_ops = {done_run, done_discard};

/* B: the outcome is in; hand it to A, or to dispose if A is gone. */
static void b_report(struct xcall *x, int outcome, void *value)
{
    x->outcome = outcome;
    x->value = value;
    /* Once posted, A may run the node and let go of B's part before this
     * unlocks: hold the record over the lock. */
    atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
    pthread_mutex_lock(&x->lock);
    x->b_busy = false;
    bool posted = x->a_open && coil__threadsafe_post(x->a, &x->done) == 0;
    pthread_mutex_unlock(&x->lock);
    if (!posted) {
        dispose(x, outcome);
        release(x); /* B's part */
    }
    release(x); /* the hold */
}

static void b_task_done(coil_future_t *fut, void *arg)
{
    struct xcall *x = arg;
    coil__loop_on_close_cancel(&x->b_hook);
    void *v = NULL;
    int err = coil_future_result(fut, &v);
    coil_task_t *t = x->task;
    x->task = NULL;
    coil_task_unref(t);
    b_report(x, err, v);
}

/* B closes before the task's done callback ran: the task's outcome if it
 * has one (a closing runner cancels and awaits its tasks, and the
 * callbacks that would carry the outcome never run), else -EBADF. */
static void b_close(struct coil__close_hook *hook)
{
    struct xcall *x = coil__container_of(hook, struct xcall, b_hook);
    coil_task_t *t = x->task;
    x->task = NULL;
    void *v = NULL;
    coil_future_t *fut = coil_task_future(t);
    int err = coil_future_done(fut) ? coil_future_result(fut, &v) : -EBADF;
    coil_task_unref(t);
    b_report(x, err, v);
}

static void start_run(struct coil_loop *loop, struct coil__ready *node)
{
    struct xcall *x = coil__container_of(node, struct xcall, start);
    coil_task_t *t;
    int err = coil__task_spawn_then(loop, x->fn, x->arg, b_task_done, x, &t);
    if (err) {
        b_report(x, err, NULL);
        return;
    }
    x->task = t;
    x->b_hook.on_close = b_close;
    coil__loop_on_close(loop, &x->b_hook);
}

static void start_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    b_report(coil__container_of(node, struct xcall, start), -EBADF, NULL);
}

static const struct coil__ready_ops start_ops = {start_run, start_discard};

int coil_task_spawn_on(coil_loop_t *target, coil_task_fn fn, void *arg,
                       coil_job_dispose_fn dispose_fn,
                       coil_future_t **fut_out)
{
    if (fut_out)
        *fut_out = NULL;
    if (!target || !fn || !fut_out)
        return -EINVAL;
    coil_loop_t *a = coil_running_loop();
    if (!a)
        return -EPERM;
    struct xcall *x = coil__calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    int err = pthread_mutex_init(&x->lock, NULL);
    if (err) {
        coil__free(x);
        return -err;
    }
    coil_future_t *fut;
    err = coil_future_new(a, &fut);
    if (!err) {
        err = coil_future_add_done_callback(fut, a_fut_done, x);
        if (err)
            coil_future_unref(fut);
    }
    if (err) {
        pthread_mutex_destroy(&x->lock);
        coil__free(x);
        return err;
    }
    atomic_init(&x->refs, 2); /* A's part, B's part */
    x->a = a;
    x->b = target;
    x->fn = fn;
    x->arg = arg;
    x->dispose = dispose_fn;
    x->a_open = x->b_busy = true;
    x->start.ops = &start_ops;
    x->cancel.ops = &cancel_ops;
    x->done.ops = &done_ops;
    x->fut = coil_future_ref(fut); /* A's part holds one; the caller one */
    x->a_hook.on_close = a_close;
    coil__loop_on_close(a, &x->a_hook);
    x->a_linked = true;
    coil__threadsafe_hold(a); /* B will call back */
    err = coil__threadsafe_post(target, &x->start);
    if (err) {
        /* Nothing reached B: undo A's part by hand; arg is the
         * caller's still. */
        coil_future_remove_done_callback(fut, a_fut_done, x);
        coil__loop_on_close_cancel(&x->a_hook);
        coil__threadsafe_release(a);
        coil_future_unref(fut); /* A's part's */
        coil_future_unref(fut); /* the caller's */
        pthread_mutex_destroy(&x->lock);
        coil__free(x);
        return err;
    }
    *fut_out = fut;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The group                                                            */
/* ------------------------------------------------------------------ */

#define MAX_LOOPS 1024u

struct slot {
    struct coil_loop_group *g;
    pthread_t thread;
    coil_loop_t *loop;  /* made by the thread; freed by the group */
    coil_task_t *main;  /* the loop's thread only */
    int outcome;
};

struct coil_loop_group {
    unsigned n;
    coil_task_fn main;
    void *arg;
    coil_loop_options_t loop_opts;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* under lock */
    unsigned made;      /* threads that made their loop (or failed to) */
    int make_err;       /* the first failure */
    bool go, abort;
    atomic_bool joined;
    struct slot slots[];
};

/* The group whose thread this is, if any. */
static _Thread_local struct coil_loop_group *own_group;

static void cancel_main(void *arg)
{
    struct slot *s = arg;
    if (s->main)
        coil_task_cancel(s->main);
}

/* As coil_run, for this slot's loop and its main task, made already. */
static int run_main(struct slot *s)
{
    coil_loop_t *loop = s->loop;
    coil_task_t *t = s->main;
    coil__run_main_to_end(loop, t);
    coil__loop_shutdown_default_executor(loop);
    int err = coil__run_outcome(t);
    s->main = NULL;
    coil_task_unref(t);
    return err;
}

static void *thread_main(void *arg)
{
    struct slot *s = arg;
    struct coil_loop_group *g = s->g;
    own_group = g;
    int err = coil_loop_new_opts(&g->loop_opts, &s->loop);
    if (!err)
        err = coil_task_spawn(s->loop, g->main, g->arg, &s->main);
    pthread_mutex_lock(&g->lock);
    if (err && !g->make_err)
        g->make_err = err;
    g->made++;
    pthread_cond_broadcast(&g->cond);
    while (!g->go && !g->abort)
        pthread_cond_wait(&g->cond, &g->lock);
    bool go = g->go;
    pthread_mutex_unlock(&g->lock);
    if (go) {
        s->outcome = run_main(s);
    } else if (s->main) {
        /* Cancelled before it starts, main never runs; the loop's one
         * step completes it, so that the loop closes with nothing left
         * (debug mode would report a task left behind). */
        coil_task_cancel(s->main);
        (void)coil_loop_run_until_complete(s->loop,
                                           coil_task_future(s->main));
        coil_task_unref(s->main);
        s->main = NULL;
    }
    if (s->loop)
        coil_loop_close(s->loop);
    return NULL;
}

static void join_threads(struct coil_loop_group *g, unsigned started)
{
    for (unsigned i = 0; i < started; i++)
        pthread_join(g->slots[i].thread, NULL);
}

static void free_group(struct coil_loop_group *g)
{
    for (unsigned i = 0; i < g->n; i++)
        coil_loop_unref(g->slots[i].loop); /* every thread has ended */
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    coil__free(g);
}

int coil_loop_group_start(const coil_loop_group_options_t *opts,
                          coil_task_fn main, void *arg,
                          coil_loop_group_t **group_out)
{
    if (group_out)
        *group_out = NULL;
    if (!main || !group_out)
        return -EINVAL;
    unsigned n = opts ? opts->loops : 0;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (unsigned)cpus : 1;
        if (n > MAX_LOOPS)
            n = MAX_LOOPS;
    }
    if (n > MAX_LOOPS)
        return -EINVAL;
    struct coil_loop_group *g =
        coil__calloc(1, sizeof(*g) + n * sizeof(struct slot));
    if (!g)
        return -ENOMEM;
    g->n = n;
    g->main = main;
    g->arg = arg;
    if (opts)
        g->loop_opts = opts->loop;
    atomic_init(&g->joined, false);
    int err = pthread_mutex_init(&g->lock, NULL);
    if (err) {
        coil__free(g);
        return -err;
    }
    err = pthread_cond_init(&g->cond, NULL);
    if (err) {
        pthread_mutex_destroy(&g->lock);
        coil__free(g);
        return -err;
    }
    unsigned started = 0;
    for (; started < n; started++) {
        struct slot *s = &g->slots[started];
        s->g = g;
        err = COIL__THREAD_CREATE(&s->thread, NULL, thread_main, s);
        if (err) {
            err = -err; /* EAGAIN */
            break;
        }
    }
    pthread_mutex_lock(&g->lock);
    while (g->made < started)
        pthread_cond_wait(&g->cond, &g->lock);
    if (!err)
        err = g->make_err;
    if (err)
        g->abort = true;
    else
        *group_out = g; /* before any main runs */
    g->go = !err;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    if (err) {
        join_threads(g, started);
        free_group(g);
    }
    return err;
}

unsigned coil_loop_group_size(const coil_loop_group_t *group)
{
    return group ? group->n : 0;
}

coil_loop_t *coil_loop_group_loop(const coil_loop_group_t *group, unsigned i)
{
    return group && i < group->n ? group->slots[i].loop : NULL;
}

int coil_loop_group_index(const coil_loop_group_t *group,
                          const coil_loop_t *loop)
{
    if (!group || !loop)
        return -EINVAL;
    for (unsigned i = 0; i < group->n; i++)
        if (group->slots[i].loop == loop)
            return (int)i;
    return -EINVAL;
}

int coil_loop_group_cancel(coil_loop_group_t *group)
{
    if (!group)
        return -EINVAL;
    for (unsigned i = 0; i < group->n; i++) {
        struct slot *s = &group->slots[i];
        /* -EBADF: that loop is closed, its main long done. */
        (void)coil_loop_call_soon_threadsafe(s->loop, cancel_main, s);
    }
    return 0;
}

static bool on_own_thread(const struct coil_loop_group *g)
{
    return own_group == g;
}

int coil_loop_group_join(coil_loop_group_t *group)
{
    if (!group)
        return -EINVAL;
    if (on_own_thread(group))
        return -EDEADLK;
    if (atomic_exchange(&group->joined, true))
        return -EALREADY;
    join_threads(group, group->n);
    /* A real error first; a cancel (the group's own, say) only if no
     * main failed otherwise. */
    int cancelled = 0;
    for (unsigned i = 0; i < group->n; i++) {
        int o = group->slots[i].outcome;
        if (o == -ECANCELED)
            cancelled = o;
        else if (o < 0)
            return o;
    }
    return cancelled;
}

void coil_loop_group_free(coil_loop_group_t *group)
{
    if (!group || on_own_thread(group))
        return; /* on one of its own threads: it cannot end there */
    if (!atomic_load(&group->joined)) {
        coil_loop_group_cancel(group);
        (void)coil_loop_group_join(group);
    }
    free_group(group);
}
