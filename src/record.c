/* SPDX-License-Identifier: MIT */
/*
 * record.c - recording and replaying the seam's results (sys.h), for the
 * testing kit's coil_test_record / coil_test_replay. Test build only.
 *
 * Recording keeps, in order, every result the loop's thread got from
 * the calls wrapped with COIL__RR_* (the I/O calls on sockets and pipes,
 * with the bytes they read and the addresses they gave), every batch of
 * I/O events the poller returned (after the seed's shuffle), and every
 * reading of the monotonic clock. Replaying hands the same results back
 * in the same order without making the calls: nothing is read from or
 * written to a peer, nothing waits. A program that makes the same calls
 * in the same order then runs the same schedule. An accepted connection
 * is a fresh unconnected socket in a replay (the loop needs an fd to
 * watch), and a batch of events names each fd by its registration's tag,
 * so that a replayed fd of another number is still found.
 *
 * When the replay meets a call the record does not have next (the
 * program did something else: it diverged) or runs past its end, it says
 * where, stops replaying and lets the calls through for real: the run
 * then fails, and coil__rr_end reports the divergence.
 *
 * Only the thread that began is recorded or replayed (the mode is
 * thread-local); the buffer is plain malloc's, outside coil's allocator,
 * so that recording changes no allocation count and no allocation fault.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "poller.h"
#include "sys.h"

enum rr_kind {
    RR_RET = 1, /* a result (and its errno) */
    RR_IN,      /* a result, and the bytes it read */
    RR_ADDR,    /* a result, the bytes, and an address */
    RR_POLL,    /* a batch of I/O events */
    RR_CLOCK,   /* a reading of the clock */
};

struct rr_entry {
    uint8_t kind;
    uint8_t call;
    uint16_t pad;
    int32_t err;
    int64_t ret;
    uint32_t len;  /* bytes following: data, or address, or events */
    uint32_t len2; /* RR_ADDR: of which the address's (at the end) */
};

#define RR_MAGIC "COILRR1\n"

/* Entries start 8-byte aligned: their payloads are padded to 8. */
#define PAD(n) (((size_t)(n) + 7) & ~(size_t)7)

struct rr_header {
    char magic[8];
    uint64_t sched_seed;
    uint64_t entries;
};

_Thread_local int coil__rr_mode;
/* After a replay stopped: the clock goes on from its last replayed
 * reading, not from this machine's (clock.c). */
_Thread_local bool coil__rr_rebase;
_Thread_local int64_t coil__rr_last_clock, coil__rr_clock_offset;

static struct {
    unsigned char *buf;
    size_t len, cap, pos;
    uint64_t entries, at;
    char *path;
    bool replay;
    bool diverged;
    bool clock_replayed;
    unsigned long seeds[3]; /* shuffle, chaos, sched: given back at end */
    char why[200];
} rr;

/* The record or replay cannot go on: say why, stop (the calls go
 * through for real from now), and let the clock carry on from where the
 * replay left it. */
static void __attribute__((format(printf, 1, 2))) stop(const char *fmt, ...)
{
    if (!rr.diverged) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(rr.why, sizeof(rr.why), fmt, ap);
        va_end(ap);
    }
    rr.diverged = true;
    if (coil__rr_mode == 2 && rr.clock_replayed)
        coil__rr_rebase = true;
    coil__rr_mode = 0;
}

static void rr_free(void)
{
    free(rr.buf);
    free(rr.path);
    memset(&rr, 0, sizeof(rr));
}

static bool put(const void *p, size_t n)
{
    if (rr.len + n > rr.cap) {
        size_t cap = rr.cap ? rr.cap : 64 * 1024;
        while (cap < rr.len + n)
            cap *= 2;
        unsigned char *b = realloc(rr.buf, cap);
        if (!b)
            return false;
        rr.buf = b;
        rr.cap = cap;
    }
    memcpy(rr.buf + rr.len, p, n);
    rr.len += n;
    return true;
}

static void record(enum rr_kind kind, enum coil__sys_call call, int64_t ret,
                   int err, const void *data, size_t len, const void *addr,
                   size_t alen)
{
    struct rr_entry e = {.kind = (uint8_t)kind,
                         .call = (uint8_t)call,
                         .err = err,
                         .ret = ret,
                         .len = (uint32_t)(len + alen),
                         .len2 = (uint32_t)alen};
    static const char zeros[8];
    size_t pad = PAD(len + alen) - (len + alen);
    if (!put(&e, sizeof(e)) || (len && !put(data, len)) ||
        (alen && !put(addr, alen)) || (pad && !put(zeros, pad))) {
        stop("out of memory recording");
        return;
    }
    rr.entries++;
}

