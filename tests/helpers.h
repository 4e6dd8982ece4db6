/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what every coil test program shares:
 *
 *  - an allocator of its own installed for the whole program (it notes
 *    the largest request), and through the testing kit (coil/testing.h)
 *    the count of live allocations and a failure of the Nth allocation
 *    from now (test_alloc_fail_after);
 *  - the leak gate: test_setup() records the open fds and live
 *    allocations, test_teardown() frees the fixture loop and fails the test
 *    if any allocation or fd is left over;
 *  - a per-test alarm (COIL_TEST_TIMEOUT seconds, default 10, times
 *    COIL_TEST_TIMEOUT_MULTIPLIER) that names the hung test and aborts;
 *  - the report gate: test_setup() installs a log hook (coil/debug.h) that
 *    still prints every report, and test_teardown() fails the test if a
 *    report of level warning or above came that the test did not expect
 *    (test_allow_reports): in debug mode (COIL_DEBUG=1, a CI stage) the
 *    whole suite must run without an unexpected one. Slow steps are let
 *    through: they measure the machine (sanitizers, a loaded runner);
 *  - an exception-handler recorder;
 *  - the testing kit (coil/testing.h): operation faults and call counts
 *    (coil_test_fail, coil_test_calls, coil_test_reset_faults), which the
 *    tests use wherever an operation covers the call, and the virtual
 *    clock (coil_test_clock_virtual, coil_test_clock_advance);
 *  - access to the test build's internals: the syscall seam's calls no
 *    operation covers (src/sys.h).
 *
 * Tests run their tasks and callbacks first, recording what they saw, and
 * assert on the main stack afterwards (docs/testing.md).
 */
#ifndef COIL_TEST_HELPERS_H
#define COIL_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "coil.h"
/* The testing kit: faults on operations, call counts (coil_test_fail...). */
#include "coil/testing.h"

/* Internals of the test build (libcoil_testing). */
#include "internal.h"
#include "sys.h"

/* The fixture every test gets through *state. */
struct fixture {
    coil_loop_t *loop;
    long fds_before;
    long allocs_before;
};

/* Install the test allocator; call first thing in main(). */
void test_init(void);

/* cmocka setup/teardown: a fresh loop, then the leak gate. */
int test_setup(void **state);
int test_teardown(void **state);
/* Setup/teardown for tests that make their own loops: only the gate. */
int test_setup_noloop(void **state);

/* Let the current test make debug-mode reports (level warning and above)
 * whose message contains substring: a test that swallows a cancellation,
 * drops a failed task or closes a loop with work pending on purpose.
 * Up to 8 per test; cleared at the next setup. */
void test_allow_reports(const char *substring);
/* How many reports of level warning and above came since the setup. */
int test_reports_seen(void);
int test_teardown_noloop(void **state);

/* The allocator test_init installs. */
const coil_allocator_t *test_allocator(void);

/* Blocks currently allocated through coil's allocator. */
long test_alloc_live(void);
/* Make the nth allocation from now fail (1 = the next); 0 disarms. */
void test_alloc_fail_after(long nth);
/* Whether an injected failure happened since the last arm. */
bool test_alloc_failed(void);
/* The largest allocation (or reallocation) asked for since the last
 * reset; reset: start over from 0 (returns the value before). */
size_t test_alloc_largest(bool reset);

/* Wait until every executor worker thread has exited (and freed what it
 * held); fails the test after 10 s. The teardowns call it. */
void test_wait_executor_threads(void);

/* Open fds of this process. */
long test_fd_count(void);

/* Exception handler that records into a struct exc_log. */
struct exc_log {
    int count;
    int last_error;
    char last_message[256];
};
void test_exc_record(coil_loop_t *loop, int error, const char *message,
                     void *arg);

/* The backend the tests run on (COIL_BACKEND, or the default). */
const char *test_backend(void);
/* Whether that backend is the one named. */
bool test_on_backend(const char *name);
/* The syscall it waits with: the seam's call that COIL_TEST_POLL's fault
 * meets on this backend (for coil__fault_hit). */
enum coil__sys_call test_wait_call(void);

/* Run the loop until stopped, failing the test on error. */
void test_run(coil_loop_t *loop);

/* A callback that stops the loop passed as arg. */
void test_stop_cb(void *loop);

/* Setup with the virtual clock (autojump) on, with or without a loop. */
int test_setup_fake(void **state);
int test_setup_fake_noloop(void **state);

/*
 * Run the loop until fut is done (coil_loop_run_until_complete) or until
 * something stops it, with a safety stop a virtual day later so that a
 * wait that never ends fails the test instead of hanging it.
 */
int test_run_until(coil_loop_t *loop, coil_future_t *fut);
void test_run_stopped(coil_loop_t *loop);

/*
 * Run the loop until something stops it, with a safety stop ns later
 * (on whichever clock the loop runs). test_run_bounded fails the test
 * unless the run returned 0 and says whether the safety stop is what
 * ended it; test_run_bounded_err returns the run's code and sets *fired
 * (if not NULL) to that.
 */
bool test_run_bounded(coil_loop_t *loop, int64_t ns);
int test_run_bounded_err(coil_loop_t *loop, int64_t ns, bool *fired);

/* Spawn fn(arg), run the loop until it finishes and return its outcome:
 * its result (>= 0) or its error. Fails the test if a test_spawn made
 * during the run failed. */
int test_run_task(coil_loop_t *loop, coil_task_fn fn, void *arg);

