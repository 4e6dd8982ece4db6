/* SPDX-License-Identifier: MIT */
/*
 * channel.c - a queue between loops (coil/channel.h).
 *
 * One mutex guards the items (a growable ring) and the two lines of
 * waiters, getters and putters. A waiter lives on its task's stack, in
 * the task layer's wait protocol (task_internal.h), and may belong to any
 * loop. Whoever serves it (a put for a getter, a get for a putter, a
 * close), on whatever thread, does so under the mutex: it moves the item,
 * marks the waiter served, takes it out of line, and posts the waiter's
 * wake node through the waiter's loop's door; the node, run on that loop,
 * wakes the task. A waiter whose loop is closed (the post fails) is
 * skipped: it is taken out of line and left to the loop's abandoning of
 * its task.
 *
 * A cancel reaches a waiter on its own loop: still in line, it leaves
 * and the task gets -ECANCELED; already served, the wake node is on its
 * way and the result wins (keep_result: the cancel waits for the next
 * wait). A loop that closes discards a wake node not yet run: a getter's
 * item then goes back to the front of the channel, so nothing is lost.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "coil/channel.h"
#include "list.h"
#include "loop_internal.h"
#include "task_internal.h"
#include "threadsafe.h"

enum { WAITING, SERVED, DEAD };

struct waiter {
    struct coil__wait wait;
    struct coil__list link;    /* in a line, while WAITING */
    struct coil_channel *ch;
    struct coil_task *task;
    struct coil_loop *loop;
    struct coil__ready wake;   /* posted to loop once served */
    void *item;                /* a putter's to give, a getter's received */
    int state;                 /* under ch->lock */
    int result;                /* what the task gets: 0 or -EPIPE */
    bool getter;
};

struct coil_channel {
    atomic_size_t refs;
    pthread_mutex_t lock;
    /* under lock */
    void **ring;
    size_t head, count, cap;    /* the ring's first, length, size */
    size_t capacity;            /* the limit on puts; 0: none */
    bool closed;
    struct coil__list getters, putters;
};

/* ------------------------------------------------------------------ */
/* Items                                                                */
/* ------------------------------------------------------------------ */

static int grow(struct coil_channel *ch)
{
    if (ch->count < ch->cap)
        return 0;
    size_t cap = ch->cap ? ch->cap * 2 : 16;
    void **ring = coil__malloc(cap * sizeof(*ring));
    if (!ring)
        return -ENOMEM;
    for (size_t i = 0; i < ch->count; i++)
        ring[i] = ch->ring[(ch->head + i) % ch->cap];
    coil__free(ch->ring);
    ch->ring = ring;
    ch->head = 0;
    ch->cap = cap;
    return 0;
}

static int push_back(struct coil_channel *ch, void *item)
{
    int err = grow(ch);
    if (err)
        return err;
    ch->ring[(ch->head + ch->count++) % ch->cap] = item;
    return 0;
}

static int push_front(struct coil_channel *ch, void *item)
{
    int err = grow(ch);
    if (err)
        return err;
    ch->head = (ch->head + ch->cap - 1) % ch->cap;
    ch->ring[ch->head] = item;
    ch->count++;
    return 0;
}

static void *pop_front(struct coil_channel *ch)
{
    void *item = ch->ring[ch->head];
    ch->head = (ch->head + 1) % ch->cap;
    ch->count--;
    return item;
}

static bool full(const struct coil_channel *ch)
{
    return ch->capacity && ch->count >= ch->capacity;
}

/* ------------------------------------------------------------------ */
/* Serving waiters (under ch->lock)                                     */
/* ------------------------------------------------------------------ */

/* Mark w served with result and post its wake; false if its loop is
 * closed (w is then dead: out of line, never woken). */
static bool serve(struct waiter *w, int result)
{
    coil__list_remove(&w->link);
    w->state = SERVED;
    w->result = result;
    if (coil__threadsafe_post(w->loop, &w->wake) == 0)
        return true;
    w->state = DEAD;
    return false;
}

static struct waiter *first(struct coil__list *line)
{
    struct coil__list *l = coil__list_first(line);
    return l ? coil__container_of(l, struct waiter, link) : NULL;
}

