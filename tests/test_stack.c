/* SPDX-License-Identifier: MIT */
/*
 * test_stack.c - coroutine stacks (stack.h): the pool, sizes, the guard
 * and the overflow report, both guard mechanisms, and the mapping limits.
 *
 * Faults are provoked in forked children, which the parent watches
 * through a pipe on their stderr with a bounded wait. A child first puts
 * SIGSEGV and SIGBUS back to the default action and reinstalls coil's
 * handler over it (cmocka installs its own around each test), so what the
 * handler passes a foreign fault on to is the default action.
 *
 * Large frames: the overflow tests must hold for code built without
 * -fstack-clash-protection, whatever this file is built with. The frames
 * whose size and first access matter are made by frame_down_to, a few
 * instructions of assembly that do what an unprobed frame does: move the
 * stack pointer down in one step and touch the lowest byte first (as a
 * call that passes a local buffer pushes its return address there). The
 * one in C, big_local, is built without probes by gcc (its optimize
 * attribute); clang has no such attribute, so there it has whatever
 * probing the tests are built with.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "helpers.h"
#include "stack.h"
#include "sys.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(addr, len) 0
#define VALGRIND_COUNT_ERRORS 0u
#endif

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(TEST_TSAN)
#define TEST_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(TEST_ASAN)
#define TEST_ASAN 1
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#define ASAN_BUILD true
#else
#define ASAN_BUILD false
#endif

/* Test-build hooks of stack.c. */
void coil__stack_force_mprotect(bool on);
long coil__stack_set_cheap_budget(long n);
long coil__stack_cheap_guards(void);
long coil__stack_cheap_budget_default(void);
void coil__stack_reinstall_handler(void);

/* Which guards a child's stacks get. */
enum guards {
    GUARDS_AUTO,     /* as a program's: mprotect from the budget first */
    GUARDS_MADVISE,  /* madvise guards only, where the kernel has them */
    GUARDS_MPROTECT, /* mprotect guards only */
};

/* What guards s: stderr says it, and the parent checks. */
static const char *guard_of(const struct coil__stack *s)
{
    return s->cheap_guard ? "mprotect" : coil__stack_guard_kind();
}

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static struct coil__stack *get(struct coil__stack_pool *pool)
{
    struct coil__stack *s = NULL;
    assert_int_equal(coil__stack_get(pool, &s), 0);
    assert_non_null(s);
    return s;
}

/* ------------------------------------------------------------------ */
/* The pool                                                             */
/* ------------------------------------------------------------------ */

static void test_get_put_lifo(void **state)
{
    (void)state;
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    assert_int_equal(pool.max_free, 64);
    struct coil__stack *a = get(&pool), *b = get(&pool), *c = get(&pool);
    assert_true(a != b && b != c && a != c);
    assert_int_equal(pool.live, 3);
    coil__stack_set_owner(a, "a");
    assert_string_equal(a->owner, "a");

    coil__stack_put(&pool, a);
    coil__stack_put(&pool, b);
    assert_int_equal(pool.live, 1);
    assert_int_equal(pool.nfree, 2);
    assert_null(a->owner); /* a returned stack has no owner */
    /* Last in, first out: the warmest stack comes back first. */
    assert_ptr_equal(get(&pool), b);
    assert_ptr_equal(get(&pool), a);
    struct coil__stack *d = get(&pool); /* a new one */
    assert_true(d != a && d != b && d != c);
    assert_int_equal(pool.nfree, 0);
    assert_int_equal(pool.live, 4);
    coil__stack_put(&pool, a);
    coil__stack_put(&pool, b);
    coil__stack_put(&pool, c);
    coil__stack_put(&pool, d);
    assert_int_equal(pool.live, 0);
    coil__stack_pool_term(&pool);
    assert_int_equal(pool.nfree, 0);
    assert_null(pool.free);
}

static void test_pool_keeps_at_most_max_free(void **state)
{
    (void)state;
    enum { N = 100 };
    struct coil__stack_pool pool;
    struct coil__stack *s[N];
    coil__stack_pool_init(&pool, COIL__STACK_MIN);
    for (int i = 0; i < N; i++)
        s[i] = get(&pool);
    for (int i = 0; i < N; i++)
        coil__stack_put(&pool, s[i]);
    assert_int_equal(pool.nfree, pool.max_free);
    assert_int_equal(pool.live, 0);
    /* The kept ones are the first max_free returned, newest on top. */
    assert_ptr_equal(pool.free, s[pool.max_free - 1]);
    coil__stack_pool_term(&pool);
}

/* ------------------------------------------------------------------ */
/* Sizes and layout                                                     */
/* ------------------------------------------------------------------ */

static void check_layout(size_t request)
{
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, request);
    struct coil__stack *s = get(&pool);
    uintptr_t base = (uintptr_t)s->base, map = (uintptr_t)s->mapping;
    size_t header = map + s->map_size - (base + s->size);

    assert_int_equal(s->size, pool.size);
    assert_true(s->size >= request);         /* never less */
    assert_true(s->size < request + page()); /* rounded, not more */
    assert_int_equal(base % page(), 0);      /* guard: whole pages */
    assert_int_equal(map % page(), 0);
    assert_int_equal(s->map_size % page(), 0);
    assert_true(base - map >= COIL__STACK_GUARD); /* the guard */
    assert_true(header >= sizeof(struct coil__stack) && header <= 64);
    assert_int_equal((base + s->size) % 64, 0); /* top of the stack */
    /* The header lives above the usable area, inside the mapping. */
    assert_true((uintptr_t)s >= base + s->size);
    assert_true((uintptr_t)(s + 1) <= map + s->map_size);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
}

