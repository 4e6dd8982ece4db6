/* SPDX-License-Identifier: MIT */
/**
 * @file coil/testing.h
 * the testing kit: what coil's own suite uses to test
 * asynchronous code, for a program's tests.
 *
 * These calls exist only in the testing build of the library, which has
 * the same API as libcoil plus this header and a fault-injection seam
 * under its system calls and allocations, installed as libcoil-testing.a:
 * a test program links it instead of libcoil (CMake: coil::coil_testing;
 * pkg-config: coil-testing). The production library has none of it, so
 * none of it costs anything there; in the testing build, what is not
 * turned on costs a test of a flag per system call and per allocation.
 *
 * Not thread-safe unless said otherwise: set up faults and the clock from
 * the test's main thread, between runs.
 */
#ifndef COIL_TESTING_H
#define COIL_TESTING_H

#include "common.h"
#include "stream.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* The fixture (asyncio's IsolatedAsyncioTestCase)                      */
/* ------------------------------------------------------------------ */

/** Options of coil_test_run; zero-initialise, then set fields. */
typedef struct coil_test_options {
    /** Run the loop in debug mode (coil/debug.h): a report of level
     * warning or above then counts as something left behind. */
    bool debug;
    /** The virtual clock (see below), with autojump, for the run. */
    bool virtual_clock;
    /** How long the body may take (loop time: virtual with the virtual
     * clock); 0: 10 s. Past it the body is cancelled, and the run fails
     * with -ETIMEDOUT. */
    int64_t timeout_ns;
    /** The seed of the run's open choices (coil_test_seed), 0: none. The
     * environment's COIL_TEST_SEED, when set, replaces it in every run
     * of the process, even one that asked for none: a failing run's
     * message names its seed, to rerun that one test with (a test that
     * counts on exact virtual times or the default orders fails under
     * any seed). */
    unsigned long seed;
    /** With the seed, chaos I/O as well (coil_test_seed). */
    bool chaos_io;
    /** Record the run to this file (coil_test_record_begin), or replay
     * it from one instead (coil_test_replay_begin), from the loop's
     * making to its close; not both. A failing recorded run's message
     * names its file. A replay that diverges fails the run with
     * -EILSEQ, the message saying where. */
    const char *record_path;
    const char *replay_path; /**< the file to replay: see record_path */
} coil_test_options_t;

/** What coil_test_run found. */
typedef struct coil_test_result {
    int outcome;          /**< the body's: its result (>= 0) or its error */
    int tasks_left;       /**< unfinished when the body returned */
    size_t callbacks_left; /**< callbacks still coming after the loop ran
                              what was ready then, 100 rounds: a chain
                              that never ends */
    size_t timers_left;   /**< timers still pending after those rounds
                             (a close that finished meanwhile, its
                             timer cancelled, is no leftover) */
    long allocations_left; /**< coil allocations not freed at the end */
    long fds_left;        /**< fds opened and not closed at the end */
    int reports;          /**< reports of level warning or above (debug) */
    char first_report[256]; /**< the first of those reports, "" if none */
    char message[512];    /**< one line saying what failed, "" if nothing;
                             with a seed, it ends naming it */
    unsigned long seed;   /**< the run's seed, 0 if none */
    /** The trace of the body's run: a hash of its schedule, up to the
     * body's return (coil_test_trace_hash), and how many events it
     * counts. Equal runs give equal traces. */
    uint64_t trace_hash;
    uint64_t trace_events; /**< how many events the trace counts */
    /** Recording: the results recorded; replaying: those replayed. */
    uint64_t record_entries;
} coil_test_result_t;

