/* SPDX-License-Identifier: MIT */
/*
 * 10_debugging_testing.c - tutorial step 10: debugging and testing.
 *
 * 1. Debug mode (coil/debug.h) turned on for the running loop. Two
 *    classic mistakes are made on purpose: a task that blocks the loop,
 *    and a task whose error nobody reads. Debug mode reports each one,
 *    naming the task; the reports go to stderr, and a log hook of ours
 *    also notes them, to say on stdout that they came.
 * 2. The task dump: what every task is doing and waiting for, the first
 *    thing to look at in a program that hangs.
 * 3. A test of asynchronous code: a function that gives up after 30 s is
 *    tested with the testing kit (coil/testing.h): coil_test_run runs the
 *    test in a fresh loop on a virtual clock, where the 30 s pass at
 *    once, and fails the test if it leaves anything behind. The kit is in
 *    the testing build of the library (libcoil-testing), which this
 *    program links instead of libcoil.
 *
 * Docs: docs/tutorial/10_debugging_testing.md. Usage: 10_debugging_testing
 */
#define _POSIX_C_SOURCE 200809L
#include <coil.h>
#include <coil/testing.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- 1. Debug mode --------------------------------------------------- */

/* What our log hook saw. The hook runs on the loop's thread. */
static bool saw_slow_step, saw_unread_error;

static void log_hook(coil_log_level_t level, coil_loop_t *loop,
                     const char *message, void *arg)
{
    if (strstr(message, "slow step") && strstr(message, "'blocker'"))
        saw_slow_step = true;
    if (strstr(message, "'failing'") && strstr(message, "without anyone"))
        saw_unread_error = true;
    coil_log_default(level, loop, message, arg); /* and print it: stderr */
}

/* Mistake 1: a blocking call in a task. For its 120 ms, every other task
 * and callback of the loop waits. */
