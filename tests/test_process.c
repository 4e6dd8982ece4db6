/* SPDX-License-Identifier: MIT */
/*
 * test_process.c - subprocesses (coil/process.h): output through a pipe
 * stream, exit codes and signals as return codes, wait (twice, from two
 * tasks, cancelled, in a timeout scope, wait_for), returncode, terminate
 * and kill, -ESRCH once reaped, communicate (4 MiB through cat, 2 MiB to
 * stdout and stderr at once, both while 4 MiB go in, a child that never
 * reads its input, cancelled), stderr merged, /dev/null, cwd, envp, a new
 * process group, default signal dispositions and no inherited fds in the
 * child, a child killed while it writes, a write to a child that is gone
 * (-EPIPE, no SIGPIPE), exec failures, EMFILE, allocation and syscall
 * failure sweeps (no fd, no memory, no child left), the last reference
 * dropped while the child runs, the loop closed with children running (or
 * with a task waiting, or communicating), a child reaped behind coil's
 * back (255), bad arguments.
 *
 * Every test runs twice: with the child's exit seen through a pidfd, and
 * with the SIGCHLD fallback forced (coil__process_pidfd_refused, as once
 * the kernel refused pidfd_open). test_path_used checks which path each
 * run took; the discovery of a refusal (pidfd_open failing with ENOSYS)
 * has a test of its own.
 *
 * Tasks only record; every assertion runs on the main stack. After every
 * test (its loop closed) no child of ours is left, looked at without
 * reaping: no zombie, no running child; the program is a child
 * subreaper, so a grandchild orphaned by a test counts too.
 */
#include <fcntl.h>
#include <spawn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* process.c: 1 makes every spawn take the SIGCHLD fallback. */
extern atomic_int coil__process_pidfd_refused;
/* process.c, test build: called with each child's pid as it starts. */
extern void (*coil__process_test_spawned)(int pid);

#define MIB (1024 * 1024)

/* Whether this run forces the fallback (the second group). */
static bool fallback;

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/* No child of ours is left: neither running nor a zombie (looked at
 * without reaping anything). */
static bool no_children(void)
{
    siginfo_t si;
    errno = 0;
    return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == -1 &&
           errno == ECHILD;
}

/* Say which child was left (a teardown's failure): an exited one's pid
 * and command, or that it still runs. */
static void name_child_left(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    (void)waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT);
    char path[64], cmd[128] = "";
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)si.si_pid);
    FILE *f = si.si_pid ? fopen(path, "r") : NULL;
    if (f) {
        size_t n = fread(cmd, 1, sizeof(cmd) - 1, f);
        for (size_t i = 0; i < n; i++)
            if (!cmd[i])
                cmd[i] = ' ';
        fclose(f);
    }
    fprintf(stderr, "a child process was left behind: %s%d %s\n",
            si.si_pid ? "pid " : "one still running", (int)si.si_pid,
            cmd);
}

/* A shell's own children (tee, still reading when the machine is slow)
 * outlive it when it is killed: kill the rest of its process group (it
 * was spawned with new_process_group), and reap those orphaned to this
 * process (the subreaper) once they are gone, 10 s at most. Call once
 * coil has reaped the shell itself. */
static void reap_group(int pgid)
{
    (void)kill(-pgid, SIGKILL);
    for (int i = 0; i < 10000; i++) {
        pid_t r = waitpid(-1, NULL, WNOHANG);
        if (r < 0 && errno == ECHILD)
            break;
        if (r == 0)
            usleep(1000);
    }
}

/* Whether pid names a process (a zombie too). */
static bool pid_exists(int pid)
{
    return kill(pid, 0) == 0;
}

/* The test's own teardown: the loop closed, the leak gate, and no child
 * left (the close kills and reaps what still runs). */
static int teardown(void **state)
{
    int r = test_teardown(state);
    bool none = no_children();
    if (!none)
        name_child_left();
    while (waitpid(-1, NULL, WNOHANG) > 0) /* never leave one for others */
        ;
    if (!none)
        return -1;
    return r;
}

static int teardown_noloop(void **state)
{
    bool none = no_children();
    if (!none)
        name_child_left();
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    int r = test_teardown_noloop(state);
    if (!none) {
        return -1;
    }
    return r;
}

#define PTEST(fn) cmocka_unit_test_setup_teardown(fn, test_setup, teardown)
#define PTEST_NOLOOP(fn)                                                       \
    cmocka_unit_test_setup_teardown(fn, test_setup_noloop, teardown_noloop)

static coil_process_options_t opts(coil_stdio_t in, coil_stdio_t out,
                                   coil_stdio_t err)
{
    coil_process_options_t o = {0};
    o.stdin_mode = in;
    o.stdout_mode = out;
    o.stderr_mode = err;
    return o;
}

