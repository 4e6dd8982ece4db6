/* SPDX-License-Identifier: MIT */
/*
 * aarch64_context_check.c - a self-checking program for the context
 * switch on a processor the test machines are not: .ci/aarch64 builds it
 * with a cross compiler and runs it under qemu-user. No test framework,
 * so it cross-builds with nothing but libc: it links context.c, the
 * implementations (context_asm.c + the .S file when COIL_HAVE_ASM_CONTEXT
 * is set, context_ucontext.c), stack.c and alloc.c (for coil__panic).
 *
 * For each implementation built: ping-pong with a made context, a stack
 * aligned as the ABI requires at its first frame, callee-saved registers
 * (general and floating point) kept across switches, the rounding mode
 * (FPCR) kept per context and inherited at make, and deep recursion
 * within the stack. Contexts record, main checks. The last line is
 * "N passed, M failed"; the exit status is 1 if anything failed.
 *
 * It is plain C and builds natively too (any processor with a context
 * implementation), which is how it is checked before cross-building.
 */
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "stack.h"

static int passed, failed;

#define CHECK(impl, cond)                                                      \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            printf("FAIL [%s] %s:%d: %s\n", impl, __FILE__, __LINE__, #cond);  \
        }                                                                      \
    } while (0)

/* The thread's own context and one made context on a pooled stack. */
struct pair {
    const struct coil__context_ops *ops;
    struct coil__context main, co;
    void *storage;
    struct coil__stack_pool pool;
    struct coil__stack *stack;
};

static int pair_open(struct pair *p, const struct coil__context_ops *ops,
                     coil__context_entry entry, void *arg)
{
    p->ops = ops;
    p->storage = malloc(ops->thread_storage + 1);
    coil__stack_pool_init(&p->pool, COIL__STACK_DEFAULT);
    if (!p->storage || coil__stack_get(&p->pool, &p->stack) != 0)
        return -1;
    coil__context_init_thread(ops, &p->main, p->storage);
    coil__context_make(ops, &p->co, p->stack->base, p->stack->size, entry, arg);
    return 0;
}

static void pair_close(struct pair *p)
{
    coil__context_destroy(&p->co);
    coil__context_destroy(&p->main);
    coil__stack_put(&p->pool, p->stack);
    coil__stack_pool_term(&p->pool);
    free(p->storage);
}

/* ------------------------------------------------------------------ */
/* Ping-pong, and the alignment of a new context's first frame           */
/* ------------------------------------------------------------------ */

struct pingpong {
    struct pair pair;
    int rounds, bad, ran;
    long value;
    uintptr_t misaligned;
};

static void pingpong_entry(void *arg)
{
    struct pingpong *t = arg;
    t->misaligned = (uintptr_t)__builtin_frame_address(0) & 15;
    for (int i = 0; i < t->rounds; i++) {
        if (t->value != 2L * i)
            t->bad++;
        t->value++;
        t->ran++;
        coil__context_switch(t->pair.ops, &t->pair.co, &t->pair.main);
    }
    coil__context_exit(t->pair.ops, &t->pair.co, &t->pair.main);
}

static void check_pingpong(const char *name,
                           const struct coil__context_ops *ops)
{
    struct pingpong t = {.rounds = 1000};
    if (pair_open(&t.pair, ops, pingpong_entry, &t) != 0) {
        CHECK(name, !"setting up the contexts");
        return;
    }
    int wrong = 0;
    for (int i = 0; i <= t.rounds; i++) {
        t.value = 2L * i;
        coil__context_switch(ops, &t.pair.main, &t.pair.co);
        if (i < t.rounds && t.value != 2L * i + 1)
            wrong++;
    }
    CHECK(name, wrong == 0);
    CHECK(name, t.bad == 0);
    CHECK(name, t.ran == t.rounds);
    CHECK(name, t.misaligned == 0);
    pair_close(&t.pair);
}

/* ------------------------------------------------------------------ */
/* Callee-saved registers                                               */
/* ------------------------------------------------------------------ */

struct regs {
    struct pair pair;
    int steps;
    uint64_t co_result;
};

static struct regs *the_regs;

