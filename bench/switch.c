/* SPDX-License-Identifier: MIT */
/*
 * bench_switch - the cost of one context switch, the primitive a task's
 * every suspension and resumption pays twice (out to the loop, back in).
 *
 * The main context and one made context ping-pong through
 * coil__context_switch (the generic layer, so sanitizer hooks would be
 * counted if built in; they are not in Release): ROUNDS round trips, two
 * switches each, for each implementation built here, and the same with
 * glibc's swapcontext called directly between two ucontexts for
 * reference. Best of REPS runs; one switch, not one round trip:
 *
 *   context_switch_asm <ns> ns/op
 *   context_switch_ucontext <ns> ns/op
 *   swapcontext_raw <ns> ns/op
 *
 * swapcontext saves and restores the signal mask with a system call, so
 * the ucontext runs use fewer rounds.
 */
#include <ucontext.h>

#include "bench.h"
#include "context.h"
#include "stack.h"

#define ROUNDS_ASM 10000000L
#define ROUNDS_UCONTEXT 1000000L
#define REPS 3

struct pingpong {
    const struct coil__context_ops *ops;
    struct coil__context main, co;
    long rounds, seen;
};

static void entry(void *arg)
{
    struct pingpong *p = arg;
    for (;;) {
        p->seen++;
        if (p->seen > p->rounds)
            coil__context_exit(p->ops, &p->co, &p->main);
        coil__context_switch(p->ops, &p->co, &p->main);
    }
}

/* ns per switch for one run of ops. */
static double run_context(const struct coil__context_ops *ops, long rounds)
{
    struct coil__stack_pool pool;
    struct coil__stack *s;
    struct pingpong p = {.ops = ops, .rounds = rounds};
    void *storage = malloc(ops->thread_storage + 1);
    coil__stack_pool_init(&pool, COIL__STACK_DEFAULT);
    if (!storage || coil__stack_get(&pool, &s) != 0)
        bench_fail("no memory for a stack");
    coil__context_init_thread(ops, &p.main, storage);
    coil__context_make(ops, &p.co, s->base, s->size, entry, &p);

    int64_t t0 = bench_wall_ns();
    for (long i = 0; i < rounds; i++)
        coil__context_switch(ops, &p.main, &p.co);
    int64_t t1 = bench_wall_ns();
    coil__context_switch(ops, &p.main, &p.co); /* let it exit */
    if (p.seen != rounds + 1)
        bench_fail("%s: the context ran %ld times, not %ld", ops->name, p.seen,
                   rounds + 1);

    coil__context_destroy(&p.co);
    coil__stack_put(&pool, s);
    coil__stack_pool_term(&pool);
    free(storage);
    return (double)(t1 - t0) / (2.0 * (double)rounds);
}

/* The same ping-pong on bare swapcontext. */
static ucontext_t raw_main, raw_co;
static long raw_seen;

static void raw_entry(void)
{
    for (;;) {
        raw_seen++;
        if (swapcontext(&raw_co, &raw_main) != 0)
            bench_fail("swapcontext failed");
    }
}

static double run_raw(long rounds)
{
    size_t size = COIL__STACK_DEFAULT;
    void *stack = malloc(size);
    if (!stack || getcontext(&raw_co) != 0)
        bench_fail("cannot set up a ucontext");
    raw_co.uc_stack.ss_sp = stack;
    raw_co.uc_stack.ss_size = size;
    raw_co.uc_link = NULL;
    makecontext(&raw_co, raw_entry, 0);
    raw_seen = 0;

    int64_t t0 = bench_wall_ns();
    for (long i = 0; i < rounds; i++)
        if (swapcontext(&raw_main, &raw_co) != 0)
            bench_fail("swapcontext failed");
    int64_t t1 = bench_wall_ns();
    if (raw_seen != rounds)
        bench_fail("swapcontext: the context ran %ld times, not %ld", raw_seen,
                   rounds);
    free(stack); /* raw_co is abandoned mid-loop: never resumed again */
    return (double)(t1 - t0) / (2.0 * (double)rounds);
}

/* bench_best_of takes no arguments: what the next rounds run. */
static const struct coil__context_ops *cur_ops;
static long cur_rounds;

static double run_current(void)
{
    return run_context(cur_ops, cur_rounds);
}

static double run_raw_ucontext(void)
{
    return run_raw(ROUNDS_UCONTEXT);
}

int main(void)
{
    static const char *const names[] = {"asm", "ucontext"}; /* as ROUNDS_ */
    char line[64];
    bench_guard(120);
    if (coil__stack_thread_init() != 0)
        bench_fail("no alternate signal stack");
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        const struct coil__context_ops *ops;
        int err = coil__context_find(names[i], &ops);
        if (err) {
            fprintf(stderr, "bench: context %s not built here (%d)\n", names[i],
                    err);
            continue;
        }
        cur_ops = ops;
        cur_rounds = i == 0 ? ROUNDS_ASM : ROUNDS_UCONTEXT;
        snprintf(line, sizeof(line), "context_switch_%s", names[i]);
        bench_print(line, bench_best_of(REPS, run_current), "ns/op");
    }
    bench_print("swapcontext_raw", bench_best_of(REPS, run_raw_ucontext),
                "ns/op");
    return 0;
}