/* Read s to its end into a growing malloc'd buffer: 0 or the error. */
static int read_to_end(coil_stream_t *s, char **buf, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b)
        return -ENOMEM;
    for (;;) {
        if (cap - n < 1024) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = coil_stream_read(s, b + n, cap - n - 1);
        if (r < 0) {
            free(b);
            return (int)r;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

static char *const *argv_of(const char *a, const char *b, const char *c,
                            const char *d)
{
    static char *v[5];
    v[0] = (char *)(uintptr_t)a;
    v[1] = (char *)(uintptr_t)b;
    v[2] = (char *)(uintptr_t)c;
    v[3] = (char *)(uintptr_t)d;
    v[4] = NULL;
    return v;
}

/* ------------------------------------------------------------------ */
/* Output, exit codes, signals                                          */
/* ------------------------------------------------------------------ */

struct echo {
    int spawn_r, read_r, wait_r, code;
    bool has_out, no_in, no_err;
    char *out;
    size_t len;
};

static int echo_main(void *arg)
{
    struct echo *c = arg;
    coil_process_options_t o = opts(0, COIL_STDIO_PIPE, 0);
    coil_process_t *p;
    c->spawn_r = coil_process_spawn("/bin/echo", argv_of("echo", "hello",
                                                         NULL, NULL),
                                    &o, &p);
    if (c->spawn_r)
        return 0;
    c->has_out = coil_process_stdout(p) != NULL;
    c->no_in = coil_process_stdin(p) == NULL;
    c->no_err = coil_process_stderr(p) == NULL;
    c->read_r = read_to_end(coil_process_stdout(p), &c->out, &c->len);
    c->wait_r = coil_process_wait(p, &c->code);
    coil_process_unref(p);
    return 0;
}

static void test_echo_hello(void **state)
{
    struct echo c = {0};
    assert_int_equal(test_run_task(test_loop(state), echo_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_true(c.has_out);
    assert_true(c.no_in);
    assert_true(c.no_err);
    assert_int_equal(c.read_r, 0);
    assert_int_equal(c.len, 6);
    assert_string_equal(c.out, "hello\n");
    assert_int_equal(c.wait_r, 0);
    assert_int_equal(c.code, 0);
    free(c.out);
}

struct codes {
    int r[4], code[4];
};

static int codes_main(void *arg)
{
    struct codes *c = arg;
    const char *cmds[] = {"exit 3", "exit 0", "exit 255", "kill -TERM $$"};
    for (int i = 0; i < 4; i++) {
        coil_process_t *p;
        c->r[i] = coil_process_spawn_shell(cmds[i], NULL, &p);
        if (c->r[i])
            continue;
        c->r[i] = coil_process_wait(p, &c->code[i]);
        coil_process_unref(p);
    }
    return 0;
}

static void test_exit_codes(void **state)
{
    struct codes c = {0};
    assert_int_equal(test_run_task(test_loop(state), codes_main, &c), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.r[i], 0);
    assert_int_equal(c.code[0], 3);
    assert_int_equal(c.code[1], 0);
    assert_int_equal(c.code[2], 255);
    assert_int_equal(c.code[3], -SIGTERM); /* the shell killed itself */
}

struct killed {
    int spawn_r, kill_r, wait_r, code, term_r, code2, wait2_r;
    bool rc_before;
};

static int killed_main(void *arg)
{
    struct killed *c = arg;
    coil_process_t *p;
    /* no '/': looked for in PATH */
    c->spawn_r = coil_process_spawn("sleep", argv_of("sleep", "100", NULL,
                                                     NULL),
                                    NULL, &p);
    if (c->spawn_r)
        return 0;
    c->rc_before = coil_process_returncode(p, NULL);
    c->kill_r = coil_process_kill(p);
    c->wait_r = coil_process_wait(p, &c->code);
    coil_process_unref(p);
    c->spawn_r = coil_process_spawn("sleep", argv_of("sleep", "100", NULL,
                                                     NULL),
                                    NULL, &p);
    if (c->spawn_r)
        return 0;
    c->term_r = coil_process_terminate(p);
    c->wait2_r = coil_process_wait(p, &c->code2);
    coil_process_unref(p);
    return 0;
}

static void test_kill_and_terminate(void **state)
{
    struct killed c = {0};
    assert_int_equal(test_run_task(test_loop(state), killed_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_false(c.rc_before);
    assert_int_equal(c.kill_r, 0);
    assert_int_equal(c.wait_r, 0);
    assert_int_equal(c.code, -9);
    assert_int_equal(c.term_r, 0);
    assert_int_equal(c.wait2_r, 0);
    assert_int_equal(c.code2, -SIGTERM);
}

/* ------------------------------------------------------------------ */
/* wait twice, two waiters, returncode, -ESRCH                          */
/* ------------------------------------------------------------------ */

struct twice {
    coil_process_t *p;
    int spawn_r, w1, w2, w3, c1, c2, c3, helper_r, helper_code;
    bool rc_before, rc_after;
    int rc;
    int sig_r, kill_r, term_r, sig0_r;
    int pid;
    bool exists_while_running;
};

static int twice_helper(void *arg)
{
    struct twice *c = arg;
    c->helper_r = coil_process_wait(c->p, &c->helper_code);
    return 0;
}

static int twice_main(void *arg)
{
    struct twice *c = arg;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, 0, 0);
    /* Exits with 7 once it reads a line: the test decides when. */
    c->spawn_r = coil_process_spawn_shell("read x; exit 7", &o, &c->p);
    if (c->spawn_r)
        return 0;
    c->pid = coil_process_pid(c->p);
    c->sig0_r = coil_process_send_signal(c->p, 0);
    coil_task_t *h = test_spawn(coil_running_loop(), twice_helper, c);
    coil_sleep(20 * COIL_MSEC);
    c->rc_before = coil_process_returncode(c->p, &c->rc);
    c->exists_while_running = pid_exists(c->pid);
    coil_stream_write(coil_process_stdin(c->p), "go\n", 3);
    c->w1 = coil_process_wait(c->p, &c->c1);
    c->w2 = coil_process_wait(c->p, &c->c2);
    c->w3 = coil_process_wait(c->p, NULL);
    test_join(h);
    c->rc_after = coil_process_returncode(c->p, &c->rc);
    c->sig_r = coil_process_send_signal(c->p, SIGUSR1);
    c->kill_r = coil_process_kill(c->p);
    c->term_r = coil_process_terminate(c->p);
    coil_process_unref(c->p);
    return 0;
}

static void test_wait_twice_returncode_esrch(void **state)
{
    struct twice c = {0};
    assert_int_equal(test_run_task(test_loop(state), twice_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_true(c.pid > 0);
    assert_int_equal(c.sig0_r, 0);
    assert_true(c.exists_while_running);
    assert_false(c.rc_before);
    assert_int_equal(c.w1, 0);
    assert_int_equal(c.c1, 7);
    assert_int_equal(c.w2, 0);
    assert_int_equal(c.c2, 7);
    assert_int_equal(c.w3, 0);
    assert_int_equal(c.helper_r, 0);
    assert_int_equal(c.helper_code, 7);
    assert_true(c.rc_after);
    assert_int_equal(c.rc, 7);
    assert_int_equal(c.sig_r, -ESRCH);
    assert_int_equal(c.kill_r, -ESRCH);
    assert_int_equal(c.term_r, -ESRCH);
    assert_false(pid_exists(c.pid));
}

/* An exit the loop has not seen yet: send_signal reaps it (-ESRCH). */
struct unseen {
    int spawn_r, sig_r, code;
    bool rc;
};

static void unseen_cb(void *arg)
{
    struct unseen *c = arg;
    coil_process_t *p;
    c->spawn_r = coil_process_spawn("true", argv_of("true", NULL, NULL,
                                                    NULL),
                                    NULL, &p);
    if (c->spawn_r) {
        coil_loop_stop(coil_running_loop());
        return;
    }
    /* In this callback the loop cannot see the exit: wait for it here. */
    siginfo_t si;
    (void)waitid(P_PID, (id_t)coil_process_pid(p), &si, WEXITED | WNOWAIT);
    c->sig_r = coil_process_send_signal(p, SIGTERM);
    c->rc = coil_process_returncode(p, &c->code);
    coil_process_unref(p);
    coil_loop_stop(coil_running_loop());
}

static void test_signal_to_exited_child(void **state)
{
    struct unseen c = {0};
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_call_soon(loop, unseen_cb, &c, NULL), 0);
    test_run(loop);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.sig_r, -ESRCH);
    assert_true(c.rc);
    assert_int_equal(c.code, 0);
}

/* ------------------------------------------------------------------ */
/* communicate                                                          */
/* ------------------------------------------------------------------ */

struct comm {
    const char *cmd;
    coil_process_options_t o;
    char *input;
    size_t input_len;
    int spawn_r, r, code;
    bool rc;
    char *out, *err;
    size_t out_len, err_len;
};

static int comm_main(void *arg)
{
    struct comm *c = arg;
    coil_process_t *p;
    c->spawn_r = coil_process_spawn_shell(c->cmd, &c->o, &p);
    if (c->spawn_r)
        return 0;
    c->r = coil_process_communicate(p, c->input, c->input_len, &c->out,
                                    &c->out_len, &c->err, &c->err_len);
    c->rc = coil_process_returncode(p, &c->code);
    if (c->r) {
        coil_process_kill(p);
        coil_process_wait(p, NULL);
    }
    coil_process_unref(p);
    return 0;
}

static char *pattern(size_t n, unsigned seed)
{
    char *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)test_pattern(i, seed);
    return b;
}

static bool all_zero(const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

static void comm_free(struct comm *c)
{
    coil_process_free_output(c->out);
    coil_process_free_output(c->err);
    free(c->input);
}

static void test_communicate_cat_4mib(void **state)
{
    struct comm c = {0};
    c.cmd = "exec cat";
    c.o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, 0);
    c.input_len = 4 * MIB;
    c.input = pattern(c.input_len, 5);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.r, 0);
    assert_true(c.rc);
    assert_int_equal(c.code, 0);
    assert_int_equal(c.out_len, c.input_len);
    assert_memory_equal(c.out, c.input, c.input_len);
    assert_int_equal(c.out[c.out_len], '\0');
    assert_null(c.err); /* not a pipe */
    assert_int_equal(c.err_len, 0);
    comm_free(&c);
}

static void test_communicate_both_outputs(void **state)
{
    struct comm c = {0};
    c.cmd = "head -c 2097152 /dev/zero >&2 & head -c 2097152 /dev/zero; "
            "wait";
    c.o = opts(0, COIL_STDIO_PIPE, COIL_STDIO_PIPE);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.r, 0);
    assert_int_equal(c.code, 0);
    assert_int_equal(c.out_len, 2 * MIB);
    assert_int_equal(c.err_len, 2 * MIB);
    assert_true(all_zero(c.out, c.out_len));
    assert_true(all_zero(c.err, c.err_len));
    comm_free(&c);
}

/* Megabytes in while megabytes come out of both pipes: no deadlock. */
static void test_communicate_in_and_out(void **state)
{
    struct comm c = {0};
    /* (a command in the background would read /dev/null) */
    c.cmd = "head -c 2097152 /dev/zero & cat >&2; wait; echo done";
    c.o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, COIL_STDIO_PIPE);
    c.input_len = 4 * MIB;
    c.input = pattern(c.input_len, 9);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.r, 0);
    assert_int_equal(c.code, 0);
    assert_int_equal(c.out_len, 2 * MIB + 5);
    assert_true(all_zero(c.out, 2 * MIB));
    assert_memory_equal(c.out + 2 * MIB, "done\n", 5);
    assert_int_equal(c.err_len, c.input_len);
    assert_memory_equal(c.err, c.input, c.input_len);
    comm_free(&c);
}

/* The child exits without reading its input: not an error here. */
static void test_communicate_input_unread(void **state)
{
    struct comm c = {0};
    c.cmd = "exec 0<&-; echo bye; exit 4";
    c.o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, 0);
    c.input_len = 2 * MIB;
    c.input = pattern(c.input_len, 1);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.r, 0);
    assert_int_equal(c.code, 4);
    assert_string_equal(c.out, "bye\n");
    comm_free(&c);
}

static void test_communicate_no_pipes(void **state)
{
    struct comm c = {0};
    c.cmd = "exit 2";
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.r, 0);
    assert_int_equal(c.code, 2);
    assert_null(c.out);
    assert_null(c.err);
    /* Input without a stdin pipe. */
    c.input = strdup("x");
    c.input_len = 1;
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.r, -EINVAL);
    comm_free(&c);
}

/* Outputs not wanted (NULL) are still read to their end. */
struct discard {
    int spawn_r, r, code;
    size_t out_len;
};

static int discard_main(void *arg)
{
    struct discard *c = arg;
    coil_process_options_t o = opts(0, COIL_STDIO_PIPE, COIL_STDIO_PIPE);
    coil_process_t *p;
    c->spawn_r = coil_process_spawn_shell(
        "head -c 1048576 /dev/zero >&2; echo hi", &o, &p);
    if (c->spawn_r)
        return 0;
    char *out;
    c->r = coil_process_communicate(p, NULL, 0, &out, &c->out_len, NULL,
                                    NULL);
    if (!c->r)
        coil_process_free_output(out);
    coil_process_returncode(p, &c->code);
    coil_process_unref(p);
    return 0;
}

static void test_communicate_discard(void **state)
{
    struct discard c = {0};
    assert_int_equal(test_run_task(test_loop(state), discard_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.r, 0);
    assert_int_equal(c.code, 0);
    assert_int_equal(c.out_len, 3);
}

/* ------------------------------------------------------------------ */
/* stdio modes, cwd, envp, process group                                */
/* ------------------------------------------------------------------ */

static void test_stderr_merged(void **state)
{
    struct comm c = {0};
    c.cmd = "echo out; echo err >&2; echo out2";
    c.o = opts(0, COIL_STDIO_PIPE, COIL_STDIO_STDOUT);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.r, 0);
    assert_string_equal(c.out, "out\nerr\nout2\n");
    assert_null(c.err);
    comm_free(&c);
}

