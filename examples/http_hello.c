/* SPDX-License-Identifier: MIT */
/*
 * http_hello.c - a minimal HTTP/1.1 "Hello, World!" server with keep-alive,
 * fast enough to be driven by a load generator such as wrk. Each
 * connection is a task that reads one request's headers at a time with
 * coil_stream_readuntil and answers with a single write. Pipelined
 * requests need no special code: whatever arrived after one request stays
 * in the stream's buffer for the next read.
 *
 * Not a real HTTP server: requests with a body (Content-Length > 0 or
 * Transfer-Encoding) get 501 and the connection is closed; headers over
 * 8 KiB get 431 and the connection is closed.
 *
 * Usage: http_hello PORT [LOOPS [reuseport|handoff]]
 *        (listens on 127.0.0.1; PORT 0 picks a free one; LOOPS > 1: that
 *        many loops on as many threads, which share the connections in
 *        one of two ways: "reuseport", the default, a listener per loop
 *        on the same port and the kernel spreading connections over them;
 *        "handoff", one listener on loop 0 that accepts every connection
 *        and hands them out in turn, each loop's share through a channel)
 *        curl http://127.0.0.1:PORT/
 *        wrk -t1 -c10 -d2s http://127.0.0.1:PORT/
 * Stop it with Ctrl-C.
 */
#include <coil.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define MAX_HEADER (8 * 1024)

#define BODY "Hello, World!"
#define OK_HEAD                                                                \
    "HTTP/1.1 200 OK\r\n"                                                      \
    "Content-Type: text/plain\r\n"                                             \
    "Content-Length: 13\r\n"
static const char ok_keep[] = OK_HEAD "Connection: keep-alive\r\n\r\n" BODY;
static const char ok_close[] = OK_HEAD "Connection: close\r\n\r\n" BODY;
static const char too_large[] =
    "HTTP/1.1 431 Request Header Fields Too Large\r\n"
    "Content-Length: 0\r\nConnection: close\r\n\r\n";
static const char not_impl[] = "HTTP/1.1 501 Not Implemented\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n";
static const char bad_req[] = "HTTP/1.1 400 Bad Request\r\n"
                              "Content-Length: 0\r\nConnection: close\r\n\r\n";

/* What the server needs to know about one request. */
struct request {
    bool keep_alive;
    bool has_body;
};

/* Whether the comma-separated header value [v, end) holds token. */
static bool has_token(const char *v, const char *end, const char *token)
{
    size_t tl = strlen(token);
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *t = v;
        while (v < end && *v != ',')
            v++;
        const char *te = v;
        while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - t) == tl && strncasecmp(t, token, tl) == 0)
            return true;
    }
    return false;
}

/* Whether the header line [line, end) is "name: ..."; *value gets what
 * follows the colon. */
static bool header_is(const char *line, const char *end, const char *name,
                      const char **value)
{
    size_t nl = strlen(name);
    if ((size_t)(end - line) <= nl || line[nl] != ':' ||
        strncasecmp(line, name, nl) != 0)
        return false;
    *value = line + nl + 1;
    return true;
}

/* Parse the head in buf[0..len) (ending in "\r\n\r\n"). 0 or -EPROTO. */
static int parse_request(const char *buf, size_t len, struct request *req)
{
    const char *end = buf + len;
    const char *eol = memchr(buf, '\r', len);
    if (!eol || eol - buf < 8)
        return -EPROTO;
    const char *ver = eol - 8; /* "HTTP/1.x" ends the request line */
    if (memcmp(ver, "HTTP/1.", 7) != 0)
        return -EPROTO;
    bool http10 = ver[7] == '0';
    bool conn_close = false, conn_keep = false;
    req->has_body = false;
    for (const char *line = eol + 2; line < end;) {
        const char *le = memchr(line, '\r', (size_t)(end - line));
        if (!le || le == line)
            break; /* the empty line that ends the head */
        const char *v;
        if (header_is(line, le, "Connection", &v)) {
            conn_close |= has_token(v, le, "close");
            conn_keep |= has_token(v, le, "keep-alive");
        } else if (header_is(line, le, "Content-Length", &v)) {
            req->has_body |= strtol(v, NULL, 10) != 0;
        } else if (header_is(line, le, "Transfer-Encoding", &v)) {
            req->has_body = true;
        }
        line = le + 2;
    }
    req->keep_alive = !conn_close && (!http10 || conn_keep);
    return 0;
}

/* Send a final response; returning closes the stream once it is sent. */
static int reply_and_close(coil_stream_t *s, const char *resp, size_t n)
{
    int err = coil_stream_write(s, resp, n);
    return err ? err : coil_stream_drain(s);
}

