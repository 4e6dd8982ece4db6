/* SPDX-License-Identifier: MIT */
/*
 * threadsafe.c - call_soon_threadsafe and the loop's wake-up channel
 * (threadsafe.h).
 *
 * Other threads append records to a mutex-protected FIFO. Only the call
 * that makes the FIFO non-empty writes to the wake-up fd (an eventfd, or a
 * pipe where there is none), so a burst of calls costs one syscall. The
 * loop, woken by the fd, first drains the fd and then takes the whole FIFO
 * under the lock: in that order, a call that lands after the take finds
 * the FIFO empty and writes again, so no call is ever left unseen.
 *
 * The wake-up fd is an fd like any other to the loop: an owned watch
 * (watch.h) whose reader drains it.
 *
 * Called from the thread that runs the loop (a callback or a task), it is
 * call_soon: one FIFO with the loop's own calls, as in asyncio. That
 * thread is the only one that may touch the ready queue, and the running
 * loop is per thread, so the check is a thread-local read.
 */
#include <fcntl.h>
#include <unistd.h>

#include "loop_internal.h"
#include "sys.h"
#include "threadsafe.h"

struct ts_call {
    struct coil__ready node;
    coil_callback_fn fn;
    void *arg;
};

static void ts_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct ts_call *c = coil__container_of(node, struct ts_call, node);
    coil_callback_fn fn = c->fn;
    void *arg = c->arg;
    coil__free(c);
    fn(arg);
}

static void ts_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    coil__free(coil__container_of(node, struct ts_call, node));
}

static const struct coil__ready_ops ts_ops = {ts_run, ts_discard};

static int open_channel(struct coil__loop_threadsafe *ts)
{
    return coil__wake_channel_open(&ts->rfd, &ts->wfd);
}

static void close_channel(struct coil__loop_threadsafe *ts)
{
    coil__wake_channel_close(&ts->rfd, &ts->wfd);
}

static void drain(void *arg, int result);

int coil__threadsafe_init(struct coil_loop *loop)
{
    struct coil__loop_threadsafe *ts = &loop->ts;
    ts->watch = (struct coil__watch){.bound = false};
    ts->head = NULL;
    ts->tailp = &ts->head;
    ts->rfd = ts->wfd = -1;
    atomic_init(&ts->closed, false);
    atomic_init(&ts->pending, false);
    int err = pthread_mutex_init(&ts->lock, NULL);
    if (err)
        return -err;
    err = open_channel(ts);
    if (!err)
        err = coil__watch_init(&ts->watch, loop, ts->rfd, COIL__WATCH_OWNED);
    if (!err)
        err = coil__watch_start(&ts->watch, COIL__EV_READ, drain, loop, 0);
    if (err) {
        coil__watch_close(&ts->watch);
        close_channel(ts);
        pthread_mutex_destroy(&ts->lock);
    }
    return err;
}

void coil__threadsafe_close(struct coil_loop *loop)
{
    struct coil__loop_threadsafe *ts = &loop->ts;
    pthread_mutex_lock(&ts->lock);
    atomic_store(&ts->closed, true);
    struct coil__ready *list = ts->head;
    ts->head = NULL;
    ts->tailp = &ts->head;
    pthread_mutex_unlock(&ts->lock);
    while (list) {
        struct coil__ready *next = list->next;
        list->ops->discard(loop, list);
        list = next;
    }
    coil__watch_close(&ts->watch);
    close_channel(ts);
}

void coil__threadsafe_term(struct coil_loop *loop)
{
    pthread_mutex_destroy(&loop->ts.lock);
}

static void wake(struct coil__loop_threadsafe *ts)
{
    uint64_t one = 1;
    ssize_t r;
    do {
        r = COIL__SYS(COIL__SYS_WAKE_WRITE,
                      (int)write(ts->wfd, &one, ts->wfd == ts->rfd
                                                    ? sizeof(one)
                                                    : 1));
    } while (r < 0 && errno == EINTR);
    /* EAGAIN: the channel is full, so the loop is being woken already.
     * Any other failure leaves the call queued with `pending` set, and the
     * loop takes pending calls at every poll, so it runs when the loop
     * next wakes for any reason. */
}

