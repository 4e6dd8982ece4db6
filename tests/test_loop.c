/* SPDX-License-Identifier: MIT */
/*
 * test_loop.c - the loop's lifecycle and run modes: backends by name and
 * environment, running / closed states and their errors, stop before and
 * during a run, run_until_complete outcomes, the per-thread running loop,
 * the exception handler, references (ref/unref, one unref too many, a ref
 * after the last unref, the last unref while running), the stack size
 * limit of the options, and the guarantee that ready work never starves
 * I/O and timers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "loop_internal.h"

static void noop(void *arg)
{
    (void)arg;
}

static void test_backends(void **state)
{
    (void)state;
    coil_loop_t *loop = (coil_loop_t *)1;
    assert_true(coil_backend_available("poll"));
    assert_false(coil_backend_available("nope"));
    assert_false(coil_backend_available(NULL));
    coil_loop_options_t opts = {.backend = "nope"};
    assert_int_equal(coil_loop_new_opts(&opts, &loop), -EINVAL);
    assert_null(loop);
    assert_int_equal(coil_loop_new(NULL), -EINVAL);
    opts.backend = "poll";
    assert_int_equal(coil_loop_new_opts(&opts, NULL), -EINVAL);
    /* The other options are checked too. */
    loop = (coil_loop_t *)1;
    opts = (coil_loop_options_t){.context = "nope"};
    assert_int_equal(coil_loop_new_opts(&opts, &loop), -EINVAL);
    assert_null(loop);
    opts = (coil_loop_options_t){.stack_size = 1024};
    assert_int_equal(coil_loop_new_opts(&opts, &loop), -EINVAL);
    opts =
        (coil_loop_options_t){.context = "ucontext", .stack_size = 256 * 1024};
    assert_int_equal(coil_loop_new_opts(&opts, &loop), 0);
    coil_loop_unref(loop);
    assert_int_equal(coil_loop_new_opts(NULL, &loop), 0);
    coil_loop_unref(loop);
    static const char *const names[] = {"epoll", "io_uring", "kqueue",
                                        "poll"};
    for (int i = 0; i < 4; i++) {
        opts = (coil_loop_options_t){.backend = names[i]};
        int err = coil_loop_new_opts(&opts, &loop);
        if (coil_backend_available(names[i])) {
            assert_int_equal(err, 0);
            assert_string_equal(coil_loop_backend(loop), names[i]);
            coil_loop_unref(loop);
        } else {
            assert_int_equal(err, -ENOSYS);
            assert_null(loop);
        }
    }
    assert_null(coil_loop_backend(NULL));
}

static void test_backend_from_environment(void **state)
{
    (void)state;
    char *saved = getenv("COIL_BACKEND") ? strdup(getenv("COIL_BACKEND"))
                                         : NULL;
    coil_loop_t *loop;
    setenv("COIL_BACKEND", "poll", 1);
    assert_int_equal(coil_loop_new(&loop), 0);
    assert_string_equal(coil_loop_backend(loop), "poll");
    coil_loop_unref(loop);
    setenv("COIL_BACKEND", "bogus", 1);
    assert_int_equal(coil_loop_new(&loop), -EINVAL);
    assert_null(loop);
    if (saved) {
        setenv("COIL_BACKEND", saved, 1);
        free(saved);
    } else {
        unsetenv("COIL_BACKEND");
    }
}

/* What a callback sees of the loop that runs it. */
struct inside {
    coil_loop_t *loop;
    coil_loop_t *other;
    bool running;
    coil_loop_t *got;
    int rerun_err;
    int other_err;
    int close_err;
    int until_err;
};

static void look_inside(void *arg)
{
    struct inside *in = arg;
    in->running = coil_loop_is_running(in->loop);
    in->got = coil_running_loop();
    in->rerun_err = coil_loop_run_forever(in->loop);
    in->other_err = coil_loop_run_forever(in->other);
    in->close_err = coil_loop_close(in->loop);
    coil_future_t *fut;
    if (coil_future_new(in->loop, &fut) == 0) {
        in->until_err = coil_loop_run_until_complete(in->loop, fut);
        coil_future_unref(fut);
    }
    coil_loop_stop(in->loop);
}