static void test_sizes_rounded(void **state)
{
    (void)state;
    check_layout(COIL__STACK_MIN);
    check_layout(20000);
    check_layout(COIL__STACK_DEFAULT);
    check_layout(COIL__STACK_DEFAULT + 1);
    check_layout(1024 * 1024 + 123);
    check_layout(COIL__STACK_MAX); /* 1 GiB: reserved, never touched */
}

static void test_whole_area_writable(void **state)
{
    (void)state;
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    struct coil__stack *s = get(&pool);
    struct coil__stack copy = *s;
    unsigned char *p = s->base;
    memset(p, 0xa5, s->size);
    for (size_t i = 0; i < s->size; i++)
        if (p[i] != 0xa5)
            fail_msg("byte %zu of the stack did not keep its value", i);
    assert_memory_equal(s, &copy, sizeof(copy)); /* header untouched */
    coil__stack_put(&pool, s);
    /* Pooled stacks keep their contents (no MADV_DONTNEED). To memcheck a
     * stack handed out again holds undefined bytes: we know better. */
    s = get(&pool);
    (void)VALGRIND_MAKE_MEM_DEFINED(s->base, 1);
    assert_int_equal(((unsigned char *)s->base)[0], 0xa5);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
}

static void test_guard_kind(void **state)
{
    (void)state;
    const char *kind = coil__stack_guard_kind();
    printf("[ guard    ] %s\n", kind);
    assert_true(strcmp(kind, "madvise") == 0 || strcmp(kind, "mprotect") == 0);
    coil__stack_force_mprotect(true);
    assert_string_equal(coil__stack_guard_kind(), "mprotect");
    coil__stack_force_mprotect(false);
    assert_string_equal(coil__stack_guard_kind(), kind); /* decided again */
}

/* While the budget lasts a new stack gets an mprotect guard (no page
 * tables), then madvise ones; a released stack gives its place back. */
static void test_cheap_guards_budget(void **state)
{
    (void)state;
    /* Under valgrind, whose table of mappings each split would slow,
     * every guard is madvise's. */
    bool madvise = strcmp(coil__stack_guard_kind(), "madvise") == 0 &&
                   !RUNNING_ON_VALGRIND;
    long base = coil__stack_cheap_guards(); /* stacks other tests hold */
    long was = coil__stack_set_cheap_budget(base + 3);
    struct coil__stack_pool pool;
    struct coil__stack *v[5];
    coil__stack_pool_init(&pool, COIL__STACK_MIN);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(coil__stack_get(&pool, &v[i]), 0);
        /* Without madvise guards every guard is mprotect's, none from
         * the budget. */
        assert_int_equal(v[i]->cheap_guard, madvise && i < 3);
    }
    long taken = coil__stack_cheap_guards() - base;
    assert_int_equal(taken, madvise ? 3 : 0);
    coil__stack_put(&pool, v[0]); /* pooled: still mapped, still counted */
    assert_int_equal(coil__stack_cheap_guards() - base, taken);
    for (int i = 1; i < 5; i++)
        coil__stack_put(&pool, v[i]);
    coil__stack_pool_term(&pool);
    assert_int_equal(coil__stack_cheap_guards(), base);
    coil__stack_set_cheap_budget(was);
    assert_int_equal(was, coil__stack_cheap_budget_default());
}

/* mprotect failing (vm.max_map_count reached) costs the stack nothing
 * where madvise guards exist: it gets one of those instead. */
static void test_cheap_guard_falls_back(void **state)
{
    (void)state;
    bool madvise = strcmp(coil__stack_guard_kind(), "madvise") == 0;
    long base = coil__stack_cheap_guards();
    struct coil__stack_pool pool;
    struct coil__stack *s = NULL;
    coil__stack_pool_init(&pool, COIL__STACK_MIN);
    coil__fault_arm(COIL__SYS_MPROTECT, 1, 1, ENOMEM);
    int err = coil__stack_get(&pool, &s);
    coil_test_reset_faults();
    if (madvise) {
        assert_int_equal(err, 0);
        assert_false(s->cheap_guard);
        assert_int_equal(coil__stack_cheap_guards(), base);
        coil__stack_put(&pool, s);
    } else {
        assert_int_equal(err, -ENOMEM); /* no other guard to fall back on */
        assert_null(s);
    }
    coil__stack_pool_term(&pool);
    assert_int_equal(coil__stack_cheap_guards(), base);
}

/* ------------------------------------------------------------------ */
/* Forked children                                                      */
/* ------------------------------------------------------------------ */

enum { CHILD_SURVIVED = 42, CHILD_SETUP_FAILED = 43 };

struct child {
    int status;
    bool timed_out;
    char err[16384]; /* its stderr */
    size_t len;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t child_budget_ms(void)
{
    const char *m = getenv("COIL_TEST_TIMEOUT_MULTIPLIER");
    double k = m ? atof(m) : 1;
    return (int64_t)(8000 * (k > 1 ? k : 1));
}

/* Run fn(arg) in a child with stderr into c->err; wait a bounded time. */
static void run_child(void (*fn)(const void *), const void *arg,
                      struct child *c)
{
    int fds[2];
    memset(c, 0, sizeof(*c));
    if (RUNNING_ON_VALGRIND)
        printf("[ NOTE     ] what valgrind says about the child's fault "
               "below is expected\n");
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        signal(SIGALRM, SIG_DFL);
        alarm(30); /* a hung child dies by SIGALRM, not as a pass */
        fn(arg);
        _exit(CHILD_SURVIVED);
    }
    close(fds[1]);
    int64_t deadline = now_ms() + child_budget_ms();
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (left <= 0) {
            c->timed_out = true;
            break;
        }
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t n = read(fds[0], c->err + c->len, sizeof(c->err) - 1 - c->len);
        if (n <= 0)
            break; /* EOF: the child is gone */
        c->len += (size_t)n;
        if (c->len == sizeof(c->err) - 1)
            break;
    }
    close(fds[0]);
    c->err[c->len] = '\0';
    while (waitpid(pid, &c->status, WNOHANG) == 0) {
        if (now_ms() >= deadline) {
            c->timed_out = true;
            kill(pid, SIGKILL);
            waitpid(pid, &c->status, 0);
            break;
        }
        usleep(1000);
    }
}

