/* SPDX-License-Identifier: MIT */
/*
 * process.c - subprocesses (coil/process.h): posix_spawn with pipes that
 * are coil streams, the child's exit seen by the loop, signals, wait and
 * communicate. docs/architecture.md, "Subprocesses", has the design.
 *
 * Starting. Everything that can fail without a child is done first: the
 * object, the pipes (close-on-exec, moved above 2 so that no dup2 of the
 * child overwrites another of its pipe ends), the parent's ends made
 * streams, the spawn's attributes. posix_spawnp then starts the child
 * with default dispositions for every signal and an empty mask
 * (POSIX_SPAWN_SETSIGDEF, _SETSIGMASK): what the program or coil did to
 * its own signals is not inherited. Only the pidfd (and the fallback's
 * SIGCHLD hook, the first time a process finds pidfds refused) can fail
 * after the child started; then the child is killed and reaped before
 * the call returns.
 *
 * The exit. With a pidfd: an owned watch with a lasting reader; the
 * pidfd turns readable when the child exits, and the reader reaps it
 * (waitpid WNOHANG). Without (pidfd_open refused: ENOSYS, EPERM under a
 * seccomp filter; or not Linux): the loop's reaper, one per loop with
 * children to reap, takes SIGCHLD through signal_internal.h's hook and
 * calls waitpid(pid, WNOHANG) for each of its children when it comes.
 * The reapers are found by loop in a process-wide list (under a mutex:
 * loops of several threads spawn); a reaper exists only while its loop
 * has children in it, and lets SIGCHLD go with its last child. Whether
 * pidfds are refused is learned once per process
 * (coil__process_pidfd_refused): a later spawn takes SIGCHLD before it
 * starts the child, so that an -EBUSY leaves no child behind.
 *
 * Lifetime. refs counts the holders of the memory: the users (one hold
 * while user_refs > 0), the reaper's hold (from the spawn until the
 * child is reaped: a child whose last user went is still reaped, and
 * the memory goes then), and each suspended call (wait, communicate).
 * The loop's close hook, linked until the child is reaped, kills it
 * with SIGKILL and reaps it (blocking: SIGKILL makes it short).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

#include "coil/process.h"
#include "list.h"
#include "loop_internal.h"
#include "signal_internal.h"
#include "sys.h"
#include "task_internal.h"
#include "watch.h"

extern char **environ;

#if defined(__linux__) && !defined(SYS_pidfd_open)
#define SYS_pidfd_open 434
#endif
#if defined(__linux__) && !defined(SYS_pidfd_send_signal)
#define SYS_pidfd_send_signal 424
#endif

/* posix_spawn_file_actions_addchdir_np: glibc 2.29, musl 1.1.24 (which
 * says nothing of itself: any Linux libc that is not glibc is taken to
 * be a recent musl), macOS 10.15, FreeBSD 13.1. */
#if (defined(__GLIBC__) &&                                                     \
     (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))) ||          \
    (defined(__linux__) && !defined(__GLIBC__)) || defined(__APPLE__) ||       \
    defined(__FreeBSD__)
#define HAVE_ADDCHDIR 1
#endif

/* Bytes written to stdin per write+drain in communicate, and the first
 * size of an output buffer. */
#define FEED_CHUNK (64 * 1024)
#define SINK_MIN 4096

struct reaper;

struct coil_process {
    unsigned refs;              /* holders of the memory (see the top) */
    unsigned user_refs;         /* coil_process_ref / _unref */
    struct coil_loop *loop;     /* referenced */
    pid_t pid;
    int pidfd;                  /* -1: none (reaped, or no pidfd) */
    bool reaped;
    int code;                   /* the return code, once reaped */
    struct coil__watch watch;   /* of pidfd, bound while it is open */
    struct coil__close_hook hook; /* linked until reaped */
    struct reaper *reaper;      /* without a pidfd, until reaped */
    struct coil__list rlink;    /* in reaper->children */
    struct coil__list waiters;  /* struct proc_wait, not woken yet */
    coil_stream_t *io[3];       /* the parent's ends; NULL: no pipe */
};

