/* SPDX-License-Identifier: MIT */
/*
 * test_context.c - the context switch (context.h), run against every
 * implementation built here in one program: each test is listed once per
 * implementation ("test_ring[asm]", "test_ring[ucontext]"); one that is
 * not built, or not the one COIL_CONTEXT names, is skipped with the
 * reason printed. So one run covers every implementation, and COIL_CONTEXT
 * narrows a run to one (as it will for the task tests).
 *
 * Contexts never assert: they record what they saw in a shared struct
 * and switch back; the main context asserts afterwards. Stacks come from
 * stack.c, so they carry guards and are registered with valgrind.
 */
#include <fenv.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "helpers.h"
#include "stack.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(TEST_ASAN)
#define TEST_ASAN 1
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* ------------------------------------------------------------------ */
/* Implementations under test                                           */
/* ------------------------------------------------------------------ */

struct impl {
    const char *name;
    const struct coil__context_ops *ops; /* NULL: skipped */
    char why[128];                       /* ...and why */
};

static struct impl impls[] = {{.name = "asm"}, {.name = "ucontext"}};
static struct impl *current;

static void impls_resolve(void)
{
    const char *only = getenv("COIL_CONTEXT");
    if (only && !*only)
        only = NULL;
    for (size_t i = 0; i < sizeof(impls) / sizeof(*impls); i++) {
        struct impl *im = &impls[i];
        if (only && strcmp(only, im->name) != 0) {
            snprintf(im->why, sizeof(im->why), "COIL_CONTEXT=%s", only);
            continue;
        }
        int err = coil__context_find(im->name, &im->ops);
        if (err == -ENOSYS)
            snprintf(im->why, sizeof(im->why),
                     "not built here (COIL_FORCE_UCONTEXT, or no assembly "
                     "for this processor)");
        else if (err)
            snprintf(im->why, sizeof(im->why), "coil__context_find: %d", err);
    }
}

static int setup(void **state)
{
    current = *state;
    return test_setup_noloop(state);
}

/* The implementation of the test being run; skips the test if none. */
static const struct coil__context_ops *ops_or_skip(void)
{
    if (!current->ops) {
        printf("[ SKIP     ] %s: %s\n", current->name, current->why);
        skip();
    }
    return current->ops;
}

/* ------------------------------------------------------------------ */
/* Fixtures: the thread's own context, and made contexts on stacks       */
/* ------------------------------------------------------------------ */

struct thread_ctx {
    struct coil__context ctx;
    void *storage;
};

static void thread_ctx_init(const struct coil__context_ops *ops,
                            struct thread_ctx *t)
{
    t->storage = ops->thread_storage ? malloc(ops->thread_storage) : NULL;
    coil__context_init_thread(ops, &t->ctx, t->storage);
}

static void thread_ctx_term(struct thread_ctx *t)
{
    coil__context_destroy(&t->ctx);
    free(t->storage);
}

static struct coil__stack *stack_get(struct coil__stack_pool *pool)
{
    struct coil__stack *s;
    int err = coil__stack_get(pool, &s);
    assert_int_equal(err, 0);
    return s;
}

/* ------------------------------------------------------------------ */
/* Ping-pong between the main context and one made context               */
/* ------------------------------------------------------------------ */

struct pingpong {
    const struct coil__context_ops *ops;
    struct thread_ctx main;
    struct coil__context co;
    int rounds;
    long value;           /* main writes 2i, the context answers 2i + 1 */
    int bad;              /* rounds where the context saw the wrong value */
    int co_rounds;        /* rounds the context ran */
    bool co_exited;       /* the context reached its exit */
    uintptr_t misaligned; /* the entry's frame address mod 16 */
};

static void pingpong_entry(void *arg)
{
    struct pingpong *p = arg;
    /* The ABI's 16-byte stack alignment holds in a new context too. */
    p->misaligned = (uintptr_t)__builtin_frame_address(0) & 15;
    for (int i = 0; i < p->rounds; i++) {
        if (p->value != 2L * i)
            p->bad++;
        p->value++;
        p->co_rounds++;
        coil__context_switch(p->ops, &p->co, &p->main.ctx);
    }
    p->co_exited = true;
    coil__context_exit(p->ops, &p->co, &p->main.ctx);
}

