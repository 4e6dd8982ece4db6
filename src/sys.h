/* SPDX-License-Identifier: MIT */
/*
 * sys.h - the syscall seam. The few system calls whose failures cannot be
 * provoked with real fds in a test (epoll_ctl failing, epoll_wait or poll
 * interrupted, eventfd/pipe creation failing, a wake-up write failing) go
 * through these wrappers. In a normal build they are the plain calls. In
 * the test build (COIL_TESTING) a test can arm any of them to fail on its
 * Nth call with a chosen errno, a chosen number of times (fault.c).
 *
 * The wrappers keep the libc convention (-1 and errno) so each call site
 * reads like the syscall it is.
 */
#ifndef COIL_SYS_H
#define COIL_SYS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum coil__sys_call {
    COIL__SYS_EPOLL_CREATE,
    COIL__SYS_EPOLL_CTL,
    COIL__SYS_EPOLL_WAIT,
    COIL__SYS_POLL,
    COIL__SYS_KQUEUE,
    COIL__SYS_KEVENT,
    COIL__SYS_EVENTFD,
    COIL__SYS_PIPE,
    COIL__SYS_WAKE_WRITE,
    COIL__SYS_MMAP,
    COIL__SYS_MADVISE,
    COIL__SYS_MPROTECT,
    COIL__SYS_EPOLL_PWAIT2, /* ENOSYS: an older kernel */
    /* sockets (net.c): the calls whose EINTR, EAGAIN and peer errors the
     * suspending socket calls must handle */
    COIL__SYS_ACCEPT,
    COIL__SYS_CONNECT,
    COIL__SYS_RECV,
    COIL__SYS_SEND,
    COIL__SYS_RECVFROM,
    COIL__SYS_SENDTO,
    COIL__SYS_SENDFILE,
    COIL__SYS_PREAD, /* sendfile's copy when sendfile(2) cannot be used */
    /* subprocesses (process.c) */
    COIL__SYS_SPAWN, /* posix_spawnp (EAGAIN: out of processes) */
    COIL__SYS_PIDFD, /* pidfd_open (ENOSYS, EPERM: the SIGCHLD fallback) */
    /* only recorded and replayed (record.c), never failed */
    COIL__SYS_SHUTDOWN, /* shutdown(SHUT_WR) of a stream */
    COIL__SYS_SOERROR,  /* a connection's outcome (SO_ERROR) */
    COIL__SYS_MEM_RECV, /* the fault met by a memory pair's receive */
    COIL__SYS_MEM_SEND, /* and by its send */
    /* the io_uring backend (poller_io_uring.c) */
    COIL__SYS_IO_URING_SETUP, /* ENOSYS, EPERM: the fallback to epoll */
    COIL__SYS_IO_URING_ENTER,
    /* threads (the executor's workers, a loop group's loops, debug mode's
     * watchdog): pthread_create (EAGAIN: out of threads) */
    COIL__SYS_THREAD,
    COIL__SYS_COUNT
};

#ifdef COIL_TESTING
/* Returns the errno the call must fail with now, or 0 to let it run. */
int coil__fault_hit(enum coil__sys_call call);
/*
 * Arm call to fail with err, starting at its nth next use (1 = the next
 * one), for count uses in a row (0 disarms). Test builds only.
 */
void coil__fault_arm(enum coil__sys_call call, unsigned nth, unsigned count,
                     int err);
void coil__fault_reset(void);
/* How many times call went through the seam (injected failures
 * included) since it was last armed or reset. Test builds only. */
unsigned coil__fault_calls(enum coil__sys_call call);
#define COIL__FAULT(call) coil__fault_hit(call)
/* Chaos I/O (fault.c): the seed from COIL_CHAOS_IO, 0 when off; and how
 * many of n bytes a send/recv on fd may move now (n when off, or fd is
 * not a stream socket). */
unsigned long coil__chaos_seed(void);
/* Hold chaos off (a test that checks exact syscall counts or lengths). */
void coil__chaos_pause(bool paused);
/* Start this thread's chaos and shuffle sequences over from their seeds
 * (a fuzz run replays the same on its own as within a long session). */
