/* SPDX-License-Identifier: MIT */
/*
 * echo_load - load client for the echo server benchmarks, on plain epoll
 * (no coil, so the client costs the same whichever server it measures).
 *
 *   echo_load [--tls] HOST PORT CONNECTIONS SIZE SECONDS NAME [SERVER_PID]
 *
 * Opens CONNECTIONS TCP connections to HOST:PORT (loopback only:
 * 127.0.0.1, ::1 or localhost) and on each runs a ping-pong: send one
 * message of SIZE bytes, wait for all SIZE bytes to come back, check
 * every byte, record the round trip, send the next. After a warm-up of
 * WARMUP_NS the requests completed during SECONDS are counted:
 *
 *   NAME_rps  <completed round trips per second, all connections> req/s
 *   NAME_p50  <median round-trip latency>                         us
 *   NAME_p99  <99th percentile round-trip latency>                us
 *   NAME_cpu  <the server's CPU time per round trip>              ns/req
 *
 * The last line only when SERVER_PID is given: the server's user +
 * system time (/proc/SERVER_PID/stat, in clock ticks) is read when the
 * measured interval starts and when it ends, so neither the warm-up nor
 * the connections' setup and teardown count, and the difference is
 * divided by the round trips counted in between.
 *
 * A round trip runs from the first byte handed to send() to the last
 * byte of the echo received. Each message differs from the one before on
 * its connection: it carries the sequence number and connection index in
 * its first bytes and is cut at a different offset of a per-connection
 * random pattern, so a lost, repeated or reordered byte shows up as a
 * mismatch. On a mismatch, a closed or failed connection, or a stall, the
 * program says so on stderr and exits 1 without printing any result.
 *
 * --tls: every connection is TLS (OpenSSL; only when the program was built
 * with it, see bench/CMakeLists.txt). The handshakes are made one after
 * the other, on the sockets still blocking, before the first message: they
 * are setup, outside the warm-up and the measured interval. The server's
 * certificate is not verified (loopback only, throwaway certificates: the
 * benchmark measures the records, not the trust). Then the same loop runs
 * on non-blocking sockets, with SSL_write and SSL_read in place of send
 * and recv (one record of at most 16 KiB per SSL_write), and the same
 * checks of every byte. The negotiated version and cipher go to stderr.
 * Without --tls the plain path is what it was: one test of a flag per
 * send or receive step, no other work.
 *
 * Bounds: at most MAX_SAMPLES requests are measured (the measurement ends
 * early when that many completed); latencies are kept in a preallocated
 * array of that size; bench_guard kills a run that hangs.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#ifdef BENCH_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#include "bench.h"

#define WARMUP_NS 200000000LL  /* 0.2 s not measured */
#define STALL_NS 3000000000LL  /* no round trip for 3 s: give up */
#define MAX_SAMPLES (4u << 20) /* latencies kept (4 bytes each) */
#define MAX_CONNS 10000
#define MAX_SIZE (16u << 20)
#define PATTERN_SLACK 256 /* messages start at offsets 0..255 */
#define HEADER 12         /* seq (8 bytes) + connection index (4) */
#define SCRATCH (256u << 10)
#define TLS_RECORD (16u << 10) /* plaintext per SSL_write: one record */

struct conn {
    int fd;
    uint32_t index;
    bool want_out;           /* EPOLLOUT registered */
    unsigned char *pattern;  /* size + PATTERN_SLACK random bytes */
    unsigned char *msg;      /* the current message, inside pattern */
    size_t sent, rcvd;
    uint64_t seq;
    int64_t t_start;
#ifdef BENCH_TLS
    SSL *ssl;
#endif
};

static size_t size;
static int epfd;
static unsigned char scratch[SCRATCH];
static bool tls; /* --tls */

static void pump_send_tls(struct conn *c);
static bool pump_recv_tls(struct conn *c);

static uint32_t *samples;
static size_t nsamples;

static void set_out(struct conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        bench_fail("epoll_ctl: %s", strerror(errno));
    c->want_out = on;
}

