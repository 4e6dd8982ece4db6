/* SPDX-License-Identifier: MIT */
/*
 * test_debug.c - coil/debug.h: debug mode (on and off through the API,
 * its default from COIL_DEBUG), the log hook (levels, the minimum level,
 * names, the default hook's line), every report of debug mode (a slow
 * callback and a slow task step naming the function that blocked, with
 * and without the watchdog's sample; a failed future or task dropped
 * unread; a swallowed cancellation; a loop closed with work pending; a
 * stack used to within 10%; a stuck loop, and the holds, timers and fds
 * that keep it from being called stuck), the per-task CPU time and stack
 * depth, the loop's metrics, await cycles (-EDEADLK, in any mode: two
 * tasks, a chain of three, through a group, gather and wait, oneself),
 * the task dump (a known tree of tasks, from a task, through the dump
 * signal, its errors), the quarantine, the misuse that aborts (in forked
 * children: one unref too many, a use after the last unref, loop-only
 * calls from another thread), and the NULL checks of every call.
 *
 * COIL_DEBUG is read once per process (src/log.c, coil__debug_env, cached
 * at the first loop made, by test_init already), so only the API path is
 * switched here; the environment's value is checked to be each new loop's
 * default.
 *
 * Reports are captured with a log hook (the default one goes back in each
 * teardown). Callbacks and tasks only record; assertions run on the main
 * stack. Functions the reports and dumps must name are non-static and not
 * inlined (the executable exports its symbols for dladdr). Slow steps
 * block for BLOCK_MS against a threshold of SLOW_MS, in a loop of short
 * nanosleeps (so that the watchdog's SIGURG gets in, TSan too).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* A function a report or a dump must name: an exported symbol of its own
 * (the build hides symbols by default; coil's own are hidden too, in this
 * static test build), not inlined, not cloned (a clone has a local name
 * dladdr does not see). */
#if defined(__clang__)
#define NAMED __attribute__((noinline, used, visibility("default")))
#else
#define NAMED __attribute__((noipa, used, visibility("default")))
#endif

#define SLOW_MS 20
#define SLOW_NS (SLOW_MS * COIL_MSEC)
#define BLOCK_MS 300

/* Keeps calls from being tail calls (their caller's frame stays). */
static volatile int sink;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * COIL_SEC + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static bool under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return RUNNING_ON_VALGRIND || (pre && strstr(pre, "vgpreload"));
}

/* ------------------------------------------------------------------ */
/* The captured log                                                     */
/* ------------------------------------------------------------------ */

#define LOG_MAX 400
#define LOG_LINE 1100

struct log_line {
    coil_log_level_t level;
    coil_loop_t *loop;
    void *arg;
    char text[LOG_LINE];
};

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct log_line log_lines[LOG_MAX];
static int log_n, log_lost;

static void log_capture(coil_log_level_t level, coil_loop_t *loop,
                        const char *message, void *arg)
{
    if (level >= COIL_LOG_FATAL) /* the process aborts next: say why */
        coil_log_default(level, loop, message, NULL);
    pthread_mutex_lock(&log_mu);
    if (log_n < LOG_MAX) {
        struct log_line *l = &log_lines[log_n++];
        l->level = level;
        l->loop = loop;
        l->arg = arg;
        snprintf(l->text, sizeof(l->text), "%s", message ? message : "(null)");
    } else {
        log_lost++;
    }
    pthread_mutex_unlock(&log_mu);
}

static void log_reset(void)
{
    pthread_mutex_lock(&log_mu);
    log_n = log_lost = 0;
    pthread_mutex_unlock(&log_mu);
}

static void log_install(coil_log_level_t min)
{
    assert_int_equal(coil_set_log_hook(log_capture, log_lines, min), 0);
}

static void log_print(void)
{
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "captured log (%d lines, %d lost):\n", log_n, log_lost);
    for (int i = 0; i < log_n; i++)
        fprintf(stderr, "  [%s] %s\n",
                coil_log_level_name(log_lines[i].level)
                    ? coil_log_level_name(log_lines[i].level)
                    : "?",
                log_lines[i].text);
    pthread_mutex_unlock(&log_mu);
}

/* The first line at or after from holding a, and b if not NULL; -1. */
static int log_find_from(int from, const char *a, const char *b)
{
    int found = -1;
    pthread_mutex_lock(&log_mu);
    for (int i = from < 0 ? 0 : from; i < log_n && found < 0; i++)
        if (strstr(log_lines[i].text, a) &&
            (!b || strstr(log_lines[i].text, b)))
            found = i;
    pthread_mutex_unlock(&log_mu);
    return found;
}

static int log_find(const char *a, const char *b)
{
    return log_find_from(0, a, b);
}

static int log_count(const char *a)
{
    int n = 0;
    pthread_mutex_lock(&log_mu);
    for (int i = 0; i < log_n; i++)
        if (strstr(log_lines[i].text, a))
            n++;
    pthread_mutex_unlock(&log_mu);
    return n;
}

/* The line holding a (and b), failing the test (with the log) if none. */
static int log_expect(const char *a, const char *b)
{
    int i = log_find(a, b);
    if (i < 0) {
        fprintf(stderr, "no report holding \"%s\"%s%s%s\n", a,
                b ? " and \"" : "", b ? b : "", b ? "\"" : "");
        log_print();
    }
    assert_true(i >= 0);
    return i;
}

static void log_expect_none(const char *a)
{
    int i = log_find(a, NULL);
    if (i >= 0) {
        fprintf(stderr, "unexpected report holding \"%s\"\n", a);
        log_print();
    }
    assert_int_equal(i, -1);
}

/* ------------------------------------------------------------------ */
/* Fixtures                                                             */
/* ------------------------------------------------------------------ */

static int setup_with(void **state, bool debug, bool fake)
{
    log_reset();
    int r = fake ? test_setup_fake(state) : test_setup(state);
    if (r)
        return r;
    if (coil_set_log_hook(log_capture, log_lines, COIL_LOG_DEBUG) != 0)
        return -1;
    return coil_loop_set_debug(test_loop(state), debug) == 0 ? 0 : -1;
}

static int setup_debug(void **state)
{
    return setup_with(state, true, false);
}

static int setup_plain(void **state)
{
    return setup_with(state, false, false);
}

static int setup_debug_fake(void **state)
{
    return setup_with(state, true, true);
}

static int setup_noloop_hooked(void **state)
{
    log_reset();
    if (test_setup_noloop(state))
        return -1;
    return coil_set_log_hook(log_capture, log_lines, COIL_LOG_DEBUG) == 0 ? 0
                                                                          : -1;
}

/* The loop goes first (what its close reports is still captured), then
 * the default hook comes back, then the leak gate. */
static int teardown_hooked(void **state)
{
    struct fixture *f = *state;
    coil_loop_unref(f->loop);
    f->loop = NULL;
    coil_set_log_hook(NULL, NULL, COIL_LOG_INFO);
    if (getenv("COIL_TEST_SHOW_LOG")) /* see what the reports say */
        log_print();
    return test_teardown(state);
}

static int teardown_noloop_hooked(void **state)
{
    coil_set_log_hook(NULL, NULL, COIL_LOG_INFO);
    if (getenv("COIL_TEST_SHOW_LOG"))
        log_print();
    return test_teardown_noloop(state);
}

#define T_DEBUG(fn)                                                            \
    cmocka_unit_test_setup_teardown(fn, setup_debug, teardown_hooked)
#define T_PLAIN(fn)                                                            \
    cmocka_unit_test_setup_teardown(fn, setup_plain, teardown_hooked)
#define T_DEBUG_FAKE(fn)                                                       \
    cmocka_unit_test_setup_teardown(fn, setup_debug_fake, teardown_hooked)
#define T_NOLOOP(fn)                                                           \
    cmocka_unit_test_setup_teardown(fn, setup_noloop_hooked,                   \
                                    teardown_noloop_hooked)

/* A loop of the test's own, in debug mode or not. */
static coil_loop_t *new_loop(bool debug)
{
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    assert_int_equal(coil_loop_set_debug(loop, debug), 0);
    return loop;
}

static coil_task_t *spawn_named(coil_loop_t *loop, coil_task_fn fn, void *arg,
                                const char *name)
{
    coil_task_options_t o = {.name = name};
    coil_task_t *t = NULL;
    assert_int_equal(coil_task_spawn_opts(loop, fn, arg, &o, &t), 0);
    return t;
}

/* Capture what goes to fd 2 meanwhile (a pipe; read back by
 * stderr_end). */
struct capture {
    int saved;
    int p[2];
};

