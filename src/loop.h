/* SPDX-License-Identifier: MIT */
/*
 * loop.h - struct coil_loop, composed of the parts each module owns, and
 * the internal interfaces between those modules.
 *
 *   ready.c       the ready queue, call_soon, handles
 *   timer.c       call_later / call_at on the timer heap
 *   io.c          fd watchers (add_reader / add_writer)
 *   threadsafe.c  call_soon_threadsafe and the wake-up fd
 *   task.c        tasks: the context switches, stacks, the wait protocol
 *   loop.c        lifecycle and the iteration that ties them together
 *
 * Internal rule (docs/architecture.md): anything a callback does may
 * close or cancel anything, including the object being dispatched. So the
 * ready queue runs a count fixed at the start of the batch, every queued
 * node is self-describing (its ops say how to run or discard it), and an
 * object that may still be queued is never freed before its node runs.
 */
#ifndef COIL_LOOP_INTERNAL_H
#define COIL_LOOP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "context.h"
#include "heap.h"
#include "internal.h"
#include "list.h"
#include "poller.h"
#include "pool.h"
#include "stack.h"

/* ------------------------------------------------------------------ */
/* Ready queue (ready.c)                                                */
/* ------------------------------------------------------------------ */

struct coil__ready;
struct coil_loop;

struct coil__ready_ops {
    /* Run the node; it has already left the queue. */
    void (*run)(struct coil_loop *loop, struct coil__ready *node);
    /* The loop closes with the node queued: release what it holds. */
    void (*discard)(struct coil_loop *loop, struct coil__ready *node);
};

/*
 * A node embedded in anything the loop can run: a call_soon record, a
 * handle, a watcher direction, a future's waiter, a task resume.
 */
struct coil__ready {
    struct coil__ready *next;
    const struct coil__ready_ops *ops;
};

/* FIFO of nodes; pushing never allocates and never fails. */
struct coil__readyq {
    struct coil__ready *head;
    struct coil__ready **tailp; /* &last->next, or &head when empty */
    size_t len;
};

static inline void coil__readyq_init(struct coil__readyq *q)
{
    q->head = NULL;
    q->tailp = &q->head;
    q->len = 0;
}

static inline void coil__readyq_push(struct coil__readyq *q,
                                     struct coil__ready *node)
{
    node->next = NULL;
    *q->tailp = node;
    q->tailp = &node->next;
    q->len++;
}

static inline struct coil__ready *coil__readyq_pop(struct coil__readyq *q)
{
    struct coil__ready *node = q->head;
    q->head = node->next;
    if (!q->head)
        q->tailp = &q->head;
    q->len--;
    return node;
}

/* The flags of a handle, kept in the low bits of its loop pointer. */
enum {
    COIL__H_CANCELLED = 1, /* coil_handle_cancel was called */
    COIL__H_PENDING = 2,   /* a timer not yet run nor cancelled */
    COIL__H_LOOP_REF = 4,  /* the loop holds it: the call is pending */
    COIL__H_USER_REF = 8,  /* the caller holds it (asked for the handle) */
    COIL__H_FLAGS = 15,
};

/* heap.index of a call_soon handle: never a heap position. */
#define COIL__HEAP_SOON (COIL__HEAP_NONE - 1)

/*
 * A handle: a scheduled call the caller can cancel.
 *
 * Timers use it as is: 48 bytes, the size that decides how much memory a
 * million pending timers take. They run straight from the heap, never
 * through the ready queue. Pending timers with the same deadline form a
 * ring; only one of them, the leader, is in the heap (timer.c). Once a
 * timer ran or was cancelled its ring links are free, and hold its
 * deadline for coil_handle_when.
 *
 * Only two parties ever hold a handle: the loop while the call is
 * pending, and the caller if it asked for it. So instead of a count there
 * are two flag bits, and the flags live in the low bits of the loop
 * pointer (the loop is allocated 16-byte aligned): use the accessors.
 *
 * call_soon handles add a ready-queue node (struct coil__soon_handle) and
 * are told apart by heap.index == COIL__HEAP_SOON.
 */
struct coil_handle {
    coil_callback_fn fn;  /* what to call ... */
    void *arg;            /* ... and with what */
    uintptr_t loop_flags; /* the owner loop | COIL__H_* */
    union {
        struct {          /* timers while pending: same-deadline ring */
            struct coil_handle *next, *prev;
        } ring;
        int64_t when;     /* otherwise: the deadline, or time scheduled */
    } u;
    struct coil__heap_node heap; /* the ring's leader: place in the heap */
};

