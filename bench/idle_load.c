/* SPDX-License-Identifier: MIT */
/*
 * idle_load - the client of the idle-connection memory benchmark
 * (bench/idle.sh), on plain blocking sockets and poll (no coil, so the
 * client is the same whichever server it measures).
 *
 *   idle_load HOST PORT CONNECTIONS [BATCH]
 *
 * Opens CONNECTIONS TCP connections to HOST:PORT (loopback only:
 * 127.0.0.1, ::1 or localhost), BATCH at a time (default 50). On each it
 * sends one MSG_SIZE-byte message and reads the echo back, checking every
 * byte; a batch's echoes are all back before the next batch connects, so
 * the server has accepted every connection of a batch before more come,
 * and its accept queue (coil's backlog is 100) never holds more than one
 * batch. Once every connection has echoed, it prints
 *
 *   ready CONNECTIONS
 *
 * on stdout (the only thing it prints there) and keeps the connections
 * open and idle, doing nothing, until stdin reaches end of file or
 * SIGINT or SIGTERM arrives (whatever else comes on stdin is ignored).
 * Then it checks that no connection was closed by the server or received
 * anything during the idle time, closes them all and exits 0.
 *
 * Messages differ between connections (the connection's index and bytes
 * from a per-connection seed), so an echo sent to the wrong connection is
 * a mismatch. A mismatch, a connection the server closed or reset, an
 * echo missing after ECHO_TIMEOUT_S, a connect that fails CONNECT_TRIES
 * times, or too few file descriptors make it say so on stderr and exit 1;
 * it exits 1 too when interrupted before it is ready.
 *
 * File descriptors: the soft RLIMIT_NOFILE is raised to the hard limit;
 * CONNECTIONS plus a few must fit under it. bench_guard ends a setup
 * that hangs (SETUP_GUARD_S) and an idle wait nobody ends (IDLE_GUARD_S).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "bench.h"

#define MSG_SIZE 64
#define MAX_CONNS 1000000
#define MAX_BATCH 1000
#define FD_SLACK 16           /* stdio and the like, besides connections */
#define CONNECT_TIMEOUT_S 5   /* per connect attempt (SO_SNDTIMEO) */
#define CONNECT_TRIES 3       /* attempts per connection */
#define ECHO_TIMEOUT_S 10     /* for all the echoes of a batch */
#define SETUP_GUARD_S 300     /* connecting every connection */
#define IDLE_GUARD_S 3600     /* waiting to be told to end */

static volatile sig_atomic_t stop_signal; /* SIGINT or SIGTERM arrived */

static void on_stop(int sig)
{
    stop_signal = sig;
}

/* Exit 1 if a stop signal has arrived (before the client is ready). */
static void check_interrupted(void)
{
    if (stop_signal)
        bench_fail("interrupted (signal %d) before every connection "
                   "was open",
                   (int)stop_signal);
}

/* The message of connection i: its index, then bytes from its seed. */
static void make_message(uint32_t i, unsigned char msg[MSG_SIZE])
{
    uint64_t rng = BENCH_SEED ^ ((uint64_t)i << 20);
    for (size_t j = 0; j < MSG_SIZE; j += 8) {
        uint64_t r = bench_rand(&rng);
        memcpy(msg + j, &r, 8);
    }
    memcpy(msg, &i, sizeof(i));
}

/*
 * Raise the soft limit on open files to the hard one, and fail unless
 * nconns connections and FD_SLACK more fit.
 */
static void raise_nofile(long nconns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        bench_fail("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur != rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            /* An unlimited hard limit is capped by fs.nr_open. */
            fprintf(stderr, "idle_load: cannot raise the open file limit "
                            "to the hard limit: %s\n",
                    strerror(errno));
            rl.rlim_cur = old;
        }
    }
    rlim_t need = (rlim_t)nconns + FD_SLACK;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        bench_fail("%ld connections need %lu open files, the limit is "
                   "%lu (hard %lu)",
                   nconns, (unsigned long)need, (unsigned long)rl.rlim_cur,
                   (unsigned long)rl.rlim_max);
}

struct target {
    struct sockaddr_storage addr;
    socklen_t len;
    const char *host;
    int port;
};