static void test_running_state(void **state)
{
    struct fixture *f = *state;
    struct inside in = {.loop = f->loop};
    assert_int_equal(coil_loop_new(&in.other), 0);
    assert_null(coil_running_loop());
    assert_false(coil_loop_is_running(f->loop));
    assert_false(coil_loop_is_running(NULL));
    assert_false(coil_loop_is_closed(NULL));
    assert_int_equal(coil_loop_call_soon(f->loop, look_inside, &in, NULL), 0);
    test_run(f->loop);
    assert_true(in.running);
    assert_ptr_equal(in.got, f->loop);
    assert_int_equal(in.rerun_err, -EBUSY);
    assert_int_equal(in.other_err, -EBUSY); /* one running loop a thread */
    assert_int_equal(in.close_err, -EBUSY);
    assert_int_equal(in.until_err, -EBUSY);
    assert_false(coil_loop_is_running(f->loop));
    assert_null(coil_running_loop());
    /* The other loop is fine to run now. */
    assert_int_equal(
        coil_loop_call_soon(in.other, test_stop_cb, in.other, NULL), 0);
    test_run(in.other);
    coil_loop_unref(in.other);
}

static void test_closed_loop_errors(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(coil_loop_close(NULL), -EINVAL);
    assert_int_equal(coil_loop_close(f->loop), 0);
    assert_true(coil_loop_is_closed(f->loop));
    assert_int_equal(coil_loop_run_forever(f->loop), -EBADF);
    assert_int_equal(coil_loop_run_forever(NULL), -EINVAL);
    coil_future_t *fut = (coil_future_t *)1;
    assert_int_equal(coil_future_new(f->loop, &fut), -EBADF);
    assert_null(fut);
    assert_int_equal(coil_loop_call_soon(f->loop, noop, NULL, NULL), -EBADF);
    assert_int_equal(coil_loop_stop(NULL), -EINVAL);
}

/* Stop before run: one iteration runs (what is ready now), then return. */
struct stepper {
    coil_loop_t *loop;
    int a, b;
};

static void step_b(void *arg)
{
    ((struct stepper *)arg)->b++;
}

static void step_a(void *arg)
{
    struct stepper *s = arg;
    s->a++;
    coil_loop_call_soon(s->loop, step_b, s, NULL);
}

static void test_stop_before_run(void **state)
{
    struct fixture *f = *state;
    struct stepper s = {f->loop, 0, 0};
    assert_int_equal(coil_loop_call_soon(f->loop, step_a, &s, NULL), 0);
    assert_int_equal(coil_loop_stop(f->loop), 0);
    test_run(f->loop);
    assert_int_equal(s.a, 1);
    assert_int_equal(s.b, 0);
    /* The stop was consumed: the next run needs its own stop. */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(s.b, 1);
}

/* run_until_complete with each kind of outcome. */
struct completer {
    coil_future_t *fut;
    int how; /* 0 result, 1 error, 2 cancel, 3 stop the loop instead */
};

static void complete(void *arg)
{
    struct completer *c = arg;
    switch (c->how) {
    case 0:
        coil_future_set_result(c->fut, (void *)c);
        break;
    case 1:
        coil_future_set_error(c->fut, -ECONNRESET);
        break;
    case 2:
        coil_future_cancel(c->fut);
        break;
    default:
        coil_loop_stop(coil_future_loop(c->fut));
    }
}

static void test_run_until_complete(void **state)
{
    struct fixture *f = *state;
    static const int expect[] = {0, -ECONNRESET, -ECANCELED, -EINTR};
    for (int how = 0; how < 4; how++) {
        struct completer c = {NULL, how};
        assert_int_equal(coil_future_new(f->loop, &c.fut), 0);
        assert_int_equal(
            coil_loop_call_later(f->loop, COIL_MSEC, complete, &c, NULL), 0);
        assert_int_equal(coil_loop_run_until_complete(f->loop, c.fut),
                         expect[how]);
        if (how == 0) {
            void *v = NULL;
            assert_int_equal(coil_future_result(c.fut, &v), 0);
            assert_ptr_equal(v, &c);
        }
        assert_int_equal(coil_future_done(c.fut), how != 3);
        assert_false(coil_loop_is_running(f->loop));
        coil_future_unref(c.fut);
    }
}

static void test_run_until_complete_args(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *other;
    coil_future_t *fut, *done;
    assert_int_equal(coil_loop_new(&other), 0);
    assert_int_equal(coil_future_new(other, &fut), 0);
    assert_int_equal(coil_loop_run_until_complete(f->loop, fut), -EINVAL);
    assert_int_equal(coil_loop_run_until_complete(f->loop, NULL), -EINVAL);
    assert_int_equal(coil_loop_run_until_complete(NULL, fut), -EINVAL);
    /* An already-done future returns at once with its outcome. */
    assert_int_equal(coil_future_new(f->loop, &done), 0);
    assert_int_equal(coil_future_set_error(done, -EPIPE), 0);
    assert_int_equal(coil_loop_run_until_complete(f->loop, done), -EPIPE);
    coil_future_unref(done);
    coil_future_unref(fut);
    coil_loop_unref(other);
}