static inline struct coil_loop *coil__handle_loop(const struct coil_handle *h)
{
    return (struct coil_loop *)(h->loop_flags & ~(uintptr_t)COIL__H_FLAGS);
}

static inline bool coil__handle_has(const struct coil_handle *h, unsigned f)
{
    return (h->loop_flags & f) != 0;
}

static inline void coil__handle_set(struct coil_handle *h, unsigned f)
{
    h->loop_flags |= f;
}

static inline void coil__handle_clear(struct coil_handle *h, unsigned f)
{
    h->loop_flags &= ~(uintptr_t)f;
}

static inline bool coil__handle_is_timer(const struct coil_handle *h)
{
    return h->heap.index != COIL__HEAP_SOON;
}

struct coil__soon_handle {
    struct coil_handle h;
    struct coil__ready node; /* in the ready queue until it runs */
};

void coil__ready_init(struct coil_loop *loop);
void coil__ready_term(struct coil_loop *loop);
/* Run the nodes that were ready when called (defined below the loop). */
static inline void coil__ready_run(struct coil_loop *loop);
/* Discard every queued node (loop close). */
void coil__ready_discard_all(struct coil_loop *loop);

/* A handle held by the loop; NULL on -ENOMEM. */
struct coil_handle *coil__handle_new(struct coil_loop *loop, bool timer,
                                     coil_callback_fn fn, void *arg);
/* Drop a holder's claim (COIL__H_LOOP_REF or COIL__H_USER_REF); the
 * handle goes when neither holds it. */
void coil__handle_drop(struct coil_handle *h, unsigned ref);

/* ------------------------------------------------------------------ */
/* Timers (timer.c)                                                     */
/* ------------------------------------------------------------------ */

void coil__timers_init(struct coil_loop *loop);
void coil__timers_term(struct coil_loop *loop);
/* Note the time of a poll: the timers due then run after the batch. */
void coil__timers_mark_due(struct coil_loop *loop);
/* Run the timers marked due, in (deadline, scheduling) order. */
void coil__timers_run(struct coil_loop *loop);
/* ns until the next timer is due (0 if overdue), or -1 if none. */
int64_t coil__timers_timeout(const struct coil_loop *loop);
/* Take a pending timer out (cancel). */
void coil__timers_remove(struct coil_loop *loop, struct coil_handle *h);
/*
 * Start a timer embedded in another object (a task's sleep). The owner
 * plays the caller's part (it holds the "user" claim for good), so the
 * handle is never freed and holds no loop reference. -ENOMEM if the heap
 * cannot grow.
 */
int coil__timer_start(struct coil_loop *loop, struct coil_handle *h,
                      int64_t when, coil_callback_fn fn, void *arg);
/* The deadline of a pending timer. */
int64_t coil__timer_when(const struct coil_handle *h);

/* ------------------------------------------------------------------ */
/* fd watchers (io.c)                                                   */
/* ------------------------------------------------------------------ */

struct coil_task;

/*
 * One direction of a watch. It has a user, or none: a callback (fn, from
 * add_reader/add_writer) or a task suspended in coil__io_wait (task),
 * never both. Its bit in the watch's mask may stay set with no user (a
 * waiting task woke and the interest was left armed, see io.c).
 */
struct coil__watch_dir {
    coil_callback_fn fn;    /* NULL when no callback watches */
    void *arg;
    struct coil_task *task; /* the task waiting in coil__io_wait, or NULL */
    uint32_t gen;           /* bumped on every add/remove */
    uint32_t queued_gen;    /* gen when the node was queued */
    bool queued;            /* node is in the ready queue */
    struct coil__ready node;
};

struct coil__watch {
    int fd;
    unsigned mask;                 /* interest registered with the poller */
    uint32_t tag;                  /* tag of that registration */
    unsigned epoch;                /* coil__io_epoch when last registered
                                      or checked (io.c) */
    struct coil__watch_dir dir[2]; /* [0] reader, [1] writer */
};

/*
 * An I/O request served off the loop thread (a getaddrinfo on a helper
 * thread) that must hear of the loop's close, because the helper will
 * touch the loop when it finishes. on_close runs on the loop thread
 * during coil_loop_close, after every task was abandoned; the job has
 * been unlinked already.
 */
