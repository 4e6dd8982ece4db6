/* SPDX-License-Identifier: MIT */
/*
 * poller_io_uring.c - the Linux io_uring backend, on the raw system calls
 * and the kernel's UAPI header (docs/architecture.md says why not
 * liburing). Chosen with COIL_BACKEND=io_uring or a loop option; a kernel
 * that refuses io_uring_setup (seccomp, io_uring_disabled, older than
 * 5.11) makes the loop fall back to epoll, saying why (poller.c).
 *
 * It keeps the readiness contract of poller.h with one-shot poll
 * requests (IORING_OP_POLL_ADD): a request reports the fd's state when it
 * is armed or when it changes, and is re-armed at the next wait while the
 * fd stays watched, so an fd that stays ready is reported again by every
 * wait: level-triggered, as the loop expects. (A multishot poll reports
 * wake-ups, not levels.) Every wait is one io_uring_enter: it submits
 * what changed since the last one (new polls, re-arms, removals) and
 * waits for completions, with the deadline passed as the enter's own
 * timeout (IORING_ENTER_EXT_ARG), so timers need no second wake-up path.
 *
 * Each fd number has a record: the interest the loop wants, the poll in
 * flight (its mask and a generation number, which with the fd makes the
 * request's user_data), and the identity of the file registered. A
 * completion whose generation is not the one in flight belongs to a
 * request since removed and is dropped.
 *
 * A poll in flight holds a reference to its file. Two things follow:
 *  - Removing interest (mask 0: the loop does this before an owner
 *    closes the fd) submits the removal at once, in its own enter, so
 *    that the close that follows really closes the file (a peer sees the
 *    FIN then, as with epoll), instead of at the next wait.
 *  - A raw fd that the user closes while a poll is in flight stays open
 *    in the kernel until that poll completes or the watcher is removed,
 *    and a re-arm goes by number: if the number was reused meanwhile, the
 *    re-arm watches the new file. Every start of a raw watcher checks the
 *    file's identity (as poll does), so the loop is told of a reused
 *    number there. Known limit, as with libuv's poll handles: remove the
 *    watchers of a raw fd before closing it.
 *
 * Receives by completion (poller.h's recv ops, a stream's reads: see
 * docs/architecture.md) are IORING_OP_RECV requests with a buffer chosen
 * by the kernel from a ring of provided buffers, registered at the first
 * receive; a completion names its buffer, which is the loop's until
 * recv_release puts it back on the ring. A receive's user_data has
 * RECV_BIT set, its own generation and the fd, so that a cancelled one's
 * completion is recognised and its buffer given back at once.
 */
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "poller.h"
#include "sys.h"

/* Ring sizes: submissions per enter before an early flush, and room for
 * completions (the kernel keeps any overflow and hands it over later:
 * IORING_FEAT_NODROP, required). */
#define SQ_ENTRIES 256u
#define CQ_ENTRIES 4096u

/* user_data of a removal request, whose completion is ignored; a poll's
 * is gen << 32 | fd, and fd < 2^31; a receive's gen << 32 | RECV_BIT | fd. */
#define REMOVAL_UD UINT64_MAX
#define RECV_BIT 0x80000000u

/* The provided buffers receives complete into (one ring per poller, set
 * up at the first receive): RBUF_COUNT buffers of RBUF_SIZE bytes, in
 * group 0. A buffer is the kernel's until a completion names it, then the
 * loop's until recv_release; pages never filled cost no memory. */
#define RBUF_COUNT 256u
#define RBUF_SIZE 4096u
#define RBUF_NONE UINT32_MAX