static void stderr_begin(struct capture *c)
{
    fflush(stderr);
    assert_int_equal(pipe(c->p), 0);
    assert_int_equal(fcntl(c->p[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(c->p[1], F_SETFL, O_NONBLOCK), 0);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(c->p[1], 2), 2);
}

/* Restore fd 2; what was written goes to buf (NUL-terminated). */
static size_t stderr_end(struct capture *c, char *buf, size_t n)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    close(c->p[1]);
    size_t len = 0;
    ssize_t r;
    while (len + 1 < n && (r = read(c->p[0], buf + len, n - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = '\0';
    close(c->p[0]);
    return len;
}

/* ------------------------------------------------------------------ */
/* Debug mode on and off                                                */
/* ------------------------------------------------------------------ */

static void test_mode_on_off(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_false(coil_loop_debug(loop)); /* setup_plain */
    assert_int_equal(coil_loop_set_debug(loop, true), 0);
    assert_true(coil_loop_debug(loop));
    assert_int_equal(coil_loop_set_debug(loop, true), 0); /* again: same */
    assert_true(coil_loop_debug(loop));
    assert_int_equal(coil_loop_set_debug(loop, false), 0);
    assert_false(coil_loop_debug(loop));
    assert_false(coil_loop_debug(NULL));
    assert_int_equal(coil_loop_set_debug(NULL, true), -EINVAL);

    /* The slow threshold: 100 ms unless set; > 0 only. */
    assert_int_equal(coil_loop_slow_duration(loop), 100 * COIL_MSEC);
    assert_int_equal(coil_loop_set_slow_duration(loop, 0), -EINVAL);
    assert_int_equal(coil_loop_set_slow_duration(loop, -1), -EINVAL);
    assert_int_equal(coil_loop_set_slow_duration(loop, INT64_MIN), -EINVAL);
    assert_int_equal(coil_loop_slow_duration(loop), 100 * COIL_MSEC);
    assert_int_equal(coil_loop_set_slow_duration(loop, 1), 0);
    assert_int_equal(coil_loop_slow_duration(loop), 1);
    assert_int_equal(coil_loop_set_slow_duration(loop, 5 * COIL_SEC), 0);
    assert_int_equal(coil_loop_slow_duration(loop), 5 * COIL_SEC);
    assert_int_equal(coil_loop_set_slow_duration(NULL, 1), -EINVAL);
    assert_int_equal(coil_loop_slow_duration(NULL), 0);

    /* A closed loop refuses it, and keeps answering the query. */
    coil_loop_t *l2 = new_loop(true);
    assert_int_equal(coil_loop_close(l2), 0);
    assert_int_equal(coil_loop_set_debug(l2, false), -EBADF);
    assert_true(coil_loop_debug(l2));
    coil_loop_unref(l2);
}

/* COIL_DEBUG is read once per process: each new loop starts with its
 * value (only the API switches it here). */
static void test_mode_default_from_env(void **state)
{
    (void)state;
    const char *e = getenv("COIL_DEBUG");
    bool want = e && *e && strcmp(e, "0") != 0;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    assert_int_equal(coil_loop_debug(loop), want);
    coil_loop_unref(loop);
}

/* ------------------------------------------------------------------ */
/* The log hook                                                         */
/* ------------------------------------------------------------------ */

static void test_level_names(void **state)
{
    (void)state;
    assert_string_equal(coil_log_level_name(COIL_LOG_DEBUG), "debug");
    assert_string_equal(coil_log_level_name(COIL_LOG_INFO), "info");
    assert_string_equal(coil_log_level_name(COIL_LOG_WARNING), "warning");
    assert_string_equal(coil_log_level_name(COIL_LOG_ERROR), "error");
    assert_string_equal(coil_log_level_name(COIL_LOG_FATAL), "fatal");
    assert_null(coil_log_level_name((coil_log_level_t)0));
    assert_null(coil_log_level_name((coil_log_level_t)15));
    assert_null(coil_log_level_name((coil_log_level_t)60));
    assert_null(coil_log_level_name((coil_log_level_t)-1));
}

/* Close a debug loop with one callback pending: an INFO report. */
static void close_with_callback(void)
{
    coil_loop_t *loop = new_loop(true);
    assert_int_equal(coil_loop_call_soon(loop, test_stop_cb, loop, NULL), 0);
    coil_loop_unref(loop);
}

/* Close a debug loop with one task never started: a WARNING. */
static int idle_body(void *arg)
{
    (void)arg;
    return 0;
}

static void close_with_task(void)
{
    coil_loop_t *loop = new_loop(true);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    assert_int_equal(coil_task_spawn(loop, idle_body, NULL, NULL), 0);
    coil_loop_unref(loop);
}

static void test_hook_levels(void **state)
{
    (void)state;
    /* A bad level: refused, and the hook in place stays. */
    assert_int_equal(coil_set_log_hook(log_capture, NULL, (coil_log_level_t)0),
                     -EINVAL);
    assert_int_equal(coil_set_log_hook(log_capture, NULL, (coil_log_level_t)25),
                     -EINVAL);
    assert_int_equal(coil_set_log_hook(NULL, NULL, (coil_log_level_t)100),
                     -EINVAL);
    close_with_callback();
    int i = log_expect("loop closed with 0 unfinished tasks, 1 ready "
                       "callback and 0 timers pending",
                       NULL);
    assert_int_equal(log_lines[i].level, COIL_LOG_INFO);
    assert_ptr_equal(log_lines[i].arg, log_lines); /* setup's arg */
    assert_non_null(log_lines[i].loop);

    /* The minimum drops what is below it. */
    log_reset();
    log_install(COIL_LOG_WARNING);
    close_with_callback(); /* INFO: dropped */
    assert_int_equal(log_n, 0);
    close_with_task(); /* WARNING, then the dump at INFO: dropped */
    i = log_expect("loop closed with 1 unfinished task,", NULL);
    assert_int_equal(log_lines[i].level, COIL_LOG_WARNING);
    assert_int_equal(log_n, 1);

    log_reset();
    log_install(COIL_LOG_ERROR);
    close_with_task();
    close_with_callback();
    assert_int_equal(log_n, 0);

    /* At INFO, the WARNING and its dump, line by line. */
    log_reset();
    log_install(COIL_LOG_INFO);
    close_with_task();
    i = log_expect("loop closed with 1 unfinished task,", NULL);
    assert_int_equal(log_lines[i].level, COIL_LOG_WARNING);
    int d = log_expect("  coil task dump: loop ", NULL);
    assert_true(d > i);
    assert_int_equal(log_lines[d].level, COIL_LOG_INFO);
    int t = log_expect("  task 1 'Task-1' pending", NULL);
    assert_int_equal(log_lines[t].level, COIL_LOG_INFO);
    log_expect("  end of task dump", NULL);
}

static void test_default_hook_line(void **state)
{
    (void)state;
    char buf[4096];
    struct capture c;
    stderr_begin(&c);
    coil_log_default(COIL_LOG_WARNING, NULL, "hello there", NULL);
    coil_log_default(COIL_LOG_ERROR, NULL, NULL, NULL);
    coil_log_default((coil_log_level_t)33, NULL, "odd level", NULL);
    stderr_end(&c, buf, sizeof(buf));
    assert_string_equal(buf, "coil[warning]: hello there\n"
                             "coil[error]: \n"
                             "coil[?]: odd level\n");

    /* A very long message: cut, still one line ending in a newline. */
    static char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    stderr_begin(&c);
    coil_log_default(COIL_LOG_INFO, NULL, big, NULL);
    size_t n = stderr_end(&c, buf, sizeof(buf));
    assert_true(n > 100 && n < 1200);
    assert_memory_equal(buf, "coil[info]: xxx", 15);
    assert_int_equal(buf[n - 1], '\n');
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);

    /* With no hook installed, reports go to the default. */
    coil_set_log_hook(NULL, NULL, COIL_LOG_INFO);
    stderr_begin(&c);
    close_with_callback();
    stderr_end(&c, buf, sizeof(buf));
    assert_non_null(strstr(buf, "coil[info]: loop closed with 0 unfinished "
                                "tasks, 1 ready callback"));
    log_install(COIL_LOG_DEBUG);
}

/* ------------------------------------------------------------------ */
/* Slow callbacks and steps                                             */
/* ------------------------------------------------------------------ */

/* Blocks the loop for ms, in short sleeps (each one a chance for the
 * watchdog's SIGURG to land). */
#define BLOCK_FOR(ms)                                                          \
    do {                                                                       \
        int64_t end_ = mono_ns() + (int64_t)(ms)*COIL_MSEC;                    \
        while (mono_ns() < end_) {                                             \
            struct timespec ts_ = {0, 1000000L};                               \
            nanosleep(&ts_, NULL);                                             \
        }                                                                      \
    } while (0)

void debug_test_block_in_callback(int ms);
void debug_test_block_in_task(int ms);
void debug_test_slow_callback(void *arg);
int debug_test_slow_body(void *arg);

NAMED void debug_test_block_in_callback(int ms)
{
    BLOCK_FOR(ms);
    sink++;
}

NAMED void debug_test_block_in_task(int ms)
{
    BLOCK_FOR(ms);
    sink++;
}

struct slow {
    int ms;
    int ran;
    coil_loop_t *loop;
    int set_debug; /* what coil_loop_set_debug returned in enable_cb */
};

NAMED void debug_test_slow_callback(void *arg)
{
    struct slow *s = arg;
    debug_test_block_in_callback(s->ms);
    s->ran++;
}

static void run_slow_callback(coil_loop_t *loop, struct slow *s)
{
    assert_int_equal(
        coil_loop_call_soon(loop, debug_test_slow_callback, s, NULL), 0);
    assert_int_equal(coil_loop_call_soon(loop, test_stop_cb, loop, NULL), 0);
    test_run(loop);
    assert_int_equal(s->ran, 1);
}

static void test_slow_callback(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    struct slow s = {BLOCK_MS, 0, loop, 0};
    run_slow_callback(loop, &s);
    int i = log_expect("slow step: callback debug_test_slow_callback+0x",
                       "blocked in: ");
    struct log_line *l = &log_lines[i];
    assert_int_equal(l->level, COIL_LOG_WARNING);
    assert_ptr_equal(l->loop, loop);
    if (!strstr(l->text, "debug_test_block_in_callback"))
        log_print();
    assert_non_null(strstr(l->text, "debug_test_block_in_callback"));
    assert_non_null(strstr(l->text, "(threshold 20.0 ms)"));
    double ms = 0;
    const char *ran = strstr(l->text, " ran ");
    assert_non_null(ran);
    assert_int_equal(sscanf(ran, " ran %lf ms", &ms), 1);
    assert_true(ms >= BLOCK_MS);

    /* The longest step names the callback. */
    coil_loop_metrics_t m;
    assert_int_equal(coil_loop_metrics(loop, &m), 0);
    assert_true(m.longest_step_ns >= BLOCK_MS * COIL_MSEC);
    assert_non_null(
        strstr(m.longest_step_what, "callback debug_test_slow_callback"));
}

/* A program with its own SIGURG handler: no sample, and the report says
 * why. */
static void urg_handler(int sig)
{
    (void)sig;
}

static void test_slow_callback_no_sample(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = urg_handler;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGURG, &sa, &old), 0);
    struct slow s = {BLOCK_MS, 0, loop, 0};
    run_slow_callback(loop, &s);
    struct sigaction now;
    assert_int_equal(sigaction(SIGURG, NULL, &now), 0);
    sigaction(SIGURG, &old, NULL);
    assert_ptr_equal(now.sa_handler, urg_handler); /* kept */
    log_expect("slow step: callback debug_test_slow_callback+0x",
               "(no sample: SIGURG has another handler)");
}

/* Debug mode off: no report, and no longest step. */
static void test_slow_callback_not_in_plain_mode(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    struct slow s = {3 * SLOW_MS, 0, loop, 0};
    run_slow_callback(loop, &s);
    log_expect_none("slow step");
    coil_loop_metrics_t m;
    assert_int_equal(coil_loop_metrics(loop, &m), 0);
    assert_int_equal(m.longest_step_ns, 0);
    assert_string_equal(m.longest_step_what, "");
}

/* Turned on by a callback while the loop runs: the watchdog starts then,
 * and the next slow callback is reported with its sample. */
static void enable_cb(void *arg)
{
    struct slow *s = arg;
    s->set_debug = coil_loop_set_debug(s->loop, true);
    coil_loop_call_soon(s->loop, debug_test_slow_callback, s, NULL);
    coil_loop_call_soon(s->loop, test_stop_cb, s->loop, NULL);
}

static void test_slow_callback_enabled_while_running(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    struct slow s = {BLOCK_MS, 0, loop, 1};
    assert_int_equal(coil_loop_call_soon(loop, enable_cb, &s, NULL), 0);
    test_run(loop);
    assert_int_equal(s.set_debug, 0);
    assert_int_equal(s.ran, 1);
    log_expect("slow step: callback debug_test_slow_callback+0x",
               "debug_test_block_in_callback");
}

/* The watchdog's thread cannot be started (pthread_create's EAGAIN,
 * through the seam). Turned on while the loop runs: -EAGAIN, debug mode
 * stays off. A loop run in debug mode says so once and still reports a
 * slow step, without its sample. */
static void test_watchdog_thread_fails_enabled_while_running(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    struct slow s = {BLOCK_MS, 0, loop, 1};
    coil__fault_arm(COIL__SYS_THREAD, 1, 1, EAGAIN);
    assert_int_equal(coil_loop_call_soon(loop, enable_cb, &s, NULL), 0);
    test_run(loop);
    assert_int_equal(s.set_debug, -EAGAIN);
    assert_int_equal(coil__fault_calls(COIL__SYS_THREAD), 1);
    assert_false(coil_loop_debug(loop));
    assert_int_equal(s.ran, 1);
    log_expect_none("slow step");
}

static void test_watchdog_thread_fails_at_run(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    struct slow s = {BLOCK_MS, 0, loop, 0};
    coil__fault_arm(COIL__SYS_THREAD, 1, 1, EAGAIN);
    run_slow_callback(loop, &s);
    assert_int_equal(coil__fault_calls(COIL__SYS_THREAD), 1);
    log_expect("debug mode: the watchdog thread could not be started",
               NULL);
    log_expect("slow step: callback debug_test_slow_callback+0x",
               "(no sample: the watchdog thread could not be started)");
    /* Each run tries again; the loop says it once. */
    coil__fault_arm(COIL__SYS_THREAD, 1, 1000, EAGAIN);
    s.ran = 0;
    run_slow_callback(loop, &s);
    assert_true(coil__fault_calls(COIL__SYS_THREAD) >= 1);
    assert_int_equal(
        log_count("debug mode: the watchdog thread could not be started"), 1);
    assert_int_equal(log_count("slow step: callback debug_test_slow_callback"),
                     2);
}