typedef void (*step_fn)(void);

static void step_to_co(void)
{
    coil__context_switch(the_regs->pair.ops, &the_regs->pair.main,
                         &the_regs->pair.co);
}

static void step_to_main(void)
{
    coil__context_switch(the_regs->pair.ops, &the_regs->pair.co,
                         &the_regs->pair.main);
}

static void step_nothing(void) {}

/* More live integers and doubles than there are callee-saved registers
 * (x19-x28, d8-d15), all used after every call to step; every value live
 * across the call (seed, loop bounds, step) differs between the sides. */
__attribute__((noinline)) static uint64_t churn(uint64_t seed, int first,
                                                int last, step_fn step)
{
    uint64_t v[12];
    double f[8];
    for (int i = 0; i < 12; i++)
        v[i] = seed * (2 * (uint64_t)i + 3) + (uint64_t)i;
    for (int i = 0; i < 8; i++)
        f[i] = (double)(seed % 1000) + i * 0.25;
    uint64_t a = v[0], b = v[1], c = v[2], d = v[3], e = v[4], g = v[5],
             h = v[6], k = v[7], l = v[8], m = v[9], n = v[10], o = v[11];
    double fa = f[0], fb = f[1], fc = f[2], fd = f[3], fe = f[4], ff = f[5],
           fg = f[6], fh = f[7];
    for (int s = first; s < last; s++) {
        a = a * 6364136223846793005u + b;
        b ^= a >> 7;
        c += b * 31;
        d ^= c << 3;
        e += d >> 5;
        g ^= e * 17;
        fa = fa * 0.5 + fb * 0.25 + 1.0;
        fb = fb * 0.5 + fc * 0.25 + 2.0;
        fc = fc * 0.5 + fd * 0.25 + 3.0;
        fd = fd * 0.5 + fe * 0.25 + 4.0;
        step();
        h += g ^ a;
        k ^= h * 7;
        l += k >> 3;
        m ^= l * 19;
        n += m >> 13;
        o ^= n * 23;
        fe = fe * 0.5 + ff * 0.25 + 5.0;
        ff = ff * 0.5 + fg * 0.25 + 6.0;
        fg = fg * 0.5 + fh * 0.25 + 7.0;
        fh = fh * 0.5 + fa * 0.25 + 8.0;
        a += o + (uint64_t)s;
    }
    double fs = fa * fb + fc * fd + fe * ff + fg * fh;
    uint64_t bits;
    memcpy(&bits, &fs, sizeof(bits));
    return a ^ b ^ c ^ d ^ e ^ g ^ h ^ k ^ l ^ m ^ n ^ o ^ bits;
}

enum { CO_FIRST = 1 << 20 };

static void regs_entry(void *arg)
{
    struct regs *r = arg;
    r->co_result =
        churn(987654321, CO_FIRST, CO_FIRST + r->steps, step_to_main);
    coil__context_exit(r->pair.ops, &r->pair.co, &r->pair.main);
}

static void check_registers(const char *name,
                            const struct coil__context_ops *ops)
{
    struct regs r = {.steps = 300};
    the_regs = &r;
    uint64_t ref_main = churn(12345, 0, r.steps, step_nothing);
    uint64_t ref_co =
        churn(987654321, CO_FIRST, CO_FIRST + r.steps, step_nothing);
    if (pair_open(&r.pair, ops, regs_entry, &r) != 0) {
        CHECK(name, !"setting up the contexts");
        return;
    }
    uint64_t got = churn(12345, 0, r.steps, step_to_co);
    coil__context_switch(ops, &r.pair.main, &r.pair.co);
    CHECK(name, got == ref_main);
    CHECK(name, r.co_result == ref_co);
    pair_close(&r.pair);
}

/* ------------------------------------------------------------------ */
/* Rounding mode per context                                            */
/* ------------------------------------------------------------------ */

static volatile double one = 1.0, three = 3.0;

struct fp_sample {
    int mode;
    double d;
};

/* Not inlined, so the division stays between the fesetround calls. */
__attribute__((noinline)) static void fp_take(struct fp_sample *s)
{
    s->mode = fegetround();
    s->d = one / three;
}

