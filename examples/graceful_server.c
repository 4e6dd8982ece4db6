/* SPDX-License-Identifier: MIT */
/*
 * graceful_server.c - a line echo server that shuts down gracefully on
 * SIGINT or SIGTERM (coil/signal.h).
 *
 * The signal handlers run as ordinary loop callbacks: they set an event
 * the main task waits for. Then the server stops accepting, every
 * connection is told the server is going and gets up to 2 seconds to
 * finish (a grace period: a timeout scope around wait_closed), after
 * which the remaining connections are cancelled. Each connection task
 * reads lines and writes them back; a shutdown notice is written between
 * lines, never in the middle of one.
 *
 * Usage: graceful_server PORT   (prints "listening on 127.0.0.1:PORT";
 *                                PORT 0 picks a free one)
 */
#include <coil.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define GRACE (2 * COIL_SEC)

struct state {
    coil_event_t *stop;    /* set by SIGINT or SIGTERM */
    const char *signame;   /* which one came first */
    int served;            /* connections handled in all */
};

static struct state st;

static void on_sigint(void *arg)
{
    (void)arg;
    if (!st.signame)
        st.signame = "SIGINT";
    coil_event_set(st.stop);
}

static void on_sigterm(void *arg)
{
    (void)arg;
    if (!st.signame)
        st.signame = "SIGTERM";
    coil_event_set(st.stop);
}

/* One connection: echo lines until the peer closes, or until shutdown
 * (then say goodbye and close). */
static int client(coil_stream_t *s, void *arg)
{
    (void)arg;
    st.served++;
    char line[1024];
    for (;;) {
        size_t n;
        int err = coil_stream_readline(s, line, sizeof(line), &n);
        if (err == -ECANCELED || coil_event_is_set(st.stop)) {
            /* Shutting down: finish politely. */
            coil_stream_write(s, "server shutting down\n", 21);
            coil_stream_drain(s);
            return 0;
        }
        if (err || n == 0)
            return err == -EPIPE ? 0 : err; /* the peer went */
        err = coil_stream_write(s, line, n);
        if (!err)
            err = coil_stream_drain(s);
        if (err)
            return err;
    }
}

static int serve(void *arg)
{
    const char *port = arg;
    coil_loop_t *loop = coil_running_loop();
    int err = coil_event_new(loop, &st.stop);
    if (err)
        return err;
    /* Taking SIGINT here also takes it from coil_run's own Ctrl-C
     * handling (which would cancel this task): we shut down our way. */
    if ((err = coil_loop_add_signal_handler(loop, SIGINT, on_sigint, NULL)) ||
        (err = coil_loop_add_signal_handler(loop, SIGTERM, on_sigterm, NULL))) {
        coil_event_unref(st.stop);
        return err;
    }
    coil_server_t *srv;
    err = coil_server_open("127.0.0.1", port, client, NULL, NULL, &srv);
    if (err) {
        fprintf(stderr, "graceful_server: %s\n", coil_strerror(err));
        coil_event_unref(st.stop);
        return err;
    }
    printf("graceful_server: listening on 127.0.0.1:%d\n",
           coil_server_port(srv));
    fflush(stdout);

    err = coil_event_wait(st.stop);
    printf("graceful_server: %s: closing, %zu connection(s) open\n",
           st.signame ? st.signame : "stopped", coil_server_connections(srv));
    coil_server_close(srv); /* no new connections */
    /* Wake the connections waiting for a line: they say goodbye. */
    coil_server_close_clients(srv);
    coil_timeout_t *grace;
    if (coil_timeout_begin(GRACE, &grace) == 0) {
        int w = coil_timeout_end(grace, coil_server_wait_closed(srv));
        if (w == -ETIMEDOUT) {
            coil_server_close_clients(srv);
            coil_server_wait_closed(srv);
        }
    }
    printf("graceful_server: shut down cleanly after %d connection(s)\n",
           st.served);
    coil_server_unref(srv);
    coil_loop_remove_signal_handler(loop, SIGINT);
    coil_loop_remove_signal_handler(loop, SIGTERM);
    coil_event_unref(st.stop);
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr, "usage: graceful_server PORT\n");
        return 2;
    }
    return coil_run(serve, argv[1]) < 0;
}
