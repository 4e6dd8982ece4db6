/* SPDX-License-Identifier: MIT */
/*
 * executor.c - thread pools for blocking calls (executor.h): jobs,
 * to_thread, shutdown, the loop's default executor, and the calls that
 * reach a loop from other threads.
 *
 * A job is shared by two sides. The loop side is its future (embedded:
 * the job is freed through the future's destroy op), the waiting task
 * and the loop's close hook, all on the loop's thread. The executor side
 * is the queue, a worker and the node a worker posts to the loop when
 * the job is done (through call_soon_threadsafe's FIFO, no allocation).
 * Everything both sides read is under the executor's lock, and each
 * side lets go once (fut_gone, exec_done); whichever is last frees. The
 * rules:
 *
 *  - A worker that finishes posts the node while the loop is open; the
 *    node (loop thread) unlinks the close hook, completes the future, or,
 *    if nobody waits (the future was cancelled, or its last reference is
 *    gone), hands arg and the result to dispose.
 *  - Cancelling the future drops a job still queued (dispose at once,
 *    result -ECANCELED) or flags a running one (abandoned: the node or
 *    the worker disposes of it when it returns).
 *  - The loop's close runs the hook: the job forgets the loop, its
 *    future completes as cancelled, and from then on the worker, not the
 *    node, disposes (a node posted already was discarded by the close).
 *    A worker whose post failed because the close had begun leaves the
 *    job to the hook, which comes later in the close.
 *
 * Workers are detached threads that hold a reference to the executor;
 * one is started when a job is queued and no worker is idle, up to
 * max_threads. They wait for work until the executor is shut down.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "executor_internal.h"
#include "loop_internal.h"
#include "sys.h"
#include "task_internal.h"
#include "threadsafe.h"

enum { J_QUEUED, J_RUNNING, J_FINISHED };

struct job {
    coil_future_t fut;            /* the loop side; its refs free the job */
    struct coil__close_hook hook; /* in the loop until the node ran */
    struct coil__ready node;      /* posted when the job is finished */
    struct coil_executor *ex;     /* referenced */
    coil_job_fn fn;
    void *arg;
    coil_job_dispose_fn dispose;
    atomic_bool cancel_flag;      /* coil_job_cancelled() */
    /* under ex->lock */
    struct job *next;             /* in the queue */
    struct coil_loop *loop;       /* NULL once the loop closed */
    int result;
    uint8_t state;
    bool abandoned;               /* nobody waits: dispose when done */
    bool exec_done;               /* the executor side let go */
    bool fut_gone;                /* the future's last reference went */
};

struct coil_executor {
    pthread_mutex_t lock;
    pthread_cond_t work;   /* a job came, or the shutdown */
    pthread_cond_t idle;   /* a worker exited (CLOCK_MONOTONIC) */
    atomic_uint refs;      /* users', workers', jobs' */
    atomic_uint users;     /* of refs: coil_executor_ref/unref */
    /* under lock */
    struct job *head, **tailp;
    size_t queued, max_queued;
    unsigned threads, idle_threads, max_threads;
    bool shut;
    /* The workers started and not yet joined or detached: joinable, so
     * that a shutdown that waited for them also waits until each thread
     * is gone (a detached one may still be exiting when the program
     * ends, its thread-local memory not yet freed). */
    pthread_t *tids;
    unsigned ntids, tids_cap;
};

/* Live worker threads of every executor (the tests wait for 0). */
atomic_int coil__executor_threads;

static COIL__TLS struct job *running_job;

/* ------------------------------------------------------------------ */
/* The executor                                                         */
/* ------------------------------------------------------------------ */

static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n + 4 > 32 ? 32 : (unsigned)n + 4;
}