static void test_ping_pong(void **state)
{
    (void)state;
    struct pingpong p = {.ops = ops_or_skip(), .rounds = 1000};
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    struct coil__stack *s = stack_get(&pool);
    thread_ctx_init(p.ops, &p.main);
    coil__context_make(p.ops, &p.co, s->base, s->size, pingpong_entry, &p);

    for (int i = 0; i < p.rounds; i++) {
        p.value = 2L * i;
        coil__context_switch(p.ops, &p.main.ctx, &p.co);
        assert_int_equal(p.value, 2L * i + 1);
        assert_int_equal(p.co_rounds, i + 1);
    }
    assert_false(p.co_exited);
    coil__context_switch(p.ops, &p.main.ctx, &p.co); /* let it exit */
    assert_true(p.co_exited);
    assert_int_equal(p.bad, 0);
    assert_int_equal(p.misaligned, 0);

    coil__context_destroy(&p.co);
    thread_ctx_term(&p.main);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
}

/* ------------------------------------------------------------------ */
/* A ring: main -> c0 -> c1 -> ... -> main, made contexts switching to   */
/* each other directly                                                   */
/* ------------------------------------------------------------------ */

enum { RING = 5, RING_ROUNDS = 200 };

struct ring {
    const struct coil__context_ops *ops;
    struct thread_ctx main;
    struct coil__context co[RING];
    int ids[RING];
    int log[RING * RING_ROUNDS];
    int nlog;
};

static struct ring *the_ring;

static struct coil__context *ring_next(struct ring *r, int id)
{
    return id + 1 < RING ? &r->co[id + 1] : &r->main.ctx;
}

static void ring_entry(void *arg)
{
    int id = *(int *)arg;
    struct ring *r = the_ring;
    for (int round = 0; round < RING_ROUNDS; round++) {
        r->log[r->nlog++] = id;
        if (round + 1 < RING_ROUNDS)
            coil__context_switch(r->ops, &r->co[id], ring_next(r, id));
    }
    coil__context_exit(r->ops, &r->co[id], ring_next(r, id));
}

static void test_ring(void **state)
{
    (void)state;
    static struct ring r;
    memset(&r, 0, sizeof(r));
    r.ops = ops_or_skip();
    the_ring = &r;
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    struct coil__stack *s[RING];
    thread_ctx_init(r.ops, &r.main);
    for (int i = 0; i < RING; i++) {
        s[i] = stack_get(&pool);
        r.ids[i] = i;
        coil__context_make(r.ops, &r.co[i], s[i]->base, s[i]->size, ring_entry,
                           &r.ids[i]);
    }
    for (int round = 0; round < RING_ROUNDS; round++) {
        coil__context_switch(r.ops, &r.main.ctx, &r.co[0]);
        assert_int_equal(r.nlog, (round + 1) * RING);
    }
    for (int i = 0; i < RING * RING_ROUNDS; i++)
        assert_int_equal(r.log[i], i % RING);
    for (int i = 0; i < RING; i++) {
        coil__context_destroy(&r.co[i]);
        coil__stack_put(&pool, s[i]);
    }
    /* LIFO: the last stack returned is the first reused. */
    struct coil__stack *again = stack_get(&pool);
    assert_ptr_equal(again, s[RING - 1]);
    coil__stack_put(&pool, again);
    thread_ctx_term(&r.main);
    coil__stack_pool_term(&pool);
}

/* ------------------------------------------------------------------ */
/* Callee-saved registers: two computations with many live values, each  */
/* switching to the other on every step, against references computed     */
/* without switching                                                     */
/* ------------------------------------------------------------------ */

struct regs {
    const struct coil__context_ops *ops;
    struct thread_ctx main;
    struct coil__context co;
    int steps;
    uint64_t co_result;
};

static struct regs *the_regs;

typedef void (*step_fn)(void);