static void test_devnull(void **state)
{
    struct comm c = {0};
    /* stdin from /dev/null: cat sees the end at once. */
    c.cmd = "cat; echo done";
    c.o = opts(COIL_STDIO_DEVNULL, COIL_STDIO_PIPE, 0);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.r, 0);
    assert_string_equal(c.out, "done\n");
    comm_free(&c);
    /* stdout to /dev/null, stderr a pipe. */
    memset(&c, 0, sizeof(c));
    c.cmd = "echo lost; x=$(readlink /proc/$$/fd/1); echo \"$x\" >&2";
    c.o = opts(0, COIL_STDIO_DEVNULL, COIL_STDIO_PIPE);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.r, 0);
    assert_null(c.out);
    assert_string_equal(c.err, "/dev/null\n");
    comm_free(&c);
    /* stderr to /dev/null while stdout is a pipe. */
    memset(&c, 0, sizeof(c));
    c.cmd = "echo gone >&2; echo kept";
    c.o = opts(0, COIL_STDIO_PIPE, COIL_STDIO_DEVNULL);
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.r, 0);
    assert_string_equal(c.out, "kept\n");
    comm_free(&c);
}

struct cwd {
    char dir[64];
    int spawn_r, r, code;
    char *out;
    size_t len;
};

static int cwd_main(void *arg)
{
    struct cwd *c = arg;
    coil_process_options_t o = opts(0, COIL_STDIO_PIPE, 0);
    o.cwd = c->dir;
    coil_process_t *p;
    c->spawn_r = coil_process_spawn("pwd", argv_of("pwd", NULL, NULL, NULL),
                                    &o, &p);
    if (c->spawn_r)
        return 0;
    c->r = coil_process_communicate(p, NULL, 0, &c->out, &c->len, NULL,
                                    NULL);
    coil_process_returncode(p, &c->code);
    coil_process_unref(p);
    return 0;
}

static void test_cwd(void **state)
{
    struct cwd c = {0};
    strcpy(c.dir, "/tmp/coil-process-XXXXXX");
    assert_non_null(mkdtemp(c.dir));
    int r = test_run_task(test_loop(state), cwd_main, &c);
    rmdir(c.dir);
    assert_int_equal(r, 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.r, 0);
    assert_int_equal(c.code, 0);
    assert_int_equal(c.len, strlen(c.dir) + 1);
    assert_memory_equal(c.out, c.dir, strlen(c.dir));
    coil_process_free_output(c.out);
}

struct cwd_missing {
    int r;
    bool out_null;
};

static int cwd_missing_main(void *arg)
{
    struct cwd_missing *c = arg;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, 0);
    o.cwd = "/nonexistent/coil-test-dir";
    coil_process_t *p = (coil_process_t *)1;
    c->r = coil_process_spawn("pwd", argv_of("pwd", NULL, NULL, NULL), &o,
                              &p);
    c->out_null = p == NULL;
    if (!c->r) {
        coil_process_wait(p, NULL);
        coil_process_unref(p);
    }
    return 0;
}

/* The child could not enter cwd: reported as exec failures are. */
static void test_cwd_missing(void **state)
{
    struct cwd_missing c = {0};
    long fds = test_fd_count();
    assert_int_equal(test_run_task(test_loop(state), cwd_missing_main, &c),
                     0);
    assert_int_equal(c.r, -ENOENT);
    assert_true(c.out_null);
    assert_int_equal(test_fd_count(), fds);
    assert_true(no_children());
}

static void test_envp(void **state)
{
    struct comm c = {0};
    static char a[] = "COIL_A=one", b[] = "COIL_B=two words";
    char *env[] = {a, b, NULL};
    c.cmd = "env";
    c.o = opts(0, COIL_STDIO_PIPE, 0);
    c.o.envp = env;
    assert_int_equal(test_run_task(test_loop(state), comm_main, &c), 0);
    assert_int_equal(c.r, 0);
    /* sh may add PWD (and nothing of ours); the two must be there, and
     * nothing of this process's environment (PATH, HOME...). */
    assert_non_null(strstr(c.out, "COIL_A=one\n"));
    assert_non_null(strstr(c.out, "COIL_B=two words\n"));
    assert_null(strstr(c.out, "\nPATH="));
    assert_false(strncmp(c.out, "PATH=", 5) == 0);
    comm_free(&c);
}

struct pgrp {
    int spawn_r[2];
    int pgid[2], pid[2], wait_r[2], code[2];
};

static int pgrp_main(void *arg)
{
    struct pgrp *c = arg;
    for (int i = 0; i < 2; i++) {
        coil_process_options_t o = {0};
        o.new_process_group = i == 1;
        coil_process_t *p;
        c->spawn_r[i] = coil_process_spawn(
            "sleep", argv_of("sleep", "100", NULL, NULL), &o, &p);
        if (c->spawn_r[i])
            continue;
        c->pid[i] = coil_process_pid(p);
        c->pgid[i] = getpgid(c->pid[i]);
        coil_process_kill(p);
        c->wait_r[i] = coil_process_wait(p, &c->code[i]);
        coil_process_unref(p);
    }
    return 0;
}

static void test_new_process_group(void **state)
{
    struct pgrp c = {0};
    assert_int_equal(test_run_task(test_loop(state), pgrp_main, &c), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c.spawn_r[i], 0);
        assert_int_equal(c.wait_r[i], 0);
        assert_int_equal(c.code[i], -9);
    }
    assert_int_equal(c.pgid[0], getpgrp());
    assert_int_equal(c.pgid[1], c.pid[1]);
}

/* The child starts with every signal at its default and none blocked,
 * whatever the parent set; and with none of coil's fds. */
struct clean {
    int r1, r2;
    char *status, *fds;
    size_t len1, len2;
};

static int clean_main(void *arg)
{
    struct clean *c = arg;
    coil_process_options_t o = opts(0, COIL_STDIO_PIPE, 0);
    coil_process_t *p;
    c->r1 = coil_process_spawn(
        "grep", argv_of("grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"),
        &o, &p);
    if (!c->r1) {
        c->r1 = coil_process_communicate(p, NULL, 0, &c->status, &c->len1,
                                         NULL, NULL);
        coil_process_unref(p);
    }
    /* The shell lists its own fds (not those of an ls it would start). */
    o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, COIL_STDIO_PIPE);
    c->r2 = coil_process_spawn_shell("ls /proc/$$/fd; true", &o, &p);
    if (!c->r2) {
        c->r2 = coil_process_communicate(p, NULL, 0, &c->fds, &c->len2, NULL,
                                         NULL);
        coil_process_unref(p);
    }
    return 0;
}

static void test_child_starts_clean(void **state)
{
    /* What the parent does to its own signals (besides SIGPIPE ignored
     * by test_init, and coil's handler for SIGUSR2 on the loop). */
    struct sigaction ign = {0}, old_usr1;
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &ign, &old_usr1), 0);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old_mask), 0);
    coil_loop_t *loop = test_loop(state);
    assert_int_equal(coil_loop_add_signal_handler(loop, SIGUSR2, test_stop_cb,
                                                  loop),
                     0);
    struct clean c = {0};
    int r = test_run_task(loop, clean_main, &c);
    coil_loop_remove_signal_handler(loop, SIGUSR2);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    assert_int_equal(r, 0);
    assert_int_equal(c.r1, 0);
    /* glibc's posix_spawn ignores its own two signals (32 and 33, below
     * SIGRTMIN) in every child; the rest must be at their defaults. */
    unsigned long long blk = ~0ull, ignored = ~0ull;
    assert_int_equal(sscanf(c.status, "SigBlk:\t%llx\nSigIgn:\t%llx", &blk,
                            &ignored),
                     2);
    assert_int_equal(blk, 0);
    assert_int_equal(ignored & ~0x180000000ull, 0);
    assert_int_equal(c.r2, 0);
    /* Every fd of the shell but 0, 1 and 2 must be one this process has
     * open without close-on-exec (none of coil's). */
    char *save, *line = strtok_r(c.fds, "\n", &save);
    int n = 0;
    for (; line; line = strtok_r(NULL, "\n", &save), n++) {
        int fd = atoi(line);
        if (fd <= 2)
            continue;
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 || (fl & FD_CLOEXEC))
            fail_msg("the child has fd %d, which is not the parent's to give",
                     fd);
    }
    assert_true(n >= 3);
    coil_process_free_output(c.status);
    coil_process_free_output(c.fds);
}

/* The parent's fds 0 and 1 are closed: a pipe made then may sit on the
 * child's stdio numbers, and must not be overwritten by another stdio's
 * action before it is used (here: stderr's pipe on fd 1, stdout to
 * /dev/null opened onto fd 1). */
struct lowfd {
    int r;
    char *err;
    size_t len;
};

static int lowfd_main(void *arg)
{
    struct lowfd *c = arg;
    coil_process_options_t o = opts(0, COIL_STDIO_DEVNULL, COIL_STDIO_PIPE);
    coil_process_t *p;
    c->r = coil_process_spawn_shell("echo err >&2; echo out", &o, &p);
    if (c->r)
        return 0;
    c->r = coil_process_communicate(p, NULL, 0, NULL, NULL, &c->err, &c->len);
    coil_process_unref(p);
    return 0;
}

static void test_low_fds_closed(void **state)
{
    coil_loop_t *loop = test_loop(state);
    int save0 = fcntl(0, F_DUPFD_CLOEXEC, 10);
    int save1 = fcntl(1, F_DUPFD_CLOEXEC, 10);
    assert_true(save0 >= 0 && save1 >= 0);
    close(0);
    close(1);
    struct lowfd c = {0};
    int r = test_run_task(loop, lowfd_main, &c);
    int in_ok = dup2(save0, 0), out_ok = dup2(save1, 1);
    close(save0);
    close(save1);
    assert_int_equal(in_ok, 0);
    assert_int_equal(out_ok, 1);
    assert_int_equal(r, 0);
    assert_int_equal(c.r, 0);
    assert_string_equal(c.err, "err\n");
    coil_process_free_output(c.err);
}

