/* SPDX-License-Identifier: MIT */
/*
 * process - children spawned and reaped, coil's way and the bare way, in
 * one process:
 *
 *   process_spawn_wait          <children per second: coil_process_spawn
 *                                of /bin/true, then coil_process_wait,
 *                                one after the other in a task>      /s
 *   posix_spawn_waitpid         <the same with posix_spawn and a
 *                                blocking waitpid>                     /s
 *   process_vs_posix_spawn      <the first's rate over the second's>  x
 *
 * Each is the best of 5 alternated runs of 300 children.
 */
#include <coil.h>
#include <spawn.h>
#include <sys/wait.h>

#include "bench.h"

extern char **environ;

#define CHILDREN 300
#define REPS 5

static char true_path[] = "/bin/true";
static char *const true_argv[] = {true_path, NULL};
static int64_t elapsed;

static int coil_main(void *arg)
{
    (void)arg;
    int64_t t0 = bench_wall_ns();
    for (int i = 0; i < CHILDREN; i++) {
        coil_process_t *p;
        int rc = -1;
        if (coil_process_spawn("/bin/true", true_argv, NULL, &p))
            return -1;
        int err = coil_process_wait(p, &rc);
        coil_process_unref(p);
        if (err || rc != 0)
            return -1;
    }
    elapsed = bench_wall_ns() - t0;
    return 0;
}

static double run_coil(void)
{
    if (coil_run(coil_main, NULL) != 0)
        bench_fail("coil_process_spawn/wait failed");
    return CHILDREN / ((double)elapsed / 1e9);
}

static double run_raw(void)
{
    int64_t t0 = bench_wall_ns();
    for (int i = 0; i < CHILDREN; i++) {
        pid_t pid;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, true_argv, environ))
            bench_fail("posix_spawn");
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0)
            bench_fail("waitpid");
    }
    return CHILDREN / ((double)(bench_wall_ns() - t0) / 1e9);
}

int main(void)
{
    bench_guard(300);
    double best_coil = 0, best_raw = 0;
    for (int r = 0; r < REPS; r++) {
        double c = run_coil(), w = run_raw();
        if (c > best_coil)
            best_coil = c;
        if (w > best_raw)
            best_raw = w;
    }
    bench_print("process_spawn_wait", best_coil, "/s");
    bench_print("posix_spawn_waitpid", best_raw, "/s");
    bench_print("process_vs_posix_spawn", best_coil / best_raw, "x");
    return 0;
}
