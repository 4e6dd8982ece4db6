/* SPDX-License-Identifier: MIT */
/*
 * testing_stream.c - the testing kit's in-memory stream pair
 * (coil/testing.h): two coil streams joined like the ends of a socket
 * pair, over a transport (stream_internal.h) instead of fds.
 *
 * Each direction is a line of chunks, one per send, each readable from a
 * loop time on (the send's time plus the pair's delay). The bytes in a
 * line, arrived or not, count against the buffer size: a send takes what
 * fits and the rest waits in the sending stream, as with a socket's send
 * buffer. A receive takes from the first chunk once it has arrived (at
 * most max_read bytes), or waits on a future the sender completes, or a
 * timer at the first chunk's arrival. A writer waiting for room is
 * called from the ready queue (a node of the line's own: no allocation,
 * so no wake-up is lost to a lack of memory) when a receive makes some,
 * or when the line can never take more (the reader went, or a reset:
 * the send then fails).
 *
 * Lifetime: the pair is shared by its two ends, a receive in progress
 * (it may wake after its own end closed) and a writer's queued call; the
 * last of them frees it. When the loop closes, a task suspended in a receive is
 * abandoned, never to return: the end's close drops what that receive
 * held.
 */
#include <string.h>
#include <sys/un.h>

#include "coil/testing.h"
#include "loop_internal.h"
#include "stream_internal.h"
#include "sys.h"

struct chunk {
    struct chunk *next;
    int64_t ready_at; /* loop time it can be read from */
    size_t len, off;
    char data[];
};

/* One direction: written by one end, read by the other. */
struct line {
    struct chunk *head, *tail;
    size_t queued;        /* bytes in the chunks, not yet read */
    bool eof;             /* the writer ended it (after the chunks) */
    int64_t eof_at;       /* when the end arrives (the delay applies) */
    bool reader_gone;     /* the reading end closed: sends fail */
    bool read_shut;       /* the reading stream left OPEN */
    int err;              /* a reset: what reads and sends fail with */
    coil_future_t *wake;  /* a receive waiting, or NULL */
    coil_handle_t *timer; /* that receive's timer (a chunk not arrived) */
    /* the writer waiting for room */
    void (*wfn)(void *arg, int result);
    void *warg;
    struct coil__ready wnode; /* its call, queued without allocating */
    bool wqueued;
    struct pair *pair;
};

struct pair;

struct end {
    struct pair *pair;
    int side;             /* reads lines[side], writes lines[!side] */
    bool closed;
    bool in_recv;         /* a receive holds the pair */
};

struct pair {
    unsigned refs;        /* the ends not closed, the receives waiting */
    coil_loop_t *loop;
    size_t cap;
    int64_t delay;
    size_t max_read;
    struct line lines[2];
    struct end ends[2];
};

static const struct coil__transport_ops mem_ops;

/* The writer ends the line: the end arrives after the delay, as bytes
 * do. */
static void end_line(struct pair *p, struct line *l)
{
    if (l->eof)
        return;
    l->eof = true;
    l->eof_at = coil__add_sat(coil_loop_time(p->loop), p->delay);
}

/* The end has arrived, and nothing is before it. */
static bool ended(const struct pair *p, const struct line *l)
{
    return l->eof && !l->head && l->eof_at <= coil_loop_time(p->loop);
}

static void drop_chunks(struct line *l)
{
    struct chunk *c = l->head;
    while (c) {
        struct chunk *next = c->next;
        coil__free(c);
        c = next;
    }
    l->head = l->tail = NULL;
    l->queued = 0;
}

static void pair_release(struct pair *p)
{
    if (--p->refs)
        return;
    drop_chunks(&p->lines[0]);
    drop_chunks(&p->lines[1]);
    coil__free(p);
}

/* Wake the receive waiting on l, if any. */
static void wake_reader(struct line *l)
{
    if (l->wake && !coil_future_done(l->wake))
        (void)coil_future_set_result(l->wake, NULL);
}

/* The writer's call, from the ready queue (it holds the pair). */
static void writer_run(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct line *l = coil__container_of(node, struct line, wnode);
    struct pair *p = l->pair;
    l->wqueued = false;
    if (l->wfn)
        l->wfn(l->warg, 0);
    pair_release(p);
}

static void writer_discard(struct coil_loop *loop, struct coil__ready *node)
{
    (void)loop;
    struct line *l = coil__container_of(node, struct line, wnode);
    l->wqueued = false;
    pair_release(l->pair);
}

static const struct coil__ready_ops writer_ops = {writer_run,
                                                  writer_discard};

/* The writer of l may go on: call it soon (once; a queued call that
 * finds the writer stopped does nothing). Never allocates, so no wake-up
 * is lost for want of memory. */
static void wake_writer(struct pair *p, struct line *l)
{
    if (!l->wfn || l->wqueued || coil__loop_closed(p->loop))
        return;
    l->wqueued = true;
    p->refs++;
    l->wnode.ops = &writer_ops;
    coil__ready_push(p->loop, &l->wnode);
}