struct fp {
    struct pair pair;
    struct fp_sample start, resumed;
};

static void fp_entry(void *arg)
{
    struct fp *t = arg;
    fp_take(&t->start);
    fesetround(FE_DOWNWARD);
    coil__context_switch(t->pair.ops, &t->pair.co, &t->pair.main);
    fp_take(&t->resumed);
    coil__context_exit(t->pair.ops, &t->pair.co, &t->pair.main);
}

static void check_rounding(const char *name,
                           const struct coil__context_ops *ops)
{
    struct fp_sample up, down, zero, now;
    fesetround(FE_UPWARD);
    fp_take(&up);
    fesetround(FE_DOWNWARD);
    fp_take(&down);
    fesetround(FE_TOWARDZERO);
    fp_take(&zero);
    CHECK(name, up.d != down.d); /* the mode shows in results */

    struct fp t = {0};
    fesetround(FE_UPWARD); /* inherited by the new context */
    if (pair_open(&t.pair, ops, fp_entry, &t) != 0) {
        CHECK(name, !"setting up the contexts");
        return;
    }
    fesetround(FE_TOWARDZERO);
    coil__context_switch(ops, &t.pair.main, &t.pair.co);
    fp_take(&now); /* the context's downward did not leak here */
    CHECK(name, now.mode == zero.mode && now.d == zero.d);
    fesetround(FE_TONEAREST);
    coil__context_switch(ops, &t.pair.main, &t.pair.co);
    fp_take(&now); /* nor did it change main's own */
    fesetround(FE_TONEAREST);
    CHECK(name, now.mode == FE_TONEAREST);
    CHECK(name, t.start.mode == up.mode && t.start.d == up.d);
    CHECK(name, t.resumed.mode == down.mode && t.resumed.d == down.d);
    pair_close(&t.pair);
}

/* ------------------------------------------------------------------ */
/* Deep recursion                                                       */
/* ------------------------------------------------------------------ */

struct deep {
    struct pair pair;
    uintptr_t top;
    size_t target, reached;
    int depth;
    uint64_t sum;
};

__attribute__((noinline)) static uint64_t dive(struct deep *t, int depth)
{
    volatile unsigned char pad[256];
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = (unsigned char)(depth + (int)i);
    size_t used = t->top - (uintptr_t)__builtin_frame_address(0);
    uint64_t below = 0;
    if (used < t->target && depth < 100000) {
        below = dive(t, depth + 1);
    } else {
        t->reached = used;
        t->depth = depth;
    }
    return below + pad[0] + pad[sizeof(pad) - 1];
}

static void deep_entry(void *arg)
{
    struct deep *t = arg;
    t->sum = dive(t, 0);
    coil__context_exit(t->pair.ops, &t->pair.co, &t->pair.main);
}

static void check_recursion(const char *name,
                            const struct coil__context_ops *ops)
{
    struct deep t = {.target = 48 * 1024};
    if (pair_open(&t.pair, ops, deep_entry, &t) != 0) {
        CHECK(name, !"setting up the contexts");
        return;
    }
    t.top = (uintptr_t)t.pair.stack->base + t.pair.stack->size;
    coil__context_switch(ops, &t.pair.main, &t.pair.co);
    uint64_t want = 0;
    for (int i = 0; i <= t.depth; i++)
        want += (unsigned char)i + (unsigned char)(i + 255);
    CHECK(name, t.reached >= t.target && t.reached < t.pair.stack->size);
    CHECK(name, t.sum == want);
    pair_close(&t.pair);
}

int main(void)
{
    static const char *const names[] = {"asm", "ucontext"};
    setvbuf(stdout, NULL, _IONBF, 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        const struct coil__context_ops *ops;
        int err = coil__context_find(names[i], &ops);
        if (err) {
            printf("[%s] not built here (%d)\n", names[i], err);
            continue;
        }
        int before = failed;
        check_pingpong(names[i], ops);
        check_registers(names[i], ops);
        check_rounding(names[i], ops);
        check_recursion(names[i], ops);
        printf("[%s] %s\n", names[i], failed == before ? "ok" : "FAILED");
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed || passed == 0;
}
