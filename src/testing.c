/* SPDX-License-Identifier: MIT */
/*
 * testing.c - the testing kit (coil/testing.h): the fixture that runs a
 * body in a fresh loop and counts what it left behind, the virtual
 * clock, allocation and operation faults. Compiled only into the testing
 * build of the library (with the fault seam of sys.h/fault.c); it uses
 * the loop's internals only to count what is pending.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coil/testing.h"
#include "debug_internal.h"
#include "loop_internal.h"
#include "sys.h"
#include "testing_internal.h"

/* ------------------------------------------------------------------ */
/* Operations and the seam's calls                                      */
/* ------------------------------------------------------------------ */

/* The seam's calls behind each operation (sys.h), -1 ended. */
static const int op_calls[COIL_TEST_OP_COUNT][5] = {
    [COIL_TEST_ACCEPT] = {COIL__SYS_ACCEPT, -1},
    [COIL_TEST_CONNECT] = {COIL__SYS_CONNECT, -1},
    [COIL_TEST_RECV] = {COIL__SYS_RECV, -1},
    [COIL_TEST_SEND] = {COIL__SYS_SEND, -1},
    [COIL_TEST_RECVFROM] = {COIL__SYS_RECVFROM, -1},
    [COIL_TEST_SENDTO] = {COIL__SYS_SENDTO, -1},
    [COIL_TEST_SENDFILE] = {COIL__SYS_SENDFILE, -1},
    [COIL_TEST_SPAWN] = {COIL__SYS_SPAWN, -1},
    [COIL_TEST_POLL] = {COIL__SYS_EPOLL_WAIT, COIL__SYS_POLL,
                        COIL__SYS_KEVENT, COIL__SYS_IO_URING_ENTER, -1},
    [COIL_TEST_WAKEUP] = {COIL__SYS_EVENTFD, -1},
    [COIL_TEST_PIPE] = {COIL__SYS_PIPE, -1},
    [COIL_TEST_STACK] = {COIL__SYS_MMAP, -1},
    [COIL_TEST_THREAD] = {COIL__SYS_THREAD, -1},
};

static bool op_valid(coil_test_op_t op)
{
    return (int)op >= 0 && op < COIL_TEST_OP_COUNT;
}

int coil_test_fail(coil_test_op_t op, unsigned nth, unsigned count,
                   int error)
{
    if (!op_valid(op) || nth == 0 || error >= 0 || error == INT_MIN)
        return -EINVAL;
    for (const int *c = op_calls[op]; *c >= 0; c++)
        coil__fault_arm((enum coil__sys_call)*c, nth,
                        count ? count : UINT_MAX, -error);
    return 0;
}

unsigned coil_test_calls(coil_test_op_t op)
{
    if (!op_valid(op))
        return 0;
    unsigned n = 0;
    for (const int *c = op_calls[op]; *c >= 0; c++)
        n += coil__fault_calls((enum coil__sys_call)*c);
    return n;
}

void coil_test_seed(unsigned long seed, bool chaos_io)
{
    coil__seeds_set(seed, chaos_io ? seed : 0, seed);
}

int coil_test_record_begin(const char *path)
{
    return coil__rr_begin(path, false);
}

int coil_test_replay_begin(const char *path)
{
    return coil__rr_begin(path, true);
}

int coil_test_record_end(uint64_t *entries, char *why, size_t why_len)
{
    if (entries)
        *entries = 0;
    if (why && why_len)
        why[0] = '\0';
    return coil__rr_end(entries, why, why_len);
}

uint64_t coil_test_trace_hash(uint64_t *events)
{
    return coil__trace_hash(events);
}

void coil_test_trace_reset(void)
{
    coil__trace_reset();
}

void coil_test_reset_faults(void)
{
    coil__fault_reset();
    coil__alloc_fail_random(0, 0);
    coil__alloc_fail_after(0);
}

/* ------------------------------------------------------------------ */
/* Allocations and the clock                                            */
/* ------------------------------------------------------------------ */

void coil_test_alloc_fail_after(long nth)
{
    coil__alloc_fail_after(nth);
}

int coil_test_alloc_fail_random(unsigned per_million, unsigned long seed)
{
    if (per_million > 1000000)
        return -EINVAL;
    coil__alloc_fail_random(per_million, seed);
    return 0;
}

bool coil_test_alloc_failed(void)
{
    return coil__alloc_failed();
}

long coil_test_alloc_live(void)
{
    return coil__alloc_live();
}

void coil_test_clock_virtual(bool on, bool autojump)
{
    coil__clock_fake(on, autojump);
}