void coil__chaos_restart(void);
size_t coil__chaos_len(int fd, size_t n);
#define COIL__CHAOS_LEN(fd, n) coil__chaos_len(fd, n)
/* Shuffled I/O events (fault.c): the seed from COIL_SHUFFLE, 0 when off;
 * shuffle n items of size bytes (at most 64) in place when on. */
unsigned long coil__shuffle_seed(void);
/* Set the seeds (0: off), over the environment's, and restart this
 * thread's sequences (the testing kit's coil_test_seed). The schedule
 * seed has no variable of its own: only the kit sets it. */
void coil__seeds_set(unsigned long shuffle, unsigned long chaos,
                     unsigned long sched);
unsigned long coil__sched_seed(void);
void coil__shuffle(void *items, size_t n, size_t size);
/* The schedule seed's choices (fault.c): whether the timers due run
 * before the batch this iteration's I/O made ready (false without the
 * seed); how late, in [0, max_ns), a virtual-clock jump lands (0 without
 * it). */
bool coil__sched_flip(void);
int64_t coil__sched_late(int64_t max_ns);
/* The trace of the loop thread's schedule (fault.c): a running hash of
 * what happened, in order. */
enum coil__trace_kind {
    COIL__TRACE_STEP = 1, /* a task's step: its id */
    COIL__TRACE_IO,       /* an I/O event: tag << 32 | events */
    COIL__TRACE_JUMP,     /* the virtual clock jumped: by how much */
    COIL__TRACE_FLIP,     /* the seeded timers-first choice */
};
void coil__trace(enum coil__trace_kind kind, uint64_t value);
uint64_t coil__trace_hash(uint64_t *events);
void coil__trace_reset(void);
#define COIL__TRACE(kind, value) coil__trace(kind, value)

/*
 * Record and replay (record.c): 1 while this thread records the results
 * of the calls wrapped below, 2 while it replays them (the calls are not
 * made), else 0.
 */
extern _Thread_local int coil__rr_mode;
/* A replay stopped: the clock goes on from its last replayed reading
 * (clock.c adds the offset; rebase asks it to be computed). */
extern _Thread_local bool coil__rr_rebase;
extern _Thread_local int64_t coil__rr_last_clock, coil__rr_clock_offset;
struct coil__event;
bool coil__rr_replaying(void);
void coil__rr_record_ret(enum coil__sys_call call, int64_t ret, int err);
int64_t coil__rr_replay_ret(enum coil__sys_call call, int64_t lo,
                            int64_t hi, bool *ok);
void coil__rr_record_in(enum coil__sys_call call, int64_t ret, int err,
                        const void *buf, const void *addr,
                        const unsigned *addrlen, unsigned addrcap);
static inline unsigned coil__rr_cap(const void *addrlen)
{
    return addrlen ? *(const unsigned *)addrlen : 0;
}
int64_t coil__rr_replay_in(enum coil__sys_call call, void *buf, size_t cap,
                           void *addr, unsigned *addrlen, bool *ok);
int coil__rr_placeholder(int family);
/* A call record and replay do not cover (sendfile): a record made
 * through it is refused, a replay that meets it has diverged. */
void coil__rr_unsupported(const char *what);
void coil__rr_record_poll(const struct coil__event *ev, int n, int err);
int coil__rr_replay_poll(struct coil__event *ev, int max, bool *ok);
int64_t coil__rr_clock(int64_t real);
/* Begin recording to path, or replaying from it (-EINVAL, -EBUSY,
 * -ENOMEM, -EILSEQ: not a record, or fopen's error); end: write the
 * record out, or check the replay went to its end (-EILSEQ and why if
 * it diverged). */
int coil__rr_begin(const char *path, bool replay);
int coil__rr_end(uint64_t *entries, char *why, size_t why_len);

/* A call whose outcome is its result (a count, a status, -1 and errno):
 * recorded, or replayed instead of made. A replayed result outside
 * [lo, hi] (a count above what was asked) is a damaged record. */