static void make_target(struct target *t, const char *host, int port)
{
    memset(t, 0, sizeof(*t));
    t->host = host;
    t->port = port;
    if (strcmp(host, "::1") == 0) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&t->addr;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        t->len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&t->addr;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        t->len = sizeof(*a);
    }
}

/*
 * One connection to t, blocking, with SO_SNDTIMEO bounding the connect
 * (on loopback a connect waits only when the server's accept queue is
 * full, its SYN dropped and sent again later). A timeout or a reset is
 * tried again with a new socket, up to CONNECT_TRIES times; anything else
 * fails at once.
 */
static int open_conn(const struct target *t, long index)
{
    for (int attempt = 1;; attempt++) {
        check_interrupted();
        int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                bench_fail("connection %ld: socket: %s (raise the open "
                           "file limit)",
                           index, strerror(errno));
            bench_fail("connection %ld: socket: %s", index, strerror(errno));
        }
        struct timeval tv = {.tv_sec = CONNECT_TIMEOUT_S};
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
            bench_fail("SO_SNDTIMEO: %s", strerror(errno));
        if (connect(fd, (const struct sockaddr *)&t->addr, t->len) == 0)
            return fd;
        int e = errno;
        close(fd);
        check_interrupted();
        switch (e) {
        case EINPROGRESS: /* SO_SNDTIMEO ran out */
        case ETIMEDOUT:
        case ECONNRESET:
        case EINTR:
            if (attempt < CONNECT_TRIES) {
                fprintf(stderr,
                        "idle_load: connection %ld: connect: %s, trying "
                        "again\n",
                        index, e == EINPROGRESS ? "timed out" : strerror(e));
                continue;
            }
            bench_fail("connection %ld: connect to %s port %d: %s, %d "
                       "times (the server's accept queue full? a "
                       "smaller BATCH may help)",
                       index, t->host, t->port,
                       e == EINPROGRESS ? "timed out" : strerror(e),
                       CONNECT_TRIES);
        case EADDRNOTAVAIL:
        case EAGAIN:
            bench_fail("connection %ld: connect: %s (out of local ports? "
                       "see net.ipv4.ip_local_port_range)",
                       index, strerror(e));
        default:
            bench_fail("connection %ld: connect to %s port %d: %s", index,
                       t->host, t->port, strerror(e));
        }
    }
}

/* Send connection i's message on fd (a fresh socket takes 64 bytes at
 * once; SO_SNDTIMEO bounds it anyway). */
static void send_message(int fd, long i)
{
    unsigned char msg[MSG_SIZE];
    make_message((uint32_t)i, msg);
    size_t off = 0;
    while (off < MSG_SIZE) {
        ssize_t n = send(fd, msg + off, MSG_SIZE - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            check_interrupted();
        } else {
            bench_fail("connection %ld: send: %s", i,
                       n < 0 ? strerror(errno) : "sent nothing");
        }
    }
}

/*
 * Wait for the echoes of connections first..first+count-1 (fds[first..]):
 * poll them all, read what is there without blocking, check each byte as
 * it comes. got[k] counts the bytes of connection first+k so far.
 */
static void await_echoes(const int *fds, long first, int count,
                         struct pollfd *pfds, size_t *got)
{
    unsigned char want[MSG_SIZE], buf[MSG_SIZE];
    int left = count;
    for (int k = 0; k < count; k++) {
        got[k] = 0;
        pfds[k].fd = fds[first + k];
        pfds[k].events = POLLIN;
    }
    int64_t deadline = bench_wall_ns() + ECHO_TIMEOUT_S * 1000000000LL;
    while (left > 0) {
        check_interrupted();
        int64_t wait_ms = (deadline - bench_wall_ns()) / 1000000;
        if (wait_ms <= 0)
            bench_fail("connections %ld..%ld: %d echoes still missing "
                       "after %d s",
                       first, first + count - 1, left, ECHO_TIMEOUT_S);
        int n = poll(pfds, (nfds_t)count, (int)wait_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bench_fail("poll: %s", strerror(errno));
        }
        for (int k = 0; k < count && n > 0; k++) {
            if (!pfds[k].revents)
                continue;
            n--;
            long i = first + k;
            ssize_t r = recv(pfds[k].fd, buf, MSG_SIZE - got[k],
                             MSG_DONTWAIT);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                          errno == EINTR))
                continue;
            if (r < 0)
                bench_fail("connection %ld: recv: %s", i, strerror(errno));
            if (r == 0)
                bench_fail("connection %ld: closed by the server after "
                           "%zu of %d echoed bytes",
                           i, got[k], MSG_SIZE);
            make_message((uint32_t)i, want);
            if (memcmp(buf, want + got[k], (size_t)r) != 0)
                bench_fail("connection %ld: echoed bytes %zu..%zu differ "
                           "from those sent",
                           i, got[k], got[k] + (size_t)r);
            got[k] += (size_t)r;
            if (got[k] == MSG_SIZE) {
                pfds[k].fd = -1; /* poll skips it from now on */
                left--;
            }
        }
    }
}

