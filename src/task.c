/* SPDX-License-Identifier: MIT */
/*
 * task.c - tasks: a future driven by a coroutine with a stack of its own.
 *
 * A task runs in steps. Its node (task->fw.node) is queued on the ready
 * queue to run the next step; running it switches from the loop's context
 * (tasks.sched) to the task's, and the step lasts until the task suspends
 * in a wait or returns. Nothing but the node ever resumes a task, so a
 * task is resumed at most once per wake, always from the loop.
 *
 * References: the loop holds one from spawn until the task finishes (the
 * future's initial reference); the caller holds one if it asked for the
 * task. A waiting task holds one on the future it awaits.
 *
 * The wait protocol is described in task_internal.h. sleep, yield, await
 * and shield are here; the combinators build on the same protocol.
 */
#include <execinfo.h>
#include <stdio.h>
#include <string.h>

#include "loop_internal.h"
#include "sys.h"
#include "task_internal.h"

/* The running task (task_internal.h reads it inline). */
COIL__TLS struct coil_task *coil__task_running;

#ifdef COIL_TESTING
void (*coil__task_test_hook)(struct coil_task *t, enum coil__task_event ev,
                             void *arg);
void *coil__task_test_hook_arg;
#define TEST_HOOK(t, ev)                                                       \
    do {                                                                       \
        if (coil__task_test_hook)                                              \
            coil__task_test_hook(t, ev, coil__task_test_hook_arg);             \
    } while (0)
#else
#define TEST_HOOK(t, ev) ((void)0)
#endif

/* Where t was spawned from, for reports: "symbol+0xoff" or module+off. */
static void spawn_site(const struct coil_task *t, char *buf, size_t n)
{
    coil__debug_symbol(t->spawn_site, buf, n);
}

coil_task_t *coil_current_task(void)
{
    return coil__task_running;
}

/* ------------------------------------------------------------------ */
/* The task as a future                                                 */
/* ------------------------------------------------------------------ */

static void task_destroy(coil_future_t *fut);
static int task_cancel_op(coil_future_t *fut);

static const struct coil__future_ops task_future_ops = {
    .destroy = task_destroy,
    .cancel = task_cancel_op,
    .owned = true,
};

static void task_release(struct coil_loop *loop, void *t)
{
    coil__pool_put(&loop->tasks.task_pool, t);
}

static COIL__COLD void report_unread(struct coil_task *t)
{
    char site[96];
    spawn_site(t, site, sizeof(site));
    coil__log(t->loop, COIL_LOG_WARNING,
              "task '%s' (id %llu, spawned by %s) failed (%s) and its last "
              "reference went without anyone reading the error",
              coil_task_name(t), (unsigned long long)t->id, site,
              coil_err_name(t->fut.outcome));
}

static void task_destroy(coil_future_t *fut)
{
    struct coil_task *t = coil__container_of(fut, struct coil_task, fut);
    struct coil_loop *loop = fut->loop;
    if (coil__unlikely(coil__loop_debug_on(loop)) && coil__future_lost_error(fut) &&
        !coil__loop_closed(loop))
        report_unread(t);
    coil__free(t->name);
    /* Debug mode keeps it poisoned a while: a use after the last unref
     * meets the poison (coil_future_unref reports it). */
    if (coil__likely(!coil__loop_debug_on(loop)) ||
        !coil__debug_quarantine(loop, t, sizeof(*t), task_release))
        task_release(loop, t);
}

static int task_cancel_op(coil_future_t *fut)
{
    return coil_task_cancel(coil__container_of(fut, struct coil_task, fut));
}

/* ------------------------------------------------------------------ */
/* Stacks                                                               */
/* ------------------------------------------------------------------ */

static int stack_get(struct coil_loop *loop, size_t size,
                     struct coil__stack **out)
{
    if (size == 0)
        return coil__stack_get(&loop->tasks.stacks, out);
    /* Pools round sizes: compare what a pool of this size would hand out
     * with what the loop's pool hands out. */
    struct coil__stack_pool p;
    coil__stack_pool_init(&p, size);
    if (p.size == loop->tasks.stacks.size)
        return coil__stack_get(&loop->tasks.stacks, out);
    /* Another size: a one-off pool that keeps nothing. */
    p.max_free = 0;
    return coil__stack_get(&p, out);
}

static void stack_put(struct coil_loop *loop, struct coil__stack *s)
{
    if (s->size == loop->tasks.stacks.size) {
        coil__stack_put(&loop->tasks.stacks, s);
        return;
    }
    struct coil__stack_pool p;
    coil__stack_pool_init(&p, s->size);
    p.max_free = 0;
    p.live = 1;
    coil__stack_put(&p, s);
}

/* ------------------------------------------------------------------ */
/* Steps                                                                */
/* ------------------------------------------------------------------ */

/* The task is finished (or abandoned): give back what only a running
 * task needs, and the loop's reference. */
/* Debug mode measured the stack: keep the depth, and say so if the task
 * came within 10% of its stack's size. */
static COIL__COLD void measure_stack(struct coil_loop *loop,
                                     struct coil_task *t)
{
    size_t size = t->stack->size;
    t->stack_used = coil__stack_used(t->stack);
    if (t->stack_used < size - size / 10)
        return;
    /* Twice the depth, in whole 64 KiB. */
    size_t want = (t->stack_used * 2 + 65535) & ~(size_t)65535;
    char site[96];
    spawn_site(t, site, sizeof(site));
    coil__log(loop, COIL_LOG_WARNING,
              "stack: task '%s' (id %llu, spawned by %s) used %zu of its "
              "%zu bytes of stack (%zu%%); give it %zu "
              "(coil_task_options_t.stack_size or coil_loop_set_stack_size)",
              coil_task_name(t), (unsigned long long)t->id, site,
              t->stack_used, size, t->stack_used * 100 / size, want);
}