struct coil__io_job {
    struct coil__list link; /* in loop->io.jobs while linked */
    void (*on_close)(struct coil__io_job *job);
};

struct coil__watches {
    struct coil__watch **by_fd; /* by_fd[fd], NULL if never watched */
    int len;                    /* entries in by_fd */
    uint32_t next_tag;          /* 0 is reserved for the wake-up fd */
    struct coil__list jobs;     /* struct coil__io_job */
};

void coil__io_init(struct coil_loop *loop);
void coil__io_term(struct coil_loop *loop);
/* Forget every watcher (close); the poller is closed right after. */
void coil__io_drop_all(struct coil_loop *loop);
/* Queue the watchers an event makes ready. */
void coil__io_event(struct coil_loop *loop, const struct coil__event *ev);

/*
 * Suspend the running task until fd is ready in direction dir
 * (COIL__EV_READ or COIL__EV_WRITE), or has an error or hang-up. Call it
 * after the fd's non-blocking I/O said EAGAIN: the fd is then known to be
 * open, which the fast path (interest still armed from the previous wait)
 * relies on. Returns 0 (ready: retry the I/O), -ECANCELED (the task was
 * cancelled; nothing stays registered for it), -EPERM (not in a task),
 * -EBUSY (a callback watcher or another task already has that direction),
 * -EBADF (fd not open, or closed while waiting: coil__io_close_fd or, on
 * poll, the loop noticed), -EPERM (fd cannot be polled), -ENOMEM.
 */
int coil__io_wait(struct coil_loop *loop, int fd, unsigned dir);

/*
 * fd is about to be closed (or was just created by coil, so its number
 * may be a closed one's): forget its watchers and armed interest in loop,
 * and wake tasks waiting on it with -EBADF. No-op for numbers never
 * watched. With loop NULL (no loop runs in this thread, so which one
 * remembers fd is unknown), every loop re-checks its armed interests
 * before trusting them again.
 */
void coil__io_forget_fd(struct coil_loop *loop, int fd);

/*
 * fd was handed to coil by its user (coil_stream_from_fd): make sure loop
 * has its watch (so that watching it later needs no allocation of the
 * loop's own), and since the number may be one of an fd closed behind
 * the loop's back, make the next task wait on it register its interest
 * again instead of trusting an armed bit (one epoll_ctl, which also
 * notices the new file). Watchers and waiting tasks are left alone.
 * Returns 0 or -ENOMEM.
 */
int coil__io_adopt_fd(struct coil_loop *loop, int fd);

/* Link a job (see struct coil__io_job). */
void coil__io_job_add(struct coil_loop *loop, struct coil__io_job *job);
/* Unlink a job that no longer needs to hear of the close. */
void coil__io_job_remove(struct coil__io_job *job);

/* ------------------------------------------------------------------ */
/* call_soon_threadsafe (threadsafe.c)                                  */
/* ------------------------------------------------------------------ */

struct coil__threadsafe {
    pthread_mutex_t lock;
    struct coil__ready *head; /* calls made by other threads, FIFO */
    struct coil__ready **tailp;
    atomic_bool closed;       /* set under lock at close */
    atomic_bool pending;      /* head is not empty: checked every poll */
    int rfd, wfd;             /* wake-up channel (eventfd: rfd == wfd) */
};

int coil__threadsafe_init(struct coil_loop *loop);
/* Drop pending calls, close the wake-up fds. */
void coil__threadsafe_close(struct coil_loop *loop);
void coil__threadsafe_term(struct coil_loop *loop);
/* The wake-up fd fired: move pending calls to the ready queue. */
void coil__threadsafe_drain(struct coil_loop *loop);

#define COIL__WAKE_TAG 0u

/* ------------------------------------------------------------------ */
/* Tasks (task.c)                                                       */
/* ------------------------------------------------------------------ */

struct coil__tasks {
    struct coil__list all;                  /* tasks not finished */
    size_t count;                           /* how many */
    const struct coil__context_ops *ctx_ops;
    struct coil__context sched;             /* the loop's own context */
    void *sched_storage;                    /* for ctx_ops->thread_storage */
    struct coil__stack_pool stacks;         /* default-size stacks */
    struct coil__pool task_pool;            /* struct coil_task */
    uint64_t next_id;
    struct coil_task *returning; /* the task that last switched back to
                                    the loop's context */
};