static void expect_signal(const struct child *c, int sig)
{
    if (c->timed_out)
        fail_msg("the child hung; its stderr:\n%s", c->err);
    if (!WIFSIGNALED(c->status))
        fail_msg("the child exited with %d instead of dying by signal %d; "
                 "its stderr:\n%s",
                 WEXITSTATUS(c->status), sig, c->err);
    if (WTERMSIG(c->status) != sig)
        fail_msg("the child died by signal %d instead of %d; its stderr:\n%s",
                 WTERMSIG(c->status), sig, c->err);
}

/* First thing in a child: the default action under coil's handler. */
static void child_prepare(enum guards g)
{
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    coil__stack_force_mprotect(g == GUARDS_MPROTECT);
    if (g == GUARDS_MADVISE)
        coil__stack_set_cheap_budget(0);
    coil__stack_reinstall_handler();
    if (coil__stack_thread_init() != 0)
        _exit(CHILD_SETUP_FAILED);
}

/* ------------------------------------------------------------------ */
/* Overflow: a context recursing without bound                          */
/* ------------------------------------------------------------------ */

static volatile bool keep_going = true;

__attribute__((noinline)) static int bottomless(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    pad[sizeof(pad) - 1] = (char)depth;
    int below = keep_going ? bottomless(depth + 1) : 0;
    return below + pad[0] + pad[sizeof(pad) - 1];
}

static const char VICTIM[] = "overflow-victim";

struct overflow {
    enum guards guards;
    bool in_thread;
};

static struct {
    const struct coil__context_ops *ops;
    struct coil__context main, co;
} ov;

static void overflow_entry(void *arg)
{
    (void)arg;
    bottomless(0);
    coil__context_exit(ov.ops, &ov.co, &ov.main);
}

static void *overflow_run(void *unused)
{
    (void)unused;
    struct coil__stack_pool pool;
    struct coil__stack *s;
    if (coil__stack_thread_init() != 0 ||
        coil__context_find(NULL, &ov.ops) != 0)
        _exit(CHILD_SETUP_FAILED);
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    if (coil__stack_get(&pool, &s) != 0)
        _exit(CHILD_SETUP_FAILED);
    fprintf(stderr, "guard: %s\n", guard_of(s));
    coil__stack_set_owner(s, VICTIM);
    void *storage = malloc(ov.ops->thread_storage + 1);
    coil__context_init_thread(ov.ops, &ov.main, storage);
    coil__context_make(ov.ops, &ov.co, s->base, s->size, overflow_entry, NULL);
    coil__stack_running = s; /* as the task switch does */
    coil__context_switch(ov.ops, &ov.main, &ov.co);
    return NULL; /* not reached: the child aborts */
}

static void overflow_child(const void *arg)
{
    const struct overflow *o = arg;
    child_prepare(o->guards);
    if (o->in_thread) {
        pthread_t t;
        if (pthread_create(&t, NULL, overflow_run, NULL) != 0)
            _exit(CHILD_SETUP_FAILED);
        pthread_join(t, NULL);
    } else {
        overflow_run(NULL);
    }
}

/* The child said it used the guards g asks for. */
static void expect_guards(const struct child *c, enum guards g)
{
    const char *want =
        g == GUARDS_MPROTECT ||
                (g == GUARDS_AUTO && !RUNNING_ON_VALGRIND) /* the budget */
            ? "mprotect"
            : coil__stack_guard_kind();
    char line[64];
    snprintf(line, sizeof(line), "guard: %s", want);
    if (!strstr(c->err, line))
        fail_msg("the child's stack was not guarded by %s:\n%s", want, c->err);
}

static void check_overflow(enum guards g, bool in_thread)
{
    struct overflow o = {g, in_thread};
    struct child *c = calloc(1, sizeof(*c));
    struct coil__stack_pool pool;
    char want[128];
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT); /* just the size */
    run_child(overflow_child, &o, c);
    expect_signal(c, SIGABRT);
    snprintf(want, sizeof(want),
             "stack overflow in task '%s' (stack size %zu "
             "bytes)",
             VICTIM, pool.size);
    if (!strstr(c->err, want))
        fail_msg("stderr lacks \"%s\":\n%s", want, c->err);
    if (!strstr(c->err, "larger stack"))
        fail_msg("stderr lacks the hint:\n%s", c->err);
    expect_guards(c, g);
    free(c);
}

static void test_overflow_reported(void **state)
{
    (void)state;
    check_overflow(GUARDS_AUTO, false);
}

static void test_overflow_reported_madvise(void **state)
{
    (void)state;
    check_overflow(GUARDS_MADVISE, false);
}

static void test_overflow_reported_mprotect(void **state)
{
    (void)state;
    check_overflow(GUARDS_MPROTECT, false);
}

static void test_overflow_reported_in_thread(void **state)
{
    (void)state;
    check_overflow(GUARDS_AUTO, true);
}

/* ------------------------------------------------------------------ */
/* Overflow: one large frame                                            */
/* ------------------------------------------------------------------ */

