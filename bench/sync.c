/* SPDX-License-Identifier: MIT */
/*
 * sync - queues, locks and semaphores between tasks (coil/queue.h,
 * coil/sync.h), next to the bare task hand-off measured the way
 * task_switch.c does it, all in one process so the ratios mean something.
 *
 *   task_switch_baseline      <ns per hand-off, futures as task_switch.c> ns/op
 *   yield_pingpong            <ns per coil_yield, two tasks alternating>   ns/op
 *   queue_pingpong            <ns per item handed over between two tasks> ns/op
 *   queue_pingpong_vs_task_switch <queue_pingpong / task_switch_baseline>  x
 *   queue_pingpong_allocs     <allocations in the steady state>           count
 *   queue_pipeline3           <ns per item through 3 tasks, 2 queues>     ns/op
 *   lock_uncontended          <ns per acquire + release, one task>        ns/op
 *   semaphore_uncontended     <ns per acquire + release, one task>        ns/op
 *   semaphore_contended_1000  <ns per acquire, 1000 tasks, 10 permits>    ns/op
 *   *_allocs                  <allocations counted, see below>            count
 *
 * A hand-off is one task giving a value to another and switching to it:
 * in queue_pingpong, task A puts into q1 and gets from q2 while B gets
 * from q1 and puts into q2 (unbounded FIFOs), so each put finds the other
 * task waiting in get, wakes it, and the putter then suspends in its own
 * get: one round trip is two hand-offs. task_switch_baseline is the same
 * ping-pong on futures (complete the partner's, await our own, make a new
 * one), the loop of task_switch.c; yield_pingpong is the floor, two tasks
 * that only yield to each other through the ready queue.
 *
 * queue_pipeline3: producer -> q1 -> middle -> q2 -> consumer, both
 * queues of maxsize 64; ns per item from the first put to the last get.
 * semaphore_contended_1000: 1000 tasks on a semaphore of 10 permits,
 * each doing acquire, coil_yield, release 200 times; ns per acquire.
 *
 * The ping-pongs run interleaved (baseline, queue, yield, baseline, ...)
 * and each reports its best of REPS runs, so a slow stretch of a shared
 * machine hits all of them alike; the others report their best of REPS.
 * Every run has a fresh loop.
 *
 * Allocations: coil's allocator is replaced (coil_set_allocator) by one
 * that counts calls to malloc and realloc. lock_uncontended_allocs and
 * semaphore_uncontended_allocs count what the timed loops allocated;
 * queue_pingpong_allocs and queue_pipeline3_allocs what was allocated
 * from item WARM (after the queues' rings were allocated, on the first
 * puts) to the last items; semaphore_contended_1000_allocs from after the
 * spawns until every task was joined. Each is the sum over all runs.
 *
 * Arguments select parts by name (bench_sync lock runs lock_uncontended;
 * the three ping-pongs go together, as queue_pingpong). With BENCH_QUICK
 * set in the environment every count is a tenth and each part runs once:
 * for valgrind --tool=callgrind, which counts instructions exactly.
 *
 * Every part checks its results (values in order, the semaphore's
 * holders never above its value) and exits 1 without printing if wrong.
 */
#include <coil.h>

#include "bench.h"
#include "handoff.h"

#ifndef ROUNDS
#define ROUNDS 1000000L /* ping-pong round trips: two hand-offs each */
#endif
#ifndef PIPE_ITEMS
#define PIPE_ITEMS 2000000L
#endif
#ifndef PAIRS
#define PAIRS 20000000L /* uncontended acquire + release pairs */
#endif
#define PIPE_MAX 64
#define SEM_TASKS 1000
#define SEM_VALUE 10
#define SEM_ROUNDS 200 /* acquires per task */
#define WARM 1000
#ifndef REPS
#define REPS 5
#endif

/* The counts in use: the above, or a tenth of them and one run each
 * with BENCH_QUICK set in the environment (for callgrind; see main). */
static long rounds = ROUNDS, pipe_items = PIPE_ITEMS, pairs = PAIRS;
static int sem_rounds = SEM_ROUNDS, reps = REPS;

/* ------------------------------------------------------------------ */
/* Counting allocator                                                   */
/* ------------------------------------------------------------------ */

static long allocs; /* malloc + realloc calls; single-threaded here */

static void *count_malloc(size_t size, void *ctx)
{
    (void)ctx;
    allocs++;
    return malloc(size);
}

static void *count_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    allocs++;
    return realloc(ptr, size);
}

static void count_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

/* ------------------------------------------------------------------ */
/* Running a measurement: a main task on a fresh loop                   */
/* ------------------------------------------------------------------ */

static coil_loop_t *loop;