void coil_test_clock_advance(int64_t ns)
{
    if (ns > 0)
        coil__clock_advance(ns);
}

/* ------------------------------------------------------------------ */
/* The fixture                                                          */
/* ------------------------------------------------------------------ */

/* Reports of the run, from the log hook and the exception handler. */
struct run {
    coil_test_result_t *out;
    pthread_mutex_t lock;
    coil_task_t *task;
    coil_loop_t *loop;
    coil_handle_t *timer;
    int cancels;          /* sent since the timeout */
    bool timed_out;
    coil_log_fn prev_fn;
    void *prev_arg;
    coil_log_level_t prev_level;
};

/* A run is in progress (one at a time, in the whole process). */
static atomic_bool running;

static void note(struct run *r, const char *message)
{
    pthread_mutex_lock(&r->lock);
    if (r->out->reports++ == 0)
        snprintf(r->out->first_report, sizeof(r->out->first_report), "%s",
                 message);
    pthread_mutex_unlock(&r->lock);
}

static void on_log(coil_log_level_t level, coil_loop_t *loop,
                   const char *message, void *arg)
{
    struct run *r = arg;
    if (level >= r->prev_level) { /* what the program's hook would see */
        if (r->prev_fn)
            r->prev_fn(level, loop, message, r->prev_arg);
        else
            coil_log_default(level, loop, message, NULL);
    }
    /* A slow step measures the machine (a loaded runner, the
     * sanitizers), not the code: shown, not counted. */
    if (level >= COIL_LOG_WARNING &&
        strncmp(message, COIL__SLOW_STEP_REPORT,
                sizeof(COIL__SLOW_STEP_REPORT) - 1) != 0)
        note(r, message);
}

static void on_exception(coil_loop_t *loop, int error, const char *message,
                         void *arg)
{
    coil_loop_default_exception_handler(loop, error, message, NULL);
    note(arg, message);
}

/* Cancels sent to a body past its time, 100 ms (loop time) apart, before
 * it is given up on: stopped and abandoned with the loop. */
#define CANCELS 10

static void on_timeout(void *arg)
{
    struct run *r = arg;
    coil_handle_unref(r->timer);
    r->timer = NULL;
    if (coil_future_done(coil_task_future(r->task)))
        return; /* it finished in the same batch */
    r->timed_out = true;
    if (++r->cancels > CANCELS) {
        coil_loop_stop(r->loop); /* it ignores them: given up on */
        return;
    }
    (void)coil_task_cancel(r->task);
    (void)coil_loop_call_later(r->loop, 100 * COIL_MSEC, on_timeout, r,
                               &r->timer);
}

static void stop_cb(void *arg)
{
    coil_loop_stop(arg);
}

/* Run what is ready and what I/O has come (a stream's close finishing, a
 * TLS goodbye, the record of a cancelled call_soon), up to SETTLE rounds
 * of the loop, none of which waits; returns how many callbacks are ready
 * still: a chain that never ends. */
#define SETTLE 100

static size_t settle(coil_loop_t *loop)
{
    for (int round = 0; round < SETTLE && (coil__ready_len(loop) ||
                                           coil__timers_pending(loop));
         round++) {
        /* A timer due now, not a call_soon: the round polls (without
         * waiting) before it stops. */
        coil_handle_t *h = NULL;
        if (coil_loop_call_later(loop, 0, stop_cb, loop, &h) != 0)
            break;
        (void)coil_loop_run_forever(loop);
        coil_handle_cancel(h);
        coil_handle_unref(h);
    }
    return coil__ready_len(loop);
}

/* Cancel what the body left and run until it finished, a few rounds of
 * a loop-time second each; what still runs then ignores cancellation
 * and is abandoned by the close. Returns how many are left. */
struct finish {
    coil_loop_t *loop;
    int64_t until;
    coil_handle_t *h;
};

/* Every 10 ms of loop time: stop once every task is done, or the round's
 * second is up. */
static void finish_check(void *arg)
{
    struct finish *f = arg;
    coil_handle_unref(f->h);
    f->h = NULL;
    if (coil_loop_tasks(f->loop, NULL, 0) == 0 ||
        coil_loop_time(f->loop) >= f->until ||
        coil_loop_call_later(f->loop, 10 * COIL_MSEC, finish_check, f,
                             &f->h) != 0)
        coil_loop_stop(f->loop);
}