int coil_executor_new(const coil_executor_options_t *opts,
                      coil_executor_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct coil_executor *ex = coil__calloc(1, sizeof(*ex));
    if (!ex)
        return -ENOMEM;
    pthread_condattr_t ca;
    int err = pthread_condattr_init(&ca);
    if (!err)
        err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (!err)
        err = pthread_mutex_init(&ex->lock, NULL);
    if (!err && (err = pthread_cond_init(&ex->work, NULL)))
        pthread_mutex_destroy(&ex->lock);
    if (!err && (err = pthread_cond_init(&ex->idle, &ca))) {
        pthread_cond_destroy(&ex->work);
        pthread_mutex_destroy(&ex->lock);
    }
    pthread_condattr_destroy(&ca);
    if (err) {
        coil__free(ex);
        return -err;
    }
    atomic_init(&ex->refs, 1);
    atomic_init(&ex->users, 1);
    ex->tailp = &ex->head;
    ex->max_threads = opts && opts->max_threads ? opts->max_threads
                                                : default_threads();
    ex->max_queued = opts && opts->max_queued ? opts->max_queued : SIZE_MAX;
    *out = ex;
    return 0;
}

static void ex_release(struct coil_executor *ex)
{
    if (atomic_fetch_sub(&ex->refs, 1) != 1)
        return;
    /* Nobody joined them: every worker has let go of ex, so each is
     * exiting (or is this thread); detached, each frees itself. */
    for (unsigned i = 0; i < ex->ntids; i++)
        pthread_detach(ex->tids[i]);
    coil__free(ex->tids);
    pthread_cond_destroy(&ex->idle);
    pthread_cond_destroy(&ex->work);
    pthread_mutex_destroy(&ex->lock);
    coil__free(ex);
}

coil_executor_t *coil_executor_ref(coil_executor_t *ex)
{
    if (ex) {
        atomic_fetch_add(&ex->refs, 1);
        atomic_fetch_add(&ex->users, 1);
    }
    return ex;
}

void coil_executor_unref(coil_executor_t *ex)
{
    if (!ex)
        return;
    if (atomic_fetch_sub(&ex->users, 1) == 1)
        (void)coil_executor_shutdown(ex, 0);
    ex_release(ex);
}

/* ------------------------------------------------------------------ */
/* Jobs: the two sides                                                  */
/* ------------------------------------------------------------------ */

/* With ex->lock held: whether both sides have let go (then the caller
 * frees the job, after unlocking). */
static bool job_unused(const struct job *j)
{
    return j->exec_done && j->fut_gone;
}

static void job_free(struct job *j)
{
    struct coil_executor *ex = j->ex;
    coil__free(j);
    ex_release(ex);
}

static void dispose(struct job *j, int result)
{
    if (j->dispose)
        j->dispose(j->arg, result);
}

/* One side lets go (ex->lock not held); the last side frees the job. */
static void let_go(struct job *j, bool exec_side)
{
    struct coil_executor *ex = j->ex;
    pthread_mutex_lock(&ex->lock);
    if (exec_side)
        j->exec_done = true;
    else
        j->fut_gone = true;
    bool unused = job_unused(j);
    pthread_mutex_unlock(&ex->lock);
    if (unused)
        job_free(j);
}

/*
 * Nobody waits for the job any more (ex->lock held). A job still queued
 * leaves the queue at once (the executor side lets go: returns true, and
 * the caller disposes of it with -ECANCELED after unlocking); a running
 * one is flagged, and disposes of its result when it returns.
 */
static bool abandon(struct coil_executor *ex, struct job *j)
{
    j->abandoned = true;
    atomic_store(&j->cancel_flag, true);
    if (j->state != J_QUEUED)
        return false;
    for (struct job **p = &ex->head; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            if (!*p)
                ex->tailp = p;
            break;
        }
    ex->queued--;
    j->state = J_FINISHED;
    j->exec_done = true;
    return true;
}

/* The future's last reference went (the loop's thread). Not a cancel:
 * a job submitted and let go still runs to its end (fire and forget, as
 * an un-awaited run_in_executor; coil_run waits for it), and nobody can
 * take its result, which goes to dispose. */
static void fut_destroy(coil_future_t *fut)
{
    struct job *j = coil__container_of(fut, struct job, fut);
    pthread_mutex_lock(&j->ex->lock);
    j->abandoned = true;
    pthread_mutex_unlock(&j->ex->lock);
    let_go(j, false);
}