/* Lay out message number c->seq and start its round trip. */
static void start_message(struct conn *c, int64_t now)
{
    size_t off = (size_t)((c->seq * 131u) % PATTERN_SLACK);
    unsigned char header[HEADER];
    memcpy(header, &c->seq, 8);
    memcpy(header + 8, &c->index, 4);
    c->msg = c->pattern + off;
    memcpy(c->msg, header, size < HEADER ? size : HEADER);
    c->sent = 0;
    c->rcvd = 0;
    c->t_start = now;
}

/* Send what the kernel takes; EPOLLOUT only while some is left. */
static void pump_send(struct conn *c)
{
    if (tls) {
        pump_send_tls(c);
        return;
    }
    while (c->sent < size) {
        ssize_t n = send(c->fd, c->msg + c->sent, size - c->sent,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            bench_fail("connection %u: send: %s", (unsigned)c->index,
                       strerror(errno));
        }
    }
    set_out(c, c->sent < size);
}

/* Check the n echoed bytes just received into scratch, and count them. */
static inline void take_echo(struct conn *c, size_t n)
{
    if (c->rcvd + n > c->sent)
        bench_fail("connection %u: echo of bytes not yet sent",
                   (unsigned)c->index);
    if (memcmp(scratch, c->msg + c->rcvd, n) != 0)
        bench_fail("connection %u: message %llu: echoed bytes "
                   "differ from those sent (offset %zu..%zu)",
                   (unsigned)c->index, (unsigned long long)c->seq, c->rcvd,
                   c->rcvd + n);
    c->rcvd += n;
}

/*
 * Receive what has arrived of the current echo (never more than the
 * message: extra bytes would belong to no message and are caught as a
 * mismatch of the next one) and check it. True once the echo is whole.
 */
static bool pump_recv(struct conn *c)
{
    if (tls)
        return pump_recv_tls(c);
    while (c->rcvd < size) {
        size_t want = size - c->rcvd;
        if (want > sizeof(scratch))
            want = sizeof(scratch);
        ssize_t n = recv(c->fd, scratch, want, 0);
        if (n > 0) {
            take_echo(c, (size_t)n);
        } else if (n == 0) {
            bench_fail("connection %u: closed by the server mid-message",
                       (unsigned)c->index);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return false;
        } else {
            bench_fail("connection %u: recv: %s", (unsigned)c->index,
                       strerror(errno));
        }
    }
    return true;
}

#ifdef BENCH_TLS
static SSL_CTX *tls_ctx;

/* Say what OpenSSL's queue and SSL_get_error (e) tell of a failed call of
 * connection c, and exit 1. */
static void tls_fail(struct conn *c, const char *what, int e)
{
    if (e == SSL_ERROR_SYSCALL && errno)
        fprintf(stderr, "echo_load: %s\n", strerror(errno));
    ERR_print_errors_fp(stderr);
    bench_fail("connection %u: %s failed (SSL_get_error %d)",
               (unsigned)c->index, what, e);
}

static void tls_setup(void)
{
    /* The socket BIO writes with write(), which raises SIGPIPE on a
     * connection the server closed: make that the error it is. */
    signal(SIGPIPE, SIG_IGN);
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx ||
        SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION) != 1)
        bench_fail("SSL_CTX_new failed");
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    /* Whole records in one recv instead of header then body: the client
     * shares the machine with the server, the less it costs the better. */
    SSL_CTX_set_read_ahead(tls_ctx, 1);
}

/* The handshake, on c's socket while it still blocks; the first
 * connection's version and cipher go to stderr, after name. */