/* Run fn(arg) as a task on a new loop until it finishes; its result. */
static void run_main(const char *name, coil_task_fn fn, void *arg)
{
    if (coil_loop_new(&loop))
        bench_fail("%s: coil_loop_new", name);
    coil_task_t *t;
    if (coil_task_spawn(loop, fn, arg, &t))
        bench_fail("%s: spawn", name);
    int err = coil_loop_run_until_complete(loop, coil_task_future(t));
    if (err)
        bench_fail("%s: %s", name, coil_err_name(err));
    coil_task_unref(t);
    coil_loop_unref(loop);
    loop = NULL;
}

/* Spawn n tasks fn(args[i]) (args strided by size), run them from the
 * calling task, and return when all are done; the wall time from just
 * before the first ran until the last was joined, ns. If allocs0 is not
 * NULL it is set to the allocation count after the spawns, so the caller
 * can count what the tasks allocated (up to their last join). */
static int64_t spawn_join(const char *name, int n, coil_task_fn fn,
                          void *args, size_t size, long *allocs0)
{
    coil_task_t **ts = malloc((size_t)n * sizeof(*ts));
    if (!ts)
        bench_fail("%s: out of memory", name);
    for (int i = 0; i < n; i++)
        if (coil_task_spawn(loop, fn, (char *)args + (size_t)i * size, &ts[i]))
            bench_fail("%s: spawn", name);
    if (allocs0)
        *allocs0 = allocs;
    int64_t t0 = bench_wall_ns();
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int err = coil_task_join(ts[i]);
        if (err && !bad)
            bad = err;
    }
    int64_t t1 = bench_wall_ns();
    for (int i = 0; i < n; i++)
        coil_task_unref(ts[i]);
    free(ts);
    if (bad)
        bench_fail("%s: a task failed: %s", name, coil_err_name(bad));
    return t1 - t0;
}

/* ------------------------------------------------------------------ */
/* task_switch_baseline: task_switch.c's futures ping-pong              */
/* ------------------------------------------------------------------ */

static int64_t elapsed;

static int task_switch_main(void *arg)
{
    (void)arg;
    struct handoff_mailbox ma, mb;
    if (coil_future_new(loop, &ma.fut) || coil_future_new(loop, &mb.fut))
        return -ENOMEM;
    /* b first, as task_switch.c spawns them. */
    struct handoff_side sides[2] = {{loop, &mb, &ma, false, 2 * rounds},
                                    {loop, &ma, &mb, true, 2 * rounds}};
    elapsed = spawn_join("task_switch_baseline", 2, handoff_player, sides,
                         sizeof(sides[0]), NULL);
    coil_future_unref(ma.fut);
    coil_future_unref(mb.fut);
    return 0;
}

static double run_task_switch(void)
{
    run_main("task_switch_baseline", task_switch_main, NULL);
    return (double)elapsed / (2 * rounds);
}

/* ------------------------------------------------------------------ */
/* yield_pingpong                                                       */
/* ------------------------------------------------------------------ */

static int yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        int err = coil_yield();
        if (err)
            return err;
    }
    return 0;
}

static int yield_main(void *arg)
{
    (void)arg;
    char unused[2];
    elapsed = spawn_join("yield_pingpong", 2, yielder, unused, 1, NULL);
    return 0;
}

static double run_yield(void)
{
    run_main("yield_pingpong", yield_main, NULL);
    return (double)elapsed / (2 * rounds);
}

/* ------------------------------------------------------------------ */
/* queue_pingpong                                                       */
/* ------------------------------------------------------------------ */

static coil_queue_t *q1, *q2;
static long qp_allocs; /* summed over runs */

static int qp_a(void *arg)
{
    (void)arg;
    long a0 = 0;
    for (long i = 0; i < rounds; i++) {
        if (i == WARM)
            a0 = allocs;
        if (i == rounds - 1)
            qp_allocs += allocs - a0;
        void *v;
        int err = coil_queue_put(q1, (void *)(intptr_t)i);
        if (!err)
            err = coil_queue_get(q2, &v);
        if (err)
            return err;
        if ((intptr_t)v != i + 1)
            bench_fail("queue_pingpong: got %ld back for %ld", (long)(intptr_t)v,
                       i);
    }
    return 0;
}

static int qp_b(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        void *v;
        int err = coil_queue_get(q1, &v);
        if (err)
            return err;
        if ((intptr_t)v != i)
            bench_fail("queue_pingpong: got %ld, expected %ld",
                       (long)(intptr_t)v, i);
        err = coil_queue_put(q2, (void *)(intptr_t)(i + 1));
        if (err)
            return err;
    }
    return 0;
}