/*
 * After the idle time: every connection must be as it was, nothing to
 * read and not closed. Returns how many are not.
 */
static long count_disturbed(const int *fds, long nconns)
{
    struct pollfd *p = calloc((size_t)nconns, sizeof(*p));
    if (!p)
        bench_fail("out of memory");
    for (long i = 0; i < nconns; i++) {
        p[i].fd = fds[i];
        p[i].events = POLLIN;
    }
    int n;
    do
        n = poll(p, (nfds_t)nconns, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        bench_fail("poll: %s", strerror(errno));
    long bad = 0;
    for (long i = 0; i < nconns; i++) {
        if (!p[i].revents)
            continue;
        if (bad == 0) {
            char c;
            ssize_t r = recv(fds[i], &c, 1, MSG_DONTWAIT | MSG_PEEK);
            fprintf(stderr,
                    "idle_load: connection %ld: %s during the idle "
                    "time\n",
                    i,
                    r == 0  ? "closed by the server"
                    : r > 0 ? "received unexpected bytes"
                            : strerror(errno));
        }
        bad++;
    }
    free(p);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: idle_load HOST PORT CONNECTIONS [BATCH]\n");
        return 2;
    }
    const char *host = argv[1];
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "localhost") != 0)
        bench_fail("refusing host '%s': loopback only (127.0.0.1, ::1, "
                   "localhost)",
                   host);
    int port = (int)bench_parse_long(argv[2], "port", 1, 65535);
    long nconns = bench_parse_long(argv[3], "connection count", 1, MAX_CONNS);
    int batch =
        argc == 5 ? (int)bench_parse_long(argv[4], "batch", 1, MAX_BATCH) : 50;

    /* No SA_RESTART: a blocking call returns EINTR, and the loops look
     * at stop_signal. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    raise_nofile(nconns);
    bench_guard(SETUP_GUARD_S);

    struct target t;
    make_target(&t, host, port);
    int *fds = calloc((size_t)nconns, sizeof(*fds));
    struct pollfd *pfds = calloc((size_t)batch, sizeof(*pfds));
    size_t *got = calloc((size_t)batch, sizeof(*got));
    if (!fds || !pfds || !got)
        bench_fail("out of memory");

    int64_t t0 = bench_wall_ns();
    for (long first = 0; first < nconns; first += batch) {
        int count = nconns - first < batch ? (int)(nconns - first) : batch;
        for (long i = first; i < first + count; i++) {
            fds[i] = open_conn(&t, i);
            send_message(fds[i], i);
        }
        await_echoes(fds, first, count, pfds, got);
    }
    free(pfds);
    free(got);
    fprintf(stderr, "idle_load: %ld connections open and echoed in %.2f s\n",
            nconns, (double)(bench_wall_ns() - t0) / 1e9);

    printf("ready %ld\n", nconns);
    fflush(stdout);

    /* Idle until stdin ends or a signal comes. */
    alarm(0);
    bench_guard(IDLE_GUARD_S);
    char buf[256];
    while (!stop_signal) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "idle_load: stdin: %s; ending\n",
                    strerror(errno));
            break;
        }
    }
    alarm(0);

    long bad = count_disturbed(fds, nconns);
    for (long i = 0; i < nconns; i++)
        close(fds[i]);
    free(fds);
    if (bad)
        bench_fail("%ld of %ld connections were closed by the server or "
                   "received bytes while idle",
                   bad, nconns);
    return 0;
}