/* Cancelling the future (loop thread). */
static int fut_cancel(coil_future_t *fut)
{
    struct job *j = coil__container_of(fut, struct job, fut);
    if (coil_future_done(fut))
        return -EALREADY;
    pthread_mutex_lock(&j->ex->lock);
    bool dropped = abandon(j->ex, j);
    pthread_mutex_unlock(&j->ex->lock);
    if (dropped) {
        coil__loop_on_close_cancel(&j->hook);
        coil__threadsafe_release(fut->loop); /* it will not post */
        dispose(j, -ECANCELED);
    }
    coil__future_complete(fut, NULL, -ECANCELED);
    return 0;
}

static const struct coil__future_ops job_fut_ops = {
    .destroy = fut_destroy,
    .cancel = fut_cancel,
    .owned = true,
};

/*
 * The loop side takes the outcome (the node ran, loop thread). No lock:
 * the worker wrote the result before posting (the post's mutex orders
 * it), never touches the job after a post that went through, and
 * everything else here is the loop thread's. Not taking the executor's
 * lock matters: the loop wakes while the worker, which posted under that
 * lock, may still hold it. A job that returned -ECANCELED counts as
 * cancelled: its argument goes to dispose, so that -ECANCELED always
 * means "the job has arg" to the waiter (executor.h).
 */
static void node_run(struct coil_loop *loop, struct coil__ready *node)
{
    struct job *j = coil__container_of(node, struct job, node);
    coil__loop_on_close_cancel(&j->hook);
    coil__threadsafe_release(loop);
    int result = j->result;
    if (j->abandoned || result == -ECANCELED)
        dispose(j, result);
    if (!j->abandoned)
        coil__future_complete(&j->fut, (void *)(intptr_t)(result < 0 ? 0
                                                                      : result),
                              result < 0 ? result : 0);
    j->exec_done = true;
    if (job_unused(j))
        job_free(j);
}

/* The loop closes with the node queued: nobody will take the outcome. */
static void node_discard(struct coil_loop *loop, struct coil__ready *node)
{
    struct job *j = coil__container_of(node, struct job, node);
    coil__loop_on_close_cancel(&j->hook);
    coil__threadsafe_release(loop);
    pthread_mutex_lock(&j->ex->lock);
    j->loop = NULL;
    j->abandoned = true;
    bool fut_gone = j->fut_gone;
    pthread_mutex_unlock(&j->ex->lock);
    dispose(j, j->result);
    if (!fut_gone && !coil_future_done(&j->fut))
        coil__future_complete(&j->fut, NULL, -ECANCELED);
    let_go(j, true);
}

static const struct coil__ready_ops node_ops = {node_run, node_discard};

/* The loop closes while the job is queued, running, or finished without
 * having been able to post (loop thread). */
static void on_close(struct coil__close_hook *hook)
{
    struct job *j = coil__container_of(hook, struct job, hook);
    pthread_mutex_lock(&j->ex->lock);
    if (j->loop)
        coil__threadsafe_release(j->loop);
    j->loop = NULL;
    /* Finished, but the post came too late: the job is ours to end. */
    bool ours = j->state == J_FINISHED && !j->exec_done;
    bool dropped = abandon(j->ex, j);
    bool fut_gone = j->fut_gone;
    pthread_mutex_unlock(&j->ex->lock);
    if (!fut_gone && !coil_future_done(&j->fut))
        coil__future_complete(&j->fut, NULL, -ECANCELED);
    if (dropped) {
        dispose(j, -ECANCELED);
        let_go(j, true); /* abandon() let the executor side go already */
        return;
    }
    if (!ours)
        return; /* the worker disposes of it when it returns */
    dispose(j, j->result);
    let_go(j, true);
}

/* Worker thread, ex->lock held: the job is finished (or failed without
 * running): hand it to its loop, or end it here. Returns with the lock
 * held. */
static void finish(struct coil_executor *ex, struct job *j, int result)
{
    j->result = result;
    j->state = J_FINISHED;
    /* Posted: the node ends it. Not posted (-EBADF) while j->loop is set:
     * the loop's close has begun, and its hook, still to come, ends it. */
    if (j->loop) {
        (void)coil__threadsafe_post_held(j->loop, &j->node);
        return;
    }
    /* The loop is gone: nobody takes the outcome. */
    pthread_mutex_unlock(&ex->lock);
    dispose(j, result);
    let_go(j, true);
    pthread_mutex_lock(&ex->lock);
}

