/* SPDX-License-Identifier: MIT */
/*
 * connect.c - the connection race behind coil_stream_open
 * (connect.h): RFC 8305's "happy eyeballs", simplified (the addresses
 * are tried in the resolver's order, with no reordering by family).
 */
#include <string.h>
#include <sys/socket.h>

#include "coil/combinators.h"
#include "coil/group.h"
#include "coil/net.h"
#include "connect.h"
#include "internal.h"

/*
 * The connection race (connect.h). One child task per attempt, in a task
 * group owned by the racing task: the group guarantees that every attempt
 * has finished before the race returns, whatever happens to the caller
 * (cancelled, timed out, out of memory), so no socket outlives it except
 * the winner's. The attempts never fail as far as the group is concerned
 * (a failure must not cancel the siblings): each records its outcome in
 * its struct attempt and returns 0.
 */
struct attempt {
    const struct addrinfo *ai;
    const bool *over;  /* the race is decided: a late winner closes itself */
    coil_task_t *task; /* NULL until started */
    int fd;            /* connected socket, or -1 */
    int err;           /* its failure, or 0 */
    bool finished;     /* fn ran to its end (a task cancelled before it
                          started never runs fn) */
};

/* A socket connected to ai's address in *fd_out, or the error (nothing
 * is left open). */
static int dial(const struct addrinfo *ai, int *fd_out)
{
    int fd = coil_sock_open(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int err = coil_sock_connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (err) {
        (void)coil_sock_close(fd);
        return err;
    }
    *fd_out = fd;
    return 0;
}

static int attempt_run(void *arg)
{
    struct attempt *a = arg;
    int fd;
    int err = dial(a->ai, &fd);
    /* Connected after the race was decided (the cancel lost to the
     * connect's completion): nobody will take this socket. */
    if (err == 0 && *a->over) {
        (void)coil_sock_close(fd);
        err = -ECANCELED;
    }
    if (err)
        a->err = err;
    else
        a->fd = fd;
    a->finished = true;
    return 0;
}

int coil__connect_race(const struct addrinfo *list, int64_t delay_ns,
                       int *fd_out)
{
    if (fd_out)
        *fd_out = -1;
    if (!fd_out)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    size_t n = 0;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
        n++;
    if (n == 0)
        return -ENOENT;
    if (n == 1)
        return dial(list, fd_out); /* no race, no task */

    struct attempt *at = coil__calloc(n, sizeof(*at));
    coil_future_t **futs = coil__calloc(n, sizeof(*futs));
    coil_group_t *g = NULL;
    int err = (!at || !futs) ? -ENOMEM : coil_group_new(&g);
    if (err) {
        coil__free(at);
        coil__free(futs);
        return err;
    }
    bool over = false;
    size_t i = 0;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next, i++) {
        at[i].ai = ai;
        at[i].over = &over;
        at[i].fd = -1;
    }

    size_t started = 0;
    ssize_t winner = -1;
    for (;;) {
        /* Start the next address: at first, after a failure, and after
         * the delay with no outcome. */
        if (started < n) {
            err = coil_group_spawn(g, attempt_run, &at[started], NULL,
                                   &at[started].task);
            if (err)
                break;
            started++;
        }
        size_t m = 0;
        for (size_t k = 0; k < started; k++)
            if (!at[k].finished)
                futs[m++] = coil_task_future(at[k].task);
        if (m == 0 && started == n) {
            err = at[0].err;
            break;
        }
        if (m > 0) {
            int r = coil_wait(futs, m, COIL_FIRST_COMPLETED,
                              started < n ? delay_ns : COIL_NO_TIMEOUT);
            if (r < 0) {
                err = r;
                break;
            }
        }
        for (size_t k = 0; k < started && winner < 0; k++)
            if (at[k].fd >= 0)
                winner = (ssize_t)k;
        if (winner >= 0) {
            err = 0;
            break;
        }
        /* No winner yet: the next round starts another address, or, all
         * started and finished, ends with the first one's error. */
    }

    /* Decided: stop the others and wait for them (the group does, even
     * if this task is cancelled meanwhile). */
    over = true;
    (void)coil_group_cancel(g);
    int w = coil_group_wait(g);
    if (w == -ECANCELED && err == 0)
        err = -ECANCELED;
    coil_group_unref(g);
    for (size_t k = 0; k < started; k++) {
        if (at[k].fd >= 0 && (err || (ssize_t)k != winner))
            (void)coil_sock_close(at[k].fd);
        coil_task_unref(at[k].task);
    }
    if (!err)
        *fd_out = at[winner].fd;
    coil__free(at);
    coil__free(futs);
    return err;
}

int coil__connect_host(const char *host, const char *port, int *fd_out)
{
    *fd_out = -1;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    struct addrinfo *res;
    int err = coil_getaddrinfo(host, port, &hints, &res);
    if (err)
        return err;
    err = coil__connect_race(res, COIL__CONNECT_DELAY, fd_out);
    coil_freeaddrinfo(res);
    return err;
}