/* ------------------------------------------------------------------ */
/* A child killed while it writes; a write to a child that is gone      */
/* ------------------------------------------------------------------ */

struct midwrite {
    int spawn_r, kill_r, end_r, wait_r, code;
    size_t total;
    bool pattern_ok;
};

static int midwrite_main(void *arg)
{
    struct midwrite *c = arg;
    coil_process_options_t o = opts(0, COIL_STDIO_PIPE, 0);
    coil_process_t *p;
    c->spawn_r = coil_process_spawn("yes", argv_of("yes", NULL, NULL, NULL),
                                    &o, &p);
    if (c->spawn_r)
        return 0;
    coil_stream_t *s = coil_process_stdout(p);
    char buf[8192];
    c->pattern_ok = true;
    for (;;) {
        ssize_t r = coil_stream_read(s, buf, sizeof(buf));
        if (r <= 0) {
            c->end_r = (int)r;
            break;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != ((c->total + (size_t)i) % 2 ? '\n' : 'y'))
                c->pattern_ok = false;
        c->total += (size_t)r;
        if (c->total >= 256 * 1024 && !c->kill_r && c->total - (size_t)r <
                                                        256 * 1024)
            c->kill_r = coil_process_kill(p) ? -1 : 1;
    }
    c->wait_r = coil_process_wait(p, &c->code);
    coil_process_unref(p);
    return 0;
}

static void test_killed_while_writing(void **state)
{
    struct midwrite c = {0};
    assert_int_equal(test_run_task(test_loop(state), midwrite_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.kill_r, 1);
    assert_true(c.total >= 256 * 1024);
    assert_true(c.pattern_ok);
    assert_int_equal(c.end_r, 0); /* the data so far, then the end */
    assert_int_equal(c.wait_r, 0);
    assert_int_equal(c.code, -9);
}

static atomic_int sigpipes;

static void count_sigpipe(int sig)
{
    (void)sig;
    atomic_fetch_add(&sigpipes, 1);
}

struct gone {
    int spawn_r, err, wait_r, code;
    size_t written;
};

static int gone_main(void *arg)
{
    struct gone *c = arg;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, 0, 0);
    coil_process_t *p;
    c->spawn_r = coil_process_spawn_shell("exec 0<&-; exit 0", &o, &p);
    if (c->spawn_r)
        return 0;
    coil_stream_t *in = coil_process_stdin(p);
    static char chunk[64 * 1024];
    while (c->written < 64 * MIB) {
        if ((c->err = coil_stream_write(in, chunk, sizeof(chunk))))
            break;
        if ((c->err = coil_stream_drain(in)))
            break;
        c->written += sizeof(chunk);
    }
    c->wait_r = coil_process_wait(p, &c->code);
    coil_process_unref(p);
    return 0;
}

static void test_write_to_gone_child(void **state)
{
    struct sigaction sa = {0}, old;
    sa.sa_handler = count_sigpipe;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &sa, &old), 0);
    atomic_store(&sigpipes, 0);
    struct gone c = {0};
    int r = test_run_task(test_loop(state), gone_main, &c);
    sigaction(SIGPIPE, &old, NULL);
    assert_int_equal(r, 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.err, -EPIPE);
    assert_true(c.written < 64 * MIB);
    assert_int_equal(atomic_load(&sigpipes), 0);
    assert_int_equal(c.wait_r, 0);
    assert_int_equal(c.code, 0);
}

/* ------------------------------------------------------------------ */
/* Failures: exec, EMFILE, allocations, syscalls                        */
/* ------------------------------------------------------------------ */

struct execfail {
    int r[4];
    bool out_null[4];
};

static int execfail_main(void *arg)
{
    struct execfail *c = arg;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE,
                                    COIL_STDIO_PIPE);
    const char *files[] = {"/nonexistent/coil-prog", "coil-no-such-program",
                           "/etc/passwd", "/"};
    for (int i = 0; i < 4; i++) {
        coil_process_t *p = (coil_process_t *)1;
        c->r[i] = coil_process_spawn(files[i], argv_of("x", NULL, NULL, NULL),
                                     &o, &p);
        c->out_null[i] = p == NULL;
        if (!c->r[i]) {
            coil_process_kill(p);
            coil_process_wait(p, NULL);
            coil_process_unref(p);
        }
    }
    return 0;
}

static void test_exec_failure(void **state)
{
    struct execfail c = {0};
    long fds = test_fd_count();
    assert_int_equal(test_run_task(test_loop(state), execfail_main, &c), 0);
    assert_int_equal(c.r[0], -ENOENT);
    assert_int_equal(c.r[1], -ENOENT);
    assert_int_equal(c.r[2], -EACCES);
    assert_int_equal(c.r[3], -EACCES);
    for (int i = 0; i < 4; i++)
        assert_true(c.out_null[i]);
    assert_int_equal(test_fd_count(), fds);
    assert_true(no_children());
}

/* The lowest free fd number: with RLIMIT_NOFILE there, no fd can be
 * made. */
static int lowest_free(void)
{
    int fd = dup(0);
    assert_true(fd >= 0);
    close(fd);
    return fd;
}

struct emfile {
    struct rlimit old;
    int r_pipes, r_none, r_after, code;
    bool children_after_fail;
};

static int emfile_main(void *arg)
{
    struct emfile *c = arg;
    coil_process_options_t o = opts(0, COIL_STDIO_PIPE, 0);
    coil_process_t *p;
    struct rlimit low = c->old;
    low.rlim_cur = (rlim_t)lowest_free();
    setrlimit(RLIMIT_NOFILE, &low);
    /* No fd for the pipe: nothing starts. */
    c->r_pipes = coil_process_spawn("true", argv_of("true", NULL, NULL, NULL),
                                    &o, &p);
    /* No pipes: the child starts, and there is no fd for its pidfd (or
     * for the fallback's signal channel, before it starts). */
    c->r_none = coil_process_spawn("true", argv_of("true", NULL, NULL, NULL),
                                   NULL, &p);
    c->children_after_fail = !no_children();
    setrlimit(RLIMIT_NOFILE, &c->old);
    c->r_after = coil_process_spawn("true", argv_of("true", NULL, NULL, NULL),
                                    &o, &p);
    if (!c->r_after) {
        coil_process_wait(p, &c->code);
        coil_process_unref(p);
    }
    return 0;
}

static void test_emfile(void **state)
{
    struct emfile c = {0};
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &c.old), 0);
    int r = test_run_task(test_loop(state), emfile_main, &c);
    setrlimit(RLIMIT_NOFILE, &c.old);
    assert_int_equal(r, 0);
    assert_int_equal(c.r_pipes, -EMFILE);
    assert_int_equal(c.r_none, -EMFILE);
    assert_false(c.children_after_fail);
    assert_int_equal(c.r_after, 0);
    assert_int_equal(c.code, 0);
}

#define SWEEP_MAX 200

struct sweep {
    int n, r[SWEEP_MAX];
    long fds_before, allocs_before;
    long fds[SWEEP_MAX], allocs[SWEEP_MAX];
    bool children[SWEEP_MAX];
    int comm_r, code;
    char *out;
};

static int sweep_main(void *arg)
{
    struct sweep *c = arg;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE,
                                    COIL_STDIO_PIPE);
    c->fds_before = test_fd_count();
    c->allocs_before = test_alloc_live();
    coil_process_t *p = NULL;
    for (c->n = 0; c->n < SWEEP_MAX; c->n++) {
        test_alloc_fail_after(c->n + 1);
        int r = coil_process_spawn_shell("cat", &o, &p);
        bool failed = test_alloc_failed();
        test_alloc_fail_after(0);
        c->r[c->n] = r;
        if (!r && !failed)
            break;
        if (!r) {
            /* The injected failure hit something that may fail quietly
             * (none does today): not a failure of the spawn. */
            c->r[c->n] = 1;
            break;
        }
        c->fds[c->n] = test_fd_count();
        c->allocs[c->n] = test_alloc_live();
        c->children[c->n] = !no_children();
    }
    if (p) {
        c->comm_r = coil_process_communicate(p, "abc", 3, &c->out, NULL,
                                             NULL, NULL);
        coil_process_returncode(p, &c->code);
        coil_process_unref(p);
    }
    return 0;
}

static void test_alloc_failure_sweep(void **state)
{
    struct sweep *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    assert_int_equal(test_run_task(test_loop(state), sweep_main, c), 0);
    assert_true(c->n > 0 && c->n < SWEEP_MAX);
    for (int i = 0; i < c->n; i++) {
        if (c->r[i] != -ENOMEM)
            fail_msg("allocation %d: %d", i + 1, c->r[i]);
        if (c->fds[i] != c->fds_before)
            fail_msg("allocation %d: %ld fds, %ld before", i + 1, c->fds[i],
                     c->fds_before);
        /* Debug mode keeps freed streams in its quarantine until the loop
         * goes: the count is checked by the leak gate then. */
        if (c->allocs[i] != c->allocs_before &&
            !coil_loop_debug(test_loop(state)))
            fail_msg("allocation %d: %ld blocks, %ld before", i + 1,
                     c->allocs[i], c->allocs_before);
        if (c->children[i])
            fail_msg("allocation %d: a child was left", i + 1);
    }
    assert_int_equal(c->r[c->n], 0);
    assert_int_equal(c->comm_r, 0);
    assert_int_equal(c->code, 0);
    assert_string_equal(c->out, "abc");
    coil_process_free_output(c->out);
    free(c);
}