/* ------------------------------------------------------------------ */
/* Workers                                                              */
/* ------------------------------------------------------------------ */

static void *worker(void *arg)
{
    struct coil_executor *ex = arg;
    pthread_mutex_lock(&ex->lock);
    for (;;) {
        while (!ex->head && !ex->shut) {
            ex->idle_threads++;
            pthread_cond_wait(&ex->work, &ex->lock);
            ex->idle_threads--;
        }
        struct job *j = ex->head;
        if (!j)
            break; /* shut down, nothing left */
        ex->head = j->next;
        if (!ex->head)
            ex->tailp = &ex->head;
        ex->queued--;
        j->state = J_RUNNING;
        pthread_mutex_unlock(&ex->lock);
        running_job = j;
        int result = j->fn(j->arg);
        running_job = NULL;
        pthread_mutex_lock(&ex->lock);
        finish(ex, j, result);
    }
    ex->threads--;
    pthread_cond_broadcast(&ex->idle);
    pthread_mutex_unlock(&ex->lock);
    ex_release(ex); /* before the count: a count of 0 means all freed */
    atomic_fetch_sub(&coil__executor_threads, 1);
    return NULL;
}

/* With ex->lock held: start a worker. Its thread blocks every
 * asynchronous signal (they are for the program's threads). */
static int start_worker(struct coil_executor *ex)
{
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    if (ex->ntids == ex->tids_cap) {
        unsigned cap = ex->tids_cap ? 2 * ex->tids_cap : 4;
        pthread_t *n = coil__malloc(cap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        if (ex->ntids)
            memcpy(n, ex->tids, ex->ntids * sizeof(*n));
        coil__free(ex->tids);
        ex->tids = n;
        ex->tids_cap = cap;
    }
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err)
        return -err;
    atomic_fetch_add(&ex->refs, 1);
    atomic_fetch_add(&coil__executor_threads, 1);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    err = COIL__THREAD_CREATE(&th, &attr, worker, ex);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err) {
        atomic_fetch_sub(&coil__executor_threads, 1);
        atomic_fetch_sub(&ex->refs, 1); /* not the last: the caller's */
        return -err;
    }
    ex->tids[ex->ntids++] = th;
    ex->threads++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Submitting                                                           */
/* ------------------------------------------------------------------ */

int coil_executor_submit(coil_executor_t *ex, coil_loop_t *loop,
                         coil_job_fn fn, void *arg,
                         coil_job_dispose_fn dispose_fn,
                         coil_future_t **fut_out)
{
    if (fut_out)
        *fut_out = NULL;
    if (!loop)
        loop = coil_running_loop();
    if (!ex || !fn || !fut_out || !loop)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    struct job *j = coil__calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->ex = ex;
    j->fn = fn;
    j->arg = arg;
    j->dispose = dispose_fn;
    j->loop = loop;
    j->node.ops = &node_ops;
    atomic_init(&j->cancel_flag, false);
    pthread_mutex_lock(&ex->lock);
    int err = 0;
    if (ex->shut)
        err = -ESHUTDOWN;
    else if (ex->queued >= ex->max_queued)
        err = -EAGAIN;
    else if (ex->idle_threads <= ex->queued &&
             ex->threads < ex->max_threads) {
        err = start_worker(ex);
        if (err && ex->threads > 0)
            err = 0; /* the running workers will get to it */
        else if (err && err != -ENOMEM)
            err = -EAGAIN;
    }
    if (err) {
        pthread_mutex_unlock(&ex->lock);
        coil__free(j);
        return err;
    }
    atomic_fetch_add(&ex->refs, 1); /* the job's */
    coil__future_init(&j->fut, loop, &job_fut_ops);
    j->hook.on_close = on_close;
    coil__loop_on_close(loop, &j->hook);
    /* Until the hook goes, the job may still wake the loop. */
    coil__threadsafe_hold(loop);
    j->state = J_QUEUED;
    *ex->tailp = j;
    ex->tailp = &j->next;
    ex->queued++;
    bool idle = ex->idle_threads > 0;
    pthread_mutex_unlock(&ex->lock);
    /* After the unlock: a worker woken while we still held the lock would
     * only go back to sleep on it (one more futex round). */
    if (idle)
        pthread_cond_signal(&ex->work);
    *fut_out = &j->fut;
    return 0;
}