static const char *call_name(int call)
{
    switch (call) {
    case COIL__SYS_ACCEPT: return "accept";
    case COIL__SYS_CONNECT: return "connect";
    case COIL__SYS_RECV: return "recv/read";
    case COIL__SYS_SEND: return "send/write";
    case COIL__SYS_RECVFROM: return "recvfrom";
    case COIL__SYS_SENDTO: return "sendto";
    case COIL__SYS_SHUTDOWN: return "shutdown";
    case COIL__SYS_SOERROR: return "SO_ERROR";
    case COIL__SYS_MEM_RECV: return "a memory pair's receive";
    case COIL__SYS_MEM_SEND: return "a memory pair's send";
    default: return "";
    }
}

static const char *kind_name(int kind)
{
    static const char *names[] = {"?", "result", "read", "read with address",
                                  "poll", "clock"};
    return kind > 0 && kind <= RR_CLOCK ? names[kind] : "?";
}

/* The next entry, if it is of this kind and call; else the replay has
 * diverged: said, and stopped (the calls go through for real from now). */
static const struct rr_entry *next(enum rr_kind kind,
                                   enum coil__sys_call call)
{
    if (rr.pos < rr.len && rr.pos + sizeof(struct rr_entry) > rr.len) {
        stop("the record is damaged at entry %llu (cut short)",
             (unsigned long long)rr.at);
        return NULL;
    }
    if (rr.pos + sizeof(struct rr_entry) > rr.len) {
        stop("the run went on past the record's end (%llu entries) with a "
             "%s",
             (unsigned long long)rr.entries, kind_name(kind));
        return NULL;
    }
    const struct rr_entry *e = (const void *)(rr.buf + rr.pos);
    if (e->len2 > e->len || PAD(e->len) > rr.len - rr.pos - sizeof(*e)) {
        stop("the record is damaged at entry %llu",
             (unsigned long long)rr.at);
        return NULL;
    }
    if (e->kind != kind || (kind != RR_POLL && kind != RR_CLOCK &&
                            e->call != (uint8_t)call)) {
        stop("at entry %llu the run asked for a %s%s%s where the record "
             "has a %s%s%s",
             (unsigned long long)rr.at, kind_name(kind),
             *call_name(call) ? " of " : "", call_name(call),
             kind_name(e->kind), *call_name(e->call) ? " of " : "",
             call_name(e->call));
        return NULL;
    }
    rr.pos += sizeof(*e) + PAD(e->len);
    rr.at++;
    return e;
}

/* ------------------------------------------------------------------ */
/* The hooks (sys.h)                                                    */
/* ------------------------------------------------------------------ */

bool coil__rr_replaying(void)
{
    return coil__rr_mode == 2;
}

void coil__rr_record_ret(enum coil__sys_call call, int64_t ret, int err)
{
    record(RR_RET, call, ret, ret < 0 ? err : 0, NULL, 0, NULL, 0);
}

/* A failed call's errno: 1..4095, or the record is damaged. */
static bool errno_ok(const struct rr_entry *e)
{
    return e->ret >= 0 || (e->err > 0 && e->err < 4096);
}

int64_t coil__rr_replay_ret(enum coil__sys_call call, int64_t lo,
                            int64_t hi, bool *ok)
{
    const struct rr_entry *e = next(RR_RET, call);
    *ok = e != NULL;
    if (!e)
        return 0;
    if (e->ret < lo || e->ret > hi || !errno_ok(e)) {
        stop("the record is damaged at entry %llu (a result of %lld)",
             (unsigned long long)(rr.at - 1), (long long)e->ret);
        *ok = false;
        return 0;
    }
    if (e->ret < 0)
        errno = e->err;
    return e->ret;
}