static COIL__COLD void retire(struct coil_loop *loop, struct coil_task *t)
{
    coil__context_destroy(&t->ctx);
    if (t->stack && t->stack_measured) {
        measure_stack(loop, t);
        t->stack_measured = false;
    }
    if (t->stack) {
        stack_put(loop, t->stack);
        t->stack = NULL;
    }
    coil__list_remove(&t->link);
    loop->tasks.count--;
    /* Failed, and nobody holds or awaits it: nobody ever will see it. */
    if (t->fut.refs == 1 && t->fut.outcome < 0 &&
        t->fut.outcome != -ECANCELED && !coil__loop_closed(loop))
        coil__loop_report(loop, t->fut.outcome,
                          "task '%s' failed and nobody awaited it",
                          coil_task_name(t));
    if (t->fut.refs == 1)
        t->fut.retrieved = true; /* reported just above, or cancelled */
    coil_future_unref(&t->fut);
}

static COIL__COLD void report_swallowed(struct coil_task *t, int r)
{
    char site[96];
    spawn_site(t, site, sizeof(site));
    coil__log(t->loop, COIL_LOG_WARNING,
              "task '%s' (id %llu, spawned by %s) swallowed its "
              "cancellation: a wait returned -ECANCELED, and the task "
              "returned %d without coil_task_uncancel (whoever awaits it "
              "cannot tell it was cancelled)",
              coil_task_name(t), (unsigned long long)t->id, site, r);
}

/* fn will never run (cancelled before its first step, or its loop
 * closed): arg goes back through the options' dispose, once. */
static COIL__COLD void never_ran(struct coil_task *t)
{
    void (*dispose)(void *) = t->dispose;
    t->dispose = NULL;
    if (dispose)
        dispose(t->arg);
}

static COIL__COLD void complete(struct coil_task *t, int r)
{
    if (r == -EINPROGRESS) {
        /* -EINPROGRESS means "pending" to every future query. */
        coil__loop_report(t->fut.loop, -EINVAL,
                          "task '%s' returned -EINPROGRESS; it fails with "
                          "-EINVAL instead",
                          coil_task_name(t));
        r = -EINVAL;
    }
    /* What upper layers left open (timeout scopes), newest first. */
    struct coil__list *l;
    while ((l = t->hooks.prev) != &t->hooks) {
        struct coil__task_hook *h =
            coil__container_of(l, struct coil__task_hook, link);
        coil__list_remove(l);
        h->on_finish(h, t);
    }
    t->state = COIL__TASK_DONE;
    /* Reported when a task awaits the outcome (a join, an await): it is
     * the one told a result instead of the cancellation. */
    if (r >= 0 && t->cancel_seen && t->cancelling &&
        coil__unlikely(coil__loop_debug_on(t->loop)) && coil__task_awaiters(t, NULL, 0))
        report_swallowed(t, r);
    coil__future_complete(&t->fut, r >= 0 ? (void *)(intptr_t)r : NULL,
                          r >= 0 ? 0 : r);
}

/* The first frame on a task's stack. */
static void task_main(void *arg)
{
    struct coil_task *t = arg;
    int r = t->fn(t->arg);
    complete(t, r);
    struct coil_loop *loop = t->loop;
    /* A finished task always goes back to the loop's context, which
     * retires it: its stack must not be in use when it is freed. */
    loop->tasks.returning = t;
    coil__context_exit(loop->tasks.ctx_ops, &t->ctx, &loop->tasks.sched);
}

static void step_run(struct coil_loop *loop, struct coil__ready *node);
static void step_discard(struct coil_loop *loop, struct coil__ready *node);

/* Debug mode: the step is named for the slow-step report, and timed for
 * the task's CPU time (each step goes back to the loop in debug mode:
 * next_direct). */
static COIL__COLD void debug_step_begin(struct coil_loop *loop,
                                        struct coil_task *t)
{
    coil__debug_step_task(loop, coil_task_name(t), t->id, t->spawn_site);
    loop->tasks.steps++;
    t->last_resume = loop->now;
    t->step_began = coil__clock_real();
}

static COIL__COLD void debug_step_end(struct coil_task *t)
{
    if (t->step_began) {
        t->cpu_ns += coil__clock_real() - t->step_began;
        t->step_began = 0;
    }
}
static const struct coil__ready_ops step_ops = {step_run, step_discard};

/*
 * Make t ready to run its next step: settle the result of the wait it is
 * resuming from (delivering a pending cancel where the protocol says so)
 * and make it current. Returns false if t needs no switch: a task
 * cancelled before it started completes here without running.
 */