static bool writable(const struct pair *p, const struct line *l)
{
    return l->queued < p->cap || l->err || l->reader_gone || l->eof;
}

/* ------------------------------------------------------------------ */
/* The transport                                                        */
/* ------------------------------------------------------------------ */

static void timer_fired(void *arg)
{
    struct line *l = arg;
    coil_handle_unref(l->timer);
    l->timer = NULL;
    wake_reader(l);
}

/* Wait until something may have changed on l: a send, a shutdown, a
 * reset, the reading stream's shut, or the first chunk's arrival. */
static int wait_line(struct pair *p, struct line *l)
{
    coil_future_t *f;
    int err = coil_future_new(p->loop, &f);
    if (err)
        return err;
    /* Something on its way: the first chunk, or the end. */
    int64_t at = l->head ? l->head->ready_at : l->eof ? l->eof_at : -1;
    if (at >= 0 &&
        (err = coil_loop_call_at(p->loop, at, timer_fired, l, &l->timer)) !=
            0) {
        coil_future_unref(f);
        return err;
    }
    l->wake = f;
    err = coil_await(f, NULL);
    l->wake = NULL;
    coil_future_unref(f);
    if (l->timer) {
        coil_handle_cancel(l->timer);
        coil_handle_unref(l->timer);
        l->timer = NULL;
    }
    return err;
}

/* A fault aimed at the operation (coil_test_fail), as the socket path
 * meets it: 0 to go on (none, or EINTR and EAGAIN, which a socket's
 * caller retries at once), else the error to return. */
static int op_fault(enum coil__sys_call call)
{
    /* Recorded: a replay meets the same faults (and chaos). */
    int f = COIL__RR(COIL__SYS_MEM_RECV, 0, 4095, coil__fault_hit(call));
    return f == 0 || f == EINTR || f == EAGAIN ? 0 : -f;
}

static ssize_t mem_recv(void *t, void *buf, size_t n, bool wait_first)
{
    (void)wait_first;
    struct end *e = t;
    struct pair *p = e->pair;
    struct line *l = &p->lines[e->side];
    for (;;) {
        if (l->read_shut)
            return -EBADF;
        if (l->err)
            return l->err;
        struct chunk *c = l->head;
        bool ready = c && c->ready_at <= coil_loop_time(p->loop);
        int f;
        if ((ready || ended(p, l)) && (f = op_fault(COIL__SYS_RECV)))
            return f;
        if (ready) {
            size_t k = c->len - c->off;
            if (k > n)
                k = n;
            if (p->max_read && k > p->max_read)
                k = p->max_read;
            memcpy(buf, c->data + c->off, k);
            c->off += k;
            l->queued -= k;
            if (c->off == c->len) {
                l->head = c->next;
                if (!l->head)
                    l->tail = NULL;
                coil__free(c);
            }
            wake_writer(p, l);
            return (ssize_t)k;
        }
        if (ended(p, l))
            return 0;
        p->refs++;
        e->in_recv = true;
        int err = wait_line(p, l);
        e->in_recv = false;
        bool gone = e->closed;
        pair_release(p);
        if (gone)
            return -EBADF;
        if (err)
            return err;
    }
}

static int mem_peek(void *t)
{
    struct end *e = t;
    struct pair *p = e->pair;
    const struct line *l = &p->lines[e->side];
    if (l->err)
        return l->err;
    if (l->head)
        return l->head->ready_at <= coil_loop_time(p->loop) ? 1 : -EAGAIN;
    return ended(p, l) ? 0 : -EAGAIN;
}

static ssize_t mem_send(void *t, const void *buf, size_t n)
{
    struct end *e = t;
    struct pair *p = e->pair;
    struct line *l = &p->lines[!e->side];
    if (l->err)
        return l->err;
    if (l->eof || l->reader_gone)
        return -EPIPE;
    int f = COIL__RR(COIL__SYS_MEM_SEND, 0, 4095,
                     coil__fault_hit(COIL__SYS_SEND));
    if (f == EAGAIN) { /* as a full socket: the writer tries again */
        wake_writer(p, l);
        return -EAGAIN;
    }
    if (f && f != EINTR)
        return -f;
    if (l->queued >= p->cap)
        return -EAGAIN;
    size_t k = p->cap - l->queued;
    if (k > n)
        k = n;
    struct chunk *c = coil__malloc(sizeof(*c) + k);
    if (!c) {
        /* As a kernel short of buffers: not now, try again (the writer
         * is called again next time round; the data waits in the
         * stream, nothing is lost). */
        wake_writer(p, l);
        return -EAGAIN;
    }
    c->next = NULL;
    c->ready_at = coil__add_sat(coil_loop_time(p->loop), p->delay);
    c->len = k;
    c->off = 0;
    memcpy(c->data, buf, k);
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->queued += k;
    wake_reader(l);
    return (ssize_t)k;
}

static int mem_writer_start(void *t, void (*fn)(void *, int), void *arg)
{
    struct end *e = t;
    struct pair *p = e->pair;
    struct line *l = &p->lines[!e->side];
    l->wfn = fn;
    l->warg = arg;
    if (writable(p, l))
        wake_writer(p, l); /* level-triggered, as a watch is */
    return 0;
}