void coil__rr_record_in(enum coil__sys_call call, int64_t ret, int err,
                        const void *buf, const void *addr,
                        const unsigned *addrlen, unsigned addrcap)
{
    size_t len = ret > 0 && buf ? (size_t)ret : 0;
    /* What the call filled of the caller's buffer (an address may be cut
     * to it), and, beside it, the address's whole length. */
    unsigned full = ret >= 0 && addr && addrlen ? *addrlen : 0;
    size_t alen = full < addrcap ? full : addrcap;
    record(addr ? RR_ADDR : RR_IN, call, ret, ret < 0 ? err : 0, buf, len,
           addr, alen);
    if (addr && !rr.diverged) { /* the whole length, in the entry */
        struct rr_entry *e =
            (void *)(rr.buf + rr.len - PAD(len + alen) - sizeof(*e));
        e->pad = (uint16_t)(full > UINT16_MAX ? UINT16_MAX : full);
    }
}

int64_t coil__rr_replay_in(enum coil__sys_call call, void *buf, size_t cap,
                           void *addr, unsigned *addrlen, bool *ok)
{
    const struct rr_entry *e = next(addr ? RR_ADDR : RR_IN, call);
    *ok = e != NULL;
    if (!e)
        return 0;
    const unsigned char *data = (const unsigned char *)(e + 1);
    size_t len = e->len - e->len2;
    if ((buf && e->ret > 0 && (uint64_t)e->ret != len) || e->ret < -1 ||
        !errno_ok(e)) {
        stop("the record is damaged at entry %llu (a read of %lld bytes "
             "holds %zu)",
             (unsigned long long)(rr.at - 1), (long long)e->ret, len);
        *ok = false;
        return 0;
    }
    if (len > cap) { /* the program asked for less than was recorded */
        stop("at entry %llu the run read into %zu bytes where the record "
             "has %zu",
             (unsigned long long)(rr.at - 1), cap, len);
        *ok = false;
        return 0;
    }
    if (len)
        memcpy(buf, data, len);
    if (addr && addrlen) {
        size_t alen = e->len2 < *addrlen ? e->len2 : *addrlen;
        memcpy(addr, data + len, alen);
        *addrlen = e->pad;
    }
    if (e->ret < 0)
        errno = e->err;
    return e->ret;
}

