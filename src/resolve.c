/* SPDX-License-Identifier: MIT */
/*
 * resolve.c - coil_getaddrinfo: getaddrinfo(3) on a helper thread of its
 * own per call while the task is suspended. Numeric hosts and ports need
 * no lookup and are parsed on the spot.
 *
 * The request is shared by three parties: the task (on the loop thread),
 * the helper thread, and the loop itself, which may be closed while the
 * helper still runs. The rules that keep it free of leaks and of uses
 * after free:
 *
 *  - The helper touches the loop only under req->lock and only while
 *    req->loop is set. The loop's close clears req->loop under that lock
 *    (the request is a close hook of the loop: on_close), and the loop's
 *    memory outlives its close, so the helper never touches a freed loop.
 *  - The helper delivers with coil_loop_call_soon_threadsafe. deliver (loop
 *    thread) unlinks the hook and wakes the task, which then frees the
 *    request; or, if the task let go (it was cancelled), frees it itself.
 *  - If the loop closes first, the queued deliver is discarded (close
 *    never runs it) and the task is abandoned. Then whoever comes last
 *    frees: on_close if the helper is finished with the request
 *    (helper_gone), else the helper when it sees req->loop cleared.
 *  - A request is freed on the loop thread after taking and releasing its
 *    lock, so the helper's last unlock has returned.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "loop_internal.h"
#include "task_internal.h"

struct gai_req {
    struct coil__close_hook hook; /* linked until delivered or closed */
    pthread_mutex_t lock;
    /* under lock */
    struct coil_loop *loop;    /* NULL once the loop was closed */
    bool helper_gone;          /* the helper will not touch req again */
    /* loop thread only */
    struct coil_task *task;    /* the waiting task; NULL once it let go */
    bool delivered;            /* deliver ran */
    /* written by the helper before it delivers */
    struct addrinfo *res;
    int rc;
    int sys_errno;
    /* the question */
    char *host, *service;
    struct addrinfo hints;
    bool has_hints;
};

/* Helpers that have not finished with their request (tests wait for 0:
 * a helper still running at a test's end would look like a leak). */
atomic_int coil__resolve_helpers;

static char *dup_str(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *c = coil__malloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

static void free_req(struct gai_req *req)
{
    /* The helper may have just unlocked: let its unlock return first. */
    pthread_mutex_lock(&req->lock);
    pthread_mutex_unlock(&req->lock);
    pthread_mutex_destroy(&req->lock);
    if (req->res)
        freeaddrinfo(req->res);
    coil__free(req->host);
    coil__free(req->service);
    coil__free(req);
}

/* Loop thread: the helper's answer arrives. */
static void deliver(void *arg)
{
    struct gai_req *req = arg;
    coil__loop_on_close_cancel(&req->hook);
    req->delivered = true;
    if (req->task)
        coil__task_wake(req->task, 0); /* the task frees req */
    else
        free_req(req); /* the task was cancelled: nobody wants it */
}

/* Loop thread, during coil_loop_close (every task abandoned already). */
static void on_close(struct coil__close_hook *hook)
{
    struct gai_req *req = coil__container_of(hook, struct gai_req, hook);
    pthread_mutex_lock(&req->lock);
    req->loop = NULL;
    bool gone = req->helper_gone;
    pthread_mutex_unlock(&req->lock);
    if (gone)
        free_req(req); /* its deliver, if queued, was discarded */
}

static void *helper(void *arg)
{
    struct gai_req *req = arg;
    errno = 0;
    req->rc = getaddrinfo(req->host, req->service,
                          req->has_hints ? &req->hints : NULL, &req->res);
    req->sys_errno = errno;
    pthread_mutex_lock(&req->lock);
    for (;;) {
        if (!req->loop) {
            /* The loop closed: nobody will deliver or free it but us. */
            pthread_mutex_unlock(&req->lock);
            free_req(req);
            break;
        }
        int err = coil_loop_call_soon_threadsafe(req->loop, deliver, req);
        if (err != -ENOMEM) {
            /* 0: deliver owns it now. -EBADF: the loop is closing, and
             * its on_close (still to come: req->loop is set) frees it. */
            req->helper_gone = true;
            pthread_mutex_unlock(&req->lock);
            break;
        }
        /* Out of memory for the call record: try again shortly, without
         * the lock so that a close can go on meanwhile. */
        pthread_mutex_unlock(&req->lock);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        pthread_mutex_lock(&req->lock);
    }
    atomic_fetch_sub(&coil__resolve_helpers, 1);
    return NULL;
}

struct lookup_wait {
    struct coil__wait wait;
    struct gai_req *req;
};

static bool lookup_cancel(struct coil__wait *w, struct coil_task *t)
{
    struct gai_req *req = ((struct lookup_wait *)w)->req;
    /* Not delivered (deliver queues the task, and a queued task is not
     * asked): let go; deliver or the close frees the request. */
    req->task = NULL;
    coil__task_wake(t, -ECANCELED);
    return true;
}

static void lookup_abandon(struct coil__wait *w)
{
    struct gai_req *req = ((struct lookup_wait *)w)->req;
    if (req->delivered)
        free_req(req); /* the task was woken but never resumed */
    else
        req->task = NULL; /* still a hook: on_close or the helper frees */
}

static const struct coil__wait_ops lookup_ops = {lookup_cancel, NULL,
                                                 lookup_abandon};

static int map_error(int rc, int sys_errno)
{
    switch (rc) {
    case 0:
        return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
#if EAI_NODATA != EAI_NONAME
    case EAI_NODATA:
#endif
#endif
        return -ENOENT;
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
        return -EADDRNOTAVAIL;
#endif
    case EAI_SERVICE:
        return -EPROTONOSUPPORT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_FAIL:
        return -EIO;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_FAMILY:
        return -EAFNOSUPPORT;
    case EAI_SOCKTYPE:
        return -ESOCKTNOSUPPORT;
    case EAI_BADFLAGS:
        return -EINVAL;
#ifdef EAI_OVERFLOW
    case EAI_OVERFLOW:
        return -EOVERFLOW;
#endif
    case EAI_SYSTEM:
        return sys_errno > 0 ? -sys_errno : -EIO;
    default:
        return -EIO;
    }
}

/* Start the helper with every asynchronous signal blocked: signals are
 * for the program's own threads, not for ours. */
static int start_helper(struct gai_req *req)
{
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err)
        return -err;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    atomic_fetch_add(&coil__resolve_helpers, 1);
    pthread_t th;
    err = pthread_create(&th, &attr, helper, req);
    if (err)
        atomic_fetch_sub(&coil__resolve_helpers, 1);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return -err;
}

