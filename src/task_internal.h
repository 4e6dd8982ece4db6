/* SPDX-License-Identifier: MIT */
/*
 * task_internal.h - tasks' internals, and the wait protocol every
 * suspending call in coil is built on. Only task.c writes a task's
 * fields; other modules use the calls below.
 *
 * A suspending call (sleep, await, a lock, a socket read...) does:
 *
 *     struct coil_task *t;
 *     int err = coil__task_begin_wait(&t);   // -EPERM, or a pending cancel
 *     if (err) return err;
 *     ... arm: register w with whatever will complete it ...
 *     err = coil__task_suspend(t, &w.wait);  // returns what the wait got
 *
 * and whatever completes the wait calls coil__task_wake(t, result), or
 * (a future the task awaits) queues the task's node, in which case the
 * wait's resume op computes the result. Cancelling the task calls the
 * wait's cancel op, which either interrupts the wait (it disarms and
 * wakes the task with -ECANCELED, or arranges for that to happen, and
 * returns true) or says the wait already completed (false): then the
 * cancel is delivered by the next wait, unless this wait carries no data
 * (keep_result false), in which case it is delivered right here.
 *
 * If the loop is closed while a task is suspended, the task can never
 * resume: its wait's abandon op releases what the wait holds (the task's
 * stack, where the wait lives, is freed right after).
 */
#ifndef COIL_TASK_INTERNAL_H
#define COIL_TASK_INTERNAL_H

#include "context.h"
#include "future_internal.h"
#include "list.h"
#include "pool.h"
#include "ready.h"
#include "stack.h"

struct coil_task;
struct coil__wait;

struct coil__wait_ops {
    /* The task is cancelled: interrupt the wait (true) or not (false). */
    bool (*cancel)(struct coil__wait *w, struct coil_task *t);
    /* Optional: compute the wait's result when the task's node ran without
     * coil__task_wake (a future it waited for completed). */
    int (*resume)(struct coil__wait *w);
    /* The loop closed with the task suspended here: release everything
     * the wait holds; never wakes the task. */
    void (*abandon)(struct coil__wait *w);
    /* Optional, for the task dump: what the task waits for, in a few
     * words ("sleep until +1.500 s", "fd 7 readable"). */
    void (*describe)(struct coil__wait *w, struct coil_task *t, char *buf,
                     size_t n);
    /* Optional, for the await tree and the await-cycle check: call fn on
     * every future the wait waits for. */
    void (*each_future)(struct coil__wait *w,
                        void (*fn)(coil_future_t *f, void *ctx), void *ctx);
    /* Optional: whether the wait can end only when every one of those
     * futures is done (no other way out but a cancel: no timer, no "first
     * of"). Only such waits are followed by the cycle check. NULL: yes,
     * if each_future is set. */
    bool (*needs_all)(struct coil__wait *w);
};

struct coil__wait {
    const struct coil__wait_ops *ops;
    bool keep_result; /* a completed result wins over a pending cancel */
};

enum coil__task_state {
    COIL__TASK_PENDING,   /* created, its first step queued */
    COIL__TASK_RUNNING,   /* on the CPU */
    COIL__TASK_SUSPENDED, /* in a wait (task->wait), maybe already woken */
    COIL__TASK_DONE,      /* fn returned; the future is complete */
};

/*
 * Laid out for many tasks: the first cache line holds everything a wake
 * and a step touch (the loop wakes thousands of tasks per iteration, and
 * each one is a cache miss), the second begins with the saved stack
 * pointer the switch needs. Task structs are 64-byte aligned in their
 * pool. The rest is cold.
 */
