/* SPDX-License-Identifier: MIT */
/*
 * debug_internal.h - debug mode's part of the loop (debug.c), the log,
 * the reports of misuse, and what the upper layers' introspection
 * (dump.c) lends the loop.
 *
 * The loop layer owns: the flag and the slow threshold, the thread the
 * loop belongs to, the watchdog thread that samples a slow step, the
 * timing of every callback and step (coil__debug_run_batch replaces the
 * batch while debug mode is on), the quarantine of freed objects, and
 * the metrics. dump.c, at the top of the include graph, owns the task
 * dump, the stuck-loop check and the dump signal; the loop calls those
 * through the three functions declared at the end (as loop.c calls the
 * tasks' init and close: the one downward exception of the graph).
 */
#ifndef COIL_DEBUG_INTERNAL_H
#define COIL_DEBUG_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>

#include "coil/debug.h"
#include "internal.h"

struct coil_loop;
struct coil__watchdog;
struct coil__quarantined;

/* What run.c counts (coil_loop_metrics), always on. */
struct coil__loop_counters {
    uint64_t iterations, polls, events, callbacks;
    int64_t poll_ns, run_ns;
    int64_t run_began; /* when the current run began (run_ns at leave) */
    int64_t poll_in_run; /* poll_ns when it began */
};

/* The loop's part owned by debug.c. */
struct coil__loop_debug {
    bool registered;          /* in debug.c's table of running loops */
    atomic_bool dump_asked;   /* the dump signal came (debug.c) */
    int64_t slow_ns;
    const void *owner;        /* coil__thread_token() of the loop's thread */
    struct coil__watchdog *wd; /* made on the first run in debug mode */
    bool wd_failed_said;       /* its thread could not be started: said */
    /* Freed objects kept poisoned, oldest first (debug.c). */
    struct coil__quarantined *q_head, *q_tail;
    size_t q_len;
    /* The step being run: a task step names its task here (task.c);
     * step_id 0 for a plain callback, named by its function. */
    uint64_t step_id;
    char step_task[64];
    const void *step_site;    /* where that task was spawned from */
    int64_t longest_ns;
    char longest_what[96];
};

/* A token of the calling thread (the address of a thread-local). */
const void *coil__thread_token(void);

/* Debug mode: abort with a report if the calling thread is not the
 * loop's (coil__loop_check_thread, loop_internal.h). */
COIL__COLD void coil__debug_check_thread(struct coil_loop *loop,
                                         const char *call);

/* Loop creation: COIL_DEBUG, the defaults, the owner thread. */
void coil__debug_init(struct coil_loop *loop);
/* Loop close: stop the watchdog. */
void coil__debug_close(struct coil_loop *loop);
/* Loop memory goes: give the quarantine back (before the pools go). */
void coil__debug_term(struct coil_loop *loop);

/* A run begins / ends on this thread (run.c). */
void coil__debug_enter(struct coil_loop *loop);
void coil__debug_leave(struct coil_loop *loop);

/* Turn debug mode on/off. Errors: -ENOMEM, -EAGAIN (no thread). */
int coil__debug_set(struct coil_loop *loop, bool on);

/* Run the current batch as coil__ready_run_batch does, timing each node
 * and reporting slow ones (run.c, while debug mode is on). */
void coil__debug_run_batch(struct coil_loop *loop);
/* The step being run is task id's, named name, spawned from site (task.c,
 * debug mode): kept for the slow-step report, the task may be gone by
 * then. */
void coil__debug_step_task(struct coil_loop *loop, const char *name,
                           uint64_t id, const void *site);
/* Call fn(arg) as one timed step (a timer's callback, timer.c). */
void coil__debug_call(struct coil_loop *loop, coil_callback_fn fn, void *arg);

/* Name the code at addr: "symbol+0xoff" if the dynamic symbol table
 * knows it, else "module+0xoff", else the address. */
void coil__debug_symbol(const void *addr, char *buf, size_t n);

/*
 * The quarantine: in debug mode a freed object's memory is filled with
 * COIL__POISON bytes and kept (up to a bound, oldest released first)
 * instead of going back to its pool, so that a use after the last unref
 * meets the poison instead of a new object. release(loop, obj) gives it
 * back for good. Returns false (the caller frees as usual) if debug mode
 * is off or the record could not be allocated.
 */
#define COIL__POISON 0xdb
#define COIL__POISON32 0xdbdbdbdbu
bool coil__debug_quarantine(struct coil_loop *loop, void *obj, size_t size,
                            void (*release)(struct coil_loop *loop,
                                            void *obj));

/* ------------------------------------------------------------------ */
/* dump.c's, called by the loop                                         */
/* ------------------------------------------------------------------ */

/* The dump signal came: dump on the loop thread (run.c). */
void coil__dump_signalled(struct coil_loop *loop);
/* The loop is about to sleep with nothing ready and no timer (debug
 * mode): if nothing can ever wake it while tasks wait, report them with
 * a dump and return true (the run ends with -EDEADLK). */
bool coil__dump_stuck(struct coil_loop *loop);
/* The loop closes in debug mode: report what is still pending. */
void coil__dump_close(struct coil_loop *loop);

#endif /* COIL_DEBUG_INTERNAL_H */
