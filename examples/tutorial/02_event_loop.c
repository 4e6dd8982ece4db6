/* SPDX-License-Identifier: MIT */
/*
 * 02_event_loop.c - tutorial step 2: the event loop on its own, with no
 * tasks: a loop made with coil_loop_new and driven by hand.
 *
 *   - coil_loop_call_soon: callbacks run in the next iteration, in the
 *     order they were scheduled; one scheduled by a callback waits for
 *     the iteration after;
 *   - coil_loop_call_later: timers run by deadline, whatever the order
 *     they were made in, and a cancelled one never runs;
 *   - an fd watcher: the last timer writes into a pipe, the loop sees
 *     the pipe readable when it next polls, and runs the watcher's
 *     callback;
 *   - coil_loop_run_until_complete: runs the loop until a future is done;
 *     the watcher's callback completes it.
 *
 * Docs: docs/tutorial/02_event_loop.md. Usage: 02_event_loop
 */
#include <coil.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

/* Everything the callbacks need; they get it through their void *arg. */
struct demo {
    coil_loop_t *loop;
    coil_future_t *done; /* completed by the pipe's watcher */
    int64_t start;       /* loop time when we began */
    int pipe_fds[2];     /* [0] read end (watched), [1] write end */
};

static long ms_since_start(const struct demo *d)
{
    return (long)((coil_loop_time(d->loop) - d->start) / COIL_MSEC);
}

/* ---- call_soon ------------------------------------------------------- */

static void third(void *arg)
{
    (void)arg;
    printf("  soon : third (scheduled by first: ran one iteration later)\n");
}

static void first(void *arg)
{
    struct demo *d = arg;
    printf("  soon : first\n");
    /* Scheduled from inside a callback: it goes to the back of the
     * queue and runs in the next iteration, after "second". */
    int err = coil_loop_call_soon(d->loop, third, NULL, NULL);
    if (err)
        fprintf(stderr, "call_soon: %s\n", coil_strerror(err));
}

static void second(void *arg)
{
    (void)arg;
    printf("  soon : second\n");
}

/* ---- call_later ------------------------------------------------------ */

static void timer_10(void *arg)
{
    struct demo *d = arg;
    printf("  timer: 10 ms timer (at +%ld ms)\n", ms_since_start(d));
}

static void timer_20(void *arg)
{
    struct demo *d = arg;
    printf("  timer: 20 ms timer (at +%ld ms)\n", ms_since_start(d));
}

/* The last timer writes into the pipe; the loop will see the read end
 * become readable the next time it polls, and run on_readable. */
static void timer_30(void *arg)
{
    struct demo *d = arg;
    printf("  timer: 30 ms timer writes into the pipe (at +%ld ms)\n",
           ms_since_start(d));
    if (write(d->pipe_fds[1], "ping", 4) != 4)
        perror("write");
}

static void never(void *arg)
{
    (void)arg;
    printf("  timer: this cancelled timer must never run\n");
}

/* ---- I/O ------------------------------------------------------------- */

/* Runs whenever the read end is readable (level-triggered: again and
 * again, as long as there is something to read, until removed). */
static void on_readable(void *arg)
{
    struct demo *d = arg;
    char buf[16];
    ssize_t n = read(d->pipe_fds[0], buf, sizeof(buf));
    int read_err = n < 0 ? -errno : 0;
    if (read_err == -EAGAIN || read_err == -EINTR)
        return; /* nothing after all: wait for the next readiness */
    if (n > 0)
        printf("  io   : the pipe is readable, read \"%.*s\" (at +%ld ms)\n",
               (int)n, buf, ms_since_start(d));
    /* One message is all this demo expects: stop watching, and complete
     * the future that run_until_complete waits for. */
    coil_loop_remove_reader(d->loop, d->pipe_fds[0]);
    static char answer[] = "all done";
    int err = n > 0 ? coil_future_set_result(d->done, answer)
                    : coil_future_set_error(d->done, n < 0 ? read_err : -EPIPE);
    if (err)
        fprintf(stderr, "completing the future: %s\n", coil_strerror(err));
}

/* ---- main: set everything up, then let the loop run it --------------- */

static int schedule_everything(struct demo *d)
{
    int err;
    /* Two callbacks for the next iteration, in this order. */
    if ((err = coil_loop_call_soon(d->loop, first, d, NULL)) ||
        (err = coil_loop_call_soon(d->loop, second, d, NULL)))
        return err;

    /* Three timers made out of order: they run by deadline. */
    if ((err = coil_loop_call_later(d->loop, 30 * COIL_MSEC, timer_30, d,
                                    NULL)) ||
        (err = coil_loop_call_later(d->loop, 10 * COIL_MSEC, timer_10, d,
                                    NULL)) ||
        (err = coil_loop_call_later(d->loop, 20 * COIL_MSEC, timer_20, d,
                                    NULL)))
        return err;

    /* A timer we change our mind about: ask for a handle, cancel it, and
     * drop our reference to the handle (that alone would not cancel). */
    coil_handle_t *handle;
    err = coil_loop_call_later(d->loop, 5 * COIL_MSEC, never, NULL, &handle);
    if (err)
        return err;
    coil_handle_cancel(handle);
    coil_handle_unref(handle);

    /* Watch the pipe's read end. The loop wants non-blocking fds. */
    if (fcntl(d->pipe_fds[0], F_SETFL, O_NONBLOCK) != 0)
        return -errno;
    return coil_loop_add_reader(d->loop, d->pipe_fds[0], on_readable, d);
}

int main(void)
{
    struct demo d = {.pipe_fds = {-1, -1}};
    int err = coil_loop_new(&d.loop);
    if (err) {
        fprintf(stderr, "coil_loop_new: %s\n", coil_strerror(err));
        return 1;
    }
    if (pipe(d.pipe_fds) != 0) {
        err = -errno;
        goto out;
    }
    if ((err = coil_future_new(d.loop, &d.done)))
        goto out;
    d.start = coil_loop_time(d.loop);
    if ((err = schedule_everything(&d)))
        goto out;

    /* Nothing has run yet: scheduling only queues. The loop runs it all
     * now, and returns once d.done is complete. */
    printf("scheduled: 2 callbacks, 4 timers (1 cancelled), 1 fd watcher\n");
    printf("running the loop until the future is done:\n");
    err = coil_loop_run_until_complete(d.loop, d.done);
    if (err)
        goto out;

    void *value;
    if ((err = coil_future_result(d.done, &value)))
        goto out;
    printf("run_until_complete returned: the future's result is \"%s\"\n",
           (const char *)value);

out:
    if (err)
        fprintf(stderr, "02_event_loop: %s\n", coil_strerror(err));
    /* Let go of everything: the watcher before its fd, then the future
     * and the loop (its last unref closes it). */
    if (d.pipe_fds[0] >= 0) {
        coil_loop_remove_reader(d.loop, d.pipe_fds[0]);
        close(d.pipe_fds[0]);
        close(d.pipe_fds[1]);
    }
    coil_future_unref(d.done);
    coil_loop_unref(d.loop);
    return err != 0;
}