struct coil_task {
    /* line 0: waking and stepping */
    struct coil__fwaiter fw;  /* fw.node runs the task's next step; fw.link
                                 is used while it awaits one future */
    const struct coil__wait_ops *wait_ops; /* of the wait it is suspended
                                 in, NULL if none; copied from the wait
                                 (with wait_keep) so that waking and
                                 resuming the task never touch its stack */
    int wake_result;          /* what that wait returns */
    uint8_t state;            /* enum coil__task_state */
    bool must_cancel;         /* a cancel waits for the next wait */
    bool queued;              /* fw.node is in the ready queue */
    bool wait_keep;
    bool cancel_queued;       /* in the loop's list of cancels to pass on */
    bool peek_asked;          /* the dump wants its backtrace (peek) */
    struct coil__stack *stack;
    struct coil_loop *loop;   /* = fut.loop, kept here for the wake */
    /* line 1: switching */
    struct coil__context ctx; /* where the task's registers are saved */
    struct coil__wait *wait;  /* the wait's data, on the task's stack */
    struct coil_handle timer; /* coil_sleep's, embedded: a task sleeps at
                                 most once at a time */
    /* cold */
    struct coil_future fut;   /* the outcome; holds the references */
    coil_task_fn fn;
    void *arg;
    void (*dispose)(void *arg); /* arg's, if fn never runs (options) */
    struct coil__list link;   /* in loop->tasks.all until finished */
    unsigned cancelling;      /* cancel requests not withdrawn */
    uint64_t id;
    char *name;               /* owned copy; NULL: defname */
    char defname[26];         /* "Task-<id>": 5 + up to 20 digits + NUL */
    struct coil__list hooks;  /* struct coil__task_hook, oldest first */
    struct coil_task *cancel_next; /* in the loop's list of cancels */
    /* Introspection (coil/debug.h). */
    const void *spawn_site;   /* where coil_task_spawn* was called from */
    int64_t created;          /* loop time at the spawn */
    int64_t last_resume;      /* loop time of its last step (debug mode) */
    int64_t step_began;       /* real time its running step began (debug) */
    int64_t cpu_ns;           /* time it ran (debug mode) */
    size_t stack_used;        /* measured depth, once finished */
    bool stack_measured;      /* its stack was cleared before use (debug) */
    bool cancel_seen;         /* a wait returned -ECANCELED while a cancel
                                 request stood (a swallow is reported) */
    uint64_t walk;            /* the await-cycle walk that last saw it */
    struct coil__task_peek *peek; /* the dump asks for its backtrace */
};

/* The loop's part owned by task.c. */
struct coil__loop_tasks {
    uint64_t steps;                /* task steps run in debug mode */
    uint64_t walks;                         /* await-cycle walks made */
    struct coil__list all;                  /* tasks not finished */
    size_t count;                           /* how many */
    const struct coil__context_ops *ctx_ops;
    struct coil__context sched;             /* the loop's own context */
    const void *sched_thread;               /* the thread it belongs to
                                               (coil__thread_token) */
    void *sched_storage;                    /* for ctx_ops->thread_storage */
    struct coil__stack_pool stacks;         /* default-size stacks */
    struct coil__pool task_pool;            /* struct coil_task */
    uint64_t next_id;
    struct coil_task *returning; /* the task that last switched back to
                                    the loop's context */
    /* Cancels being passed on (coil_task_cancel): a FIFO, so that a chain
     * of tasks awaiting each other is cancelled link by link in a loop,
     * never by recursion as deep as the chain. */
    struct coil_task *cancel_head, **cancel_tailp;
    bool cancelling;                        /* the list is being drained */
};

/*
 * Something a task's end must clean up that an upper layer made (a
 * timeout scope the task left open): linked into the task while it
 * lives; when the task's function returns (or the loop abandons the
 * task) on_finish runs, newest first, the hook already unlinked.
 */
struct coil__task_hook {
    struct coil__list link;
    void (*on_finish)(struct coil__task_hook *hook, struct coil_task *t);
};

/* context: a context switch's name, or NULL (COIL_CONTEXT, else the
 * best); stack_size: the default stack size, or 0. Errors: -EINVAL,
 * -ENOSYS (coil__context_find), -ENOMEM. */
int coil__tasks_init(struct coil_loop *loop, const char *context,
                     size_t stack_size);
/* 0 if size is a valid stack size, else -EINVAL. */
int coil__tasks_check_stack_size(size_t size);
/* A run begins (run.c): if it runs on another thread than the last
 * run, the loop's own context becomes this thread's. */
void coil__tasks_enter(struct coil_loop *loop);
/* The loop closes: abandon every unfinished task. */
void coil__tasks_close(struct coil_loop *loop);
void coil__tasks_term(struct coil_loop *loop);