static void step_to_co(void)
{
    coil__context_switch(the_regs->ops, &the_regs->main.ctx, &the_regs->co);
}

static void step_to_main(void)
{
    coil__context_switch(the_regs->ops, &the_regs->co, &the_regs->main.ctx);
}

static void step_nothing(void) {}

/*
 * Sixteen integers and eight doubles live across every call to step: the
 * compiler keeps as many as it can in callee-saved registers (x86-64: rbx,
 * rbp, r12-r15; aarch64: x19-x28 and d8-d15), which the switch must
 * preserve. The other side runs the same code at the same time, and
 * every value live across the call differs between the two sides (the
 * seed, the loop bounds, the step function), so a register the switch
 * failed to restore would hold the other side's value.
 */
__attribute__((noinline)) static uint64_t churn(uint64_t seed, int first,
                                                int last, step_fn step)
{
    uint64_t a = seed, b = seed ^ 0x9e3779b97f4a7c15u, c = seed * 3 + 1,
             d = seed * 5 + 2, e = seed * 7 + 3, f = seed * 11 + 4,
             g = seed * 13 + 5, h = seed * 17 + 6, i = seed * 19 + 7,
             j = seed * 23 + 8, k = seed * 29 + 9, l = seed * 31 + 10,
             m = seed * 37 + 11, n = seed * 41 + 12, o = seed * 43 + 13,
             q = seed * 47 + 14;
    double fa = (double)(seed % 1000) + 0.5, fb = fa * 1.25, fc = fa * 1.5,
           fd = fa * 1.75, fe = fa * 2.25, ff = fa * 2.5, fg = fa * 2.75,
           fh = fa * 3.25;
    for (int s = first; s < last; s++) {
        a = a * 6364136223846793005u + b;
        b ^= a >> 7;
        c += b * 31;
        d ^= c << 3;
        e += d >> 5;
        f ^= e * 17;
        g += f >> 11;
        h ^= g * 13;
        fa = fa * 0.5 + fb * 0.25 + 1.0;
        fb = fb * 0.5 + fc * 0.25 + 2.0;
        fc = fc * 0.5 + fd * 0.25 + 3.0;
        fd = fd * 0.5 + fe * 0.25 + 4.0;
        step();
        i += h ^ a;
        j ^= i * 7;
        k += j >> 3;
        l ^= k * 19;
        m += l >> 13;
        n ^= m * 23;
        o += n >> 2;
        q ^= o * 29;
        fe = fe * 0.5 + ff * 0.25 + 5.0;
        ff = ff * 0.5 + fg * 0.25 + 6.0;
        fg = fg * 0.5 + fh * 0.25 + 7.0;
        fh = fh * 0.5 + fa * 0.25 + 8.0;
        a += q + (uint64_t)s;
    }
    /* Every bit of the doubles counts, not just their rounded sum. */
    double fs = fa * fb + fc * fd + fe * ff + fg * fh;
    uint64_t bits;
    memcpy(&bits, &fs, sizeof(bits));
    return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i ^ j ^ k ^ l ^ m ^ n ^ o ^ q ^ bits;
}

static const uint64_t SEED_MAIN = 12345, SEED_CO = 987654321;
enum { CO_FIRST = 1 << 20 }; /* the context's loop counts from here */

static void regs_entry(void *arg)
{
    struct regs *r = arg;
    r->co_result = churn(SEED_CO, CO_FIRST, CO_FIRST + r->steps, step_to_main);
    coil__context_exit(r->ops, &r->co, &r->main.ctx);
}

static void test_callee_saved(void **state)
{
    (void)state;
    struct regs r = {.ops = ops_or_skip(), .steps = 500};
    the_regs = &r;
    uint64_t ref_main = churn(SEED_MAIN, 0, r.steps, step_nothing);
    uint64_t ref_co =
        churn(SEED_CO, CO_FIRST, CO_FIRST + r.steps, step_nothing);
    assert_true(ref_main != ref_co);

    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    struct coil__stack *s = stack_get(&pool);
    thread_ctx_init(r.ops, &r.main);
    coil__context_make(r.ops, &r.co, s->base, s->size, regs_entry, &r);
    uint64_t got_main = churn(SEED_MAIN, 0, r.steps, step_to_co);
    coil__context_switch(r.ops, &r.main.ctx, &r.co); /* its last step */
    assert_int_equal(got_main, ref_main);
    assert_int_equal(r.co_result, ref_co);

    coil__context_destroy(&r.co);
    thread_ctx_term(&r.main);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
}