NAMED int debug_test_slow_body(void *arg)
{
    debug_test_block_in_task(*(int *)arg);
    sink++;
    return 0;
}

void test_slow_task_step(void **state);

NAMED void test_slow_task_step(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    int ms = BLOCK_MS;
    coil_task_options_t o = {.name = "slowpoke"};
    coil_task_t *t;
    assert_int_equal(
        coil_task_spawn_opts(loop, debug_test_slow_body, &ms, &o, &t), 0);
    assert_int_equal(test_run_done(loop, t), 0);
    int i = log_expect("slow step: task 'slowpoke' (id ",
                       "spawned by test_slow_task_step+0x");
    struct log_line *l = &log_lines[i];
    assert_int_equal(l->level, COIL_LOG_WARNING);
    if (!strstr(l->text, "debug_test_block_in_task"))
        log_print();
    assert_non_null(strstr(l->text, "blocked in: "));
    assert_non_null(strstr(l->text, "debug_test_block_in_task"));
    assert_non_null(strstr(l->text, "(threshold 20.0 ms)"));

    /* The metrics' longest step, and the task's CPU time. */
    coil_loop_metrics_t m;
    assert_int_equal(coil_loop_metrics(loop, &m), 0);
    assert_true(m.longest_step_ns >= BLOCK_MS * COIL_MSEC);
    assert_non_null(strstr(m.longest_step_what, "task 'slowpoke' (id "));
    assert_true(coil_task_cpu_time(t) >= BLOCK_MS * COIL_MSEC);
    coil_task_unref(t);
}

/* ------------------------------------------------------------------ */
/* CPU time and metrics                                                 */
/* ------------------------------------------------------------------ */

static int spin_body(void *arg)
{
    int ms = *(int *)arg;
    coil_yield();
    int64_t end = mono_ns() + ms * COIL_MSEC;
    while (mono_ns() < end)
        sink++;
    coil_sleep(COIL_MSEC);
    return 0;
}

static void test_cpu_time(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int ms = 20;
    coil_task_t *t = spawn_named(loop, spin_body, &ms, "spinner");
    assert_int_equal(coil_task_cpu_time(t), 0);
    assert_int_equal(test_run_done(loop, t), 0);
    assert_true(coil_task_cpu_time(t) >= 10 * COIL_MSEC);
    coil_task_unref(t);
    assert_int_equal(coil_task_cpu_time(NULL), 0);

    /* Not counted with debug mode off. */
    assert_int_equal(coil_loop_set_debug(loop, false), 0);
    t = spawn_named(loop, spin_body, &ms, "spinner2");
    assert_int_equal(test_run_done(loop, t), 0);
    assert_int_equal(coil_task_cpu_time(t), 0);
    coil_task_unref(t);
}

static int yield_body(void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++)
        coil_yield();
    return 0;
}

static void test_metrics(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_loop_metrics_t m0, m1, m2;
    assert_int_equal(coil_loop_metrics(loop, &m0), 0);
    assert_int_equal(m0.iterations, 0);
    assert_int_equal(m0.callbacks, 0);
    assert_int_equal(m0.task_steps, 0);

    int n = 5;
    assert_int_equal(test_run_task(loop, yield_body, &n), 0);
    assert_int_equal(coil_loop_metrics(loop, &m1), 0);
    assert_true(m1.iterations >= 1);
    /* Counted in debug mode only. */
    assert_int_equal(m1.callbacks, 0);
    assert_int_equal(m1.task_steps, 0);
    assert_true(m1.run_ns >= 0);
    assert_true(m1.poll_ns >= 0);
    assert_int_equal(m1.longest_step_ns, 0); /* debug mode off */

    /* They grow with each run; in debug mode the longest step shows. */
    assert_int_equal(coil_loop_set_debug(loop, true), 0);
    n = 10;
    assert_int_equal(test_run_task(loop, yield_body, &n), 0);
    assert_int_equal(coil_loop_metrics(loop, &m2), 0);
    assert_true(m2.iterations > m1.iterations);
    assert_true(m2.callbacks >= 11); /* the first step and 10 resumes */
    assert_true(m2.task_steps >= 11);
    assert_true(m2.run_ns >= m1.run_ns);
    assert_true(m2.longest_step_ns > 0);
    assert_true(m2.longest_step_what[0] != '\0');

    /* And grow again. */
    n = 3;
    assert_int_equal(test_run_task(loop, yield_body, &n), 0);
    assert_int_equal(coil_loop_metrics(loop, &m1), 0);
    assert_true(m1.iterations > m2.iterations);
    assert_true(m1.callbacks >= m2.callbacks + 4);
    assert_true(m1.task_steps >= m2.task_steps + 4);

    assert_int_equal(coil_loop_metrics(NULL, &m0), -EINVAL);
    assert_int_equal(coil_loop_metrics(loop, NULL), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Failed futures and tasks dropped unread                              */
/* ------------------------------------------------------------------ */

static void test_future_dropped_unread(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_future_t *f;
    assert_int_equal(coil_future_new(loop, &f), 0);
    assert_int_equal(coil_future_set_error(f, -EIO), 0);
    assert_true(coil_future_done(f)); /* not a read of the error */
    char want[128];
    snprintf(want, sizeof(want),
             "future %p failed (EIO) and its last "
             "reference went without anyone reading "
             "the error",
             (void *)f);
    coil_future_unref(f);
    int i = log_expect(want, NULL);
    assert_int_equal(log_lines[i].level, COIL_LOG_WARNING);
    assert_ptr_equal(log_lines[i].loop, loop);
    assert_int_equal(log_count("went without anyone reading"), 1);
}

static void test_future_read_not_reported(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_future_t *f;
    /* Read with coil_future_error. */
    assert_int_equal(coil_future_new(loop, &f), 0);
    assert_int_equal(coil_future_set_error(f, -EIO), 0);
    assert_int_equal(coil_future_error(f), -EIO);
    coil_future_unref(f);
    /* Read with coil_future_result. */
    assert_int_equal(coil_future_new(loop, &f), 0);
    assert_int_equal(coil_future_set_error(f, -EPIPE), 0);
    assert_int_equal(coil_future_result(f, NULL), -EPIPE);
    coil_future_unref(f);
    /* A result, a cancel, or nothing at all: nothing to read. */
    assert_int_equal(coil_future_new(loop, &f), 0);
    assert_int_equal(coil_future_set_result(f, NULL), 0);
    coil_future_unref(f);
    assert_int_equal(coil_future_new(loop, &f), 0);
    assert_int_equal(coil_future_cancel(f), 0);
    coil_future_unref(f);
    assert_int_equal(coil_future_new(loop, &f), 0);
    coil_future_unref(f);
    log_expect_none("went without anyone reading");

    /* Debug mode off: no report. */
    assert_int_equal(coil_loop_set_debug(loop, false), 0);
    assert_int_equal(coil_future_new(loop, &f), 0);
    assert_int_equal(coil_future_set_error(f, -EIO), 0);
    coil_future_unref(f);
    log_expect_none("went without anyone reading");
}

static int fail_body(void *arg)
{
    (void)arg;
    coil_yield();
    return -EIO;
}

static void stop_on_done(coil_future_t *fut, void *loop)
{
    (void)fut;
    coil_loop_stop(loop);
}

/* Run a task that fails, held by the caller, until it is done, without
 * reading its outcome. */
static coil_task_t *run_failing(coil_loop_t *loop, const char *name)
{
    coil_task_t *t = spawn_named(loop, fail_body, NULL, name);
    assert_int_equal(
        coil_future_add_done_callback(coil_task_future(t), stop_on_done, loop),
        0);
    test_run_stopped(loop);
    assert_true(coil_future_done(coil_task_future(t)));
    return t;
}

static void test_task_dropped_unread(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    coil_task_t *t = run_failing(loop, "doomed");
    log_expect_none("went without anyone reading"); /* still held */
    coil_task_unref(t);
    int i = log_expect("task 'doomed' (id ",
                       "failed (EIO) and its last reference went without "
                       "anyone reading the error");
    assert_int_equal(log_lines[i].level, COIL_LOG_WARNING);
    assert_int_equal(exc.count, 0); /* it was held: not "nobody awaited" */

    /* Read first: no report. */
    log_reset();
    t = run_failing(loop, "read");
    assert_int_equal(coil_future_error(coil_task_future(t)), -EIO);
    coil_task_unref(t);
    log_expect_none("went without anyone reading");

    /* Not held at all: the exception handler says so, once; the log
     * does not say it again. */
    exc = (struct exc_log){0};
    assert_int_equal(coil_task_spawn(loop, fail_body, NULL, NULL), 0);
    test_run_bounded(loop, 50 * COIL_MSEC);
    assert_int_equal(exc.count, 1);
    assert_int_equal(exc.last_error, -EIO);
    assert_non_null(strstr(exc.last_message, "nobody awaited it"));
    log_expect_none("went without anyone reading");
}

/* ------------------------------------------------------------------ */
/* Swallowed cancellations                                              */
/* ------------------------------------------------------------------ */

struct swallow {
    bool uncancel;
    bool join;
    int child_saw;
    int join_r;
    int cancel_r;
};

static int stubborn_body(void *arg)
{
    struct swallow *s = arg;
    s->child_saw = coil_sleep(10 * COIL_SEC);
    if (s->uncancel)
        coil_task_uncancel(coil_current_task());
    return 0;
}

static int swallow_parent(void *arg)
{
    struct swallow *s = arg;
    coil_task_options_t o = {.name = "stubborn"};
    coil_task_t *c = NULL;
    if (coil_task_spawn_opts(coil_running_loop(), stubborn_body, s, &o, &c) !=
        0) {
        test_task_failure();
        return 0;
    }
    coil_yield(); /* the child runs, and sleeps */
    s->cancel_r = coil_task_cancel(c);
    if (s->join)
        s->join_r = coil_task_join(c);
    else
        coil_sleep(20 * COIL_MSEC);
    coil_task_unref(c);
    return 0;
}

static void test_swallowed_cancel(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct swallow s = {.join = true, .join_r = 1, .cancel_r = 1};
    assert_int_equal(test_run_task(loop, swallow_parent, &s), 0);
    assert_int_equal(s.cancel_r, 0);
    assert_int_equal(s.child_saw, -ECANCELED);
    assert_int_equal(s.join_r, 0); /* swallowed: a result */
    int i = log_expect("task 'stubborn' (id ", "swallowed its cancellation");
    assert_int_equal(log_lines[i].level, COIL_LOG_WARNING);
    assert_non_null(strstr(log_lines[i].text, "without coil_task_uncancel"));
    assert_int_equal(log_count("swallowed"), 1);
}

static void test_swallowed_cancel_uncancelled(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct swallow s = {.join = true, .uncancel = true, .join_r = 1};
    assert_int_equal(test_run_task(loop, swallow_parent, &s), 0);
    assert_int_equal(s.child_saw, -ECANCELED);
    assert_int_equal(s.join_r, 0);
    log_expect_none("swallowed");

    /* Nobody awaits it: nobody to tell, no report. */
    s = (struct swallow){.join = false};
    assert_int_equal(test_run_task(loop, swallow_parent, &s), 0);
    assert_int_equal(s.child_saw, -ECANCELED);
    log_expect_none("swallowed");

    /* Debug mode off: no report either. */
    assert_int_equal(coil_loop_set_debug(loop, false), 0);
    s = (struct swallow){.join = true, .join_r = 1};
    assert_int_equal(test_run_task(loop, swallow_parent, &s), 0);
    assert_int_equal(s.join_r, 0);
    log_expect_none("swallowed");
}

/* ------------------------------------------------------------------ */
/* The loop closed with work pending                                    */
/* ------------------------------------------------------------------ */

static int napper_body(void *arg)
{
    (void)arg;
    return coil_sleep(3600 * COIL_SEC);
}

static void test_close_unfinished(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log exc = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &exc);
    coil_task_t *t = spawn_named(loop, napper_body, NULL, "lingering");
    assert_true(test_run_bounded(loop, 20 * COIL_MSEC));
    assert_int_equal(coil_loop_close(loop), 0);
    int i = log_expect("loop closed with 1 unfinished task, 0 ready "
                       "callbacks and 1 timer pending",
                       NULL);
    assert_int_equal(log_lines[i].level, COIL_LOG_WARNING);
    assert_ptr_equal(log_lines[i].loop, loop);
    /* The dump follows, at INFO. */
    int d = log_find_from(i, "  task 1 'lingering' suspended", NULL);
    assert_true(d > i);
    assert_int_equal(log_lines[d].level, COIL_LOG_INFO);
    log_expect("waits: sleep until", NULL);
    assert_int_equal(exc.count, 1); /* destroyed while pending */
    assert_true(coil_future_cancelled(coil_task_future(t)));
    coil_task_unref(t);
}

static void test_close_pending_callbacks(void **state)
{
    (void)state;
    /* Callbacks and timers only: INFO. */
    coil_loop_t *loop = new_loop(true);
    assert_int_equal(coil_loop_call_soon(loop, test_stop_cb, loop, NULL), 0);
    assert_int_equal(coil_loop_call_soon(loop, test_stop_cb, loop, NULL), 0);
    assert_int_equal(
        coil_loop_call_later(loop, COIL_SEC, test_stop_cb, loop, NULL), 0);
    coil_loop_unref(loop);
    int i = log_expect("loop closed with 0 unfinished tasks, 2 ready "
                       "callbacks and 1 timer pending",
                       NULL);
    assert_int_equal(log_lines[i].level, COIL_LOG_INFO);
    assert_int_equal(log_n, 1); /* no dump without tasks */

    /* Nothing pending, or debug mode off: nothing said. */
    log_reset();
    loop = new_loop(true);
    coil_loop_unref(loop);
    loop = new_loop(false);
    assert_int_equal(coil_loop_call_soon(loop, test_stop_cb, loop, NULL), 0);
    coil_loop_unref(loop);
    assert_int_equal(log_n, 0);
}

/* ------------------------------------------------------------------ */
/* Stacks                                                               */
/* ------------------------------------------------------------------ */

int debug_test_deep(char *top, size_t depth);

/* Recurse until depth bytes below top (real frames, whatever ASan does
 * with the locals), each frame dirtied. */
NAMED int debug_test_deep(char *top, size_t depth)
{
    volatile char buf[256];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i | 1);
    char *here = __builtin_frame_address(0);
    int r = 0;
    if ((size_t)(top - here) < depth)
        r = debug_test_deep(top, depth);
    return r + buf[7];
}