/* The tests below move the stack pointer by hand, and the handler reads
 * it back where stack.c knows how to: Linux on x86-64 and aarch64. */
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#define HAVE_SP_CONTROL 1
#include <sys/syscall.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define UNPROBED __attribute__((optimize("no-stack-clash-protection")))
#else
#define UNPROBED
#endif

/*
 * What an unprobed frame reaching down to target does: move the stack
 * pointer there in one step, store one byte at it (the lowest byte of the
 * frame, first), move it back.
 */
__attribute__((noinline)) static void frame_down_to(uintptr_t target)
{
    target &= ~(uintptr_t)15;
#if defined(HAVE_SP_CONTROL) && defined(__x86_64__)
    __asm__ volatile("mov %%rsp, %%rax\n\t"
                     "mov %0, %%rsp\n\t"
                     "movb $0, (%%rsp)\n\t"
                     "mov %%rax, %%rsp"
                     :
                     : "r"(target)
                     : "rax", "memory");
#elif defined(HAVE_SP_CONTROL) && defined(__aarch64__)
    __asm__ volatile("mov x9, sp\n\t"
                     "mov sp, %0\n\t"
                     "strb wzr, [sp]\n\t"
                     "mov sp, x9"
                     :
                     : "r"(target)
                     : "x9", "memory");
#else
    (void)target;
#endif
}

/*
 * With the stack pointer at target, send this thread sig (tgkill, a
 * system call: nothing touches the stack). The kernel writes the
 * signal's frame below target when the system call returns, unless the
 * handler runs on an alternate stack.
 */
__attribute__((noinline)) static void signal_at(uintptr_t target, int sig)
{
    target &= ~(uintptr_t)15;
#if defined(HAVE_SP_CONTROL) && defined(__x86_64__)
    long pid = getpid(), tid = syscall(SYS_gettid), nr = SYS_tgkill;
    __asm__ volatile("mov %%rsp, %%r8\n\t"
                     "mov %[t], %%rsp\n\t"
                     "syscall\n\t"
                     "mov %%r8, %%rsp"
                     : "+a"(nr)
                     : [t] "r"(target), "D"(pid), "S"(tid), "d"((long)sig)
                     : "rcx", "r11", "r8", "memory");
#elif defined(HAVE_SP_CONTROL) && defined(__aarch64__)
    /* Both calls first: a call would clobber the registers below. */
    long pid = getpid(), tid = syscall(SYS_gettid);
    register long x8 __asm__("x8") = SYS_tgkill;
    register long x0 __asm__("x0") = pid;
    register long x1 __asm__("x1") = tid;
    register long x2 __asm__("x2") = sig;
    __asm__ volatile("mov x9, sp\n\t"
                     "mov sp, %[t]\n\t"
                     "svc #0\n\t"
                     "mov sp, x9"
                     : "+r"(x0)
                     : [t] "r"(target), "r"(x8), "r"(x1), "r"(x2)
                     : "x9", "memory");
#else
    (void)target;
    (void)sig;
#endif
}

static void on_usr1(int sig)
{
    (void)sig;
}

/* A local array of 100 KiB, its lowest byte written first. */
__attribute__((noinline)) UNPROBED static int big_local(void)
{
    volatile char buf[100 * 1024];
    buf[0] = 1;
    buf[sizeof(buf) - 1] = 2;
    return buf[0] + buf[sizeof(buf) - 1];
}

enum frame_kind {
    FRAME_LOCAL_ARRAY,  /* big_local: 100 KiB of locals */
    FRAME_PAST_STACK,   /* the whole stack and 20 KiB more */
    FRAME_GUARD_LIMIT,  /* down to 4 KiB above the bottom of the guard */
    FRAME_BEYOND_GUARD, /* past the guard, into the next stack's guard */
    SIGNAL_NEAR_BASE,   /* a signal frame from just above the base */
    SIGNAL_IN_GUARD,    /* a signal while the stack pointer is in the guard */
};

struct frame_case {
    enum frame_kind kind;
    enum guards guards;
};

/*
 * The victim's stack and, directly below its mapping, a neighbour's: a
 * context that ran, left its frames on its stack and is suspended, as an
 * idle task is. After the victim overflows, the neighbour's stack (its
 * usable area and header) must hold exactly what it held before. The
 * check runs in a SIGABRT handler, after coil's report and before the
 * child dies, or after the victim returns if nothing faulted.
 */
static struct {
    const struct coil__context_ops *ops;
    struct coil__context main, victim, neighbour;
    struct coil__stack *vs, *ns;
    enum frame_kind kind;
    const volatile unsigned char *live; /* the neighbour's stack and header */
    unsigned char *copy;
    size_t len;
} fr;

static void say(const char *msg)
{
    ssize_t r = write(STDERR_FILENO, msg, strlen(msg));
    (void)r;
}

/* Not instrumented: the neighbour's suspended frames keep their ASan
 * redzones poisoned, and reading them is the point. */
__attribute__((no_sanitize_address)) static void copy_neighbour(void)
{
    for (size_t i = 0; i < fr.len; i++)
        fr.copy[i] = fr.live[i];
}

__attribute__((no_sanitize_address)) static void check_neighbour(void)
{
    /* A stack pointer moved down past it makes memcheck think the bytes
     * undefined; what they hold is what counts. */
    (void)VALGRIND_MAKE_MEM_DEFINED(fr.live, fr.len);
    for (size_t i = 0; i < fr.len; i++)
        if (fr.live[i] != fr.copy[i]) {
            say("neighbour: overwritten\n");
            return;
        }
    say("neighbour: intact\n");
}

static void on_abort(int sig)
{
    (void)sig;
    check_neighbour(); /* then abort goes on and the child dies */
}

