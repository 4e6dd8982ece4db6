/* SPDX-License-Identifier: MIT */
/*
 * hello.c - the event loop at work, no tasks yet:
 *
 *   - call_soon callbacks run in order, in the next iteration;
 *   - call_later timers fire by deadline, and a cancelled one never does;
 *   - a worker thread hands results back with call_soon_threadsafe;
 *   - a reader watches a pipe the worker writes to;
 *   - run_until_complete waits for a future that the last step resolves.
 *
 * Build and run: see README.md. Usage: hello [backend]
 */
#include <coil.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct app {
    coil_loop_t *loop;
    coil_future_t *done;
    int64_t start;
    int pipe_fds[2];
    int results;
};

static double ms(struct app *app)
{
    return (double)(coil_loop_time(app->loop) - app->start) / COIL_MSEC;
}

static void say(void *arg)
{
    const char **msg = arg;
    printf("  soon   : %s\n", *msg);
}

struct tick {
    struct app *app;
    int delay_ms;
};

static void timer_fired(void *arg)
{
    struct tick *t = arg;
    printf("  timer  : %3d ms timer fired at %6.2f ms\n", t->delay_ms,
           ms(t->app));
}

static void never(void *arg)
{
    (void)arg;
    printf("  timer  : this cancelled timer must never print\n");
}

/* Runs on the loop thread: a result posted by the worker thread. */
static void worker_result(void *arg)
{
    struct app *app = arg;
    app->results++;
    printf("  thread : result %d delivered to the loop at %6.2f ms\n",
           app->results, ms(app));
}

static void *worker(void *arg)
{
    struct app *app = arg;
    for (int i = 0; i < 3; i++) {
        usleep(15000);
        coil_loop_call_soon_threadsafe(app->loop, worker_result, app);
    }
    const char line[] = "hello through a pipe";
    if (write(app->pipe_fds[1], line, sizeof(line) - 1) < 0)
        perror("write");
    close(app->pipe_fds[1]);
    return NULL;
}

static void pipe_readable(void *arg)
{
    struct app *app = arg;
    char buf[128];
    ssize_t n = read(app->pipe_fds[0], buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = '\0';
        printf("  reader : \"%s\" at %6.2f ms\n", buf, ms(app));
        return;
    }
    /* EOF (or an error): stop watching, and finish the demo. */
    printf("  reader : end of pipe at %6.2f ms\n", ms(app));
    coil_loop_remove_reader(app->loop, app->pipe_fds[0]);
    coil_future_set_result(app->done, app);
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "-h") == 0)) {
        fprintf(stderr, "usage: %s [epoll|poll|kqueue]\n", argv[0]);
        return 2;
    }
    struct app app = {0};
    coil_loop_options_t opts = {.backend = argc == 2 ? argv[1] : NULL};
    int err = coil_loop_new_opts(&opts, &app.loop);
    if (err) {
        fprintf(stderr, "coil_loop_new: %s\n", coil_strerror(err));
        return 1;
    }
    printf("coil event loop on the %s backend\n", coil_loop_backend(app.loop));
    app.start = coil_loop_time(app.loop);

    static const char *msgs[] = {"first", "second", "third"};
    for (int i = 0; i < 3; i++)
        coil_loop_call_soon(app.loop, say, &msgs[i], NULL);

    static struct tick ticks[3];
    const int delays[] = {30, 10, 20};
    for (int i = 0; i < 3; i++) {
        ticks[i] = (struct tick){&app, delays[i]};
        coil_loop_call_later(app.loop, delays[i] * COIL_MSEC, timer_fired,
                             &ticks[i], NULL);
    }
    coil_handle_t *cancelled;
    coil_loop_call_later(app.loop, 5 * COIL_MSEC, never, NULL, &cancelled);
    coil_handle_cancel(cancelled);
    coil_handle_unref(cancelled);

    if (pipe(app.pipe_fds) != 0 || coil_future_new(app.loop, &app.done) != 0) {
        perror("setup");
        return 1;
    }
    coil_loop_add_reader(app.loop, app.pipe_fds[0], pipe_readable, &app);
    pthread_t thread;
    pthread_create(&thread, NULL, worker, &app);

    err = coil_loop_run_until_complete(app.loop, app.done);
    pthread_join(thread, NULL);
    printf("done in %.2f ms: %s, %d thread results\n", ms(&app),
           err ? coil_strerror(err) : "ok", app.results);

    close(app.pipe_fds[0]);
    coil_future_unref(app.done);
    coil_loop_unref(app.loop);
    return err ? 1 : 0;
}