/* A future outlives a freed loop; its last reference frees the loop. */
static void test_future_outlives_loop(void **state)
{
    struct fixture *f = *state;
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    coil_loop_unref(f->loop);
    f->loop = NULL;
    assert_false(coil_future_done(fut));
    assert_int_equal(coil_future_set_result(fut, NULL), 0);
    assert_true(coil_future_done(fut));
    coil_future_unref(fut);
}

/*
 * References: coil_loop_ref gives the loop back and takes a reference, so
 * that two unrefs are needed before the loop closes. A future keeps the
 * memory alive to ask the loop whether it is closed after the last unref.
 */
static void test_loop_ref_unref(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *loop = f->loop;
    assert_null(coil_loop_ref(NULL));
    assert_ptr_equal(coil_loop_ref(loop), loop);
    coil_future_t *fut;
    assert_int_equal(coil_future_new(loop, &fut), 0);
    coil_loop_unref(loop);
    assert_false(coil_loop_is_closed(loop));
    /* Still fully usable on the reference ref took. */
    assert_int_equal(coil_loop_call_soon(loop, test_stop_cb, loop, NULL), 0);
    test_run(loop);
    coil_loop_unref(loop);
    f->loop = NULL;
    assert_ptr_equal(coil_future_loop(fut), loop);
    assert_true(coil_loop_is_closed(coil_future_loop(fut)));
    coil_future_unref(fut);
}

/* One unref too many, while a future keeps the memory: reported with
 * error 0 and ignored (the future's reference still frees everything). */
static void test_loop_unref_too_many(void **state)
{
    struct fixture *f = *state;
    coil_loop_t *loop = f->loop;
    struct exc_log log = {0};
    assert_null(coil_loop_exception_handler(loop, NULL));
    assert_int_equal(
        coil_loop_set_exception_handler(loop, test_exc_record, &log), 0);
    void *harg = NULL;
    assert_ptr_equal(coil_loop_exception_handler(loop, &harg),
                     test_exc_record);
    assert_ptr_equal(harg, &log);
    harg = &harg;
    assert_null(coil_loop_exception_handler(NULL, &harg));
    assert_null(harg);
    coil_future_t *fut;
    assert_int_equal(coil_future_new(loop, &fut), 0);
    coil_loop_unref(loop);
    f->loop = NULL;
    assert_true(coil_loop_is_closed(coil_future_loop(fut)));
    assert_int_equal(log.count, 0);
    coil_loop_unref(coil_future_loop(fut));
    assert_int_equal(log.count, 1);
    assert_int_equal(log.last_error, 0);
    assert_non_null(strstr(log.last_message, "coil_loop_unref"));
    /* Ignored: the loop is still there for the future, and a second
     * misuse is reported the same way. */
    assert_true(coil_loop_is_closed(coil_future_loop(fut)));
    coil_loop_unref(coil_future_loop(fut));
    assert_int_equal(log.count, 2);
    assert_int_equal(coil_future_set_result(fut, NULL), 0);
    assert_true(coil_future_done(fut));
    coil_future_unref(fut); /* frees the loop: the leak gate checks */
}

/* A ref on a loop whose last reference was dropped, reached through a
 * future that still holds its memory: refused (NULL) and reported; the
 * future's unref then frees everything. */
static void test_loop_ref_after_last_unref(void **state)
{
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    coil_future_t *fut;
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    coil_loop_unref(f->loop);
    f->loop = NULL;
    coil_loop_t *loop = coil_future_loop(fut);
    assert_non_null(loop);
    assert_null(coil_loop_ref(loop));
    assert_int_equal(log.count, 1);
    assert_int_equal(log.last_error, 0);
    assert_non_null(strstr(log.last_message, "coil_loop_ref"));
    assert_true(coil_loop_is_closed(loop));
    assert_int_equal(coil_future_set_error(fut, -EPIPE), 0);
    coil_future_unref(fut); /* the last holder: the loop goes with it */
}

/* Dropping the last reference from a callback of the running loop:
 * reported with -EBUSY and ignored (the loop goes on and stays open). A
 * reference that is not the last may be dropped while it runs. */
struct unref_running {
    coil_loop_t *loop;
    struct exc_log *log;
    coil_loop_t *ref;
    int reports_after_pair;
    int reports_after_last;
    bool closed_after;
    bool running_after;
    int later;
};