/* Hand item to the first getter whose loop takes the wake. */
static bool give_to_getter(struct coil_channel *ch, void *item)
{
    struct waiter *w;
    while ((w = first(&ch->getters))) {
        w->item = item;
        if (serve(w, 0))
            return true;
        w->item = NULL;
    }
    return false;
}

/* Room was made: take waiting putters' items in, in line order. */
static void take_from_putters(struct coil_channel *ch)
{
    struct waiter *w;
    while (!full(ch) && (w = first(&ch->putters))) {
        if (push_back(ch, w->item) != 0)
            return; /* out of memory: they wait for the next get */
        (void)serve(w, 0); /* (a task gone with its loop: the item is
                              in anyway, and nothing is lost) */
    }
}

/* ------------------------------------------------------------------ */
/* The wait                                                             */
/* ------------------------------------------------------------------ */

static void wake_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct waiter *w = coil__container_of(node, struct waiter, wake);
    coil__task_wake(w->task, w->result);
}

/* The waiter's loop closes before the wake ran: its task never resumes.
 * An item handed to a getter goes back to the front of the channel. */
static void wake_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct waiter *w = coil__container_of(node, struct waiter, wake);
    struct coil_channel *ch = w->ch;
    pthread_mutex_lock(&ch->lock);
    w->state = DEAD;
    if (w->getter && w->result == 0 && !give_to_getter(ch, w->item) &&
        push_front(ch, w->item) != 0)
        coil__log(NULL, COIL_LOG_ERROR,
                  "channel %p: out of memory giving back an item of a "
                  "closed loop's getter: the item is lost",
                  (void *)ch);
    pthread_mutex_unlock(&ch->lock);
}

static const struct coil__ready_ops wake_ops = {wake_run, wake_discard};

static bool w_cancel(struct coil__wait *wait, struct coil_task *t)
{
    struct waiter *w = coil__container_of(wait, struct waiter, wait);
    pthread_mutex_lock(&w->ch->lock);
    bool in_line = w->state == WAITING;
    if (in_line) {
        coil__list_remove(&w->link);
        w->state = DEAD;
    }
    pthread_mutex_unlock(&w->ch->lock);
    if (in_line)
        coil__task_wake(t, -ECANCELED);
    return in_line; /* else served: the wake is on its way, and wins */
}

static void w_abandon(struct coil__wait *wait)
{
    struct waiter *w = coil__container_of(wait, struct waiter, wait);
    pthread_mutex_lock(&w->ch->lock);
    if (w->state == WAITING)
        coil__list_remove(&w->link);
    w->state = DEAD;
    pthread_mutex_unlock(&w->ch->lock);
    coil__threadsafe_release(w->loop);
    coil_channel_unref(w->ch); /* the wait's */
}

static void w_describe(struct coil__wait *wait, struct coil_task *t,
                       char *buf, size_t n)
{
    (void)t;
    struct waiter *w = coil__container_of(wait, struct waiter, wait);
    snprintf(buf, n, "channel %p %s", (void *)w->ch,
             w->getter ? "get (empty)" : "put (full)");
}

static const struct coil__wait_ops wait_ops = {
    .cancel = w_cancel,
    .abandon = w_abandon,
    .describe = w_describe,
};

/* Called with ch->lock held; returns with it released. */
static int wait_in_line(struct coil_channel *ch, struct coil_task *t,
                        struct waiter *w, struct coil__list *line)
{
    w->wait = (struct coil__wait){&wait_ops, true};
    w->ch = coil_channel_ref(ch); /* the wait's: abandon drops it */
    w->task = t;
    w->loop = coil__task_loop(t);
    w->wake.ops = &wake_ops;
    w->state = WAITING;
    coil__list_push_back(line, &w->link);
    pthread_mutex_unlock(&ch->lock);
    /* Another thread may be the one to wake it: debug mode's stuck-loop
     * check must not call the loop stuck meanwhile. */
    coil__threadsafe_hold(w->loop);
    int err = coil__task_suspend(t, &w->wait);
    coil__threadsafe_release(w->loop);
    coil_channel_unref(ch);
    return err;
}

/* ------------------------------------------------------------------ */
/* The calls                                                            */
/* ------------------------------------------------------------------ */