struct deep {
    size_t target; /* the depth to reach (0: none) */
    int r_base;
    size_t base; /* the depth at the body's start */
    int r_used;
    size_t used_inside;
};

static int deep_body(void *arg)
{
    struct deep *d = arg;
    coil_task_t *me = coil_current_task();
    d->r_base = coil_task_stack_used(me, &d->base);
    /* Deeper by what is still missing, until the target is reached (the
     * depth measured includes the measuring call's own frames). */
    size_t want = d->target > d->base ? d->target - d->base : 0;
    for (int k = 0; k < 4 && want; k++) {
        sink += debug_test_deep(__builtin_frame_address(0), want);
        size_t u = 0;
        coil_task_stack_used(me, &u);
        if (u >= d->target)
            break;
        /* At least a frame more: the lowest bytes of the deepest frame
         * may be zeros the measure does not see. */
        want += d->target - u > 256 ? d->target - u : 256;
    }
    d->r_used = coil_task_stack_used(me, &d->used_inside);
    coil_sleep(COIL_MSEC);
    return 0;
}

#define SMALL_STACK (64 * 1024)

static void test_stack_report(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct deep d = {.r_used = 1, .r_base = 1};
    coil_task_options_t o = {.name = "deep", .stack_size = SMALL_STACK};
    coil_task_t *t;
    assert_int_equal(coil_task_spawn_opts(loop, deep_body, &d, &o, &t), 0);
    /* A little more than asked (whole pages). */
    size_t size = coil_task_stack_size(t);
    assert_true(size >= SMALL_STACK && size < SMALL_STACK + 8192);
    /* 95% of it: past the 90% that is reported, clear of the guard. */
    d.target = size / 100 * 95;
    assert_int_equal(test_run_done(loop, t), 0);
    assert_int_equal(d.r_base, 0);
    assert_true(d.base > 0 && d.base < 8192);
    assert_int_equal(d.r_used, 0);
    if (d.used_inside < d.target || d.used_inside > size)
        fprintf(stderr, "base %zu target %zu used %zu size %zu\n", d.base,
                d.target, d.used_inside, size);
    assert_true(d.used_inside >= size - size / 10); /* reported from here */
    assert_true(d.used_inside <= size);
    char want[96];
    snprintf(want, sizeof(want), "of its %zu bytes of stack (", size);
    int i = log_expect("stack: task 'deep' (id ", want);
    assert_int_equal(log_lines[i].level, COIL_LOG_WARNING);
    size_t used = 0;
    const char *u = strstr(log_lines[i].text, " used ");
    assert_non_null(u);
    assert_int_equal(sscanf(u, " used %zu of", &used), 1);
    assert_true(used >= d.used_inside);
    assert_true(used >= size - size / 10);
    /* The suggestion: twice the depth, in whole 64 KiB. */
    snprintf(want, sizeof(want), "; give it %zu ",
             (used * 2 + 65535) & ~(size_t)65535);
    assert_non_null(strstr(log_lines[i].text, want));
    /* The depth stays readable once it finished (see the report: the
     * header says -ENODATA). */
    size_t after = 0;
    int r = coil_task_stack_used(t, &after);
    assert_true(r == 0 || r == -ENODATA);
    if (r == 0)
        assert_int_equal(after, used);
    coil_task_unref(t);
}

static void test_stack_used(void **state)
{
    coil_loop_t *loop = test_loop(state);
    /* A shallow task, in debug mode: measured, small, no report. */
    struct deep d = {.r_used = 1};
    coil_task_t *t = spawn_named(loop, deep_body, &d, "shallow");
    assert_int_equal(test_run_done(loop, t), 0);
    assert_int_equal(d.r_used, 0);
    assert_true(d.used_inside > 0);
    assert_true(d.used_inside < 32 * 1024);
    coil_task_unref(t);
    log_expect_none("stack: task");

    /* Measured while suspended, from outside. */
    t = spawn_named(loop, napper_body, NULL, "napping");
    assert_true(test_run_bounded(loop, 5 * COIL_MSEC));
    size_t used = 0;
    assert_int_equal(coil_task_stack_used(t, &used), 0);
    assert_true(used > 0 && used < 32 * 1024);
    assert_int_equal(coil_task_stack_used(t, NULL), -EINVAL);
    assert_int_equal(coil_task_stack_used(NULL, &used), -EINVAL);
    coil_task_cancel(t);
    test_run_done(loop, t);
    coil_task_unref(t);

    /* Spawned with debug mode off: not measured, even once it is on. */
    assert_int_equal(coil_loop_set_debug(loop, false), 0);
    d = (struct deep){.r_used = 1};
    t = spawn_named(loop, deep_body, &d, "unmeasured");
    assert_int_equal(coil_loop_set_debug(loop, true), 0);
    assert_int_equal(test_run_done(loop, t), 0);
    assert_int_equal(d.r_used, -ENODATA);
    assert_int_equal(coil_task_stack_used(t, &used), -ENODATA);
    coil_task_unref(t);
}

/* ------------------------------------------------------------------ */
/* Await cycles                                                         */
/* ------------------------------------------------------------------ */

struct cyc {
    coil_task_t *a, *b, *c;
    int ra, rb, rc;
    coil_future_t *fa;
};

static int cyc2_a(void *arg)
{
    struct cyc *c = arg;
    c->ra = coil_task_join(c->b);
    return 1;
}

static int cyc2_b(void *arg)
{
    struct cyc *c = arg;
    c->rb = coil_task_join(c->a);
    return 2;
}

static void run_two_cycle(coil_loop_t *loop)
{
    struct cyc c = {.ra = -1, .rb = -1};
    c.a = spawn_named(loop, cyc2_a, &c, "A");
    c.b = spawn_named(loop, cyc2_b, &c, "B");
    assert_int_equal(test_run_done(loop, c.a), 0);
    assert_int_equal(test_run_done(loop, c.b), 0);
    /* B would close the cycle: refused; A's join then completes. */
    assert_int_equal(c.rb, -EDEADLK);
    assert_int_equal(c.ra, 2);
    assert_int_equal(test_task_outcome(c.a), 1);
    coil_task_unref(c.a);
    coil_task_unref(c.b);
}

static void test_cycle_two(void **state)
{
    run_two_cycle(test_loop(state));
}

static void test_cycle_two_debug(void **state)
{
    run_two_cycle(test_loop(state));
    log_expect_none("stuck");
}

static int cyc3_a(void *arg)
{
    struct cyc *c = arg;
    c->ra = coil_task_join(c->b);
    return c->ra + 1;
}

static int cyc3_b(void *arg)
{
    struct cyc *c = arg;
    c->rb = coil_task_join(c->c);
    return c->rb + 1;
}

static int cyc3_c(void *arg)
{
    struct cyc *c = arg;
    c->rc = coil_task_join(c->a);
    return 3;
}

static void test_cycle_three(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct cyc c = {.ra = -1, .rb = -1, .rc = -1};
    c.a = spawn_named(loop, cyc3_a, &c, "A");
    c.b = spawn_named(loop, cyc3_b, &c, "B");
    c.c = spawn_named(loop, cyc3_c, &c, "C");
    assert_int_equal(test_run_done(loop, c.a), 0);
    assert_int_equal(c.rc, -EDEADLK);
    assert_int_equal(c.rb, 3);
    assert_int_equal(c.ra, 4);
    assert_int_equal(test_task_outcome(c.a), 5);
    coil_task_unref(c.a);
    coil_task_unref(c.b);
    coil_task_unref(c.c);
}

/* No cycle: a chain that ends, and two tasks joining the same one. */
static int chain_leaf(void *arg)
{
    (void)arg;
    coil_sleep(COIL_MSEC);
    return 5;
}

static int chain_mid(void *arg)
{
    struct cyc *c = arg;
    return coil_task_join(c->c);
}

static void test_cycle_none(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct cyc c = {0};
    c.c = spawn_named(loop, chain_leaf, NULL, "leaf");
    c.a = spawn_named(loop, chain_mid, &c, "m1");
    c.b = spawn_named(loop, chain_mid, &c, "m2");
    assert_int_equal(test_run_done(loop, c.a), 0);
    assert_int_equal(test_run_done(loop, c.b), 0);
    assert_int_equal(test_task_outcome(c.a), 5);
    assert_int_equal(test_task_outcome(c.b), 5);
    coil_task_unref(c.a);
    coil_task_unref(c.b);
    coil_task_unref(c.c);
}

/* A child joins the parent that waits for the child's group. */
struct grp {
    coil_task_t *parent;
    int child_r;
    int wait_r;
    int spawn_r;
};

static int grp_child(void *arg)
{
    struct grp *g = arg;
    g->child_r = coil_task_join(g->parent);
    return 0;
}