/* Syscalls that fail: the spawn itself, the second pipe, the pidfd. */
struct sysfail {
    int spawn_r, pipe_r, pidfd_r;
    long fds_before;
    long fds[3];
    bool children[3];
};

static int sysfail_main(void *arg)
{
    struct sysfail *c = arg;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE,
                                    COIL_STDIO_PIPE);
    coil_process_t *p;
    c->fds_before = test_fd_count();
    coil_test_fail(COIL_TEST_SPAWN, 1, 1, -EAGAIN);
    c->spawn_r = coil_process_spawn_shell("exit 0", &o, &p);
    c->fds[0] = test_fd_count();
    c->children[0] = !no_children();
    coil_test_fail(COIL_TEST_PIPE, 2, 1, -ENFILE);
    c->pipe_r = coil_process_spawn_shell("exit 0", &o, &p);
    c->fds[1] = test_fd_count();
    c->children[1] = !no_children();
    coil__fault_arm(COIL__SYS_PIDFD, 1, 1, EMFILE);
    c->pidfd_r = coil_process_spawn_shell("exec sleep 100", &o, &p);
    if (!c->pidfd_r) { /* the fallback asks for no pidfd */
        coil_process_kill(p);
        coil_process_wait(p, NULL);
        coil_process_unref(p);
    }
    c->fds[2] = test_fd_count();
    c->children[2] = !no_children();
    coil_test_reset_faults();
    return 0;
}

static void test_syscall_failures(void **state)
{
    struct sysfail c = {0};
    assert_int_equal(test_run_task(test_loop(state), sysfail_main, &c), 0);
    assert_int_equal(c.spawn_r, -EAGAIN);
    assert_int_equal(c.pipe_r, -ENFILE);
    /* With the fallback no pidfd is asked for. */
    assert_int_equal(c.pidfd_r, fallback ? 0 : -EMFILE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c.fds[i], c.fds_before);
        assert_false(c.children[i]);
    }
}

/* ------------------------------------------------------------------ */
/* Cancellation and timeouts                                            */
/* ------------------------------------------------------------------ */

struct cw {
    coil_process_t *p;
    int spawn_r, cancelled_r, later_r, code, pid;
    bool rc_after_cancel, alive_after_cancel;
};

static int cw_waiter(void *arg)
{
    struct cw *c = arg;
    c->cancelled_r = coil_process_wait(c->p, NULL);
    return 0;
}

static int cw_main(void *arg)
{
    struct cw *c = arg;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, 0, 0);
    c->spawn_r = coil_process_spawn_shell("read x; exit 5", &o, &c->p);
    if (c->spawn_r)
        return 0;
    c->pid = coil_process_pid(c->p);
    coil_task_t *t = test_spawn(coil_running_loop(), cw_waiter, c);
    coil_sleep(10 * COIL_MSEC);
    coil_task_cancel(t);
    test_join(t);
    c->rc_after_cancel = coil_process_returncode(c->p, NULL);
    c->alive_after_cancel = pid_exists(c->pid);
    coil_stream_write(coil_process_stdin(c->p), "\n", 1);
    c->later_r = coil_process_wait(c->p, &c->code);
    coil_process_unref(c->p);
    return 0;
}

static void test_cancel_wait(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    struct cw c = {0};
    assert_int_equal(test_run_task(test_loop(state), cw_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.cancelled_r, -ECANCELED);
    assert_false(c.rc_after_cancel);
    assert_true(c.alive_after_cancel);
    assert_int_equal(c.later_r, 0);
    assert_int_equal(c.code, 5);
}

struct cc {
    coil_process_t *p;
    const char *cmd;
    coil_process_options_t o;
    size_t input_len;
    char *input;
    int spawn_r, comm_r, kill_r, wait_r, code, pid;
    char *out, *err;
    size_t out_len, err_len;
    bool alive;
};

static int cc_communicator(void *arg)
{
    struct cc *c = arg;
    c->out = c->err = (char *)1;
    c->out_len = c->err_len = 99;
    c->comm_r = coil_process_communicate(c->p, c->input, c->input_len,
                                         &c->out, &c->out_len, &c->err,
                                         &c->err_len);
    return 0;
}

static int cc_main(void *arg)
{
    struct cc *c = arg;
    c->spawn_r = coil_process_spawn_shell(c->cmd, &c->o, &c->p);
    if (c->spawn_r)
        return 0;
    c->pid = coil_process_pid(c->p);
    coil_task_t *t = test_spawn(coil_running_loop(), cc_communicator, c);
    coil_sleep(50 * COIL_MSEC);
    coil_task_cancel(t);
    test_join(t);
    c->alive = pid_exists(c->pid) && !coil_process_returncode(c->p, NULL);
    c->kill_r = coil_process_kill(c->p);
    c->wait_r = coil_process_wait(c->p, &c->code);
    coil_process_unref(c->p);
    if (c->o.new_process_group)
        reap_group(c->pid);
    return 0;
}

static void check_cc(struct cc *c)
{
    assert_int_equal(c->spawn_r, 0);
    assert_int_equal(c->comm_r, -ECANCELED);
    assert_null(c->out);
    assert_null(c->err);
    assert_int_equal(c->out_len, 0);
    assert_int_equal(c->err_len, 0);
    assert_true(c->alive);
    assert_int_equal(c->kill_r, 0);
    assert_int_equal(c->wait_r, 0);
    assert_int_equal(c->code, -9);
}

static void test_cancel_communicate(void **state)
{
    test_allow_reports("swallowed its cancellation"); /* on purpose */
    /* One activity, inline: reading stdout of a child that keeps it
     * open. */
    struct cc c = {0};
    c.cmd = "echo partial; exec sleep 100";
    c.o = opts(0, COIL_STDIO_PIPE, 0);
    assert_int_equal(test_run_task(test_loop(state), cc_main, &c), 0);
    check_cc(&c);
    /* Three activities in tasks: the input echoed on both pipes, then
     * the child sleeps with them open. */
    memset(&c, 0, sizeof(c));
    c.cmd = "tee /dev/stderr; exec sleep 100";
    c.o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, COIL_STDIO_PIPE);
    c.o.new_process_group = true; /* tee dies with the shell */
    c.input_len = 512 * 1024;
    c.input = pattern(c.input_len, 2);
    assert_int_equal(test_run_task(test_loop(state), cc_main, &c), 0);
    check_cc(&c);
    free(c.input);
}

struct to {
    int spawn_r, scope_r, for_r, zero_r, wait_for_r, killed_r, code, exited_r;
    int code_exited;
};

static int to_waiter(void *arg)
{
    return coil_process_wait(arg, NULL);
}

static int to_main(void *arg)
{
    struct to *c = arg;
    coil_process_t *p;
    c->spawn_r = coil_process_spawn("sleep", argv_of("sleep", "100", NULL,
                                                     NULL),
                                    NULL, &p);
    if (c->spawn_r)
        return 0;
    coil_timeout_t *sc;
    if (coil_timeout_begin(20 * COIL_MSEC, &sc) == 0) {
        int r = coil_process_wait(p, NULL);
        c->scope_r = coil_timeout_end(sc, r);
    }
    c->for_r = coil_process_wait_for(p, 20 * COIL_MSEC, NULL);
    c->zero_r = coil_process_wait_for(p, 0, NULL);
    /* coil_wait_for: the wait in a task of its own. */
    coil_task_t *t;
    if (coil_task_spawn(coil_running_loop(), to_waiter, p, &t) == 0) {
        c->wait_for_r = coil_wait_for(coil_task_future(t), 20 * COIL_MSEC,
                                      NULL);
        coil_task_unref(t);
    }
    coil_process_kill(p);
    c->killed_r = coil_process_wait_for(p, 10 * COIL_SEC, &c->code);
    coil_process_unref(p);
    /* A child that exited already: 0 even with no time left. */
    c->spawn_r = coil_process_spawn("true", argv_of("true", NULL, NULL, NULL),
                                    NULL, &p);
    if (c->spawn_r)
        return 0;
    coil_process_wait(p, NULL);
    c->exited_r = coil_process_wait_for(p, 0, &c->code_exited);
    coil_process_unref(p);
    return 0;
}

static void test_wait_timeout(void **state)
{
    struct to c = {0};
    assert_int_equal(test_run_task(test_loop(state), to_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.scope_r, -ETIMEDOUT);
    assert_int_equal(c.for_r, -ETIMEDOUT);
    assert_int_equal(c.zero_r, -ETIMEDOUT);
    assert_int_equal(c.wait_for_r, -ETIMEDOUT);
    assert_int_equal(c.killed_r, 0);
    assert_int_equal(c.code, -9);
    assert_int_equal(c.exited_r, 0);
    assert_int_equal(c.code_exited, 0);
}

/* ------------------------------------------------------------------ */
/* Lifetime: the last reference, the loop's close                       */
/* ------------------------------------------------------------------ */

struct unref {
    int spawn_r[2], pid[2];
    bool gone[2], ever_zombie_free;
};

static int unref_main(void *arg)
{
    struct unref *c = arg;
    coil_process_t *p;
    /* A child that exits on its own, a moment after its last reference
     * went. */
    c->spawn_r[0] = coil_process_spawn_shell("sleep 0.1", NULL, &p);
    if (c->spawn_r[0])
        return 0;
    c->pid[0] = coil_process_pid(p);
    coil_process_unref(p);
    /* cat: the last reference closes its stdin (once "abc" is written)
     * and its stdout; it ends. */
    coil_process_options_t o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, 0);
    c->spawn_r[1] = coil_process_spawn("cat", argv_of("cat", NULL, NULL,
                                                      NULL),
                                       &o, &p);
    if (c->spawn_r[1])
        return 0;
    c->pid[1] = coil_process_pid(p);
    coil_stream_write(coil_process_stdin(p), "abc", 3);
    coil_process_unref(p);
    /* Run the loop until both are reaped (kill(pid, 0) finds a zombie
     * too, so it fails only once the child is reaped). */
    for (int i = 0; i < 500 && (pid_exists(c->pid[0]) ||
                                pid_exists(c->pid[1]));
         i++)
        coil_sleep(10 * COIL_MSEC);
    c->gone[0] = !pid_exists(c->pid[0]);
    c->gone[1] = !pid_exists(c->pid[1]);
    return 0;
}