struct fdrec {
    uint32_t tag;      /* the loop's tag */
    uint32_t gen;      /* generation of the last poll submitted */
    uint8_t mask;      /* interest wanted (COIL__EV_*), 0: none */
    uint8_t inflight;  /* interest of the poll in flight, 0: none */
    bool queued;       /* on the arm list */
    bool raw;          /* not COIL__EV_OWNED: check the file at events */
    bool rinflight;    /* a receive is in flight, not cancelled */
    bool rowed;        /* its cancel could not be submitted yet */
    bool rowed_report; /* and is to be reported (recv_cancel's report) */
    uint32_t rgen;     /* generation of the last receive submitted */
    uint32_t rtag;     /* its tag */
    struct coil__file_id id; /* the file registered */
};

struct coil__poller {
    int ring;
    /* submission ring */
    uint32_t *sq_head, *sq_tail, sq_mask;
    uint32_t sq_local; /* our tail: SQEs written, not yet published */
    struct io_uring_sqe *sqes;
    /* completion ring */
    uint32_t *cq_head, *cq_tail, cq_mask;
    struct io_uring_cqe *cqes;
    uint32_t *sq_flags;
    bool skip_success; /* IORING_FEAT_CQE_SKIP */
    /* the mappings, for close */
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_len;
    /* per fd number */
    struct fdrec *fds;
    int nfds;
    /* fds whose poll is to be (re-)armed at the next wait. It always has
     * room for every record that is watched or listed (nlive of them),
     * reserved when a record starts being watched, so that listing an
     * fd (at a completion, in the wait) never fails. */
    int *arm;
    int narm, arm_cap, nlive;
    /* receiving by completion */
    int rstate;        /* 0: not set up yet, 1: ready, -1: unsupported */
    unsigned nrecv;    /* receives the kernel holds (cancelled ones too) */
    unsigned nowed;    /* records whose receive's cancel is owed */
    struct io_uring_buf_ring *br;
    char *rbufs;
    uint16_t br_tail;  /* our tail of the buffer ring */
};

static int enter(int ring, unsigned to_submit, unsigned min_complete,
                 unsigned flags, void *arg, size_t argsz)
{
    return (int)syscall(SYS_io_uring_enter, ring, to_submit, min_complete,
                        flags, arg, argsz);
}

/* ------------------------------------------------------------------ */
/* The rings                                                            */
/* ------------------------------------------------------------------ */

static void unmap(struct coil__poller *p)
{
    if (p->sqes)
        munmap(p->sqes, p->sqes_len);
    if (p->cq_map && p->cq_map != p->sq_map)
        munmap(p->cq_map, p->cq_map_len);
    if (p->sq_map)
        munmap(p->sq_map, p->sq_map_len);
}

static void *map(int ring, size_t len, off_t off)
{
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, ring, off);
    return m == MAP_FAILED ? NULL : m;
}

static int setup(struct io_uring_params *par)
{
    return COIL__SYS(COIL__SYS_IO_URING_SETUP,
                     (int)syscall(SYS_io_uring_setup, SQ_ENTRIES, par));
}