static int grp_parent(void *arg)
{
    struct grp *g = arg;
    g->parent = coil_task_ref(coil_current_task());
    coil_group_t *grp;
    if (coil_group_new(&grp) != 0) {
        test_task_failure();
        return 0;
    }
    g->spawn_r = coil_group_spawn(grp, grp_child, g, NULL, NULL);
    g->wait_r = coil_group_wait(grp);
    coil_group_unref(grp);
    return 0;
}

static void test_cycle_group(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct grp g = {.child_r = 1, .wait_r = 1, .spawn_r = 1};
    assert_int_equal(test_run_task(loop, grp_parent, &g), 0);
    assert_int_equal(g.spawn_r, 0);
    assert_int_equal(g.child_r, -EDEADLK);
    assert_int_equal(g.wait_r, 0);
    coil_task_unref(g.parent);
}

/* Through coil_gather and coil_wait: B joins A, which waits for B. */
static int gather_a(void *arg)
{
    struct cyc *c = arg;
    coil_future_t *futs[1] = {coil_task_future(c->b)};
    void *res[1] = {NULL};
    c->ra = coil_gather(futs, 1, res, 0);
    c->rc = (int)(intptr_t)res[0];
    return 0;
}

static int wait_a(void *arg)
{
    struct cyc *c = arg;
    coil_future_t *futs[1] = {coil_task_future(c->b)};
    c->ra = coil_wait(futs, 1, COIL_ALL_COMPLETED, COIL_NO_TIMEOUT);
    return 0;
}

static void test_cycle_combinators(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_task_fn fns[2] = {gather_a, wait_a};
    for (int k = 0; k < 2; k++) {
        struct cyc c = {.ra = -1, .rb = -1, .rc = -1};
        c.a = spawn_named(loop, fns[k], &c, "A");
        c.b = spawn_named(loop, cyc2_b, &c, "B");
        assert_int_equal(test_run_done(loop, c.a), 0);
        assert_int_equal(c.rb, -EDEADLK);
        if (k == 0) {
            assert_int_equal(c.ra, 0); /* gather's result */
            assert_int_equal(c.rc, 2);
        } else {
            assert_int_equal(c.ra, 1); /* wait: one done */
        }
        assert_true(coil_future_done(coil_task_future(c.b)));
        coil_task_unref(c.a);
        coil_task_unref(c.b);
    }
}

/* Waits that can end another way are no cycle: B waits for the first of
 * A and C (C completes later), or joins A inside a timeout scope; A joins
 * B meanwhile. A's join must wait, not fail. */
static int first_of_b(void *arg)
{
    struct cyc *c = arg;
    coil_future_t *futs[2] = {coil_task_future(c->a), c->fa};
    c->rb = coil_wait(futs, 2, COIL_FIRST_COMPLETED, COIL_NO_TIMEOUT);
    return 2;
}

static int timed_b(void *arg)
{
    struct cyc *c = arg;
    coil_future_t *futs[1] = {coil_task_future(c->a)};
    c->rb = coil_wait(futs, 1, COIL_ALL_COMPLETED, 20 * COIL_MSEC);
    return 2;
}

static int scoped_b(void *arg)
{
    struct cyc *c = arg;
    coil_timeout_t *sc;
    int err = coil_timeout_begin(20 * COIL_MSEC, &sc);
    if (err)
        return err;
    c->rb = coil_timeout_end(sc, coil_shield(coil_task_future(c->a), NULL));
    return 2;
}

static int late_setter(void *arg)
{
    struct cyc *c = arg;
    coil_sleep(5 * COIL_MSEC);
    return coil_future_set_result(c->fa, NULL);
}

static void test_cycle_not_when_another_way_out(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_task_fn bs[3] = {first_of_b, timed_b, scoped_b};
    for (int k = 0; k < 3; k++) {
        struct cyc c = {.ra = -1, .rb = -1};
        assert_int_equal(coil_future_new(loop, &c.fa), 0);
        c.b = spawn_named(loop, bs[k], &c, "B");
        c.a = spawn_named(loop, cyc2_a, &c, "A");
        coil_task_t *setter = NULL;
        if (k == 0)
            setter = spawn_named(loop, late_setter, &c, "setter");
        assert_int_equal(test_run_done(loop, c.a), 0);
        assert_int_equal(c.ra, 2); /* waited for B, which ended */
        if (k == 0)
            assert_int_equal(c.rb, 1); /* C came first */
        else if (k == 1)
            assert_int_equal(c.rb, 0); /* none done at the timeout */
        else
            assert_int_equal(c.rb, -ETIMEDOUT);
        if (setter) {
            assert_int_equal(test_run_done(loop, setter), 0);
            coil_task_unref(setter);
        }
        coil_task_unref(c.a);
        coil_task_unref(c.b);
        coil_future_unref(c.fa);
    }
}

/* A timer's callback that blocks is reported like any other step. */
static void slow_timer_cb(void *arg)
{
    struct slow *s = arg;
    debug_test_block_in_callback(s->ms);
    s->ran++;
    coil_loop_stop(s->loop);
}

static void test_slow_timer_callback(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_debug(loop, true), 0);
    assert_int_equal(coil_loop_set_slow_duration(loop, SLOW_NS), 0);
    struct slow s = {BLOCK_MS, 0, loop, 0};
    assert_int_equal(coil_loop_call_later(loop, COIL_MSEC, slow_timer_cb, &s,
                                          NULL),
                     0);
    test_run_stopped(loop);
    assert_int_equal(s.ran, 1);
    log_expect("slow step: callback slow_timer_cb+0x", "blocked in: ");
}

/* A server's connection handler that returns an error: its result is
 * ignored by design (server.h), so it is no error nobody saw. */
static int failing_handler(coil_stream_t *st, void *arg)
{
    (void)arg;
    char b[8];
    (void)coil_stream_read(st, b, sizeof(b)); /* the client's EOF */
    return -ECONNRESET;
}

struct srv_case {
    coil_server_t *srv;
    int open_r, close_r;
};

static int srv_client(void *arg)
{
    struct srv_case *c = arg;
    char port[16];
    snprintf(port, sizeof(port), "%d", coil_server_port(c->srv));
    coil_stream_t *st;
    c->open_r = coil_stream_open("127.0.0.1", port, &st);
    if (c->open_r)
        return 0;
    coil_stream_unref(st); /* EOF for the handler */
    for (int i = 0; i < 200 && coil_server_connections(c->srv) == 0; i++)
        coil_sleep(COIL_MSEC); /* until it was accepted */
    for (int i = 0; i < 2000 && coil_server_connections(c->srv); i++)
        coil_sleep(COIL_MSEC); /* until the handler returned */
    c->close_r = coil_server_close(c->srv);
    return coil_server_wait_closed(c->srv);
}

static int open_server(void *arg)
{
    struct srv_case *c = arg;
    return coil_server_open("127.0.0.1", "0", failing_handler, NULL, NULL,
                            &c->srv);
}

static void test_server_handler_error_not_reported(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_set_debug(loop, true), 0);
    struct srv_case c = {0};
    assert_int_equal(test_run_task(loop, open_server, &c), 0);
    coil_task_t *t = spawn_named(loop, srv_client, &c, "client");
    assert_int_equal(test_run_done(loop, t), 0);
    assert_int_equal(c.open_r, 0);
    assert_int_equal(c.close_r, 0);
    coil_task_unref(t);
    coil_server_unref(c.srv);
    log_expect_none("went without anyone reading");
}

struct self {
    int join, await, shield;
};

static int self_body(void *arg)
{
    struct self *s = arg;
    coil_task_t *me = coil_current_task();
    s->join = coil_task_join(me);
    s->await = coil_await(coil_task_future(me), NULL);
    s->shield = coil_shield(coil_task_future(me), NULL);
    return 0;
}

static void test_cycle_self(void **state)
{
    struct self s = {0};
    assert_int_equal(test_run_task(test_loop(state), self_body, &s), 0);
    assert_int_equal(s.join, -EDEADLK);
    assert_int_equal(s.await, -EDEADLK);
    assert_int_equal(s.shield, -EDEADLK);
}

/* ------------------------------------------------------------------ */
/* A stuck loop                                                         */
/* ------------------------------------------------------------------ */

struct waiter {
    coil_future_t *fut;
    int r;
};

static int await_body(void *arg)
{
    struct waiter *w = arg;
    w->r = coil_await(w->fut, NULL);
    return 7;
}

static void test_stuck(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct waiter w = {NULL, 1};
    assert_int_equal(coil_future_new(loop, &w.fut), 0);
    coil_task_t *t = spawn_named(loop, await_body, &w, "hopeless");
    /* No safety timer here: it would keep the loop from being stuck. */
    assert_int_equal(coil_loop_run_until_complete(loop, coil_task_future(t)),
                     -EDEADLK);
    int i = log_expect("stuck: 1 task waits and nothing can wake the loop",
                       "-EDEADLK");
    assert_int_equal(log_lines[i].level, COIL_LOG_ERROR);
    assert_ptr_equal(log_lines[i].loop, loop);
    int d = log_find_from(i, "  coil task dump: loop ", NULL);
    assert_true(d > i);
    assert_int_equal(log_lines[d].level, COIL_LOG_ERROR);
    int tl = log_find_from(d, "  task 1 'hopeless' suspended", NULL);
    assert_true(tl > d);
    assert_int_equal(log_lines[tl].level, COIL_LOG_ERROR);
    char waits[64];
    snprintf(waits, sizeof(waits), "waits: future %p", (void *)w.fut);
    assert_true(log_find_from(tl, waits, NULL) > tl);
    assert_true(log_find_from(tl, "  end of task dump", NULL) > tl);

    /* The loop still works: complete the future and finish. */
    assert_false(coil_future_done(coil_task_future(t)));
    assert_int_equal(coil_future_set_result(w.fut, NULL), 0);
    assert_int_equal(coil_loop_run_until_complete(loop, coil_task_future(t)),
                     0);
    assert_int_equal(w.r, 0);
    assert_int_equal(test_task_outcome(t), 7);
    coil_task_unref(t);
    coil_future_unref(w.fut);
}

/* Two tasks on an event nobody sets, one joining the other. */
static int event_body(void *arg)
{
    return coil_event_wait(arg);
}

struct ev_join {
    coil_task_t *t;
    int r;
};

static int join_body(void *arg)
{
    struct ev_join *j = arg;
    j->r = coil_task_join(j->t);
    return 0;
}

static void test_stuck_event_and_join(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_event_t *ev;
    assert_int_equal(coil_event_new(loop, &ev), 0);
    struct ev_join j = {NULL, 1};
    j.t = spawn_named(loop, event_body, ev, "ev");
    coil_task_t *t = spawn_named(loop, join_body, &j, "joiner");
    assert_int_equal(coil_loop_run_until_complete(loop, coil_task_future(t)),
                     -EDEADLK);
    log_expect("stuck: 2 tasks wait and nothing can wake the loop", NULL);
    log_expect("  task 1 'ev' suspended", NULL);
    log_expect("    waits: event ", NULL);
    log_expect("    waits: join of task 'ev' (id 1)", NULL);
    log_expect("    awaited by: task 2 'joiner'", NULL);
    assert_int_equal(coil_event_set(ev), 0);
    assert_int_equal(coil_loop_run_until_complete(loop, coil_task_future(t)),
                     0);
    assert_int_equal(j.r, 0);
    coil_task_unref(j.t);
    coil_task_unref(t);
    coil_event_unref(ev);
}

/* No tasks: run_forever idles as asked (not stuck); a timer stops it. */
static void test_stuck_run_forever_no_tasks(void **state)
{
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(
        coil_loop_call_later(loop, 20 * COIL_MSEC, test_stop_cb, loop, NULL),
        0);
    test_run(loop);
    log_expect_none("stuck");
}

static void complete_cb(void *arg)
{
    coil_future_set_result(arg, NULL);
}