struct await_hold {
    struct coil__task_hook hook;
    coil_future_t *fut;
};

/* The task was abandoned (its loop closed) while it awaited: nobody else
 * will drop the reference. */
static void hold_drop(struct coil__task_hook *hook, struct coil_task *t)
{
    (void)t;
    coil_future_unref(coil__container_of(hook, struct await_hold, hook)->fut);
}

/* coil_await(fut), consuming the caller's reference to fut whatever
 * happens: a task abandoned while it waits never returns here, and a
 * task hook drops the reference then. */
static int await_consumed(coil_future_t *fut, void **value_out)
{
    struct await_hold h = {{.on_finish = hold_drop}, fut};
    struct coil_task *t = coil__task_current();
    if (t)
        coil__task_hook_add(t, &h.hook);
    int err = coil_await(fut, value_out);
    if (t)
        coil__task_hook_remove(&h.hook);
    coil_future_unref(fut);
    return err;
}

int coil_executor_run(coil_executor_t *ex, coil_job_fn fn, void *arg,
                      coil_job_dispose_fn dispose_fn)
{
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    struct coil_loop *loop = coil__task_loop(t);
    if (!ex) {
        int err = coil_loop_default_executor(loop, &ex);
        if (err)
            return err;
    }
    return coil__executor_run(ex, loop, fn, arg, dispose_fn);
}

int coil__executor_run(coil_executor_t *ex, struct coil_loop *loop,
                       coil_job_fn fn, void *arg,
                       coil_job_dispose_fn dispose_fn)
{
    coil_future_t *fut;
    int err = coil_executor_submit(ex, loop, fn, arg, dispose_fn, &fut);
    if (err)
        return err;
    void *value = NULL;
    /* A cancel of this task cancels the job (coil_await cancels what it
     * awaits); the job then owns arg until dispose. */
    err = await_consumed(fut, &value);
    return err ? err : (int)(intptr_t)value;
}

int coil_to_thread(coil_job_fn fn, void *arg, coil_job_dispose_fn dispose_fn)
{
    return coil_executor_run(NULL, fn, arg, dispose_fn);
}

bool coil_job_cancelled(void)
{
    struct job *j = running_job;
    return j && atomic_load(&j->cancel_flag);
}

/* ------------------------------------------------------------------ */
/* Shutting down                                                        */
/* ------------------------------------------------------------------ */

/* Fail the queued jobs and tell the workers; with ex->lock held. */
static void shut(struct coil_executor *ex)
{
    ex->shut = true;
    struct job *j;
    while ((j = ex->head)) {
        ex->head = j->next;
        if (!ex->head)
            ex->tailp = &ex->head;
        ex->queued--;
        finish(ex, j, -ESHUTDOWN);
    }
    pthread_cond_broadcast(&ex->work);
}

/* No worker is left running: join them (the caller holds a reference,
 * and is none of them), so that each thread is gone, not just done with
 * its jobs. Under the lock: a second waiter returns only once the first
 * has joined them all. No worker takes the lock again once it left the
 * count, and each has only its exit left, so the joins are short. */
static void join_workers(struct coil_executor *ex)
{
    pthread_mutex_lock(&ex->lock);
    if (ex->threads == 0) {
        for (unsigned i = 0; i < ex->ntids; i++)
            pthread_join(ex->tids[i], NULL);
        ex->ntids = 0;
    }
    pthread_mutex_unlock(&ex->lock);
}

/* Block the calling thread until no worker is left, or until deadline
 * (CLOCK_MONOTONIC ns; COIL_NO_TIMEOUT: none). */
