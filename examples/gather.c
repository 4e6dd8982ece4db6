/* SPDX-License-Identifier: MIT */
/*
 * gather.c - run several jobs at once and collect their results in order
 * (coil_gather); then the same with one job failing, which cancels the
 * others; then a job too slow for coil_wait_for.
 * Usage: gather
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>

struct job {
    int id;
    int64_t work; /* how long it takes */
    int fail;     /* error to fail with, or 0 */
};

static int run_job(void *arg)
{
    struct job *j = arg;
    int err = coil_sleep(j->work);
    if (err) {
        printf("  job %d: stopped (%s)\n", j->id, coil_err_name(err));
        return err;
    }
    if (j->fail) {
        printf("  job %d: fails with %s\n", j->id, coil_err_name(j->fail));
        return j->fail;
    }
    printf("  job %d: done\n", j->id);
    return j->id * j->id;
}

/* Spawn a task per job and gather them. */
static int gather_jobs(struct job *jobs, int n)
{
    coil_loop_t *loop = coil_running_loop();
    coil_task_t *tasks[8];
    coil_future_t *futs[8];
    void *results[8];
    for (int i = 0; i < n; i++) {
        int err = coil_task_spawn(loop, run_job, &jobs[i], &tasks[i]);
        if (err)
            return err;
        futs[i] = coil_task_future(tasks[i]);
    }
    int err = coil_gather(futs, (size_t)n, results, 0);
    if (err)
        printf("  gather: %s\n", coil_strerror(err));
    else
        for (int i = 0; i < n; i++)
            printf("  result[%d] = %ld\n", i, (long)(intptr_t)results[i]);
    for (int i = 0; i < n; i++)
        coil_task_unref(tasks[i]);
    return 0;
}

static int main_task(void *arg)
{
    (void)arg;
    struct job ok[3] = {{1, 30 * COIL_MSEC, 0},
                        {2, 10 * COIL_MSEC, 0},
                        {3, 20 * COIL_MSEC, 0}};
    printf("three jobs, results in argument order:\n");
    gather_jobs(ok, 3);

    struct job bad[3] = {{4, 50 * COIL_MSEC, 0},
                         {5, 10 * COIL_MSEC, -ECONNRESET},
                         {6, 50 * COIL_MSEC, 0}};
    printf("one job fails: the others are cancelled:\n");
    gather_jobs(bad, 3);

    printf("a job too slow for wait_for(50 ms):\n");
    coil_loop_t *loop = coil_running_loop();
    struct job slow = {7, COIL_SEC, 0};
    coil_task_t *t;
    int err = coil_task_spawn(loop, run_job, &slow, &t);
    if (err)
        return err;
    err = coil_wait_for(coil_task_future(t), 50 * COIL_MSEC, NULL);
    printf("  wait_for: %s\n", coil_strerror(err));
    coil_task_unref(t);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: gather\n");
        return 2;
    }
    int err = coil_run(main_task, NULL);
    return err < 0;
}