static void neighbour_entry(void *arg)
{
    (void)arg;
    volatile char frame[2048];
    for (size_t i = 0; i < sizeof(frame); i++)
        frame[i] = (char)(i * 7);
    coil__context_switch(fr.ops, &fr.neighbour, &fr.main); /* idles */
    coil__context_exit(fr.ops, &fr.neighbour, &fr.main);
}

static void victim_entry(void *arg)
{
    (void)arg;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t vmap = (uintptr_t)fr.vs->mapping;
    uintptr_t nmap = (uintptr_t)fr.ns->mapping, nbase = (uintptr_t)fr.ns->base;
    switch (fr.kind) {
    case FRAME_LOCAL_ARRAY:
        (void)big_local();
        break;
    case FRAME_PAST_STACK:
        frame_down_to(sp - (fr.vs->size + 20 * 1024));
        break;
    case FRAME_GUARD_LIMIT:
        frame_down_to(vmap + 4096);
        break;
    case FRAME_BEYOND_GUARD:
        frame_down_to(nmap + (nbase - nmap) / 2);
        break;
    case SIGNAL_NEAR_BASE:
        signal_at((uintptr_t)fr.vs->base + 256, SIGUSR1);
        break;
    case SIGNAL_IN_GUARD:
        signal_at((uintptr_t)fr.vs->base - 64 * 1024, SIGUSR1);
        break;
    }
    coil__context_exit(fr.ops, &fr.victim, &fr.main);
}

static const char FRAME_VICTIM[] = "big-frame";

/* The victim's and its neighbour's stacks: 64 KiB, whatever the default,
 * so that big_local's 100 KiB overflows. */
#define FRAME_STACK (64 * 1024)

static void frame_child(const void *arg)
{
    const struct frame_case *fc = arg;
    struct coil__stack_pool pool;
    child_prepare(fc->guards);
    if (coil__context_find(NULL, &fr.ops) != 0)
        _exit(CHILD_SETUP_FAILED);
    fr.kind = fc->kind;
    /* Take stacks until two are next to each other (the others stay
     * taken): the kernel places each new one just below the one before
     * if the gap allows, valgrind just above. */
    coil__stack_pool_init(&pool, FRAME_STACK);
    struct coil__stack *prev = NULL, *s;
    for (int i = 0; i < 64 && !fr.ns; i++) {
        if (coil__stack_get(&pool, &s) != 0)
            _exit(CHILD_SETUP_FAILED);
        if (prev && (char *)s->mapping + s->map_size == prev->mapping) {
            fr.vs = prev;
            fr.ns = s;
        } else if (prev &&
                   (char *)prev->mapping + prev->map_size == s->mapping) {
            fr.vs = s;
            fr.ns = prev;
        }
        prev = s;
    }
    if (!fr.ns) {
        say("no two stacks next to each other\n");
        _exit(CHILD_SETUP_FAILED);
    }
    fprintf(stderr, "guard: %s\n", guard_of(fr.vs));
    coil__stack_set_owner(fr.vs, FRAME_VICTIM);
    coil__stack_set_owner(fr.ns, "neighbour");
    /* Painted, so that any byte written shows. */
    memset(fr.ns->base, 0x5a, fr.ns->size);
    void *storage = malloc(fr.ops->thread_storage + 1);
    coil__context_init_thread(fr.ops, &fr.main, storage);

    /* The neighbour runs, and idles with its frames on its stack. */
    coil__context_make(fr.ops, &fr.neighbour, fr.ns->base, fr.ns->size,
                       neighbour_entry, NULL);
    coil__stack_running = fr.ns;
    coil__context_switch(fr.ops, &fr.main, &fr.neighbour);
    coil__stack_running = NULL;
    fr.live = fr.ns->base;
    fr.len = (size_t)((char *)fr.ns->mapping + fr.ns->map_size -
                      (char *)fr.ns->base);
    fr.copy = malloc(fr.len);
    if (!fr.copy)
        _exit(CHILD_SETUP_FAILED);
    /* Below its stack pointer valgrind holds it unaddressable. */
    (void)VALGRIND_MAKE_MEM_DEFINED(fr.ns->base, fr.len);
    copy_neighbour();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_abort;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, NULL);
    sa.sa_handler = on_usr1;
    sa.sa_flags = 0; /* on the task's stack, as a handler usually runs */
    sigaction(SIGUSR1, &sa, NULL);

    /* The victim overflows. */
    coil__context_make(fr.ops, &fr.victim, fr.vs->base, fr.vs->size,
                       victim_entry, NULL);
    coil__stack_running = fr.vs;
    coil__context_switch(fr.ops, &fr.main, &fr.victim);
    coil__stack_running = NULL;
    say("the overflow went unnoticed\n");
    check_neighbour();
}

static void check_frame(enum frame_kind kind, enum guards g)
{
#ifndef HAVE_SP_CONTROL
    if (kind != FRAME_LOCAL_ARRAY) {
        printf("[ SKIP     ] moving the stack pointer by hand, and reading "
               "it in the handler, are done for Linux on x86-64 and "
               "aarch64 only\n");
        skip();
    }
#endif
    if ((kind == SIGNAL_NEAR_BASE || kind == SIGNAL_IN_GUARD) &&
        RUNNING_ON_VALGRIND) {
        printf("[ SKIP     ] under valgrind, which writes signal frames "
               "itself and knows nothing of guard pages\n");
        skip();
    }
    struct frame_case fc = {kind, g};
    struct child *c = calloc(1, sizeof(*c));
    struct coil__stack_pool pool;
    char want[128];
    coil__stack_pool_init(&pool, FRAME_STACK); /* just the size */
    run_child(frame_child, &fc, c);
    if (!c->timed_out && WIFEXITED(c->status) &&
        WEXITSTATUS(c->status) == CHILD_SETUP_FAILED)
        fail_msg("the child could not set up; its stderr:\n%s", c->err);
    expect_signal(c, SIGABRT);
    snprintf(want, sizeof(want),
             "stack overflow in task '%s' (stack size %zu bytes)", FRAME_VICTIM,
             pool.size);
    if (!strstr(c->err, want))
        fail_msg("stderr lacks \"%s\":\n%s", want, c->err);
    if (!strstr(c->err, "neighbour: intact") ||
        strstr(c->err, "neighbour: overwritten"))
        fail_msg("the neighbour's stack was written:\n%s", c->err);
    expect_guards(c, g);
    free(c);
}