/* Cancel every task of the loop and run it until all have finished; a
 * task that ignores its cancellation is cancelled again each round
 * (coil_run's end). The loop must not be running. */
void coil__tasks_cancel_all(struct coil_loop *loop);

/* The running task, or NULL (written only by task.c). */
extern COIL__TLS struct coil_task *coil__task_running;
static inline struct coil_task *coil__task_current(void)
{
    return coil__task_running;
}

/*
 * Start a wait: the running task in *out, or -EPERM (not in a task), or
 * -ECANCELED (a cancel was pending; it is consumed).
 */
int coil__task_begin_wait(struct coil_task **out);

/* Suspend the running task t in w; returns the wait's result. */
int coil__task_suspend(struct coil_task *t, struct coil__wait *w);

/*
 * Spawn fn(arg) on loop with done(fut, ctx) on its future, for work run
 * on behalf of another thread or loop: either both happen or neither
 * (fn never runs). Errors as coil_task_spawn and
 * coil_future_add_done_callback.
 */
int coil__task_spawn_then(struct coil_loop *loop, coil_task_fn fn,
                          void *arg, coil_done_fn done, void *ctx,
                          coil_task_t **out);

/* Make t resume with result (queues its node). t must be suspended and
 * not yet woken. */
void coil__task_wake(struct coil_task *t, int result);

/* The loop a task runs on. */
static inline struct coil_loop *coil__task_loop(const struct coil_task *t)
{
    return t->loop;
}

/* Whether the task has finished (its function returned). */
static inline bool coil__task_done(const struct coil_task *t)
{
    return t->state == COIL__TASK_DONE;
}

/* Link or unlink a hook (struct coil__task_hook). */
void coil__task_hook_add(struct coil_task *t, struct coil__task_hook *h);
void coil__task_hook_remove(struct coil__task_hook *h);

/*
 * Make a cancellation pending for t's next wait without a new request
 * (coil_task_cancelling is unchanged): for code that withdrew its own
 * request but must leave another one in force (task groups, as asyncio's
 * uncancel-then-cancel). Nothing for a finished task.
 */
void coil__task_rearm_cancel(struct coil_task *t);

/* Whether a cancellation is pending for t's next wait. */
static inline bool coil__task_cancel_pending(const struct coil_task *t)
{
    return t->must_cancel;
}

/* Deliver a pending cancellation here: clears it, returns whether there
 * was one. */
bool coil__task_take_cancel(struct coil_task *t);

/* ------------------------------------------------------------------ */
/* Introspection (the task dump, dump.c)                                */
/* ------------------------------------------------------------------ */

struct coil__task_info {
    uint64_t id;
    const char *name;
    const char *state;      /* "pending", "running", "suspended", "ready",
                               "done" */
    int64_t created;        /* loop time */
    int64_t last_resume;    /* loop time; 0: not recorded (debug off) */
    int64_t cpu_ns;
    size_t stack_size;
    size_t stack_used;      /* 0: not measured */
    const void *spawn_site;
    unsigned cancelling;
    char waits[160];        /* what it waits for; empty if not waiting */
};

/* Fill *out for t. */
void coil__task_info(struct coil_task *t, struct coil__task_info *out);

/* The tasks that await t (in the order they began), up to n of them, no
 * new references; returns how many there are. */
size_t coil__task_awaiters(struct coil_task *t, struct coil_task **out,
                           size_t n);

/* Whether waiter is suspended in a wait that waits for target (a join,
 * an await, a group it waits in, a gather or wait over it). */
bool coil__task_waits_on(struct coil_task *waiter, struct coil_task *target);

/*
 * The native backtrace of t, into frames[0..max): t's own if it runs, a
 * suspended task's taken on its own stack (the task is switched to for
 * the time of a backtrace() call, and back: nothing else of it runs).
 * Returns how many frames, 0 for a task that has no frames (not started,
 * finished). Call on the loop's thread.
 */
int coil__task_backtrace(struct coil_task *t, void **frames, int max);

/* Task steps run on loop (coil_loop_metrics). */
uint64_t coil__tasks_steps(const struct coil_loop *loop);

#endif /* COIL_TASK_INTERNAL_H */