static void test_unref_before_exit(void **state)
{
    struct unref c = {0};
    assert_int_equal(test_run_task(test_loop(state), unref_main, &c), 0);
    assert_int_equal(c.spawn_r[0], 0);
    assert_int_equal(c.spawn_r[1], 0);
    assert_true(c.gone[0]);
    assert_true(c.gone[1]);
    assert_true(no_children());
    /* The leak gate (teardown) checks the objects were freed. */
}

struct lc {
    coil_process_t *p[3];
    int spawn_r[3];
    int pid[3];
    coil_stream_t *out;
    int waiter_r;
    bool waiter_returned;
};

static int lc_waiter(void *arg)
{
    struct lc *c = arg;
    c->waiter_r = coil_process_wait(c->p[1], NULL);
    c->waiter_returned = true;
    return 0;
}

static int lc_communicator(void *arg)
{
    struct lc *c = arg;
    char *out;
    coil_process_communicate(c->p[2], "xyz", 3, &out, NULL, NULL, NULL);
    c->waiter_returned = true;
    return 0;
}

static void lc_start(void *arg)
{
    struct lc *c = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_process_options_t o = opts(0, COIL_STDIO_PIPE, 0);
    c->spawn_r[0] = coil_process_spawn("sleep", argv_of("sleep", "100", NULL,
                                                        NULL),
                                       &o, &c->p[0]);
    c->spawn_r[1] = coil_process_spawn("sleep", argv_of("sleep", "100", NULL,
                                                        NULL),
                                       NULL, &c->p[1]);
    o = opts(COIL_STDIO_PIPE, COIL_STDIO_PIPE, COIL_STDIO_PIPE);
    o.new_process_group = true; /* its tee is reaped with it (reap_group) */
    c->spawn_r[2] = coil_process_spawn_shell("tee /dev/stderr; exec sleep 100",
                                             &o, &c->p[2]);
    for (int i = 0; i < 3; i++)
        if (!c->spawn_r[i])
            c->pid[i] = coil_process_pid(c->p[i]);
    if (!c->spawn_r[1])
        coil_task_spawn(loop, lc_waiter, c, NULL);
    if (!c->spawn_r[2])
        coil_task_spawn(loop, lc_communicator, c, NULL);
    coil_loop_call_later(loop, 50 * COIL_MSEC, test_stop_cb, loop, NULL);
}

static void test_loop_close_kills(void **state)
{
    test_allow_reports("loop closed with"); /* on purpose */
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    struct exc_log log = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &log);
    struct lc c = {0};
    assert_int_equal(coil_loop_call_soon(loop, lc_start, &c, NULL), 0);
    test_run(loop);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c.spawn_r[i], 0);
    assert_true(pid_exists(c.pid[0]));
    assert_false(coil_process_returncode(c.p[0], NULL));
    assert_int_equal(coil_loop_close(loop), 0);
    /* Killed and reaped by the close (and the shell's tee, if it was
     * still running, by the test). */
    for (int i = 0; i < 3; i++)
        assert_false(pid_exists(c.pid[i]));
    reap_group(c.pid[2]);
    assert_true(no_children());
    int code = 0;
    assert_true(coil_process_returncode(c.p[0], &code));
    assert_int_equal(code, -9);
    assert_int_equal(coil_stream_fd(coil_process_stdout(c.p[0])), -1);
    assert_int_equal(coil_process_send_signal(c.p[0], SIGTERM), -ESRCH);
    assert_int_equal(coil_process_wait(c.p[0], NULL), -EPERM);
    assert_false(c.waiter_returned); /* abandoned */
    for (int i = 0; i < 3; i++)
        coil_process_unref(c.p[i]);
    coil_loop_unref(loop);
}

/* The loop closes with only the loop holding a running child. */
static void lone_start(void *arg)
{
    int *pid = arg;
    coil_process_t *p;
    if (coil_process_spawn("sleep", argv_of("sleep", "100", NULL, NULL), NULL,
                           &p) == 0) {
        *pid = coil_process_pid(p);
        coil_process_unref(p);
    }
    coil_loop_stop(coil_running_loop());
}

static void test_loop_close_unreferenced_child(void **state)
{
    (void)state;
    coil_loop_t *loop;
    assert_int_equal(coil_loop_new(&loop), 0);
    int pid = 0;
    assert_int_equal(coil_loop_call_soon(loop, lone_start, &pid, NULL), 0);
    test_run(loop);
    assert_true(pid > 0);
    assert_true(pid_exists(pid));
    coil_loop_unref(loop); /* closes it */
    assert_false(pid_exists(pid));
    assert_true(no_children());
}

/* Somebody else reaps the child: 255, and the exception handler hears. */
struct stolen {
    int spawn_r, wait_r, code, pid, stolen_status;
};

static int stolen_main(void *arg)
{
    struct stolen *c = arg;
    coil_process_t *p;
    c->spawn_r = coil_process_spawn_shell("exit 9", NULL, &p);
    if (c->spawn_r)
        return 0;
    c->pid = coil_process_pid(p);
    /* Blocks the loop until the child exits: the loop cannot reap it
     * first. */
    if (waitpid(c->pid, &c->stolen_status, 0) != c->pid)
        c->stolen_status = -1;
    c->wait_r = coil_process_wait(p, &c->code);
    coil_process_unref(p);
    return 0;
}

static void test_reaped_behind_our_back(void **state)
{
    coil_loop_t *loop = test_loop(state);
    struct exc_log log = {0};
    coil_loop_set_exception_handler(loop, test_exc_record, &log);
    struct stolen c = {0};
    assert_int_equal(test_run_task(loop, stolen_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_true(WIFEXITED(c.stolen_status));
    assert_int_equal(WEXITSTATUS(c.stolen_status), 9);
    assert_int_equal(c.wait_r, 0);
    assert_int_equal(c.code, 255);
    assert_int_equal(log.count, 1);
    assert_int_equal(log.last_error, -ECHILD);
}

/* ------------------------------------------------------------------ */
/* Many at once; which path; the fallback's rules                      */
/* ------------------------------------------------------------------ */

#define MANY 24

struct many {
    int spawn_r[MANY], wait_r[MANY], code[MANY];
};

static int many_main(void *arg)
{
    struct many *c = arg;
    coil_process_t *p[MANY] = {0};
    for (int i = 0; i < MANY; i++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "exit %d", i);
        c->spawn_r[i] = coil_process_spawn_shell(cmd, NULL, &p[i]);
    }
    /* In reverse: most have exited (and been reaped) meanwhile. */
    for (int i = MANY - 1; i >= 0; i--)
        if (!c->spawn_r[i]) {
            c->wait_r[i] = coil_process_wait(p[i], &c->code[i]);
            coil_process_unref(p[i]);
        }
    return 0;
}

static void test_many_children(void **state)
{
    struct many c = {0};
    assert_int_equal(test_run_task(test_loop(state), many_main, &c), 0);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(c.spawn_r[i], 0);
        assert_int_equal(c.wait_r[i], 0);
        assert_int_equal(c.code[i], i);
    }
}

static bool sigchld_is_default(void)
{
    struct sigaction sa;
    sigaction(SIGCHLD, NULL, &sa);
    return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL;
}

struct path {
    int spawn_r, wait_r;
    unsigned pidfd_calls;
    bool dfl_while_running;
};

static int path_main(void *arg)
{
    struct path *c = arg;
    coil_process_t *p;
    coil__fault_arm(COIL__SYS_PIDFD, 0, 0, 0); /* count from here */
    c->spawn_r = coil_process_spawn("sleep", argv_of("sleep", "100", NULL,
                                                     NULL),
                                    NULL, &p);
    if (c->spawn_r)
        return 0;
    c->pidfd_calls = coil__fault_calls(COIL__SYS_PIDFD);
    c->dfl_while_running = sigchld_is_default();
    coil_process_kill(p);
    c->wait_r = coil_process_wait(p, NULL);
    coil_process_unref(p);
    return 0;
}