/* 100 KiB of locals on a 64 KiB stack. */
static void test_overflow_local_array(void **state)
{
    (void)state;
    check_frame(FRAME_LOCAL_ARRAY, GUARDS_MADVISE);
}

/* A frame larger than the whole stack, by more than a small guard. */
static void test_overflow_frame_past_stack(void **state)
{
    (void)state;
    check_frame(FRAME_PAST_STACK, GUARDS_MADVISE);
}

/* The deepest any frame of less than COIL__STACK_GUARD - 4 KiB reaches,
 * from anywhere on the stack: the guarantee's edge. */
static void test_overflow_frame_at_guard_limit(void **state)
{
    (void)state;
    check_frame(FRAME_GUARD_LIMIT, GUARDS_MADVISE);
}

/* Larger than the guard (not guaranteed): the stack pointer lands in the
 * guard of the stack below, which faults; the handler names the running
 * task from the stack pointer. */
static void test_overflow_frame_beyond_guard(void **state)
{
    (void)state;
    check_frame(FRAME_BEYOND_GUARD, GUARDS_MADVISE);
}

static void test_overflow_frame_beyond_guard_mprotect(void **state)
{
    (void)state;
    check_frame(FRAME_BEYOND_GUARD, GUARDS_MPROTECT);
}

/* A signal whose handler runs on the task's stack arrives when the stack
 * is nearly full: the kernel cannot write the handler's frame, which
 * would spill into the guard, and raises a SIGSEGV with no address. */
static void test_overflow_signal_frame(void **state)
{
    (void)state;
    check_frame(SIGNAL_NEAR_BASE, GUARDS_MADVISE);
}

/* The same with the stack pointer already in the guard (a frame made and
 * not touched yet). */
static void test_overflow_signal_in_guard(void **state)
{
    (void)state;
    check_frame(SIGNAL_IN_GUARD, GUARDS_MADVISE);
}

/* The same 100 KiB of locals in a task made by the public API, which
 * names the stack's owner. */
static int big_local_task(void *arg)
{
    (void)arg;
    return big_local();
}

static const char TASK_VICTIM[] = "task-with-100KiB-of-locals";

static void task_child(const void *arg)
{
    (void)arg;
    coil_loop_t *loop;
    coil_task_t *t;
    coil_task_options_t o = {.name = TASK_VICTIM, .stack_size = 64 * 1024};
    child_prepare(GUARDS_AUTO);
    if (coil_loop_new(&loop) != 0 ||
        coil_task_spawn_opts(loop, big_local_task, NULL, &o, &t) != 0)
        _exit(CHILD_SETUP_FAILED);
    coil_loop_run_until_complete(loop, coil_task_future(t));
}

static void test_overflow_local_array_in_task(void **state)
{
    (void)state;
    struct child *c = calloc(1, sizeof(*c));
    char want[128];
    run_child(task_child, NULL, c);
    expect_signal(c, SIGABRT);
    snprintf(want, sizeof(want), "stack overflow in task '%s'", TASK_VICTIM);
    if (!strstr(c->err, want))
        fail_msg("stderr lacks \"%s\":\n%s", want, c->err);
    free(c);
}

/* ------------------------------------------------------------------ */
/* Faults that are not overflows go on to the previous handler           */
/* ------------------------------------------------------------------ */