static int wait_threads(struct coil_executor *ex, int64_t deadline)
{
    int err = 0;
    pthread_mutex_lock(&ex->lock);
    while (ex->threads > 0 && !err) {
        if (deadline == COIL_NO_TIMEOUT) {
            pthread_cond_wait(&ex->idle, &ex->lock);
            continue;
        }
        struct timespec ts = {(time_t)(deadline / COIL_SEC),
                              (long)(deadline % COIL_SEC)};
        if (pthread_cond_timedwait(&ex->idle, &ex->lock, &ts) == ETIMEDOUT &&
            ex->threads > 0)
            err = -ETIMEDOUT;
    }
    pthread_mutex_unlock(&ex->lock);
    if (!err)
        join_workers(ex);
    return err;
}

static unsigned live_threads(struct coil_executor *ex)
{
    pthread_mutex_lock(&ex->lock);
    unsigned n = ex->threads;
    pthread_mutex_unlock(&ex->lock);
    return n;
}

int coil_executor_shutdown(coil_executor_t *ex, int64_t timeout_ns)
{
    if (!ex)
        return -EINVAL;
    pthread_mutex_lock(&ex->lock);
    shut(ex);
    pthread_mutex_unlock(&ex->lock);
    if (timeout_ns == 0)
        return live_threads(ex) ? -ETIMEDOUT : 0;
    /* Waiting for the workers from one of them would wait for ourselves. */
    if (running_job && running_job->ex == ex)
        return -EDEADLK;
    struct coil_task *t = coil__task_current();
    /* A callback on a loop's thread must not block the loop. */
    if (!t && coil_running_loop())
        return -EPERM;
    int64_t now = coil__clock_real();
    int64_t deadline = timeout_ns == COIL_NO_TIMEOUT
                           ? COIL_NO_TIMEOUT
                           : coil__add_sat(now, timeout_ns < 0 ? 0
                                                               : timeout_ns);
    if (!t)
        return wait_threads(ex, deadline);
    /* In a task: look again at widening intervals (the loop goes on
     * meanwhile); a shutdown is rare, and this needs no wake-up path
     * from the last worker to every loop that may be waiting. */
    int64_t step = 50 * COIL_USEC;
    for (;;) {
        if (live_threads(ex) == 0) {
            join_workers(ex);
            return 0;
        }
        now = coil__clock_real();
        if (deadline != COIL_NO_TIMEOUT && now >= deadline)
            return -ETIMEDOUT;
        int64_t nap = step;
        if (deadline != COIL_NO_TIMEOUT && deadline - now < nap)
            nap = deadline - now;
        int err = coil_sleep(nap);
        if (err)
            return err;
        if (step < 10 * COIL_MSEC)
            step *= 2;
    }
}

/* ------------------------------------------------------------------ */
/* The loop's default executor                                          */
/* ------------------------------------------------------------------ */

static void exec_on_close(struct coil__close_hook *hook)
{
    struct coil__loop_exec *le =
        coil__container_of(hook, struct coil__loop_exec, hook);
    coil_executor_t *ex = le->dflt, *res = le->resolver;
    le->dflt = le->resolver = NULL;
    coil_executor_unref(ex);
    coil_executor_unref(res);
}

/* The part's close hook is linked while it holds an executor. */
static void hook_update(struct coil_loop *loop, bool had)
{
    struct coil__loop_exec *le = &loop->exec;
    bool has = le->dflt || le->resolver;
    if (has && !had) {
        le->hook.on_close = exec_on_close;
        coil__loop_on_close(loop, &le->hook);
    } else if (had && !has) {
        coil__loop_on_close_cancel(&le->hook);
    }
}

/* coil_run's: shut the default executor down, waiting for its jobs as
 * asyncio.run does (shutdown_default_executor, 300 s). */
static int shutdown_task(void *arg)
{
    return coil_executor_shutdown(arg, 300 * COIL_SEC);
}

void coil__loop_shutdown_default_executor(struct coil_loop *loop)
{
    /* Held: a task may replace the default executor meanwhile. */
    coil_executor_t *ex = coil_executor_ref(loop->exec.dflt);
    coil_task_t *t;
    if (ex && coil_task_spawn(loop, shutdown_task, ex, &t) == 0) {
        coil_loop_run_until_complete(loop, coil_task_future(t));
        coil_task_unref(t);
    }
    coil_executor_unref(ex);
}

