/* SPDX-License-Identifier: MIT */
/*
 * udp_echo.c - datagrams with the raw socket calls: a UDP echo server
 * (coil_sock_open, bind, then coil_sock_recvfrom and coil_sock_sendto in a
 * task loop), and a client that sends numbered datagrams and checks each
 * reply, giving up on a reply after a timeout (UDP may drop datagrams;
 * on loopback every one should come back).
 *
 * Usage: udp_echo PORT                    server on 127.0.0.1:PORT
 *        udp_echo PORT client [MESSAGES]  send MESSAGES datagrams
 *                                         (default 100) and check them
 * Stop the server with Ctrl-C.
 */
#include <coil.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_TIMEOUT (500 * COIL_MSEC)

struct args {
    int port;
    int count; /* 0: be the server */
};

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int serve(int fd)
{
    /* The largest datagram; static: there is one server task, and a
     * task's stack (256 KiB by default) is better left to frames. */
    static char buf[64 * 1024];
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        ssize_t n = coil_sock_recvfrom(fd, buf, sizeof(buf),
                                       (struct sockaddr *)&peer, &plen);
        if (n < 0)
            return (int)n;
        n = coil_sock_sendto(fd, buf, (size_t)n, (struct sockaddr *)&peer,
                             plen);
        if (n < 0) /* one peer's trouble does not stop the server */
            fprintf(stderr, "udp_echo: sendto: %s\n", coil_strerror((int)n));
    }
}

static int run_server(int port)
{
    int fd = coil_sock_open(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return fd;
    struct sockaddr_in addr = loopback(port);
    socklen_t alen = sizeof(addr);
    int err = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &alen) < 0)
        err = -errno;
    if (!err) {
        printf("udp_echo: listening on 127.0.0.1:%d/udp\n",
               ntohs(addr.sin_port));
        fflush(stdout);
        err = serve(fd);
    }
    coil_sock_close(fd);
    return err;
}

/* Wait for the echo of msg; replies to earlier datagrams that arrive late
 * are skipped. 0, -ETIMEDOUT, or another error. */
static int await_reply(int fd, const char *msg, size_t len)
{
    coil_timeout_t *t;
    int err = coil_timeout_begin(REPLY_TIMEOUT, &t);
    if (err)
        return err;
    char buf[256];
    for (;;) {
        ssize_t n = coil_sock_recvfrom(fd, buf, sizeof(buf), NULL, NULL);
        if (n < 0) {
            err = (int)n;
            break;
        }
        if ((size_t)n == len && memcmp(buf, msg, len) == 0)
            break; /* err is 0 */
    }
    return coil_timeout_end(t, err);
}

static int run_client(int port, int count)
{
    int fd = coil_sock_open(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return fd;
    struct sockaddr_in server = loopback(port);
    int ok = 0, lost = 0, err = 0;
    for (int i = 0; i < count && !err; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof(msg), "datagram %d", i);
        ssize_t n = coil_sock_sendto(
            fd, msg, (size_t)len, (struct sockaddr *)&server, sizeof(server));
        if (n < 0) {
            err = (int)n;
            break;
        }
        err = await_reply(fd, msg, (size_t)len);
        if (err == -ETIMEDOUT) {
            lost++;
            err = 0;
        } else if (!err) {
            ok++;
        }
    }
    coil_sock_close(fd);
    printf("udp_echo: %d of %d replies came back (%d timed out)\n", ok, count,
           lost);
    if (err)
        return err;
    return ok == count ? 0 : -EIO;
}

static int main_task(void *arg)
{
    struct args *a = arg;
    int err = a->count ? run_client(a->port, a->count) : run_server(a->port);
    if (err && err != -EIO)
        fprintf(stderr, "udp_echo: %s\n", coil_strerror(err));
    return err;
}

int main(int argc, char **argv)
{
    struct args a = {0, 0};
    char *end;
    bool ok = argc >= 2 && argc <= 4;
    if (ok) {
        long port = strtol(argv[1], &end, 10);
        ok = *argv[1] && !*end && port >= 0 && port <= 65535;
        a.port = (int)port;
    }
    if (ok && argc >= 3) {
        ok = strcmp(argv[2], "client") == 0;
        a.count = argc == 4 ? atoi(argv[3]) : 100;
        ok = ok && a.count > 0 && (a.port > 0);
    }
    if (!ok) {
        fprintf(stderr, "usage: udp_echo PORT [client [MESSAGES]]\n");
        return 2;
    }
    return coil_run(main_task, &a) < 0;
}