static void foreign_fault_child(const void *arg)
{
    (void)arg;
    struct coil__stack_pool pool;
    struct coil__stack *s;
    child_prepare(GUARDS_AUTO);
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    if (coil__stack_get(&pool, &s) != 0)
        _exit(CHILD_SETUP_FAILED);
    coil__stack_running = s; /* a stack is running, the fault is elsewhere */
    volatile char *p =
        mmap(NULL, page(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(CHILD_SETUP_FAILED);
    p[0] = 1;
}

static void test_foreign_fault_passes_on(void **state)
{
    (void)state;
    struct child *c = calloc(1, sizeof(*c));
    run_child(foreign_fault_child, NULL, c);
    expect_signal(c, SIGSEGV);
    assert_null(strstr(c->err, "stack overflow"));
    free(c);
}

/* A fault in the guard of a stack that is not running is not reported
 * as its overflow either. */
static void idle_guard_child(const void *arg)
{
    (void)arg;
    struct coil__stack_pool pool;
    struct coil__stack *s;
    child_prepare(GUARDS_AUTO);
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    if (coil__stack_get(&pool, &s) != 0)
        _exit(CHILD_SETUP_FAILED);
    coil__stack_running = NULL;
    ((volatile char *)s->base)[-1] = 1;
}

static void test_idle_guard_fault_passes_on(void **state)
{
    (void)state;
    struct child *c = calloc(1, sizeof(*c));
    run_child(idle_guard_child, NULL, c);
    expect_signal(c, SIGSEGV);
    assert_null(strstr(c->err, "stack overflow"));
    free(c);
}

/* ------------------------------------------------------------------ */
/* Pooled stacks are off limits to the sanitizers                       */
/* ------------------------------------------------------------------ */

/* Under ASan: a pooled stack's usable range is poisoned, its header is
 * not, and it is usable again once handed out. */
static void test_pooled_stack_poisoned(void **state)
{
    (void)state;
#ifdef TEST_ASAN
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    struct coil__stack *s = get(&pool);
    char *base = s->base;
    bool fresh = __asan_region_is_poisoned(base, s->size) != NULL;
    coil__stack_put(&pool, s);
    bool low = __asan_address_is_poisoned(base);
    bool mid = __asan_address_is_poisoned(base + s->size / 2);
    bool top = __asan_address_is_poisoned(base + s->size - 1);
    bool header = __asan_region_is_poisoned(s, sizeof(*s)) != NULL;
    struct coil__stack *again = get(&pool);
    bool reused = __asan_region_is_poisoned(base, again->size) != NULL;
    coil__stack_put(&pool, again);
    coil__stack_pool_term(&pool);
    assert_false(fresh);
    assert_true(low && mid && top);
    assert_false(header);
    assert_ptr_equal(again, s);
    assert_false(reused);
#endif
}

/*
 * A task keeps the address of its frame (on the stack itself, not in a
 * fake frame ASan may give locals) and finishes; its stack goes back to
 * the loop's pool. Reading through the address then must be reported.
 */
static char *volatile finished_frame;
static volatile char read_sink;
static struct coil__stack *volatile finished_stack;

static int keep_frame_address(void *arg)
{
    (void)arg;
    finished_frame = __builtin_frame_address(0);
    finished_stack = coil__stack_running;
    return 0;
}

static void use_after_finish_child(const void *arg)
{
    (void)arg;
    coil_loop_t *loop;
    coil_task_t *t;
    if (coil_loop_new(&loop) != 0 ||
        coil_task_spawn(loop, keep_frame_address, NULL, &t) != 0 ||
        coil_loop_run_until_complete(loop, coil_task_future(t)) != 0)
        _exit(CHILD_SETUP_FAILED);
    coil_task_unref(t);
    /* The header of a pooled stack stays readable. */
    struct coil__stack *s = finished_stack;
    if (!s || finished_frame < (char *)s->base ||
        finished_frame >= (char *)s->base + s->size) {
        say("the frame is not on the task's stack\n");
        _exit(CHILD_SETUP_FAILED);
    }
    unsigned errors = VALGRIND_COUNT_ERRORS;
    /* Kept: valgrind drops a load whose value nobody uses, and the
     * optimizer leaves it unused. */
    read_sink = *(volatile char *)finished_frame;
    if (VALGRIND_COUNT_ERRORS > errors)
        say("valgrind reported the read\n");
    else
        say("the read went unreported\n");
}

static void check_use_after_finish(const char *want)
{
    struct child *c = calloc(1, sizeof(*c));
    run_child(use_after_finish_child, NULL, c);
    if (c->timed_out)
        fail_msg("the child hung; its stderr:\n%s", c->err);
    if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == CHILD_SETUP_FAILED)
        fail_msg("the child could not set up; its stderr:\n%s", c->err);
    if (!strstr(c->err, want))
        fail_msg("stderr lacks \"%s\":\n%s", want, c->err);
    free(c);
}

static void test_use_of_finished_stack_asan(void **state)
{
    (void)state;
    check_use_after_finish("AddressSanitizer: use-after-poison");
}

static void test_use_of_finished_stack_valgrind(void **state)
{
    (void)state;
    check_use_after_finish("valgrind reported the read");
}

/* ------------------------------------------------------------------ */
/* Many stacks, and the mapping limit                                   */
/* ------------------------------------------------------------------ */

static void test_many_stacks(void **state)
{
    (void)state;
    /* More than the ~32,700 that mprotect guards allow at the default
     * vm.max_map_count of 65530. */
    size_t n = 40000;
    if (strcmp(coil__stack_guard_kind(), "madvise") != 0) {
        printf("[ SKIP     ] guards use mprotect here (no "
               "MADV_GUARD_INSTALL): %zu stacks would pass "
               "vm.max_map_count\n",
               n);
        skip();
    }
#ifdef TEST_TSAN
    printf("[ SKIP     ] under ThreadSanitizer: it maps over the shadow of "
           "every mapping larger than 64 KiB (clear_shadow_mmap_threshold), "
           "which costs mappings of its own and reaches vm.max_map_count "
           "near 33,000 stacks\n");
    skip();
#endif
    struct coil__stack **v = calloc(n, sizeof(*v));
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_MIN);
    int64_t t0 = now_ms();
    for (size_t i = 0; i < n; i++) {
        int err = coil__stack_get(&pool, &v[i]);
        if (err)
            fail_msg("stack %zu of %zu: %d", i, n, err);
        ((volatile char *)v[i]->base)[v[i]->size - 1] = 1; /* touch the top */
    }
    assert_int_equal(pool.live, n);
    for (size_t i = 0; i < n; i++)
        coil__stack_put(&pool, v[i]);
    coil__stack_pool_term(&pool);
    printf("[ stacks   ] %zu stacks got, touched and released in %lld ms\n", n,
           (long long)(now_ms() - t0));
    free(v);
}