static int ur_open(struct coil__poller **out)
{
    struct coil__poller *p = coil__calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    struct io_uring_params par;
    memset(&par, 0, sizeof(par));
    par.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
                IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    par.cq_entries = CQ_ENTRIES;
    p->ring = setup(&par);
    if (p->ring < 0 && errno == EINVAL) {
        /* A kernel before 5.19 knows neither flag of the last two. */
        memset(&par, 0, sizeof(par));
        par.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        par.cq_entries = CQ_ENTRIES;
        p->ring = setup(&par);
    }
    int err = 0;
    if (p->ring < 0) {
        /* The kernel's ENOMEM here is the ring's locked memory (charged to
         * RLIMIT_MEMLOCK before 5.12), not the allocator's: say so, so
         * that the loop falls back to epoll instead of failing. */
        err = errno == ENOMEM ? -ENOBUFS : -errno;
        coil__free(p);
        return err;
    }
    /* (The kernel makes the ring's fd close-on-exec itself.) */
    const unsigned need =
        IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG;
    if ((par.features & need) != need) {
        err = -ENOSYS; /* before 5.11: use epoll */
        goto fail;
    }
    p->skip_success = (par.features & IORING_FEAT_CQE_SKIP) != 0;

    p->sq_map_len = par.sq_off.array + par.sq_entries * sizeof(uint32_t);
    p->cq_map_len =
        par.cq_off.cqes + par.cq_entries * sizeof(struct io_uring_cqe);
    if (p->cq_map_len > p->sq_map_len)
        p->sq_map_len = p->cq_map_len;
    p->sq_map = map(p->ring, p->sq_map_len, IORING_OFF_SQ_RING);
    if (!p->sq_map)
        goto fail_errno;
    p->cq_map = p->sq_map; /* IORING_FEAT_SINGLE_MMAP */
    p->sqes_len = par.sq_entries * sizeof(struct io_uring_sqe);
    p->sqes = map(p->ring, p->sqes_len, IORING_OFF_SQES);
    if (!p->sqes)
        goto fail_errno;

    char *sq = p->sq_map, *cq = p->cq_map;
    p->sq_head = (uint32_t *)(sq + par.sq_off.head);
    p->sq_tail = (uint32_t *)(sq + par.sq_off.tail);
    p->sq_mask = *(uint32_t *)(sq + par.sq_off.ring_mask);
    p->sq_flags = (uint32_t *)(sq + par.sq_off.flags);
    uint32_t *array = (uint32_t *)(sq + par.sq_off.array);
    for (uint32_t i = 0; i < par.sq_entries; i++)
        array[i] = i; /* slot i of the ring is SQE i, always */
    p->sq_local = *p->sq_tail;
    p->cq_head = (uint32_t *)(cq + par.cq_off.head);
    p->cq_tail = (uint32_t *)(cq + par.cq_off.tail);
    p->cq_mask = *(uint32_t *)(cq + par.cq_off.ring_mask);
    p->cqes = (struct io_uring_cqe *)(cq + par.cq_off.cqes);
    *out = p;
    return 0;

fail_errno:
    err = -errno;
fail:
    unmap(p);
    close(p->ring);
    coil__free(p);
    return err;
}

static bool remove_poll(struct coil__poller *p, int fd);
static bool cancel_recv(struct coil__poller *p, int fd, bool report);
static void recvs_settle(struct coil__poller *p);
static int submit(struct coil__poller *p, unsigned min_complete,
                  unsigned flags, const struct timespec *ts);

static void ur_close(struct coil__poller *p)
{
    /* Closing the ring lets the kernel drop its polls later, on a work
     * queue: remove them here, so that each file is let go now (a peer
     * sees the FIN of a socket closed next). Receives are cancelled and
     * waited for: their buffers are unmapped next. */
    bool any = false;
    for (int fd = 0; fd < p->nfds; fd++) {
        if (p->fds[fd].inflight)
            any |= remove_poll(p, fd);
        if (p->fds[fd].rinflight || p->fds[fd].rowed)
            any |= cancel_recv(p, fd, false);
    }
    if (any)
        (void)submit(p, 0, IORING_ENTER_GETEVENTS, NULL);
    recvs_settle(p);
    unmap(p);
    close(p->ring); /* cancels every request in flight */
    /* A receive the kernel still held after a second: its buffers stay
     * mapped (1 MiB lost) rather than be written after reuse. */
    if (p->br && p->nrecv == 0) {
        munmap(p->br, RBUF_COUNT * sizeof(struct io_uring_buf));
        munmap(p->rbufs, (size_t)RBUF_COUNT * RBUF_SIZE);
    }
    coil__free(p->fds);
    coil__free(p->arm);
    coil__free(p);
}

/* Publish the SQEs written and hand them to the kernel, waiting for
 * min_complete completions (with GETEVENTS in flags) up to ts. Returns
 * 0, 1 if the wait was interrupted or timed out, or a negative errno
 * that cannot be retried. */
