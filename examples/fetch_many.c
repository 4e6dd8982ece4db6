/* SPDX-License-Identifier: MIT */
/*
 * fetch_many.c - why async wins for I/O-bound work. The program starts
 * its own small server (each request takes 20 ms, as if it waited on a
 * database), then makes N requests one after the other, and then N at
 * once (one task per request, each with its own connection, in a task
 * group), and compares the times. The sequential run costs about
 * N x 20 ms; the concurrent one about 20 ms plus the connection setup,
 * all in one thread.
 *
 * Usage: fetch_many PORT [N]   (PORT 0 picks a free port; N defaults to 50)
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVICE_TIME (20 * COIL_MSEC)

struct config {
    const char *port;     /* as given */
    char server_port[16]; /* the port the server got */
    int n;
};

/* The server side: read a line, "work" 20 ms, answer a line. */
static int slow_service(coil_stream_t *s, void *arg)
{
    (void)arg;
    char line[256], reply[300];
    for (;;) {
        size_t len;
        int err = coil_stream_readline(s, line, sizeof(line), &len);
        if (err || len == 0)
            return err;
        err = coil_sleep(SERVICE_TIME);
        int n = snprintf(reply, sizeof(reply), "done: %.*s", (int)len, line);
        if (!err)
            err = coil_stream_write(s, reply, (size_t)n);
        if (!err)
            err = coil_stream_drain(s);
        if (err)
            return err;
    }
}

struct fetch {
    const struct config *cfg;
    int id;
};

/* The client side: one connection, one request, one checked reply. */
static int fetch_one(void *arg)
{
    struct fetch *f = arg;
    coil_stream_t *s;
    int err = coil_stream_open("127.0.0.1", f->cfg->server_port, &s);
    if (err)
        return err;
    char req[64], expect[80], reply[128];
    int n = snprintf(req, sizeof(req), "request %d\n", f->id);
    int en = snprintf(expect, sizeof(expect), "done: %s", req);
    size_t got;
    err = coil_stream_write(s, req, (size_t)n);
    if (!err)
        err = coil_stream_readline(s, reply, sizeof(reply), &got);
    if (!err && (got != (size_t)en || memcmp(reply, expect, got) != 0))
        err = -EPROTO;
    coil_stream_unref(s);
    return err;
}

static double elapsed_ms(coil_loop_t *loop, int64_t start)
{
    return (double)(coil_loop_update_time(loop) - start) / COIL_MSEC;
}

static int sequential(const struct config *cfg, struct fetch *fs)
{
    for (int i = 0; i < cfg->n; i++) {
        int err = fetch_one(&fs[i]);
        if (err)
            return err;
    }
    return 0;
}

static int concurrent(const struct config *cfg, struct fetch *fs)
{
    coil_group_t *g;
    int err = coil_group_new(&g);
    if (err)
        return err;
    for (int i = 0; i < cfg->n && !err; i++)
        err = coil_group_spawn(g, fetch_one, &fs[i], NULL, NULL);
    int gerr = coil_group_wait(g); /* a failed child cancels the rest */
    coil_group_unref(g);
    return err ? err : gerr;
}

static int compare(struct config *cfg)
{
    coil_loop_t *loop = coil_running_loop();
    struct fetch *fs = calloc((size_t)cfg->n, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    for (int i = 0; i < cfg->n; i++)
        fs[i] = (struct fetch){cfg, i};

    int64_t start = coil_loop_update_time(loop);
    int err = sequential(cfg, fs);
    double seq = elapsed_ms(loop, start);
    if (!err)
        printf("%d requests one after another: %8.1f ms\n", cfg->n, seq);

    start = coil_loop_update_time(loop);
    if (!err)
        err = concurrent(cfg, fs);
    double con = elapsed_ms(loop, start);
    if (!err) {
        printf("%d requests concurrently:      %8.1f ms\n", cfg->n, con);
        printf("speed-up: %.1fx\n", seq / con);
    }
    free(fs);
    return err;
}

static int main_task(void *arg)
{
    struct config *cfg = arg;
    coil_server_t *srv;
    /* A backlog of N lets every concurrent connect queue at once. */
    coil_server_options_t opts = {.backlog = cfg->n > 100 ? cfg->n : 100};
    int err = coil_server_open("127.0.0.1", cfg->port, slow_service, NULL,
                               &opts, &srv);
    if (err) {
        fprintf(stderr, "fetch_many: 127.0.0.1:%s: %s\n", cfg->port,
                coil_strerror(err));
        return err;
    }
    snprintf(cfg->server_port, sizeof(cfg->server_port), "%d",
             coil_server_port(srv));
    printf("fetch_many: server on 127.0.0.1:%s, %lld ms per request\n",
           cfg->server_port, (long long)(SERVICE_TIME / COIL_MSEC));
    err = compare(cfg);
    if (err)
        fprintf(stderr, "fetch_many: %s\n", coil_strerror(err));
    coil_server_close(srv);
    coil_server_close_clients(srv);
    coil_server_wait_closed(srv);
    coil_server_unref(srv);
    return err;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr, "usage: fetch_many PORT [N]\n");
        return 2;
    }
    struct config cfg = {.port = argv[1], .n = argc == 3 ? atoi(argv[2]) : 50};
    if (cfg.n <= 0) {
        fprintf(stderr, "fetch_many: N must be > 0\n");
        return 2;
    }
    return coil_run(main_task, &cfg) < 0;
}