/**
 * Run body(arg) as a task in a fresh loop and fail on anything left behind.
 * The loop is made, the task spawned and the loop run until the body returns
 * (or its timeout, which cancels it); what is still there then (tasks, which
 * are cancelled and run until they finish) is counted; the loop then runs,
 * without waiting, what is ready and what I/O has come, up to 100 rounds (a
 * close finishing, a TLS goodbye, a cancelled handle's record: no
 * leftovers), and the callbacks that keep coming and the timers still
 * pending are counted; the loop is closed, and the coil allocations and open
 * fds compared with before the run. The body reaches its loop with
 * coil_running_loop().
 *
 * A body past its timeout is cancelled every 100 ms (loop time); one
 * that ignores ten cancels, and tasks it left that ignore theirs, are
 * abandoned with the loop (the message says so). Reports counted: those
 * of level warning and above (debug mode's) except slow steps (they
 * measure the machine, not the code: shown, not counted), and every call
 * of the loop's exception handler (a failed task nobody awaited), in any
 * mode.
 *
 * Returns, in this order: the error of recording or replaying (options
 * record_path, replay_path), -ETIMEDOUT if the body ran out of time,
 * -ENOTEMPTY if something was left (out says what), the body's own error,
 * else 0. out (may be NULL) receives the details and a one-line message,
 * for any test framework (with cmocka: `assert_int_equal(coil_test_run(
 * ...), 0)`, printing out.message on failure). Faults for the body are
 * armed inside it (the fixture's own setup would meet them otherwise);
 * whatever is still armed when the body returns is cleared (so that the
 * fixture's own cleanup meets none; coil_test_alloc_failed still says
 * whether one hit). The counts are
 * the process's: run one at a time, with no other loop busy. Errors of
 * its own: -EINVAL (body NULL), -EBUSY (a loop runs on this thread, or
 * another run is in progress), -ENOMEM, and what coil_loop_new gives.
 */
COIL_API int coil_test_run(coil_task_fn body, void *arg,
                           const coil_test_options_t *opts,
                           coil_test_result_t *out);

/**
 * Hunt for a schedule that breaks a test: coil_test_run with each seed
 * from first to first + count - 1 in turn (opts->seed is ignored), until
 * one fails. Returns 0 if none did, else that run's return, out holding
 * its result (out->seed: the seed to rerun it with; its message says
 * so). With COIL_TEST_SEED set, only that seed runs. Errors: -EINVAL
 * (body NULL, first 0, count 0, or the seeds overflow), and
 * coil_test_run's.
 */
COIL_API int coil_test_run_seeds(coil_task_fn body, void *arg,
                                 const coil_test_options_t *opts,
                                 unsigned long first, unsigned count,
                                 coil_test_result_t *out);

/* ------------------------------------------------------------------ */
/* The virtual clock (Trio's MockClock)                                 */
/* ------------------------------------------------------------------ */

/**
 * Replace the monotonic clock of every loop of the process by a virtual
 * one that moves only when told (coil_test_clock_advance) or, with
 * autojump, by itself: whenever the loop would sleep with nothing ready
 * and no I/O to see, time jumps to the next timer at once. A 30 s timeout
 * is then tested in microseconds, and in the same order every time. What
 * happens off the loop (an executor's job, a child process, a peer on
 * another thread) takes real time, which autojump does not wait for: a
 * timeout around such a wait expires at once. off restores the real
 * clock. Call between runs.
 */
COIL_API void coil_test_clock_virtual(bool on, bool autojump);

/** Move the virtual clock forward by ns (>= 0); the loop sees it at its
 * next poll. No effect while the clock is real. */
COIL_API void coil_test_clock_advance(int64_t ns);

/* ------------------------------------------------------------------ */
/* Faults                                                               */
/* ------------------------------------------------------------------ */

/**
 * Make the nth allocation from now (through coil's allocator, whichever
 * is installed) fail, once; 0 turns it off. coil_test_alloc_failed says
 * whether an allocation failed since the fault was last armed (turning
 * it off keeps the answer). Thread-safe. (The testing build counts
 * every allocation for this: an atomic increment each.)
 */
COIL_API void coil_test_alloc_fail_after(long nth);
/** @copydoc coil_test_alloc_fail_after */
COIL_API bool coil_test_alloc_failed(void);

