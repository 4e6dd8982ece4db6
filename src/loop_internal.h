/* SPDX-License-Identifier: MIT */
/*
 * loop_internal.h - struct coil_loop, composed of the parts the modules
 * own (libdill's ctx.h is the model), and the loop's own internal calls.
 *
 *   ready     ready.h            the ready queue, call_soon, handles
 *   timers    timer.h            call_later / call_at on the timer heap
 *   watch     watch.h            the poller and the fd watchers
 *   ts        threadsafe.h       call_soon_threadsafe, the wake-up fd
 *   futures   future_internal.h  the pool of plain futures
 *   tasks     task_internal.h    tasks, stacks, the context switch
 *   debug     debug_internal.h   debug mode, the watchdog, the quarantine
 *
 * Each part is written only by its module. This header is the one place
 * that knows every part, so it is the one header allowed to include
 * headers of layers above the loop (docs/architecture.md, "Include
 * graph"): it needs their parts' definitions, nothing else of them. The
 * loop's own fields (state, time, references...) are loop.c's and
 * run.c's. The inline functions at the end serve the hot paths of other
 * modules without their touching a part's fields.
 */
#ifndef COIL_LOOP_INTERNAL_H
#define COIL_LOOP_INTERNAL_H

#include "debug_internal.h"
#include "future_internal.h"
#include "internal.h"
#include "list.h"
#include "ready.h"
#include "task_internal.h"
#include "threadsafe.h"
#include "timer.h"
#include "watch.h"

enum coil__loop_state {
    COIL__LOOP_IDLE,
    COIL__LOOP_RUNNING,
    COIL__LOOP_CLOSED,
};

/*
 * Something outside the loop's parts that must hear of the loop's close,
 * because it holds or will touch the loop's resources (a stream flushing
 * after its last reference went, a name lookup on a helper thread).
 * on_close runs on the loop thread during coil_loop_close, after every
 * task was abandoned; the hook has been unlinked already.
 */
struct coil__close_hook {
    struct coil__list link;
    void (*on_close)(struct coil__close_hook *hook);
};

/*
 * What a run runs until (coil__loop_run_until). The goal is reached when
 * *word no longer holds pending (a future's outcome leaving -EINPROGRESS,
 * read inline at every batch: run_until_complete), or when fn(loop, arg)
 * holds (coil_run's "no task left"). All NULL: no goal (run_forever).
 */
struct coil__until {
    const int *word;
    int pending;
    bool (*fn)(const struct coil_loop *loop, const void *arg);
    const void *arg;
};

/*
 * executor.c's part (declared here: the executors sit above the loop and
 * keep no other state in it): the loop's default executor and its name
 * resolver's pool, each made on first use, and the close hook that lets
 * them go.
 */
struct coil_executor;
struct coil__loop_exec {
    struct coil_executor *dflt;
    struct coil_executor *resolver; /* name lookups' own pool */
    struct coil__close_hook hook;   /* linked while either exists */
};

struct coil_loop {
    /* Hot: touched on every iteration. */
    struct coil__loop_ready ready;
    unsigned ticks;                /* iterations since the last poll */
    bool stopping;                 /* coil_loop_stop was called */
    bool debug_on;                 /* debug mode (debug.c's; here, on the
                                      hot line, for the paths that test
                                      it: the batch, a step, a suspend) */
    uint8_t state;                 /* enum coil__loop_state */
    int64_t now;                   /* cached monotonic time, ns */
    struct coil__until until;      /* the run's goal */

    struct coil__loop_tasks tasks;
    struct coil__loop_timers timers;
    struct coil__loop_futures futures;
    struct coil__loop_threadsafe ts;
    struct coil__loop_watch watch;

    struct coil__loop_exec exec;
    struct coil__loop_debug debug;
    struct coil__loop_counters counters; /* run.c's (coil_loop_metrics) */

    coil_exception_handler_fn exc_fn; /* NULL: the default */
    void *exc_arg;
    struct coil__list close_hooks;    /* struct coil__close_hook */

    /*
     * References to the loop's memory: one while the user holds any
     * (user_refs > 0), plus one per live handle, future and object that
     * keeps a loop pointer. The memory goes when this reaches 0.
     */
    size_t refs;
    size_t user_refs;              /* coil_loop_ref / coil_loop_unref */
    void *mem; /* what was allocated (the loop is aligned inside it) */
};

/* ------------------------------------------------------------------ */
/* Lifecycle (loop.c)                                                   */
/* ------------------------------------------------------------------ */

/* Free the loop's memory (the last reference went). */
void coil__loop_destroy(struct coil_loop *loop);

static inline void coil__loop_ref(struct coil_loop *loop)
{
    loop->refs++;
}

static inline void coil__loop_unref(struct coil_loop *loop)
{
    if (--loop->refs == 0)
        coil__loop_destroy(loop);
}

static inline bool coil__loop_closed(const struct coil_loop *loop)
{
    return loop->state == COIL__LOOP_CLOSED;
}

/* Link a hook (see struct coil__close_hook); unlink one that no longer
 * needs to hear of the close. */
void coil__loop_on_close(struct coil_loop *loop, struct coil__close_hook *h);
void coil__loop_on_close_cancel(struct coil__close_hook *h);

/* Report a problem through the exception handler, printf-style. error 0
 * reports a misuse that has no errno of its own. */