struct feeder {
    coil_loop_t *loop;
    coil_future_t *fut;
    int fd; /* -1: post a call instead */
    bool release;
    int r;
};

static void *feeder_main(void *arg)
{
    struct feeder *f = arg;
    sleep_ms(50);
    if (f->fd >= 0)
        f->r = write(f->fd, "x", 1) == 1 ? 0 : -errno;
    else
        f->r = coil_loop_call_soon_threadsafe(f->loop, complete_cb, f->fut);
    if (f->release)
        coil_loop_release(f->loop);
    return NULL;
}

/* A thread that holds the loop will call it: not stuck. */
static void test_not_stuck_held(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct waiter w = {NULL, 1};
    assert_int_equal(coil_future_new(loop, &w.fut), 0);
    coil_task_t *t = spawn_named(loop, await_body, &w, "patient");
    assert_int_equal(coil_loop_hold(loop), 0);
    struct feeder f = {loop, w.fut, -1, true, 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, feeder_main, &f), 0);
    int r = coil_loop_run_until_complete(loop, coil_task_future(t));
    pthread_join(th, NULL);
    assert_int_equal(r, 0);
    assert_int_equal(f.r, 0);
    assert_int_equal(w.r, 0);
    log_expect_none("stuck");
    coil_task_unref(t);
    coil_future_unref(w.fut);
    /* Holds count: as many releases as holds, then -EALREADY. */
    assert_int_equal(coil_loop_hold(loop), 0);
    assert_int_equal(coil_loop_hold(loop), 0);
    assert_int_equal(coil_loop_release(loop), 0);
    assert_int_equal(coil_loop_release(loop), 0);
    assert_int_equal(coil_loop_release(loop), -EALREADY);
}

/* A pending timer will wake it: not stuck. */
static void test_not_stuck_timer(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct waiter w = {NULL, 1};
    assert_int_equal(coil_future_new(loop, &w.fut), 0);
    coil_task_t *t = spawn_named(loop, await_body, &w, "patient");
    assert_int_equal(
        coil_loop_call_later(loop, 30 * COIL_MSEC, complete_cb, w.fut, NULL),
        0);
    assert_int_equal(coil_loop_run_until_complete(loop, coil_task_future(t)),
                     0);
    assert_int_equal(w.r, 0);
    log_expect_none("stuck");
    coil_task_unref(t);
    coil_future_unref(w.fut);
}

/* A watched fd may wake it: not stuck (a thread writes, unannounced). */
struct reader {
    coil_loop_t *loop;
    int fd;
    coil_future_t *fut;
};

static void reader_cb(void *arg)
{
    struct reader *r = arg;
    test_drain(r->fd);
    coil_loop_remove_reader(r->loop, r->fd);
    coil_future_set_result(r->fut, NULL);
}

static void test_not_stuck_fd(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int p[2];
    test_pipe(p);
    struct waiter w = {NULL, 1};
    assert_int_equal(coil_future_new(loop, &w.fut), 0);
    coil_task_t *t = spawn_named(loop, await_body, &w, "patient");
    struct reader rd = {loop, p[0], w.fut};
    assert_int_equal(coil_loop_add_reader(loop, p[0], reader_cb, &rd), 0);
    struct feeder f = {loop, w.fut, p[1], false, 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, feeder_main, &f), 0);
    int r = coil_loop_run_until_complete(loop, coil_task_future(t));
    pthread_join(th, NULL);
    assert_int_equal(r, 0);
    assert_int_equal(f.r, 0);
    assert_int_equal(w.r, 0);
    log_expect_none("stuck");
    coil_task_unref(t);
    coil_future_unref(w.fut);
    test_close_pair(p);
}

/* ------------------------------------------------------------------ */
/* The task dump                                                        */
/* ------------------------------------------------------------------ */

/* The lines of the task named name in a dump (up to the next task), in
 * out; false if there is none. */