static long max_map_count(void)
{
    long v = -1;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void test_mprotect_map_limit(void **state)
{
    (void)state;
    long limit = max_map_count();
    if (limit < 0 || limit > 200000) {
        printf("[ SKIP     ] vm.max_map_count is %ld: reaching it would be "
               "slow or impossible to read\n",
               limit);
        skip();
    }
    if (RUNNING_ON_VALGRIND) {
        printf("[ SKIP     ] under valgrind: its own table of mappings "
               "(VG_N_SEGMENTS) fills before the kernel's limit, and "
               "valgrind exits\n");
        skip();
    }
#ifdef TEST_TSAN
    printf("[ SKIP     ] under ThreadSanitizer: it maps memory of its own "
           "as it runs, and aborts when the limit is reached\n");
    skip();
#endif
    /* Each stack with an mprotect guard is two mappings. */
    size_t cap = (size_t)limit + 16, n = 0;
    struct coil__stack **v = calloc(cap, sizeof(*v));
    assert_non_null(v);
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_MIN);
    coil__stack_force_mprotect(true);
    int err = 0;
    while (n < cap && (err = coil__stack_get(&pool, &v[n])) == 0)
        n++;
    struct coil__stack *failed = n < cap ? v[n] : NULL;
    /* Release before asserting: nothing can map while at the limit. */
    for (size_t i = 0; i < n; i++)
        coil__stack_put(&pool, v[i]);
    struct coil__stack *after = NULL;
    int err_after = coil__stack_get(&pool, &after);
    if (after)
        coil__stack_put(&pool, after);
    coil__stack_pool_term(&pool);
    coil__stack_force_mprotect(false);
    free(v);

    printf("[ limit    ] %zu stacks with mprotect guards, then %d "
           "(vm.max_map_count %ld)\n",
           n, err, limit);
    assert_int_equal(err, -ENOMEM);
    assert_null(failed);
    assert_true(n > (size_t)limit / 4 && n < (size_t)limit / 2 + 1);
    assert_int_equal(err_after, 0); /* usable again once released */
}

/* ------------------------------------------------------------------ */
/* Alternate signal stacks                                              */
/* ------------------------------------------------------------------ */

struct altstack_seen {
    bool ok;
    stack_t ss; /* the thread's alternate signal stack */
};

static void *thread_altstack(void *arg)
{
    struct altstack_seen *seen = arg;
    seen->ok = coil__stack_thread_init() == 0 &&
               coil__stack_thread_init() == 0 &&
               sigaltstack(NULL, &seen->ss) == 0 &&
               !(seen->ss.ss_flags & SS_DISABLE) &&
               seen->ss.ss_size >= (size_t)MINSIGSTKSZ;
    return NULL;
}

/* Whether any byte of [addr, addr + len) is mapped (/proc/self/maps:
 * probing with a system call would count as an error under valgrind). */
static bool mapped(void *addr, size_t len)
{
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    unsigned long start, end;
    bool found = false;
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    while (!found && fgets(line, sizeof(line), f))
        if (sscanf(line, "%lx-%lx", &start, &end) == 2)
            found = start < hi && lo < end;
    fclose(f);
    return found;
}

static void test_thread_init(void **state)
{
    (void)state;
    stack_t ss;
    assert_int_equal(coil__stack_thread_init(), 0);
    assert_int_equal(coil__stack_thread_init(), 0);
    assert_int_equal(sigaltstack(NULL, &ss), 0);
    assert_false(ss.ss_flags & SS_DISABLE);

    /* Each thread gets one, and it goes away with the thread. */
    for (int i = 0; i < 20; i++) {
        struct altstack_seen seen = {0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, thread_altstack, &seen), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_true(seen.ok);
        assert_true(seen.ss.ss_sp != ss.ss_sp);
        if (mapped(seen.ss.ss_sp, seen.ss.ss_size))
            fail_msg("thread %d's alternate signal stack is still mapped", i);
    }
}

/* What ASan poisons and reports; nothing to see without it. */
static const struct CMUnitTest asan_tests[] = {
    TEST_NOLOOP(test_pooled_stack_poisoned),
    TEST_NOLOOP(test_use_of_finished_stack_asan),
};

/* What memcheck holds unaddressable and reports. */
static const struct CMUnitTest valgrind_tests[] = {
    TEST_NOLOOP(test_use_of_finished_stack_valgrind),
};

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST_NOLOOP(test_get_put_lifo),
        TEST_NOLOOP(test_pool_keeps_at_most_max_free),
        TEST_NOLOOP(test_sizes_rounded),
        TEST_NOLOOP(test_whole_area_writable),
        TEST_NOLOOP(test_guard_kind),
        TEST_NOLOOP(test_cheap_guards_budget),
        TEST_NOLOOP(test_cheap_guard_falls_back),
        TEST_NOLOOP(test_overflow_reported),
        TEST_NOLOOP(test_overflow_reported_madvise),
        TEST_NOLOOP(test_overflow_reported_mprotect),
        TEST_NOLOOP(test_overflow_reported_in_thread),
        TEST_NOLOOP(test_overflow_local_array),
        TEST_NOLOOP(test_overflow_frame_past_stack),
        TEST_NOLOOP(test_overflow_frame_at_guard_limit),
        TEST_NOLOOP(test_overflow_frame_beyond_guard),
        TEST_NOLOOP(test_overflow_frame_beyond_guard_mprotect),
        TEST_NOLOOP(test_overflow_signal_frame),
        TEST_NOLOOP(test_overflow_signal_in_guard),
        TEST_NOLOOP(test_overflow_local_array_in_task),
        TEST_NOLOOP(test_foreign_fault_passes_on),
        TEST_NOLOOP(test_idle_guard_fault_passes_on),
        TEST_NOLOOP(test_many_stacks),
        TEST_NOLOOP(test_mprotect_map_limit),
        TEST_NOLOOP(test_thread_init),
    };
    test_init();
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    failed += TEST_RUN_IF(ASAN_BUILD,
                          "not built with AddressSanitizer, which alone "
                          "sees the poisoning of pooled stacks",
                          asan_tests);
    failed += TEST_RUN_IF(RUNNING_ON_VALGRIND,
                          "not running under valgrind, whose memcheck alone "
                          "sees pooled stacks as unaddressable",
                          valgrind_tests);
    return failed;
}