static int set_default(struct coil_loop *loop, coil_executor_t *ex)
{
    struct coil__loop_exec *le = &loop->exec;
    bool had = le->dflt || le->resolver;
    coil_executor_t *old = le->dflt;
    le->dflt = ex;
    hook_update(loop, had);
    coil_executor_unref(old);
    return 0;
}

int coil__loop_resolver(struct coil_loop *loop, coil_executor_t **out)
{
    *out = NULL;
    if (coil__loop_closed(loop))
        return -EBADF;
    struct coil__loop_exec *le = &loop->exec;
    if (!le->resolver) {
        bool had = le->dflt != NULL;
        coil_executor_options_t o = {.max_threads = COIL__RESOLVER_THREADS};
        int err = coil_executor_new(&o, &le->resolver);
        if (err)
            return err;
        hook_update(loop, had);
    }
    *out = le->resolver;
    return 0;
}

int coil_loop_default_executor(coil_loop_t *loop, coil_executor_t **ex_out)
{
    if (ex_out)
        *ex_out = NULL;
    if (!loop || !ex_out)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    if (!loop->exec.dflt) {
        coil_executor_t *ex;
        int err = coil_executor_new(NULL, &ex);
        if (err)
            return err;
        set_default(loop, ex);
    }
    *ex_out = loop->exec.dflt;
    return 0;
}

int coil_loop_set_default_executor(coil_loop_t *loop, coil_executor_t *ex)
{
    if (!loop)
        return -EINVAL;
    if (coil__loop_closed(loop))
        return -EBADF;
    return set_default(loop, coil_executor_ref(ex));
}

/* ------------------------------------------------------------------ */
/* From other threads                                                   */
/* ------------------------------------------------------------------ */

/*
 * A task run for another thread, which blocks on cond until it is done.
 * The record lives on that thread's stack, so the loop must be finished
 * with it before the thread returns: every message to the loop is a node
 * of the record (posted, never allocated), and each says when it has run
 * or was discarded by a closing loop; the task's end and the loop's
 * close each set the outcome, once.
 */
struct remote {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct coil_loop *loop;
    coil_task_fn fn;
    void *arg;
    struct coil__ready start, cancel;   /* posted to the loop */
    struct coil__close_hook hook;       /* linked while the task runs */
    /* under lock */
    coil_task_t *task;   /* a reference, while it runs */
    int outcome;         /* -EINPROGRESS until done */
    bool cancel_posted, cancel_done;
};

/* Loop thread: the outcome is in (or the loop closed): tell the thread. */
static void remote_end(struct remote *r, int outcome)
{
    pthread_mutex_lock(&r->lock);
    coil_task_t *t = r->task;
    r->task = NULL;
    if (r->outcome == -EINPROGRESS)
        r->outcome = outcome;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    coil_task_unref(t);
}

static void remote_done(coil_future_t *fut, void *arg)
{
    struct remote *r = arg;
    coil__loop_on_close_cancel(&r->hook);
    void *v = NULL;
    int err = coil_future_result(fut, &v);
    remote_end(r, err ? err : (int)(intptr_t)v);
}

static void remote_close(struct coil__close_hook *hook)
{
    remote_end(coil__container_of(hook, struct remote, hook), -EBADF);
}

static void start_run(struct coil_loop *loop, struct coil__ready *node)
{
    struct remote *r = coil__container_of(node, struct remote, start);
    coil_task_t *t;
    int err = coil__task_spawn_then(loop, r->fn, r->arg, remote_done, r, &t);
    if (err) {
        remote_end(r, err);
        return;
    }
    r->hook.on_close = remote_close;
    coil__loop_on_close(loop, &r->hook);
    pthread_mutex_lock(&r->lock);
    r->task = t;
    pthread_mutex_unlock(&r->lock);
}

static void start_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    remote_end(coil__container_of(node, struct remote, start), -EBADF);
}

static void cancel_end(struct remote *r, bool cancel_task)
{
    pthread_mutex_lock(&r->lock);
    if (cancel_task && r->task)
        coil_task_cancel(r->task);
    r->cancel_done = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void cancel_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    cancel_end(coil__container_of(node, struct remote, cancel), true);
}

static void cancel_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    cancel_end(coil__container_of(node, struct remote, cancel), false);
}