void coil__loop_report(struct coil_loop *loop, int error, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

/* Whether the loop is in debug mode (the hot paths' test). */
static inline bool coil__loop_debug_on(const struct coil_loop *loop)
{
    return loop->debug_on;
}

/*
 * A loop-only call (the name given) made on a thread other than the
 * loop's, in debug mode: report and abort. The loop belongs to the thread
 * that made it until it runs, then to the thread that last ran it.
 */
static inline void coil__loop_check_thread(struct coil_loop *loop,
                                           const char *call)
{
    if (coil__unlikely(loop->debug_on))
        coil__debug_check_thread(loop, call);
}

/* ------------------------------------------------------------------ */
/* Running (run.c)                                                      */
/* ------------------------------------------------------------------ */

/* Poll I/O and timers at least every this many iterations. */
#define COIL__IO_INTERVAL 64

/*
 * Run the loop until its goal is reached (checked after every iteration;
 * until NULL: no goal), or it is stopped. Errors as coil_loop_run_forever.
 */
int coil__loop_run_until(struct coil_loop *loop,
                         const struct coil__until *until);

/* Whether loop is the one running in the calling thread. */
bool coil__loop_running_here(const struct coil_loop *loop);

/* ------------------------------------------------------------------ */
/* Hot paths: the ready queue                                           */
/* ------------------------------------------------------------------ */

static inline void coil__ready_push(struct coil_loop *loop,
                                    struct coil__ready *node)
{
    coil__readyq_push(&loop->ready.q, node);
}

/* How many nodes are queued. */
#ifdef COIL_TESTING
/* The testing kit's seeded choice of timers before I/O (run.c). */
void coil__run_timers_first(struct coil_loop *loop);
#endif

static inline size_t coil__ready_len(const struct coil_loop *loop)
{
    return loop->ready.q.len;
}

/* Run a call_soon record: back to the pool first, so a callback that
 * schedules again reuses the same, still cached, record. */
static inline void coil__soon_run(struct coil_loop *loop,
                                  struct coil__ready *node)
{
    struct coil__soon *s = coil__container_of(node, struct coil__soon, node);
    coil_callback_fn fn = s->fn;
    void *arg = s->arg;
    coil__pool_put(&loop->ready.soon_pool, s);
    fn(arg);
}

/*
 * Run what is left of this iteration's batch: only what was ready when the
 * batch began, so a callback scheduled by a callback runs in the next
 * iteration, as in asyncio. The count lives in the part because tasks
 * handing over directly to each other take their steps from it too
 * (task.c). Plain call_soon records, the common case, skip the indirect
 * call.
 */
static inline void coil__ready_run_batch(struct coil_loop *loop)
{
    struct coil__loop_ready *r = &loop->ready;
    while (r->batch_left) {
        r->batch_left--;
        struct coil__ready *node = coil__readyq_pop(&r->q);
        if (node->ops == &coil__soon_ops)
            coil__soon_run(loop, node);
        else
            node->ops->run(loop, node);
    }
}

/* Make the nodes queued now this iteration's batch. */
static inline void coil__ready_begin_batch(struct coil_loop *loop)
{
    loop->ready.batch_left = loop->ready.q.len;
}

/* Whether a poll marked timers that have not run yet (timer.c). */
static inline bool coil__timers_due(const struct coil_loop *loop)
{
    return loop->timers.due;
}

/* Timers pending (task sleeps included). */
static inline size_t coil__timers_pending(const struct coil_loop *loop)
{
    return loop->timers.count;
}

/* Whether the run's goal is reached (run.c: coil__loop_run_until). */
static inline bool coil__loop_until_reached(const struct coil_loop *loop)
{
    const struct coil__until *u = &loop->until;
    if (u->word)
        return *u->word != u->pending;
    return u->fn && u->fn(loop, u->arg);
}

/*
 * The one predicate that decides whether the loop goes on to another
 * batch of ready nodes without polling first (run.c): something is ready,
 * no poll is due (COIL__IO_INTERVAL), no stop was asked, no timers are
 * waiting to run, the run's goal is not reached. If so, the batch is
 * started (the iteration counted) and true returned. The loop asks it
 * before every iteration; a task about to suspend asks it when the batch
 * is over, to hand over to the next task directly (task.c). Inline: it
 * runs once per hand-off.
 */
static inline bool coil__loop_next_batch(struct coil_loop *loop)
{
    if (coil__ready_len(loop) == 0 || loop->ticks >= COIL__IO_INTERVAL ||
        loop->stopping || coil__timers_due(loop) ||
        coil__loop_until_reached(loop))
        return false;
    loop->ticks++; /* counted into counters.iterations at the next poll */
    coil__ready_begin_batch(loop);
    return true;
}

/* The next node of this iteration's batch, or NULL if the batch is over. */
static inline struct coil__ready *coil__ready_batch_peek(struct coil_loop *loop)
{
    return loop->ready.batch_left ? loop->ready.q.head : NULL;
}

/* Take the node coil__ready_batch_peek returned off the queue. */
static inline void coil__ready_batch_take(struct coil_loop *loop)
{
    loop->ready.batch_left--;
    coil__readyq_pop(&loop->ready.q);
}

#endif /* COIL_LOOP_INTERNAL_H */