#define COIL__RR(call, lo, hi, expr)                                           \
    __extension__({                                                            \
        __typeof__(expr) coil__v = 0;                                          \
        bool coil__ok = false;                                                 \
        if (__builtin_expect(coil__rr_mode == 2, 0))                           \
            coil__v = (__typeof__(expr))coil__rr_replay_ret(                   \
                call, (int64_t)(lo), (int64_t)(hi), &coil__ok);                \
        if (!coil__ok) {                                                       \
            coil__v = (expr);                                                  \
            if (__builtin_expect(coil__rr_mode == 1, 0)) {                     \
                int coil__e = errno;                                           \
                coil__rr_record_ret(call, (int64_t)coil__v, coil__e);          \
                errno = coil__e;                                               \
            }                                                                  \
        }                                                                      \
        coil__v;                                                               \
    })

/* A call that reads into buf (at most cap bytes) and, if addr is not
 * NULL, gives an address (addrlen: socklen_t *): the bytes and the
 * address are recorded with the result. */
#define COIL__RR_IN(call, buf, cap, addr, addrlen, expr)                       \
    __extension__({                                                            \
        __typeof__(expr) coil__v = 0;                                          \
        bool coil__ok = false;                                                 \
        unsigned coil__cap = coil__rr_cap(addrlen);                            \
        if (__builtin_expect(coil__rr_mode == 2, 0))                           \
            coil__v = (__typeof__(expr))coil__rr_replay_in(                    \
                call, buf, cap, addr, (unsigned *)(addrlen), &coil__ok);       \
        if (!coil__ok) {                                                       \
            coil__v = (expr);                                                  \
            if (__builtin_expect(coil__rr_mode == 1, 0)) {                     \
                int coil__e = errno;                                           \
                coil__rr_record_in(call, (int64_t)coil__v, coil__e, buf,       \
                                   addr, (const unsigned *)(addrlen),          \
                                   coil__cap);                                 \
                errno = coil__e;                                               \
            }                                                                  \
        }                                                                      \
        coil__v;                                                               \
    })

/* accept: as COIL__RR_IN with no bytes; a replayed connection is a fresh
 * socket of the address's family (coil__rr_placeholder). */
#define COIL__RR_ACCEPT(addr, addrlen, expr)                                   \
    __extension__({                                                            \
        bool coil__rp = coil__rr_mode == 2;                                    \
        int coil__c = COIL__RR_IN(COIL__SYS_ACCEPT, NULL, 0, addr, addrlen,    \
                                  expr);                                       \
        if (coil__rp && coil__rr_mode == 2 && coil__c >= 0)                    \
            coil__c = coil__rr_placeholder(                                    \
                (addr) ? ((const struct sockaddr *)(addr))->sa_family : 0);    \
        coil__c;                                                               \
    })
#else
#define COIL__FAULT(call) 0
#define COIL__CHAOS_LEN(fd, n) (n)
#define COIL__TRACE(kind, value) ((void)0)
#define COIL__RR(call, lo, hi, expr) (expr)
#define COIL__RR_IN(call, buf, cap, addr, addrlen, expr) (expr)
#define COIL__RR_ACCEPT(addr, addrlen, expr) (expr)
#endif

/* Evaluates to -1 with errno set if call is armed to fail, else expr. */
#define COIL__SYS(call, expr)                                                  \
    __extension__({                                                            \
        int coil__f = COIL__FAULT(call);                                       \
        coil__f ? (errno = coil__f, -1) : (expr);                              \
    })

/* pthread_create through the seam: 0 or its error number (pthread's
 * convention, not -1 and errno), the armed error when armed to fail. */
#define COIL__THREAD_CREATE(thread, attr, fn, arg)                             \
    __extension__({                                                            \
        int coil__f = COIL__FAULT(COIL__SYS_THREAD);                           \
        coil__f ? coil__f : pthread_create(thread, attr, fn, arg);             \
    })

/*
 * As COIL__SYS, but the call runs first and the injected failure replaces
 * its outcome: a signal that interrupted a call whose effect goes on
 * (connect: the connection attempt proceeds after EINTR).
 */
#define COIL__SYS_AFTER(call, expr)                                            \
    __extension__({                                                            \
        __typeof__(expr) coil__r = (expr);                                     \
        int coil__f = COIL__FAULT(call);                                       \
        coil__f ? (errno = coil__f, (__typeof__(expr))-1) : coil__r;           \
    })

#endif /* COIL_SYS_H */
