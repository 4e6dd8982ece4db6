/* SPDX-License-Identifier: MIT */
/*
 * 09_threads_signals_processes.c - tutorial step 9: the world outside
 * the loop.
 *
 * 1. A plain pthread computes something and hands the result to the
 *    loop with coil_loop_call_soon_threadsafe, the one door into a loop
 *    from another thread; a task awaits it as a future.
 * 2. coil_to_thread runs a blocking call on a worker thread of the
 *    loop's executor while the loop keeps running other tasks.
 * 3. Child processes (coil/process.h): seq's output read line by line
 *    from a pipe, then a shell command given input and read to its end
 *    (communicate), each with its exit code.
 * 4. A graceful shutdown on Ctrl-C: the main task waits for SIGINT
 *    (coil_signal_wait), then cancels its workers and waits for them to
 *    clean up. To run without a terminal (in CI), the program sends
 *    itself SIGINT after a moment; in real use, press Ctrl-C.
 *
 * Docs: docs/tutorial/09_threads_signals_processes.md.
 * Usage: 09_threads_signals_processes
 */
#define _POSIX_C_SOURCE 200809L
#include <coil.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Sleep the calling thread (a plain blocking call), through EINTR. */
static void blocking_sleep(int64_t ns)
{
    struct timespec left = {(time_t)(ns / COIL_SEC), (long)(ns % COIL_SEC)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

/* ---- 1. A plain thread calls into the loop --------------------------- */

struct handoff {
    coil_loop_t *loop;
    coil_future_t *done; /* completed on the loop's thread */
    long long sum;       /* written by the thread before it hands over */
};

/* Runs on the loop's thread, as a callback: only there may the future be
 * completed (coil_future_set_result is a loop-only call). It gets the
 * future, with a reference of its own, not h: by the time it runs the
 * waiting task may have been cancelled and returned, h gone with its
 * stack. Completing a future nobody waits for any more does nothing
 * (-EALREADY, when the cancel cancelled it too). */
static void deliver(void *arg)
{
    coil_future_t *done = arg;
    coil_future_set_result(done, NULL);
    coil_future_unref(done);
}

/* A plain pthread: it knows nothing of tasks and may block at will. */
static void *summing_thread(void *arg)
{
    struct handoff *h = arg;
    for (long i = 1; i <= 1000000; i++)
        h->sum += i;
    blocking_sleep(20 * COIL_MSEC); /* more slow work */
    printf("  thread: summed 1..1000000, handing the result over\n");
    coil_loop_t *loop = h->loop; /* h is not touched after the post */
    /* The only loop call a foreign thread may make (besides the other
     * *_threadsafe ones): deliver(done) will run on the loop's thread.
     * It fails only if the loop has closed (or memory ran out): then
     * nothing will run deliver, and nobody waits any more either. */
    int err = coil_loop_call_soon_threadsafe(loop, deliver, h->done);
    if (err)
        fprintf(stderr, "thread: %s\n", coil_strerror(err));
    coil_loop_release(loop); /* our last call into the loop is made */
    return NULL;
}

static int thread_handoff(void)
{
    printf("1. a plain thread hands a result to the loop\n");
    struct handoff h = {.loop = coil_running_loop()};
    int err = coil_future_new(h.loop, &h.done);
    if (err)
        return err;
    /* Tell the loop a thread will call in later: debug mode (step 10)
     * would otherwise take a task waiting for it as stuck forever. */
    coil_loop_hold(h.loop);
    coil_future_ref(h.done); /* deliver's reference */
    pthread_t thread;
    err = -pthread_create(&thread, NULL, summing_thread, &h);
    if (err) {
        coil_loop_release(h.loop);
        coil_future_unref(h.done); /* deliver's: it will not run */
        coil_future_unref(h.done);
        return err;
    }
    err = coil_await(h.done, NULL); /* suspends this task only */
    /* h lives on this task's stack, so the thread must be finished with
     * it before we return: join it. After a result the thread has made
     * its last call and the join is short; after a cancel it waits for
     * the thread's remaining work, blocking the loop meanwhile (long work
     * belongs on the executor, next section, which needs no join). */
    pthread_join(thread, NULL);
    coil_future_unref(h.done);
    if (err)
        return err;
    printf("  main: got %lld through call_soon_threadsafe\n", h.sum);
    return h.sum == 500000500000LL ? 0 : -EPROTO;
}

/* ---- 2. A blocking call on a worker thread --------------------------- */

struct lookup {
    int64_t ns; /* how long the blocking call takes */
    int answer; /* its result */
};

/* A job: plain blocking C, run on one of the executor's threads. */
static int slow_lookup(void *arg)
{
    struct lookup *l = arg;
    blocking_sleep(l->ns); /* stands for a blocking library call */
    l->answer = 42;
    return 0;
}

/* Frees the job's argument if nobody waits for the job any more (the
 * caller was cancelled while the job ran). */
static void free_lookup(void *arg, int result)
{
    (void)result;
    free(arg);
}

static int ticks;
static bool ticking;

static int ticker(void *arg)
{
    (void)arg;
    while (ticking) {
        int err = coil_sleep(10 * COIL_MSEC);
        if (err)
            return err;
        ticks++;
    }
    return 0;
}

static int to_thread(void)
{
    printf("2. a blocking call on a worker thread\n");
    coil_task_t *t;
    ticking = true;
    int err = coil_task_spawn(coil_running_loop(), ticker, NULL, &t);
    if (err)
        return err;

    /* The argument is on the heap: if this task is cancelled while the
     * job runs, the wait returns -ECANCELED at once and the job, still
     * running, keeps the argument and passes it to free_lookup. */
    struct lookup *l = malloc(sizeof(*l));
    if (!l)
        err = -ENOMEM;
    else
        *l = (struct lookup){.ns = 100 * COIL_MSEC};
    int before = ticks;
    if (!err)
        err = coil_to_thread(slow_lookup, l, free_lookup);
    int during = ticks - before;
    if (!err) {
        printf("  main: the blocking call returned %d\n", l->answer);
        printf("  main: the loop kept running meanwhile: %s\n",
               during > 0 ? "yes" : "NO");
    }
    if (err != -ECANCELED)
        free(l); /* we have it back: the job is over */

    ticking = false;
    int terr = coil_task_join(t);
    coil_task_unref(t);
    if (err)
        return err;
    return terr ? terr : (during > 0 ? 0 : -EPROTO);
}

/* ---- 3. Child processes ---------------------------------------------- */

/* seq 1 5: its stdout is a pipe, read as a stream, line by line, as the
 * child writes it. */
static int read_lines_from_a_child(void)
{
    char seq[] = "seq", one[] = "1", five[] = "5";
    char *const argv[] = {seq, one, five, NULL};
    coil_process_options_t opts = {.stdout_mode = COIL_STDIO_PIPE};
    coil_process_t *p;
    int err = coil_process_spawn("seq", argv, &opts, &p); /* PATH search */
    if (err)
        return err;
    coil_stream_t *out = coil_process_stdout(p); /* lent, not ours */
    int lines = 0;
    long total = 0;
    for (;;) {
        char line[64];
        size_t n;
        err = coil_stream_readline(out, line, sizeof(line) - 1, &n);
        if (err || n == 0) /* an error, or the end: the child closed it */
            break;
        line[n] = '\0';
        lines++;
        total += strtol(line, NULL, 10);
    }
    int code = -1;
    int werr = coil_process_wait(p, &code); /* suspends until it exits */
    coil_process_unref(p);
    if (err || werr)
        return err ? err : werr;
    printf("  seq: %d lines adding up to %ld, exit code %d\n", lines, total,
           code);
    return lines == 5 && total == 15 && code == 0 ? 0 : -EPROTO;
}

/* A shell command with input: communicate writes the input, closes the
 * child's stdin and reads its output to the end, all at once (no
 * deadlock whatever the sizes), then waits for the exit. */
static int talk_to_a_child(void)
{
    coil_process_options_t opts = {.stdin_mode = COIL_STDIO_PIPE,
                                   .stdout_mode = COIL_STDIO_PIPE};
    coil_process_t *p;
    int err = coil_process_spawn_shell("tr a-z A-Z; exit 3", &opts, &p);
    if (err)
        return err;
    const char input[] = "hello from the parent\n";
    char *out = NULL;
    size_t out_len = 0;
    err = coil_process_communicate(p, input, strlen(input), &out, &out_len,
                                   NULL, NULL);
    int code = -1;
    if (!err)
        coil_process_returncode(p, &code); /* it has exited by now */
    coil_process_unref(p);
    if (err)
        return err;
    out[strcspn(out, "\n")] = '\0'; /* out ends with a NUL */
    printf("  sh: \"%s\", exit code %d\n", out, code);
    coil_process_free_output(out);
    return code == 3 ? 0 : -EPROTO;
}

static int child_processes(void)
{
    printf("3. child processes\n");
    int err = read_lines_from_a_child();
    return err ? err : talk_to_a_child();
}

/* ---- 4. A graceful shutdown on Ctrl-C -------------------------------- */

static int worker(void *arg)
{
    int number = (int)(intptr_t)arg;
    int served = 0;
    for (;;) {
        int err = coil_sleep(20 * COIL_MSEC); /* serve a request */
        if (err) {
            /* -ECANCELED: the shutdown. Finish up, then go. */
            printf("  worker %d: stopping%s\n", number,
                   served > 0 ? " after serving requests" : "");
            return err;
        }
        served++;
    }
}

/* Stands for the user at the terminal. */
static int press_ctrl_c(void *arg)
{
    (void)arg;
    int err = coil_sleep(100 * COIL_MSEC);
    if (err)
        return err;
    printf("  (the program sends itself SIGINT, as Ctrl-C would)\n");
    fflush(stdout);
    return kill(getpid(), SIGINT) == 0 ? 0 : -errno;
}

static int graceful_shutdown(void)
{
    printf("4. a graceful shutdown on Ctrl-C\n");
    coil_loop_t *loop = coil_running_loop();
    coil_task_t *workers[2], *user = NULL;
    int n = 0, err = 0;
    for (; n < 2 && !err; n++)
        err = coil_task_spawn(loop, worker, (void *)(intptr_t)(n + 1),
                              &workers[n]);
    if (err)
        n--; /* the failed spawn made no task */
    if (!err)
        err = coil_task_spawn(loop, press_ctrl_c, NULL, &user);
    if (!err) {
        printf("  main: serving; press Ctrl-C to stop\n");
        /* Suspends until SIGINT arrives. While it waits, SIGINT is
         * this loop's: the signal runs no code of ours in a signal
         * handler, it just wakes this task. */
        int sig = coil_signal_wait(SIGINT);
        if (sig < 0)
            err = sig;
        else
            printf("  main: got SIGINT, shutting down\n");
    }
    /* Whatever happened: cancel the workers, and wait for each to clean
     * up before returning. */
    for (int i = 0; i < n; i++)
        coil_task_cancel(workers[i]);
    for (int i = 0; i < n; i++) {
        coil_task_join(workers[i]); /* -ECANCELED: as asked */
        coil_task_unref(workers[i]);
    }
    if (user) {
        int uerr = coil_task_join(user);
        coil_task_unref(user);
        if (!err)
            err = uerr;
    }
    if (!err)
        printf("  main: shut down cleanly\n");
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    int err = thread_handoff();
    if (!err)
        err = to_thread();
    if (!err)
        err = child_processes();
    if (!err)
        err = graceful_shutdown();
    return err;
}

int main(void)
{
    int err = coil_run(main_task, NULL);
    if (err < 0)
        fprintf(stderr, "09_threads_signals_processes: %s\n",
                coil_strerror(err));
    return err != 0;
}
