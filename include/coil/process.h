/* SPDX-License-Identifier: MIT */
/**
 * @file coil/process.h
 * subprocesses (asyncio's create_subprocess_exec,
 * create_subprocess_shell and asyncio.subprocess.Process).
 *
 * A coil_process_t is a child process started by the loop running in the
 * calling thread, with up to three pipes to it, each a coil stream
 * (coil/stream.h) for the parent: write to the child's stdin, read its
 * stdout and stderr with the stream calls. The loop notices the child's
 * exit by itself and reaps it (waitpid), whether or not anybody waits:
 * a coil child never stays a zombie.
 *
 *     coil_process_options_t o = {.stdout_mode = COIL_STDIO_PIPE};
 *     char *const argv[] = {"ls", "-l", NULL};
 *     coil_process_t *p;
 *     int err = coil_process_spawn("ls", argv, &o, &p);
 *     ...  coil_stream_read(coil_process_stdout(p), buf, n) ...
 *     int code;
 *     err = coil_process_wait(p, &code);   // 0; code: the exit status
 *     coil_process_unref(p);
 *
 * Return codes are asyncio's: the exit status (0..255) of a child that
 * exited, minus the signal number of one a signal killed (-9 after
 * coil_process_kill).
 *
 * Ownership. A process is reference counted: the spawner gets one
 * reference, coil_process_ref takes another, coil_process_unref drops
 * one. While the child runs, the loop holds the object too: dropping the
 * last reference does not kill the child or wait for it; the loop still
 * reaps it when it exits, and the memory goes then. The last unref closes
 * the parent's pipes (stdin once what was buffered is written: the child
 * reads the end of its input; stdout and stderr at once: a child that
 * writes more gets EPIPE or SIGPIPE). The streams belong to the process:
 * coil_process_stdin/_stdout/_stderr lend them (take coil_stream_ref to
 * keep one past the process's last reference).
 *
 * Loop close. A child still running when its loop closes is killed with
 * SIGKILL and reaped (a blocking waitpid, which SIGKILL makes short), as
 * asyncio kills a subprocess whose transport is closed: closing a loop
 * leaves neither a running child nor a zombie. Only the child itself is
 * killed, not the rest of a new process group. Its pipes are closed with
 * the loop's other streams. The object stays safe to query and to unref:
 * coil_process_returncode then gives -9 (or the code the child exited
 * with first).
 *
 * How the exit is seen. On Linux a pidfd (pidfd_open) watched by the
 * loop, which needs no signal handler at all, and through which signals
 * are sent (pidfd_send_signal: never a recycled pid). Where the kernel
 * refuses pidfds (before 5.3, or a seccomp filter: ENOSYS, EPERM) and on
 * other systems, the loop takes SIGCHLD (coil/signal.h) while it has
 * children to reap, and calls waitpid for each of its own children when
 * one comes. Then:
 *  - SIGCHLD belongs to that loop while it has children (the rules of
 *    coil/signal.h): another loop of the process spawning meanwhile, or
 *    adding a SIGCHLD handler, gets -EBUSY; and a SIGCHLD handler or
 *    coil_signal_wait(SIGCHLD) of the program's own on the same loop
 *    displaces coil's reaper (children exiting meanwhile are reaped at
 *    the first SIGCHLD after it is gone).
 *  - The disposition of SIGCHLD from before is put back once the loop's
 *    last child is reaped.
 *
 * Either way, do not reap coil's children yourself (waitpid(-1, ...) or
 * waitpid(pid) elsewhere in the program, SIGCHLD set to SIG_IGN): coil
 * then cannot learn the status and reports return code 255 through the
 * loop's exception handler, as asyncio's child watchers do.
 *
 * The child starts with every signal at its default disposition and none
 * blocked, whatever the program or coil set (SIGPIPE ignored, SIGINT
 * handled...), and with none of coil's fds: every fd coil opens is
 * close-on-exec. fds the program opened without O_CLOEXEC are inherited,
 * as with posix_spawn. (One exception is glibc's own: its posix_spawn
 * leaves the two signals it reserves for itself, 32 and 33, below
 * SIGRTMIN, ignored in every child.)
 *
 * All calls are for the thread of the loop the process belongs to.
 */
