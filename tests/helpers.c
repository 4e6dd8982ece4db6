/* SPDX-License-Identifier: MIT */
/*
 * helpers.c - see helpers.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil/testing.h"
#include "helpers.h"
#include "testing_internal.h"

static atomic_size_t largest; /* the largest request since the reset */

static void note_size(size_t size)
{
    size_t cur = atomic_load(&largest);
    while (size > cur && !atomic_compare_exchange_weak(&largest, &cur, size))
        ;
}

/* The program's allocator: malloc, noting the largest request. Counting
 * live blocks and failing the nth allocation are the testing kit's
 * (coil/testing.h), under whatever allocator is installed. */
static void *t_malloc(size_t size, void *ctx)
{
    (void)ctx;
    note_size(size);
    return malloc(size);
}

static void *t_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    note_size(size);
    return realloc(ptr, size);
}

static void t_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

long test_alloc_live(void)
{
    return coil_test_alloc_live();
}

void test_alloc_fail_after(long nth)
{
    coil_test_alloc_fail_after(nth);
}

bool test_alloc_failed(void)
{
    return coil_test_alloc_failed();
}

size_t test_alloc_largest(bool reset)
{
    return reset ? atomic_exchange(&largest, 0) : atomic_load(&largest);
}

long test_fd_count(void)
{
    return coil__fd_count(); /* the kit's count (src/fd.c) */
}

static const char *current_test = "?";

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "\ncoil test: timed out: ";
    write(2, msg, sizeof(msg) - 1);
    write(2, current_test, strlen(current_test));
    write(2, "\n", 1);
    abort();
}

static unsigned timeout_seconds(void)
{
    const char *t = getenv("COIL_TEST_TIMEOUT");
    const char *m = getenv("COIL_TEST_TIMEOUT_MULTIPLIER");
    double s = t ? atof(t) : 10;
    double k = m ? atof(m) : 1;
    if (s <= 0)
        s = 10;
    if (k <= 0)
        k = 1;
    return (unsigned)(s * k + 0.5);
}

static const coil_allocator_t counting = {t_malloc, t_realloc, t_free, NULL};

const coil_allocator_t *test_allocator(void)
{
    return &counting;
}

void test_init(void)
{
    if (coil_set_allocator(&counting) != 0) {
        fprintf(stderr, "test_init: could not install the allocator\n");
        exit(1);
    }
    setvbuf(stdout, NULL, _IONBF, 0); /* a hung test still names itself */
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "[ backend  ] %s\n", test_backend());
    /* A kernel that refuses io_uring (a container's seccomp filter,
     * kernel.io_uring_disabled) would run this program on epoll, under
     * io_uring's name: say so and let ctest count it skipped. */
    if (strcmp(test_backend(), "io_uring") == 0 &&
        !coil_backend_available("io_uring")) {
        fprintf(stderr, "[ SKIPPED  ] the kernel refuses io_uring here\n");
        exit(77);
    }
    if (coil__chaos_seed())
        fprintf(stderr, "[ chaos io ] seed %lu (COIL_CHAOS_IO)\n",
                coil__chaos_seed());
    if (coil__shuffle_seed())
        fprintf(stderr, "[ shuffle  ] seed %lu (COIL_SHUFFLE)\n",
                coil__shuffle_seed());
}

void test_exact_io(void)
{
    coil__chaos_pause(true);
}

const char *test_backend(void)
{
    const char *b = getenv("COIL_BACKEND");
    if (b && *b)
        return b;
    coil_loop_t *loop;
    static char name[16];
    if (!name[0] && coil_loop_new(&loop) == 0) {
        snprintf(name, sizeof(name), "%s", coil_loop_backend(loop));
        coil_loop_unref(loop);
    }
    return name;
}

bool test_on_backend(const char *name)
{
    return strcmp(test_backend(), name) == 0;
}