static const struct coil__ready_ops start_ops = {start_run, start_discard};
static const struct coil__ready_ops cancel_ops = {cancel_run, cancel_discard};

static bool remote_finished(const struct remote *r)
{
    return r->outcome != -EINPROGRESS && (!r->cancel_posted || r->cancel_done);
}

int coil_loop_run_task_threadsafe(coil_loop_t *loop, coil_task_fn fn,
                                  void *arg, int64_t timeout_ns)
{
    if (!loop || !fn)
        return -EINVAL;
    if (coil__loop_running_here(loop))
        return -EDEADLK;
    struct remote r = {.loop = loop, .fn = fn, .arg = arg,
                       .outcome = -EINPROGRESS};
    r.start.ops = &start_ops;
    r.cancel.ops = &cancel_ops;
    int err = pthread_mutex_init(&r.lock, NULL);
    if (err)
        return -err;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    err = pthread_cond_init(&r.cond, &ca);
    pthread_condattr_destroy(&ca);
    if (err) {
        pthread_mutex_destroy(&r.lock);
        return -err;
    }
    int64_t deadline =
        timeout_ns == COIL_NO_TIMEOUT
            ? COIL_NO_TIMEOUT
            : coil__add_sat(coil__clock_real(),
                            timeout_ns < 0 ? 0 : timeout_ns);
    bool timed_out = false;
    err = coil__threadsafe_post(loop, &r.start);
    pthread_mutex_lock(&r.lock);
    while (!err && !remote_finished(&r)) {
        if (deadline == COIL_NO_TIMEOUT || timed_out) {
            pthread_cond_wait(&r.cond, &r.lock);
            continue;
        }
        struct timespec ts = {(time_t)(deadline / COIL_SEC),
                              (long)(deadline % COIL_SEC)};
        if (pthread_cond_timedwait(&r.cond, &r.lock, &ts) != ETIMEDOUT ||
            r.outcome != -EINPROGRESS)
            continue;
        /* Cancel it and wait for it: arg must be free when we return. */
        timed_out = true;
        r.cancel_posted = coil__threadsafe_post(loop, &r.cancel) == 0;
    }
    int outcome = r.outcome;
    pthread_mutex_unlock(&r.lock);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
    if (err)
        return err;
    return timed_out && outcome == -ECANCELED ? -ETIMEDOUT : outcome;
}

/* Completing a future from another thread: a record with its own node,
 * posted through call_soon_threadsafe's FIFO. If the loop closes first,
 * the node's discard still drops the reference the caller handed over. */
struct remote_set {
    struct coil__ready node;
    coil_future_t *fut;
    void *value;
    int error;
};

static void remote_set_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct remote_set *s = coil__container_of(node, struct remote_set, node);
    coil_future_t *fut = s->fut;
    if (!coil_future_done(fut)) {
        if (s->error)
            coil_future_set_error(fut, s->error);
        else
            coil_future_set_result(fut, s->value);
    }
    coil__free(s);
    coil_future_unref(fut); /* the reference the caller handed over */
}

static void remote_set_discard(struct coil_loop *loop,
                               struct coil__ready *node)
{
    (void)loop;
    struct remote_set *s = coil__container_of(node, struct remote_set, node);
    coil_future_t *fut = s->fut;
    coil__free(s);
    coil_future_unref(fut);
}

static const struct coil__ready_ops remote_set_ops = {remote_set_run,
                                                      remote_set_discard};

static int set_threadsafe(coil_future_t *fut, void *value, int error)
{
    if (!fut)
        return -EINVAL;
    struct remote_set *s = coil__malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    *s = (struct remote_set){{NULL, &remote_set_ops}, fut, value, error};
    int err = coil__threadsafe_post(coil_future_loop(fut), &s->node);
    if (err)
        coil__free(s);
    return err;
}

int coil_future_set_result_threadsafe(coil_future_t *fut, void *value)
{
    return set_threadsafe(fut, value, 0);
}

int coil_future_set_error_threadsafe(coil_future_t *fut, int error)
{
    if (error >= 0)
        return -EINVAL;
    return set_threadsafe(fut, NULL, error);
}