#ifndef COIL_PROCESS_H
#define COIL_PROCESS_H

#include "common.h"
#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A child process (see the top of this file). */
typedef struct coil_process coil_process_t;

/** What a child's stdin, stdout or stderr is (coil_process_options_t). */
typedef enum coil_stdio {
    COIL_STDIO_INHERIT = 0, /**< the parent's own fd 0, 1 or 2 (default) */
    COIL_STDIO_PIPE,        /**< a pipe; the parent's end is a coil stream */
    COIL_STDIO_DEVNULL,     /**< /dev/null */
    COIL_STDIO_STDOUT,      /**< stderr only: wherever stdout goes (merged) */
} coil_stdio_t;

/** Options of coil_process_spawn (all zero: the defaults). */
typedef struct coil_process_options {
    coil_stdio_t stdin_mode;  /**< COIL_STDIO_INHERIT, _PIPE or _DEVNULL */
    coil_stdio_t stdout_mode; /**< COIL_STDIO_INHERIT, _PIPE or _DEVNULL */
    coil_stdio_t stderr_mode; /**< as stdout, or COIL_STDIO_STDOUT */
    const char *cwd;          /**< the child's working directory; NULL: ours.
                                 Entered before exec: a relative file
                                 (with a '/') is found from there, as
                                 Python's subprocess does */
    char *const *envp;        /**< the child's environment; NULL: ours */
    bool new_process_group;   /**< setpgid(0, 0) in the child: its own group,
                                 whose id is its pid (start_new_session's
                                 cousin; Ctrl-C at the terminal does not
                                 reach it) */
} coil_process_options_t;

/* ------------------------------------------------------------------ */
/* Starting                                                             */
/* ------------------------------------------------------------------ */

/**
 * Start file with the arguments argv (NULL-terminated; argv[0] is the
 * program's name, as for execvp) as a child of the running loop, and
 * return it in *out. argv and envp have exec's types (char *const[]):
 * nothing writes to the strings, so main's argv passes as it is, and so
 * do string literals in C; with -Wwrite-strings (or in C++), where a
 * literal is const, cast it or keep the strings in char arrays. A file
 * without '/' is looked for in the PATH of the calling process's
 * environment (not of envp), as execvp does. opts may
 * be NULL (every default: the child shares our stdin, stdout and stderr).
 * The parent's ends of the pipes asked for are streams of the loop:
 * coil_process_stdin, _stdout, _stderr.
 *
 * Must be called on the thread of a running loop (in a task or a
 * callback), like coil_stream_open_fd: the process belongs to that loop.
 * Does not suspend: posix_spawn returns once the child has called exec
 * (or failed to), which blocks the thread for the time a fork takes.
 *
 * Errors (*out is NULL, and nothing is left behind: no fd, no memory, no
 * child, killed and reaped if it had been started):
 *  -EINVAL  file, argv or out NULL, file empty, an stdio mode that does
 *           not exist or does not fit (COIL_STDIO_STDOUT other than for
 *           stderr);
 *  -EPERM   no running loop in this thread;
 *  -ENOENT, -EACCES, -ENOEXEC, -ENOTDIR, -E2BIG, ...: exec failed (no
 *           such program, not executable...), or cwd could not be entered
 *           (reported by posix_spawn, which reaped the failed child; glibc
 *           and musl report them; where the C library cannot, as under
 *           valgrind, which runs the spawn's child as a fork, the spawn
 *           succeeds and the child exits with 127);
 *  -EMFILE, -ENFILE  no fd for a pipe or for the child's pidfd;
 *  -ENOMEM, -EAGAIN  out of memory, or of processes (RLIMIT_NPROC);
 *  -EBUSY   the SIGCHLD fallback (see the top) and another loop of the
 *           process handles SIGCHLD;
 *  -ENOTSUP cwd given where the C library cannot change directory in
 *           posix_spawn.
 */
COIL_API int coil_process_spawn(const char *file, char *const argv[],
                                const coil_process_options_t *opts,
                                coil_process_t **out);