int coil__rr_placeholder(int family)
{
    /* An fd the loop can watch and the stream can wrap, in place of a
     * connection that exists only in the record. */
    int dom = family == AF_INET6 ? AF_INET6
              : family == AF_UNIX ? AF_UNIX
                                  : AF_INET;
    int fd = socket(dom, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return fd;
}

void coil__rr_unsupported(const char *what)
{
    if (!coil__rr_mode || rr.diverged)
        return;
    stop("the run called %s, which %s", what,
         coil__rr_mode == 1 ? "is not recorded" : "a replay cannot give back");
}

/* A poll's event as it is kept in a record: what a readiness event has
 * (receives by completion are not made while recording: net.c). */
struct rr_event {
    int32_t fd;
    uint32_t events, tag;
};

void coil__rr_record_poll(const struct coil__event *ev, int n, int err)
{
    struct rr_event out[COIL__POLLER_BATCH];
    for (int i = 0; i < n && i < COIL__POLLER_BATCH; i++)
        out[i] = (struct rr_event){ev[i].fd, ev[i].events, ev[i].tag};
    record(RR_POLL, 0, n, n < 0 ? err : 0, out,
           n > 0 ? (size_t)n * sizeof(*out) : 0, NULL, 0);
}

int coil__rr_replay_poll(struct coil__event *ev, int max, bool *ok)
{
    const struct rr_entry *e = next(RR_POLL, 0);
    *ok = e != NULL;
    if (!e)
        return 0;
    int64_t n = e->ret;
    if (n > max || (n > 0 && (uint64_t)n * sizeof(struct rr_event) != e->len) ||
        (n < 0 && !errno_ok(e))) {
        stop("the record is damaged at entry %llu (a poll of %lld events "
             "holds %u bytes)",
             (unsigned long long)(rr.at - 1), (long long)n, e->len);
        *ok = false;
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        struct rr_event r;
        memcpy(&r, (const char *)(e + 1) + i * sizeof(r), sizeof(r));
        ev[i] = (struct coil__event){.fd = r.fd, .events = r.events,
                                     .tag = r.tag};
    }
    return n < 0 ? -e->err : (int)n;
}

int64_t coil__rr_clock(int64_t real)
{
    if (coil__rr_mode == 1) {
        record(RR_CLOCK, 0, real, 0, NULL, 0, NULL, 0);
        return real;
    }
    const struct rr_entry *e = next(RR_CLOCK, 0);
    if (e && rr.clock_replayed && e->ret < coil__rr_last_clock) {
        stop("the record is damaged at entry %llu (the clock went back)",
             (unsigned long long)(rr.at - 1));
        e = NULL;
    }
    if (!e) { /* stopped here: time goes on from the last reading */
        coil__rr_rebase = false;
        coil__rr_clock_offset =
            rr.clock_replayed ? coil__rr_last_clock - real : 0;
        return real + coil__rr_clock_offset;
    }
    rr.clock_replayed = true;
    coil__rr_last_clock = e->ret;
    return e->ret;
}

/* ------------------------------------------------------------------ */
/* Beginning and ending (the kit's calls)                               */
/* ------------------------------------------------------------------ */

int coil__rr_begin(const char *path, bool replay)
{
    if (!path || !*path)
        return -EINVAL;
    if (rr.path || coil__rr_mode)
        return -EBUSY;
    if (!(rr.path = strdup(path)))
        return -ENOMEM;
    rr.seeds[0] = coil__shuffle_seed();
    rr.seeds[1] = coil__chaos_seed();
    rr.seeds[2] = coil__sched_seed();
    coil__rr_rebase = false;
    coil__rr_clock_offset = 0;
    if (!replay) {
        struct rr_header h = {.sched_seed = coil__sched_seed()};
        memcpy(h.magic, RR_MAGIC, 8);
        /* Check now that the file can be written: better at the start
         * than after the run worth keeping. */
        FILE *f = fopen(path, "wb");
        if (!f) {
            int err = -errno;
            rr_free();
            return err;
        }
        fclose(f);
        if (!put(&h, sizeof(h))) {
            rr_free();
            return -ENOMEM;
        }
        coil__rr_mode = 1;
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = -errno;
        rr_free();
        return err;
    }
    int err = 0;
    for (;;) {
        unsigned char chunk[65536];
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n && !put(chunk, n)) {
            err = -ENOMEM;
            break;
        }
        if (n < sizeof(chunk)) {
            if (ferror(f))
                err = -EIO;
            break;
        }
    }
    fclose(f);
    struct rr_header h;
    if (!err && rr.len < sizeof(h))
        err = -EILSEQ;
    if (!err) {
        memcpy(&h, rr.buf, sizeof(h));
        if (memcmp(h.magic, RR_MAGIC, 8) != 0)
            err = -EILSEQ;
    }
    if (err) {
        rr_free();
        return err;
    }
    rr.entries = h.entries;
    rr.pos = sizeof(h);
    rr.replay = true;
    /* The seeded choices the loop still makes itself (the order of
     * timers against I/O, the clock's lateness) follow the record's. */
    coil__seeds_set(0, 0, (unsigned long)h.sched_seed);
    coil__rr_mode = 2;
    return 0;
}

int coil__rr_end(uint64_t *entries, char *why, size_t why_len)
{
    if (!rr.path)
        return -EINVAL;
    int err = 0;
    if (rr.replay) {
        if (!rr.diverged && rr.pos < rr.len) {
            rr.diverged = true;
            snprintf(rr.why, sizeof(rr.why),
                     "the run ended at entry %llu of the record's %llu",
                     (unsigned long long)rr.at,
                     (unsigned long long)rr.entries);
        }
        if (entries)
            *entries = rr.at;
        if (rr.diverged)
            err = -EILSEQ;
    } else {
        struct rr_header h;
        memcpy(&h, rr.buf, sizeof(h));
        h.entries = rr.entries;
        memcpy(rr.buf, &h, sizeof(h));
        if (entries)
            *entries = rr.entries;
        FILE *f = fopen(rr.path, "wb");
        if (!f)
            err = -errno;
        else {
            if (fwrite(rr.buf, 1, rr.len, f) != rr.len)
                err = -EIO;
            if (fclose(f) != 0 && !err)
                err = -EIO;
        }
        if (!err && rr.diverged)
            err = strstr(rr.why, "memory") ? -ENOMEM : -ENOTSUP;
    }
    if (why && why_len)
        snprintf(why, why_len, "%s", rr.diverged ? rr.why : "");
    coil__rr_mode = 0;
    coil__rr_rebase = false;
    coil__rr_clock_offset = 0;
    coil__seeds_set(rr.seeds[0], rr.seeds[1], rr.seeds[2]);
    rr_free();
    return err;
}
