/* SPDX-License-Identifier: MIT */
/*
 * 04_blocking.c - tutorial step 4: concurrency is not parallelism.
 *
 * A ticker task ticks every 50 ms. Then the main task calls a blocking
 * function (slow_lookup: 300 ms in nanosleep, standing for any call that
 * holds the thread: a synchronous DNS lookup, a read from a slow disk, a
 * long computation). The loop has one thread, so while that call runs
 * nothing else does: the ticker misses every tick. Debug mode, turned on
 * for this loop, notices the stall and reports it on stderr, naming the
 * function that blocked.
 *
 * Then the same call goes to a worker thread with coil_to_thread: the
 * main task waits for it without holding the thread, and the ticker
 * keeps ticking.
 *
 * Standard output is the same on every run; the debug report on stderr
 * varies (addresses, durations).
 *
 * Docs: docs/tutorial/04_blocking.md. Usage: 04_blocking
 */
#include <coil.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- The blocking call ----------------------------------------------- */

/* Plain blocking C, no coil calls: 300 ms in nanosleep, then an answer.
 * A signal may cut nanosleep short (EINTR): debug mode's watchdog sends
 * one to take its sample, so we sleep what is left.
 * noinline: an optimising compiler would fold this small function into
 * its caller, and the stall report would name the caller instead. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int slow_lookup(void *arg)
{
    (void)arg;
    struct timespec left = {.tv_sec = 0, .tv_nsec = 300 * 1000 * 1000};
    while (nanosleep(&left, &left) != 0)
        if (errno != EINTR)
            return -errno;
    return 42;
}

/* ---- A task that needs the loop regularly ---------------------------- */

static int ticks;          /* touched by loop tasks only: no lock needed */
static bool ticker_stop;

static int ticker(void *arg)
{
    (void)arg;
    while (!ticker_stop) {
        int err = coil_sleep(50 * COIL_MSEC);
        if (err)
            return err;
        ticks++;
    }
    return 0;
}

/* ---- Counting debug mode's stall reports ------------------------------ */

/* Reports reach a process-wide log hook. This one counts the slow-step
 * reports, then passes every report on to the default hook, which
 * prints it on stderr. */
static atomic_int stall_reports;

static void log_hook(coil_log_level_t level, coil_loop_t *loop,
                     const char *message, void *arg)
{
    (void)arg;
    if (strncmp(message, "slow step:", 10) == 0)
        stall_reports++;
    coil_log_default(level, loop, message, NULL);
}

/* ---- The main task ----------------------------------------------------- */

static int main_task(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();

    /* Debug mode for this loop (COIL_DEBUG=1 in the environment would
     * turn it on for every loop): steps longer than 100 ms get reported. */
    int err = coil_loop_set_debug(loop, true);
    if (err)
        return err;

    coil_task_t *t;
    if ((err = coil_task_spawn(loop, ticker, NULL, &t)))
        return err;
    err = coil_sleep(120 * COIL_MSEC); /* let it tick a little */

    if (!err) {
        printf("calling slow_lookup on the loop's thread:\n");
        int before = ticks, reports = stall_reports;
        int answer = slow_lookup(NULL); /* blocks the loop: nothing runs */
        int missed = ticks - before;
        /* The loop measures a step when it gets the thread back: that is
         * when this task next waits. Give it back now, so the report is
         * made before we look at the count. */
        err = answer < 0 ? answer : coil_yield();
        if (!err) {
            printf("  answer %d, ticks meanwhile: %d\n", answer, missed);
            printf("  debug mode reported the stall on stderr: %s\n",
                   stall_reports > reports ? "yes" : "no");
        }
    }

    if (!err) {
        printf("calling slow_lookup on a worker thread (coil_to_thread):\n");
        int before = ticks;
        /* Suspends this task only; NULL dispose: the argument needs no
         * freeing if we were cancelled before the job ended. */
        int answer = coil_to_thread(slow_lookup, NULL, NULL);
        if (answer < 0) {
            err = answer;
        } else {
            int during = ticks - before;
            printf("  answer %d, the ticker kept ticking: %s (%d ticks)\n",
                   answer, during > 0 ? "yes" : "no", during);
        }
    }

    /* Stop the ticker and wait for it, whatever happened above. */
    ticker_stop = true;
    int terr = coil_task_join(t);
    coil_task_unref(t);
    return err ? err : terr;
}

int main(void)
{
    int err = coil_set_log_hook(log_hook, NULL, COIL_LOG_INFO);
    if (!err)
        err = coil_run(main_task, NULL);
    coil_set_log_hook(NULL, NULL, COIL_LOG_INFO); /* the default again */
    if (err < 0)
        fprintf(stderr, "04_blocking: %s\n", coil_strerror(err));
    return err != 0;
}