enum coil__sys_call test_wait_call(void)
{
    if (test_on_backend("epoll"))
        return COIL__SYS_EPOLL_WAIT;
    if (test_on_backend("kqueue"))
        return COIL__SYS_KEVENT;
    if (test_on_backend("io_uring"))
        return COIL__SYS_IO_URING_ENTER;
    return COIL__SYS_POLL;
}

/* ------------------------------------------------------------------ */
/* The report gate                                                      */
/* ------------------------------------------------------------------ */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *gate_allowed[8];
static int gate_nallowed, gate_seen, gate_unexpected;
static char gate_first[512];

static void gate_hook(coil_log_level_t level, coil_loop_t *loop,
                      const char *message, void *arg)
{
    (void)arg;
    coil_log_default(level, loop, message, NULL);
    if (level < COIL_LOG_WARNING)
        return;
    pthread_mutex_lock(&gate_lock);
    gate_seen++;
    bool allowed = false;
    for (int i = 0; i < gate_nallowed && !allowed; i++)
        allowed = strstr(message, gate_allowed[i]) != NULL;
    if (!allowed && gate_unexpected++ == 0)
        snprintf(gate_first, sizeof(gate_first), "%s", message);
    pthread_mutex_unlock(&gate_lock);
}

void test_allow_reports(const char *substring)
{
    pthread_mutex_lock(&gate_lock);
    if (gate_nallowed < 8)
        gate_allowed[gate_nallowed++] = substring;
    pthread_mutex_unlock(&gate_lock);
}

int test_reports_seen(void)
{
    pthread_mutex_lock(&gate_lock);
    int n = gate_seen;
    pthread_mutex_unlock(&gate_lock);
    return n;
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_nallowed = gate_seen = gate_unexpected = 0;
    gate_first[0] = '\0';
    /* How long a step takes depends on the machine (sanitizers, valgrind,
     * a loaded CI runner), not on the code under test: not gated. */
    gate_allowed[gate_nallowed++] = COIL__SLOW_STEP_REPORT;
    pthread_mutex_unlock(&gate_lock);
    coil_set_log_hook(gate_hook, NULL, COIL_LOG_INFO);
}

/* 0, or -1 with the first unexpected report printed. */
static int gate_close(void)
{
    pthread_mutex_lock(&gate_lock);
    int n = gate_unexpected;
    pthread_mutex_unlock(&gate_lock);
    if (!n)
        return 0;
    fprintf(stderr, "%d unexpected report%s, the first: %s\n", n,
            n == 1 ? "" : "s", gate_first);
    return -1;
}

int test_setup_noloop(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    coil_test_reset_faults(); /* the operations' and the allocations' */
    coil__chaos_pause(false);
    f->fds_before = test_fd_count();
    f->allocs_before = test_alloc_live();
    current_test = "(see the last test named above)";
    alarm(timeout_seconds());
    gate_open();
    *state = f;
    return 0;
}

int test_setup(void **state)
{
    if (test_setup_noloop(state) != 0)
        return -1;
    struct fixture *f = *state;
    int err = coil_loop_new(&f->loop);
    if (err) {
        fprintf(stderr, "test_setup: coil_loop_new: %s\n", coil_strerror(err));
        return -1;
    }
    return 0;
}

extern atomic_int coil__executor_threads;

void test_wait_executor_threads(void)
{
    coil__test_wait_executor_threads(); /* the kit's wait */
    assert_int_equal(atomic_load(&coil__executor_threads), 0);
}

int test_teardown_noloop(void **state)
{
    struct fixture *f = *state;
    test_wait_executor_threads();
    alarm(0);
    coil_test_reset_faults(); /* the operations' and the allocations' */
    coil_test_clock_virtual(false, false);
    long fds = test_fd_count();
    long allocs = test_alloc_live();
    long fds_before = f->fds_before, allocs_before = f->allocs_before;
    free(f);
    *state = NULL;
    /* The leak gate: everything the test made is gone. */
    assert_int_equal(allocs, allocs_before);
    assert_int_equal(fds, fds_before);
    /* The report gate: nothing reported that the test did not expect. */
    return gate_close();
}