/* Run the loop until t has finished (test_run_until), failing the test
 * if it has not; returns the run's code, which must be the task's
 * outcome code (0 for a result, else its error). */
int test_run_done(coil_loop_t *loop, coil_task_t *t);
/* A finished task's result (>= 0) or error. */
int test_task_outcome(coil_task_t *t);

/* Note, from inside a task (no asserting there), that something the test
 * relies on failed: test_run_task (and test_run_cancelled) fail the test
 * after the run. */
void test_task_failure(void);
/* Spawn from inside a task: a failure is noted (test_task_failure).
 * test_join awaits the task and drops the reference. */
coil_task_t *test_spawn(coil_loop_t *loop, coil_task_fn fn, void *arg);
void test_join(coil_task_t *task);

/* The fixture's loop (test_setup). */
coil_loop_t *test_loop(void **state);

/* A connected, non-blocking, close-on-exec Unix stream socket pair. */
void test_socketpair(int sv[2]);
/* A non-blocking, close-on-exec pipe. */
void test_pipe(int p[2]);
/* Close *fd if it is open and set it to -1; both ends of a pair. */
void test_close_fd(int *fd);
void test_close_pair(int sv[2]);
/* Write one byte ("x") to fd. */
void test_put_byte(int fd);
/* Whether fd is an open fd. */
bool test_fd_is_open(int fd);
/* Write to a non-blocking socket until it would block. */
void test_fill(int fd);
/* Read a non-blocking fd until it would block. */
void test_drain(int fd);
/* Move fd to the number want (which must be free; close-on-exec);
 * returns want. */
int test_move_fd(int fd, int want);
/* A new socketpair nb whose first end has the number num (free). */
void test_socketpair_at(int num, int nb[2]);
/* Close the pair sv, then make a new socketpair nb whose first end has
 * the number sv[0] had. Returns that number. */
int test_close_and_reuse(int sv[2], int nb[2]);

/*
 * Chaos I/O (COIL_CHAOS_IO=<seed>, see src/fault.c) makes socket calls
 * move short, random lengths and fail with EAGAIN now and then. A test
 * that checks exact syscall counts or exact lengths from one call calls
 * this first: chaos stays off until the test ends.
 */
void test_exact_io(void);

/* Byte i of a reproducible test payload (seed picks the variant). */
unsigned char test_pattern(size_t i, unsigned seed);

/* Fails unless the loop has no unfinished task. */
void test_assert_no_tasks(coil_loop_t *loop);

/*
 * Whether RLIMIT_NOFILE can be lowered so that new fds fail with EMFILE
 * while open ones stay usable (not under valgrind, which emulates the
 * limit badly). Restores the limit.
 */
bool test_nofile_limit_works(void);

/* Whether the IPv6 loopback address (::1) can be bound here. */
bool test_ipv6_loopback(void);

/* The groups that need them, each run only where it can (TEST_RUN_IF). */
#define TEST_RUN_IF_IPV6(tests)                                                \
    TEST_RUN_IF(test_ipv6_loopback(), "no ::1 loopback here", tests)
#define TEST_RUN_IF_NOFILE(tests)                                              \
    TEST_RUN_IF(test_nofile_limit_works(),                                     \
                "RLIMIT_NOFILE cannot be lowered usefully here (valgrind?)",   \
                tests)

/*
 * Run a group of tests that apply only sometimes (one backend, IPv6, a
 * lowerable fd limit...). When they do not apply they are not registered
 * at all, and a line says why: never counted as passed. Returns the
 * failures.
 */
int test_run_if(bool applies, const char *why, const char *group,
                const struct CMUnitTest *tests, size_t n);
#define TEST_RUN_IF(applies, why, tests)                                       \
    test_run_if((applies), (why), #tests, (tests),                             \
                sizeof(tests) / sizeof(*(tests)))

/* Whether the tests run on the epoll backend. */
#define TEST_ON_EPOLL test_on_backend("epoll")

/*
 * Registration, one line per test: a fresh loop and the leak gate
 * (TEST), the same on the virtual clock with autojump (TEST_FAKE), the
 * leak gate alone for tests that make their own loops (TEST_NOLOOP,
 * TEST_FAKE_NOLOOP).
 */
#define TEST(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)
#define TEST_FAKE(fn)                                                          \
    cmocka_unit_test_setup_teardown(fn, test_setup_fake, test_teardown)
#define TEST_NOLOOP(fn)                                                        \
    cmocka_unit_test_setup_teardown(fn, test_setup_noloop, test_teardown_noloop)
#define TEST_FAKE_NOLOOP(fn)                                                   \
    cmocka_unit_test_setup_teardown(fn, test_setup_fake_noloop,                \
                                    test_teardown_noloop)

/* A callback (call_soon/call_later) that cancels task, recording what
 * coil_task_cancel returned and how often it ran. */
struct test_canceller {
    coil_task_t *task;
    int result;
    int calls;
};
void test_cancel_cb(void *canceller);

/*
 * Spawn fn(arg), cancel it delay ns later (test_cancel_cb) and run the
 * loop until it has finished, failing the test unless the cancel ran
 * once and coil_task_cancel returned 0. Returns its outcome (as
 * test_run_task); out: NULL, or where the task goes for the caller to
 * inspect and unref.
 */
int test_run_cancelled(coil_loop_t *loop, coil_task_fn fn, void *arg,
                       int64_t delay, coil_task_t **out);

#endif /* COIL_TEST_HELPERS_H */
