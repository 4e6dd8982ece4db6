/* SPDX-License-Identifier: MIT */
/*
 * echo_client.c - sends lines to an echo server and checks what comes
 * back: N clients at once, each its own task, every reply verified.
 *
 * Usage: echo_client PORT [CLIENTS] [MESSAGES] [HOST]
 *        (defaults: 10 clients, 100 messages each, host 127.0.0.1)
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct config {
    const char *host, *port;
    int clients, messages;
};

struct client {
    const struct config *cfg;
    int id;
    int ok; /* messages echoed correctly */
};

static int run_client(void *arg)
{
    struct client *c = arg;
    coil_stream_t *s;
    int err = coil_stream_open(c->cfg->host, c->cfg->port, &s);
    if (err)
        return err;
    char line[128], reply[128];
    for (int i = 0; i < c->cfg->messages && !err; i++) {
        int len = snprintf(line, sizeof(line), "client %d message %d\n",
                           c->id, i);
        size_t got;
        err = coil_stream_write(s, line, (size_t)len);
        if (!err)
            err = coil_stream_drain(s);
        if (!err)
            err = coil_stream_readline(s, reply, sizeof(reply), &got);
        if (!err && (got != (size_t)len || memcmp(reply, line, got) != 0))
            err = -EPROTO; /* the echo did not match */
        if (!err)
            c->ok++;
    }
    coil_stream_unref(s);
    return err;
}

static int main_task(void *arg)
{
    struct config *cfg = arg;
    coil_loop_t *loop = coil_running_loop();
    coil_group_t *g;
    int err = coil_group_new(&g);
    if (err)
        return err;
    struct client *cs = calloc((size_t)cfg->clients, sizeof(*cs));
    if (!cs)
        return -ENOMEM;
    int64_t start = coil_loop_update_time(loop);
    for (int i = 0; i < cfg->clients && !err; i++) {
        cs[i] = (struct client){cfg, i, 0};
        err = coil_group_spawn(g, run_client, &cs[i], NULL, NULL);
    }
    int gerr = coil_group_wait(g);
    coil_group_unref(g);
    double ms = (double)(coil_loop_update_time(loop) - start) / COIL_MSEC;
    long ok = 0;
    for (int i = 0; i < cfg->clients; i++)
        ok += cs[i].ok;
    free(cs);
    printf("%ld of %ld messages echoed correctly by %d clients in %.1f ms\n",
           ok, (long)cfg->clients * cfg->messages, cfg->clients, ms);
    if (err || gerr)
        fprintf(stderr, "echo_client: %s\n", coil_strerror(err ? err : gerr));
    return err ? err : gerr;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 5 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr,
                "usage: echo_client PORT [CLIENTS] [MESSAGES] [HOST]\n");
        return 2;
    }
    struct config cfg = {argc > 4 ? argv[4] : "127.0.0.1", argv[1],
                         argc > 2 ? atoi(argv[2]) : 10,
                         argc > 3 ? atoi(argv[3]) : 100};
    if (cfg.clients <= 0 || cfg.messages <= 0) {
        fprintf(stderr, "echo_client: CLIENTS and MESSAGES must be > 0\n");
        return 2;
    }
    return coil_run(main_task, &cfg) < 0;
}