static int serve_http(coil_stream_t *s, void *arg)
{
    (void)arg;
    char buf[MAX_HEADER];
    int err = coil_stream_set_limit(s, sizeof(buf));
    while (!err) {
        size_t len;
        err = coil_stream_readuntil(s, "\r\n\r\n", 4, buf, sizeof(buf), &len);
        if (err == -EMSGSIZE || err == -ENOBUFS)
            return reply_and_close(s, too_large, sizeof(too_large) - 1);
        if (err == -EPIPE)
            return 0; /* the client closed (maybe mid-request) */
        if (err)
            return err;
        struct request req;
        if (parse_request(buf, len, &req))
            return reply_and_close(s, bad_req, sizeof(bad_req) - 1);
        if (req.has_body)
            return reply_and_close(s, not_impl, sizeof(not_impl) - 1);
        if (!req.keep_alive)
            return reply_and_close(s, ok_close, sizeof(ok_close) - 1);
        err = coil_stream_write(s, ok_keep, sizeof(ok_keep) - 1);
        if (!err)
            err = coil_stream_drain(s); /* suspends only if far behind */
    }
    return err == -ECONNRESET ? 0 : err;
}

/* With more than one loop: the loops of a group (coil/loop_group.h).
 * With reuseport each has its own listener on the same port
 * (SO_REUSEPORT), the kernel spreading connections over them; loop 0
 * opens first, so that port 0 picks one port for all. With handoff loop
 * 0 alone listens, and every other loop takes its connections from its
 * channel (coil/channel.h). */
struct site {
    const char *port;
    unsigned loops;
    bool handoff;
    coil_loop_group_t *group;
    coil_channel_t **inbox; /* handoff: one per loop (inbox[0] unused) */
    _Atomic int bound; /* the port loop 0 got; 0 until then, -1 failed */
};

/* handoff: one connection, a task on the loop it was handed to. */
static int connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    coil_stream_t *s;
    int err = coil_stream_open_fd(fd, &s);
    if (err) {
        close(fd);
        return err;
    }
    err = serve_http(s, NULL);
    coil_stream_close(s);
    coil_stream_unref(s);
    /* A client that went away, or the loop ending: no failure. */
    return err == -ECONNRESET || err == -EPIPE || err == -ECANCELED ? 0
                                                                     : err;
}

/* A connection whose task never ran (cancelled before its first step:
 * Ctrl-C between the spawn and the start) is closed all the same. */
static void close_unserved(void *arg)
{
    close((int)(intptr_t)arg);
}

static void start_connection(int fd)
{
    coil_task_options_t o = {.dispose = close_unserved};
    if (coil_task_spawn_opts(coil_running_loop(), connection,
                             (void *)(intptr_t)fd, &o, NULL) != 0)
        close(fd);
}

/* handoff, loops 1..n-1: serve what loop 0 hands over until cancelled.
 * The channel is closed when this ends, so that loop 0 hands no more to
 * a loop that ended early (it closes them instead). */
static int take_connections(coil_channel_t *inbox)
{
    void *item;
    int err;
    while ((err = coil_channel_get(inbox, &item)) == 0)
        start_connection((int)(intptr_t)item);
    coil_channel_close(inbox);
    return err == -ECANCELED ? 0 : err;
}

/* handoff, loop 0: a listener of its own; each connection in turn to the
 * next loop (itself included). */
static int accept_and_hand_out(struct site *site, int port)
{
    int lfd = coil_sock_open(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0)
        return lfd;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int err = 0;
    if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1024) ||
        getsockname(lfd, (struct sockaddr *)&a, &len))
        err = -errno;
    if (err) {
        coil_sock_close(lfd);
        return err;
    }
    site->bound = ntohs(a.sin_port);
    printf("http_hello: listening on http://127.0.0.1:%d/ (%u loops, "
           "handoff)\n", site->bound, site->loops);
    fflush(stdout);
    for (unsigned next = 0;; next = (next + 1) % site->loops) {
        int fd = coil_sock_accept(lfd, NULL, NULL);
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
            fd == -ENOMEM) {
            err = coil_sleep(10 * COIL_MSEC); /* back off, then retry */
            if (err)
                break;
            continue;
        }
        if (fd < 0) {
            err = fd == -ECANCELED ? 0 : fd;
            break;
        }
        if (next == 0)
            start_connection(fd);
        else if (coil_channel_try_put(site->inbox[next],
                                      (void *)(intptr_t)fd) != 0)
            close(fd); /* that loop has ended (its channel is closed) */
    }
    coil_sock_close(lfd);
    return err;
}

