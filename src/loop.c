/* SPDX-License-Identifier: MIT */
/*
 * loop.c - the loop's lifecycle and the iteration that ties the modules
 * together:
 *
 *   1. If nothing is ready, or COIL__IO_INTERVAL iterations ran since the
 *      last poll, or a stop is pending: poll for I/O (without blocking if
 *      anything is ready, else until the next timer), refresh the cached
 *      time, queue the ready watchers, and mark the timers due now.
 *   2. Run every callback that was ready when this step began, then the
 *      timers marked due (timer.c).
 *
 * Step 1 is skipped while callbacks keep coming, so a call_soon chain does
 * not pay a syscall and a clock read per hop; the interval bounds how long
 * I/O and timers can wait behind ready work (docs/architecture.md).
 */
#include <stdarg.h>
#include <stdio.h>

#include "future.h"
#include "loop.h"
#include "sys.h"
#include "task.h"

static COIL__TLS struct coil_loop *running_loop;

int coil_loop_new(coil_loop_t **loop_out)
{
    return coil_loop_new_backend(NULL, loop_out);
}

int coil_loop_new_backend(const char *backend, coil_loop_t **loop_out)
{
    if (!loop_out)
        return -EINVAL;
    *loop_out = NULL;
    const struct coil__poller_ops *pops;
    int err = coil__poller_find(backend, &pops);
    if (err)
        return err;
    /* Handles keep flags in the low 4 bits of their loop pointer: align
     * the loop to 16 whatever the allocator's alignment. */
    void *mem = coil__calloc(1, sizeof(struct coil_loop) + 15);
    if (!mem)
        return -ENOMEM;
    struct coil_loop *loop =
        (struct coil_loop *)(((uintptr_t)mem + 15) & ~(uintptr_t)15);
    loop->mem = mem;
    loop->pops = pops;
    loop->refs = 1;
    loop->state = COIL__LOOP_IDLE;
    loop->now = coil__clock_now();
    coil__ready_init(loop);
    coil__timers_init(loop);
    coil__io_init(loop);
    err = pops->open(&loop->poller);
    if (err)
        goto fail_poller;
    err = coil__threadsafe_init(loop);
    if (err)
        goto fail_threadsafe;
    err = coil__tasks_init(loop);
    if (err)
        goto fail_tasks;
    *loop_out = loop;
    return 0;

fail_tasks:
    coil__tasks_term(loop);
    coil__threadsafe_close(loop);
    coil__threadsafe_term(loop);
fail_threadsafe:
    pops->close(loop->poller);
fail_poller:
    coil__io_term(loop);
    coil__timers_term(loop);
    coil__ready_term(loop);
    coil__free(loop->mem);
    return err;
}

const char *coil_loop_backend(const coil_loop_t *loop)
{
    return loop ? loop->pops->name : NULL;
}

bool coil_loop_is_running(const coil_loop_t *loop)
{
    return loop && loop->state == COIL__LOOP_RUNNING;
}

bool coil_loop_is_closed(const coil_loop_t *loop)
{
    return loop && loop->state == COIL__LOOP_CLOSED;
}

int coil_loop_close(coil_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->state == COIL__LOOP_RUNNING)
        return -EBUSY;
    if (loop->state == COIL__LOOP_CLOSED)
        return 0;
    loop->state = COIL__LOOP_CLOSED;
    /* Keep the loop alive while discards release what they hold. */
    coil__loop_ref(loop);
    coil__threadsafe_close(loop);
    coil__ready_discard_all(loop);
    coil__timers_term(loop);
    coil__tasks_close(loop);
    coil__ready_discard_all(loop); /* anything the abandoned tasks queued */
    coil__io_drop_all(loop);
    loop->pops->close(loop->poller);
    loop->poller = NULL;
    coil__loop_unref(loop);
    return 0;
}

static void destroy(struct coil_loop *loop)
{
    coil__tasks_term(loop);
    coil__io_term(loop);
    coil__threadsafe_term(loop);
    coil__ready_term(loop);
    coil__free(loop->mem);
}

void coil__loop_destroy(struct coil_loop *loop)
{
    destroy(loop);
}

void coil_loop_free(coil_loop_t *loop)
{
    if (!loop)
        return;
    if (loop->state == COIL__LOOP_RUNNING || loop->user_freed) {
        coil__loop_report(loop, -EBUSY,
                          loop->user_freed ? "coil_loop_free called twice"
                                           : "coil_loop_free on a running "
                                             "loop ignored");
        return;
    }
    coil_loop_close(loop);
    loop->user_freed = true;
    coil__loop_unref(loop);
}

int coil_get_running_loop(coil_loop_t **loop_out)
{
    if (!loop_out)
        return -EINVAL;
    *loop_out = running_loop;
    return running_loop ? 0 : -ESRCH;
}

int64_t coil_loop_time(const coil_loop_t *loop)
{
    return loop ? loop->now : 0;
}

int64_t coil_loop_update_time(coil_loop_t *loop)
{
    if (!loop)
        return 0;
    loop->now = coil__clock_now();
    return loop->now;
}

