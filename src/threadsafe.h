/* SPDX-License-Identifier: MIT */
/*
 * threadsafe.h - call_soon_threadsafe and the loop's wake-up channel.
 *
 * Other threads append calls to a mutex-protected FIFO and, when they make
 * it non-empty, write to the wake-up fd (an eventfd, a pipe where there
 * is none). The loop watches that fd like any other (watch.h) and moves
 * the FIFO onto its ready queue; it also checks the `pending` flag at
 * every poll, so a call whose wake-up write failed still runs.
 */
#ifndef COIL_THREADSAFE_H
#define COIL_THREADSAFE_H

#include <pthread.h>
#include <stdatomic.h>

#include "ready.h"
#include "watch.h"

/* The loop's part owned by threadsafe.c. */
struct coil__loop_threadsafe {
    pthread_mutex_t lock;
    struct coil__ready *head; /* calls made by other threads, FIFO */
    struct coil__ready **tailp;
    atomic_bool closed;       /* set under lock at close */
    atomic_bool pending;      /* head is not empty: checked every poll */
    atomic_size_t holds;      /* coil_loop_hold, executor jobs in flight */
    atomic_bool posted;       /* another thread ever called into the loop */
    int rfd, wfd;             /* wake-up channel (eventfd: rfd == wfd) */
    struct coil__watch watch; /* of rfd */
};

/* After the watch part. Errors: -ENOMEM, -EMFILE, -ENFILE... */
int coil__threadsafe_init(struct coil_loop *loop);
/* Drop pending calls, close the wake-up fds; later calls get -EBADF. */
void coil__threadsafe_close(struct coil_loop *loop);
void coil__threadsafe_term(struct coil_loop *loop);
/*
 * From any thread, the loop's too: queue node (its ops say how to run and to
 * discard it) to run on the loop, through the same FIFO and wake-up as
 * coil_loop_call_soon_threadsafe. The node must not be posted already and must
 * stay valid until it runs or is discarded (the loop closing). Never allocates.
 * Errors: -EBADF (the loop is closed).
 */
int coil__threadsafe_post(struct coil_loop *loop, struct coil__ready *node);

/*
 * Something on another thread will call into the loop later (an executor
 * job, a thread of the program: coil_loop_hold): the stuck-loop check of
 * debug mode does not call the loop stuck while any hold stands, or once
 * any other thread has called into it.
 */
void coil__threadsafe_hold(struct coil_loop *loop);
void coil__threadsafe_release(struct coil_loop *loop);
/* The wake-up channel's fds: the write end (a signal handler may write
 * to it: debug.c's dump signal), the read end (not one of the program's
 * fds, for the stuck-loop check). */
int coil__threadsafe_write_fd(const struct coil_loop *loop);
int coil__threadsafe_read_fd(const struct coil_loop *loop);

/* Whether another thread may still wake the loop (see above). */
bool coil__threadsafe_may_wake(struct coil_loop *loop);

/* As coil__threadsafe_post, for a post a hold already covers (an
 * executor job's completion): not counted as a call from another thread
 * of the program. */
int coil__threadsafe_post_held(struct coil_loop *loop,
                               struct coil__ready *node);

/* Move the calls other threads made onto the ready queue, if any. */
void coil__threadsafe_poll(struct coil_loop *loop);

#endif /* COIL_THREADSAFE_H */