static void test_path_used(void **state)
{
    struct path c = {0};
    assert_true(sigchld_is_default());
    assert_int_equal(test_run_task(test_loop(state), path_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.wait_r, 0);
    if (fallback) {
        assert_int_equal(c.pidfd_calls, 0);
        assert_false(c.dfl_while_running); /* coil's handler */
    } else {
        assert_int_equal(c.pidfd_calls, 1);
        assert_true(c.dfl_while_running); /* no handler needed */
    }
    assert_true(sigchld_is_default()); /* put back after the last child */
}

/* A refusal found at a spawn: the fallback is taken then, and from then
 * on. */
struct refusal {
    int r1, w1, code1, r2, w2, code2;
    bool dfl1, dfl2;
    int flag_after;
    unsigned calls2;
};

static int refusal_main(void *arg)
{
    struct refusal *c = arg;
    coil_process_t *p;
    coil_process_options_t o = opts(COIL_STDIO_PIPE, 0, 0);
    coil__fault_arm(COIL__SYS_PIDFD, 1, 1, ENOSYS);
    c->r1 = coil_process_spawn_shell("read x; exit 6", &o, &p);
    if (c->r1)
        return 0;
    c->flag_after = atomic_load(&coil__process_pidfd_refused);
    c->dfl1 = sigchld_is_default();
    coil_stream_write(coil_process_stdin(p), "\n", 1);
    c->w1 = coil_process_wait(p, &c->code1);
    coil_process_unref(p);
    coil__fault_arm(COIL__SYS_PIDFD, 0, 0, 0);
    c->r2 = coil_process_spawn_shell("exec sleep 100", NULL, &p);
    if (c->r2)
        return 0;
    c->calls2 = coil__fault_calls(COIL__SYS_PIDFD);
    c->dfl2 = sigchld_is_default();
    coil_process_kill(p);
    c->w2 = coil_process_wait(p, &c->code2);
    coil_process_unref(p);
    return 0;
}

static void test_pidfd_refusal_found(void **state)
{
    struct refusal c = {0};
    int r = test_run_task(test_loop(state), refusal_main, &c);
    atomic_store(&coil__process_pidfd_refused, 0);
    assert_int_equal(r, 0);
    assert_int_equal(c.r1, 0);
    assert_int_equal(c.flag_after, 1);
    assert_false(c.dfl1);
    assert_int_equal(c.w1, 0);
    assert_int_equal(c.code1, 6);
    assert_int_equal(c.r2, 0);
    assert_int_equal(c.calls2, 0); /* not asked again */
    assert_false(c.dfl2);
    assert_int_equal(c.w2, 0);
    assert_int_equal(c.code2, -9);
    assert_true(sigchld_is_default());
}

/* A child that exits before the SIGCHLD handler is in (the refusal is
 * found after it started): its SIGCHLD is lost, so the spawn must look
 * once more, or the exit would go unseen. The test hook lets the child
 * exit (not reaped) before coil watches it. */
static void exit_before_watched(int pid)
{
    siginfo_t si;
    (void)waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT);
}

struct race {
    int r, w, code;
    bool rc_at_once;
};

static int race_main(void *arg)
{
    struct race *c = arg;
    coil__fault_arm(COIL__SYS_PIDFD, 1, 1, ENOSYS);
    coil__process_test_spawned = exit_before_watched;
    coil_process_t *p;
    c->r = coil_process_spawn_shell("exit 3", NULL, &p);
    coil__process_test_spawned = NULL;
    if (c->r)
        return 0;
    c->rc_at_once = coil_process_returncode(p, NULL);
    c->w = coil_process_wait_for(p, 2 * COIL_SEC, &c->code);
    coil_process_unref(p);
    return 0;
}

static void test_refusal_found_exit_race(void **state)
{
    struct race c = {0};
    int r = test_run_task(test_loop(state), race_main, &c);
    coil__process_test_spawned = NULL;
    atomic_store(&coil__process_pidfd_refused, 0);
    assert_int_equal(r, 0);
    assert_int_equal(c.r, 0);
    assert_true(c.rc_at_once); /* seen by the spawn's own look */
    assert_int_equal(c.w, 0);
    assert_int_equal(c.code, 3);
    assert_true(sigchld_is_default());
}

/* Another loop has SIGCHLD: the fallback cannot have it (-EBUSY, no
 * child), the pidfd path does not need it. */
static void noop_cb(void *arg)
{
    (void)arg;
}

struct busy {
    int r, w, code;
    bool no_child;
};

static int busy_main(void *arg)
{
    struct busy *c = arg;
    coil_process_t *p = (coil_process_t *)1;
    c->r = coil_process_spawn_shell("exit 1", NULL, &p);
    c->no_child = no_children();
    if (!c->r) {
        c->w = coil_process_wait(p, &c->code);
        coil_process_unref(p);
    } else if (p != NULL) {
        c->r = -1000;
    }
    return 0;
}

static void test_sigchld_taken_elsewhere(void **state)
{
    coil_loop_t *other;
    assert_int_equal(coil_loop_new(&other), 0);
    assert_int_equal(
        coil_loop_add_signal_handler(other, SIGCHLD, noop_cb, NULL), 0);
    struct busy c = {0};
    int r = test_run_task(test_loop(state), busy_main, &c);
    coil_loop_unref(other);
    assert_int_equal(r, 0);
    if (fallback) {
        assert_int_equal(c.r, -EBUSY);
        assert_true(c.no_child);
    } else {
        assert_int_equal(c.r, 0);
        assert_int_equal(c.w, 0);
        assert_int_equal(c.code, 1);
    }
}

/* ------------------------------------------------------------------ */
/* Bad arguments                                                        */
/* ------------------------------------------------------------------ */

struct bad {
    int r[12];
    int comm_null, comm_input, wait_null, sig_bad, sig_neg, pid_null;
    bool rc_null;
    coil_stream_t *s[3];
};

static int bad_main(void *arg)
{
    struct bad *c = arg;
    coil_process_t *p;
    char *const *av = argv_of("true", NULL, NULL, NULL);
    coil_process_options_t o = {0};
    int i = 0;
    c->r[i++] = coil_process_spawn(NULL, av, NULL, &p);
    c->r[i++] = coil_process_spawn("true", NULL, NULL, &p);
    c->r[i++] = coil_process_spawn("true", av, NULL, NULL);
    c->r[i++] = coil_process_spawn("", av, NULL, &p);
    c->r[i++] = coil_process_spawn_shell(NULL, NULL, &p);
    o.stdin_mode = COIL_STDIO_STDOUT;
    c->r[i++] = coil_process_spawn("true", av, &o, &p);
    o = (coil_process_options_t){0};
    o.stdout_mode = COIL_STDIO_STDOUT;
    c->r[i++] = coil_process_spawn("true", av, &o, &p);
    o = (coil_process_options_t){0};
    o.stderr_mode = (coil_stdio_t)42;
    c->r[i++] = coil_process_spawn("true", av, &o, &p);
    c->comm_null = coil_process_communicate(NULL, NULL, 0, NULL, NULL, NULL,
                                            NULL);
    c->wait_null = coil_process_wait(NULL, NULL);
    if (coil_process_spawn("true", av, NULL, &p) == 0) {
        c->comm_input = coil_process_communicate(p, NULL, 3, NULL, NULL, NULL,
                                                 NULL);
        c->sig_bad = coil_process_send_signal(p, NSIG + 5);
        c->sig_neg = coil_process_send_signal(p, -1);
        for (int k = 0; k < 3; k++)
            c->s[k] = (coil_stream_t *)1;
        c->s[0] = coil_process_stdin(p);
        c->s[1] = coil_process_stdout(p);
        c->s[2] = coil_process_stderr(p);
        coil_process_wait(p, NULL);
        coil_process_unref(p);
    }
    c->pid_null = coil_process_pid(NULL);
    c->rc_null = coil_process_returncode(NULL, NULL);
    coil_process_unref(NULL);
    return 0;
}

static void test_bad_arguments(void **state)
{
    struct bad c = {0};
    assert_int_equal(test_run_task(test_loop(state), bad_main, &c), 0);
    for (int i = 0; i < 8; i++)
        if (c.r[i] != -EINVAL)
            fail_msg("case %d: %d", i, c.r[i]);
    assert_int_equal(c.comm_null, -EINVAL);
    assert_int_equal(c.wait_null, -EINVAL);
    assert_int_equal(c.comm_input, -EINVAL);
    assert_int_equal(c.sig_bad, -EINVAL);
    assert_int_equal(c.sig_neg, -EINVAL);
    for (int k = 0; k < 3; k++)
        assert_null(c.s[k]);
    assert_int_equal(c.pid_null, -EINVAL);
    assert_false(c.rc_null);
    /* No running loop. */
    coil_process_t *p = (coil_process_t *)1;
    assert_int_equal(coil_process_spawn("true", argv_of("true", NULL, NULL,
                                                        NULL),
                                        NULL, &p),
                     -EPERM);
    assert_null(p);
    assert_true(no_children());
}

/* A process of one loop waited for from a task of another: -EINVAL. */
struct other_loop {
    coil_process_t *p;
    int spawn_r, wait_r, comm_r, code;
};

static int other_spawn(void *arg)
{
    struct other_loop *c = arg;
    c->spawn_r = coil_process_spawn("sleep", argv_of("sleep", "100", NULL,
                                                     NULL),
                                    NULL, &c->p);
    return 0;
}

static int other_wait(void *arg)
{
    struct other_loop *c = arg;
    c->wait_r = coil_process_wait(c->p, NULL);
    c->comm_r = coil_process_communicate(c->p, NULL, 0, NULL, NULL, NULL,
                                         NULL);
    return 0;
}

static int other_end(void *arg)
{
    struct other_loop *c = arg;
    coil_process_kill(c->p);
    coil_process_wait(c->p, &c->code);
    coil_process_unref(c->p);
    return 0;
}