static int finish_leftovers(coil_loop_t *loop)
{
    int left = coil_loop_tasks(loop, NULL, 0);
    for (int round = 0; round < 4 && left > 0; round++) {
        coil_task_t *tasks[64];
        int n = coil_loop_tasks(loop, tasks, 64);
        for (int i = 0; i < n && i < 64; i++) {
            (void)coil_task_cancel(tasks[i]);
            coil_task_unref(tasks[i]);
        }
        struct finish f = {loop, coil_loop_time(loop) + COIL_SEC, NULL};
        if (coil_loop_call_soon(loop, finish_check, &f, &f.h) != 0)
            break;
        (void)coil_loop_run_forever(loop);
        if (f.h) {
            coil_handle_cancel(f.h);
            coil_handle_unref(f.h);
        }
        left = coil_loop_tasks(loop, NULL, 0);
    }
    return left;
}

extern atomic_int coil__executor_threads;

void coil__test_wait_executor_threads(void)
{
    for (int i = 0; i < 10000 && atomic_load(&coil__executor_threads); i++)
        usleep(1000);
}

static void describe(coil_test_result_t *out, bool timed_out)
{
    char *m = out->message;
    size_t n = sizeof(out->message), off = 0;
#define ADD(...)                                                               \
    do {                                                                       \
        int w = snprintf(m + off, n - off, __VA_ARGS__);                       \
        if (w > 0)                                                             \
            off = off + (size_t)w < n ? off + (size_t)w : n - 1;               \
    } while (0)
    if (timed_out)
        ADD("the body ran out of time; ");
    else if (out->outcome < 0)
        ADD("the body failed: %s; ", coil_err_name(out->outcome));
    if (out->tasks_left)
        ADD("%d task%s left unfinished; ", out->tasks_left,
            out->tasks_left == 1 ? "" : "s");
    if (out->callbacks_left)
        ADD("%zu callback%s pending; ", out->callbacks_left,
            out->callbacks_left == 1 ? "" : "s");
    if (out->timers_left)
        ADD("%zu timer%s pending; ", out->timers_left,
            out->timers_left == 1 ? "" : "s");
    if (out->allocations_left)
        ADD("%ld allocation%s not freed; ", out->allocations_left,
            out->allocations_left == 1 ? "" : "s");
    if (out->fds_left)
        ADD("%ld fd%s not closed; ", out->fds_left,
            out->fds_left == 1 ? "" : "s");
    if (out->reports)
        ADD("%d report%s, the first: %s; ", out->reports,
            out->reports == 1 ? "" : "s", out->first_report);
#undef ADD
    if (off >= 2 && m[off - 2] == ';')
        m[off - 2] = '\0';
}