static bool prepare_step(struct coil_loop *loop, struct coil_task *t)
{
    COIL__TRACE(COIL__TRACE_STEP, t->id);
    if (t->state == COIL__TASK_SUSPENDED)
        TEST_HOOK(t, COIL__TASK_RESUMING);
    bool woken = t->queued; /* by coil__task_wake, which set wake_result */
    t->queued = false;
    const struct coil__wait_ops *ops = t->wait_ops;
    t->wait_ops = NULL;
    if (ops) {
        if (ops->resume && !woken)
            t->wake_result = ops->resume(t->wait);
        /* A pending cancel is delivered now if this wait ends in a
         * cancellation anyway, or carries no data worth keeping. */
        if (t->must_cancel &&
            (t->wake_result == -ECANCELED || !t->wait_keep)) {
            t->must_cancel = false;
            t->wake_result = -ECANCELED;
        }
    }
    if (t->state == COIL__TASK_PENDING && t->must_cancel) {
        /* Cancelled before it started: its body never runs. */
        t->must_cancel = false;
        never_ran(t);
        complete(t, -ECANCELED);
        retire(loop, t);
        return false;
    }
    /* The next ready node is often another task's step: start loading its
     * saved frame (on its own stack, cold when thousands of tasks take
     * turns) while this one runs. */
    struct coil__ready *next = t->fw.node.next;
    if (next && next->ops == &step_ops) {
        const char *sp =
            coil__container_of(next, struct coil_task, fw.node)->ctx.sp;
        __builtin_prefetch(sp);
        __builtin_prefetch(sp + 63);
    }
    t->state = COIL__TASK_RUNNING;
    coil__task_running = t;
    coil__stack_running = t->stack;
    if (coil__unlikely(coil__loop_debug_on(loop)))
        debug_step_begin(loop, t);
    return true;
}

/*
 * Runs on the loop's own context. Whatever task switches back to it last
 * (not necessarily t: tasks hand over to each other directly, see
 * next_direct) is in tasks.returning; a finished one is retired here,
 * never on its own stack.
 */
static void step_run(struct coil_loop *loop, struct coil__ready *node)
{
    struct coil_task *t = coil__container_of(node, struct coil_task, fw.node);
    if (!prepare_step(loop, t))
        return;
    coil__context_switch(loop->tasks.ctx_ops, &loop->tasks.sched, &t->ctx);
    coil__task_running = NULL;
    coil__stack_running = NULL;
    struct coil_task *r = loop->tasks.returning;
    if (coil__unlikely(coil__loop_debug_on(loop)))
        debug_step_end(r);
    if (r->state == COIL__TASK_DONE)
        retire(loop, r);
}

/*
 * The task about to suspend may hand over directly to the next task
 * instead of switching to the loop's context and back out again: one
 * switch instead of two. Allowed only where the loop would do exactly the
 * same: the next ready node is a task's step, and it belongs to this
 * iteration's batch, or this batch is done and the loop would start the
 * next one without polling (coil__loop_next_batch, the loop's own
 * predicate, which then counts the iteration as the loop would).
 */
static struct coil_task *next_direct(struct coil_loop *loop)
{
    if (coil__unlikely(coil__loop_debug_on(loop)))
        return NULL; /* each step is timed by the loop's batch */
    struct coil__ready *head = coil__ready_batch_peek(loop);
    if (!head) {
        if (!coil__loop_next_batch(loop))
            return NULL;
        head = coil__ready_batch_peek(loop);
    }
    if (head->ops != &step_ops)
        return NULL;
    struct coil_task *next =
        coil__container_of(head, struct coil_task, fw.node);
    if (next->state == COIL__TASK_PENDING && next->must_cancel)
        return NULL; /* the loop's context completes it, not a task's */
    coil__ready_batch_take(loop);
    return next;
}

static void step_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    /* The loop closes; coil__tasks_close abandons the task itself. */
    coil__container_of(node, struct coil_task, fw.node)->queued = false;
}


static void queue(struct coil_loop *loop, struct coil_task *t)
{
    t->queued = true;
    coil__ready_push(loop, &t->fw.node);
}

/* ------------------------------------------------------------------ */
/* The wait protocol (task.h)                                           */
/* ------------------------------------------------------------------ */

int coil__task_begin_wait(struct coil_task **out)
{
    struct coil_task *t = coil__task_running;
    *out = t;
    if (!t)
        return -EPERM;
    if (t->must_cancel) {
        t->must_cancel = false;
        t->cancel_seen = true;
        return -ECANCELED;
    }
    t->wake_result = 0;
    return 0;
}

/* The dump asks a suspended task for its backtrace (coil__task_backtrace):
 * it is switched to, takes it here, and switches back. */
struct coil__task_peek {
    void **frames;
    int max, n;
    struct coil__context *back;
};

static COIL__COLD __attribute__((noinline)) void peek(struct coil_task *t)
{
    struct coil__task_peek *p = t->peek;
    t->peek = NULL;
    t->peek_asked = false;
    p->n = backtrace(p->frames, p->max);
    coil__context_switch(t->loop->tasks.ctx_ops, &t->ctx, p->back);
}

int coil__task_suspend(struct coil_task *t, struct coil__wait *w)
{
    struct coil_loop *loop = t->loop;
    t->wait = w;
    t->wait_ops = w->ops;
    t->wait_keep = w->keep_result;
    t->state = COIL__TASK_SUSPENDED;
    TEST_HOOK(t, COIL__TASK_SUSPENDING);
    struct coil_task *next = next_direct(loop);
    if (next && prepare_step(loop, next)) {
        /* A task that yields with nothing else ready is its own next. */
        if (next != t)
            coil__context_switch(loop->tasks.ctx_ops, &t->ctx, &next->ctx);
    } else {
        loop->tasks.returning = t;
        coil__context_switch(loop->tasks.ctx_ops, &t->ctx,
                             &loop->tasks.sched);
    }
    while (coil__unlikely(t->peek_asked))
        peek(t); /* the dump looked at our stack; still suspended */
    /* step_run resumed us; it set wake_result and cleared t->wait. */
    if (coil__unlikely(t->wake_result == -ECANCELED) && t->cancelling)
        t->cancel_seen = true;
    return t->wake_result;
}

