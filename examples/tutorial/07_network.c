/* SPDX-License-Identifier: MIT */
/*
 * 07_network.c - tutorial step 7: talking to the network.
 *
 * A server and a client in one program, on one loop, over loopback:
 *
 *  - the server (coil_server_open) listens on 127.0.0.1, port 0: the
 *    system picks a free port, and coil_server_port says which. Every
 *    connection it accepts gets a task of its own running handle_client
 *    with a stream (coil/stream.h);
 *  - the client (coil_stream_open) connects to that port, sends a few
 *    lines and reads the replies (the server upper-cases them), then
 *    uploads 4 MiB. coil_stream_write never waits: it buffers what the
 *    socket does not take at once. coil_stream_drain is the backpressure:
 *    it suspends the writer while the buffer is over its high-water mark,
 *    so a fast writer cannot pile up memory faster than the peer reads;
 *  - then the client closes, the server's handler sees the end of the
 *    stream, and main closes the server and waits for it.
 *
 * The protocol: a line of text gets the same line upper-cased; the line
 * "UPLOAD <n>" is followed by n bytes, answered by "GOT <n>".
 *
 * Docs: docs/tutorial/07_network.md. Usage: 07_network
 */
#include <coil.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_SIZE (4 * 1024 * 1024)
#define CHUNK (64 * 1024)

/* ---- The server side ------------------------------------------------- */

/* Read and count n bytes of upload. */
static int read_upload(coil_stream_t *s, size_t n)
{
    char buf[16 * 1024];
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < sizeof(buf) ? n - got : sizeof(buf);
        ssize_t r = coil_stream_read(s, buf, want);
        if (r == 0)
            return -EPIPE; /* the client went before the end */
        if (r < 0)
            return (int)r;
        got += (size_t)r;
    }
    printf("server: received %zu bytes\n", got);
    char reply[64];
    int len = snprintf(reply, sizeof(reply), "GOT %zu\n", got);
    int err = coil_stream_write(s, reply, (size_t)len);
    return err ? err : coil_stream_drain(s);
}

/* One connection, in a task of its own. Reads like blocking code: each
 * read and drain suspends this task only. When it returns, the server
 * drops its reference to the stream, which closes it. */
static int handle_client(coil_stream_t *s, void *arg)
{
    (void)arg;
    char line[256];
    for (;;) {
        size_t n;
        int err = coil_stream_readline(s, line, sizeof(line) - 1, &n);
        if (err) {
            /* -EMSGSIZE: a line over the stream's limit; -ENOBUFS: over
             * our buffer; -ECONNRESET...: the peer is gone. */
            fprintf(stderr, "server: %s\n", coil_strerror(err));
            return err;
        }
        if (n == 0) { /* the end of the stream: the client closed */
            printf("server: the client closed the connection\n");
            return 0;
        }
        line[n] = '\0'; /* readline does not add one: room was kept */
        if (n > 7 && memcmp(line, "UPLOAD ", 7) == 0) {
            size_t size = strtoul(line + 7, NULL, 10);
            printf("server: reading an upload of %zu bytes\n", size);
            err = read_upload(s, size);
        } else {
            for (size_t i = 0; i < n; i++)
                line[i] = (char)toupper((unsigned char)line[i]);
            err = coil_stream_write(s, line, n);
            if (!err)
                err = coil_stream_drain(s);
        }
        if (err) {
            fprintf(stderr, "server: %s\n", coil_strerror(err));
            return err;
        }
    }
}

/* ---- The client side ------------------------------------------------- */

/* Send a line, read the reply line. */
static int ask(coil_stream_t *s, const char *word)
{
    char line[256], reply[256];
    int len = snprintf(line, sizeof(line), "%s\n", word);
    int err = coil_stream_write(s, line, (size_t)len);
    if (!err)
        err = coil_stream_drain(s);
    size_t n = 0;
    if (!err)
        err = coil_stream_readline(s, reply, sizeof(reply) - 1, &n);
    if (!err && n == 0)
        err = -EPIPE; /* the server closed instead of answering */
    if (err)
        return err;
    reply[n] = '\0';                    /* readline does not add one */
    reply[strcspn(reply, "\n")] = '\0'; /* nor drop the '\n' */
    printf("client: sent \"%s\", got \"%s\"\n", word, reply);
    return 0;
}