static int blocker(void *arg)
{
    (void)arg;
    struct timespec t = {0, 120 * 1000 * 1000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ; /* (debug mode's watchdog interrupts it once, to sample it) */
    return 0;
}

/* Mistake 2: a task that fails, and nobody reads its error. */
static int failing(void *arg)
{
    (void)arg;
    return -EIO;
}

/* Spawn fn as a task with a name, which reports and dumps show. */
static int spawn_named(coil_task_fn fn, void *arg, const char *name,
                       coil_task_t **out)
{
    coil_task_options_t opts = {.name = name};
    return coil_task_spawn_opts(coil_running_loop(), fn, arg, &opts, out);
}

static int debug_mode(void)
{
    printf("1. debug mode\n");
    coil_loop_t *loop = coil_running_loop();
    /* COIL_DEBUG=1 in the environment does this for every loop. */
    int err = coil_loop_set_debug(loop, true);
    if (!err)
        err = coil_loop_set_slow_duration(loop, 50 * COIL_MSEC);
    if (err)
        return err;

    coil_task_t *t;
    if ((err = spawn_named(blocker, NULL, "blocker", &t)))
        return err;
    err = coil_task_join(t);
    coil_task_unref(t);
    if (err)
        return err;
    printf("  a task blocked the loop; reported: %s\n",
           saw_slow_step ? "yes" : "NO");

    if ((err = spawn_named(failing, NULL, "failing", &t)))
        return err;
    err = coil_sleep(10 * COIL_MSEC); /* it fails meanwhile */
    coil_task_unref(t);               /* the last reference, its error unread */
    if (err)
        return err;
    printf("  a task's error went unread; reported: %s\n",
           saw_unread_error ? "yes" : "NO");
    return saw_slow_step && saw_unread_error ? 0 : -EPROTO;
}

/* ---- 2. The task dump ------------------------------------------------ */

static int sleeper(void *arg)
{
    (void)arg;
    return coil_sleep(10 * COIL_SEC);
}

static int waiter(void *arg)
{
    return coil_event_wait(arg);
}

/* Print the dump's task lines and what each task waits for. (The whole
 * dump, with times, stacks and backtraces, goes to stderr.) */
static void print_task_lines(const char *dump)
{
    for (const char *line = dump; *line;) {
        size_t len = strcspn(line, "\n");
        if (strncmp(line, "task ", 5) == 0 ||
            strncmp(line, "    waits:", 10) == 0)
            printf("  %.*s\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

static int task_dump(void)
{
    printf("2. the task dump\n");
    coil_event_t *ev;
    int err = coil_event_new(coil_running_loop(), &ev);
    if (err)
        return err;
    coil_task_t *a = NULL, *b = NULL;
    err = spawn_named(sleeper, NULL, "sleeper", &a);
    if (!err)
        err = spawn_named(waiter, ev, "waiter", &b);
    if (!err)
        err = coil_yield(); /* they start, and suspend */

    if (!err) {
        /* Into memory, to pick lines from; usually: stderr, or SIGQUIT
         * sent to a program in debug mode. */
        char *dump = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&dump, &size);
        if (!f)
            err = -errno;
        if (!err)
            err = coil_dump_tasks(f);
        if (f && fclose(f) != 0 && !err)
            err = -EIO;
        if (!err) {
            fputs(dump, stderr);
            print_task_lines(dump);
        }
        free(dump);
    }

    coil_task_t *tasks[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (!tasks[i])
            continue;
        coil_task_cancel(tasks[i]);
        coil_task_join(tasks[i]); /* -ECANCELED, as asked */
        coil_task_unref(tasks[i]);
    }
    coil_event_unref(ev);
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    int err = debug_mode();
    if (!err)
        err = task_dump();
    return err;
}

/* ---- 3. Testing ------------------------------------------------------ */

/* The code under test: wait until a service is up, checking every
 * `interval`, and give up after `limit` with -ETIMEDOUT. */
struct service {
    int checks;   /* how often it was asked */
    int up_after; /* answers "up" from this check on; 0: never */
};

static bool is_up(struct service *s) /* stands for a health check */
{
    s->checks++;
    return s->up_after && s->checks >= s->up_after;
}

static int wait_until_up(struct service *s, int64_t interval, int64_t limit)
{
    coil_timeout_t *scope;
    int err = coil_timeout_begin(limit, &scope);
    if (err)
        return err;
    while (!is_up(s) && !(err = coil_sleep(interval)))
        ;
    return coil_timeout_end(scope, err); /* -ETIMEDOUT at the limit */
}

/* The tests. Each runs as the body of a task, and returns 0 or an
 * error: a test fails by returning one (-EPROTO: a check failed). */
struct limits {
    int64_t interval, limit;
    int64_t late; /* how late the limit may be seen */
};

/* A service that never comes up: wait_until_up must give up at the
 * limit, not before, and not much after. */
static int test_gives_up(void *arg)
{
    const struct limits *l = arg;
    struct service never = {0};
    coil_loop_t *loop = coil_running_loop();
    int64_t start = coil_loop_update_time(loop);
    int err = wait_until_up(&never, l->interval, l->limit);
    int64_t took = coil_loop_update_time(loop) - start;
    if (err != -ETIMEDOUT)
        return err < 0 ? err : -EPROTO;
    return took >= l->limit && took <= l->limit + l->late ? 0 : -EPROTO;
}

/* A service up at the third check: two intervals of waiting, then 0. */
static int test_comes_up(void *arg)
{
    const struct limits *l = arg;
    struct service soon = {.up_after = 3};
    int err = wait_until_up(&soon, l->interval, l->limit);
    if (err)
        return err;
    return soon.checks == 3 ? 0 : -EPROTO;
}

/* The testing kit: 30 s of limit, on the virtual clock, which is never
 * late (by at most 1 ms with a seed, coil_test_seed). */
static struct limits limits = {COIL_SEC, 30 * COIL_SEC, COIL_MSEC};
static const char clock_name[] = "virtual";

/* coil_test_run: a fresh loop for the body, a virtual clock that jumps
 * to the next timer whenever every task waits, and a check for what the
 * body left behind (tasks, timers, memory, fds, reports). The fixture's
 * own time limit is loop time too: give it room. */
static int run_one(coil_task_fn body)
{
    coil_test_options_t opts = {.virtual_clock = true,
                                .timeout_ns = 60 * COIL_SEC};
    coil_test_result_t r;
    int err = coil_test_run(body, &limits, &opts, &r);
    if (err)
        fprintf(stderr, "  %s\n", r.message);
    return err;
}

static int run_tests(void)
{
    printf("3. testing\n");
    struct {
        const char *name;
        coil_task_fn body;
    } tests[] = {{"gives_up", test_gives_up}, {"comes_up", test_comes_up}};
    int failed = 0;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        int64_t start = coil_now();
        int err = run_one(tests[i].body);
        fprintf(stderr, "test %s: %.3f s of real time\n", tests[i].name,
                (double)(coil_now() - start) / COIL_SEC);
        printf("  test %s (%g s limit, %s clock): %s\n", tests[i].name,
               (double)limits.limit / COIL_SEC, clock_name,
               err ? coil_err_name(err) : "ok");
        failed += err != 0;
    }
    return failed ? -EPROTO : 0;
}

int main(void)
{
    /* Our hook for every report of level info and above. */
    int err = coil_set_log_hook(log_hook, NULL, COIL_LOG_INFO);
    if (!err)
        err = coil_run(main_task, NULL);
    coil_set_log_hook(NULL, NULL, COIL_LOG_INFO); /* back to the default */
    if (!err)
        err = run_tests(); /* outside coil_run: each makes its own loop */
    if (err < 0)
        fprintf(stderr, "10_debugging_testing: %s\n", coil_strerror(err));
    return err != 0;
}