static int poll_io(struct coil_loop *loop)
{
    int64_t timeout = 0;
    if (!loop->ready.len && !loop->stopping && loop->timers.len) {
        /* About to sleep until the next timer: measure from the real time,
         * not from a cache that a long batch of callbacks made stale. */
        loop->now = coil__clock_now();
        timeout = coil__timers_timeout(loop);
    } else if (!loop->ready.len && !loop->stopping) {
        timeout = -1;
    }
#ifdef COIL_TESTING
    if (coil__clock_autojump && timeout > 0) {
        /* Jump to the next deadline instead of sleeping until it. */
        coil__clock_advance(timeout);
        timeout = 0;
    }
#endif
    int n = loop->pops->wait(loop->poller, timeout, loop->events,
                             COIL__POLLER_BATCH);
    loop->now = coil__clock_now();
    if (n < 0)
        return n;
#ifdef COIL_TESTING
    coil__shuffle(loop->events, (size_t)n, sizeof(*loop->events));
#endif
    for (int i = 0; i < n; i++) {
        const struct coil__event *ev = &loop->events[i];
        if (ev->tag == COIL__WAKE_TAG && ev->fd == loop->ts.rfd)
            coil__threadsafe_drain(loop);
        else
            coil__io_event(loop, ev);
    }
    if (atomic_load_explicit(&loop->ts.pending, memory_order_relaxed))
        coil__threadsafe_drain(loop);
    coil__timers_mark_due(loop);
    return 0;
}

int coil__loop_run_once(struct coil_loop *loop)
{
    if (loop->ready.len == 0 || loop->ticks >= COIL__IO_INTERVAL ||
        loop->stopping) {
        loop->ticks = 0;
        int err = poll_io(loop);
        if (err)
            return err;
    } else {
        loop->ticks++;
    }
    coil__ready_run(loop);
    if (loop->timers_due)
        coil__timers_run(loop);
    return 0;
}

static int enter(struct coil_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->state == COIL__LOOP_CLOSED)
        return -EBADF;
    if (loop->state == COIL__LOOP_RUNNING || running_loop)
        return -EBUSY;
    /* Tasks may run on this thread: give it the alternate signal stack
     * the stack-overflow report runs on (once per thread; without it an
     * overflow would still abort, just without saying which task). */
    (void)coil__stack_thread_init();
    loop->state = COIL__LOOP_RUNNING;
    running_loop = loop;
    loop->now = coil__clock_now();
    loop->ticks = 0;
    return 0;
}

static void leave(struct coil_loop *loop)
{
    loop->stopping = false;
    loop->state = COIL__LOOP_IDLE;
    running_loop = NULL;
}

/* Run until stopped, or until `until` is done, or (no_tasks) until every
 * task has finished. */
static int run(struct coil_loop *loop, const coil_future_t *until,
               bool no_tasks)
{
    int err = enter(loop);
    if (err)
        return err;
    /* The loop stays alive even if a callback drops the last reference. */
    coil__loop_ref(loop);
    loop->until = until;
    loop->until_no_tasks = no_tasks;
    /* Already there: one non-blocking iteration, as asyncio's done
     * callback would stop the loop after one. */
    if (coil__loop_until_done(loop))
        loop->stopping = true;
    for (;;) {
        err = coil__loop_run_once(loop);
        if (err) {
            coil__loop_report(loop, err, "waiting for I/O failed");
            break;
        }
        if (loop->stopping || coil__loop_until_done(loop))
            break;
    }
    loop->until = NULL;
    loop->until_no_tasks = false;
    leave(loop);
    coil__loop_unref(loop);
    return err;
}

int coil__loop_run_until_no_tasks(struct coil_loop *loop)
{
    return run(loop, NULL, true);
}

int coil_loop_run_forever(coil_loop_t *loop)
{
    return run(loop, NULL, false);
}

int coil_loop_run_until_complete(coil_loop_t *loop, coil_future_t *fut)
{
    if (!loop || !fut || fut->loop != loop)
        return -EINVAL;
    /* Hold fut: a callback may drop the caller's reference meanwhile.
     * Like asyncio, at least one iteration runs even if fut is done. */
    coil_future_ref(fut);
    int err = run(loop, fut, false);
    if (!err)
        err = fut->outcome == -EINPROGRESS ? -EINTR : fut->outcome;
    coil_future_unref(fut);
    return err;
}

int coil_loop_stop(coil_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    loop->stopping = true;
    return 0;
}

int coil_loop_set_exception_handler(coil_loop_t *loop,
                                    coil_exception_handler_fn fn, void *arg)
{
    if (!loop)
        return -EINVAL;
    loop->exc_fn = fn;
    loop->exc_arg = arg;
    return 0;
}

void coil_loop_default_exception_handler(coil_loop_t *loop, int error,
                                         const char *message, void *arg)
{
    (void)loop;
    (void)arg;
    fprintf(stderr, "coil: %s: %s (%s)\n", message ? message : "error",
            coil_strerror(error), coil_err_name(error));
}

int coil_loop_call_exception_handler(coil_loop_t *loop, int error,
                                     const char *message)
{
    if (!loop || !message)
        return -EINVAL;
    if (loop->exc_fn)
        loop->exc_fn(loop, error, message, loop->exc_arg);
    else
        coil_loop_default_exception_handler(loop, error, message, NULL);
    return 0;
}

void coil__loop_report(struct coil_loop *loop, int error, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    coil_loop_call_exception_handler(loop, error, msg);
}