/* ------------------------------------------------------------------ */
/* The loop                                                             */
/* ------------------------------------------------------------------ */

enum coil__loop_state {
    COIL__LOOP_IDLE,
    COIL__LOOP_RUNNING,
    COIL__LOOP_CLOSED,
};

struct coil_loop {
    /* Hot: touched on every iteration. */
    struct coil__readyq ready;     /* callbacks to run */
    struct coil__pool soon_pool;   /* call_soon records without handle */
    unsigned ticks;                /* iterations since the last poll */
    size_t batch_left;             /* nodes left in this iteration's batch */
    bool stopping;                 /* coil_loop_stop was called */
    bool until_no_tasks;           /* run until every task finished */
    const struct coil_future *until; /* run_until_complete's future */
    enum coil__loop_state state;
    int64_t now;                   /* cached monotonic time, ns */

    struct coil__pool fut_pool;    /* plain futures */
    struct coil__pool timer_pool;  /* timer handles */
    struct coil__pool soonh_pool;  /* call_soon handles */
    struct coil__heap timers;      /* timer ring leaders by deadline */
    struct coil_handle *last_leader; /* leader of the newest ring */
    size_t ntimers;                /* pending timers, rings included */
    bool timers_due;               /* a poll marked timers due */
    int64_t due_now;               /* run timers due at this time ... */
    uint32_t due_seq;              /* ... scheduled before this seq */
    struct coil__watches io;       /* fd watchers */
    const struct coil__poller_ops *pops;
    struct coil__poller *poller;
    struct coil__threadsafe ts;
    struct coil__tasks tasks;

    coil_exception_handler_fn exc_fn; /* NULL: the default */
    void *exc_arg;

    /*
     * References: 1 for the user (dropped by coil_loop_free), plus one per
     * live handle and future. The memory goes when this reaches 0.
     */
    size_t refs;
    bool user_freed;
    void *mem; /* what was allocated (the loop is aligned inside it) */

    struct coil__event events[COIL__POLLER_BATCH];
};

/* A plain call_soon record (no handle), pooled in loop->soon_pool. */
struct coil__soon {
    struct coil__ready node;
    coil_callback_fn fn;
    void *arg;
};

extern const struct coil__ready_ops coil__soon_ops;

/* Run a call_soon record: back to the pool first, so a callback that
 * schedules again reuses the same, still cached, record. */
static inline void coil__soon_run(struct coil_loop *loop,
                                  struct coil__ready *node)
{
    struct coil__soon *s = coil__container_of(node, struct coil__soon, node);
    coil_callback_fn fn = s->fn;
    void *arg = s->arg;
    coil__pool_put(&loop->soon_pool, s);
    fn(arg);
}

static inline void coil__ready_run(struct coil_loop *loop)
{
    /* Only what was ready when the batch began: a callback scheduled by a
     * callback runs in the next iteration, as in asyncio. The count lives
     * in the loop because tasks handing over directly to each other take
     * their steps from it too (task.c). Plain call_soon records, the
     * common case, skip the indirect call. */
    loop->batch_left = loop->ready.len;
    while (loop->batch_left) {
        loop->batch_left--;
        struct coil__ready *node = coil__readyq_pop(&loop->ready);
        if (node->ops == &coil__soon_ops)
            coil__soon_run(loop, node);
        else
            node->ops->run(loop, node);
    }
}

/* Poll I/O and timers at least every this many iterations. */
#define COIL__IO_INTERVAL 64

static inline void coil__loop_ref(struct coil_loop *loop)
{
    loop->refs++;
}

/* Free the loop's memory (the last reference went). */
void coil__loop_destroy(struct coil_loop *loop);

static inline void coil__loop_unref(struct coil_loop *loop)
{
    if (--loop->refs == 0)
        coil__loop_destroy(loop);
}

/* Run one iteration; the loop must be marked running. */
int coil__loop_run_once(struct coil_loop *loop);

/* Run the loop until every task has finished (or it is stopped). */
int coil__loop_run_until_no_tasks(struct coil_loop *loop);


/* Report a problem through the exception handler, printf-style. */
void coil__loop_report(struct coil_loop *loop, int error, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

#endif /* COIL_LOOP_INTERNAL_H */