static void test_wait_from_other_loop(void **state)
{
    coil_loop_t *loop = test_loop(state), *other;
    struct other_loop c = {0};
    assert_int_equal(test_run_task(loop, other_spawn, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(coil_loop_new(&other), 0);
    int r = test_run_task(other, other_wait, &c);
    coil_loop_unref(other);
    assert_int_equal(r, 0);
    assert_int_equal(c.wait_r, -EINVAL);
    assert_int_equal(c.comm_r, -EINVAL);
    assert_int_equal(test_run_task(loop, other_end, &c), 0);
    assert_int_equal(c.code, -9);
}

/* Outside a task: the waits give -EPERM (a callback may spawn). */
struct cb {
    int spawn_r, wait_r, comm_r, wait_for_r;
    coil_process_t *p;
};

static void cb_spawn(void *arg)
{
    struct cb *c = arg;
    c->spawn_r = coil_process_spawn("true", argv_of("true", NULL, NULL, NULL),
                                    NULL, &c->p);
    if (!c->spawn_r) {
        c->wait_r = coil_process_wait(c->p, NULL);
        c->wait_for_r = coil_process_wait_for(c->p, COIL_SEC, NULL);
        c->comm_r = coil_process_communicate(c->p, NULL, 0, NULL, NULL, NULL,
                                             NULL);
    }
}

static int cb_main(void *arg)
{
    struct cb *c = arg;
    coil_loop_call_soon(coil_running_loop(), cb_spawn, c, NULL);
    coil_sleep(COIL_MSEC);
    if (c->p) {
        coil_process_wait(c->p, NULL);
        coil_process_unref(c->p);
    }
    return 0;
}

static void test_outside_task(void **state)
{
    struct cb c = {0};
    assert_int_equal(test_run_task(test_loop(state), cb_main, &c), 0);
    assert_int_equal(c.spawn_r, 0);
    assert_int_equal(c.wait_r, -EPERM);
    assert_int_equal(c.wait_for_r, -EPERM);
    assert_int_equal(c.comm_r, -EPERM);
}

/* ------------------------------------------------------------------ */

/* Whether the kernel gives pidfds here (valgrind 3.19 does not know the
 * call: the pidfd runs are then not registered). */
static bool pidfd_available(void)
{
#ifdef __linux__
    long fd = syscall(SYS_pidfd_open, getpid(), 0);
    if (fd >= 0)
        close((int)fd);
    return fd >= 0;
#else
    return false;
#endif
}

/* Whether posix_spawn reports exec failures here: glibc and musl do;
 * under valgrind, which runs the spawn's child as a fork, the error
 * never reaches the parent (the child exits with 127). */
static bool exec_errors_reported(void)
{
    pid_t pid;
    static char name[] = "coil-prog";
    char *const argv[] = {name, NULL};
    int e = posix_spawn(&pid, "/nonexistent/coil-prog", NULL, NULL, argv,
                        environ);
    if (e == 0)
        waitpid(pid, NULL, 0);
    return e == ENOENT;
}

/* Under TSan a signal is handled on the fiber (the task's stack) it
 * interrupted, and only when that fiber next enters the C library: if
 * the task ends first, or never runs again, the signal is lost (TSan
 * keeps deferred signals per fiber and drops them with it). SIGCHLD
 * lands while some task runs, so the fallback runs would hang now and
 * then: they are not registered there. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

static int run_mode(bool fb, bool applies, const char *why, const char *name,
                    const struct CMUnitTest *t, size_t n)
{
    fallback = fb;
    atomic_store(&coil__process_pidfd_refused, fb ? 1 : 0);
    int failed = test_run_if(applies, why, name, t, n);
    fallback = false;
    atomic_store(&coil__process_pidfd_refused, 0);
    return failed;
}

#define RUN_MODE(fb, applies, why, name, t)                                    \
    run_mode((fb), (applies), (why), (name), (t), sizeof(t) / sizeof(*(t)))

/* SIGCHLD ignored: the kernel reaps children itself, so a child may be
 * gone before its pidfd is asked for. The spawn still succeeds, and the
 * lost status is reported as 255 (never -ESRCH, never a kill of a pid
 * that may be another's by then). */
struct ign {
    int spawn_r[20], wait_r[20], rc[20];
};

static int ign_main(void *arg)
{
    struct ign *c = arg;
    static char t[] = "/bin/true";
    char *const argv[] = {t, NULL};
    for (int i = 0; i < 20; i++) {
        coil_process_t *p;
        /* Every other one: the child found gone when its pidfd is asked
         * for (the race made certain). */
        if (i % 2 == 0)
            coil__fault_arm(COIL__SYS_PIDFD, 1, 1, ESRCH);
        c->spawn_r[i] = coil_process_spawn(t, argv, NULL, &p);
        if (c->spawn_r[i])
            continue;
        if (i % 2)
            coil_sleep(5 * COIL_MSEC); /* long gone before the wait */
        c->wait_r[i] = coil_process_wait(p, &c->rc[i]);
        coil_process_unref(p);
    }
    return 0;
}

static void test_sigchld_ignored(void **state)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    assert_int_equal(sigaction(SIGCHLD, &ign, &old), 0);
    struct exc_log ex = {0};
    coil_loop_set_exception_handler(test_loop(state), test_exc_record, &ex);
    struct ign c;
    memset(&c, 0, sizeof(c));
    int r = test_run_task(test_loop(state), ign_main, &c);
    /* A child that coil was made to think gone (the ESRCH above) may
     * still run on a slow machine: with SIGCHLD ignored, this waits for
     * every child to end (then ECHILD), so that none becomes a zombie
     * once SIGCHLD is heeded again. */
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    sigaction(SIGCHLD, &old, NULL);
    assert_int_equal(r, 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(c.spawn_r[i], 0);
        assert_int_equal(c.wait_r[i], 0);
        assert_int_equal(c.rc[i], 255);
    }
    assert_int_equal(ex.last_error, -ECHILD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        PTEST(test_echo_hello),
        PTEST(test_exit_codes),
        PTEST(test_kill_and_terminate),
        PTEST(test_wait_twice_returncode_esrch),
        PTEST(test_signal_to_exited_child),
        PTEST(test_communicate_cat_4mib),
        PTEST(test_communicate_both_outputs),
        PTEST(test_communicate_in_and_out),
        PTEST(test_communicate_input_unread),
        PTEST(test_communicate_no_pipes),
        PTEST(test_communicate_discard),
        PTEST(test_stderr_merged),
        PTEST(test_devnull),
        PTEST(test_cwd),
        PTEST(test_envp),
        PTEST(test_new_process_group),
        PTEST(test_child_starts_clean),
        PTEST(test_low_fds_closed),
        PTEST(test_killed_while_writing),
        PTEST(test_write_to_gone_child),
        PTEST(test_alloc_failure_sweep),
        PTEST(test_syscall_failures),
        PTEST(test_cancel_wait),
        PTEST(test_cancel_communicate),
        PTEST(test_wait_timeout),
        PTEST(test_unref_before_exit),
        PTEST_NOLOOP(test_loop_close_kills),
        PTEST_NOLOOP(test_loop_close_unreferenced_child),
        PTEST(test_reaped_behind_our_back),
        PTEST(test_many_children),
        PTEST(test_path_used),
        PTEST(test_sigchld_taken_elsewhere),
        PTEST(test_bad_arguments),
        PTEST(test_outside_task),
        PTEST(test_wait_from_other_loop),
    };
    const struct CMUnitTest exec_tests[] = {
        PTEST(test_exec_failure),
        PTEST(test_cwd_missing),
    };
    const struct CMUnitTest nofile_tests[] = {
        PTEST(test_emfile),
    };
    const struct CMUnitTest sigchld_ignored_tests[] = {
        PTEST(test_sigchld_ignored),
    };
    const struct CMUnitTest discovery_tests[] = {
        PTEST(test_pidfd_refusal_found),
        PTEST(test_refusal_found_exit_race),
    };
    test_init();
#ifdef PR_SET_CHILD_SUBREAPER
    /* A grandchild orphaned by a test (a shell's child left running)
     * becomes ours, and the teardown's check finds it. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
    bool pidfd = pidfd_available();
    bool exec_errors = exec_errors_reported();
    bool nofile = test_nofile_limit_works();
    const char *no_pidfd = "pidfd_open is refused here (valgrind?)";
    const char *no_exec_errors =
        "posix_spawn does not report exec failures here (valgrind?)";
    const char *no_nofile =
        "RLIMIT_NOFILE cannot be lowered usefully here (valgrind?)";
    const char *tsan =
        "TSan drops a signal deferred on a task's fiber that ends first";
    bool signals = !UNDER_TSAN;
    int failed = 0;
    failed += RUN_MODE(false, pidfd, no_pidfd, "pidfd", tests);
    failed += RUN_MODE(false, pidfd && exec_errors,
                       pidfd ? no_exec_errors : no_pidfd, "pidfd: exec errors",
                       exec_tests);
    failed += RUN_MODE(false, pidfd && nofile, pidfd ? no_nofile : no_pidfd,
                       "pidfd: EMFILE", nofile_tests);
    failed += RUN_MODE(false, pidfd, no_pidfd, "pidfd: SIGCHLD ignored",
                       sigchld_ignored_tests);
    failed += RUN_MODE(false, signals, tsan, "pidfd refused",
                       discovery_tests);
    failed += RUN_MODE(true, signals, tsan, "SIGCHLD fallback", tests);
    failed += RUN_MODE(true, signals && exec_errors,
                       signals ? no_exec_errors : tsan,
                       "SIGCHLD fallback: exec errors", exec_tests);
    failed += RUN_MODE(true, signals && nofile, signals ? no_nofile : tsan,
                       "SIGCHLD fallback: EMFILE", nofile_tests);
    return failed;
}