static void tls_handshake(struct conn *c, const char *name)
{
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        bench_fail("SSL_new failed");
    int r = SSL_connect(c->ssl);
    if (r != 1)
        tls_fail(c, "the handshake", SSL_get_error(c->ssl, r));
    if (c->index == 0)
        fprintf(stderr, "echo_load: %s: %s %s\n", name,
                SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
}

/*
 * pump_send over TLS. Without SSL_MODE_ENABLE_PARTIAL_WRITE a record goes
 * whole or not at all; after SSL_ERROR_WANT_WRITE the same call (the same
 * pointer and length, which c->sent keeps) finishes it on EPOLLOUT.
 */
static void pump_send_tls(struct conn *c)
{
    while (c->sent < size) {
        size_t n = size - c->sent;
        if (n > TLS_RECORD)
            n = TLS_RECORD;
        int r = SSL_write(c->ssl, c->msg + c->sent, (int)n);
        if (r > 0) {
            c->sent += (size_t)r;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_WRITE)
            tls_fail(c, "SSL_write", e);
        break;
    }
    set_out(c, c->sent < size);
}

/* pump_recv over TLS. Reading stops only when the echo is whole or
 * OpenSSL has no whole record left and the socket is empty (WANT_READ),
 * so nothing of this echo waits inside OpenSSL unseen by epoll. */
static bool pump_recv_tls(struct conn *c)
{
    while (c->rcvd < size) {
        size_t want = size - c->rcvd;
        if (want > sizeof(scratch))
            want = sizeof(scratch);
        int n = SSL_read(c->ssl, scratch, (int)want);
        if (n > 0) {
            take_echo(c, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return false;
        if (e == SSL_ERROR_ZERO_RETURN)
            bench_fail("connection %u: closed by the server mid-message",
                       (unsigned)c->index);
        tls_fail(c, "SSL_read", e);
    }
    return true;
}

/* Say goodbye with close_notify (best effort: whatever is in flight is
 * dropped anyway) and free the SSL; the socket is closed after. */
static void tls_close(struct conn *c)
{
    SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
}
#else
static void tls_setup(void)
{
    fprintf(stderr, "echo_load: --tls: built without TLS (OpenSSL was not "
                    "found when the benchmarks were configured)\n");
    exit(2);
}
static void tls_handshake(struct conn *c, const char *name)
{
    (void)c;
    (void)name;
}
static void pump_send_tls(struct conn *c)
{
    (void)c;
}
static bool pump_recv_tls(struct conn *c)
{
    (void)c;
    return false;
}
static void tls_close(struct conn *c)
{
    (void)c;
}
#endif

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of the sorted samples, in microseconds. */
static double quantile_us(double q)
{
    size_t i = (size_t)(q * (double)nsamples);
    if (i >= nsamples)
        i = nsamples - 1;
    return (double)samples[i] / 1000.0;
}

/*
 * User + system CPU time of process pid, ns: fields 14 and 15 of
 * /proc/PID/stat, counted from the ')' that closes the command name (which
 * may itself hold spaces and parentheses). Clock-tick resolution.
 */
static int64_t proc_cpu_ns(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        bench_fail("server %ld: %s: %s", pid, path, strerror(errno));
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long utime, stime;
    /* After ")": state, then fields 4..13, then utime and stime. */
    if (!p || sscanf(p + 1,
                     " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                     "%llu %llu",
                     &utime, &stime) != 2)
        bench_fail("server %ld: cannot parse %s", pid, path);
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return (int64_t)((utime + stime) * 1000000000ull / (unsigned long)hz);
}

static int open_conn(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    if (strcmp(host, "::1") == 0) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*a);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_fail("socket: %s", strerror(errno));
    /* Blocking connect: on loopback it completes or fails at once. */
    if (connect(fd, (struct sockaddr *)&ss, len) < 0)
        bench_fail("connect to %s port %d: %s", host, port, strerror(errno));
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        bench_fail("TCP_NODELAY: %s", strerror(errno));
    return fd;
}

static void set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        bench_fail("O_NONBLOCK: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--tls") == 0) {
        tls = true;
        argc--;
        argv++;
    }
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: echo_load [--tls] HOST PORT CONNECTIONS SIZE "
                        "SECONDS NAME [SERVER_PID]\n");
        return 2;
    }
    if (tls)
        tls_setup();
    const char *host = argv[1];
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "localhost") != 0)
        bench_fail("refusing host '%s': loopback only (127.0.0.1, ::1, "
                   "localhost)", host);
    int port = (int)bench_parse_long(argv[2], "port", 1, 65535);
    long nconns = bench_parse_long(argv[3], "connection count", 1, MAX_CONNS);
    size = (size_t)bench_parse_long(argv[4], "size", 1, MAX_SIZE);
    long seconds = bench_parse_long(argv[5], "duration (seconds)", 1, 600);
    const char *name = argv[6];
    long server_pid =
        argc == 8 ? bench_parse_long(argv[7], "server pid", 1, INT32_MAX) : 0;
    if (server_pid)
        proc_cpu_ns(server_pid); /* fail now, not after the run */

    bench_guard((unsigned)seconds + 20);

    samples = bench_alloc_touched(MAX_SAMPLES * sizeof(*samples));
    struct conn *conns = calloc((size_t)nconns, sizeof(*conns));
    if (!conns)
        bench_fail("out of memory");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        bench_fail("epoll_create1: %s", strerror(errno));

    uint64_t rng = BENCH_SEED;
    for (long i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->index = (uint32_t)i;
        c->pattern = malloc(size + PATTERN_SLACK);
        if (!c->pattern)
            bench_fail("out of memory");
        for (size_t j = 0; j < size + PATTERN_SLACK; j++)
            c->pattern[j] = (unsigned char)(bench_rand(&rng) >> 56);
        c->fd = open_conn(host, port);
        if (tls)
            tls_handshake(c, name);
        set_nonblocking(c->fd);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            bench_fail("epoll_ctl: %s", strerror(errno));
    }

    int64_t t0 = bench_wall_ns();
    int64_t m_start = t0 + WARMUP_NS;
    int64_t m_end = m_start + (int64_t)seconds * 1000000000;
    int64_t last_done = t0;
    bool full = false, measuring = false;
    int64_t cpu_start = 0, cpu_end = 0;
    for (long i = 0; i < nconns; i++) {
        start_message(&conns[i], t0);
        pump_send(&conns[i]);
    }

    struct epoll_event evs[256];
    int64_t now = t0;
    while (now < m_end && !full) {
        int n = epoll_wait(epfd, evs, 256, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bench_fail("epoll_wait: %s", strerror(errno));
        }
        now = bench_wall_ns();
        if (!measuring && now >= m_start) {
            measuring = true;
            if (server_pid)
                cpu_start = proc_cpu_ns(server_pid);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if ((e & EPOLLOUT) && c->sent < size)
                pump_send(c);
            if (!(e & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            if (!pump_recv(c)) {
                if (e & EPOLLERR)
                    bench_fail("connection %u: socket error",
                               (unsigned)c->index);
                continue;
            }
            /* A whole round trip. */
            int64_t done = bench_wall_ns();
            last_done = done;
            if (done >= m_start && done < m_end && !full) {
                int64_t rtt = done - c->t_start;
                samples[nsamples++] =
                    rtt > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
                if (nsamples == MAX_SAMPLES) {
                    full = true;
                    m_end = done;
                }
            }
            c->seq++;
            start_message(c, done);
            pump_send(c);
        }
        if (now - last_done > STALL_NS)
            bench_fail("no echo completed for %.1f s: server stalled",
                       (double)STALL_NS / 1e9);
    }
    if (server_pid)
        cpu_end = proc_cpu_ns(server_pid);

    for (long i = 0; i < nconns; i++) {
        if (tls)
            tls_close(&conns[i]);
        close(conns[i].fd);
        free(conns[i].pattern);
    }
    free(conns);
    close(epfd);
#ifdef BENCH_TLS
    SSL_CTX_free(tls_ctx);
#endif

    if (nsamples == 0)
        bench_fail("no round trip completed in the measured interval");
    double secs = (double)(m_end - m_start) / 1e9;
    qsort(samples, nsamples, sizeof(*samples), cmp_u32);
    char line[256];
    snprintf(line, sizeof(line), "%s_rps", name);
    bench_print(line, (double)nsamples / secs, "req/s");
    snprintf(line, sizeof(line), "%s_p50", name);
    bench_print(line, quantile_us(0.50), "us");
    snprintf(line, sizeof(line), "%s_p99", name);
    bench_print(line, quantile_us(0.99), "us");
    if (server_pid) {
        snprintf(line, sizeof(line), "%s_cpu", name);
        bench_print(line, (double)(cpu_end - cpu_start) / (double)nsamples,
                    "ns/req");
    }
    free(samples);
    return 0;
}