/**
 * Make every allocation from now fail with a probability of per_million
 * in a million (0 turns it off), chosen by seed: the same seed fails the
 * same allocations (counted from this call) of a program that allocates
 * in the same order. Replaces coil_test_alloc_fail_after's fault;
 * coil_test_alloc_failed says whether one failed; coil_test_reset_faults
 * ends it. Thread-safe. Errors: -EINVAL (per_million above a million).
 */
COIL_API int coil_test_alloc_fail_random(unsigned per_million,
                                         unsigned long seed);

/** coil allocations not freed (whichever allocator is installed). */
COIL_API long coil_test_alloc_live(void);

/** The operations a fault can be aimed at. */
typedef enum coil_test_op {
    COIL_TEST_ACCEPT,   /**< accepting a connection */
    COIL_TEST_CONNECT,  /**< connecting a socket */
    COIL_TEST_RECV,     /**< stream and socket reads (the memory pair's
                           receives too) */
    COIL_TEST_SEND,     /**< stream and socket writes (the memory pair's
                           sends too) */
    COIL_TEST_RECVFROM, /**< datagram reads */
    COIL_TEST_SENDTO,   /**< datagram writes */
    COIL_TEST_SENDFILE, /**< sendfile(2) itself (not its read-and-send
                           fallback) */
    COIL_TEST_SPAWN,    /**< starting a child process */
    COIL_TEST_POLL,     /**< the loop's wait for I/O (on kqueue, the kevent
                           calls that register interest count too; on
                           io_uring, the enters that submit a removal) */
    COIL_TEST_WAKEUP,   /**< making an eventfd: a loop's wake-up channel,
                           its signal channel */
    COIL_TEST_PIPE,     /**< making a pipe (children's stdio, the wake-up
                           channel's fallback) */
    COIL_TEST_STACK,    /**< mapping a task's stack (mmap; also a thread's
                           signal stack, on its first run) */
    COIL_TEST_THREAD,   /**< starting a thread (pthread_create): an
                           executor's worker, a loop group's loop, debug
                           mode's watchdog */
    COIL_TEST_OP_COUNT  /**< the number of operations (not one) */
} coil_test_op_t;

/**
 * Make op fail with error (a negative errno code) at its nth call from
 * now (1: the next), and the count - 1 calls after it (count 0: every
 * call from then on). Replaces what was set for op before. Errors:
 * -EINVAL (op unknown, nth 0, error not negative).
 */
COIL_API int coil_test_fail(coil_test_op_t op, unsigned nth, unsigned count,
                            int error);

/**
 * One seed for every choice the loop's contract leaves open, made at
 * random from it in the testing build:
 *  - the order in which each batch of ready fds is dispatched (the
 *    kernel promises none);
 *  - whether the timers due in an iteration run before or after what
 *    that iteration's I/O made ready (which one a real loop sees first
 *    depends on when it woke);
 *  - how late each jump of the virtual clock lands past the deadline it
 *    jumps to: [0, 1 ms), as a real loop wakes late (a test must not
 *    count on exact virtual times under a seed);
 *  - with chaos_io, which socket sends and receives fail with EAGAIN
 *    although data could move or with EINTR as if a signal came, and how
 *    short each one is on a stream socket (never twice in a row for the
 *    same call, so everything still progresses).
 *
 * seed 0 turns all of it off. The same seed replays the same choices on
 * the thread that runs the loop: the sequences restart here. Replaces
 * the environment's COIL_SHUFFLE and COIL_CHAOS_IO. What happens on
 * other threads (an executor's jobs, a peer thread) is not the seed's:
 * a test that needs a replayable schedule keeps to the loop's thread.
 */
COIL_API void coil_test_seed(unsigned long seed, bool chaos_io);