/* ------------------------------------------------------------------ */
/* Floating-point control                                               */
/* ------------------------------------------------------------------ */

/*
 * The ABI makes the rounding mode callee-saved (x86-64: the MXCSR control
 * bits and the x87 control word; aarch64: the FPCR), and the status flags
 * caller-saved. So: a context that changes its mode and switches away
 * finds its own mode when resumed; the context it switched to never sees
 * it; a made context starts with its creator's mode at make time. Status
 * flags are not checked: nothing promises them.
 *
 * Each sample reads the mode (fegetround: the x87 control word on
 * x86-64, the FPCR on aarch64) and divides in double (SSE: the MXCSR) and
 * long double (x87 on x86-64) so each register's mode shows separately.
 */
static volatile double one = 1.0, three = 3.0;

struct fp_sample {
    int mode;
    double d;
    long double ld;
};

/* Not inlined: the compiler assumes the default rounding mode and would
 * otherwise be free to move the divisions across fesetround calls. */
__attribute__((noinline)) static void fp_take(struct fp_sample *s)
{
    s->mode = fegetround();
    s->d = one / three;
    s->ld = (long double)one / (long double)three;
}

/* Whether the rounding mode shows in double and in long double results
 * (always, natively; valgrind computes SSE in round-to-nearest only). */
static bool fp_mode_shows_d, fp_mode_shows_ld;

static bool fp_same(const struct fp_sample *a, const struct fp_sample *b)
{
    return a->mode == b->mode && (!fp_mode_shows_d || a->d == b->d) &&
           (!fp_mode_shows_ld || a->ld == b->ld);
}

enum { FP_A_START, FP_A_RESUMED, FP_B_START, FP_B_RESUMED, FP_NSAMPLES };

struct fp {
    const struct coil__context_ops *ops;
    struct thread_ctx main;
    struct coil__context a, b;
    struct fp_sample seen[FP_NSAMPLES];
};

static void fp_a(void *arg)
{
    struct fp *f = arg;
    fp_take(&f->seen[FP_A_START]);
    fesetround(FE_DOWNWARD);
    coil__context_switch(f->ops, &f->a, &f->main.ctx);
    fp_take(&f->seen[FP_A_RESUMED]);
    coil__context_exit(f->ops, &f->a, &f->main.ctx);
}

static void fp_b(void *arg)
{
    struct fp *f = arg;
    fp_take(&f->seen[FP_B_START]);
    fesetround(FE_TONEAREST);
    coil__context_switch(f->ops, &f->b, &f->a); /* made to made */
    fp_take(&f->seen[FP_B_RESUMED]);
    coil__context_exit(f->ops, &f->b, &f->main.ctx);
}

