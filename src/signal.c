/* SPDX-License-Identifier: MIT */
/*
 * signal.c - Unix signals as loop callbacks and task waits (coil/signal.h,
 * signal_internal.h). docs/architecture.md, "Signals", has the design and
 * why it is not signalfd.
 *
 * Two halves, one table between them.
 *
 * The process-wide table, one slot per signal number. coil's sigaction
 * handler (on_signal) runs on whatever thread the kernel picks and may
 * use only async-signal-safe calls, so it reads the slot through atomics
 * and nothing else: it adds one to the slot's count of deliveries and
 * writes to the owning loop's signal channel (the slot holds the
 * channel's write fd). Everything else in a slot (which loop owns it, the
 * disposition to put back) is changed on loop threads under `lock`, which
 * the handler never takes.
 *
 * The loop's side, one struct sig_state per loop that handles signals:
 * the channel (an eventfd, or a non-blocking pipe where there is none),
 * an owned watch with a lasting reader on it, and per signal what the
 * loop does with it (a handler, waiting tasks, an internal hook). The
 * reader drains the channel and then takes each owned signal's count
 * (atomic_exchange to 0): in that order, a delivery counted after the
 * take wrote after the drain, so the channel is readable again and no
 * delivery is left unseen. Each taken count wakes the signal's waiting
 * tasks and owes its handler that many calls, which the state's one
 * ready node makes: callbacks run from the ready queue, never from the
 * poll, and never inside the handler.
 *
 * Taking and letting go of a slot (sync_slot) is ordered so that a
 * handler running concurrently never sees half of it: the channel is
 * published before coil's sigaction goes in, and when the slot is let go
 * the old disposition goes back first, then the channel is withdrawn,
 * then the loop waits until no handler is between reading the channel
 * and its write (the slot's `busy` count, Dekker-style with the
 * withdrawal: both sequentially consistent). Only then may the channel be
 * closed: a handler never writes to an fd number that was closed and
 * perhaps reused.
 *
 * A state lives while the loop uses a signal, and until its node (if
 * queued) has run; the loop's close hook frees it at the latest. Its
 * fields are the loop thread's; the list of states is under `lock`.
 */
#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "list.h"
#include "loop_internal.h"
#include "signal_internal.h"
#include "sys.h"
#include "task_internal.h"
#include "watch.h"

#if ATOMIC_INT_LOCK_FREE != 2
#error "signal.c needs lock-free atomic int: its signal handler uses them"
#endif

#define NSIGS NSIG

/* ------------------------------------------------------------------ */
/* The process-wide table                                               */
/* ------------------------------------------------------------------ */

struct sig_state;

struct slot {
    /* Read by the handler, from any thread: atomics only. */
    atomic_int chan;    /* the owner's channel write fd + 1; 0: none */
    atomic_uint count;  /* deliveries the owner has not taken yet */
    atomic_int busy;    /* handlers between reading chan and done */
    /* Under `lock`, on loop threads. */
    struct sig_state *owner; /* the loop's state that has the signal */
    struct sigaction prev;   /* the disposition to put back */
    bool resethand;          /* coil's handler is in with SA_RESETHAND */
};