static int qp_main(void *arg)
{
    (void)arg;
    if (coil_queue_new(loop, NULL, &q1) || coil_queue_new(loop, NULL, &q2))
        return -ENOMEM;
    coil_task_t *tb, *ta;
    /* b first, so it already waits in get when a puts. */
    if (coil_task_spawn(loop, qp_b, NULL, &tb) ||
        coil_task_spawn(loop, qp_a, NULL, &ta))
        return -ENOMEM;
    int64_t t0 = bench_wall_ns();
    int err = coil_task_join(ta);
    int errb = coil_task_join(tb);
    elapsed = bench_wall_ns() - t0;
    coil_task_unref(ta);
    coil_task_unref(tb);
    coil_queue_unref(q1);
    coil_queue_unref(q2);
    return err ? err : errb;
}

static double run_queue_pingpong(void)
{
    run_main("queue_pingpong", qp_main, NULL);
    return (double)elapsed / (2 * rounds);
}

/* ------------------------------------------------------------------ */
/* queue_pipeline3                                                      */
/* ------------------------------------------------------------------ */

static coil_queue_t *p1, *p2;
static long pipe_allocs;

static int pipe_producer(void *arg)
{
    (void)arg;
    for (long i = 0; i < pipe_items; i++) {
        int err = coil_queue_put(p1, (void *)(intptr_t)i);
        if (err)
            return err;
    }
    return 0;
}

static int pipe_middle(void *arg)
{
    (void)arg;
    for (long i = 0; i < pipe_items; i++) {
        void *v;
        int err = coil_queue_get(p1, &v);
        if (!err)
            err = coil_queue_put(p2, v);
        if (err)
            return err;
    }
    return 0;
}

static int pipe_consumer(void *arg)
{
    (void)arg;
    long a0 = 0;
    for (long i = 0; i < pipe_items; i++) {
        if (i == WARM)
            a0 = allocs;
        if (i == pipe_items - WARM)
            pipe_allocs += allocs - a0;
        void *v;
        int err = coil_queue_get(p2, &v);
        if (err)
            return err;
        if ((intptr_t)v != i)
            bench_fail("queue_pipeline3: got %ld, expected %ld",
                       (long)(intptr_t)v, i);
    }
    return 0;
}

static int pipe_main(void *arg)
{
    (void)arg;
    coil_queue_options_t o = {.maxsize = PIPE_MAX};
    if (coil_queue_new(loop, &o, &p1) || coil_queue_new(loop, &o, &p2))
        return -ENOMEM;
    coil_task_fn fns[3] = {pipe_consumer, pipe_middle, pipe_producer};
    coil_task_t *ts[3];
    for (int i = 0; i < 3; i++)
        if (coil_task_spawn(loop, fns[i], NULL, &ts[i]))
            return -ENOMEM;
    int64_t t0 = bench_wall_ns();
    int err = 0;
    for (int i = 0; i < 3; i++) {
        int e = coil_task_join(ts[i]);
        if (e && !err)
            err = e;
    }
    elapsed = bench_wall_ns() - t0;
    for (int i = 0; i < 3; i++)
        coil_task_unref(ts[i]);
    coil_queue_unref(p1);
    coil_queue_unref(p2);
    return err;
}

static double run_pipeline(void)
{
    run_main("queue_pipeline3", pipe_main, NULL);
    return (double)elapsed / pipe_items;
}

/* ------------------------------------------------------------------ */
/* Uncontended lock and semaphore                                       */
/* ------------------------------------------------------------------ */

static long lock_allocs, sem_allocs;

static int lock_main(void *arg)
{
    (void)arg;
    coil_lock_t *l;
    if (coil_lock_new(loop, &l))
        return -ENOMEM;
    int err = 0;
    long a0 = allocs;
    int64_t t0 = bench_wall_ns();
    for (long i = 0; i < pairs; i++) {
        err |= coil_lock_acquire(l);
        err |= coil_lock_release(l);
    }
    elapsed = bench_wall_ns() - t0;
    lock_allocs += allocs - a0;
    if (err || coil_lock_locked(l))
        bench_fail("lock_uncontended: acquire/release failed");
    coil_lock_unref(l);
    return 0;
}

static double run_lock(void)
{
    run_main("lock_uncontended", lock_main, NULL);
    return (double)elapsed / pairs;
}

static int sem_main(void *arg)
{
    (void)arg;
    coil_semaphore_t *s;
    if (coil_semaphore_new(loop, 1, &s))
        return -ENOMEM;
    int err = 0;
    long a0 = allocs;
    int64_t t0 = bench_wall_ns();
    for (long i = 0; i < pairs; i++) {
        err |= coil_semaphore_acquire(s);
        err |= coil_semaphore_release(s);
    }
    elapsed = bench_wall_ns() - t0;
    sem_allocs += allocs - a0;
    if (err || coil_semaphore_value(s) != 1)
        bench_fail("semaphore_uncontended: acquire/release failed");
    coil_semaphore_unref(s);
    return 0;
}