static void test_fp_control(void **state)
{
    (void)state;
    struct fp f = {.ops = ops_or_skip()};
    static const int modes[] = {FE_TONEAREST, FE_DOWNWARD, FE_UPWARD,
                                FE_TOWARDZERO};
    struct fp_sample ref[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(fesetround(modes[i]), 0);
        fp_take(&ref[i]);
    }
    fp_mode_shows_d = ref[1].d != ref[2].d;
    fp_mode_shows_ld = ref[1].ld != ref[2].ld;
    if (RUNNING_ON_VALGRIND) {
        if (!fp_mode_shows_d)
            printf("[ NOTE     ] valgrind ignores the rounding mode in "
                   "double (SSE) division: those results are not checked\n");
        if (!fp_mode_shows_ld)
            printf("[ NOTE     ] valgrind ignores the rounding mode in long "
                   "double division: those results are not checked\n");
    } else {
        assert_true(fp_mode_shows_d);
        assert_true(fp_mode_shows_ld);
    }

    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    struct coil__stack *sa = stack_get(&pool), *sb = stack_get(&pool);
    thread_ctx_init(f.ops, &f.main);
    struct fp_sample now;

    fesetround(FE_TONEAREST);
    coil__context_make(f.ops, &f.a, sa->base, sa->size, fp_a, &f);
    fesetround(FE_UPWARD);
    coil__context_make(f.ops, &f.b, sb->base, sb->size, fp_b, &f);
    fesetround(FE_TOWARDZERO);

    /* a starts in to-nearest, sets downward, comes back. */
    coil__context_switch(f.ops, &f.main.ctx, &f.a);
    fp_take(&now);
    assert_true(fp_same(&now, &ref[3])); /* main still toward zero */
    /* b starts upward, sets to-nearest, goes to a; a comes back. */
    coil__context_switch(f.ops, &f.main.ctx, &f.b);
    fp_take(&now);
    assert_true(fp_same(&now, &ref[3]));
    /* b resumes in its own to-nearest, then exits. */
    coil__context_switch(f.ops, &f.main.ctx, &f.b);
    fp_take(&now);
    fesetround(FE_TONEAREST);
    assert_true(fp_same(&now, &ref[3]));

    assert_true(fp_same(&f.seen[FP_A_START], &ref[0]));
    assert_true(fp_same(&f.seen[FP_B_START], &ref[2]));
    assert_true(fp_same(&f.seen[FP_A_RESUMED], &ref[1]));
    assert_true(fp_same(&f.seen[FP_B_RESUMED], &ref[0]));

    coil__context_destroy(&f.a);
    coil__context_destroy(&f.b);
    thread_ctx_term(&f.main);
    coil__stack_put(&pool, sa);
    coil__stack_put(&pool, sb);
    coil__stack_pool_term(&pool);
}

/* ------------------------------------------------------------------ */
/* Deep recursion inside the stack                                      */
/* ------------------------------------------------------------------ */

struct deep {
    const struct coil__context_ops *ops;
    struct thread_ctx main;
    struct coil__context co;
    uintptr_t top;  /* the stack's highest address */
    size_t target;  /* bytes of frames to reach */
    size_t reached; /* bytes in use at the deepest frame */
    int depth;      /* frames at the deepest point */
    uint64_t sum;   /* what the frames' locals added up to */
};

__attribute__((noinline)) static uint64_t dive(struct deep *d, int depth)
{
    volatile unsigned char pad[256];
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (unsigned char)(depth + (int)i);
    size_t used = d->top - (uintptr_t)__builtin_frame_address(0);
    uint64_t below = 0;
    if (used < d->target && depth < 100000) {
        below = dive(d, depth + 1);
    } else {
        d->reached = used;
        d->depth = depth;
    }
    return below + pad[0] + pad[sizeof(pad) - 1];
}

static void deep_entry(void *arg)
{
    struct deep *d = arg;
    d->sum = dive(d, 0);
    coil__context_exit(d->ops, &d->co, &d->main.ctx);
}

static void test_deep_recursion(void **state)
{
    (void)state;
    struct deep d = {.ops = ops_or_skip(), .target = 48 * 1024};
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, 64 * 1024);
    struct coil__stack *s = stack_get(&pool);
    d.top = (uintptr_t)s->base + s->size;
    thread_ctx_init(d.ops, &d.main);
    coil__context_make(d.ops, &d.co, s->base, s->size, deep_entry, &d);
    coil__context_switch(d.ops, &d.main.ctx, &d.co);

    assert_true(d.reached >= d.target);
    assert_true(d.reached < s->size);
    uint64_t want = 0;
    for (int i = 0; i <= d.depth; i++)
        want += (unsigned char)i + (unsigned char)(i + 255);
    assert_int_equal(d.sum, want);

    coil__context_destroy(&d.co);
    thread_ctx_term(&d.main);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
}

/* ------------------------------------------------------------------ */
/* Many short lives on one stack: make, run, exit, destroy, again        */
/* ------------------------------------------------------------------ */

