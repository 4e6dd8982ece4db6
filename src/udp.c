/* SPDX-License-Identifier: MIT */
/*
 * udp.c - UDP endpoints for tasks (coil/udp.h).
 *
 * A thin layer over the suspending socket calls of net.c: opening
 * resolves and binds/connects, sends go through coil_sock_sendto, and
 * receives through net.c's receive loop with MSG_TRUNC, so that a
 * truncated datagram's real size is reported. The only suspension point
 * is the readiness wait before the recvfrom(2) that takes the datagram: a
 * cancelled receive consumed nothing.
 *
 * An endpoint owns its socket through a watch (watch.h), holds a
 * reference on its loop and is a close hook of it: closing the loop
 * closes the socket. The users' last unref closes the endpoint; a call in
 * progress holds the memory (refs), so that unref may come while another
 * task still waits on the endpoint (that task wakes with -EBADF).
 */
#include <string.h>
#include <sys/socket.h>

#include <unistd.h>

#include "coil/net.h"
#include "coil/udp.h"
#include "loop_internal.h"
#include "net_internal.h"
#include "task_internal.h"

#ifdef __linux__
#define TRUNC MSG_TRUNC /* recv returns the datagram's real size */
#else
#define TRUNC 0
#endif

struct coil_udp {
    unsigned refs;                /* the users' (one), and calls' */
    unsigned user_refs;           /* coil_udp_ref / coil_udp_unref */
    unsigned calls;               /* of refs: calls that may suspend */
    struct coil_loop *loop;       /* referenced */
    int fd;                       /* -1 once closed */
    struct coil__watch watch;     /* of fd, until closed */
    struct coil__close_hook hook; /* linked until closed */
    bool connected;
};

/* ------------------------------------------------------------------ */
/* Opening                                                              */
/* ------------------------------------------------------------------ */

/* A UDP socket of ai's family bound to local (if any), connected to
 * remote (if any). Returns the fd or -errno. */
static int make_socket(int family, const struct addrinfo *local,
                       const struct addrinfo *remote)
{
    int fd = coil_sock_open(family, SOCK_DGRAM, 0);
    if (fd < 0)
        return fd;
    int err = 0;
    if (local && bind(fd, local->ai_addr, local->ai_addrlen) < 0)
        err = -errno;
    if (!err && remote)
        err = coil_sock_connect(fd, remote->ai_addr, remote->ai_addrlen);
    if (err) {
        (void)coil_sock_close(fd);
        return err;
    }
    return fd;
}

/* The first address of list in family, or NULL. */
static const struct addrinfo *of_family(const struct addrinfo *list, int family)
{
    for (; list; list = list->ai_next)
        if (list->ai_family == family)
            return list;
    return NULL;
}

static int resolve(const char *host, const char *port, bool passive,
                   struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = IPPROTO_UDP;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    if (host && !port)
        port = "0";
    return coil_getaddrinfo(host, port, &hints, res);
}

static void on_loop_close(struct coil__close_hook *hook);