static int submit(struct coil__poller *p, unsigned min_complete,
                  unsigned flags, const struct timespec *ts)
{
    __atomic_store_n(p->sq_tail, p->sq_local, __ATOMIC_RELEASE);
    unsigned pending =
        p->sq_local - __atomic_load_n(p->sq_head, __ATOMIC_ACQUIRE);
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof(arg));
    struct __kernel_timespec kts;
    if (ts) {
        kts.tv_sec = ts->tv_sec;
        kts.tv_nsec = ts->tv_nsec;
        arg.ts = (uint64_t)(uintptr_t)&kts;
    }
    int r = COIL__SYS(COIL__SYS_IO_URING_ENTER,
                      enter(p->ring, pending, min_complete,
                            flags | IORING_ENTER_EXT_ARG, &arg,
                            sizeof(arg)));
    if (r >= 0)
        return 0;
    switch (errno) {
    case EINTR:  /* a signal: zero events */
    case ETIME:  /* the timeout passed */
        return 1;
    case EAGAIN: /* out of memory for requests for now: next time */
    case EBUSY:  /* completions overflowing: the reap makes room */
        return 0;
    default:
        return -errno;
    }
}

/* A free SQE, submitting what is queued first if the ring is full. */
static struct io_uring_sqe *get_sqe(struct coil__poller *p)
{
    for (int tries = 0; tries < 2; tries++) {
        uint32_t head = __atomic_load_n(p->sq_head, __ATOMIC_ACQUIRE);
        if (p->sq_local - head <= p->sq_mask) {
            struct io_uring_sqe *sqe = &p->sqes[p->sq_local & p->sq_mask];
            memset(sqe, 0, sizeof(*sqe));
            p->sq_local++;
            return sqe;
        }
        if (submit(p, 0, 0, NULL) < 0)
            break;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Interest                                                             */
/* ------------------------------------------------------------------ */

static int grow_fds(struct coil__poller *p, int fd)
{
    struct fdrec *t = coil__fd_table_grow(p->fds, &p->nfds, fd, sizeof(*t));
    if (!t)
        return -ENOMEM;
    p->fds = t;
    return 0;
}

/* Put fd on the arm list (it has room: see struct coil__poller). */
static void queue_arm(struct coil__poller *p, int fd)
{
    struct fdrec *r = &p->fds[fd];
    if (!r->queued) {
        r->queued = true;
        p->arm[p->narm++] = fd;
    }
}

/* Room on the arm list for one more live record. */
static int reserve_arm(struct coil__poller *p)
{
    if (p->arm_cap > p->nlive)
        return 0;
    if (p->arm_cap > INT32_MAX / 2)
        return -ENOMEM;
    int cap = p->arm_cap ? p->arm_cap * 2 : 64;
    int *a = coil__realloc(p->arm, (size_t)cap * sizeof(*a));
    if (!a)
        return -ENOMEM;
    p->arm = a;
    p->arm_cap = cap;
    return 0;
}

/* Ask the kernel to drop fd's poll in flight; its completion (and the
 * removal's) will be stale. Returns false if no SQE could be had. */
static bool remove_poll(struct coil__poller *p, int fd)
{
    struct fdrec *r = &p->fds[fd];
    struct io_uring_sqe *sqe = get_sqe(p);
    if (!sqe)
        return false;
    sqe->opcode = IORING_OP_POLL_REMOVE;
    sqe->fd = -1;
    sqe->addr = (uint64_t)r->gen << 32 | (uint32_t)fd;
    sqe->user_data = REMOVAL_UD;
    if (p->skip_success)
        sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
    r->inflight = 0;
    return true;
}

static int ur_watch(struct coil__poller *p, int fd, unsigned old_mask,
                    unsigned mask, uint32_t tag)
{
    if (mask == 0) {
        if (fd >= p->nfds)
            return 0;
        struct fdrec *r = &p->fds[fd];
        bool was_live = r->mask || r->queued;
        r->mask = 0;
        /* The owner may close fd next: let go of the file now. If no
         * SQE can be had, the removal is owed: the fd stays listed (in
         * the room it had while watched) and the next wait retries. */
        if (r->inflight && remove_poll(p, fd))
            (void)submit(p, 0, 0, NULL);
        if (r->inflight && was_live)
            queue_arm(p, fd);
        else if (was_live && !r->queued)
            p->nlive--;
        return 0;
    }
    /* An owned fd is coil's own, open, and names the file registered for
     * as long as it is watched: no system call here. A raw one is
     * checked, and named by its identity. */
    bool owned = mask & COIL__EV_OWNED;
    mask &= COIL__EV_READ | COIL__EV_WRITE;
    struct coil__file_id id = {0};
    if (!owned && !coil__file_identify(fd, &id))
        return -EBADF;
    int err = grow_fds(p, fd);
    if (err)
        return err;
    struct fdrec *r = &p->fds[fd];
    bool joins = !r->mask && !r->queued;
    if (joins && (err = reserve_arm(p)) < 0)
        return err;
    /* Two files that share an inode and a mode (two eventfds) look
     * alike: for those a raw start always re-arms by number. */
    bool other = !r->mask ||
                 (!owned && (!coil__file_same(&id, &r->id) || id.mode != -1));
    /* A raw file new to this record: one that open and fstat accept but
     * poll cannot watch (an O_PATH fd) is refused now, as epoll does,
     * rather than reported closed at the next wait. */
    int fl;
    if (!owned && other &&
        ((fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_PATH)))
        return -EBADF;
    int fresh = old_mask && r->mask && !coil__file_same(&id, &r->id);
    /* A poll in flight on another file, or for other directions, goes;
     * the next wait arms the one wanted. (Removal then addition in one
     * submission: the kernel takes SQEs in order.) A poll on another
     * file goes at once: it holds that file open, and what the new one
     * reports may depend on the old one's close (a pipe's last reader). */
    if (r->inflight && (other || r->inflight != mask)) {
        if (!remove_poll(p, fd))
            return -ENOMEM;
        if (other)
            (void)submit(p, 0, 0, NULL);
    }
    p->nlive += joins;
    r->mask = (uint8_t)mask;
    r->raw = !owned;
    r->tag = tag;
    r->id = id;
    if (!r->inflight)
        queue_arm(p, fd);
    return fresh;
}

/* ------------------------------------------------------------------ */
/* Waiting                                                              */
/* ------------------------------------------------------------------ */

/* SQEs for the fds on the arm list. Returns -EAGAIN if the kernel took
 * no more submissions for now (the fds left stay listed). */
static int arm_queued(struct coil__poller *p)
{
    int i = 0;
    for (; i < p->narm; i++) {
        int fd = p->arm[i];
        struct fdrec *r = &p->fds[fd];
        if (!r->mask && r->inflight && !remove_poll(p, fd))
            break; /* a removal still owed: try again next wait */
        if (!r->mask || r->inflight) {
            r->queued = false;
            p->nlive -= !r->mask; /* neither listed nor watched now */
            continue;
        }
        struct io_uring_sqe *sqe = get_sqe(p);
        if (!sqe)
            break;
        r->queued = false;
        r->gen++;
        r->inflight = r->mask;
        sqe->opcode = IORING_OP_POLL_ADD;
        sqe->fd = fd;
        uint32_t events = ((r->mask & COIL__EV_READ) ? POLLIN : 0) |
                          ((r->mask & COIL__EV_WRITE) ? POLLOUT : 0);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        events = events << 16 | events >> 16; /* the kernel's layout */
#endif
        sqe->poll32_events = events;
        sqe->user_data = (uint64_t)r->gen << 32 | (uint32_t)fd;
    }
    if (i == p->narm) {
        p->narm = 0;
        return 0;
    }
    memmove(p->arm, p->arm + i, (size_t)(p->narm - i) * sizeof(*p->arm));
    p->narm -= i;
    return -EAGAIN;
}

static bool cq_empty(const struct coil__poller *p)
{
    return __atomic_load_n(p->cq_tail, __ATOMIC_ACQUIRE) == *p->cq_head;
}

/* ------------------------------------------------------------------ */
/* Receiving by completion                                              */
/* ------------------------------------------------------------------ */

static void buf_give(struct coil__poller *p, uint32_t bid)
{
    struct io_uring_buf *b = &p->br->bufs[p->br_tail & (RBUF_COUNT - 1)];
    b->addr = (uint64_t)(uintptr_t)(p->rbufs + (size_t)bid * RBUF_SIZE);
    b->len = RBUF_SIZE;
    b->bid = (uint16_t)bid;
    p->br_tail++;
    __atomic_store_n(&p->br->tail, p->br_tail, __ATOMIC_RELEASE);
}

/* Map and register the buffer ring: 0, -ENOTSUP (a kernel before 5.19)
 * or -ENOMEM. */
static int rbufs_setup(struct coil__poller *p)
{
    size_t rlen = RBUF_COUNT * sizeof(struct io_uring_buf);
    size_t blen = (size_t)RBUF_COUNT * RBUF_SIZE;
    void *r = mmap(NULL, rlen, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return -ENOMEM;
    void *b = mmap(NULL, blen, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) {
        munmap(r, rlen);
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)r;
    reg.ring_entries = RBUF_COUNT;
    reg.bgid = 0;
    if (syscall(SYS_io_uring_register, p->ring, IORING_REGISTER_PBUF_RING,
                &reg, 1) < 0) {
        int err = errno == ENOMEM ? -ENOMEM : -ENOTSUP;
        munmap(r, rlen);
        munmap(b, blen);
        return err;
    }
    p->br = r;
    p->rbufs = b;
    p->br_tail = 0;
    for (uint32_t i = 0; i < RBUF_COUNT; i++)
        buf_give(p, i);
    return 0;
}

static bool cancel_recv(struct coil__poller *p, int fd, bool report);

static int ur_recv(struct coil__poller *p, int fd, size_t len, uint32_t tag)
{
    /* A ring that cannot be set up (an old kernel, the locked-memory
     * limit, no address space) leaves this loop to readiness for good,
     * rather than have each read try again. */
    if (p->rstate == 0)
        p->rstate = rbufs_setup(p) ? -1 : 1;
    if (p->rstate < 0)
        return -ENOTSUP;
    int err = grow_fds(p, fd);
    if (err)
        return err;
    struct fdrec *r = &p->fds[fd];
    if (r->rinflight)
        return -EBUSY;
    /* The cancel owed to the last receive goes first: it names that
     * receive's generation, which the next one changes. */
    if (r->rowed && !cancel_recv(p, fd, false))
        return -ENOMEM;
    struct io_uring_sqe *sqe = get_sqe(p);
    if (!sqe)
        return -ENOMEM;
    r->rgen++;
    r->rinflight = true;
    r->rtag = tag;
    p->nrecv++;
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = fd;
    sqe->len = len < RBUF_SIZE ? (uint32_t)len : RBUF_SIZE;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    /* The loop submits a receive only once the socket was found empty:
     * wait for data before the first try (5.19+; older kernels ignore
     * the flag). */
    sqe->ioprio = IORING_RECVSEND_POLL_FIRST;
    sqe->user_data = (uint64_t)r->rgen << 32 | RECV_BIT | (uint32_t)fd;
    return 0;
}

/* Ask the kernel to cancel fd's receive; unless report, its completion
 * is stale from now. Returns false if no SQE could be had (the receive
 * then ends when the socket has data or is closed). */
static bool cancel_recv(struct coil__poller *p, int fd, bool report)
{
    struct fdrec *r = &p->fds[fd];
    r->rinflight = report;
    struct io_uring_sqe *sqe = get_sqe(p);
    if (!sqe) {
        /* Owed: retried at each wait (a receive left running holds its
         * file, its buffers must not go before it ends, and a reported
         * cancel has a task waiting for it). */
        if (!r->rowed) {
            r->rowed = true;
            p->nowed++;
        }
        r->rowed_report = report;
        return false;
    }
    if (r->rowed) {
        r->rowed = false;
        p->nowed--;
    }
    sqe->opcode = IORING_OP_ASYNC_CANCEL;
    sqe->fd = -1;
    sqe->addr = (uint64_t)r->rgen << 32 | RECV_BIT | (uint32_t)fd;
    sqe->user_data = REMOVAL_UD;
    if (p->skip_success)
        sqe->flags = IOSQE_CQE_SKIP_SUCCESS;
    return true;
}

static void ur_recv_cancel(struct coil__poller *p, int fd, bool report)
{
    if (fd < p->nfds && p->fds[fd].rinflight && cancel_recv(p, fd, report))
        (void)submit(p, 0, 0, NULL);
}

static void ur_recv_release(struct coil__poller *p, uint32_t buf)
{
    if (buf < RBUF_COUNT)
        buf_give(p, buf);
}

/* A receive's completion: 1 if it made an event in *ev, 0 if stale. */
static int recv_done(struct coil__poller *p, const struct io_uring_cqe *c,
                     struct coil__event *ev)
{
    p->nrecv--;
    uint32_t bid = c->flags & IORING_CQE_F_BUFFER
                       ? c->flags >> IORING_CQE_BUFFER_SHIFT
                       : RBUF_NONE;
    int fd = (int)((uint32_t)c->user_data & ~RECV_BIT);
    uint32_t gen = (uint32_t)(c->user_data >> 32);
    struct fdrec *r = fd < p->nfds ? &p->fds[fd] : NULL;
    if (r && r->rowed && r->rgen == gen) {
        r->rowed = false; /* it ended before its cancel went */
        p->nowed--;
    }
    if (!r || !r->rinflight || r->rgen != gen) {
        if (bid < RBUF_COUNT)
            buf_give(p, bid); /* cancelled: its bytes go with the fd */
        return 0;
    }
    r->rinflight = false;
    if (c->res <= 0 && bid < RBUF_COUNT) {
        buf_give(p, bid); /* named with no bytes (older kernels) */
        bid = RBUF_NONE;
    }
    ev->fd = fd;
    ev->events = COIL__EV_RECV;
    ev->tag = r->rtag;
    ev->res = c->res;
    ev->buf = bid < RBUF_COUNT ? bid : RBUF_NONE;
    ev->data = bid < RBUF_COUNT ? p->rbufs + (size_t)bid * RBUF_SIZE : NULL;
    if (c->res > 0 && bid >= RBUF_COUNT)
        ev->res = -EIO; /* bytes without a buffer: never seen */
    return 1;
}

/* Closing: wait (a little) for the receives the kernel still holds, so
 * that none writes into a buffer about to be unmapped. */
static void recvs_settle(struct coil__poller *p)
{
    for (int tries = 0; p->nrecv > 0 && tries < 100; tries++) {
        for (int fd = 0; fd < p->nfds && p->nowed; fd++)
            if (p->fds[fd].rowed)
                (void)cancel_recv(p, fd, false);
        struct timespec ts = {0, 10000000};
        if (submit(p, 1, IORING_ENTER_GETEVENTS, &ts) < 0)
            break;
        uint32_t head = *p->cq_head;
        uint32_t tail = __atomic_load_n(p->cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++) {
            const struct io_uring_cqe *c = &p->cqes[head & p->cq_mask];
            if (c->user_data != REMOVAL_UD &&
                ((uint32_t)c->user_data & RECV_BIT))
                p->nrecv--;
        }
        __atomic_store_n(p->cq_head, head, __ATOMIC_RELEASE);
    }
}

/* Turn up to max completions into events. */
static int reap(struct coil__poller *p, struct coil__event *out, int max)
{
    uint32_t head = *p->cq_head;
    uint32_t tail = __atomic_load_n(p->cq_tail, __ATOMIC_ACQUIRE);
    int n = 0;
    for (; head != tail && n < max; head++) {
        const struct io_uring_cqe *c = &p->cqes[head & p->cq_mask];
        if (c->user_data == REMOVAL_UD)
            continue;
        if ((uint32_t)c->user_data & RECV_BIT) {
            n += recv_done(p, c, &out[n]);
            continue;
        }
        int fd = (int)(uint32_t)c->user_data;
        uint32_t gen = (uint32_t)(c->user_data >> 32);
        if (fd >= p->nfds)
            continue;
        struct fdrec *r = &p->fds[fd];
        if (!r->inflight || r->gen != gen)
            continue; /* removed since: stale */
        r->inflight = 0;
        if (c->res == -ECANCELED) {
            /* Cancelled by the kernel, not by us: ask again. */
            if (r->mask)
                queue_arm(p, fd);
            continue;
        }
        if (!r->mask)
            continue;
        unsigned ev = 0;
        if (c->res < 0 && c->res != -EBADF) {
            /* The kernel could not arm it now (-ENOMEM, -EAGAIN): ask
             * again at the next wait rather than call the fd gone. */
            queue_arm(p, fd);
            continue;
        }
        struct coil__file_id id;
        if (c->res < 0 || (r->raw && (!coil__file_identify(fd, &id) ||
                                      !coil__file_same(&id, &r->id)))) {
            /* -EBADF: closed before the poll was armed; or a raw fd's
             * number closed since (the poll held the old file open) or
             * naming another file now. */
            ev = COIL__EV_INVALID;
        } else {
            if (c->res & POLLIN)
                ev |= COIL__EV_READ;
            if (c->res & POLLOUT)
                ev |= COIL__EV_WRITE;
            if (c->res & (POLLERR | POLLHUP | POLLNVAL))
                ev |= COIL__EV_READ | COIL__EV_WRITE;
            queue_arm(p, fd); /* level-triggered: ask again next wait */
        }
        out[n].fd = fd;
        out[n].tag = r->tag;
        out[n].events = ev;
        n++;
    }
    __atomic_store_n(p->cq_head, head, __ATOMIC_RELEASE);
    return n;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Completions that carry no event (a removed poll's -ECANCELED, a failed
 * removal's) also end the kernel's wait: reap them and wait again for
 * what is left of the timeout, so that a wait never returns early with
 * nothing. An interrupted wait is zero events, as the contract says.
 */
static int ur_wait(struct coil__poller *p, int64_t timeout_ns,
                   struct coil__event *out, int max)
{
    int64_t deadline =
        timeout_ns > 0 ? coil__add_sat(now_ns(), timeout_ns) : 0;
    for (;;) {
        if (p->nowed)
            for (int fd = 0; fd < p->nfds && p->nowed; fd++)
                if (p->fds[fd].rowed)
                    (void)cancel_recv(p, fd, p->fds[fd].rowed_report);
        int err = arm_queued(p);
        if (err && err != -EAGAIN)
            return err;
        /* Fds left unarmed or cancels owed (no SQE to be had) must not
         * wait: poll. */
        int64_t left = timeout_ns;
        if (timeout_ns > 0 && (left = deadline - now_ns()) < 0)
            left = 0;
        unsigned min =
            left != 0 && !err && !p->nowed && cq_empty(p) ? 1 : 0;
        struct timespec ts = {(time_t)(left / 1000000000),
                              (long)(left % 1000000000)};
        int r = submit(p, min, IORING_ENTER_GETEVENTS,
                       left > 0 && min ? &ts : NULL);
        if (r < 0)
            return r;
        int n = reap(p, out, max);
        if (n > 0 || r > 0 || min == 0)
            return n;
    }
}

const struct coil__poller_ops coil__poller_io_uring = {
    .name = "io_uring",
    .open = ur_open,
    .close = ur_close,
    .watch = ur_watch,
    .wait = ur_wait,
    .recv = ur_recv,
    .recv_size = RBUF_SIZE,
    .recv_cancel = ur_recv_cancel,
    .recv_release = ur_recv_release,
};