/**
 * The trace of this thread's schedule since coil_test_trace_reset (or
 * the start of the current coil_test_run): a hash of every task step (by
 * the task's number in its loop), every I/O event dispatched (by the
 * number of its fd's registration in the loop), every jump of the
 * virtual clock and every seeded choice, in order; events receives how
 * many (may be NULL). Two runs with the same trace hash ran the same
 * schedule: the proof that a seed replays. Thread-safe (per thread).
 */
COIL_API uint64_t coil_test_trace_hash(uint64_t *events);
/** @copydoc coil_test_trace_hash */
COIL_API void coil_test_trace_reset(void);

/* ------------------------------------------------------------------ */
/* Record and replay                                                    */
/* ------------------------------------------------------------------ */

/**
 * Record what the system gave this thread's loops, to replay a run
 * exactly, without the network: a failure seen once over real sockets
 * comes back every time from its file.
 *
 * Recorded, in order, on the thread that called begin: the result of
 * every socket and pipe call coil makes for its streams, servers and
 * socket calls (accept, connect and the connection's outcome, recv,
 * send, recvfrom, sendto, read, write, shutdown), with the bytes read
 * and the addresses given; every batch of I/O events the loop's poll
 * returned, in the order dispatched; every reading of the loop's clock
 * (real or virtual); and the schedule seed (coil_test_seed). A replay
 * hands those back in the same order instead of making the calls: no
 * byte is sent or received, no poll waits, the clock reads what it read.
 * A program that makes the same calls in the same order then runs the
 * same schedule: the same task steps, the same trace hash
 * (coil_test_trace_hash), the same outcome.
 *
 * Not recorded, so a run that depends on them does not replay (it
 * diverges, or runs differently): what happens on other threads (an
 * executor's jobs, coil_to_thread, a resolver thread, another loop);
 * signals and child processes; sendfile (a record through it is refused
 * with -ENOTSUP); the program's own system calls (reading an fd in an
 * add_reader callback, a file it opens); anything the program decides
 * from outside (the time of day, getpid, rand without a fixed seed).
 * Sockets are still made, bound and listened on during a replay (the
 * loop needs fds to watch: an accepted connection is a fresh unconnected
 * socket), but nothing goes through them: a peer address asked of a
 * replayed connection is not the recorded one.
 *
 * The faults and chaos a memory pair meets are recorded too. A replay
 * makes no call, so coil_test_calls counts none during it.
 *
 * The replay checks each call against the record: when the program
 * makes another call than the record's next (it diverged), or runs past
 * the record's end, the replay stops there, lets the calls go through
 * for real (the clock goes on from its last replayed reading), and end
 * reports it.
 *
 * begin: -EINVAL (path NULL or empty), -EBUSY (a record or replay is in
 * progress), -ENOMEM, fopen's errors (the record's file is created at
 * begin), -EILSEQ (replay: not a record). The file holds everything
 * read: keep records of runs over sensitive data private.
 */
COIL_API int coil_test_record_begin(const char *path);
/** @copydoc coil_test_record_begin */
COIL_API int coil_test_replay_begin(const char *path);

/**
 * End the record (writing its file) or the replay. entries (may be
 * NULL) receives how many results were recorded or replayed; why (may
 * be NULL) a sentence saying what went wrong, "" if nothing. Errors:
 * -EINVAL (nothing in progress), -EILSEQ (the replay diverged, or ended
 * before the record did), -ENOTSUP (the run called what is not
 * recorded), -ENOMEM, -EIO and fopen's errors (writing the file).
 */
COIL_API int coil_test_record_end(uint64_t *entries, char *why,
                                  size_t why_len);

/** How many times op was attempted since the last coil_test_reset_faults
 * or coil_test_fail on it (failed ones included). 0 for an unknown op. */
COIL_API unsigned coil_test_calls(coil_test_op_t op);

/** Clear every fault set with coil_test_fail and coil_test_alloc_fail_after,
 * and the call counts. */
COIL_API void coil_test_reset_faults(void);

/* ------------------------------------------------------------------ */
/* The in-memory stream pair                                            */
/* ------------------------------------------------------------------ */

