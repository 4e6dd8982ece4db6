/* SPDX-License-Identifier: MIT */
/*
 * dump.c - the task dump, debug mode's calls that need every layer (the
 * dump signal, the stuck-loop check, the report at close), and turning
 * debug mode on.
 *
 * The dump reads each task through task.c's introspection calls
 * (coil__task_info, coil__task_waits_on, coil__task_backtrace) and what
 * it waits for through its wait's describe and each_future ops, so each
 * module says in its own words what its waits are.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "debug_internal.h"
#include "loop_internal.h"
#include "signal_internal.h"
#include "threadsafe.h"
#include "task_internal.h"

#define DUMP_FRAMES 24

int coil_loop_set_debug(coil_loop_t *loop, bool on)
{
    if (!loop)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    return coil__debug_set(loop, on);
}

void coil__dump_signalled(struct coil_loop *loop)
{
    coil__log(loop, COIL_LOG_INFO, "task dump (dump signal) follows on "
                                   "stderr");
    (void)coil_loop_dump_tasks(loop, stderr);
}

/* ------------------------------------------------------------------ */
/* The dump                                                             */
/* ------------------------------------------------------------------ */

static void print_secs(FILE *out, const char *label, int64_t ns)
{
    fprintf(out, "%s %.3f s", label, (double)ns / 1e9);
}

static void print_task(struct coil_loop *loop, FILE *out, coil_task_t *t,
                       coil_task_t *const *all, int nall)
{
    struct coil__task_info in;
    coil__task_info(t, &in);
    int64_t now = coil_loop_time(loop);
    fprintf(out, "task %llu '%s' %s", (unsigned long long)in.id, in.name,
            in.state);
    if (in.cancelling)
        fprintf(out, ", cancelling %u", in.cancelling);
    fputc('\n', out);
    if (in.waits[0])
        fprintf(out, "    waits: %s\n", in.waits);
    fputs("    ", out);
    print_secs(out, "age", now - in.created);
    if (in.last_resume) {
        fputs(", ", out);
        print_secs(out, "last ran", now - in.last_resume);
        fputs(" ago", out);
    }
    if (coil_loop_debug(loop) || in.cpu_ns)
        fprintf(out, ", cpu %.3f ms", (double)in.cpu_ns / 1e6);
    if (in.stack_used)
        fprintf(out, ", stack %zu of %zu bytes", in.stack_used,
                in.stack_size);
    else if (in.stack_size)
        fprintf(out, ", stack %zu bytes", in.stack_size);
    fputc('\n', out);
    char site[96];
    coil__debug_symbol(in.spawn_site, site, sizeof(site));
    fprintf(out, "    spawned by: %s\n", site);
    /* The await tree, upwards: every task whose wait waits for this one
     * (a join, a group, a gather), each with what it waits in. */
    int nby = 0;
    for (int i = 0; i < nall; i++) {
        if (!coil__task_waits_on(all[i], t))
            continue;
        struct coil__task_info wi;
        coil__task_info(all[i], &wi);
        fprintf(out, "%s task %llu '%s' (%s)", nby++ ? "," : "    awaited by:",
                (unsigned long long)wi.id, wi.name, wi.waits);
    }
    if (nby)
        fputc('\n', out);
    void *frames[DUMP_FRAMES];
    int n = coil__task_backtrace(t, frames, DUMP_FRAMES);
    /* A suspended task's first two frames are the peek and the suspend;
     * the running one's, the backtrace call. */
    int skip = t == coil_current_task() ? 1 : 2;
    if (n > skip) {
        fputs("    backtrace:\n", out);
        for (int i = skip; i < n; i++) {
            char sym[128];
            coil__debug_symbol((const char *)frames[i] - 1, sym,
                               sizeof(sym));
            fprintf(out, "      #%d %s\n", i - skip, sym);
        }
    }
}

