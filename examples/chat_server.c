/* SPDX-License-Identifier: MIT */
/*
 * chat_server.c - a line-based chat room: every line a client sends is
 * broadcast to every other client as "name: line", with a notice when
 * someone joins or leaves. Each connection is a task that reads lines;
 * broadcasting only queues data (coil_stream_write never suspends), so a
 * slow reader never holds up the others. A client that lets more than
 * 1 MiB pile up unread is disconnected.
 *
 * Usage: chat_server PORT   (listens on 127.0.0.1; PORT 0 picks a free one)
 *        then connect a few clients, e.g. with: nc 127.0.0.1 PORT
 * Stop it with Ctrl-C.
 */
#include <coil.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_LINE 4096
#define MAX_BACKLOG (1024 * 1024) /* unsent bytes before a client is cut */

struct client {
    coil_stream_t *s;
    char name[32];
    bool kicked;
    struct client *prev, *next;
};

/* Every connected client. Only tasks of the one loop touch it, and none
 * suspends while walking it, so no locking is needed. */
static struct client *clients;
static int next_id = 1;

static void add_client(struct client *c)
{
    c->prev = NULL;
    c->next = clients;
    if (clients)
        clients->prev = c;
    clients = c;
}

static void remove_client(struct client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* Queue msg for one client; cut it off if it is too far behind. */
static void send_to(struct client *c, const char *msg, size_t n)
{
    if (c->kicked)
        return;
    int err = coil_stream_write(c->s, msg, n);
    if (!err && coil_stream_write_buffered(c->s) > MAX_BACKLOG)
        err = -ENOBUFS;
    if (err) {
        /* Its own task wakes with -EBADF from its read and cleans up. */
        printf("chat_server: dropping %s: %s\n", c->name,
               err == -ENOBUFS ? "more than 1 MiB unread" : coil_strerror(err));
        c->kicked = true;
        coil_stream_abort(c->s);
    }
}

/* Send a formatted line to every client except `from` (may be NULL). */
static void broadcast(const struct client *from, const char *fmt, ...)
{
    char msg[MAX_LINE + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    for (struct client *c = clients; c; c = c->next)
        if (c != from)
            send_to(c, msg, (size_t)n);
}

/* Read lines from one client and pass them on, until it leaves. */
static int chat(struct client *me)
{
    char line[MAX_LINE];
    for (;;) {
        size_t len;
        int err = coil_stream_readline(me->s, line, sizeof(line), &len);
        if (err == -EMSGSIZE || err == -ENOBUFS) {
            send_to(me, "* line too long, bye\n", 21);
            return err;
        }
        if (err || len == 0)
            return err; /* len 0: the client closed */
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len > 0)
            broadcast(me, "%s: %.*s\n", me->name, (int)len, line);
    }
}

static int handle_client(coil_stream_t *s, void *arg)
{
    (void)arg;
    struct client me = {.s = s};
    snprintf(me.name, sizeof(me.name), "user%d", next_id++);
    coil_stream_set_limit(s, MAX_LINE);
    add_client(&me);
    char hello[96];
    int n = snprintf(hello, sizeof(hello), "* welcome, you are %s\n", me.name);
    send_to(&me, hello, (size_t)n);
    broadcast(&me, "* %s joined\n", me.name);
    printf("chat_server: %s joined\n", me.name);
    fflush(stdout);

    int err = chat(&me);

    remove_client(&me);
    broadcast(NULL, "* %s left\n", me.name);
    printf("chat_server: %s left (%s)\n", me.name,
           me.kicked ? "dropped"
           : err     ? coil_strerror(err)
                     : "closed");
    fflush(stdout);
    return err == -ECANCELED ? err : 0;
}

static int serve(void *arg)
{
    const char *port = arg;
    coil_server_t *srv;
    int err =
        coil_server_open("127.0.0.1", port, handle_client, NULL, NULL, &srv);
    if (err) {
        fprintf(stderr, "chat_server: 127.0.0.1:%s: %s\n", port,
                coil_strerror(err));
        return err;
    }
    printf("chat_server: listening on 127.0.0.1:%d\n", coil_server_port(srv));
    fflush(stdout);
    err = coil_server_serve_forever(srv);
    coil_server_unref(srv);
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr, "usage: chat_server PORT\n");
        return 2;
    }
    return coil_run(serve, argv[1]) < 0;
}