int coil_test_run(coil_task_fn body, void *arg,
                  const coil_test_options_t *opts, coil_test_result_t *out)
{
    coil_test_result_t local;
    if (!out)
        out = &local;
    memset(out, 0, sizeof(*out));
    coil_test_options_t o = opts ? *opts : (coil_test_options_t){0};
    if (!body || (o.record_path && o.replay_path))
        return -EINVAL;
    if (coil_running_loop() || atomic_exchange(&running, true))
        return -EBUSY;
    int64_t limit = o.timeout_ns > 0 ? o.timeout_ns : 10 * COIL_SEC;

    unsigned long seed = o.seed;
    const char *env = getenv("COIL_TEST_SEED");
    if (env && *env)
        seed = strtoul(env, NULL, 0);
    unsigned long shuffle0 = coil__shuffle_seed(),
                  chaos0 = coil__chaos_seed(), sched0 = coil__sched_seed();
    if (seed)
        coil_test_seed(seed, o.chaos_io);
    else
        coil__chaos_restart(); /* the environment's from their start */
    coil__trace_reset();
    out->seed = seed;

    int stubborn = 0;
    long fds0 = coil__fd_count();
    long allocs0 = coil__alloc_live();
    struct run r = {.out = out};
    pthread_mutex_init(&r.lock, NULL);
    coil__log_hook_get(&r.prev_fn, &r.prev_arg, &r.prev_level);
    coil_log_level_t prev_level = r.prev_level;
    coil_set_log_hook(on_log, &r,
                      prev_level < COIL_LOG_WARNING ? prev_level
                                                    : COIL_LOG_WARNING);
    if (o.virtual_clock)
        coil__clock_fake(true, true);

    /* Recording or replaying from the loop's birth to its close. */
    const char *rr_path = o.replay_path ? o.replay_path : o.record_path;
    int rr_err = 0;
    char rr_why[200] = "";
    coil_loop_t *loop;
    int err = rr_path ? coil__rr_begin(rr_path, o.replay_path != NULL) : 0;
    if (err) {
        rr_path = NULL;
        goto out;
    }
    if ((err = coil_loop_new(&loop)) != 0)
        goto out;
    coil_loop_set_exception_handler(loop, on_exception, &r);
    if (o.debug && (err = coil_loop_set_debug(loop, true)) != 0) {
        coil_loop_unref(loop);
        goto out;
    }
    r.loop = loop;
    if ((err = coil_task_spawn(loop, body, arg, &r.task)) != 0 ||
        (err = coil_loop_call_later(loop, limit, on_timeout, &r,
                                    &r.timer)) != 0) {
        coil_task_unref(r.task);
        coil_loop_unref(loop);
        goto out;
    }
    err = coil_loop_run_until_complete(loop, coil_task_future(r.task));
    if (r.timer) {
        coil_handle_cancel(r.timer);
        coil_handle_unref(r.timer);
        r.timer = NULL;
    }
    coil_test_reset_faults(); /* the body's: not the cleanup's */
    void *value = NULL;
    int outcome = coil_future_result(coil_task_future(r.task), &value);
    out->outcome = outcome == -EINPROGRESS ? err
                   : outcome == 0         ? (int)(intptr_t)value
                                          : outcome;
    out->trace_hash = coil__trace_hash(&out->trace_events);
    /* What the body left: counted, then cleaned up (cancelled tasks
     * finish; the close drops the rest). */
    out->tasks_left = coil_loop_tasks(loop, NULL, 0);
    out->callbacks_left = settle(loop);
    out->timers_left = coil__timers_pending(loop);
    stubborn = out->tasks_left ? finish_leftovers(loop) : 0;
    coil_task_unref(r.task);
    coil_loop_close(loop);
    coil_loop_unref(loop);
    coil__test_wait_executor_threads();
    out->allocations_left = coil__alloc_live() - allocs0;
    out->fds_left = coil__fd_count() - fds0;
    err = 0;

out:
    if (rr_path)
        rr_err = coil__rr_end(&out->record_entries, rr_why, sizeof(rr_why));
    if (o.virtual_clock)
        coil__clock_fake(false, false);
    coil_test_reset_faults(); /* what the body armed ends with it */
    coil__seeds_set(shuffle0, chaos0, sched0);
    atomic_store(&running, false);
    coil_set_log_hook(r.prev_fn, r.prev_arg, prev_level);
    pthread_mutex_destroy(&r.lock);
    if (err)
        return err;
    describe(out, r.timed_out);
    if (stubborn) {
        size_t len = strlen(out->message);
        snprintf(out->message + len, sizeof(out->message) - len,
                 "%s%d task%s ignored cancellation and %s abandoned",
                 len ? "; " : "", stubborn, stubborn == 1 ? "" : "s",
                 stubborn == 1 ? "was" : "were");
    }
    if (rr_err) {
        size_t len = strlen(out->message);
        snprintf(out->message + len, sizeof(out->message) - len,
                 "%s%s %s: %s", len ? "; " : "",
                 o.replay_path ? "the replay of" : "recording to", rr_path,
                 rr_why[0] ? rr_why : coil_err_name(rr_err));
        return rr_err;
    }
    int ret = r.timed_out ? -ETIMEDOUT
              : out->tasks_left || out->callbacks_left || out->timers_left ||
                      out->allocations_left || out->fds_left || out->reports
                  ? -ENOTEMPTY
              : out->outcome < 0 ? out->outcome
                                 : 0;
    if (ret && seed && !o.replay_path) { /* a replay's is the record's */
        size_t len = strlen(out->message);
        snprintf(out->message + len, sizeof(out->message) - len,
                 " (seed %lu: rerun with COIL_TEST_SEED=%lu)", seed, seed);
    }
    if (ret && o.record_path) {
        size_t len = strlen(out->message);
        snprintf(out->message + len, sizeof(out->message) - len,
                 " (recorded to %s: replay it with replay_path)",
                 o.record_path);
    }
    return ret;
}

int coil_test_run_seeds(coil_task_fn body, void *arg,
                        const coil_test_options_t *opts, unsigned long first,
                        unsigned count, coil_test_result_t *out)
{
    coil_test_result_t local;
    if (!out)
        out = &local;
    if (!body || first == 0 || count == 0 || first > ULONG_MAX - count) {
        memset(out, 0, sizeof(*out));
        return -EINVAL;
    }
    coil_test_options_t o = opts ? *opts : (coil_test_options_t){0};
    const char *env = getenv("COIL_TEST_SEED");
    if (env && *env)
        count = 1; /* a rerun of the one seed named (coil_test_run) */
    int err = 0;
    for (unsigned i = 0; i < count; i++) {
        o.seed = first + i;
        if ((err = coil_test_run(body, arg, &o, out)) != 0)
            break;
    }
    return err;
}
