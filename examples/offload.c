/* SPDX-License-Identifier: MIT */
/*
 * offload.c - a blocking computation moved off the loop with
 * coil_to_thread (coil/executor.h), while a ticker task keeps running.
 *
 * Counting primes is pure CPU work: called directly in a task, it would
 * hold the loop's one thread and every other task would stop until it
 * returned. On an executor thread it runs beside the loop, and the ticker
 * keeps ticking every 20 ms meanwhile. The program first shows the
 * blocked case (no tick during the count), then the offloaded one.
 *
 * The job's argument is on the caller's stack here, which is fine
 * because nothing cancels the caller; a job that may outlive a cancelled
 * caller gets heap memory and a dispose function (see coil/executor.h).
 *
 * Usage: offload [N]   (primes below N, default 3000000)
 */
#include <coil.h>

#include <stdio.h>
#include <stdlib.h>

struct count {
    long below;
};

/* Plain blocking C: trial division, no coil calls. */
static int count_primes(void *arg)
{
    const struct count *c = arg;
    int n = 0;
    for (long i = 2; i < c->below; i++) {
        bool prime = true;
        for (long d = 2; d * d <= i; d++)
            if (i % d == 0) {
                prime = false;
                break;
            }
        if (prime)
            n++;
        if ((i & 0xffff) == 0 && coil_job_cancelled())
            break; /* nobody waits any more: stop early */
    }
    return n;
}

static int ticks;
static bool done;

static int ticker(void *arg)
{
    (void)arg;
    while (!done) {
        if (coil_sleep(20 * COIL_MSEC))
            break;
        ticks++;
    }
    return 0;
}

static int run(void *arg)
{
    struct count *c = arg;
    coil_task_t *t;
    int err = coil_task_spawn(coil_running_loop(), ticker, NULL, &t);
    if (err)
        return err;
    coil_yield(); /* the ticker starts */

    int before = ticks;
    int n = count_primes(c); /* on the loop: everything else waits */
    printf("counted on the loop:   %d primes below %ld, ticks meanwhile: %d\n",
           n, c->below, ticks - before);

    before = ticks;
    n = coil_to_thread(count_primes, c, NULL); /* on a thread */
    int during = ticks - before;
    printf("counted on a thread:   %d primes below %ld, the ticker %s\n", n,
           c->below, during > 0 ? "kept ticking" : "stood still");

    done = true;
    coil_task_join(t);
    coil_task_unref(t);
    return n < 0 ? n : (during > 0 ? 0 : 1);
}

int main(int argc, char **argv)
{
    struct count c = {argc > 1 ? atol(argv[1]) : 3000000};
    if (c.below < 2) {
        fprintf(stderr, "usage: offload [N >= 2]\n");
        return 2;
    }
    int r = coil_run(run, &c);
    return r != 0;
}