int test_teardown(void **state)
{
    struct fixture *f = *state;
    coil_loop_unref(f->loop);
    f->loop = NULL;
    return test_teardown_noloop(state);
}

void test_exc_record(coil_loop_t *loop, int error, const char *message,
                     void *arg)
{
    (void)loop;
    struct exc_log *log = arg;
    log->count++;
    log->last_error = error;
    snprintf(log->last_message, sizeof(log->last_message), "%s", message);
}

void test_cancel_cb(void *arg)
{
    struct test_canceller *c = arg;
    c->result = coil_task_cancel(c->task);
    c->calls++;
}

void test_run(coil_loop_t *loop)
{
    assert_int_equal(coil_loop_run_forever(loop), 0);
}

void test_stop_cb(void *loop)
{
    coil_loop_stop(loop);
}

int test_setup_fake(void **state)
{
    coil_test_clock_virtual(true, true);
    return test_setup(state);
}

int test_setup_fake_noloop(void **state)
{
    coil_test_clock_virtual(true, true);
    return test_setup_noloop(state);
}

/* A timer that stops a run that would otherwise not end. */
struct safety {
    coil_loop_t *loop;
    coil_handle_t *handle;
    bool fired;
};

static void safety_cb(void *arg)
{
    struct safety *s = arg;
    s->fired = true;
    coil_loop_stop(s->loop);
}

static void safety_on(struct safety *s, coil_loop_t *loop, int64_t ns)
{
    *s = (struct safety){loop, NULL, false};
    assert_int_equal(coil_loop_call_later(loop, ns, safety_cb, s, &s->handle),
                     0);
}

/* Returns whether it fired. */
static bool safety_off(struct safety *s)
{
    coil_handle_cancel(s->handle);
    coil_handle_unref(s->handle);
    return s->fired;
}

/* A stop a virtual day later: a wait that never ends fails the test. */
#define DAY (24 * 3600 * COIL_SEC)

int test_run_until(coil_loop_t *loop, coil_future_t *fut)
{
    struct safety s;
    safety_on(&s, loop, DAY);
    int err = coil_loop_run_until_complete(loop, fut);
    safety_off(&s);
    return err;
}

void test_run_stopped(coil_loop_t *loop)
{
    test_run_bounded(loop, DAY);
}

int test_run_bounded_err(coil_loop_t *loop, int64_t ns, bool *fired)
{
    struct safety s;
    safety_on(&s, loop, ns);
    int err = coil_loop_run_forever(loop);
    bool f = safety_off(&s);
    if (fired)
        *fired = f;
    return err;
}

bool test_run_bounded(coil_loop_t *loop, int64_t ns)
{
    bool fired;
    assert_int_equal(test_run_bounded_err(loop, ns, &fired), 0);
    return fired;
}

static int task_failures;

void test_task_failure(void)
{
    task_failures++;
}

coil_task_t *test_spawn(coil_loop_t *loop, coil_task_fn fn, void *arg)
{
    coil_task_t *t = NULL;
    if (coil_task_spawn(loop, fn, arg, &t) != 0)
        test_task_failure();
    return t;
}

void test_join(coil_task_t *t)
{
    coil_task_join(t);
    coil_task_unref(t);
}

coil_loop_t *test_loop(void **state)
{
    return ((struct fixture *)*state)->loop;
}

void test_socketpair(int sv[2])
{
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv),
        0);
}

void test_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

void test_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void test_close_pair(int sv[2])
{
    test_close_fd(&sv[0]);
    test_close_fd(&sv[1]);
}

void test_put_byte(int fd)
{
    assert_int_equal(write(fd, "x", 1), 1);
}

bool test_fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