/**
 * Start "/bin/sh -c cmd" (asyncio's create_subprocess_shell): the shell
 * parses cmd, so quote what comes from elsewhere. As coil_process_spawn
 * (-EINVAL also for cmd NULL). The return code is the shell's (usually
 * that of cmd's last command).
 */
COIL_API int coil_process_spawn_shell(const char *cmd,
                                      const coil_process_options_t *opts,
                                      coil_process_t **out);

/** Take a reference; returns p. NULL gives NULL. On a process whose last
 * reference was dropped (and whose memory the loop still holds) it
 * reports the misuse through the exception handler and returns NULL. */
COIL_API coil_process_t *coil_process_ref(coil_process_t *p);

/** Drop a reference (see the top of this file: the child is neither
 * killed nor waited for; the last reference closes the pipes). Accepts
 * NULL. One unref too many, while the memory is still held, is reported
 * through the exception handler and ignored. */
COIL_API void coil_process_unref(coil_process_t *p);

/* ------------------------------------------------------------------ */
/* Pipes and identity                                                   */
/* ------------------------------------------------------------------ */

/**
 * The parent's end of the child's stdin (write to it; coil_stream_close
 * or coil_stream_write_eof ends the child's input), stdout and stderr
 * (read them): streams of coil/stream.h. NULL unless that stdio was
 * COIL_STDIO_PIPE (and for NULL p). No new reference: the stream lives as
 * long as the process's last reference (coil_stream_ref it to keep it
 * longer). A write to stdin after the child has gone gives -EPIPE (never
 * SIGPIPE); reading stdout or stderr gives the end of stream once the
 * child (and whatever inherited the pipe) has exited or closed it.
 */
COIL_API coil_stream_t *coil_process_stdin(const coil_process_t *p);
/** @copydoc coil_process_stdin */
COIL_API coil_stream_t *coil_process_stdout(const coil_process_t *p);
/** @copydoc coil_process_stdin */
COIL_API coil_stream_t *coil_process_stderr(const coil_process_t *p);

/** The child's process id (still after it was reaped, as asyncio's pid),
 * or -EINVAL for NULL. */
COIL_API int coil_process_pid(const coil_process_t *p);

/* ------------------------------------------------------------------ */
/* Exit                                                                 */
/* ------------------------------------------------------------------ */

/**
 * Whether the child has exited and been reaped (asyncio's returncode is
 * not None); if so and returncode is not NULL, *returncode is its return
 * code (see the top). Does not wait: the exit is seen by the loop (the
 * child may have exited a moment ago and still be reported running).
 * false for NULL.
 */
COIL_API bool coil_process_returncode(const coil_process_t *p,
                                      int *returncode);

/**
 * Suspend the running task until the child has exited (at once if it
 * has), and put its return code in *returncode (if not NULL). Any number
 * of tasks may wait, and wait again: each gets the code.
 *
 * Returns 0, or -EINVAL (p NULL, or the task runs on another loop than
 * p's), -EPERM (not in a task), -ECANCELED
 * (the task was cancelled: the child keeps running, nothing is lost, a
 * later wait gets the code). When the child exited before the call, 0 is
 * returned without suspending (a pending cancel stays for the next
 * wait); when the exit and a cancel race, the exit wins and the cancel
 * goes to the next wait. Does not allocate.
 *
 * Timeouts: inside a scope (coil_timeout_begin / coil_timeout_end) the
 * wait is cut short at the deadline (-ECANCELED, which the scope's end
 * turns into -ETIMEDOUT); coil_process_wait_for does that for you. To
 * use coil_wait_for, wait in a task of its own and pass its future
 * (coil_task_future). The child is not killed on a timeout: kill it
 * (coil_process_kill) and wait again, as with asyncio.wait_for(p.wait()).
 * Caution: a child that fills a pipe nobody reads blocks, and never
 * exits: read stdout/stderr while waiting, or use
 * coil_process_communicate.
 */
COIL_API int coil_process_wait(coil_process_t *p, int *returncode);

