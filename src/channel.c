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
    size_t owed;                /* getters handed an item, not yet
                                   resumed: the ring keeps room to take
                                   each back (their loop may close) */
    bool closed;
    struct coil__list getters, putters;
};

/* ------------------------------------------------------------------ */
/* Items                                                                */
/* ------------------------------------------------------------------ */

/* Room in the ring for n items. */
static int reserve(struct coil_channel *ch, size_t n)
{
    if (n <= ch->cap)
        return 0;
    size_t cap = ch->cap ? ch->cap : 16;
    while (cap < n)
        cap *= 2;
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

/* Room for the items, the owed ones, and n more. */
static int room(struct coil_channel *ch, size_t n)
{
    return reserve(ch, ch->count + ch->owed + n);
}

static int push_back(struct coil_channel *ch, void *item)
{
    int err = room(ch, 1);
    if (err)
        return err;
    ch->ring[(ch->head + ch->count++) % ch->cap] = item;
    return 0;
}

/* An owed item back, first in line: its room is kept (owed). */
static void push_front_owed(struct coil_channel *ch, void *item)
{
    ch->owed--;
    ch->head = (ch->head + ch->cap - 1) % ch->cap;
    ch->ring[ch->head] = item;
    ch->count++;
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
    /* The waiter's hold (wait_in_line) covers this post. */
    if (coil__threadsafe_post_held(w->loop, &w->wake) == 0)
        return true;
    w->state = DEAD;
    return false;
}

static struct waiter *first(struct coil__list *line)
{
    struct coil__list *l = coil__list_first(line);
    return l ? coil__container_of(l, struct waiter, link) : NULL;
}

/* Hand item to the first getter whose loop takes the wake: 1; 0 if no
 * getter waits; -ENOMEM if no room could be kept to take it back. */
static int give_to_getter(struct coil_channel *ch, void *item)
{
    struct waiter *w;
    while ((w = first(&ch->getters))) {
        if (room(ch, 1) != 0)
            return -ENOMEM;
        w->item = item;
        if (serve(w, 0)) {
            ch->owed++;
            return 1;
        }
        w->item = NULL;
    }
    return 0;
}

/* A getter handed an item will never resume (its loop closed): the item
 * goes to the next getter, or back to the front of the line. Never
 * fails: its room was kept. */
static void give_back(struct coil_channel *ch, void *item)
{
    ch->owed--;
    if (give_to_getter(ch, item) != 1) {
        ch->owed++;
        push_front_owed(ch, item);
    }
}

/* Room was made: take waiting putters' items in, in line order. */
static void take_from_putters(struct coil_channel *ch)
{
    struct waiter *w;
    while (!full(ch) && (w = first(&ch->putters))) {
        /* Putters wait only on a full ring, so it has room for them. */
        if (push_back(ch, w->item) != 0)
            return;
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
    if (w->getter && w->result == 0)
        give_back(ch, w->item);
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
    /* Served, its wake run (a discarded one made it DEAD), but the task
     * never ran again: a handed item goes back. */
    if (w->state == SERVED && w->getter && w->result == 0)
        give_back(w->ch, w->item);
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
    pthread_mutex_lock(&w->ch->lock);
    bool served = w->state != WAITING;
    pthread_mutex_unlock(&w->ch->lock);
    snprintf(buf, n, "channel %p %s %s", (void *)w->ch,
             w->getter ? "get" : "put",
             served ? "(served)" : w->getter ? "(empty)" : "(full)");
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
    /* Another thread may be the one to wake it: debug mode's stuck-loop
     * check must not call the loop stuck meanwhile (the hold also covers
     * the wake's post). */
    coil__threadsafe_hold(w->loop);
    coil__list_push_back(line, &w->link);
    pthread_mutex_unlock(&ch->lock);
    int err = coil__task_suspend(t, &w->wait);
    coil__threadsafe_release(w->loop);
    if (w->getter && err == 0) {
        pthread_mutex_lock(&ch->lock);
        ch->owed--; /* resumed with its item */
        pthread_mutex_unlock(&ch->lock);
    }
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
    int given = give_to_getter(ch, item);
    if (given)
        return given < 0 ? given : 0;
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