void test_fill(int fd)
{
    static const char buf[4096];
    while (send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        ;
    while (send(fd, buf, 1, MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
        ;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

void test_drain(int fd)
{
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int test_move_fd(int fd, int want)
{
    if (fd == want)
        return fd;
    assert_false(test_fd_is_open(want));
    assert_int_equal(dup3(fd, want, O_CLOEXEC), want);
    close(fd);
    return want;
}

void test_socketpair_at(int num, int nb[2])
{
    test_socketpair(nb);
    if (nb[1] == num) {
        int tmp = nb[0];
        nb[0] = nb[1];
        nb[1] = tmp;
    }
    nb[0] = test_move_fd(nb[0], num);
}

int test_close_and_reuse(int sv[2], int nb[2])
{
    int num = sv[0];
    test_close_pair(sv);
    test_socketpair_at(num, nb);
    return num;
}

unsigned char test_pattern(size_t i, unsigned seed)
{
    return (unsigned char)((i * 131u + seed * 7u + (i >> 9)) & 0xff);
}

int test_run_done(coil_loop_t *loop, coil_task_t *t)
{
    int err = test_run_until(loop, coil_task_future(t));
    assert_true(coil_future_done(coil_task_future(t)));
    assert_int_equal(err, coil_future_result(coil_task_future(t), NULL));
    return err;
}

int test_task_outcome(coil_task_t *t)
{
    void *v = NULL;
    int r = coil_future_result(coil_task_future(t), &v);
    return r == 0 ? (int)(intptr_t)v : r;
}

/* The task of test_run_task and test_run_cancelled. */
static coil_task_t *run_spawn(coil_loop_t *loop, coil_task_fn fn, void *arg)
{
    task_failures = 0;
    coil_task_t *t;
    assert_int_equal(coil_task_spawn(loop, fn, arg, &t), 0);
    return t;
}

/* Its outcome once it has finished; it goes to *out, or is released. */
static int run_end(coil_task_t *t, coil_task_t **out)
{
    int r = test_task_outcome(t);
    if (out)
        *out = t;
    else
        coil_task_unref(t);
    assert_int_equal(task_failures, 0); /* noted inside the run */
    return r;
}

int test_run_task(coil_loop_t *loop, coil_task_fn fn, void *arg)
{
    coil_task_t *t = run_spawn(loop, fn, arg);
    test_run_done(loop, t);
    return run_end(t, NULL);
}

int test_run_cancelled(coil_loop_t *loop, coil_task_fn fn, void *arg,
                       int64_t delay, coil_task_t **out)
{
    coil_task_t *t = run_spawn(loop, fn, arg);
    struct test_canceller c = {t, 1, 0};
    assert_int_equal(
        coil_loop_call_later(loop, delay, test_cancel_cb, &c, NULL), 0);
    test_run_done(loop, t);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.result, 0);
    return run_end(t, out);
}

void test_assert_no_tasks(coil_loop_t *loop)
{
    assert_int_equal(coil_loop_tasks(loop, NULL, 0), 0);
}

bool test_nofile_limit_works(void)
{
    /* valgrind emulates the limit, and badly for fds above it (accept
     * on the listener fails): it preloads its own library. */
    const char *pre = getenv("LD_PRELOAD");
    if (pre && strstr(pre, "vgpreload"))
        return false;
    struct rlimit old, low;
    if (getrlimit(RLIMIT_NOFILE, &old) != 0)
        return false;
    /* keep sits at the new limit: the kernel keeps such fds usable and
     * refuses new ones with EMFILE; valgrind refuses the old ones too. */
    int keep = dup(0);
    if (keep < 0)
        return false;
    low = old;
    low.rlim_cur = (rlim_t)keep;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0) {
        close(keep);
        return false;
    }
    bool works = fcntl(keep, F_GETFD) >= 0;
    int fd = dup(0);
    works = works && fd < 0 && errno == EMFILE;
    if (fd >= 0)
        close(fd);
    setrlimit(RLIMIT_NOFILE, &old);
    close(keep);
    return works;
}

bool test_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

int test_run_if(bool applies, const char *why, const char *group,
                const struct CMUnitTest *tests, size_t n)
{
    if (applies)
        return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
    print_message("[ N/A      ] %zu test(s) of %s not registered: %s\n", n,
                  group, why);
    return 0;
}
