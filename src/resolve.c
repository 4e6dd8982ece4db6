/* SPDX-License-Identifier: MIT */
/*
 * resolve.c - coil_getaddrinfo and coil_getnameinfo: the C library's
 * lookups, which block, run as jobs on the loop's resolver pool (a small
 * executor of its own, executor_internal.h, so that the program's jobs on
 * the default executor cannot starve them) while the task is suspended.
 * Numeric questions need no lookup and are answered on the spot.
 *
 * A lookup's record belongs to the job while the job may run: if the
 * waiting task is cancelled, the job finishes on its own and its dispose
 * frees the record and whatever the lookup found (executor.h's rule), also
 * when the loop is closed meanwhile.
 */
#include <arpa/inet.h>
#include <string.h>

#include "executor_internal.h"
#include "loop_internal.h"
#include "task_internal.h"

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


struct gai_req {
    char *host, *service;
    struct addrinfo hints;
    bool has_hints;
    /* the job's answer */
    struct addrinfo *res;
    int rc;
    int sys_errno;
};

static void gai_free(struct gai_req *req)
{
    if (req->res)
        freeaddrinfo(req->res);
    coil__free(req->host);
    coil__free(req->service);
    coil__free(req);
}

/* On a resolver thread. */
static int gai_job(void *arg)
{
    struct gai_req *req = arg;
    errno = 0;
    req->rc = getaddrinfo(req->host, req->service,
                          req->has_hints ? &req->hints : NULL, &req->res);
    req->sys_errno = errno;
    return 0;
}

/* Nobody waits any more (the task was cancelled, or the loop closed). */
static void gai_dispose(void *arg, int result)
{
    (void)result;
    gai_free(arg);
}

/* Run job(req) on the running task's loop's resolver pool. Returns 0 (the
 * answer is in req, which is the caller's again), or an error: then, if
 * *owned is false, req went to the job, which frees it. */
static int run_lookup(struct coil_task *t, coil_job_fn job,
                      coil_job_dispose_fn dispose, void *req, bool *owned)
{
    coil_executor_t *ex;
    int err = coil__loop_resolver(coil__task_loop(t), &ex);
    /* A result that came in wins over a racing cancel: it holds memory
     * the caller must get (the cancel goes to the next wait). */
    if (!err)
        err = coil__executor_run(ex, coil__task_loop(t), job, req, dispose);
    *owned = err != -ECANCELED; /* else the job keeps req, and disposes */
    return err;
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
        gai_free(req);
        return -ENOMEM;
    }
    if (hints) {
        copy_hints(&req->hints, hints);
        req->has_hints = true;
    }
    bool owned;
    err = run_lookup(t, gai_job, gai_dispose, req, &owned);
    if (!err)
        err = map_error(req->rc, req->sys_errno);
    if (!err) {
        *res_out = req->res;
        req->res = NULL;
    }
    if (owned)
        gai_free(req);
    return err;
}

/* ------------------------------------------------------------------ */
/* getnameinfo                                                          */
/* ------------------------------------------------------------------ */

struct gni_req {
    struct sockaddr_storage sa;
    socklen_t salen;
    int flags;
    bool want_host, want_serv;
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    int rc;
    int sys_errno;
};

static int gni_job(void *arg)
{
    struct gni_req *req = arg;
    errno = 0;
    req->rc = getnameinfo((const struct sockaddr *)&req->sa, req->salen,
                          req->want_host ? req->host : NULL,
                          req->want_host ? sizeof(req->host) : 0,
                          req->want_serv ? req->serv : NULL,
                          req->want_serv ? sizeof(req->serv) : 0, req->flags);
    req->sys_errno = errno;
    return 0;
}

static void gni_dispose(void *arg, int result)
{
    (void)result;
    coil__free(arg);
}

/* Copy a found name out: -EOVERFLOW if it does not fit (EAI_OVERFLOW). */
static int copy_name(char *to, size_t cap, const char *from)
{
    if (!to)
        return 0;
    size_t n = strlen(from);
    if (n >= cap)
        return -EOVERFLOW;
    memcpy(to, from, n + 1);
    return 0;
}

int coil_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
                     size_t hostlen, char *serv, size_t servlen, int flags)
{
    struct coil_task *t = coil__task_current();
    if (!t)
        return -EPERM;
    if (!sa || salen == 0 || salen > sizeof(struct sockaddr_storage) ||
        (!host && !serv) || (host && hostlen == 0) ||
        (serv && servlen == 0))
        return -EINVAL;
    struct gni_req *req = coil__calloc(1, sizeof(*req));
    if (!req)
        return -ENOMEM;
    memcpy(&req->sa, sa, salen);
    req->salen = salen;
    req->flags = flags;
    req->want_host = host != NULL;
    req->want_serv = serv != NULL;
    int err;
    bool owned = true;
    /* Numbers only: no lookup, answered here. */
    if ((!host || (flags & NI_NUMERICHOST)) &&
        (!serv || (flags & NI_NUMERICSERV))) {
        gni_job(req);
        err = 0;
    } else {
        err = coil__task_begin_wait(&t);
        if (!err)
            err = run_lookup(t, gni_job, gni_dispose, req, &owned);
    }
    if (!err)
        err = map_error(req->rc, req->sys_errno);
    if (!err)
        err = copy_name(host, hostlen, req->host);
    if (!err)
        err = copy_name(serv, servlen, req->serv);
    if (owned)
        coil__free(req);
    return err;
}

void coil_freeaddrinfo(struct addrinfo *res)
{
    if (res)
        freeaddrinfo(res);
}