/** Options of coil_test_stream_pair; zero-initialise, then set fields. */
typedef struct coil_test_stream_options {
    /** Bytes each direction holds, in flight and unread (a socket's send
     * and receive buffers together); 0: 64 KiB. A write beyond it stays
     * in the writing stream, and drain waits, as on a socket. */
    size_t buffer_size;
    /** One-way latency: bytes written become readable this much later
     * (loop time: with the virtual clock, no real time passes). */
    int64_t delay_ns;
    /** At most this many bytes per receive (0: no limit): 1 delivers the
     * bytes one at a time, to test a parser against every split. */
    size_t max_read;
    /** The loop the streams belong to; NULL: the running loop. (An
     * explorer's scenario, which runs outside any task, names its own.) */
    coil_loop_t *loop;
} coil_test_stream_options_t;

/**
 * Two streams joined like the ends of a socket pair, in memory: what is
 * written to one is read from the other, through the whole stream API
 * (coil/stream.h: reading calls, write, drain and the water marks, write_eof
 * as a half-close, close, abort, at_eof, wait_closed), on the running loop,
 * with no fd (coil_stream_fd gives -1; the addresses are an unnamed
 * Unix-domain socket's). Closing one end is the peer's end of stream after
 * the bytes already written, and its later writes fail with -EPIPE; what was
 * on its way to the closed end is dropped. Everything is freed when both
 * streams are. Faults aimed at COIL_TEST_RECV and COIL_TEST_SEND reach the
 * pair's receives and sends (EINTR and EAGAIN are retried, as on a socket;
 * another error is returned); of chaos I/O only the spurious EAGAIN does (a
 * send waits a turn). opts may be NULL (the defaults). Errors: -EINVAL (a or
 * b NULL or the same, delay_ns negative, opts->loop closed), -EPERM (no loop
 * named and none runs on this thread), -ENOMEM. Does not suspend.
 */
COIL_API int coil_test_stream_pair(const coil_test_stream_options_t *opts,
                                   coil_stream_t **a, coil_stream_t **b);

/**
 * Reset the connection from s's side, as a socket closed with SO_LINGER
 * 0 does: s is aborted (coil_stream_abort: its unsent data dropped; the
 * caller still unrefs it), what was on its way to the peer is lost, and
 * the peer's next receive fails with -ECONNRESET, and so do its writes.
 * Errors: -EINVAL (s NULL, closed, or not of a pair).
 */
COIL_API int coil_test_stream_reset(coil_stream_t *s);

/* ------------------------------------------------------------------ */
/* The cancellation explorer                                            */
/* ------------------------------------------------------------------ */

/**
 * Run a scenario again and again, cancelling a chosen task at each of its
 * suspensions in turn, and check after every run that nothing was lost,
 * duplicated, leaked or stuck.
 *
 * A scenario makes its objects on the loop it is given, spawns its tasks,
 * names the one to disturb (coil_explore_target), runs the loop
 * (coil_explore_run) and checks its own invariant, reporting a broken one
 * with coil_explore_fail (or COIL_EXPLORE_CHECK). The explorer first runs
 * it undisturbed, counting the target's suspensions (n), then once for
 * every k in 1..n in each mode:
 *
 *  - COIL_EXPLORE_CANCEL_WAIT: coil_task_cancel as the target suspends
 *    for the k-th time (its wait is interrupted);
 *  - COIL_EXPLORE_CANCEL_WOKEN: coil_task_cancel when the k-th wait has
 *    completed, just before the target runs again (the window where a
 *    lock was handed over, a permit or an item promised);
 *  - COIL_EXPLORE_TIMEOUT: the target's timeout scope
 *    (coil_explore_scope_begin) expires at its k-th suspension.
 *
 * After each run, besides the scenario's check: every task has finished
 * (coil_explore_run reports a deadlock otherwise and cancels what is
 * left), and every coil allocation and fd made during the run is gone
 * once the loop is. Runs use the virtual clock with autojump (it is
 * turned off again at the end), so they are deterministic: the first k
 * suspensions of a disturbed run are those of the undisturbed one.
 */