/* ------------------------------------------------------------------ */
/* Memory                                                               */
/* ------------------------------------------------------------------ */

static void destroy(struct coil_process *p)
{
    struct coil_loop *loop = p->loop;
    for (int i = 0; i < 3; i++)
        coil_stream_unref(p->io[i]);
    coil__free(p);
    coil__loop_unref(loop);
}

static void release(struct coil_process *p)
{
    if (--p->refs == 0)
        destroy(p);
}

static void hold(struct coil_process *p)
{
    p->refs++;
}

/* ------------------------------------------------------------------ */
/* The SIGCHLD fallback: one reaper per loop with children              */
/* ------------------------------------------------------------------ */

struct reaper {
    struct coil__list link;     /* in `reapers` (under reapers_lock) */
    struct coil_loop *loop;
    struct coil__list children; /* struct coil_process, not reaped */
    bool scanning;              /* on_sigchld is going through them */
};

static pthread_mutex_t reapers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct coil__list reapers = {&reapers, &reapers};

/* 1 once the kernel refused pidfd_open in this process (ENOSYS, EPERM):
 * every later spawn takes the fallback from the start. Not static: the
 * tests force the fallback through it. */
atomic_int coil__process_pidfd_refused
#ifndef __linux__
    = 1
#endif
    ;

#ifdef COIL_TESTING
/* Test build only: called with the child's pid right after it started,
 * so that a test can let it exit before coil watches it. */
void (*coil__process_test_spawned)(int pid);
#endif

static bool check_exit(struct coil_process *p);

/* SIGCHLD came (from the ready queue, as the hook's call): reap whichever
 * of the loop's children have exited. */
static void on_sigchld(void *arg);

static void reaper_free(struct reaper *r)
{
    (void)coil__signal_remove_internal(r->loop, SIGCHLD);
    pthread_mutex_lock(&reapers_lock);
    coil__list_remove(&r->link);
    pthread_mutex_unlock(&reapers_lock);
    coil__free(r);
}

/* The reaper may go if it has no child left (and is not going through
 * them right now: then on_sigchld frees it when done). */
static void reaper_put(struct reaper *r)
{
    if (r && !r->scanning && coil__list_empty(&r->children))
        reaper_free(r);
}

/* loop's reaper, made (and SIGCHLD taken) if it has none. Errors: -ENOMEM,
 * the hook's (-EBUSY: another loop has SIGCHLD; -EMFILE...). */
static int reaper_get(struct coil_loop *loop, struct reaper **out)
{
    *out = NULL;
    pthread_mutex_lock(&reapers_lock);
    for (struct coil__list *l = reapers.next; l != &reapers; l = l->next) {
        struct reaper *r = coil__container_of(l, struct reaper, link);
        if (r->loop == loop) {
            pthread_mutex_unlock(&reapers_lock);
            *out = r;
            return 0;
        }
    }
    pthread_mutex_unlock(&reapers_lock);
    struct reaper *r = coil__calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->loop = loop;
    coil__list_init(&r->children);
    int err = coil__signal_add_internal(loop, SIGCHLD, on_sigchld, r, 0);
    if (err) {
        coil__free(r);
        return err;
    }
    pthread_mutex_lock(&reapers_lock);
    coil__list_push_back(&reapers, &r->link);
    pthread_mutex_unlock(&reapers_lock);
    *out = r;
    return 0;
}

static void on_sigchld(void *arg)
{
    struct reaper *r = arg;
    r->scanning = true;
    struct coil__list *l = r->children.next;
    while (l != &r->children) {
        struct coil__list *next = l->next;
        (void)check_exit(coil__container_of(l, struct coil_process, rlink));
        l = next;
    }
    r->scanning = false;
    reaper_put(r);
}

/* ------------------------------------------------------------------ */
/* The exit                                                             */
/* ------------------------------------------------------------------ */