static void unref_later(void *arg)
{
    ((struct unref_running *)arg)->later++;
    coil_loop_stop(((struct unref_running *)arg)->loop);
}

static void unref_while_running(void *arg)
{
    struct unref_running *u = arg;
    u->ref = coil_loop_ref(u->loop);
    coil_loop_unref(u->loop); /* not the last: fine */
    u->reports_after_pair = u->log->count;
    coil_loop_unref(u->loop); /* the last: refused */
    u->reports_after_last = u->log->count;
    u->closed_after = coil_loop_is_closed(u->loop);
    u->running_after = coil_loop_is_running(u->loop);
    u->later = coil_loop_call_soon(u->loop, unref_later, u, NULL) ? -1 : 0;
}

static void test_loop_unref_last_while_running(void **state)
{
    struct fixture *f = *state;
    struct exc_log log = {0};
    struct unref_running u = {.loop = f->loop, .log = &log};
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    assert_int_equal(
        coil_loop_call_soon(f->loop, unref_while_running, &u, NULL), 0);
    test_run(f->loop);
    assert_ptr_equal(u.ref, f->loop);
    assert_int_equal(u.reports_after_pair, 0);
    assert_int_equal(u.reports_after_last, 1);
    assert_int_equal(log.count, 1);
    assert_int_equal(log.last_error, -EBUSY);
    assert_non_null(strstr(log.last_message, "coil_loop_unref"));
    assert_false(u.closed_after);
    assert_true(u.running_after);
    assert_int_equal(u.later, 1); /* the loop went on */
    assert_false(coil_loop_is_closed(f->loop));
    /* The reference is still there: usable, and the fixture's unref is
     * the last one (nothing reported, nothing leaked). */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
    assert_int_equal(coil_loop_set_exception_handler(f->loop, NULL, NULL), 0);
}

/* A default stack size above the 1 GiB limit is refused; the limit
 * itself is accepted. */
static void test_loop_stack_size_limit(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    assert_true(page > 0);
    static const size_t gib = (size_t)1 << 30;
    /* The last: a size whose low 32 bits are a fine size (not cut to an
     * int or unsigned on the way). */
    const size_t too_big[] = {gib + 1, gib + (size_t)page, SIZE_MAX,
                              SIZE_MAX > UINT32_MAX
                                  ? (size_t)(((uint64_t)1 << 32) + 256 * 1024)
                                  : SIZE_MAX};
    for (size_t i = 0; i < sizeof(too_big) / sizeof(*too_big); i++) {
        coil_loop_t *loop = (coil_loop_t *)1;
        coil_loop_options_t opts = {.stack_size = too_big[i]};
        assert_int_equal(coil_loop_new_opts(&opts, &loop), -EINVAL);
        assert_null(loop);
    }
    coil_loop_t *loop = NULL;
    coil_loop_options_t opts = {.stack_size = gib};
    assert_int_equal(coil_loop_new_opts(&opts, &loop), 0);
    assert_non_null(loop);
    coil_loop_unref(loop);
}

static void test_exception_handler(void **state)
{
    struct fixture *f = *state;
    struct exc_log log = {0};
    assert_int_equal(coil_loop_set_exception_handler(NULL, NULL, NULL),
                     -EINVAL);
    assert_int_equal(
        coil_loop_set_exception_handler(f->loop, test_exc_record, &log), 0);
    assert_int_equal(coil_loop_call_exception_handler(f->loop, -EIO, "boom"),
                     0);
    assert_int_equal(log.count, 1);
    assert_int_equal(log.last_error, -EIO);
    assert_string_equal(log.last_message, "boom");
    assert_int_equal(coil_loop_call_exception_handler(f->loop, -EIO, NULL),
                     -EINVAL);
    assert_int_equal(coil_loop_call_exception_handler(NULL, -EIO, "x"),
                     -EINVAL);
    assert_int_equal(log.count, 1);
    /* NULL restores the default, which prints instead of recording. */
    assert_int_equal(coil_loop_set_exception_handler(f->loop, NULL, NULL), 0);
    assert_int_equal(
        coil_loop_call_exception_handler(f->loop, -EIO, "(expected line)"), 0);
    assert_int_equal(log.count, 1);
}