/* Write UPLOAD_SIZE bytes as fast as the connection takes them. */
static int upload(coil_stream_t *s)
{
    static char chunk[CHUNK]; /* static: not 64 KiB of the task's stack */
    memset(chunk, 'x', sizeof(chunk));
    char header[64];
    int len = snprintf(header, sizeof(header), "UPLOAD %d\n", UPLOAD_SIZE);
    int err = coil_stream_write(s, header, (size_t)len);

    int held_back = 0; /* drains that had to wait */
    size_t most_buffered = 0;
    for (size_t sent = 0; !err && sent < UPLOAD_SIZE; sent += CHUNK) {
        err = coil_stream_write(s, chunk, CHUNK); /* never waits */
        size_t buffered = coil_stream_write_buffered(s);
        if (buffered > most_buffered)
            most_buffered = buffered;
        if (buffered > COIL_STREAM_HIGH_WATER)
            held_back++; /* so this drain waits for the server to read */
        if (!err)
            err = coil_stream_drain(s);
    }
    if (err)
        return err;

    char reply[64];
    size_t n;
    err = coil_stream_readline(s, reply, sizeof(reply) - 1, &n);
    if (!err && n == 0)
        err = -EPIPE;
    if (err)
        return err;
    reply[n] = '\0';
    reply[strcspn(reply, "\n")] = '\0';
    printf("client: the server says \"%s\"\n", reply);
    /* How often it waited depends on the machine; that it did, and that
     * the buffer stayed small, does not. */
    fprintf(stderr,
            "client: drain waited %d times, buffer peaked at %zu "
            "bytes\n",
            held_back, most_buffered);
    printf("client: drain held the writer back: %s\n",
           held_back > 0 ? "yes" : "NO");
    printf("client: the write buffer never held more than %d KiB: %s\n",
           (COIL_STREAM_HIGH_WATER + CHUNK) / 1024,
           most_buffered <= COIL_STREAM_HIGH_WATER + CHUNK ? "yes" : "NO");
    return held_back > 0 ? 0 : -EPROTO;
}

static int client(void *arg)
{
    const char *port = arg;
    coil_stream_t *s;
    int err = coil_stream_open("127.0.0.1", port, &s); /* may suspend */
    if (err)
        return err;
    printf("client: connected\n");
    /* Loopback is fast and the kernel buffers megabytes per socket by
     * itself: shrink this socket's send buffer, so that the upload
     * outruns it and the backpressure shows. Real programs leave it. */
    int sndbuf = 64 * 1024;
    if (setsockopt(coil_stream_fd(s), SOL_SOCKET, SO_SNDBUF, &sndbuf,
                   sizeof(sndbuf)) != 0)
        perror("client: setsockopt"); /* not fatal: the demo goes on */
    const char *words[] = {"hello", "from", "coil"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]) && !err; i++)
        err = ask(s, words[i]);
    if (!err) {
        printf("client: uploading %d MiB\n", UPLOAD_SIZE / (1024 * 1024));
        err = upload(s);
    }
    if (!err)
        printf("client: closing\n");
    coil_stream_unref(s); /* the last reference: closes the connection */
    return err;
}

/* ---- main ------------------------------------------------------------ */

static int main_task(void *arg)
{
    (void)arg;
    coil_server_t *srv;
    int err =
        coil_server_open("127.0.0.1", "0", handle_client, NULL, NULL, &srv);
    if (err)
        return err;
    char port[16];
    snprintf(port, sizeof(port), "%d", coil_server_port(srv));
    printf("server: listening on 127.0.0.1 port %s\n", port);

    coil_task_t *c;
    err = coil_task_spawn(coil_running_loop(), client, port, &c);
    if (!err) {
        err = coil_task_join(c);
        coil_task_unref(c);
    }

    /* Shut down: stop accepting, then wait until every connection task
     * has finished (here, at once: the client has closed). */
    coil_server_close(srv);
    int werr = coil_server_wait_closed(srv);
    coil_server_unref(srv);
    if (!err && !werr)
        printf("main: the server is closed\n");
    return err ? err : werr;
}

int main(void)
{
    int err = coil_run(main_task, NULL);
    if (err < 0)
        fprintf(stderr, "07_network: %s\n", coil_strerror(err));
    return err != 0;
}