struct lives {
    const struct coil__context_ops *ops;
    struct thread_ctx main;
    struct coil__context co;
    int ran;
};

static void lives_entry(void *arg)
{
    struct lives *l = arg;
    l->ran++;
    coil__context_switch(l->ops, &l->co, &l->main.ctx);
    l->ran++;
    coil__context_exit(l->ops, &l->co, &l->main.ctx);
}

static void test_reuse_stack(void **state)
{
    (void)state;
    struct lives l = {.ops = ops_or_skip()};
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_MIN);
    thread_ctx_init(l.ops, &l.main);
    for (int i = 0; i < 1000; i++) {
        struct coil__stack *s = stack_get(&pool);
        coil__context_make(l.ops, &l.co, s->base, s->size, lives_entry, &l);
        coil__context_switch(l.ops, &l.main.ctx, &l.co);
        coil__context_switch(l.ops, &l.main.ctx, &l.co);
        coil__context_destroy(&l.co);
        coil__stack_put(&pool, s);
    }
    assert_int_equal(l.ran, 2000);
    assert_int_equal(pool.nfree, 1); /* the same stack every time */
    thread_ctx_term(&l.main);
    coil__stack_pool_term(&pool);
}

/* ------------------------------------------------------------------ */
/* ASan knows which stack a context runs on                              */
/* ------------------------------------------------------------------ */

/*
 * A function that does not return (coil__context_exit) makes ASan
 * unpoison the running stack from the stack pointer to the top it
 * believes the stack has. Only with the fiber annotations is that the
 * context's own stack; without them ASan uses the thread's bounds, warns
 * and leaves the context's frames poisoned. So: a context with a poisoned
 * frame (a local array's redzones) exits; its stack must be clean after.
 */
#ifdef TEST_ASAN
static char *volatile escaped;

struct asan_exit {
    const struct coil__context_ops *ops;
    struct thread_ctx main;
    struct coil__context co;
};

static void asan_exit_entry(void *arg)
{
    struct asan_exit *a = arg;
    char buf[64]; /* its address escapes: a real frame with redzones */
    escaped = buf;
    memset(buf, 1, sizeof(buf));
    coil__context_exit(a->ops, &a->co, &a->main.ctx);
}

static void test_asan_knows_the_stack(void **state)
{
    (void)state;
    struct asan_exit a = {.ops = ops_or_skip()};
    struct coil__stack_pool pool;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    struct coil__stack *s = stack_get(&pool);
    thread_ctx_init(a.ops, &a.main);
    coil__context_make(a.ops, &a.co, s->base, s->size, asan_exit_entry, &a);
    coil__context_switch(a.ops, &a.main.ctx, &a.co);
    escaped = NULL;
    /* Before put: the pool clears the shadow of returned stacks. */
    void *poisoned = __asan_region_is_poisoned(s->base, s->size);
    coil__context_destroy(&a.co);
    thread_ctx_term(&a.main);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
    assert_null(poisoned);
}
#endif

/* ------------------------------------------------------------------ */
/* Threads: each switches among its own contexts at the same time        */
/* ------------------------------------------------------------------ */

static void *thread_pingpong(void *arg)
{
    struct pingpong *p = arg;
    struct coil__stack_pool pool;
    struct coil__stack *s;
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    if (coil__stack_get(&pool, &s) != 0)
        return NULL;
    thread_ctx_init(p->ops, &p->main);
    coil__context_make(p->ops, &p->co, s->base, s->size, pingpong_entry, p);
    for (int i = 0; i <= p->rounds; i++) {
        p->value = 2L * i;
        coil__context_switch(p->ops, &p->main.ctx, &p->co);
        if (i < p->rounds && p->value != 2L * i + 1)
            p->bad++;
    }
    coil__context_destroy(&p->co);
    thread_ctx_term(&p->main);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
    return p;
}