void coil__task_wake(struct coil_task *t, int result)
{
    t->wake_result = result;
    /* A closed loop abandons its tasks: nothing may queue them again. */
    if (coil__unlikely(coil__loop_closed(t->loop)))
        return;
    queue(t->loop, t);
}

/* ------------------------------------------------------------------ */
/* Spawning                                                             */
/* ------------------------------------------------------------------ */

/* "Task-<id>", written by hand: snprintf costs more than the rest of a
 * spawn, and the name must be ready before the task runs, for the stack
 * overflow report. */
static void format_default_name(struct coil_task *t)
{
    char digits[24];
    int n = 0;
    uint64_t id = t->id;
    do {
        digits[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    memcpy(t->defname, "Task-", 5);
    for (int i = 0; i < n; i++)
        t->defname[5 + i] = digits[n - 1 - i];
    t->defname[5 + n] = '\0';
}

static int check_stack_size(size_t size)
{
    return size >= COIL__STACK_MIN && size <= COIL__STACK_MAX ? 0 : -EINVAL;
}

static char *copy_name(const char *name)
{
    size_t n = strlen(name) + 1;
    char *c = coil__malloc(n);
    if (c)
        memcpy(c, name, n);
    return c;
}

static int spawn(coil_loop_t *loop, coil_task_fn fn, void *arg,
                 const coil_task_options_t *opts, coil_task_t **task_out,
                 const void *site)
{
    if (task_out)
        *task_out = NULL;
    if (!loop || !fn)
        return -EINVAL;
    coil__loop_check_thread(loop, "coil_task_spawn");
    size_t size = 0; /* the loop's default */
    if (opts && opts->stack_size) {
        if (check_stack_size(opts->stack_size))
            return -EINVAL;
        size = opts->stack_size;
    }
    if (coil__loop_closed(loop))
        return -EBADF;
    struct coil_task *t = coil__pool_get(&loop->tasks.task_pool);
    if (!t)
        return -ENOMEM;
    t->name = NULL;
    if (opts && opts->name && !(t->name = copy_name(opts->name))) {
        coil__pool_put(&loop->tasks.task_pool, t);
        return -ENOMEM;
    }
    int err = stack_get(loop, size, &t->stack);
    if (err) {
        coil__free(t->name);
        coil__pool_put(&loop->tasks.task_pool, t);
        return err;
    }
    coil__future_init(&t->fut, loop, &task_future_ops);
    coil__list_init(&t->fw.link);
    t->fw.node.ops = &step_ops;
    t->loop = loop;
    t->fn = fn;
    t->arg = arg;
    t->dispose = opts ? opts->dispose : NULL;
    t->wait = NULL;
    t->wait_ops = NULL;
    t->wake_result = 0;
    t->state = COIL__TASK_PENDING;
    t->must_cancel = false;
    t->cancel_queued = false;
    t->cancel_next = NULL;
    t->cancelling = 0;
    t->id = ++loop->tasks.next_id;
    format_default_name(t);
    coil__list_init(&t->hooks);
    t->spawn_site = site;
    t->created = loop->now;
    t->last_resume = 0;
    t->step_began = 0;
    t->cpu_ns = 0;
    t->stack_used = 0;
    t->cancel_seen = false;
    t->walk = 0;
    t->peek = NULL;
    t->peek_asked = false;
    /* Debug mode measures how deep the stack goes: from a clear one. */
    t->stack_measured = coil__loop_debug_on(loop);
    if (coil__unlikely(t->stack_measured))
        coil__stack_clear(t->stack);
    coil__stack_set_owner(t->stack, t->name ? t->name : t->defname);
    coil__context_make(loop->tasks.ctx_ops, &t->ctx, t->stack->base,
                       t->stack->size, task_main, t);
    coil__list_push_back(&loop->tasks.all, &t->link);
    loop->tasks.count++;
    queue(loop, t);
    if (task_out)
        *task_out = coil_task_ref(t);
    return 0;
}

/* The spawn site the dump shows is the caller's: not inlined into it. */
__attribute__((noinline)) int
coil_task_spawn_opts(coil_loop_t *loop, coil_task_fn fn, void *arg,
                     const coil_task_options_t *opts, coil_task_t **task_out)
{
    return spawn(loop, fn, arg, opts, task_out, __builtin_return_address(0));
}

__attribute__((noinline)) int coil_task_spawn(coil_loop_t *loop,
                                              coil_task_fn fn, void *arg,
                                              coil_task_t **task_out)
{
    return spawn(loop, fn, arg, NULL, task_out, __builtin_return_address(0));
}

coil_task_t *coil_task_ref(coil_task_t *t)
{
    if (t)
        coil_future_ref(&t->fut);
    return t;
}

void coil_task_unref(coil_task_t *t)
{
    if (t)
        coil_future_unref(&t->fut);
}

coil_future_t *coil_task_future(coil_task_t *t)
{
    return t ? &t->fut : NULL;
}

const char *coil_task_name(coil_task_t *t)
{
    if (!t)
        return NULL;
    coil__future_check_live(&t->fut, "coil_task_name");
    return t->name ? t->name : t->defname;
}

int coil_task_set_name(coil_task_t *t, const char *name)
{
    if (!t || !name)
        return -EINVAL;
    coil__future_check_live(&t->fut, "coil_task_set_name");
    char *c = copy_name(name);
    if (!c)
        return -ENOMEM;
    coil__free(t->name);
    t->name = c;
    if (t->stack)
        coil__stack_set_owner(t->stack, c);
    return 0;
}

size_t coil_task_stack_size(const coil_task_t *t)
{
    if (!t)
        return 0;
    coil__future_check_live(&t->fut, "coil_task_stack_size");
    return t->stack ? t->stack->size : 0;
}

int coil_loop_tasks(coil_loop_t *loop, coil_task_t **out, size_t n)
{
    if (!loop || (!out && n))
        return -EINVAL;
    size_t i = 0;
    for (struct coil__list *l = loop->tasks.all.next; l != &loop->tasks.all;
         l = l->next) {
        if (i < n)
            out[i] = coil_task_ref(coil__container_of(l, struct coil_task,
                                                      link));
        i++;
    }
    return (int)i;
}

int coil_loop_set_stack_size(coil_loop_t *loop, size_t size)
{
    if (!loop || check_stack_size(size))
        return -EINVAL;
    struct coil__stack_pool p;
    coil__stack_pool_init(&p, size);
    if (p.size == loop->tasks.stacks.size)
        return 0;
    /* Pooled stacks of the old size go; live ones come back to stack_put,
     * which sees their size differs and unmaps them. */
    struct coil__stack_pool old = loop->tasks.stacks;
    old.live = 0;
    coil__stack_pool_term(&old);
    coil__stack_pool_init(&loop->tasks.stacks, size);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Cancellation                                                         */
/* ------------------------------------------------------------------ */

/* Interrupt t's current wait, or make its next wait deliver the cancel. */
static void pass_on(struct coil_task *t)
{
    if (t->must_cancel || t->state == COIL__TASK_DONE)
        return;
    if (t->wait_ops && !t->queued && t->wait_ops->cancel(t->wait, t))
        return;
    t->must_cancel = true;
}

int coil_task_cancel(coil_task_t *t)
{
    if (!t)
        return -EINVAL;
    coil__future_check_live(&t->fut, "coil_task_cancel");
    coil__loop_check_thread(t->loop, "coil_task_cancel");
    if (t->state == COIL__TASK_DONE)
        return -EALREADY;
    t->cancelling++;
    if (t->must_cancel || t->cancel_queued)
        return 0;
    /*
     * Interrupting a wait may cancel what the task waits for (an awaited
     * task, a group's children), which may wait for something else in
     * turn. Those cancels join a FIFO that the outermost call drains, so
     * a chain of any length is cancelled in a loop on this stack.
     */
    struct coil__loop_tasks *ts = &t->loop->tasks;
    t->cancel_queued = true;
    t->cancel_next = NULL;
    *ts->cancel_tailp = t;
    ts->cancel_tailp = &t->cancel_next;
    if (ts->cancelling)
        return 0; /* an outer call is draining the FIFO */
    ts->cancelling = true;
    struct coil_task *next;
    while ((next = ts->cancel_head)) {
        ts->cancel_head = next->cancel_next;
        if (!ts->cancel_head)
            ts->cancel_tailp = &ts->cancel_head;
        next->cancel_queued = false;
        pass_on(next);
    }
    ts->cancelling = false;
    return 0;
}

void coil__task_rearm_cancel(struct coil_task *t)
{
    if (t->state != COIL__TASK_DONE)
        t->must_cancel = true;
}

bool coil__task_take_cancel(struct coil_task *t)
{
    bool was = t->must_cancel;
    t->must_cancel = false;
    return was;
}

void coil__task_hook_add(struct coil_task *t, struct coil__task_hook *h)
{
    coil__list_push_back(&t->hooks, &h->link);
}

void coil__task_hook_remove(struct coil__task_hook *h)
{
    coil__list_remove(&h->link);
}

unsigned coil_task_cancelling(const coil_task_t *t)
{
    return t ? t->cancelling : 0;
}

unsigned coil_task_uncancel(coil_task_t *t)
{
    if (!t)
        return 0;
    coil__future_check_live(&t->fut, "coil_task_uncancel");
    if (t->cancelling > 0)
        t->cancelling--;
    if (t->cancelling == 0) {
        t->must_cancel = false;
        t->cancel_seen = false;
    }
    return t->cancelling;
}

/* ------------------------------------------------------------------ */
/* await and shield                                                     */
/* ------------------------------------------------------------------ */

struct await_wait {
    struct coil__wait wait;
    struct coil_task *task;
    coil_future_t *fut;
    bool shield;
};

static int await_resume(struct coil__wait *w)
{
    return ((struct await_wait *)w)->fut->outcome;
}

static bool await_cancel(struct coil__wait *w, struct coil_task *t)
{
    struct await_wait *aw = (struct await_wait *)w;
    if (coil__list_empty(&t->fw.link))
        return false; /* fut completed: the task is on its way back */
    if (aw->shield) {
        coil__list_remove(&t->fw.link);
        coil__task_wake(t, -ECANCELED);
        return true;
    }
    /* As asyncio: cancelling the waiter cancels what it waits for; the
     * waiter then wakes when that is done (cancelled or not). */
    return coil_future_cancel(aw->fut) == 0;
}

static void await_abandon(struct coil__wait *w)
{
    struct await_wait *aw = (struct await_wait *)w;
    /* Unlink before dropping the reference: the list is inside fut. */
    coil__list_remove(&aw->task->fw.link);
    coil_future_unref(aw->fut);
}

static void describe_future(coil_future_t *f, char *buf, size_t n);

static void await_describe(struct coil__wait *w, struct coil_task *t,
                           char *buf, size_t n)
{
    (void)t;
    describe_future(((struct await_wait *)w)->fut, buf, n);
}

static void await_each(struct coil__wait *w,
                       void (*fn)(coil_future_t *f, void *ctx), void *ctx)
{
    fn(((struct await_wait *)w)->fut, ctx);
}

static const struct coil__wait_ops await_ops = {
    .cancel = await_cancel,
    .resume = await_resume,
    .abandon = await_abandon,
    .describe = await_describe,
    .each_future = await_each,
};

/* ------------------------------------------------------------------ */
/* Await cycles                                                         */
/* ------------------------------------------------------------------ */

/* The walk visits at most this many tasks: a longer cycle goes unseen,
 * and an await down a long chain of joins stays cheap. */
#define WALK_MAX 256

struct walk {
    struct coil_task **todo;
    size_t len, cap, visits;
    struct coil_task *local[64];
    uint64_t mark;
    bool lost; /* out of memory: the walk is incomplete */
};

static void walk_push(coil_future_t *f, void *ctx)
{
    struct walk *wk = ctx;
    if (f->ops != &task_future_ops)
        return; /* only a task's future leads on to what it waits for */
    struct coil_task *t = coil__container_of(f, struct coil_task, fut);
    if (t->walk == wk->mark || t->state == COIL__TASK_DONE)
        return;
    if (++wk->visits > WALK_MAX) {
        wk->lost = true;
        return;
    }
    t->walk = wk->mark;
    if (wk->len == wk->cap) {
        size_t cap = wk->cap * 2;
        struct coil_task **n = coil__malloc(cap * sizeof(*n));
        if (!n) {
            wk->lost = true;
            return;
        }
        memcpy(n, wk->todo, wk->len * sizeof(*n));
        if (wk->todo != wk->local)
            coil__free(wk->todo);
        wk->todo = n;
        wk->cap = cap;
    }
    wk->todo[wk->len++] = t;
}

/*
 * Whether me awaiting fut would close a cycle: fut is a task's, and
 * following what each task waits for (futures it awaits, a group's
 * children) from there leads back to me. Only suspended tasks lead on (a
 * task that is ready or running is not waiting on anything), only through
 * waits that need every one of their futures (not a "first of", not one
 * with a timer), and not through a task in a timeout scope: its deadline
 * would break the cycle. Nor is there a cycle if me is in such a scope.
 */
static COIL__COLD bool awaits_cycle(struct coil_task *me,
                                    coil_future_t *fut)
{
    if (!coil__list_empty(&me->hooks))
        return false; /* a timeout scope of ours ends the wait */
    struct walk wk = {.cap = 64, .mark = ++me->loop->tasks.walks};
    wk.todo = wk.local;
    walk_push(fut, &wk);
    bool found = false;
    while (wk.len && !found) {
        struct coil_task *t = wk.todo[--wk.len];
        if (t == me) {
            found = true;
            break;
        }
        const struct coil__wait_ops *ops = t->wait_ops;
        if (t->state == COIL__TASK_SUSPENDED && !t->queued && ops &&
            ops->each_future && coil__list_empty(&t->hooks) &&
            (!ops->needs_all || ops->needs_all(t->wait)))
            ops->each_future(t->wait, walk_push, &wk);
    }
    if (wk.todo != wk.local)
        coil__free(wk.todo);
    return found;
}

static int await(coil_future_t *fut, void **value_out, bool shield)
{
    struct coil_task *t = coil__task_running;
    if (!t)
        return -EPERM;
    if (fut)
        coil__future_check_live(fut, shield ? "coil_shield" : "coil_await");
    if (!fut || fut->loop != t->loop)
        return -EINVAL;
    if (fut == &t->fut)
        return -EDEADLK;
    if (fut->ops == &task_future_ops && fut->outcome == -EINPROGRESS &&
        awaits_cycle(t, fut))
        return -EDEADLK;
    if (t->must_cancel) {
        /* A cancellation pending when the await starts goes into what is
         * awaited, as in asyncio: the task then waits for it to finish
         * (usually cancelled). A shield, or a future that is done
         * already, delivers it here instead. */
        t->must_cancel = false;
        if (shield || fut->outcome != -EINPROGRESS ||
            coil_future_cancel(fut) != 0) {
            t->cancel_seen = true;
            return -ECANCELED;
        }
    }
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    if (fut->outcome == -EINPROGRESS) {
        struct await_wait aw = {{&await_ops, true}, t, fut, shield};
        fut->refs++; /* kept alive while we wait, whoever else lets go */
        coil__list_push_back(&fut->waiters, &t->fw.link);
        err = coil__task_suspend(t, &aw.wait);
        if (err == fut->outcome)
            fut->retrieved = true; /* the waiter got the outcome */
        if (err == 0 && value_out)
            *value_out = fut->value;
        if (coil__unlikely(--fut->refs == 0)) {
            fut->refs = 1;
            coil_future_unref(fut);
        }
        return err;
    }
    if (fut->outcome == 0 && value_out)
        *value_out = fut->value;
    return coil__future_outcome_take(fut);
}

int coil_await(coil_future_t *fut, void **value_out)
{
    return await(fut, value_out, false);
}

int coil_shield(coil_future_t *fut, void **value_out)
{
    return await(fut, value_out, true);
}

int coil_task_join(coil_task_t *task)
{
    void *v = NULL;
    int err = coil_await(task ? &task->fut : NULL, &v);
    return err ? err : (int)(intptr_t)v;
}

/* ------------------------------------------------------------------ */
/* sleep and yield                                                      */
/* ------------------------------------------------------------------ */

/* The timer is the task's own (task->timer), and its argument is the
 * task, not the wait on its stack: firing thousands of sleeps touches no
 * stack and no allocator. */
static void sleep_fire(void *arg)
{
    coil__task_wake(arg, 0);
}

static bool sleep_cancel(struct coil__wait *w, struct coil_task *t)
{
    (void)w;
    /* Called only while the task is not queued: the timer has not fired
     * (it would have woken the task), so cancelling it wins. */
    coil_handle_cancel(&t->timer);
    coil__task_wake(t, -ECANCELED);
    return true;
}

static void sleep_abandon(struct coil__wait *w)
{
    (void)w; /* the loop's close already dropped every timer */
}

static void sleep_describe(struct coil__wait *w, struct coil_task *t,
                           char *buf, size_t n)
{
    (void)w;
    int64_t left = coil_handle_when(&t->timer) - t->loop->now;
    snprintf(buf, n, "sleep until %+.3f s", (double)left / 1e9);
}

static const struct coil__wait_ops sleep_ops = {
    .cancel = sleep_cancel,
    .abandon = sleep_abandon,
    .describe = sleep_describe,
};

static bool yield_cancel(struct coil__wait *w, struct coil_task *t)
{
    (void)w;
    (void)t;
    return false; /* already queued; step_run delivers the cancel */
}

static void yield_abandon(struct coil__wait *w)
{
    (void)w;
}

static void yield_describe(struct coil__wait *w, struct coil_task *t,
                           char *buf, size_t n)
{
    (void)w;
    (void)t;
    snprintf(buf, n, "yield");
}

static const struct coil__wait_ops yield_ops = {
    .cancel = yield_cancel,
    .abandon = yield_abandon,
    .describe = yield_describe,
};

int coil_yield(void)
{
    struct coil_task *t;
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    struct coil__wait w = {&yield_ops, false};
    coil__task_wake(t, 0);
    return coil__task_suspend(t, &w);
}

int coil_sleep(int64_t delay_ns)
{
    if (delay_ns <= 0)
        return coil_yield();
    struct coil_task *t;
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    struct coil_loop *loop = t->loop;
    err = coil__timer_start(loop, &t->timer,
                            coil__add_sat(loop->now, delay_ns), sleep_fire, t);
    if (err)
        return err;
    struct coil__wait w = {&sleep_ops, false};
    return coil__task_suspend(t, &w);
}

/* ------------------------------------------------------------------ */
/* The loop's part                                                      */
/* ------------------------------------------------------------------ */

int coil__tasks_check_stack_size(size_t size)
{
    return check_stack_size(size);
}

int coil__tasks_init(struct coil_loop *loop, const char *context,
                     size_t stack_size)
{
    struct coil__loop_tasks *ts = &loop->tasks;
    coil__list_init(&ts->all);
    ts->count = 0;
    ts->next_id = 0;
    ts->sched_storage = NULL;
    ts->cancel_head = NULL;
    ts->cancel_tailp = &ts->cancel_head;
    ts->cancelling = false;
    coil__pool_init_aligned(&ts->task_pool, sizeof(struct coil_task), 64);
    coil__stack_pool_init(&ts->stacks,
                          stack_size ? stack_size : COIL__STACK_DEFAULT);
    int err = coil__context_find(context, &ts->ctx_ops);
    if (err)
        return err;
    if (ts->ctx_ops->thread_storage) {
        ts->sched_storage = coil__malloc(ts->ctx_ops->thread_storage);
        if (!ts->sched_storage)
            return -ENOMEM;
    }
    coil__context_init_thread(ts->ctx_ops, &ts->sched, ts->sched_storage);
    ts->sched_thread = coil__thread_token();
    return 0;
}

void coil__tasks_enter(struct coil_loop *loop)
{
    struct coil__loop_tasks *ts = &loop->tasks;
    const void *me = coil__thread_token();
    if (coil__likely(ts->sched_thread == me))
        return;
    /* Run on another thread than last time: the loop's own context is
     * this thread's now (TSan's fiber, the stack ASan learns). Nothing is
     * saved in it between runs. */
    coil__context_init_thread(ts->ctx_ops, &ts->sched, ts->sched_storage);
    ts->sched_thread = me;
}

int coil__task_spawn_then(struct coil_loop *loop, coil_task_fn fn,
                          void *arg, coil_done_fn done, void *ctx,
                          coil_task_t **out)
{
    coil_task_t *t;
    int err = coil_task_spawn(loop, fn, arg, &t);
    if (err)
        return err;
    err = coil_future_add_done_callback(coil_task_future(t), done, ctx);
    if (err) {
        coil_task_cancel(t); /* before it starts: fn never runs */
        coil_task_unref(t);
        return err;
    }
    *out = t;
    return 0;
}

void coil__tasks_close(struct coil_loop *loop)
{
    struct coil__list *l;
    while ((l = coil__list_first(&loop->tasks.all))) {
        struct coil_task *t = coil__container_of(l, struct coil_task, link);
        if (t->state != COIL__TASK_PENDING)
            coil__loop_report(loop, -ECANCELED,
                              "task '%s' was destroyed while pending: the "
                              "loop was closed",
                              coil_task_name(t));
        coil_future_ref(&t->fut);
        if (t->wait_ops) {
            t->wait_ops->abandon(t->wait);
            t->wait_ops = NULL;
        }
        coil__list_remove(&t->fw.link);
        if (t->state == COIL__TASK_PENDING)
            never_ran(t);
        if (t->state != COIL__TASK_DONE)
            complete(t, -ECANCELED);
        retire(loop, t);
        coil_future_unref(&t->fut);
    }
}

void coil__tasks_term(struct coil_loop *loop)
{
    struct coil__loop_tasks *ts = &loop->tasks;
    coil__stack_pool_term(&ts->stacks);
    coil__pool_term(&ts->task_pool);
    coil__free(ts->sched_storage);
    ts->sched_storage = NULL;
}

/* ------------------------------------------------------------------ */
/* Cancelling everything (coil_run's end)                               */
/* ------------------------------------------------------------------ */

static bool no_tasks(const struct coil_loop *loop, const void *arg)
{
    (void)arg;
    return loop->tasks.count == 0;
}

void coil__tasks_cancel_all(struct coil_loop *loop)
{
    while (loop->tasks.count) {
        for (struct coil__list *l = loop->tasks.all.next;
             l != &loop->tasks.all; l = l->next)
            coil_task_cancel(coil__container_of(l, struct coil_task, link));
        struct coil__until until = {.fn = no_tasks};
        if (coil__loop_run_until(loop, &until) != 0)
            break;
    }
}

/* ------------------------------------------------------------------ */
/* Introspection (coil/debug.h; dump.c)                                 */
/* ------------------------------------------------------------------ */

static void describe_future(coil_future_t *f, char *buf, size_t n)
{
    if (f->ops == &task_future_ops) {
        struct coil_task *t = coil__container_of(f, struct coil_task, fut);
        snprintf(buf, n, "join of task '%s' (id %llu)", coil_task_name(t),
                 (unsigned long long)t->id);
    } else {
        snprintf(buf, n, "future %p", (void *)f);
    }
}

static const char *state_name(const struct coil_task *t)
{
    switch (t->state) {
    case COIL__TASK_PENDING:
        return "pending";
    case COIL__TASK_RUNNING:
        return "running";
    case COIL__TASK_SUSPENDED:
        return t->queued ? "ready" : "suspended";
    default:
        return "done";
    }
}

void coil__task_info(struct coil_task *t, struct coil__task_info *out)
{
    out->id = t->id;
    out->name = coil_task_name(t);
    out->state = state_name(t);
    out->created = t->created;
    out->last_resume = t->last_resume;
    out->cpu_ns = t->cpu_ns;
    out->stack_size = t->stack ? t->stack->size : 0;
    out->stack_used = t->stack_used;
    if (t->stack && t->stack_measured)
        out->stack_used = coil__stack_used(t->stack);
    out->spawn_site = t->spawn_site;
    out->cancelling = t->cancelling;
    out->waits[0] = '\0';
    if (t->state == COIL__TASK_SUSPENDED && t->wait_ops) {
        if (t->wait_ops->describe)
            t->wait_ops->describe(t->wait, t, out->waits, sizeof(out->waits));
        else
            snprintf(out->waits, sizeof(out->waits), "a wait");
    }
}

size_t coil__task_awaiters(struct coil_task *t, struct coil_task **out,
                           size_t n)
{
    size_t i = 0;
    for (struct coil__list *l = t->fut.waiters.next; l != &t->fut.waiters;
         l = l->next) {
        struct coil__fwaiter *w =
            coil__container_of(l, struct coil__fwaiter, link);
        if (w->node.ops != &step_ops)
            continue; /* a done callback, a combinator's entry */
        if (i < n)
            out[i] = coil__container_of(w, struct coil_task, fw);
        i++;
    }
    return i;
}

struct waits_on {
    const coil_future_t *fut;
    bool found;
};

static void match_future(coil_future_t *f, void *ctx)
{
    struct waits_on *w = ctx;
    w->found |= f == w->fut;
}

bool coil__task_waits_on(struct coil_task *waiter, struct coil_task *target)
{
    if (waiter->state != COIL__TASK_SUSPENDED || !waiter->wait_ops ||
        !waiter->wait_ops->each_future)
        return false;
    struct waits_on w = {&target->fut, false};
    waiter->wait_ops->each_future(waiter->wait, match_future, &w);
    return w.found;
}

int coil__task_backtrace(struct coil_task *t, void **frames, int max)
{
    if (t == coil__task_running)
        return backtrace(frames, max);
    if (t->state != COIL__TASK_SUSPENDED || !t->stack || max <= 0)
        return 0;
    struct coil_loop *loop = t->loop;
    struct coil_task *me = coil__task_running;
    struct coil__stack *my_stack = coil__stack_running;
    struct coil__task_peek p = {frames, max, 0,
                                me ? &me->ctx : &loop->tasks.sched};
    t->peek = &p;
    t->peek_asked = true;
    coil__task_running = t;
    coil__stack_running = t->stack;
    coil__context_switch(loop->tasks.ctx_ops, p.back, &t->ctx);
    coil__task_running = me;
    coil__stack_running = my_stack;
    return p.n;
}

uint64_t coil__tasks_steps(const struct coil_loop *loop)
{
    return loop->tasks.steps;
}

int64_t coil_task_cpu_time(const coil_task_t *t)
{
    if (!t)
        return 0;
    coil__future_check_live(&t->fut, "coil_task_cpu_time");
    return t->cpu_ns;
}

int coil_task_stack_used(const coil_task_t *t, size_t *used_out)
{
    if (!t || !used_out)
        return -EINVAL;
    coil__future_check_live(&t->fut, "coil_task_stack_used");
    if (t->stack && t->stack_measured) {
        *used_out = coil__stack_used(t->stack);
        return 0;
    }
    if (t->stack_used) {
        *used_out = t->stack_used;
        return 0;
    }
    return -ENODATA;
}