/* Only the fields getaddrinfo reads from hints (NULL: none), the rest
 * zero. */
static void copy_hints(struct addrinfo *to, const struct addrinfo *from)
{
    memset(to, 0, sizeof(*to));
    if (from) {
        to->ai_flags = from->ai_flags;
        to->ai_family = from->ai_family;
        to->ai_socktype = from->ai_socktype;
        to->ai_protocol = from->ai_protocol;
    }
}

/*
 * Whether the answer needs no lookup: host NULL or a numeric address,
 * service NULL or a port number. getaddrinfo then only parses, and runs
 * right here on the loop thread. Besides saving a thread per call, this
 * keeps a program that only ever binds or connects to numeric addresses
 * single-threaded, and glibc gives single-threaded processes cheaper
 * recv/send (no cancellation-point bookkeeping around each call).
 */
static bool is_numeric(const char *host, const char *service)
{
    if (service) {
        if (!*service)
            return false;
        for (const char *p = service; *p; p++)
            if (*p < '0' || *p > '9')
                return false;
    }
    unsigned char addr[sizeof(struct in6_addr)];
    return !host || inet_pton(AF_INET, host, addr) == 1 ||
           inet_pton(AF_INET6, host, addr) == 1;
}

static int resolve_here(const char *host, const char *service,
                        const struct addrinfo *hints,
                        struct addrinfo **res_out)
{
    struct addrinfo h;
    copy_hints(&h, hints);
    h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV; /* never a lookup */
    errno = 0;
    int rc = getaddrinfo(host, service, &h, res_out);
    int err = map_error(rc, errno);
    if (err)
        *res_out = NULL;
    return err;
}

int coil_getaddrinfo(const char *host, const char *service,
                     const struct addrinfo *hints, struct addrinfo **res_out)
{
    if (res_out)
        *res_out = NULL;
    struct coil_task *t;
    int err = coil__task_begin_wait(&t);
    if (err)
        return err;
    if (!res_out || (!host && !service))
        return -EINVAL;
    if (is_numeric(host, service))
        return resolve_here(host, service, hints, res_out);
    struct gai_req *req = coil__calloc(1, sizeof(*req));
    if (!req)
        return -ENOMEM;
    req->host = dup_str(host);
    req->service = dup_str(service);
    if ((host && !req->host) || (service && !req->service)) {
        coil__free(req->host);
        coil__free(req->service);
        coil__free(req);
        return -ENOMEM;
    }
    if (hints) {
        copy_hints(&req->hints, hints);
        req->has_hints = true;
    }
    if ((err = pthread_mutex_init(&req->lock, NULL))) {
        coil__free(req->host);
        coil__free(req->service);
        coil__free(req);
        return -err;
    }
    req->loop = coil__task_loop(t);
    req->task = t;
    req->hook.on_close = on_close;
    coil__loop_on_close(req->loop, &req->hook);
    if ((err = start_helper(req))) {
        coil__loop_on_close_cancel(&req->hook);
        free_req(req);
        return err;
    }
    /* A result that came in wins over a racing cancel: it holds memory
     * the caller must get (the cancel goes to the next wait). */
    struct lookup_wait gw = {{&lookup_ops, true}, req};
    err = coil__task_suspend(t, &gw.wait);
    if (err)
        return err; /* cancelled: the request is no longer ours */
    err = map_error(req->rc, req->sys_errno);
    if (!err) {
        *res_out = req->res;
        req->res = NULL;
    }
    free_req(req);
    return err;
}

void coil_freeaddrinfo(struct addrinfo *res)
{
    if (res)
        freeaddrinfo(res);
}
