/* SPDX-License-Identifier: MIT */
/*
 * test_oom.c - allocation failure at every point of every constructor and
 * scheduling call. For N = 1, 2, ... the Nth allocation from the call's
 * start fails; the call must return -ENOMEM, leave its out-parameter NULL
 * and change nothing observable, until N is past the call's last
 * allocation and it succeeds. The fixture's leak gate then proves that
 * nothing leaked across all the attempts.
 */
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "loop_internal.h"

/* What a failed call must not change: the loop's pending work, the
 * objects it has handed out, its references. Caches a failed call grew
 * (pool slabs, the fd table, the heap array) may stay; the teardown's
 * leak gate proves they are all freed with the loop. */
struct snap {
    size_t ready, timers, handles, records, refs;
};

static struct snap snap(const coil_loop_t *loop)
{
    if (!loop)
        return (struct snap){0};
    return (struct snap){
        loop->ready.q.len, loop->timers.count,
        loop->ready.timer_pool.live + loop->ready.soonh_pool.live,
        loop->ready.soon_pool.live + loop->futures.pool.live, loop->refs};
}

static void assert_same(struct snap a, struct snap b)
{
    assert_int_equal(a.ready, b.ready);
    assert_int_equal(a.timers, b.timers);
    assert_int_equal(a.handles, b.handles);
    assert_int_equal(a.records, b.records);
    assert_int_equal(a.refs, b.refs);
}

static void noop(void *arg)
{
    (void)arg;
}

static void noop_done(coil_future_t *fut, void *arg)
{
    (void)fut;
    (void)arg;
}

/*
 * Run `op` (an expression giving an int) with the Nth allocation failing,
 * for N = 1.. until an attempt makes no failing allocation. `undo` runs
 * after a success. Every failure must be -ENOMEM and leave snap(loop) as
 * it was. Asserts the op really allocated at least once.
 */
#define SWEEP(loop, op, on_fail, undo)                                         \
    do {                                                                       \
        int failures = 0;                                                      \
        for (long n = 1; n < 200; n++) {                                       \
            struct snap before = snap(loop);                                   \
            test_alloc_fail_after(n);                                          \
            int err = (op);                                                    \
            bool hit = test_alloc_failed();                                    \
            test_alloc_fail_after(0);                                          \
            if (!hit) {                                                        \
                assert_int_equal(err, 0);                                      \
                undo;                                                          \
                break;                                                         \
            }                                                                  \
            failures++;                                                        \
            assert_int_equal(err, -ENOMEM);                                    \
            on_fail;                                                           \
            assert_same(before, snap(loop));                                   \
        }                                                                      \
        assert_true(failures > 0);                                             \
    } while (0)

static void test_loop_new(void **state)
{
    (void)state;
    coil_loop_t *loop = (coil_loop_t *)1;
    long live = test_alloc_live();
    SWEEP(NULL, coil_loop_new(&loop),
          (assert_null(loop), assert_int_equal(test_alloc_live(), live)),
          coil_loop_unref(loop));
}

/* The same with options: the ucontext switch allocates the scheduler's
 * own context as the loop's last step, so a failure there unwinds every
 * part made before it (the leak gate checks the fds too). */
static void test_loop_new_opts_ucontext(void **state)
{
    (void)state;
    coil_loop_options_t opts = {.context = "ucontext"};
    coil_loop_t *loop = (coil_loop_t *)1;
    long live = test_alloc_live();
    long failed = 0;
    SWEEP(NULL, coil_loop_new_opts(&opts, &loop),
          (assert_null(loop), assert_int_equal(test_alloc_live(), live),
           failed++),
          (assert_non_null(loop),
           assert_string_equal(loop->tasks.ctx_ops->name, "ucontext"),
           coil_loop_unref(loop)));
    /* The loop's own block and the scheduler's context at least. */
    assert_true(failed >= 2);
    assert_int_equal(test_alloc_live(), live);
}

static void test_call_soon(void **state)
{
    struct fixture *f = *state;
    /* The first call on a fresh loop fills the record pool. */
    SWEEP(f->loop, coil_loop_call_soon(f->loop, noop, NULL, NULL), (void)0,
          (void)0);
    coil_handle_t *h = (coil_handle_t *)1;
    SWEEP(f->loop, coil_loop_call_soon(f->loop, noop, NULL, &h), assert_null(h),
          coil_handle_unref(h));
    /* Both calls are queued exactly once: run them. */
    assert_int_equal(coil_loop_call_soon(f->loop, test_stop_cb, f->loop, NULL),
                     0);
    test_run(f->loop);
}

static void test_call_later(void **state)
{
    struct fixture *f = *state;
    coil_handle_t *h = (coil_handle_t *)1;
    SWEEP(f->loop, coil_loop_call_later(f->loop, COIL_SEC, noop, NULL, &h),
          assert_null(h), (coil_handle_cancel(h), coil_handle_unref(h)));
    /* The heap grows at 64, 128...: fail while growing it (distinct
     * deadlines, so that each timer needs a heap entry of its own). */
    coil_handle_t *hs[64];
    for (int i = 0; i < 64; i++)
        assert_int_equal(
            coil_loop_call_later(f->loop, COIL_SEC + i, noop, NULL, &hs[i]), 0);
    SWEEP(f->loop, coil_loop_call_at(f->loop, COIL_SEC, noop, NULL, &h),
          assert_null(h), (coil_handle_cancel(h), coil_handle_unref(h)));
    for (int i = 0; i < 64; i++) {
        coil_handle_cancel(hs[i]);
        coil_handle_unref(hs[i]);
    }
}

static void test_future(void **state)
{
    struct fixture *f = *state;
    coil_future_t *fut = (coil_future_t *)1;
    SWEEP(f->loop, coil_future_new(f->loop, &fut), assert_null(fut),
          coil_future_unref(fut));
    assert_int_equal(coil_future_new(f->loop, &fut), 0);
    SWEEP(f->loop, coil_future_add_done_callback(fut, noop_done, NULL), (void)0,
          (void)0);
    /* The failed attempts added nothing: exactly one callback is there. */
    assert_int_equal(coil_future_remove_done_callback(fut, noop_done, NULL), 1);
    coil_future_unref(fut);
}

static void test_add_reader(void **state)
{
    struct fixture *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    SWEEP(f->loop, coil_loop_add_reader(f->loop, sv[0], noop, NULL), (void)0,
          (void)0);
    assert_int_equal(coil_loop_remove_reader(f->loop, sv[0]), 1);
    /* A much higher fd number grows the table again. */
    int high = dup2(sv[1], 700);
    assert_int_equal(high, 700);
    SWEEP(f->loop, coil_loop_add_writer(f->loop, high, noop, NULL), (void)0,
          (void)0);
    assert_int_equal(coil_loop_remove_writer(f->loop, high), 1);
    close(high);
    close(sv[0]);
    close(sv[1]);
}

static void test_threadsafe(void **state)
{
    struct fixture *f = *state;
    SWEEP(f->loop, coil_loop_call_soon_threadsafe(f->loop, noop, NULL), (void)0,
          (void)0);
    assert_int_equal(
        coil_loop_call_later(f->loop, COIL_MSEC, test_stop_cb, f->loop, NULL),
        0);
    test_run(f->loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loop_new, test_setup_noloop,
                                        test_teardown_noloop),
        TEST_NOLOOP(test_loop_new_opts_ucontext),
        TEST(test_call_soon),
        TEST(test_call_later),
        TEST(test_future),
        TEST(test_add_reader),
        TEST(test_threadsafe),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
