/* SPDX-License-Identifier: MIT */
/*
 * run.c - running the loop: the iteration that ties the parts together,
 * the run modes, stop, time and the per-thread running loop.
 *
 *   1. Unless the next batch may start at once (coil__loop_next_batch):
 *      end the run if it was stopped or reached its goal; else poll for
 *      I/O (without blocking if anything is ready, else until the next
 *      timer), refresh the cached time, call the ready fds' users, take
 *      the calls other threads made, and mark the timers due now.
 *   2. Run every node that was ready when this step began, then the
 *      timers marked due (timer.c).
 *
 * Step 1 is skipped while callbacks keep coming, so a call_soon chain does
 * not pay a syscall and a clock read per hop; the interval bounds how long
 * I/O and timers can wait behind ready work (docs/architecture.md).
 */
#include "loop_internal.h"
#include "sys.h"

static COIL__TLS struct coil_loop *running_loop;

coil_loop_t *coil_running_loop(void)
{
    return running_loop;
}

bool coil__loop_running_here(const struct coil_loop *loop)
{
    return running_loop == loop;
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

/* The poll proper, counted (coil_loop_metrics). Only a poll that may
 * sleep is timed: the ones that just look, every 64 iterations of a busy
 * loop, would pay two clock reads for a syscall's worth of time. */
static int poll_counted(struct coil_loop *loop, int64_t timeout)
{
    struct coil__loop_counters *c = &loop->counters;
    int64_t t0 = timeout ? coil__clock_real() : 0;
    int n = coil__watch_poll(loop, timeout);
    if (timeout)
        c->poll_ns += coil__clock_real() - t0;
    c->polls++;
    if (n > 0)
        c->events += (uint64_t)n;
    return n < 0 ? n : 0;
}

#ifdef COIL_TESTING
/*
 * Between the poll and the dispatch of its events (watch.c), with the
 * testing kit's seed: the timers due now may run first, so that the tasks
 * they wake step before those the I/O wakes (which a real loop sees
 * first depends on when it woke). The coin is tossed only when both are
 * there.
 */
void coil__run_timers_first(struct coil_loop *loop)
{
    loop->now = coil__clock_now();
    if (coil__timers_timeout(loop) != 0 || !coil__sched_flip())
        return;
    coil__timers_mark_due(loop);
    coil__timers_run(loop);
}
#endif

static int poll_io(struct coil_loop *loop)
{
    int64_t timeout = 0;
    if (!coil__ready_len(loop) && !loop->stopping) {
        timeout = coil__timers_timeout(loop);
        if (timeout > 0) {
            /* About to sleep until the next timer: measure from the real
             * time, not from a cache a long batch of callbacks made
             * stale. */
            loop->now = coil__clock_now();
            timeout = coil__timers_timeout(loop);
        }
        /* About to sleep with no timer: in debug mode, make sure
         * something can still wake the loop. */
        if (timeout < 0 && coil__unlikely(loop->debug_on) &&
            coil__dump_stuck(loop))
            return -EDEADLK;
    }
#ifdef COIL_TESTING
    if (coil__clock_autojump && timeout > 0) {
        /* Jump to the next deadline instead of sleeping until it, but
         * only if nothing is there to see first: a jump with I/O ready
         * would run the timers it reaches (a test's safety stop, a
         * virtual day later) ahead of the tasks that I/O wakes. */
        int err = poll_counted(loop, 0);
        if (err)
            return err;
        coil__threadsafe_poll(loop);
        if (!coil__ready_len(loop)) {
            /* With the kit's seed, up to a millisecond late, as a real
             * loop wakes. */
            int64_t by = timeout + coil__sched_late(COIL_MSEC);
            COIL__TRACE(COIL__TRACE_JUMP, (uint64_t)by);
            coil__clock_advance(by);
        }
        loop->now = coil__clock_now();
        coil__timers_mark_due(loop);
        return 0;
    }
#endif
    int err = poll_counted(loop, timeout);
    loop->now = coil__clock_now();
    if (err)
        return err;
    coil__threadsafe_poll(loop);
    if (coil__unlikely(loop->debug_on) &&
        atomic_exchange(&loop->debug.dump_asked, false))
        coil__dump_signalled(loop);
    coil__timers_mark_due(loop);
    return 0;
}

/*
 * Iterate until the run ends: the loop is stopped, or its goal is
 * reached, which the predicate coil__loop_next_batch already looks at
 * before every iteration; only when it says "poll first" does the run
 * check whether to end (not after the first iteration: a run always makes
 * one). Debug mode runs each batch timed (debug.c), the flag tested once
 * per batch. Returns 0, or the poller's error, or -EDEADLK (debug mode:
 * nothing can wake the loop).
 */
static int iterate(struct coil_loop *loop)
{
    for (bool first = true;; first = false) {
        if (!coil__loop_next_batch(loop)) {
            if (!first && (loop->stopping || coil__loop_until_reached(loop)))
                return 0;
            /* The batches run since the last poll, and this one. */
            loop->counters.iterations += loop->ticks + 1;
            loop->ticks = 0;
            int err = poll_io(loop);
            if (err)
                return err;
            coil__ready_begin_batch(loop);
        }
        if (coil__unlikely(loop->debug_on))
            coil__debug_run_batch(loop);
        else
            coil__ready_run_batch(loop);
        if (coil__timers_due(loop))
            coil__timers_run(loop);
    }
}

static int enter(struct coil_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    if (loop->state == COIL__LOOP_RUNNING || running_loop)
        return -EBUSY;
    /* Tasks may run on this thread: give it the alternate signal stack
     * the stack-overflow report runs on (once per thread; without it an
     * overflow would still abort, just without saying which task). */
    (void)coil__stack_thread_init();
    loop->state = COIL__LOOP_RUNNING;
    running_loop = loop;
    coil__tasks_enter(loop);
    loop->now = coil__clock_now();
    loop->ticks = 0;
    loop->counters.run_began = coil__clock_real();
    loop->counters.poll_in_run = loop->counters.poll_ns;
    coil__debug_enter(loop);
    return 0;
}

static void leave(struct coil_loop *loop)
{
    struct coil__loop_counters *c = &loop->counters;
    c->run_ns += coil__clock_real() - c->run_began -
                 (c->poll_ns - c->poll_in_run);
    c->iterations += loop->ticks; /* those since the last poll */
    loop->ticks = 0;
    coil__debug_leave(loop);
    loop->stopping = false;
    loop->state = COIL__LOOP_IDLE;
    running_loop = NULL;
}

int coil__loop_run_until(struct coil_loop *loop,
                         const struct coil__until *until)
{
    int err = enter(loop);
    if (err)
        return err;
    /* The loop stays alive even if a callback drops the last reference. */
    coil__loop_ref(loop);
    if (until)
        loop->until = *until;
    /* Already there: one non-blocking iteration, as asyncio's done
     * callback would stop the loop after one. */
    if (coil__loop_until_reached(loop))
        loop->stopping = true;
    err = iterate(loop);
    if (err && err != -EDEADLK)
        coil__loop_report(loop, err, "waiting for I/O failed");
    loop->until = (struct coil__until){0};
    leave(loop);
    coil__loop_unref(loop);
    return err;
}

int coil_loop_run_forever(coil_loop_t *loop)
{
    return coil__loop_run_until(loop, NULL);
}

int coil_loop_stop(coil_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    loop->stopping = true;
    return 0;
}