static int post(struct coil_loop *loop, struct coil__ready *node, bool held)
{
    struct coil__loop_threadsafe *ts = &loop->ts;
    node->next = NULL;
    pthread_mutex_lock(&ts->lock);
    if (atomic_load(&ts->closed)) {
        pthread_mutex_unlock(&ts->lock);
        return -EBADF;
    }
    bool was_empty = ts->head == NULL;
    atomic_store(&ts->pending, true);
    if (!held)
        atomic_store_explicit(&ts->posted, true, memory_order_relaxed);
    *ts->tailp = node;
    ts->tailp = &node->next;
    /* Write while holding the lock: the loop cannot close the fd under
     * us, since closing takes the lock first. */
    if (was_empty)
        wake(ts);
    pthread_mutex_unlock(&ts->lock);
    return 0;
}

int coil__threadsafe_post(struct coil_loop *loop, struct coil__ready *node)
{
    return post(loop, node, false);
}

int coil__threadsafe_post_held(struct coil_loop *loop,
                               struct coil__ready *node)
{
    return post(loop, node, true);
}

int coil_loop_call_soon_threadsafe(coil_loop_t *loop, coil_callback_fn fn,
                                   void *arg)
{
    if (!loop || !fn)
        return -EINVAL;
    if (coil__loop_running_here(loop))
        return coil_loop_call_soon(loop, fn, arg, NULL);
    if (atomic_load(&loop->ts.closed))
        return -EBADF;
    struct ts_call *c = coil__malloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->node.ops = &ts_ops;
    c->fn = fn;
    c->arg = arg;
    int err = coil__threadsafe_post(loop, &c->node);
    if (err)
        coil__free(c);
    return err;
}

/* Move the FIFO onto the ready queue. */
static void take(struct coil_loop *loop)
{
    struct coil__loop_threadsafe *ts = &loop->ts;
    pthread_mutex_lock(&ts->lock);
    struct coil__ready *list = ts->head;
    ts->head = NULL;
    ts->tailp = &ts->head;
    atomic_store(&ts->pending, false);
    pthread_mutex_unlock(&ts->lock);
    while (list) {
        struct coil__ready *next = list->next;
        coil__ready_push(loop, list);
        list = next;
    }
}

/* The wake-up fd's reader: empty the channel, then take the calls (in
 * that order: a call that lands after the take writes again). */
static void drain(void *arg, int result)
{
    struct coil_loop *loop = arg;
    struct coil__loop_threadsafe *ts = &loop->ts;
    if (result < 0)
        return; /* the channel is being closed */
    char buf[64];
    while (read(ts->rfd, buf, sizeof(buf)) > 0 && ts->rfd != ts->wfd)
        ;
    take(loop);
}

void coil__threadsafe_poll(struct coil_loop *loop)
{
    if (atomic_load_explicit(&loop->ts.pending, memory_order_relaxed))
        take(loop);
}

void coil__threadsafe_hold(struct coil_loop *loop)
{
    atomic_fetch_add(&loop->ts.holds, 1);
}

void coil__threadsafe_release(struct coil_loop *loop)
{
    atomic_fetch_sub(&loop->ts.holds, 1);
}

bool coil__threadsafe_may_wake(struct coil_loop *loop)
{
    return atomic_load(&loop->ts.holds) > 0 || atomic_load(&loop->ts.posted);
}

int coil_loop_hold(coil_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    coil__threadsafe_hold(loop);
    return 0;
}

int coil_loop_release(coil_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    size_t h = atomic_load(&loop->ts.holds);
    while (h > 0 &&
           !atomic_compare_exchange_weak(&loop->ts.holds, &h, h - 1))
        ;
    return h > 0 ? 0 : -EALREADY;
}

int coil__threadsafe_write_fd(const struct coil_loop *loop)
{
    return loop->ts.wfd;
}

int coil__threadsafe_read_fd(const struct coil_loop *loop)
{
    return loop->ts.rfd;
}