static double run_sem(void)
{
    run_main("semaphore_uncontended", sem_main, NULL);
    return (double)elapsed / pairs;
}

/* ------------------------------------------------------------------ */
/* semaphore_contended_1000                                             */
/* ------------------------------------------------------------------ */

static coil_semaphore_t *csem;
static int holders, max_holders;
static long acquired, csem_allocs;

static int sem_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < sem_rounds; i++) {
        int err = coil_semaphore_acquire(csem);
        if (err)
            return err;
        acquired++;
        if (++holders > max_holders)
            max_holders = holders;
        err = coil_yield();
        holders--;
        int rerr = coil_semaphore_release(csem);
        if (err || rerr)
            return err ? err : rerr;
    }
    return 0;
}

static int csem_main(void *arg)
{
    (void)arg;
    if (coil_semaphore_new(loop, SEM_VALUE, &csem))
        return -ENOMEM;
    holders = max_holders = 0;
    acquired = 0;
    char unused[SEM_TASKS];
    long a0 = allocs;
    elapsed = spawn_join("semaphore_contended_1000", SEM_TASKS, sem_worker,
                         unused, 1, &a0);
    csem_allocs += allocs - a0;
    if (acquired != (long)SEM_TASKS * sem_rounds || max_holders != SEM_VALUE ||
        holders != 0 || coil_semaphore_value(csem) != SEM_VALUE)
        bench_fail("semaphore_contended_1000: %ld acquires, at most %d "
                   "holders, value %d at the end",
                   acquired, max_holders, coil_semaphore_value(csem));
    coil_semaphore_unref(csem);
    return 0;
}

static double run_csem(void)
{
    run_main("semaphore_contended_1000", csem_main, NULL);
    return (double)elapsed / ((double)SEM_TASKS * sem_rounds);
}

/* ------------------------------------------------------------------ */

static void print_count(const char *name, long n)
{
    printf("%s %ld count\n", name, n);
    fflush(stdout);
}

/* Whether the part name is selected by the command line: every part
 * when there are no arguments, else those whose name contains one. */
static int nargs;
static char **args;

static bool selected(const char *name)
{
    if (nargs == 0)
        return true;
    for (int i = 0; i < nargs; i++)
        if (strstr(name, args[i]))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    nargs = argc - 1;
    args = argv + 1;
    if (getenv("BENCH_QUICK")) {
        rounds /= 10;
        pipe_items /= 10;
        pairs /= 10;
        sem_rounds /= 10;
        reps = 1;
        bench_guard(1200); /* callgrind is some 50 times slower */
    } else {
        bench_guard(120);
    }
    coil_allocator_t counting = {count_malloc, count_realloc, count_free,
                                 NULL};
    if (coil_set_allocator(&counting))
        bench_fail("coil_set_allocator");

    /* The ping-pongs interleaved, best of reps each. */
    if (selected("queue_pingpong")) {
        double ts = 0, qp = 0, yp = 0;
        for (int r = 0; r < reps; r++) {
            double a = run_task_switch(), b = run_queue_pingpong();
            double c = run_yield();
            if (r == 0 || a < ts)
                ts = a;
            if (r == 0 || b < qp)
                qp = b;
            if (r == 0 || c < yp)
                yp = c;
        }
        bench_print("task_switch_baseline", ts, "ns/op");
        bench_print("yield_pingpong", yp, "ns/op");
        bench_print("queue_pingpong", qp, "ns/op");
        printf("queue_pingpong_vs_task_switch %.2f x\n", qp / ts);
        fflush(stdout);
        print_count("queue_pingpong_allocs", qp_allocs);
    }
    if (selected("queue_pipeline3")) {
        bench_print("queue_pipeline3", bench_best_of(reps, run_pipeline),
                    "ns/op");
        print_count("queue_pipeline3_allocs", pipe_allocs);
    }
    if (selected("lock_uncontended")) {
        bench_print("lock_uncontended", bench_best_of(reps, run_lock), "ns/op");
        print_count("lock_uncontended_allocs", lock_allocs);
    }
    if (selected("semaphore_uncontended")) {
        bench_print("semaphore_uncontended", bench_best_of(reps, run_sem),
                    "ns/op");
        print_count("semaphore_uncontended_allocs", sem_allocs);
    }
    if (selected("semaphore_contended_1000")) {
        bench_print("semaphore_contended_1000", bench_best_of(reps, run_csem),
                    "ns/op");
        print_count("semaphore_contended_1000_allocs", csem_allocs);
    }

    if (coil_set_allocator(NULL))
        bench_fail("coil_set_allocator(NULL): memory still live");
    return 0;
}