static void test_threads(void **state)
{
    (void)state;
    enum { N = 4 };
    const struct coil__context_ops *ops = ops_or_skip();
    struct pingpong p[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        p[i] = (struct pingpong){.ops = ops, .rounds = 2000};
        assert_int_equal(pthread_create(&t[i], NULL, thread_pingpong, &p[i]),
                         0);
    }
    for (int i = 0; i < N; i++) {
        void *ret;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_ptr_equal(ret, &p[i]);
        assert_true(p[i].co_exited);
        assert_int_equal(p[i].co_rounds, p[i].rounds);
        assert_int_equal(p[i].bad, 0);
    }
}

/* ------------------------------------------------------------------ */
/* Choosing an implementation                                           */
/* ------------------------------------------------------------------ */

static void test_find(void **state)
{
    (void)state;
    const struct coil__context_ops *ops = (void *)1;
    assert_int_equal(coil__context_find("nope", &ops), -EINVAL);
    assert_null(ops);
    assert_int_equal(coil__context_find("", &ops), -EINVAL);

    assert_int_equal(coil__context_find("ucontext", &ops), 0);
    assert_string_equal(ops->name, "ucontext");
    assert_true(ops->thread_storage > 0);

    const struct coil__context_ops *asm_ops;
    int asm_err = coil__context_find("asm", &asm_ops);
#ifdef COIL_HAVE_ASM_CONTEXT /* when the build passes it on to the tests */
    assert_int_equal(asm_err, 0);
#endif
    if (asm_err == 0) {
        assert_string_equal(asm_ops->name, "asm");
        assert_int_equal(asm_ops->thread_storage, 0);
    } else {
        assert_int_equal(asm_err, -ENOSYS);
        assert_null(asm_ops);
    }

    /* NULL: COIL_CONTEXT if set and not empty, else the best. */
    char *saved = getenv("COIL_CONTEXT");
    saved = saved ? strdup(saved) : NULL;
    unsetenv("COIL_CONTEXT");
    assert_int_equal(coil__context_find(NULL, &ops), 0);
    assert_string_equal(ops->name, asm_err == 0 ? "asm" : "ucontext");
    setenv("COIL_CONTEXT", "", 1);
    assert_int_equal(coil__context_find(NULL, &ops), 0);
    assert_string_equal(ops->name, asm_err == 0 ? "asm" : "ucontext");
    setenv("COIL_CONTEXT", "ucontext", 1);
    assert_int_equal(coil__context_find(NULL, &ops), 0);
    assert_string_equal(ops->name, "ucontext");
    setenv("COIL_CONTEXT", "bogus", 1);
    assert_int_equal(coil__context_find(NULL, &ops), -EINVAL);
    if (asm_err) {
        setenv("COIL_CONTEXT", "asm", 1);
        assert_int_equal(coil__context_find(NULL, &ops), -ENOSYS);
    }
    if (saved)
        setenv("COIL_CONTEXT", saved, 1);
    else
        unsetenv("COIL_CONTEXT");
    free(saved);
}

/* One entry per implementation; the state says which. */
#define FOR_EACH_IMPL(fn)                                                      \
    {#fn "[asm]", fn, setup, test_teardown_noloop, &impls[0]},                 \
    {                                                                          \
#fn "[ucontext]", fn, setup, test_teardown_noloop, &impls[1]           \
    }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_find, test_setup_noloop,
                                        test_teardown_noloop),
        FOR_EACH_IMPL(test_ping_pong),
        FOR_EACH_IMPL(test_ring),
        FOR_EACH_IMPL(test_callee_saved),
        FOR_EACH_IMPL(test_fp_control),
        FOR_EACH_IMPL(test_deep_recursion),
        FOR_EACH_IMPL(test_reuse_stack),
#ifdef TEST_ASAN
        FOR_EACH_IMPL(test_asan_knows_the_stack),
#endif
        FOR_EACH_IMPL(test_threads),
    };
    test_init();
    impls_resolve();
    for (size_t i = 0; i < sizeof(impls) / sizeof(*impls); i++)
        fprintf(stderr, "[ context  ] %s: %s\n", impls[i].name,
                impls[i].ops ? "testing" : impls[i].why);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
