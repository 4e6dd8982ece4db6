/* SPDX-License-Identifier: MIT */
/*
 * server_epoll.h - the frame the raw-epoll reference servers share
 * (echo_server_epoll, http_server_epoll): the command line, a listening
 * socket on 127.0.0.1, a single-threaded level-triggered epoll loop that
 * accepts connections and hands each ready connection to the server, and
 * a clean stop on SIGINT or SIGTERM (through a signalfd in the same epoll
 * set).
 *
 * A server's connection record starts with a struct server_conn (its
 * socket, and its place in the list of open connections); the record is
 * registered in the epoll set with itself as the event data
 * (server_watch) and comes back as such to on_ready.
 * server_epoll_run returns when a signal arrives, after closing and
 * freeing every connection still open. A server whose records hold more
 * than memory (the TLS server's SSL) sets server_on_close to let go of it.
 */
#ifndef COIL_BENCH_SERVER_EPOLL_H
#define COIL_BENCH_SERVER_EPOLL_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "bench.h"

static int server_epfd;

/* What every connection record starts with. */
struct server_conn {
    int fd;
    struct server_conn *prev, *next; /* the open connections */
};

static struct server_conn *server_conns;

/* If set, called with each record just before its socket is closed. */
static void (*server_on_close)(struct server_conn *c);

/* Record c (allocated with malloc) as the open connection on fd. */
static void server_conn_add(struct server_conn *c, int fd)
{
    c->fd = fd;
    c->prev = NULL;
    c->next = server_conns;
    if (server_conns)
        server_conns->prev = c;
    server_conns = c;
}

/* Close c's socket (which also takes it out of the epoll set), forget and
 * free it. */
static void server_conn_close(struct server_conn *c)
{
    if (server_on_close)
        server_on_close(c);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        server_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

/* Register (EPOLL_CTL_ADD) or change (EPOLL_CTL_MOD) fd's events, with
 * ptr as the event data. */
static void server_watch_fd(int fd, void *ptr, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(server_epfd, op, fd, &ev) < 0)
        bench_fail("epoll_ctl: %s", strerror(errno));
}

/* The same for a connection, with its record as the event data. */
static void server_watch(struct server_conn *c, uint32_t events, int op)
{
    server_watch_fd(c->fd, c, events, op);
}

/*
 * Send buf[*off..len) on fd, advancing *off. Returns 1 when all is sent,
 * 0 when the kernel is full (the rest is left), -1 when the connection
 * failed.
 */
static inline int server_send(int fd, const void *buf, size_t *off, size_t len)
{
    while (*off < len) {
        ssize_t n =
            send(fd, (const char *)buf + *off, len - *off, MSG_NOSIGNAL);
        if (n > 0)
            *off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return -1;
    }
    return 1;
}

static int server_listen(int port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        bench_fail("bind 127.0.0.1:%d: %s", port, strerror(errno));
    if (listen(fd, backlog) < 0)
        bench_fail("listen: %s", strerror(errno));
    return fd;
}

/*
 * Accept every pending connection (non-blocking, TCP_NODELAY): new_conn
 * makes the record for the socket (with malloc; NULL if it cannot), which
 * is then listed as open and registered for EPOLLIN.
 */
static void server_accept_all(int lfd, const char *name,
                              struct server_conn *(*new_conn)(int fd))
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EMFILE and the like: report, keep serving the others. */
            fprintf(stderr, "%s: accept: %s\n", name, strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct server_conn *c = new_conn(fd);
        if (!c) {
            fprintf(stderr, "%s: cannot make a connection record\n", name);
            close(fd);
            continue;
        }
        server_conn_add(c, fd);
        server_watch(c, EPOLLIN, EPOLL_CTL_ADD);
    }
}

/*
 * Serve on 127.0.0.1:port: print a "listening" line (on stdout, with the
 * server's name), then run the loop, making a record for each new
 * connection with new_conn and passing the records and events of ready
 * ones to on_ready, until SIGINT or SIGTERM.
 * Closes every connection, the listening socket, the signalfd and the
 * epoll set before returning.
 */
static void server_epoll_serve(int port, const char *name, int backlog,
                               struct server_conn *(*new_conn)(int fd),
                               void (*on_ready)(struct server_conn *c,
                                                uint32_t events))
{
    static char listen_tag, signal_tag; /* their epoll event data */

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
        bench_fail("sigprocmask: %s", strerror(errno));
    int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        bench_fail("signalfd: %s", strerror(errno));

    int lfd = server_listen(port, backlog);
    server_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (server_epfd < 0)
        bench_fail("epoll_create1: %s", strerror(errno));
    server_watch_fd(lfd, &listen_tag, EPOLLIN, EPOLL_CTL_ADD);
    server_watch_fd(sfd, &signal_tag, EPOLLIN, EPOLL_CTL_ADD);
    printf("%s: listening on 127.0.0.1:%d\n", name, port);
    fflush(stdout);

    struct epoll_event evs[256];
    bool running = true;
    while (running) {
        int n = epoll_wait(server_epfd, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bench_fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &listen_tag)
                server_accept_all(lfd, name, new_conn);
            else if (p == &signal_tag)
                running = false;
            else /* A connection closed earlier in this batch cannot show
                  * up later in it: the kernel removed it from the set on
                  * close, and a batch holds one event per descriptor. */
                on_ready(p, evs[i].events);
        }
    }
    while (server_conns)
        server_conn_close(server_conns);
    close(lfd);
    close(sfd);
    close(server_epfd);
}

/* server_epoll_serve for the command line "NAME PORT" (argc, argv). */
static inline void
server_epoll_run(int argc, char **argv, const char *name, int backlog,
                 struct server_conn *(*new_conn)(int fd),
                 void (*on_ready)(struct server_conn *c, uint32_t events))
{
    server_epoll_serve(bench_port_arg(argc, argv, name), name, backlog,
                       new_conn, on_ready);
}

#endif /* COIL_BENCH_SERVER_EPOLL_H */