/**
 * coil_process_wait with a limit of timeout_ns (COIL_NO_TIMEOUT: none;
 * zero or less: only a child that already exited): -ETIMEDOUT when it
 * passes (the child keeps running). Errors as coil_process_wait, and
 * -ENOMEM (the scope could not be made). May suspend.
 */
COIL_API int coil_process_wait_for(coil_process_t *p, int64_t timeout_ns,
                                   int *returncode);

/* ------------------------------------------------------------------ */
/* Signals                                                              */
/* ------------------------------------------------------------------ */

/**
 * Send signal sig to the child (asyncio's send_signal). Through the
 * child's pidfd where there is one, so a recycled pid is never
 * signalled; else with kill(2), which coil only does before it has
 * reaped the child. A child that has exited but whose exit the loop has
 * not seen yet is reaped here (its waiters wake), and the signal is not
 * sent: -ESRCH, as for any child that is gone. sig 0 only checks.
 * Returns 0, or -ESRCH (the child has exited and was reaped: asyncio's
 * ProcessLookupError), -EINVAL (p NULL, sig not a signal), -EPERM (the
 * child changed its credentials). Does not suspend; also after the loop
 * closed (-ESRCH then: the close reaped the child).
 */
COIL_API int coil_process_send_signal(coil_process_t *p, int sig);

/** coil_process_send_signal(p, SIGTERM): ask the child to stop. */
COIL_API int coil_process_terminate(coil_process_t *p);

/** coil_process_send_signal(p, SIGKILL): stop the child now; its return
 * code will be -9 (unless it exited before the signal came). */
COIL_API int coil_process_kill(coil_process_t *p);

/* ------------------------------------------------------------------ */
/* communicate                                                          */
/* ------------------------------------------------------------------ */

/**
 * asyncio's communicate(input): write input_len bytes of input to the
 * child's stdin and close it (closed even with no input, if it is a
 * pipe), read its stdout and stderr to their ends at the same time (in
 * tasks of their own, so that no size of input and output deadlocks:
 * the child may write megabytes to both while it still reads megabytes
 * of input), then wait for the child to exit.
 *
 * On success *out holds what the child wrote to stdout and *out_len its
 * length, and *err, *err_len the same for stderr: each buffer is
 * allocated with coil's allocator (coil_set_allocator), holds a NUL after
 * the data (so text can be used as a string), and is the caller's, freed
 * with coil_process_free_output. Where the stdio is not a pipe, the
 * buffer is NULL and its length 0. out, out_len, err, err_len may each be
 * NULL: a pipe whose buffer is not wanted is still read to its end (the
 * child must not block on it), and what it gives is dropped. The return
 * code is then coil_process_returncode's (or a coil_process_wait's, at
 * once).
 *
 * The child may stop reading its stdin and exit (or close it) before all
 * of input was written: as asyncio does, the -EPIPE that gives is not an
 * error here; what it did write stays written.
 *
 * Returns 0 (the child has exited), or: -EINVAL (p NULL, input NULL with
 * input_len > 0, input given (input_len > 0) while stdin is not a pipe,
 * the task runs on another loop than p's),
 * -EPERM (not in a task), -EBUSY (another task is reading stdout or
 * stderr), -ENOMEM (out of memory: for a buffer, or for a task), a read
 * error of stdout or stderr (-EBADF: it was closed), -ECANCELED (the task
 * was cancelled, or a timeout scope's deadline passed: the child keeps
 * running; what had been read is dropped, and stdin may have been
 * written in part or closed). On any error the buffers are freed and
 * *out, *err are NULL, the lengths 0; the child is not killed (kill it
 * and wait, as after asyncio's wait_for(communicate()) timing out).
 * May suspend.
 */
COIL_API int coil_process_communicate(coil_process_t *p, const void *input,
                                      size_t input_len, char **out,
                                      size_t *out_len, char **err,
                                      size_t *err_len);

/** Free a buffer coil_process_communicate returned. Accepts NULL. */
COIL_API void coil_process_free_output(char *buf);

#ifdef __cplusplus
}
#endif

#endif /* COIL_PROCESS_H */