static void cancel_call(coil_handle_t **h)
{
    if (*h) {
        coil_handle_cancel(*h);
        coil_handle_unref(*h);
        *h = NULL;
    }
}

static void mem_writer_stop(void *t)
{
    struct end *e = t;
    struct line *l = &e->pair->lines[!e->side];
    l->wfn = NULL; /* a call still queued finds none */
    l->warg = NULL;
}

static bool mem_writer_busy(const void *t)
{
    const struct end *e = t;
    return e->pair->lines[!e->side].wfn != NULL;
}

static int mem_shutdown(void *t)
{
    struct end *e = t;
    struct line *l = &e->pair->lines[!e->side];
    if (l->err)
        return l->err;
    end_line(e->pair, l);
    wake_reader(l);
    return 0;
}

static void mem_shut_read(void *t)
{
    struct end *e = t;
    struct line *l = &e->pair->lines[e->side];
    l->read_shut = true;
    wake_reader(l);
}

static void mem_close(void *t, bool clean)
{
    (void)clean; /* the end is the same either way (a reset is another
                    call) */
    struct end *e = t;
    struct pair *p = e->pair;
    struct line *in = &p->lines[e->side], *out = &p->lines[!e->side];
    e->closed = true;
    mem_writer_stop(t);
    /* What we sent stays readable, then the end (a FIN); what was sent
     * to us is dropped, and the peer's sends fail from now on. */
    end_line(p, out);
    wake_reader(out);
    in->reader_gone = true;
    drop_chunks(in);
    wake_writer(p, in);
    if (e->in_recv && coil__loop_closed(p->loop)) {
        /* Abandoned in its receive with the loop: drop what it held. */
        e->in_recv = false;
        coil_future_unref(in->wake);
        in->wake = NULL;
        cancel_call(&in->timer);
        pair_release(p);
    }
    pair_release(p);
}

static int mem_address(void *t, struct sockaddr_storage *addr, bool peer)
{
    (void)t;
    (void)peer;
    /* An unnamed Unix-domain socket's, as socketpair(2) gives. */
    addr->ss_family = AF_UNIX;
    return (int)sizeof(sa_family_t);
}

static const struct coil__transport_ops mem_ops = {
    .recv = mem_recv,
    .peek = mem_peek,
    .send = mem_send,
    .writer_start = mem_writer_start,
    .writer_stop = mem_writer_stop,
    .writer_busy = mem_writer_busy,
    .shutdown = mem_shutdown,
    .shut_read = mem_shut_read,
    .close = mem_close,
    .address = mem_address,
};

/* ------------------------------------------------------------------ */
/* The public calls                                                     */
/* ------------------------------------------------------------------ */

int coil_test_stream_pair(const coil_test_stream_options_t *opts,
                          coil_stream_t **a, coil_stream_t **b)
{
    if (a)
        *a = NULL;
    if (b)
        *b = NULL;
    if (!a || !b || a == b)
        return -EINVAL;
    coil_test_stream_options_t o =
        opts ? *opts : (coil_test_stream_options_t){0};
    if (o.delay_ns < 0)
        return -EINVAL;
    coil_loop_t *loop = o.loop ? o.loop : coil_running_loop();
    if (!loop)
        return -EPERM;
    if (coil__loop_closed(loop))
        return -EINVAL;
    struct pair *p = coil__calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->loop = loop;
    p->cap = o.buffer_size ? o.buffer_size : 64 * 1024;
    p->delay = o.delay_ns;
    p->max_read = o.max_read;
    for (int i = 0; i < 2; i++) {
        p->ends[i].pair = p;
        p->ends[i].side = i;
        p->lines[i].pair = p;
    }
    int err = coil__stream_open_transport(&mem_ops, &p->ends[0], loop, a);
    if (err) {
        coil__free(p);
        return err;
    }
    p->refs = 1;
    if ((err = coil__stream_open_transport(&mem_ops, &p->ends[1], loop,
                                           b)) != 0) {
        /* The one end's close releases the pair; the other never was. */
        p->ends[1].closed = true;
        p->lines[0].reader_gone = true;
        coil_stream_abort(*a);
        coil_stream_unref(*a);
        *a = NULL;
        return err;
    }
    p->refs = 2;
    return 0;
}

int coil_test_stream_reset(coil_stream_t *s)
{
    struct end *e = coil__stream_transport(s, &mem_ops);
    if (!e)
        return -EINVAL;
    struct pair *p = e->pair;
    /* The peer: what was on its way to it is lost, and its receives and
     * sends fail from now on. */
    struct line *to_peer = &p->lines[!e->side], *from_peer = &p->lines[e->side];
    drop_chunks(to_peer);
    to_peer->err = -ECONNRESET;
    from_peer->err = -ECONNRESET;
    wake_reader(to_peer);
    wake_writer(p, from_peer);
    return coil_stream_abort(s);
}