typedef enum coil_explore_mode {
    COIL_EXPLORE_NONE,         /**< undisturbed */
    COIL_EXPLORE_CANCEL_WAIT,  /**< cancel at the k-th suspension */
    COIL_EXPLORE_CANCEL_WOKEN, /**< cancel after the k-th wait completed */
    COIL_EXPLORE_TIMEOUT,      /**< the scope expires at the k-th suspension */
} coil_explore_mode_t;

/** A run of the explorer, as its scenario sees it. */
typedef struct coil_explore coil_explore_t;
/** A scenario (see coil_explore_mode_t): its objects on loop, its tasks,
 * its target named with ex, the run, its check. */
typedef void (*coil_explore_fn)(coil_loop_t *loop, coil_explore_t *ex,
                                void *arg);

/** What coil_explore found. */
typedef struct coil_explore_result {
    int suspensions;      /**< of the target, undisturbed */
    int runs;             /**< runs made, the undisturbed one included */
    int failures;         /**< runs that failed */
    coil_explore_mode_t first_mode; /**< of the first failing run */
    int first_k;          /**< k of the first failing run (0: undisturbed) */
    char first_message[256]; /**< the first failing run's message */
} coil_explore_result_t;

/** Explore fn(loop, ex, arg) (name, may be NULL, only for
 * COIL_EXPLORE_VERBOSE=1's summary on stderr). Returns how many runs
 * failed; res (may be NULL) receives the details. Call while no loop runs
 * on the thread. Errors: -EINVAL (fn NULL; res zeroed). */
COIL_API int coil_explore(const char *name, coil_explore_fn fn, void *arg,
                          coil_explore_result_t *res);

/** The scenario's calls: the task to disturb; run the loop until every
 * task has finished (a virtual hour at most; a NULL loop is reported as a
 * failure); report a broken invariant (the first message is kept). A NULL
 * ex does nothing. */
COIL_API void coil_explore_target(coil_explore_t *ex, coil_task_t *task);
/** @copydoc coil_explore_target */
COIL_API void coil_explore_run(coil_explore_t *ex, coil_loop_t *loop);
/** @copydoc coil_explore_target */
COIL_API void coil_explore_fail(coil_explore_t *ex, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Unless cond holds, report a broken invariant: coil_explore_fail(ex,
 * ...) with the printf-style message that follows cond. */
#define COIL_EXPLORE_CHECK(ex, cond, ...)                                      \
    do {                                                                       \
        if (!(cond))                                                           \
            coil_explore_fail((ex), __VA_ARGS__);                              \
    } while (0)

/** For the target's body: a timeout scope (coil/timeout.h) with no
 * deadline, that COIL_EXPLORE_TIMEOUT makes expire; end returns what
 * coil_timeout_end does. Errors: -EINVAL (ex NULL), and coil_timeout's. */
COIL_API int coil_explore_scope_begin(coil_explore_t *ex);
/** @copydoc coil_explore_scope_begin */
COIL_API int coil_explore_scope_end(coil_explore_t *ex, int result);

/** The mode of the run in progress (COIL_EXPLORE_NONE for NULL), and a
 * mode's name (NULL for an unknown mode). */
COIL_API coil_explore_mode_t coil_explore_mode(const coil_explore_t *ex);
/** The suspension the run in progress disturbs, k (1-based; 0 for the
 * undisturbed run and for NULL); fired (may be NULL) receives whether
 * the disturbance has happened yet (a run may end before its k-th
 * suspension, if the target takes another path). */
COIL_API int coil_explore_step(const coil_explore_t *ex, bool *fired);
/** @copydoc coil_explore_mode */
COIL_API const char *coil_explore_mode_name(coil_explore_mode_t mode);

#ifdef __cplusplus
}
#endif

#endif /* COIL_TESTING_H */