int coil_udp_open(const char *local_host, const char *local_port,
                  const char *remote_host, const char *remote_port,
                  coil_udp_t **out)
{
    if (out)
        *out = NULL;
    bool want_local = local_host || local_port;
    bool want_remote = remote_host || remote_port;
    if (!out || (!want_local && !want_remote) ||
        (want_remote && (!remote_host || !remote_port)))
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    struct coil_udp *u = coil__calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    struct addrinfo *local = NULL, *remote = NULL;
    int err = 0;
    if (want_local)
        err = resolve(local_host, local_port, true, &local);
    if (!err && want_remote)
        err = resolve(remote_host, remote_port, false, &remote);
    int fd = -1;
    if (!err) {
        int first = 0;
        if (remote) {
            for (const struct addrinfo *r = remote; r && fd < 0;
                 r = r->ai_next) {
                const struct addrinfo *l = NULL;
                if (local && !(l = of_family(local, r->ai_family))) {
                    fd = -EADDRNOTAVAIL;
                } else {
                    fd = make_socket(r->ai_family, l, r);
                }
                if (fd < 0 && !first)
                    first = fd;
                if (fd == -ECANCELED || fd == -ENOMEM)
                    break;
            }
        } else {
            for (const struct addrinfo *l = local; l && fd < 0;
                 l = l->ai_next) {
                fd = make_socket(l->ai_family, l, NULL);
                if (fd < 0 && !first)
                    first = fd;
                if (fd == -ENOMEM)
                    break;
            }
        }
        if (fd < 0)
            err = first ? first : -ENOENT;
    }
    coil_freeaddrinfo(local);
    coil_freeaddrinfo(remote);
    if (err) {
        coil__free(u);
        return err;
    }
    coil_loop_t *loop = coil__task_loop(coil__task_current());
    err = coil__watch_init(&u->watch, loop, fd, COIL__WATCH_OWNED);
    if (err) {
        (void)coil_sock_close(fd);
        coil__free(u);
        return err;
    }
    u->refs = 1;
    u->user_refs = 1;
    u->loop = loop;
    coil__loop_ref(loop);
    u->fd = fd;
    u->connected = remote != NULL;
    u->hook.on_close = on_loop_close;
    coil__loop_on_close(loop, &u->hook);
    *out = u;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sending and receiving                                                */
/* ------------------------------------------------------------------ */

/* Checks shared by the sends: 0 if sending may go on. */
static int send_check(const coil_udp_t *u)
{
    if (!u)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    return u->fd < 0 ? -EBADF : 0;
}

static void release(struct coil_udp *u)
{
    if (--u->refs > 0)
        return;
    struct coil_loop *loop = u->loop;
    coil__free(u);
    coil__loop_unref(loop);
}

/* A call that may suspend holds the endpoint's memory. */
static ssize_t sendto_held(coil_udp_t *u, const void *buf, size_t n,
                           const struct sockaddr *addr, socklen_t addrlen)
{
    u->refs++;
    u->calls++;
    ssize_t r = coil__sock_sendto(&u->watch, u->fd, buf, n, addr, addrlen);
    u->calls--;
    release(u);
    return r;
}

ssize_t coil_udp_send(coil_udp_t *u, const void *buf, size_t n)
{
    int err = send_check(u);
    if (err)
        return err;
    if (!u->connected)
        return -EDESTADDRREQ;
    return sendto_held(u, buf, n, NULL, 0);
}

ssize_t coil_udp_sendto(coil_udp_t *u, const void *buf, size_t n,
                        const struct sockaddr *addr, socklen_t addrlen)
{
    int err = send_check(u);
    if (err)
        return err;
    if (u->connected)
        return -EISCONN;
    if (!addr || addrlen == 0)
        return -EINVAL;
    return sendto_held(u, buf, n, addr, addrlen);
}

ssize_t coil_udp_recvfrom(coil_udp_t *u, void *buf, size_t n,
                          struct sockaddr *addr, socklen_t *addrlen)
{
    if (!u)
        return -EINVAL;
    u->refs++;
    u->calls++;
    ssize_t r = coil__sock_recv(&u->watch, u->fd, buf, n, TRUNC, addr,
                                addrlen, true);
    u->calls--;
    release(u);
    return r;
}

ssize_t coil_udp_recv(coil_udp_t *u, void *buf, size_t n)
{
    return coil_udp_recvfrom(u, buf, n, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* Addresses, closing                                                   */
/* ------------------------------------------------------------------ */

static int address(const coil_udp_t *u, struct sockaddr_storage *addr,
                   bool peer)
{
    if (!u || !addr)
        return -EINVAL;
    if (u->fd < 0)
        return -EBADF;
    socklen_t len = sizeof(*addr);
    memset(addr, 0, sizeof(*addr));
    int r = peer ? getpeername(u->fd, (struct sockaddr *)addr, &len)
                 : getsockname(u->fd, (struct sockaddr *)addr, &len);
    if (r < 0)
        return -errno;
    return (int)len;
}

int coil_udp_local_address(const coil_udp_t *u, struct sockaddr_storage *addr)
{
    return address(u, addr, false);
}

int coil_udp_peer_address(const coil_udp_t *u, struct sockaddr_storage *addr)
{
    return address(u, addr, true);
}

int coil_udp_close(coil_udp_t *u)
{
    if (!u)
        return -EINVAL;
    if (u->fd < 0)
        return 0; /* closed already: closing is idempotent */
    int fd = u->fd;
    u->fd = -1;
    coil__loop_on_close_cancel(&u->hook);
    coil__watch_close(&u->watch); /* waiting tasks wake with -EBADF */
    (void)close(fd);              /* once, whatever it says */
    return 0;
}

/* The loop closes: so does the endpoint. Its tasks were abandoned first:
 * a call suspended on it will never return, so its hold goes here (the
 * users' hold keeps the memory, or the last call's release frees it). */
static void on_loop_close(struct coil__close_hook *hook)
{
    struct coil_udp *u = coil__container_of(hook, struct coil_udp, hook);
    (void)coil_udp_close(u);
    if (u->calls) {
        u->refs -= u->calls - 1;
        u->calls = 0;
        release(u);
    }
}

coil_udp_t *coil_udp_ref(coil_udp_t *u)
{
    if (!u)
        return NULL;
    if (u->user_refs == 0) {
        coil__loop_report(u->loop, 0,
                          "coil_udp_ref on an endpoint whose last reference "
                          "was dropped");
        return NULL;
    }
    u->user_refs++;
    return u;
}

void coil_udp_unref(coil_udp_t *u)
{
    if (!u)
        return;
    if (u->user_refs == 0) {
        coil__loop_report(u->loop, 0,
                          "coil_udp_unref on an endpoint with no reference "
                          "left (unref'd once too often)");
        return;
    }
    if (--u->user_refs > 0)
        return;
    if (u->fd >= 0)
        (void)coil_udp_close(u);
    release(u);
}