static bool dump_section(const char *dump, const char *name, char *out,
                         size_t n)
{
    char key[96];
    snprintf(key, sizeof(key), "'%s' ", name);
    for (const char *line = dump; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (strncmp(line, "task ", 5) == 0) {
            const char *k = strstr(line, key);
            if (k && k < line + len) {
                const char *end = nl ? nl + 1 : line + len;
                while (*end && strncmp(end, "task ", 5) != 0 &&
                       strncmp(end, "end of task dump", 16) != 0) {
                    const char *e = strchr(end, '\n');
                    end = e ? e + 1 : end + strlen(end);
                }
                snprintf(out, n, "%.*s", (int)(end - line), line);
                return true;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    out[0] = '\0';
    return false;
}

static unsigned long long dump_id(const char *section)
{
    unsigned long long id = 0;
    assert_int_equal(sscanf(section, "task %llu ", &id), 1);
    return id;
}

#define ASSERT_HAS(hay, needle)                                                \
    do {                                                                       \
        if (!strstr((hay), (needle)))                                          \
            fprintf(stderr, "missing \"%s\" in:\n%s\n", (needle), (hay));      \
        assert_non_null(strstr((hay), (needle)));                              \
    } while (0)

struct tree {
    coil_loop_t *loop;
    coil_event_t *ev;
    coil_lock_t *lock;
    coil_task_t *leaf;
    int r_root, r_leaf, r_holder, r_locker, r_group;
};

int debug_test_sleeper(void);
int dump_leaf_body(void *arg);
int dump_root_body(void *arg);
void test_dump_tree(void **state);
int debug_test_dumper(void *arg);

NAMED int debug_test_sleeper(void)
{
    int r = coil_sleep(3600 * COIL_SEC);
    sink++;
    return r;
}

NAMED int dump_leaf_body(void *arg)
{
    struct tree *tr = arg;
    tr->r_leaf = debug_test_sleeper();
    return tr->r_leaf; /* cancelled: says so */
}

NAMED int dump_root_body(void *arg)
{
    struct tree *tr = arg;
    coil_task_options_t o = {.name = "leaf_a"};
    if (coil_task_spawn_opts(tr->loop, dump_leaf_body, tr, &o, &tr->leaf)) {
        test_task_failure();
        return 0;
    }
    tr->r_root = coil_task_join(tr->leaf);
    return 0;
}

static int holder_body(void *arg)
{
    struct tree *tr = arg;
    if (coil_lock_acquire(tr->lock) != 0)
        test_task_failure();
    tr->r_holder = coil_event_wait(tr->ev);
    coil_lock_release(tr->lock);
    return 0;
}

static int locker_body(void *arg)
{
    struct tree *tr = arg;
    tr->r_locker = coil_lock_acquire(tr->lock);
    if (tr->r_locker == 0)
        coil_lock_release(tr->lock);
    return 0;
}

static int gchild_body(void *arg)
{
    struct tree *tr = arg;
    return coil_event_wait(tr->ev);
}

static int gparent_body(void *arg)
{
    struct tree *tr = arg;
    coil_group_t *g;
    if (coil_group_new(&g) != 0) {
        test_task_failure();
        return 0;
    }
    coil_task_options_t o = {.name = "gchild"};
    if (coil_group_spawn(g, gchild_body, tr, &o, NULL) != 0)
        test_task_failure();
    tr->r_group = coil_group_wait(g);
    coil_group_unref(g);
    return 0;
}

static char *dump_to_string(coil_loop_t *loop, int *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_non_null(m);
    *r = coil_loop_dump_tasks(loop, m);
    fclose(m);
    return buf;
}

NAMED void test_dump_tree(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct tree tr = {.loop = loop};
    assert_int_equal(coil_event_new(loop, &tr.ev), 0);
    assert_int_equal(coil_lock_new(loop, &tr.lock), 0);
    coil_task_options_t o = {.name = "root"};
    coil_task_t *root, *holder, *locker, *gparent;
    assert_int_equal(coil_task_spawn_opts(loop, dump_root_body, &tr, &o, &root),
                     0);
    o.name = "holder";
    assert_int_equal(coil_task_spawn_opts(loop, holder_body, &tr, &o, &holder),
                     0);
    o.name = "locker";
    assert_int_equal(coil_task_spawn_opts(loop, locker_body, &tr, &o, &locker),
                     0);
    o.name = "gparent";
    assert_int_equal(
        coil_task_spawn_opts(loop, gparent_body, &tr, &o, &gparent), 0);
    /* The virtual clock: everything runs until it waits, then the safety
     * stop a second later ends the run. */
    assert_true(test_run_bounded(loop, COIL_SEC));

    int r;
    char *dump = dump_to_string(loop, &r);
    assert_int_equal(r, 0);
    assert_non_null(dump);
    char head[128];
    snprintf(head, sizeof(head), "coil task dump: loop %p (%s, debug), 6 tasks",
             (void *)loop, coil_loop_backend(loop));
    ASSERT_HAS(dump, head);
    ASSERT_HAS(dump, "\n  metrics: ");
    ASSERT_HAS(dump, "task steps");
    ASSERT_HAS(dump, "\nend of task dump\n");

    static char s_root[4096], s_leaf[4096], s_holder[2048], s_locker[2048],
        s_gp[2048], s_gc[2048];
    assert_true(dump_section(dump, "root", s_root, sizeof(s_root)));
    assert_true(dump_section(dump, "leaf_a", s_leaf, sizeof(s_leaf)));
    assert_true(dump_section(dump, "holder", s_holder, sizeof(s_holder)));
    assert_true(dump_section(dump, "locker", s_locker, sizeof(s_locker)));
    assert_true(dump_section(dump, "gparent", s_gp, sizeof(s_gp)));
    assert_true(dump_section(dump, "gchild", s_gc, sizeof(s_gc)));
    unsigned long long root_id = dump_id(s_root), leaf_id = dump_id(s_leaf);

    /* The root: waits for the leaf, spawned by this test. */
    ASSERT_HAS(s_root, "' suspended\n");
    char want[160];
    snprintf(want, sizeof(want), "    waits: join of task 'leaf_a' (id %llu)\n",
             leaf_id);
    ASSERT_HAS(s_root, want);
    ASSERT_HAS(s_root, "    spawned by: test_dump_tree+0x");
    ASSERT_HAS(s_root, "    age ");
    ASSERT_HAS(s_root, ", cpu ");
    ASSERT_HAS(s_root, ", stack ");
    ASSERT_HAS(s_root, "    backtrace:\n      #0 ");
    ASSERT_HAS(s_root, "dump_root_body+0x");

    /* The leaf: sleeps, awaited by the root, spawned by the root's body,
     * its own stack's backtrace through the function that slept. */
    ASSERT_HAS(s_leaf, "' suspended\n");
    ASSERT_HAS(s_leaf, "    waits: sleep until +");
    snprintf(want, sizeof(want),
             "    awaited by: task %llu 'root' (join of task ", root_id);
    ASSERT_HAS(s_leaf, want);
    ASSERT_HAS(s_leaf, "    spawned by: dump_root_body+0x");
    ASSERT_HAS(s_leaf, "    backtrace:\n");
    ASSERT_HAS(s_leaf, "debug_test_sleeper+0x");
    ASSERT_HAS(s_leaf, "dump_leaf_body+0x");
    snprintf(want, sizeof(want), " of %zu bytes\n", /* measured */
             coil_task_stack_size(tr.leaf));
    ASSERT_HAS(s_leaf, want);

    /* The others: an event, a lock, a group. */
    ASSERT_HAS(s_holder, "    waits: event 0x");
    ASSERT_HAS(s_gc, "    waits: event 0x");
    ASSERT_HAS(s_locker, "    waits: lock 0x");
    ASSERT_HAS(s_gp, "    waits: group 0x");
    ASSERT_HAS(s_gp, "(1 children running)");
    /* The group's child names the task waiting in the group. */
    ASSERT_HAS(s_gc, "    awaited by: task ");
    ASSERT_HAS(s_gc, " (group 0x");
    ASSERT_HAS(s_gc, "    spawned by: "); /* coil's: hidden here */
    ASSERT_HAS(s_holder, "    spawned by: test_dump_tree+0x");
    free(dump);

    /* Let everything finish. */
    assert_int_equal(coil_event_set(tr.ev), 0);
    assert_int_equal(coil_task_cancel(tr.leaf), 0);
    test_run_bounded(loop, COIL_SEC);
    test_assert_no_tasks(loop);
    assert_int_equal(tr.r_leaf, -ECANCELED);
    assert_int_equal(tr.r_root, -ECANCELED);
    assert_int_equal(tr.r_holder, 0);
    assert_int_equal(tr.r_locker, 0);
    assert_int_equal(tr.r_group, 0);
    log_expect_none("swallowed");
    dump = dump_to_string(loop, &r);
    assert_int_equal(r, 0);
    ASSERT_HAS(dump, ", 0 tasks, ");
    ASSERT_HAS(dump, "\nend of task dump\n");
    free(dump);
    coil_task_unref(tr.leaf);
    coil_task_unref(root);
    coil_task_unref(holder);
    coil_task_unref(locker);
    coil_task_unref(gparent);
    coil_event_unref(tr.ev);
    coil_lock_unref(tr.lock);
}

/* From inside a task: the running one shows as running, with the
 * backtrace of the call. */
struct selfdump {
    char *buf;
    int r;
    int r_null;
};

NAMED int debug_test_dumper(void *arg)
{
    struct selfdump *s = arg;
    size_t len = 0;
    FILE *m = open_memstream(&s->buf, &len);
    if (!m) {
        test_task_failure();
        return 0;
    }
    s->r = coil_dump_tasks(m);
    fclose(m);
    s->r_null = coil_dump_tasks(NULL);
    sink++;
    return 0;
}

static void test_dump_from_task(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_task_t *nap = spawn_named(loop, napper_body, NULL, "napper");
    struct selfdump s = {NULL, 1, 1};
    coil_task_t *t = spawn_named(loop, debug_test_dumper, &s, "selfdumper");
    assert_int_equal(test_run_done(loop, t), 0);
    assert_int_equal(s.r, 0);
    assert_int_equal(s.r_null, -EINVAL);
    assert_non_null(s.buf);
    static char sec[4096];
    assert_true(dump_section(s.buf, "selfdumper", sec, sizeof(sec)));
    ASSERT_HAS(sec, "' running\n");
    ASSERT_HAS(sec, "    backtrace:\n");
    ASSERT_HAS(sec, "debug_test_dumper+0x");
    assert_true(dump_section(s.buf, "napper", sec, sizeof(sec)));
    ASSERT_HAS(sec, "' suspended\n");
    ASSERT_HAS(sec, "    waits: sleep until +");
    free(s.buf);
    coil_task_cancel(nap);
    test_run_done(loop, nap);
    coil_task_unref(nap);
    coil_task_unref(t);
}

/* Without debug mode: no ", debug", no CPU time, no stack depth. */
static void test_dump_plain(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_task_t *t = spawn_named(loop, napper_body, NULL, "napper");
    assert_true(test_run_bounded(loop, 5 * COIL_MSEC));
    int r;
    char *dump = dump_to_string(loop, &r);
    assert_int_equal(r, 0);
    char head[128];
    snprintf(head, sizeof(head), "coil task dump: loop %p (%s), 1 task, ",
             (void *)loop, coil_loop_backend(loop));
    ASSERT_HAS(dump, head);
    static char sec[4096];
    assert_true(dump_section(dump, "napper", sec, sizeof(sec)));
    assert_null(strstr(sec, ", cpu "));
    char want[64];
    snprintf(want, sizeof(want), ", stack %zu bytes\n",
             coil_task_stack_size(t));
    ASSERT_HAS(sec, want);
    ASSERT_HAS(sec, "    spawned by: ");
    free(dump);
    coil_task_cancel(t);
    test_run_done(loop, t);
    coil_task_unref(t);
}

struct perm {
    coil_loop_t *loop;
    atomic_int running;
    int r;
};

static void perm_mark(void *arg)
{
    struct perm *p = arg;
    atomic_store(&p->running, 1);
}

static void *perm_thread(void *arg)
{
    struct perm *p = arg;
    p->r = coil_loop_run_forever(p->loop);
    return NULL;
}

static void test_dump_errors(void **state)
{
    coil_loop_t *loop = test_loop(state);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_non_null(m);
    assert_int_equal(coil_loop_dump_tasks(NULL, m), -EINVAL);
    assert_int_equal(coil_loop_dump_tasks(loop, NULL), -EINVAL);
    assert_int_equal(coil_dump_tasks(NULL), -EINVAL);
    assert_int_equal(coil_dump_tasks(m), -ESRCH); /* no loop runs here */
    fclose(m);
    free(buf);

    /* Writing fails: -EIO. */
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        assert_int_equal(coil_loop_dump_tasks(loop, full), -EIO);
        fclose(full);
    }

    /* Another thread's loop while it runs: -EPERM. */
    struct perm p = {.loop = loop, .r = 1};
    atomic_init(&p.running, 0);
    assert_int_equal(coil_loop_call_soon(loop, perm_mark, &p, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, perm_thread, &p), 0);
    for (int i = 0; i < 5000 && !atomic_load(&p.running); i++)
        sleep_ms(1);
    assert_true(atomic_load(&p.running));
    m = open_memstream(&buf, &len);
    assert_non_null(m);
    int r = coil_loop_dump_tasks(loop, m);
    fclose(m);
    free(buf);
    assert_int_equal(coil_loop_call_soon_threadsafe(loop, test_stop_cb, loop),
                     0);
    pthread_join(th, NULL);
    assert_int_equal(p.r, 0);
    assert_int_equal(r, -EPERM);

    /* A closed loop: -EBADF. */
    coil_loop_t *l2 = new_loop(false);
    assert_int_equal(coil_loop_close(l2), 0);
    m = open_memstream(&buf, &len);
    assert_non_null(m);
    assert_int_equal(coil_loop_dump_tasks(l2, m), -EBADF);
    fclose(m);
    free(buf);
    coil_loop_unref(l2);
}

/* The dump signal (SIGQUIT unless set): every running debug loop dumps to
 * stderr, between callbacks; the disposition goes back after the run. */
struct sigdump {
    bool installed;
    bool ignored;
    bool seen;
};

static bool disposition_is(int sig, void (*h)(int))
{
    struct sigaction sa;
    sigaction(sig, NULL, &sa);
    return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == h;
}

static bool disposition_default(int sig)
{
    return disposition_is(sig, SIG_DFL);
}

static int sigdump_body(void *arg)
{
    struct sigdump *s = arg;
    s->ignored = disposition_is(SIGQUIT, SIG_IGN);
    s->installed = !disposition_default(SIGQUIT) && !s->ignored;
    if (!s->installed)
        return 0; /* raising it would kill the test, or do nothing */
    raise(SIGQUIT);
    for (int i = 0; i < 2000 && !s->seen; i++) {
        coil_sleep(COIL_MSEC);
        s->seen =
            log_find("task dump (dump signal) follows on stderr", NULL) >= 0;
    }
    return 0;
}

static void test_dump_signal(void **state)
{
    coil_loop_t *loop = test_loop(state);
    /* From the default disposition (a background job starts with SIGQUIT
     * ignored); whatever it was goes back at the end. */
    struct sigaction before;
    sigaction(SIGQUIT, NULL, &before);
    signal(SIGQUIT, SIG_DFL);
    assert_int_equal(coil_set_dump_signal(SIGQUIT), 0);
    struct capture c;
    stderr_begin(&c);
    struct sigdump s = {false, false, false};
    coil_task_t *t = spawn_named(loop, sigdump_body, &s, "sigtask");
    int r = test_run_done(loop, t);
    static char out[65536];
    stderr_end(&c, out, sizeof(out));
    assert_int_equal(r, 0);
    assert_true(s.installed);
    assert_true(s.seen);
    ASSERT_HAS(out, "coil task dump: loop ");
    ASSERT_HAS(out, "'sigtask' suspended\n");
    ASSERT_HAS(out, "end of task dump\n");
    assert_true(disposition_default(SIGQUIT)); /* put back */
    assert_true(disposition_default(SIGURG));
    coil_task_unref(t);

    /* None (0): SIGQUIT is left alone. */
    assert_int_equal(coil_set_dump_signal(0), 0);
    s = (struct sigdump){false, false, false};
    t = spawn_named(loop, sigdump_body, &s, "sigtask2");
    assert_int_equal(test_run_done(loop, t), 0);
    assert_false(s.installed);
    coil_task_unref(t);

    /* A program that ignores it keeps ignoring it. */
    assert_int_equal(coil_set_dump_signal(SIGQUIT), 0);
    signal(SIGQUIT, SIG_IGN);
    s = (struct sigdump){false, false, false};
    t = spawn_named(loop, sigdump_body, &s, "sigtask3");
    assert_int_equal(test_run_done(loop, t), 0);
    struct sigaction now;
    sigaction(SIGQUIT, NULL, &now);
    signal(SIGQUIT, SIG_DFL);
    assert_true(s.ignored);
    assert_false(s.installed);
    assert_ptr_equal(now.sa_handler, SIG_IGN);
    coil_task_unref(t);

    /* What is refused. */
    assert_int_equal(coil_set_dump_signal(-1), -EINVAL);
    assert_int_equal(coil_set_dump_signal(NSIG), -EINVAL);
    assert_int_equal(coil_set_dump_signal(SIGKILL), -EINVAL);
    assert_int_equal(coil_set_dump_signal(SIGSTOP), -EINVAL);
    assert_int_equal(coil_set_dump_signal(SIGURG), -EINVAL);
    assert_int_equal(coil_set_dump_signal(SIGQUIT), 0);
    sigaction(SIGQUIT, &before, NULL);
}

/* ------------------------------------------------------------------ */
/* The quarantine                                                       */
/* ------------------------------------------------------------------ */

static void test_quarantine(void **state)
{
    coil_loop_t *loop = test_loop(state);
    coil_future_t *a, *b;
    assert_int_equal(coil_future_new(loop, &a), 0);
    coil_future_unref(a);
    /* Kept poisoned, not handed out again at once. */
    const unsigned char *p = (const unsigned char *)a;
    for (int i = 0; i < 16; i++)
        assert_int_equal(p[i], 0xdb);
    assert_int_equal(coil_future_new(loop, &b), 0);
    assert_ptr_not_equal(a, b);
    coil_future_unref(b);

    /* A task too. */
    coil_task_t *t = spawn_named(loop, idle_body, NULL, "brief");
    assert_int_equal(test_run_done(loop, t), 0);
    coil_task_unref(t);
    p = (const unsigned char *)t;
    for (int i = 0; i < 16; i++)
        assert_int_equal(p[i], 0xdb);
}

/* ------------------------------------------------------------------ */
/* Threads                                                              */
/* ------------------------------------------------------------------ */

/*
 * A loop made on one thread and run on another belongs to that one while
 * it runs, and to the thread that last ran it: its loop-only calls work
 * there without a misuse report, and back on the first thread after it
 * ran there again. (The task spawned never runs a step of its own, being
 * cancelled first: under TSan, switching to a task on a thread other than
 * the one that made the loop crashes TSan, the loop's scheduler context
 * keeping its maker's TSan fiber, src/context.c.)
 */
struct mover {
    coil_loop_t *loop;
    coil_future_t *fut;
    coil_task_t *t;
    int r, spawn_r, cancel_r, set_r;
};

static void mover_cb(void *arg)
{
    struct mover *m = arg;
    m->spawn_r = coil_task_spawn(m->loop, idle_body, NULL, &m->t);
    m->cancel_r = m->t ? coil_task_cancel(m->t) : 1;
    m->set_r = coil_future_set_result(m->fut, NULL);
}

static void *mover_main(void *arg)
{
    struct mover *m = arg;
    m->r = coil_loop_run_until_complete(m->loop, m->fut);
    return NULL;
}

static void test_loop_moves_thread(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct mover m = {loop, NULL, NULL, 1, 1, 1, 1};
    assert_int_equal(coil_future_new(loop, &m.fut), 0);
    assert_int_equal(coil_loop_call_soon(loop, mover_cb, &m, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, mover_main, &m), 0);
    pthread_join(th, NULL);
    assert_int_equal(m.r, 0);
    assert_int_equal(m.spawn_r, 0);
    assert_int_equal(m.cancel_r, 0);
    assert_int_equal(m.set_r, 0);
    /* Run here again (directly: until it does, the loop is the other
     * thread's, even for a call_later), and it is this thread's once
     * more. */
    assert_int_equal(coil_loop_run_until_complete(loop, coil_task_future(m.t)),
                     -ECANCELED);
    coil_future_t *f2;
    assert_int_equal(coil_future_new(loop, &f2), 0);
    assert_int_equal(coil_future_set_result(f2, NULL), 0);
    coil_future_unref(f2);
    coil_task_unref(m.t);
    coil_future_unref(m.fut);
}

/* ------------------------------------------------------------------ */
/* Misuse: the process aborts (forked children)                         */
/* ------------------------------------------------------------------ */

/* Run fn in a child with stderr to a pipe and the default hook; it must
 * die of SIGABRT after a fatal report holding want. */
static void expect_death(void (*fn)(void), const char *want)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        close(p[1]);
        signal(SIGALRM, SIG_DFL);
        alarm(under_valgrind() ? 60 : 10);
        coil_set_log_hook(NULL, NULL, COIL_LOG_INFO);
        fn();
        _exit(0); /* survived: the parent fails the test */
    }
    close(p[1]);
    static char out[16384];
    size_t len = 0;
    ssize_t r;
    while (len + 1 < sizeof(out) &&
           ((r = read(p[0], out + len, sizeof(out) - 1 - len)) > 0 ||
            (r < 0 && errno == EINTR)))
        if (r > 0)
            len += (size_t)r;
    out[len] = '\0';
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT &&
              strstr(out, "coil[fatal]: ") && strstr(out, want);
    if (!ok)
        fprintf(stderr, "child status %#x (want SIGABRT), stderr:\n%s\n",
                status, out);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(out, "coil[fatal]: "));
    assert_non_null(strstr(out, want));
}