int coil_channel_new(size_t capacity, coil_channel_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct coil_channel *ch = coil__calloc(1, sizeof(*ch));
    if (!ch)
        return -ENOMEM;
    int err = pthread_mutex_init(&ch->lock, NULL);
    if (err) {
        coil__free(ch);
        return -err;
    }
    atomic_init(&ch->refs, 1);
    ch->capacity = capacity;
    coil__list_init(&ch->getters);
    coil__list_init(&ch->putters);
    *out = ch;
    return 0;
}

coil_channel_t *coil_channel_ref(coil_channel_t *ch)
{
    if (ch)
        atomic_fetch_add_explicit(&ch->refs, 1, memory_order_relaxed);
    return ch;
}

void coil_channel_unref(coil_channel_t *ch)
{
    if (!ch ||
        atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&ch->lock);
    coil__free(ch->ring);
    coil__free(ch);
}

/* A put without waiting, under the lock: 0, -EAGAIN (full), -EPIPE,
 * -ENOMEM. */
static int put_now(struct coil_channel *ch, void *item)
{
    if (ch->closed)
        return -EPIPE;
    if (give_to_getter(ch, item))
        return 0;
    if (full(ch))
        return -EAGAIN;
    return push_back(ch, item);
}

/* A get without waiting, under the lock: 0, -EAGAIN (empty), -EPIPE. */
static int get_now(struct coil_channel *ch, void **item_out)
{
    if (ch->count == 0)
        return ch->closed ? -EPIPE : -EAGAIN;
    *item_out = pop_front(ch);
    take_from_putters(ch);
    return 0;
}

int coil_channel_try_put(coil_channel_t *ch, void *item)
{
    if (!ch)
        return -EINVAL;
    pthread_mutex_lock(&ch->lock);
    int err = put_now(ch, item);
    pthread_mutex_unlock(&ch->lock);
    return err;
}

int coil_channel_try_get(coil_channel_t *ch, void **item_out)
{
    if (!ch || !item_out)
        return -EINVAL;
    pthread_mutex_lock(&ch->lock);
    int err = get_now(ch, item_out);
    pthread_mutex_unlock(&ch->lock);
    return err;
}

/* Under the lock: start the wait, or unlock and say why not (not in a
 * task, a cancel pending: nothing was done). */
static int begin(struct coil_channel *ch, struct coil_task **t)
{
    int err = coil__task_begin_wait(t);
    if (err)
        pthread_mutex_unlock(&ch->lock);
    return err;
}

/* A put (*item is the item) or a get (into *item) from a task, waiting
 * in line when it cannot be done now. */
static int transfer(struct coil_channel *ch, bool get, void **item)
{
    if (!coil__task_current())
        return -EPERM;
    pthread_mutex_lock(&ch->lock);
    int err = get ? get_now(ch, item) : put_now(ch, *item);
    if (err != -EAGAIN) {
        pthread_mutex_unlock(&ch->lock);
        return err;
    }
    struct coil_task *t;
    if ((err = begin(ch, &t)) != 0)
        return err;
    struct waiter w = {.item = get ? NULL : *item, .getter = get};
    err = wait_in_line(ch, t, &w, get ? &ch->getters : &ch->putters);
    if (get && err == 0)
        *item = w.item;
    return err;
}

int coil_channel_put(coil_channel_t *ch, void *item)
{
    return ch ? transfer(ch, false, &item) : -EINVAL;
}

int coil_channel_get(coil_channel_t *ch, void **item_out)
{
    return ch && item_out ? transfer(ch, true, item_out) : -EINVAL;
}

int coil_channel_close(coil_channel_t *ch)
{
    if (!ch)
        return -EINVAL;
    pthread_mutex_lock(&ch->lock);
    if (!ch->closed) {
        ch->closed = true;
        struct waiter *w;
        while ((w = first(&ch->putters)))
            serve(w, -EPIPE);
        while ((w = first(&ch->getters)))
            serve(w, -EPIPE); /* getters wait only while it is empty */
    }
    pthread_mutex_unlock(&ch->lock);
    return 0;
}

size_t coil_channel_size(coil_channel_t *ch)
{
    if (!ch)
        return 0;
    pthread_mutex_lock(&ch->lock);
    size_t n = ch->count;
    pthread_mutex_unlock(&ch->lock);
    return n;
}