static struct slot slots[NSIGS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct coil__list states = {&states, &states}; /* struct sig_state */

/*
 * coil's handler. Async-signal-safe: atomics, write(2), errno kept. The
 * count goes up before the write, so a loop that drained the channel
 * before this write reads it again and finds the count.
 */
static void on_signal(int signum)
{
    int saved = errno;
    struct slot *s = &slots[signum];
    atomic_fetch_add(&s->busy, 1);
    int chan = atomic_load(&s->chan);
    if (chan > 0) {
        atomic_fetch_add(&s->count, 1);
        uint64_t one = 1; /* an eventfd takes 8 bytes; a pipe, anything */
        ssize_t r;
        do
            r = write(chan - 1, &one, sizeof(one));
        while (r < 0 && errno == EINTR);
        /* EAGAIN: the channel is full, so the loop is being woken. */
    }
    atomic_fetch_sub(&s->busy, 1);
    errno = saved;
}

/* ------------------------------------------------------------------ */
/* Per loop                                                             */
/* ------------------------------------------------------------------ */

/* A task in coil_signal_wait. Lives on the task's stack. */
struct sig_wait {
    struct coil__wait wait;
    struct coil__list link;   /* in its entry's waiters until woken */
    struct coil_task *task;
    struct sig_state *st;
    int signum;
};

/* One signal on one loop. */
struct sig_entry {
    coil_callback_fn fn;      /* the user's handler; NULL: none */
    void *arg;
    unsigned calls;           /* handler calls owed (deliveries seen) */
    coil_callback_fn ifn;     /* the internal hook; NULL: none */
    void *iarg;
    bool ionce;               /* COIL__SIGNAL_ONCE */
    bool iquiet;              /* COIL__SIGNAL_QUIET */
    bool owned;               /* this loop has the slot */
    unsigned icalls;          /* internal calls owed, to icall_fn(arg) */
    coil_callback_fn icall_fn;
    void *icall_arg;
    unsigned waiting;         /* coil_signal_wait calls not returned */
    struct coil__list waiters; /* struct sig_wait, not woken yet */
};

struct sig_state {
    struct coil__list link;        /* in `states` */
    struct coil_loop *loop;
    struct coil__close_hook hook;
    struct coil__watch watch;      /* of rfd */
    int rfd, wfd;                  /* the channel (eventfd: rfd == wfd) */
    struct coil__ready node;       /* runs the calls owed */
    bool queued;                   /* node is in the ready queue */
    bool running;                  /* node is running */
    unsigned owned;                /* slots this loop has */
    struct sig_entry e[NSIGS];
};

static int check_signum(int signum)
{
    if (signum <= 0 || signum >= NSIGS)
        return -EINVAL;
    switch (signum) {
    case SIGKILL:
    case SIGSTOP:
    /* Faults of the instruction that raised them: returning from a
     * handler runs it again. stack.c owns SIGSEGV and SIGBUS. */
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
        return -EINVAL;
    default:
        return 0;
    }
}

static bool entry_used(const struct sig_entry *e)
{
    return e->fn || e->ifn || e->waiting;
}

/* Whether the user's side of the loop hears the signal (which displaces
 * the internal hook). */
static bool entry_user(const struct sig_entry *e)
{
    return e->fn || e->waiting;
}

/* Let the slot go: under lock, e owned. */
static void release_slot(struct sig_state *st, int signum)
{
    struct slot *sl = &slots[signum];
    struct sig_entry *e = &st->e[signum];
    /* The old disposition first: a delivery from now on is not ours. */
    (void)sigaction(signum, &sl->prev, NULL);
    atomic_store(&sl->chan, 0);
    /* A handler that read the channel before the store has made busy
     * non-zero before reading it: wait until it is done writing. */
    while (atomic_load(&sl->busy))
        sched_yield();
    atomic_store(&sl->count, 0);
    sl->owner = NULL;
    sl->resethand = false;
    e->owned = false;
    st->owned--;
}

/*
 * Make the slot of signum match what loop st does with it (under lock):
 * taken, with coil's handler in and the right flags, while the entry has
 * a user; let go otherwise. Errors: -EBUSY (another loop has it),
 * sigaction's; then nothing changed.
 */
static int sync_slot(struct sig_state *st, int signum)
{
    struct slot *sl = &slots[signum];
    struct sig_entry *e = &st->e[signum];
    if (!entry_used(e)) {
        if (e->owned)
            release_slot(st, signum);
        return 0;
    }
    bool once = e->ifn && e->ionce && !entry_user(e);
    if (e->owned && sl->resethand == once)
        return 0;
    if (!e->owned && sl->owner)
        return -EBUSY;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | (once ? SA_RESETHAND : 0);
    if (e->owned) {
        if (sigaction(signum, &sa, NULL) < 0)
            return -errno;
    } else {
        /* Publish the channel before the handler can run for us. */
        atomic_store(&sl->chan, st->wfd + 1);
        struct sigaction prev;
        if (sigaction(signum, &sa, &prev) < 0) {
            int err = -errno;
            atomic_store(&sl->chan, 0);
            while (atomic_load(&sl->busy))
                sched_yield();
            atomic_store(&sl->count, 0);
            return err;
        }
        sl->prev = prev;
        sl->owner = st;
        e->owned = true;
        st->owned++;
    }
    sl->resethand = once;
    return 0;
}

static struct sig_state *state_find(struct coil_loop *loop)
{
    for (struct coil__list *l = states.next; l != &states; l = l->next) {
        struct sig_state *st = coil__container_of(l, struct sig_state, link);
        if (st->loop == loop)
            return st;
    }
    return NULL;
}

static int open_channel(struct sig_state *st)
{
    return coil__wake_channel_open(&st->rfd, &st->wfd);
}

static void close_channel(struct sig_state *st)
{
    coil__wake_channel_close(&st->rfd, &st->wfd);
}

/* Free st (under lock): it owns no slot, its node is not queued. */
static void state_free(struct sig_state *st)
{
    assert(st->owned == 0 && !st->queued && !st->running);
    coil__list_remove(&st->link);
    coil__loop_on_close_cancel(&st->hook);
    coil__watch_close(&st->watch);
    close_channel(st);
    coil__free(st);
}

/* Free st if nothing needs it any more (under lock). */
static void state_maybe_free(struct sig_state *st)
{
    if (st && st->owned == 0 && !st->queued && !st->running)
        state_free(st);
}

static void on_readable(void *arg, int result);
static void on_loop_close(struct coil__close_hook *hook);
static void node_run(struct coil_loop *loop, struct coil__ready *node);
static void node_discard(struct coil_loop *loop, struct coil__ready *node);
static const struct coil__ready_ops node_ops = {node_run, node_discard};

/* loop's state, made if it has none (under lock). Errors: -EBADF (loop
 * closed), -ENOMEM, the channel's (-EMFILE...), the watch's. */
static int state_get(struct coil_loop *loop, struct sig_state **out)
{
    *out = state_find(loop);
    if (*out)
        return 0;
    if (coil__loop_closed(loop))
        return -EBADF;
    struct sig_state *st = coil__calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->loop = loop;
    st->rfd = st->wfd = -1;
    st->node.ops = &node_ops;
    for (int s = 0; s < NSIGS; s++)
        coil__list_init(&st->e[s].waiters);
    int err = open_channel(st);
    if (!err)
        err = coil__watch_init(&st->watch, loop, st->rfd, COIL__WATCH_OWNED);
    if (!err)
        err = coil__watch_start(&st->watch, COIL__EV_READ, on_readable, st, 0);
    if (err) {
        coil__watch_close(&st->watch);
        close_channel(st);
        coil__free(st);
        return err;
    }
    st->hook.on_close = on_loop_close;
    coil__loop_on_close(loop, &st->hook);
    coil__list_push_back(&states, &st->link);
    *out = st;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Deliveries                                                           */
/* ------------------------------------------------------------------ */

static void queue_node(struct sig_state *st)
{
    if (!st->queued) {
        st->queued = true;
        coil__ready_push(st->loop, &st->node);
    }
}

/* The loop saw n deliveries of signum. */
static void deliver(struct sig_state *st, int signum, unsigned n)
{
    struct sig_entry *e = &st->e[signum];
    bool displaced = entry_user(e);
    struct coil__list *l;
    while ((l = coil__list_first(&e->waiters))) {
        struct sig_wait *w = coil__container_of(l, struct sig_wait, link);
        coil__list_remove(l);
        coil__task_wake(w->task, signum);
    }
    if (e->fn) {
        e->calls += n;
        queue_node(st);
    }
    if (e->ifn && !displaced) {
        e->icall_fn = e->ifn;
        e->icall_arg = e->iarg;
        queue_node(st);
        if (!e->ionce) {
            e->icalls += n;
            return;
        }
        /* Spent: the kernel has put SIG_DFL back already; put back what
         * was there before coil. */
        e->icalls = 1;
        e->ifn = NULL;
        e->iarg = NULL;
        pthread_mutex_lock(&lock);
        (void)sync_slot(st, signum);
        pthread_mutex_unlock(&lock);
    }
}

/* The channel's reader (a lasting user of the watch, called from the
 * poll): drain, then take the counts (see the top). */
static void on_readable(void *arg, int result)
{
    struct sig_state *st = arg;
    if (result < 0)
        return; /* the channel is being closed */
    char buf[64];
    while (read(st->rfd, buf, sizeof(buf)) > 0 && st->rfd != st->wfd)
        ;
    for (int s = 1; s < NSIGS; s++) {
        if (!st->e[s].owned)
            continue;
        unsigned n = atomic_exchange(&slots[s].count, 0);
        if (n)
            deliver(st, s, n);
    }
}

/* The state's node: make the calls owed, one by one. A call may add,
 * replace or remove handlers (its own included), wait, or stop the loop;
 * the state stays until the node is done. */
static void node_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct sig_state *st = coil__container_of(node, struct sig_state, node);
    st->queued = false;
    st->running = true;
    for (int s = 1; s < NSIGS; s++) {
        struct sig_entry *e = &st->e[s];
        while (e->calls && e->fn) {
            e->calls--;
            e->fn(e->arg);
        }
        e->calls = 0;
        while (e->icalls) {
            e->icalls--;
            e->icall_fn(e->icall_arg);
        }
    }
    st->running = false;
    if (st->owned == 0) {
        pthread_mutex_lock(&lock);
        state_maybe_free(st);
        pthread_mutex_unlock(&lock);
    }
}

static void node_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    /* The loop closes; its close hook frees the state. */
    struct sig_state *st = coil__container_of(node, struct sig_state, node);
    st->queued = false;
    for (int s = 1; s < NSIGS; s++)
        st->e[s].calls = st->e[s].icalls = 0;
}

