/* SPDX-License-Identifier: MIT */
/*
 * kv_server.c - a key-value server: the protocol of kv/kv.h (SET, GET,
 * DEL, QUIT; one line each way) over TCP, one task per connection, all
 * of them sharing one store. docs/testing-your-code.md tests it.
 *
 * The store needs no lock: every connection task runs on the one loop,
 * and no store call suspends. SIGINT or SIGTERM stops the server: it
 * stops accepting, cancels the connections (kv_serve returns -ECANCELED
 * from the read it waits in), waits for them and frees the store.
 *
 * Usage: kv_server PORT   (prints "listening on 127.0.0.1:PORT";
 *                          PORT 0 picks a free one)
 *        then, e.g.: printf 'SET a 1\nGET a\nQUIT\n' | nc 127.0.0.1 PORT
 */
#include <coil.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "kv/kv.h"

#define CAPACITY 100000 /* keys */

static coil_event_t *stop;
static const char *signame; /* the first signal that came */

struct sig {
    int signum;
    const char *name;
};
static struct sig sigs[] = {{SIGINT, "SIGINT"}, {SIGTERM, "SIGTERM"}};

static void on_signal(void *arg)
{
    const struct sig *sig = arg;
    if (!signame)
        signame = sig->name;
    (void)coil_event_set(stop); /* fails only for NULL */
}

/* Listen and serve until a signal comes; then close everything. */
static int serve_until_signal(const char *port, kv_store_t *store)
{
    coil_server_t *srv;
    int err = coil_server_open("127.0.0.1", port, kv_handler, store, NULL,
                               &srv);
    if (err) {
        fprintf(stderr, "kv_server: 127.0.0.1:%s: %s\n", port,
                coil_strerror(err));
        return err;
    }
    printf("kv_server: listening on 127.0.0.1:%d\n", coil_server_port(srv));
    fflush(stdout);

    err = coil_event_wait(stop);
    printf("kv_server: %s: closing, %zu connection(s) open\n",
           signame ? signame : "stopped", coil_server_connections(srv));
    int e = coil_server_close(srv); /* no new connections */
    if (!e) {
        int n = coil_server_close_clients(srv); /* cancel the open ones */
        e = n < 0 ? n : coil_server_wait_closed(srv);
    }
    coil_server_unref(srv);
    if (!err && !e)
        printf("kv_server: shut down cleanly\n");
    return err ? err : e;
}

static int run(void *arg)
{
    const char *port = arg;
    coil_loop_t *loop = coil_running_loop();
    kv_store_t *store;
    int err = kv_store_new(CAPACITY, &store);
    if (err)
        return err;
    if ((err = coil_event_new(loop, &stop))) {
        kv_store_free(store);
        return err;
    }
    /* Taking SIGINT here also takes it from coil_run's own Ctrl-C
     * handling: the server shuts down its own way. */
    int added = 0;
    while (added < 2) {
        err = coil_loop_add_signal_handler(loop, sigs[added].signum,
                                           on_signal, &sigs[added]);
        if (err)
            break;
        added++;
    }
    if (!err)
        err = serve_until_signal(port, store);
    while (added-- > 0) {
        int e = coil_loop_remove_signal_handler(loop, sigs[added].signum);
        err = err ? err : e;
    }
    coil_event_unref(stop);
    kv_store_free(store); /* every connection task has finished */
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr, "usage: kv_server PORT\n");
        return 2;
    }
    int err = coil_run(run, argv[1]);
    if (err < 0)
        fprintf(stderr, "kv_server: %s\n", coil_strerror(err));
    return err < 0;
}