static coil_loop_t *child_loop(void)
{
    coil_loop_t *loop;
    if (coil_loop_new(&loop) != 0 || coil_loop_set_debug(loop, true) != 0)
        _exit(2);
    return loop;
}

static void die_future_double_unref(void)
{
    coil_loop_t *loop = child_loop();
    coil_future_t *f;
    if (coil_future_new(loop, &f) != 0)
        _exit(2);
    coil_future_unref(f);
    coil_future_unref(f);
}

static void die_future_use_after_unref(void)
{
    coil_loop_t *loop = child_loop();
    coil_future_t *f;
    if (coil_future_new(loop, &f) != 0)
        _exit(2);
    coil_future_unref(f);
    coil_future_set_result(f, NULL);
}

static coil_task_t *child_finished_task(coil_loop_t *loop)
{
    coil_task_t *t;
    if (coil_task_spawn(loop, idle_body, NULL, &t) != 0 ||
        coil_loop_run_until_complete(loop, coil_task_future(t)) != 0)
        _exit(2);
    return t;
}

static void die_task_double_unref(void)
{
    coil_loop_t *loop = child_loop();
    coil_task_t *t = child_finished_task(loop);
    coil_task_unref(t);
    coil_task_unref(t);
}

static void die_task_use_after_unref(void)
{
    coil_loop_t *loop = child_loop();
    coil_task_t *t = child_finished_task(loop);
    coil_task_unref(t);
    coil_future_result(coil_task_future(t), NULL);
}

struct foreign {
    coil_loop_t *loop;
    coil_future_t *fut;
    coil_task_t *task;
    int what;
};

static void *foreign_main(void *arg)
{
    struct foreign *f = arg;
    switch (f->what) {
    case 0:
        coil_future_set_result(f->fut, NULL);
        break;
    case 1:
        coil_task_spawn(f->loop, idle_body, NULL, NULL);
        break;
    default:
        coil_task_cancel(f->task);
        break;
    }
    return NULL;
}

static void die_foreign(int what)
{
    struct foreign f = {child_loop(), NULL, NULL, what};
    if (coil_future_new(f.loop, &f.fut) != 0 ||
        coil_task_spawn(f.loop, idle_body, NULL, &f.task) != 0)
        _exit(2);
    pthread_t th;
    if (pthread_create(&th, NULL, foreign_main, &f) != 0)
        _exit(2);
    pthread_join(th, NULL);
}

static void die_foreign_set_result(void)
{
    die_foreign(0);
}

static void die_foreign_spawn(void)
{
    die_foreign(1);
}

static void die_foreign_cancel(void)
{
    die_foreign(2);
}

/* A loop group: loop 1's main completes a future of loop 0's. Loops of
 * a group are their threads' as any loop is. */
struct group_foreign {
    coil_loop_group_t *g;
    coil_future_t *fut;
    atomic_int ready;
};

static int group_foreign_main(void *arg)
{
    struct group_foreign *f = arg;
    coil_loop_t *loop = coil_running_loop();
    if (coil_loop_set_debug(loop, true) != 0)
        return -1;
    if (coil_loop_group_index(f->g, loop) == 0) {
        if (coil_future_new(loop, &f->fut) != 0)
            return -1;
        atomic_store(&f->ready, 1);
        return coil_sleep(10 * COIL_SEC);
    }
    while (!atomic_load(&f->ready))
        coil_sleep(COIL_MSEC);
    coil_future_set_result(f->fut, NULL); /* loop 0's future, here */
    return 0;
}

static void die_group_foreign(void)
{
    static struct group_foreign f;
    coil_loop_group_options_t opts = {.loops = 2};
    if (coil_loop_group_start(&opts, group_foreign_main, &f, &f.g) != 0)
        _exit(2);
    coil_loop_group_join(f.g);
}

static void test_misuse_double_unref(void **state)
{
    (void)state;
    expect_death(die_future_double_unref, "coil_future_unref(0x");
    expect_death(die_future_double_unref,
                 "the future or task was used after its last unref");
    expect_death(die_task_double_unref, "coil_future_unref(0x");
}

static void test_misuse_use_after_unref(void **state)
{
    (void)state;
    expect_death(die_future_use_after_unref, "coil_future_set_result(0x");
    expect_death(die_task_use_after_unref, "coil_future_result(0x");
}

static void test_misuse_foreign_thread(void **state)
{
    (void)state;
    expect_death(die_foreign_set_result,
                 "coil_future_set_result called on a thread that is not its "
                 "loop's");
    expect_death(die_foreign_spawn,
                 "coil_task_spawn called on a thread that is not its loop's");
    expect_death(die_foreign_cancel,
                 "coil_task_cancel called on a thread that is not its "
                 "loop's");
    expect_death(die_group_foreign,
                 "coil_future_set_result called on a thread that is not its "
                 "loop's");
}

/* ------------------------------------------------------------------ */
/* NULL arguments                                                       */
/* ------------------------------------------------------------------ */

static void test_null_arguments(void **state)
{
    (void)state;
    coil_loop_metrics_t m;
    size_t used;
    assert_int_equal(coil_set_log_hook(NULL, NULL, COIL_LOG_INFO), 0);
    assert_null(coil_log_level_name((coil_log_level_t)0));
    assert_int_equal(coil_loop_set_debug(NULL, true), -EINVAL);
    assert_int_equal(coil_loop_set_debug(NULL, false), -EINVAL);
    assert_false(coil_loop_debug(NULL));
    assert_int_equal(coil_loop_set_slow_duration(NULL, COIL_MSEC), -EINVAL);
    assert_int_equal(coil_loop_slow_duration(NULL), 0);
    assert_int_equal(coil_loop_hold(NULL), -EINVAL);
    assert_int_equal(coil_loop_release(NULL), -EINVAL);
    assert_int_equal(coil_loop_dump_tasks(NULL, stderr), -EINVAL);
    assert_int_equal(coil_dump_tasks(NULL), -EINVAL);
    assert_int_equal(coil_task_cpu_time(NULL), 0);
    assert_int_equal(coil_task_stack_used(NULL, &used), -EINVAL);
    assert_int_equal(coil_task_stack_used(NULL, NULL), -EINVAL);
    assert_int_equal(coil_loop_metrics(NULL, &m), -EINVAL);
    assert_int_equal(coil_loop_metrics(NULL, NULL), -EINVAL);
    /* The default hook takes a NULL loop and message (checked in
     * test_default_hook_line); back to the capture. */
    log_install(COIL_LOG_DEBUG);
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        T_PLAIN(test_mode_on_off),
        T_NOLOOP(test_mode_default_from_env),
        T_NOLOOP(test_level_names),
        T_NOLOOP(test_hook_levels),
        T_NOLOOP(test_default_hook_line),
        T_DEBUG(test_slow_callback),
        T_DEBUG(test_slow_callback_no_sample),
        T_PLAIN(test_slow_callback_not_in_plain_mode),
        T_PLAIN(test_slow_callback_enabled_while_running),
        T_PLAIN(test_watchdog_thread_fails_enabled_while_running),
        T_DEBUG(test_watchdog_thread_fails_at_run),
        T_DEBUG(test_slow_task_step),
        T_DEBUG(test_cpu_time),
        T_PLAIN(test_metrics),
        T_DEBUG(test_future_dropped_unread),
        T_DEBUG(test_future_read_not_reported),
        T_DEBUG(test_task_dropped_unread),
        T_DEBUG(test_swallowed_cancel),
        T_DEBUG(test_swallowed_cancel_uncancelled),
        T_DEBUG(test_close_unfinished),
        T_NOLOOP(test_close_pending_callbacks),
        T_DEBUG(test_stack_report),
        T_DEBUG(test_stack_used),
        T_PLAIN(test_cycle_two),
        T_DEBUG(test_cycle_two_debug),
        T_PLAIN(test_cycle_three),
        T_PLAIN(test_cycle_none),
        T_PLAIN(test_cycle_group),
        T_PLAIN(test_cycle_combinators),
        T_PLAIN(test_cycle_not_when_another_way_out),
        T_PLAIN(test_slow_timer_callback),
        T_PLAIN(test_server_handler_error_not_reported),
        T_PLAIN(test_cycle_self),
        T_DEBUG(test_stuck),
        T_DEBUG(test_stuck_event_and_join),
        T_DEBUG(test_stuck_run_forever_no_tasks),
        T_DEBUG(test_not_stuck_held),
        T_DEBUG(test_not_stuck_timer),
        T_DEBUG(test_not_stuck_fd),
        T_DEBUG_FAKE(test_dump_tree),
        T_DEBUG(test_dump_from_task),
        T_PLAIN(test_dump_plain),
        T_PLAIN(test_dump_errors),
        T_DEBUG(test_dump_signal),
        T_DEBUG(test_quarantine),
        T_DEBUG(test_loop_moves_thread),
        T_NOLOOP(test_misuse_double_unref),
        T_NOLOOP(test_misuse_use_after_unref),
        T_NOLOOP(test_misuse_foreign_thread),
        T_NOLOOP(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