/* A task in coil_process_wait. Lives on the task's stack. */
struct proc_wait {
    struct coil__wait wait;
    struct coil__list link; /* in p->waiters until woken */
    struct coil_task *task;
    struct coil_process *p;
};

static int decode(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return 255;
}

/* The child was reaped with return code code: let go of what watched
 * it, wake the waiters, drop the reaper's hold (which may free p). */
static void exited(struct coil_process *p, int code)
{
    p->reaped = true;
    p->code = code;
    if (p->pidfd >= 0) {
        coil__watch_stop(&p->watch, COIL__EV_READ);
        coil__watch_close(&p->watch);
        (void)close(p->pidfd);
        p->pidfd = -1;
    }
    if (p->reaper) {
        struct reaper *r = p->reaper;
        coil__list_remove(&p->rlink);
        p->reaper = NULL;
        reaper_put(r);
    }
    coil__loop_on_close_cancel(&p->hook);
    struct coil__list *l;
    while ((l = coil__list_first(&p->waiters))) {
        struct proc_wait *w = coil__container_of(l, struct proc_wait, link);
        coil__list_remove(l);
        coil__task_wake(w->task, 0);
    }
    release(p);
}

/* Somebody else reaped our child (a waitpid(-1) of the program's, or
 * SIGCHLD ignored): its status is lost. asyncio's child watchers say 255
 * too. */
static int lost(struct coil_process *p)
{
    coil__loop_report(p->loop, -ECHILD,
                      "child process %ld was reaped by someone else: its "
                      "return code is reported as 255",
                      (long)p->pid);
    return 255;
}

/* Reap the child if it has exited: whether it had (p may be gone then,
 * unless the caller holds it). */
static bool check_exit(struct coil_process *p)
{
    int status = 0;
    pid_t r;
    do
        r = waitpid(p->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return false;
    exited(p, r > 0 ? decode(status) : lost(p));
    return true;
}

/* The pidfd's reader (a lasting user of its watch, called from the
 * poll): readable means the child exited. */
static void on_pidfd(void *arg, int result)
{
    struct coil_process *p = arg;
    if (!check_exit(p) && result < 0)
        coil__loop_report(p->loop, result,
                          "child process %ld: its pidfd is no longer watched",
                          (long)p->pid);
}

static int send_sig(pid_t pid, int pidfd, int sig)
{
#ifdef __linux__
    if (pidfd >= 0) {
        if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0)
            return 0;
        if (errno != ENOSYS)
            return -errno;
    }
#else
    (void)pidfd;
#endif
    return kill(pid, sig) < 0 ? -errno : 0;
}

/* Kill a child that is ours and not reaped, and reap it (blocking).
 * Returns its return code. */
static int kill_and_reap(pid_t pid, int pidfd)
{
    (void)send_sig(pid, pidfd, SIGKILL);
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    return r == pid ? decode(status) : 255;
}

/* The loop closes with the child still running (after its tasks were
 * abandoned: nobody waits any more): kill it and reap it. */
static void on_loop_close(struct coil__close_hook *hook)
{
    struct coil_process *p = coil__container_of(hook, struct coil_process,
                                                hook);
    hold(p);
    if (!check_exit(p))
        exited(p, kill_and_reap(p->pid, p->pidfd));
    release(p);
}

/* ------------------------------------------------------------------ */
/* Starting                                                             */
/* ------------------------------------------------------------------ */

#ifdef __linux__
/* The child's pidfd, or -errno. */
static int open_pidfd(pid_t pid)
{
    int f = COIL__FAULT(COIL__SYS_PIDFD);
    if (f)
        return -f;
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
}
#endif

/* Whether pidfd_open's error means "never here" (no such call, or a
 * seccomp filter forbids it) rather than "not now". */
static bool pidfd_refusal(int err)
{
    return err == -ENOSYS || err == -EPERM || err == -EACCES;
}

