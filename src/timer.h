/* SPDX-License-Identifier: MIT */
/*
 * timer.h - call_later / call_at: timer handles (ready.h) on the 4-ary
 * heap (heap.h), ordered by (deadline, scheduling order), with
 * same-deadline rings (timer.c explains them).
 *
 * A poll marks the time it read (coil__timers_mark_due); after that
 * iteration's batch the timers due then run straight from the heap
 * (coil__timers_run). Only timers scheduled before the poll run then.
 */
#ifndef COIL_TIMER_H
#define COIL_TIMER_H

#include "ready.h"

/* The loop's part owned by timer.c. */
struct coil__loop_timers {
    struct coil__heap heap;          /* ring leaders by deadline */
    struct coil_handle *last_leader; /* leader of the newest ring */
    size_t count;                    /* pending timers, rings included */
    bool due;                        /* a poll marked timers due */
    int64_t due_now;                 /* run timers due at this time ... */
    uint32_t due_seq;                /* ... scheduled before this seq */
};

void coil__timers_init(struct coil_loop *loop);
/* Drop every pending timer (they never run). */
void coil__timers_term(struct coil_loop *loop);
/* Note the time of a poll: the timers due then run after the batch. */
void coil__timers_mark_due(struct coil_loop *loop);
/* Whether a poll marked timers that have not run yet: coil__timers_due,
 * inline in loop_internal.h. */
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

#endif /* COIL_TIMER_H */