/* The default handler writes one line to stderr: capture and check it. */
static void test_default_exception_handler(void **state)
{
    struct fixture *f = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
    coil_loop_default_exception_handler(f->loop, -EPIPE, "writing", NULL);
    coil_loop_default_exception_handler(f->loop, -EIO, NULL, NULL);
    /* With no handler set, calling the handler uses the default. */
    coil_loop_call_exception_handler(f->loop, -ECONNRESET, "via the loop");
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    char buf[512] = {0};
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "coil: writing: "));
    assert_non_null(strstr(buf, "(EPIPE)"));
    assert_non_null(strstr(buf, "coil: error: "));
    assert_non_null(strstr(buf, "coil: via the loop: "));
    assert_non_null(strstr(buf, "(ECONNRESET)"));
}

/*
 * Ready work never starves I/O or timers: a callback chain that would run
 * forever, a readable socket and a due timer. The reader and the timer
 * must fire within COIL__IO_INTERVAL + 1 hops of becoming ready.
 */
struct starve {
    coil_loop_t *loop;
    int fds[2];
    long hops;
    long reader_at, timer_at;
};

static void chain(void *arg)
{
    struct starve *s = arg;
    s->hops++;
    if ((s->reader_at >= 0 && s->timer_at >= 0) || s->hops > 1000000) {
        coil_loop_stop(s->loop);
        return;
    }
    coil_loop_call_soon(s->loop, chain, s, NULL);
}

static void starve_reader(void *arg)
{
    struct starve *s = arg;
    if (s->reader_at < 0)
        s->reader_at = s->hops;
    coil_loop_remove_reader(s->loop, s->fds[0]);
}

static void starve_timer(void *arg)
{
    struct starve *s = arg;
    s->timer_at = s->hops;
}

static void test_no_starvation(void **state)
{
    struct fixture *f = *state;
    struct starve s = {f->loop, {-1, -1}, 0, -1, -1};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s.fds), 0);
    assert_int_equal(write(s.fds[1], "x", 1), 1);
    assert_int_equal(coil_loop_add_reader(f->loop, s.fds[0], starve_reader, &s),
                     0);
    /* Due "now", but only seen when the loop polls and reads the clock. */
    assert_int_equal(coil_loop_call_later(f->loop, 0, starve_timer, &s, NULL),
                     0);
    /* Keep the queue non-empty from the start so the first poll is skipped
     * only as the interval allows. */
    assert_int_equal(coil_loop_call_soon(f->loop, chain, &s, NULL), 0);
    f->loop->ticks = 1; /* as if the loop had just polled */
    test_run(f->loop);
    assert_true(s.reader_at >= 0);
    assert_true(s.timer_at >= 0);
    assert_true(s.reader_at <= COIL__IO_INTERVAL + 1);
    assert_true(s.timer_at <= COIL__IO_INTERVAL + 1);
    close(s.fds[0]);
    close(s.fds[1]);
}

/* A loop freed with nothing pending releases everything (leak gate), and
 * a loop that is never run can be freed too. */
static void test_new_free(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        coil_loop_t *loop;
        assert_int_equal(coil_loop_new(&loop), 0);
        coil_loop_unref(loop);
    }
    coil_loop_unref(NULL);
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(coil_err_name(-ECANCELED), "ECANCELED");
    assert_string_equal(coil_err_name(ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(coil_err_name(-EAGAIN), "EAGAIN");
    assert_string_equal(coil_err_name(-99999), "EUNKNOWN");
    assert_string_equal(coil_err_name(0), "OK");
    assert_string_equal(coil_strerror(0), "Success");
    /* A timeout scope's expiry is no connection's. */
    assert_string_equal(coil_strerror(-ETIMEDOUT), "Timed out");
    assert_string_equal(coil_strerror(-ECANCELED), strerror(ECANCELED));
    assert_string_equal(coil_strerror(-ENOMEM), strerror(ENOMEM));
    assert_string_equal(coil_strerror(-99999), "Unknown error");
    assert_string_equal(coil_strerror(INT32_MIN), "Unknown error");
    assert_string_equal(coil_err_name(INT32_MIN), "EUNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_error_names),
        TEST_NOLOOP(test_backends),
        TEST_NOLOOP(test_backend_from_environment),
        TEST_NOLOOP(test_new_free),
        TEST(test_running_state),
        TEST(test_closed_loop_errors),
        TEST(test_stop_before_run),
        TEST(test_run_until_complete),
        TEST(test_run_until_complete_args),
        TEST(test_future_outlives_loop),
        TEST(test_loop_ref_unref),
        TEST(test_loop_unref_too_many),
        TEST(test_loop_ref_after_last_unref),
        TEST(test_loop_unref_last_while_running),
        TEST_NOLOOP(test_loop_stack_size_limit),
        TEST(test_exception_handler),
        TEST(test_default_exception_handler),
        TEST(test_no_starvation),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