/* Ctrl-C on loop 0 (coil/signal.h): cancel every loop's main, as
 * coil_run does for its one. */
static void on_sigint(void *arg)
{
    coil_loop_group_cancel(arg);
    /* A second Ctrl-C takes the default action, as with coil_run. */
    coil_loop_remove_signal_handler(coil_running_loop(), SIGINT);
}

static int serve(void *arg)
{
    struct site *site = arg;
    int index = site->group ? coil_loop_group_index(site->group,
                                                    coil_running_loop())
                            : 0;
    char port[16];
    snprintf(port, sizeof(port), "%s", site->port);
    if (site->handoff && index > 0)
        return take_connections(site->inbox[index]);
    if (site->handoff) {
        coil_loop_add_signal_handler(coil_running_loop(), SIGINT, on_sigint,
                                     site->group);
        int err = accept_and_hand_out(site, atoi(port));
        if (err)
            fprintf(stderr, "http_hello: 127.0.0.1:%s: %s\n", port,
                    coil_strerror(err));
        coil_loop_group_cancel(site->group); /* the other loops too */
        return err;
    }
    if (index > 0) {
        while (site->bound == 0) /* loop 0 is opening */
            if (coil_sleep(1000000) != 0)
                return 0;
        if (site->bound < 0)
            return 0;
        snprintf(port, sizeof(port), "%d", site->bound);
    }
    coil_server_t *srv;
    coil_server_options_t opts = {.backlog = 1024,
                                  .reuse_port = site->loops > 1};
    int err =
        coil_server_open("127.0.0.1", port, serve_http, NULL, &opts, &srv);
    if (err) {
        fprintf(stderr, "http_hello: 127.0.0.1:%s: %s\n", port,
                coil_strerror(err));
        if (index == 0)
            site->bound = -1;
        if (site->group) /* no half-served port: end every loop */
            coil_loop_group_cancel(site->group);
        return err;
    }
    if (index == 0) {
        if (site->group)
            coil_loop_add_signal_handler(coil_running_loop(), SIGINT,
                                         on_sigint, site->group);
        site->bound = coil_server_port(srv);
        printf("http_hello: listening on http://127.0.0.1:%d/", site->bound);
        if (site->loops > 1)
            printf(" (%u loops)", site->loops);
        printf("\n");
        fflush(stdout);
    }
    err = coil_server_serve_forever(srv);
    coil_server_unref(srv);
    return err;
}

/* handoff: each loop's channel, made before the group starts and freed
 * after it ended, with the connections no loop took. */
static void inboxes_free(struct site *site)
{
    for (unsigned i = 1; i < site->loops && site->inbox; i++) {
        void *item;
        while (site->inbox[i] &&
               coil_channel_try_get(site->inbox[i], &item) == 0)
            close((int)(intptr_t)item);
        coil_channel_unref(site->inbox[i]);
    }
    free(site->inbox);
}

static int inboxes_new(struct site *site)
{
    site->inbox = calloc(site->loops, sizeof(*site->inbox));
    if (!site->inbox)
        return -ENOMEM;
    for (unsigned i = 1; i < site->loops; i++) {
        int err = coil_channel_new(0, &site->inbox[i]);
        if (err)
            return err;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4 || strcmp(argv[1], "-h") == 0 ||
        (argc == 4 && strcmp(argv[3], "reuseport") != 0 &&
         strcmp(argv[3], "handoff") != 0)) {
        fprintf(stderr, "usage: http_hello PORT [LOOPS [reuseport|handoff]]\n");
        return 2;
    }
    struct site site = {.port = argv[1], .loops = 1};
    if (argc >= 3)
        site.loops = (unsigned)strtoul(argv[2], NULL, 10);
    if (site.loops <= 1)
        return coil_run(serve, &site) < 0;
    site.handoff = argc == 4 && strcmp(argv[3], "handoff") == 0;
    int err = site.handoff ? inboxes_new(&site) : 0;
    coil_loop_group_options_t opts = {.loops = site.loops};
    if (!err)
        err = coil_loop_group_start(&opts, serve, &site, &site.group);
    if (err) {
        fprintf(stderr, "http_hello: %s\n", coil_strerror(err));
        inboxes_free(&site);
        return 1;
    }
    err = coil_loop_group_join(site.group);
    coil_loop_group_free(site.group);
    inboxes_free(&site);
    return err < 0 && err != -ECANCELED;
}