int coil_loop_dump_tasks(coil_loop_t *loop, FILE *out)
{
    if (!loop || !out)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    if (coil_loop_is_running(loop) && !coil__loop_running_here(loop))
        return -EPERM;
    /* Not running: the backtraces switch through the loop's own context,
     * which must be this thread's (the last run may have been on
     * another). */
    if (!coil_loop_is_running(loop))
        coil__tasks_enter(loop);
    int count = coil_loop_tasks(loop, NULL, 0);
    coil_task_t **tasks = NULL;
    if (count > 0) {
        tasks = malloc((size_t)count * sizeof(*tasks));
        if (!tasks)
            return -ENOMEM;
        count = coil_loop_tasks(loop, tasks, (size_t)count);
    }
    coil_loop_metrics_t m;
    coil_loop_metrics(loop, &m);
    fprintf(out,
            "coil task dump: loop %p (%s%s), %d task%s, loop time %.3f s\n",
            (void *)loop, coil_loop_backend(loop),
            coil_loop_debug(loop) ? ", debug" : "", count,
            count == 1 ? "" : "s", (double)coil_loop_time(loop) / 1e9);
    fprintf(out,
            "  metrics: %llu iterations, %llu callbacks, %llu task steps, "
            "%llu polls, %llu events, polling %.3f s, running %.3f s",
            (unsigned long long)m.iterations,
            (unsigned long long)m.callbacks,
            (unsigned long long)m.task_steps, (unsigned long long)m.polls,
            (unsigned long long)m.events, (double)m.poll_ns / 1e9,
            (double)m.run_ns / 1e9);
    if (m.longest_step_ns)
        fprintf(out, ", longest step %.3f ms (%s)",
                (double)m.longest_step_ns / 1e6, m.longest_step_what);
    fputc('\n', out);
    for (int i = 0; i < count; i++)
        print_task(loop, out, tasks[i], tasks, count);
    for (int i = 0; i < count; i++)
        coil_task_unref(tasks[i]);
    free(tasks);
    fputs("end of task dump\n", out);
    return fflush(out) == 0 && !ferror(out) ? 0 : -EIO;
}

int coil_dump_tasks(FILE *out)
{
    coil_loop_t *loop = coil_running_loop();
    if (!out)
        return -EINVAL;
    if (!loop)
        return -ESRCH;
    return coil_loop_dump_tasks(loop, out);
}

/* ------------------------------------------------------------------ */
/* A loop that would sleep forever                                      */
/* ------------------------------------------------------------------ */

/* Log each line of a dump (written to memory first) at level. */
static void log_dump(struct coil_loop *loop, coil_log_level_t level)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return;
    (void)coil_loop_dump_tasks(loop, m);
    fclose(m);
    for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        coil__log(loop, level, "  %s", line);
    }
    free(buf);
}

bool coil__dump_stuck(struct coil_loop *loop)
{
    int ntasks = coil_loop_tasks(loop, NULL, 0);
    if (ntasks <= 0)
        return false; /* nothing waits: run_forever idles as asked */
    if (coil__threadsafe_may_wake(loop))
        return false;
    int except[2] = {coil__threadsafe_read_fd(loop), -1};
    if (coil__signal_may_wake(loop, &except[1]))
        return false;
    if (coil__watch_active(loop, except, 2))
        return false;
    coil__log(loop, COIL_LOG_ERROR,
              "stuck: %d task%s wait%s and nothing can wake the loop (no "
              "ready callback, no timer, no fd watched, no executor job, "
              "no thread holding it): the run ends with -EDEADLK; the "
              "dump follows",
              ntasks, ntasks == 1 ? "" : "s", ntasks == 1 ? "s" : "");
    log_dump(loop, COIL_LOG_ERROR);
    return true;
}

/* ------------------------------------------------------------------ */
/* What is left at close                                                */
/* ------------------------------------------------------------------ */

void coil__dump_close(struct coil_loop *loop)
{
    int ntasks = coil_loop_tasks(loop, NULL, 0);
    size_t ncalls = coil__ready_len(loop);
    size_t ntimers = coil__timers_pending(loop);
    if (ntasks <= 0 && !ncalls && !ntimers)
        return;
    coil__log(loop, ntasks > 0 ? COIL_LOG_WARNING : COIL_LOG_INFO,
              "loop closed with %d unfinished task%s, %zu ready callback%s "
              "and %zu timer%s pending (they never run; cancel and await "
              "tasks before closing, as coil_run does)",
              ntasks, ntasks == 1 ? "" : "s", ncalls, ncalls == 1 ? "" : "s",
              ntimers, ntimers == 1 ? "" : "s");
    if (ntasks > 0)
        log_dump(loop, COIL_LOG_INFO);
}