/* The loop closes (after its tasks were abandoned, so no wait is left):
 * remove every handler and hook, put the dispositions back, free. */
static void on_loop_close(struct coil__close_hook *hook)
{
    struct sig_state *st = coil__container_of(hook, struct sig_state, hook);
    pthread_mutex_lock(&lock);
    for (int s = 1; s < NSIGS; s++) {
        struct sig_entry *e = &st->e[s];
        assert(e->waiting == 0 && coil__list_empty(&e->waiters));
        e->fn = e->ifn = NULL;
        e->calls = e->icalls = 0;
        e->waiting = 0;
        if (e->owned)
            release_slot(st, s);
    }
    st->queued = false; /* discarded already */
    state_free(st);
    pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------------------------ */
/* Handlers and hooks                                                   */
/* ------------------------------------------------------------------ */

/* The start of adding a handler or a hook: the checks, then the lock
 * and the loop's state (made if need be). Returns 0 with the lock held,
 * or an error without it. */
static int add_begin(struct coil_loop *loop, int signum, coil_callback_fn fn,
                     struct sig_state **st)
{
    if (!loop || !fn)
        return -EINVAL;
    int err = check_signum(signum);
    if (err)
        return err;
    if (coil__loop_closed(loop))
        return -EBADF;
    pthread_mutex_lock(&lock);
    err = state_get(loop, st);
    if (err)
        pthread_mutex_unlock(&lock);
    return err;
}

int coil_loop_add_signal_handler(coil_loop_t *loop, int signum,
                                 coil_callback_fn fn, void *arg)
{
    struct sig_state *st;
    int err = add_begin(loop, signum, fn, &st);
    if (err)
        return err;
    struct sig_entry *e = &st->e[signum];
    coil_callback_fn old_fn = e->fn;
    void *old_arg = e->arg;
    e->fn = fn;
    e->arg = arg;
    err = sync_slot(st, signum);
    if (err) {
        e->fn = old_fn;
        e->arg = old_arg;
        state_maybe_free(st);
    }
    pthread_mutex_unlock(&lock);
    return err;
}

int coil_loop_remove_signal_handler(coil_loop_t *loop, int signum)
{
    if (!loop)
        return -EINVAL;
    int err = check_signum(signum);
    if (err)
        return err;
    pthread_mutex_lock(&lock);
    struct sig_state *st = state_find(loop);
    if (!st || !st->e[signum].fn) {
        pthread_mutex_unlock(&lock);
        return -ENOENT;
    }
    struct sig_entry *e = &st->e[signum];
    e->fn = NULL;
    e->arg = NULL;
    e->calls = 0;
    /* Lets the slot go, or (an internal one-shot hook left alone) puts
     * SA_RESETHAND in; sigaction does not fail on a signal it took. */
    (void)sync_slot(st, signum);
    state_maybe_free(st);
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Whether act is the default disposition. */
static bool is_default(const struct sigaction *act)
{
    return !(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_DFL;
}

int coil__signal_add_internal(struct coil_loop *loop, int signum,
                              coil_callback_fn fn, void *arg, unsigned flags)
{
    struct sig_state *st;
    int err = add_begin(loop, signum, fn, &st);
    if (err)
        return err;
    struct sig_entry *e = &st->e[signum];
    if (flags & COIL__SIGNAL_IF_DEFAULT) {
        struct slot *sl = &slots[signum];
        struct sigaction cur;
        if (e->owned)
            cur = sl->prev;
        else if (sl->owner)
            err = -EBUSY;
        else if (sigaction(signum, NULL, &cur) < 0)
            err = -errno;
        if (!err && !is_default(&cur))
            err = -EEXIST;
    }
    if (!err) {
        struct sig_entry old = *e;
        e->ifn = fn;
        e->iarg = arg;
        e->ionce = (flags & COIL__SIGNAL_ONCE) != 0;
        e->iquiet = (flags & COIL__SIGNAL_QUIET) != 0;
        err = sync_slot(st, signum);
        if (err) {
            e->ifn = old.ifn;
            e->iarg = old.iarg;
            e->ionce = old.ionce;
            e->iquiet = old.iquiet;
        }
    }
    if (err)
        state_maybe_free(st);
    pthread_mutex_unlock(&lock);
    return err;
}

int coil__signal_remove_internal(struct coil_loop *loop, int signum)
{
    if (!loop)
        return -EINVAL;
    int err = check_signum(signum);
    if (err)
        return err;
    pthread_mutex_lock(&lock);
    struct sig_state *st = state_find(loop);
    struct sig_entry *e = st ? &st->e[signum] : NULL;
    if (!e || (!e->ifn && !e->icalls)) {
        pthread_mutex_unlock(&lock);
        return -ENOENT;
    }
    bool had = e->ifn != NULL;
    e->ifn = NULL;
    e->iarg = NULL;
    e->icalls = 0;
    (void)sync_slot(st, signum);
    state_maybe_free(st);
    pthread_mutex_unlock(&lock);
    return had ? 0 : -ENOENT;
}

/* ------------------------------------------------------------------ */
/* coil_signal_wait                                                     */
/* ------------------------------------------------------------------ */

/* The wait is over (returned or abandoned): it no longer uses the
 * signal. */
static void wait_leave(struct sig_wait *w)
{
    coil__list_remove(&w->link);
    pthread_mutex_lock(&lock);
    w->st->e[w->signum].waiting--;
    (void)sync_slot(w->st, w->signum);
    state_maybe_free(w->st);
    pthread_mutex_unlock(&lock);
}

static bool sw_cancel(struct coil__wait *wait, struct coil_task *t)
{
    struct sig_wait *w = (struct sig_wait *)wait;
    if (coil__list_empty(&w->link))
        return false; /* a delivery woke it: the result wins */
    coil__list_remove(&w->link);
    coil__task_wake(t, -ECANCELED);
    return true;
}

static void sw_abandon(struct coil__wait *wait)
{
    wait_leave((struct sig_wait *)wait);
}

static void sw_describe(struct coil__wait *w, struct coil_task *t, char *buf,
                        size_t n)
{
    (void)t;
    snprintf(buf, n, "signal %d", ((struct sig_wait *)w)->signum);
}

static const struct coil__wait_ops sw_ops = {
    .cancel = sw_cancel,
    .abandon = sw_abandon,
    .describe = sw_describe,
};

int coil_signal_wait(int signum)
{
    int err = check_signum(signum);
    if (err)
        return err;
    struct coil_task *t;
    err = coil__task_begin_wait(&t);
    if (err)
        return err;
    struct sig_wait w = {{&sw_ops, true}, {NULL, NULL}, t, NULL, signum};
    coil__list_init(&w.link);
    pthread_mutex_lock(&lock);
    err = state_get(coil__task_loop(t), &w.st);
    if (!err) {
        struct sig_entry *e = &w.st->e[signum];
        e->waiting++;
        err = sync_slot(w.st, signum);
        if (err) {
            e->waiting--;
            state_maybe_free(w.st);
        } else {
            coil__list_push_back(&e->waiters, &w.link);
        }
    }
    pthread_mutex_unlock(&lock);
    if (err)
        return err;
    err = coil__task_suspend(t, &w.wait);
    wait_leave(&w);
    return err;
}

bool coil__signal_may_wake(struct coil_loop *loop, int *chan_fd)
{
    *chan_fd = -1;
    pthread_mutex_lock(&lock);
    struct sig_state *st = state_find(loop);
    bool may = false;
    if (st) {
        *chan_fd = st->rfd;
        for (int i = 1; i < NSIGS && !may; i++) {
            const struct sig_entry *e = &st->e[i];
            may = e->fn || e->waiting || e->calls || e->icalls ||
                  (e->ifn && !e->iquiet);
        }
    }
    pthread_mutex_unlock(&lock);
    return may;
}