/* Move fd above 2 (close-on-exec), so that the child's dup2 onto 0, 1 and
 * 2 never overwrites one of its pipe ends before it is used. */
static int lift(int *fd)
{
    if (*fd > 2)
        return 0;
    int n = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (n < 0)
        return -errno;
    (void)close(*fd);
    *fd = n;
    return 0;
}

/* A close-on-exec pipe with both ends above 2. */
static int make_pipe(int fds[2])
{
    int err = coil__pipe_cloexec(fds);
    if (err)
        return err;
    err = lift(&fds[0]);
    if (!err)
        err = lift(&fds[1]);
    if (err) {
        (void)close(fds[0]);
        (void)close(fds[1]);
    }
    return err;
}

static bool mode_ok(coil_stdio_t m, int i)
{
    switch (m) {
    case COIL_STDIO_INHERIT:
    case COIL_STDIO_PIPE:
    case COIL_STDIO_DEVNULL:
        return true;
    case COIL_STDIO_STDOUT:
        return i == 2;
    }
    return false;
}

/* The spawn's file actions and attributes (0 or a positive errno, as the
 * posix_spawn calls). child[i]: the child's end of pipe i, or -1. */
static int prepare(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at,
                   const coil_stdio_t modes[3], const int child[3],
                   const coil_process_options_t *o)
{
    int e = 0;
    for (int i = 0; i < 3 && !e; i++) {
        switch (modes[i]) {
        case COIL_STDIO_PIPE:
            e = posix_spawn_file_actions_adddup2(fa, child[i], i);
            break;
        case COIL_STDIO_DEVNULL:
            e = posix_spawn_file_actions_addopen(
                fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
            break;
        case COIL_STDIO_STDOUT:
            e = posix_spawn_file_actions_adddup2(fa, 1, 2);
            break;
        case COIL_STDIO_INHERIT:
            break;
        }
    }
    if (!e && o->cwd) {
#ifdef HAVE_ADDCHDIR
        e = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
#else
        e = ENOTSUP;
#endif
    }
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (o->new_process_group)
        flags |= POSIX_SPAWN_SETPGROUP;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    if (!e)
        e = posix_spawnattr_setflags(at, flags);
    if (!e)
        e = posix_spawnattr_setsigmask(at, &none);
    if (!e)
        e = posix_spawnattr_setsigdefault(at, &all);
    if (!e && o->new_process_group)
        e = posix_spawnattr_setpgroup(at, 0);
    return e;
}

/* posix_spawnp with the options: 0 and *pid, or -errno. */
static int start(const char *file, char *const argv[], const int child[3],
                 const coil_stdio_t modes[3], const coil_process_options_t *o,
                 pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int e = posix_spawn_file_actions_init(&fa);
    if (e)
        return -e;
    if ((e = posix_spawnattr_init(&at))) {
        posix_spawn_file_actions_destroy(&fa);
        return -e;
    }
    e = prepare(&fa, &at, modes, child, o);
    if (!e)
        e = COIL__FAULT(COIL__SYS_SPAWN);
    if (!e)
        e = posix_spawnp(pid, file, &fa, &at, argv,
                         o->envp ? o->envp : environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return -e;
}

/* After the child started: how the loop will see its exit. A pidfd if
 * the kernel gives one (a refusal is remembered, and the fallback
 * taken); else the loop's reaper (*r, taken before the spawn if pidfds
 * were known refused). Errors: the pidfd's (-EMFILE...), the watch's
 * (-ENOMEM), the reaper's (-EBUSY...); then the child must be killed. */
static int watch_exit(struct coil_process *p, struct reaper **r,
                      bool *reaper_late, bool *gone)
{
#ifdef __linux__
    if (!*r) {
        int fd = open_pidfd(p->pid);
        if (fd == -ESRCH) {
            /* Exited and reaped already, not by us (SIGCHLD ignored, a
             * waitpid(-1) of the program's): nothing to watch. */
            *gone = true;
            return 0;
        }
        if (fd >= 0) {
            int err = coil__watch_init(&p->watch, p->loop, fd,
                                       COIL__WATCH_OWNED);
            if (!err) {
                err = coil__watch_start(&p->watch, COIL__EV_READ, on_pidfd,
                                        p, 0);
                if (err)
                    coil__watch_close(&p->watch);
            }
            if (err) {
                (void)close(fd);
                return err;
            }
            p->pidfd = fd;
            return 0;
        }
        if (!pidfd_refusal(fd))
            return fd;
        atomic_store(&coil__process_pidfd_refused, 1);
    }
#endif
    if (!*r) {
        int err = reaper_get(p->loop, r);
        if (err)
            return err;
        *reaper_late = true;
    }
    p->reaper = *r;
    coil__list_push_back(&(*r)->children, &p->rlink);
    return 0;
}

int coil_process_spawn(const char *file, char *const argv[],
                       const coil_process_options_t *opts,
                       coil_process_t **out)
{
    if (out)
        *out = NULL;
    if (!file || !*file || !argv || !out)
        return -EINVAL;
    coil_process_options_t dflt = {0};
    const coil_process_options_t *o = opts ? opts : &dflt;
    const coil_stdio_t modes[3] = {o->stdin_mode, o->stdout_mode,
                                   o->stderr_mode};
    for (int i = 0; i < 3; i++)
        if (!mode_ok(modes[i], i))
            return -EINVAL;
    struct coil_loop *loop = coil_running_loop();
    if (!loop)
        return -EPERM;

    struct coil_process *p = coil__calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->pidfd = -1;
    p->loop = loop;
    coil__list_init(&p->rlink);
    coil__list_init(&p->waiters);
    int child[3] = {-1, -1, -1};
    int err = 0;
    struct reaper *r = NULL;
    bool reaper_late = false, gone = false;

    /* The pipes, whose parent ends become streams. */
    for (int i = 0; i < 3 && !err; i++) {
        if (modes[i] != COIL_STDIO_PIPE)
            continue;
        int fds[2];
        if ((err = make_pipe(fds)))
            break;
        /* stdin: the child reads fds[0]; stdout, stderr: it writes
         * fds[1]. */
        int parent = i == 0 ? fds[1] : fds[0];
        child[i] = i == 0 ? fds[0] : fds[1];
        /* A fresh pipe end: O_NONBLOCK is the only status flag to set
         * (its open file is not shared: nothing to put back later). */
        if (fcntl(parent, F_SETFL, O_NONBLOCK) < 0)
            err = -errno;
        if (!err)
            err = coil_stream_open_fd(parent, &p->io[i]);
        if (err)
            (void)close(parent);
    }
    /* Pidfds known refused: SIGCHLD is taken before the child exists. */
    if (!err && atomic_load(&coil__process_pidfd_refused))
        err = reaper_get(loop, &r);
    pid_t pid = -1;
    if (!err)
        err = start(file, argv, child, modes, o, &pid);
    for (int i = 0; i < 3; i++)
        if (child[i] >= 0)
            (void)close(child[i]);
    if (!err) {
        p->pid = pid;
#ifdef COIL_TESTING
        if (coil__process_test_spawned)
            coil__process_test_spawned(pid);
#endif
        if ((err = watch_exit(p, &r, &reaper_late, &gone)))
            (void)kill_and_reap(pid, -1); /* ours, not reaped: safe */
    }
    if (err) {
        reaper_put(r);
        for (int i = 0; i < 3; i++)
            coil_stream_unref(p->io[i]);
        coil__free(p);
        return err;
    }
    /* The users' hold and the reaper's (until the child is reaped). */
    p->refs = 2;
    p->user_refs = 1;
    coil__loop_ref(loop);
    p->hook.on_close = on_loop_close;
    coil__loop_on_close(loop, &p->hook);
    *out = p;
    /* SIGCHLD taken after the child started: it may have come and gone
     * before coil's handler was in. */
    if (gone)
        exited(p, lost(p));
    else if (reaper_late)
        (void)check_exit(p);
    return 0;
}

int coil_process_spawn_shell(const char *cmd,
                             const coil_process_options_t *opts,
                             coil_process_t **out)
{
    if (out)
        *out = NULL;
    if (!cmd)
        return -EINVAL;
    /* exec's argv is char *const[] for history's sake: nothing writes
     * to the strings. */
    static char sh[] = "sh", dash_c[] = "-c";
    char *const argv[] = {sh, dash_c, (char *)(uintptr_t)cmd, NULL};
    return coil_process_spawn("/bin/sh", argv, opts, out);
}

coil_process_t *coil_process_ref(coil_process_t *p)
{
    if (!p)
        return NULL;
    if (p->user_refs == 0) {
        coil__loop_report(p->loop, 0,
                          "coil_process_ref on a process whose last "
                          "reference was dropped");
        return NULL;
    }
    p->user_refs++;
    return p;
}

void coil_process_unref(coil_process_t *p)
{
    if (!p)
        return;
    if (p->user_refs == 0) {
        coil__loop_report(p->loop, 0,
                          "coil_process_unref on a process with no reference "
                          "left (unref'd once too often)");
        return;
    }
    if (--p->user_refs > 0)
        return;
    /* Nobody can reach the pipes any more: close them (stdin once what
     * is buffered is written). */
    for (int i = 0; i < 3; i++) {
        coil_stream_t *s = p->io[i];
        p->io[i] = NULL;
        coil_stream_unref(s);
    }
    release(p);
}

/* ------------------------------------------------------------------ */
/* Queries and signals                                                  */
/* ------------------------------------------------------------------ */

coil_stream_t *coil_process_stdin(const coil_process_t *p)
{
    return p ? p->io[0] : NULL;
}

coil_stream_t *coil_process_stdout(const coil_process_t *p)
{
    return p ? p->io[1] : NULL;
}

coil_stream_t *coil_process_stderr(const coil_process_t *p)
{
    return p ? p->io[2] : NULL;
}

int coil_process_pid(const coil_process_t *p)
{
    return p ? (int)p->pid : -EINVAL;
}

bool coil_process_returncode(const coil_process_t *p, int *returncode)
{
    if (!p || !p->reaped)
        return false;
    if (returncode)
        *returncode = p->code;
    return true;
}

int coil_process_send_signal(coil_process_t *p, int sig)
{
    if (!p || sig < 0 || sig >= NSIG)
        return -EINVAL;
    if (!p->reaped) {
        /* An exit the loop has not seen yet: reap it now rather than
         * signal a zombie (the caller's reference keeps p). */
        (void)check_exit(p);
    }
    if (p->reaped)
        return -ESRCH;
    /* Not reaped by coil: with a pidfd the signal cannot reach another
     * process; without, the pid is still the child's unless the program
     * reaped it behind coil's back (coil/process.h). */
    return send_sig(p->pid, p->pidfd, sig);
}

int coil_process_terminate(coil_process_t *p)
{
    return coil_process_send_signal(p, SIGTERM);
}

int coil_process_kill(coil_process_t *p)
{
    return coil_process_send_signal(p, SIGKILL);
}

/* ------------------------------------------------------------------ */
/* wait                                                                 */
/* ------------------------------------------------------------------ */

static bool pw_cancel(struct coil__wait *wait, struct coil_task *t)
{
    struct proc_wait *w = (struct proc_wait *)wait;
    if (coil__list_empty(&w->link))
        return false; /* the exit woke it: the result wins */
    coil__list_remove(&w->link);
    coil__task_wake(t, -ECANCELED);
    return true;
}

/* The loop closed with the task suspended here: the call's hold goes. */
static void pw_abandon(struct coil__wait *wait)
{
    struct proc_wait *w = (struct proc_wait *)wait;
    coil__list_remove(&w->link);
    release(w->p);
}

static void pw_describe(struct coil__wait *w, struct coil_task *t, char *buf,
                        size_t n)
{
    (void)t;
    snprintf(buf, n, "exit of child %d",
             (int)coil_process_pid(((struct proc_wait *)w)->p));
}

static const struct coil__wait_ops pw_ops = {
    .cancel = pw_cancel,
    .abandon = pw_abandon,
    .describe = pw_describe,
};

int coil_process_wait(coil_process_t *p, int *returncode)
{
    if (!p)
        return -EINVAL;
    struct coil_task *cur = coil__task_current();
    if (!cur)
        return -EPERM;
    if (coil__task_loop(cur) != p->loop)
        return -EINVAL;
    if (!p->reaped) {
        struct coil_task *t;
        int err = coil__task_begin_wait(&t);
        if (err)
            return err;
        struct proc_wait w = {{&pw_ops, true}, {NULL, NULL}, t, p};
        coil__list_init(&w.link);
        coil__list_push_back(&p->waiters, &w.link);
        hold(p);
        err = coil__task_suspend(t, &w.wait);
        coil__list_remove(&w.link);
        int code = p->code;
        release(p); /* the caller's reference keeps p, as a rule */
        if (err)
            return err;
        if (returncode)
            *returncode = code;
        return 0;
    }
    if (returncode)
        *returncode = p->code;
    return 0;
}

int coil_process_wait_for(coil_process_t *p, int64_t timeout_ns,
                          int *returncode)
{
    if (!p)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    if (p->reaped || timeout_ns == COIL_NO_TIMEOUT)
        return coil_process_wait(p, returncode);
    coil_timeout_t *scope;
    int err = coil_timeout_begin(timeout_ns, &scope);
    if (err)
        return err;
    err = coil_process_wait(p, returncode);
    return coil_timeout_end(scope, err);
}

/* ------------------------------------------------------------------ */
/* communicate                                                          */
/* ------------------------------------------------------------------ */

/* One output read to its end. */
struct sink {
    coil_stream_t *s;  /* referenced; NULL: not a pipe */
    char *buf;         /* always room for a NUL after the data */
    size_t len, cap;
    bool keep;         /* the caller wants the data; else it is dropped */
};

struct comm {
    /* On the calling task, while the call runs: if the loop abandons the
     * task, what the call holds goes (comm_drop). */
    struct coil__task_hook hook;
    struct coil_process *p;   /* held */
    coil_stream_t *in;        /* referenced; NULL: no stdin pipe */
    const char *input;
    size_t input_len;
    struct sink out, err;
};

static int sink_read(void *arg)
{
    struct sink *k = arg;
    for (;;) {
        if (k->cap - k->len < 2) {
            if (k->cap > SIZE_MAX / 2)
                return -ENOMEM;
            char *nb = coil__realloc(k->buf, k->cap * 2);
            if (!nb)
                return -ENOMEM;
            k->buf = nb;
            k->cap *= 2;
        }
        ssize_t r = coil_stream_read(k->s, k->buf + k->len,
                                     k->cap - k->len - 1);
        if (r <= 0)
            return (int)r;
        if (k->keep)
            k->len += (size_t)r;
    }
}

/* Whether a write error of stdin only means the child stopped reading
 * (asyncio's communicate ignores BrokenPipeError and ConnectionResetError
 * there too). */
static bool child_gone(int err)
{
    return err == -EPIPE || err == -ECONNRESET;
}

static int feed(void *arg)
{
    struct comm *c = arg;
    int err = 0;
    for (size_t off = 0; off < c->input_len && !err;) {
        size_t n = c->input_len - off;
        if (n > FEED_CHUNK)
            n = FEED_CHUNK;
        err = coil_stream_write(c->in, c->input + off, n);
        if (!err)
            err = coil_stream_drain(c->in);
        off += n;
    }
    if (err && !child_gone(err))
        return err;
    /* The end of the child's input, once what is buffered is out. */
    (void)coil_stream_close(c->in);
    err = coil_stream_wait_closed(c->in);
    return child_gone(err) ? 0 : err;
}

static void sink_free(struct sink *k)
{
    coil_stream_unref(k->s);
    k->s = NULL;
    coil__free(k->buf);
    k->buf = NULL;
    k->len = 0;
}

/* Let go of everything the call holds. */
static void comm_release(struct comm *c)
{
    sink_free(&c->out);
    sink_free(&c->err);
    coil_stream_unref(c->in);
    c->in = NULL;
    release(c->p);
}

static void comm_drop(struct coil__task_hook *hook, struct coil_task *t)
{
    (void)t;
    comm_release(coil__container_of(hook, struct comm, hook));
}

static int sink_init(struct sink *k, coil_stream_t *s, bool keep)
{
    if (!s)
        return 0;
    k->buf = coil__malloc(SINK_MIN);
    if (!k->buf)
        return -ENOMEM;
    k->cap = SINK_MIN;
    k->keep = keep;
    k->s = coil_stream_ref(s);
    return 0;
}

/* Run the activities (write stdin, read stdout, read stderr) together:
 * one inline, several as tasks of a group. */
static int comm_run(struct comm *c)
{
    coil_task_fn fn[3];
    void *arg[3];
    int n = 0;
    if (c->input_len) {
        fn[n] = feed;
        arg[n++] = c;
    }
    if (c->out.s) {
        fn[n] = sink_read;
        arg[n++] = &c->out;
    }
    if (c->err.s) {
        fn[n] = sink_read;
        arg[n++] = &c->err;
    }
    if (n == 0)
        return 0;
    if (n == 1)
        return fn[0](arg[0]);
    coil_group_t *g;
    int err = coil_group_new(&g);
    if (err)
        return err;
    for (int i = 0; i < n && !err; i++)
        err = coil_group_spawn(g, fn[i], arg[i], NULL, NULL);
    if (err)
        (void)coil_group_cancel(g);
    int werr = coil_group_wait(g);
    coil_group_unref(g);
    return err ? err : werr;
}

/* Hand a sink's data to the caller (or nothing, if it was no pipe). */
static void sink_out(struct sink *k, char **buf, size_t *len)
{
    if (k->s && k->keep) {
        k->buf[k->len] = '\0';
        *buf = k->buf;
        *len = k->len;
        k->buf = NULL;
        k->len = 0;
    }
}

int coil_process_communicate(coil_process_t *p, const void *input,
                             size_t input_len, char **out, size_t *out_len,
                             char **err, size_t *err_len)
{
    char *dummy_buf;
    size_t dummy_len;
    if (!out)
        out = &dummy_buf;
    if (!out_len)
        out_len = &dummy_len;
    if (!err)
        err = &dummy_buf;
    if (!err_len)
        err_len = &dummy_len;
    bool want_out = out != &dummy_buf, want_err = err != &dummy_buf;
    *out = *err = NULL;
    *out_len = *err_len = 0;
    if (!p || (!input && input_len) || (input_len && !p->io[0]))
        return -EINVAL;
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    if (coil__task_loop(t) != p->loop)
        return -EINVAL;
    struct comm c;
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.input = input;
    c.input_len = input_len;
    hold(p);
    int e = sink_init(&c.out, p->io[1], want_out);
    if (!e)
        e = sink_init(&c.err, p->io[2], want_err);
    if (e) {
        comm_release(&c);
        return e;
    }
    c.in = coil_stream_ref(p->io[0]);
    c.hook.on_finish = comm_drop;
    coil__task_hook_add(t, &c.hook);
    if (c.in && !input_len)
        (void)coil_stream_close(c.in); /* no input: the end of it */
    e = comm_run(&c);
    if (!e)
        e = coil_process_wait(p, NULL);
    coil__task_hook_remove(&c.hook);
    if (!e) {
        sink_out(&c.out, out, out_len);
        sink_out(&c.err, err, err_len);
    }
    comm_release(&c);
    return e;
}

void coil_process_free_output(char *buf)
{
    coil__free(buf);
}
