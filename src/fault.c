/* SPDX-License-Identifier: MIT */
/*
 * fault.c - syscall fault injection for the test build (see sys.h),
 * chaos I/O, and the shuffling of I/O events. Not compiled into the
 * installed library.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sys.h"

struct fault {
    atomic_uint skip;  /* uses still to let through before failing */
    atomic_uint count; /* failures still to inject */
    atomic_int err;
    atomic_uint calls; /* uses since the last arm */
};

static struct fault faults[COIL__SYS_COUNT];

static int chaos_hit(enum coil__sys_call call);

int coil__fault_hit(enum coil__sys_call call)
{
    struct fault *f = &faults[call];
    atomic_fetch_add_explicit(&f->calls, 1, memory_order_relaxed);
    if (atomic_load_explicit(&f->count, memory_order_relaxed) == 0)
        return chaos_hit(call);
    unsigned skip = atomic_load(&f->skip);
    if (skip > 0) {
        atomic_store(&f->skip, skip - 1);
        return 0;
    }
    atomic_fetch_sub(&f->count, 1);
    return atomic_load(&f->err);
}

void coil__fault_arm(enum coil__sys_call call, unsigned nth, unsigned count,
                     int err)
{
    struct fault *f = &faults[call];
    atomic_store(&f->count, 0);
    atomic_store(&f->err, err);
    atomic_store(&f->skip, nth ? nth - 1 : 0);
    atomic_store(&f->calls, 0);
    atomic_store(&f->count, count);
}

unsigned coil__fault_calls(enum coil__sys_call call)
{
    return atomic_load(&faults[call].calls);
}

void coil__fault_reset(void)
{
    for (int i = 0; i < COIL__SYS_COUNT; i++)
        coil__fault_arm((enum coil__sys_call)i, 0, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Chaos I/O                                                            */
/* ------------------------------------------------------------------ */

/*
 * With COIL_CHAOS_IO set to a seed (a nonzero number), socket I/O behaves
 * like the slowest, choppiest network the code must survive: about one
 * send/recv/sendto/recvfrom/sendfile in four fails with EAGAIN although
 * the kernel could have moved data, or with EINTR as if a signal came
 * (never twice in a row for the same call, so every operation still
 * makes progress), and on stream sockets
 * each call moves a random length, one byte a quarter of the time. The
 * sequence is reproducible from the seed (per thread).
 */
/* A seed from the environment variable name, read once into *cache
 * (~0 until read): 0 when unset, never ~0. */
static unsigned long env_seed(atomic_ulong *cache, const char *name)
{
    unsigned long seed = atomic_load_explicit(cache, memory_order_relaxed);
    if (seed == ~0UL) {
        const char *v = getenv(name);
        seed = v ? strtoul(v, NULL, 0) : 0;
        if (seed == ~0UL)
            seed = 1;
        atomic_store_explicit(cache, seed, memory_order_relaxed);
    }
    return seed;
}

static atomic_ulong chaos_seed_cache = ~0UL;

unsigned long coil__chaos_seed(void)
{
    return env_seed(&chaos_seed_cache, "COIL_CHAOS_IO");
}

static atomic_bool chaos_paused;

void coil__chaos_pause(bool paused)
{
    atomic_store_explicit(&chaos_paused, paused, memory_order_relaxed);
}

static _Thread_local uint64_t chaos_state;
static _Thread_local unsigned chaos_eagain_last; /* a bit per call */


/* splitmix64: small, fast, and good enough to shuffle outcomes. */
static uint64_t chaos_next(void)
{
    if (!chaos_state)
        chaos_state = coil__chaos_seed() * 0x9e3779b97f4a7c15ULL;
    uint64_t z = (chaos_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int chaos_hit(enum coil__sys_call call)
{
    switch (call) {
    case COIL__SYS_RECV:
    case COIL__SYS_SEND:
    case COIL__SYS_RECVFROM:
    case COIL__SYS_SENDTO:
    case COIL__SYS_SENDFILE:
        break;
    default:
        return 0;
    }
    if (!coil__chaos_seed() ||
        atomic_load_explicit(&chaos_paused, memory_order_relaxed))
        return 0;
    unsigned bit = 1u << call;
    if (chaos_eagain_last & bit) {
        chaos_eagain_last &= ~bit;
        return 0;
    }
    uint64_t r = chaos_next();
    if ((r & 3) != 0)
        return 0;
    chaos_eagain_last |= bit;
    return r & 4 ? EINTR : EAGAIN; /* a signal, or a spurious wake-up */
}

size_t coil__chaos_len(int fd, size_t n)
{
    if (n <= 1 || !coil__chaos_seed() ||
        atomic_load_explicit(&chaos_paused, memory_order_relaxed))
        return n;
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        type != SOCK_STREAM)
        return n; /* datagrams keep their size */
    uint64_t r = chaos_next();
    return (r & 3) == 0 ? 1 : 1 + (size_t)((r >> 2) % n);
}

/* ------------------------------------------------------------------ */
/* Shuffled I/O events                                                  */
/* ------------------------------------------------------------------ */

/*
 * The kernel reports ready fds in an order nobody promises. With
 * COIL_SHUFFLE set to a seed, every batch the poller returns is shuffled
 * before it is dispatched, so a test that passes only because one fd's
 * event happened to come before another's fails under some seed.
 */
static atomic_ulong shuffle_seed_cache = ~0UL;
static _Thread_local uint64_t shuffle_state;

unsigned long coil__shuffle_seed(void)
{
    return env_seed(&shuffle_seed_cache, "COIL_SHUFFLE");
}

void coil__shuffle(void *items, size_t n, size_t size)
{
    if (n < 2 || size > 64 || !coil__shuffle_seed())
        return;
    if (!shuffle_state)
        shuffle_state = coil__shuffle_seed() * 0xd1b54a32d192ed03ULL;
    unsigned char *base = items, tmp[64];
    for (size_t i = n - 1; i > 0; i--) {
        /* xorshift64: the sequence only has to vary with the seed */
        shuffle_state ^= shuffle_state << 13;
        shuffle_state ^= shuffle_state >> 7;
        shuffle_state ^= shuffle_state << 17;
        size_t j = (size_t)(shuffle_state % (i + 1));
        if (j != i) {
            memcpy(tmp, base + i * size, size);
            memcpy(base + i * size, base + j * size, size);
            memcpy(base + j * size, tmp, size);
        }
    }
}

/* ------------------------------------------------------------------ */
/* The schedule's other open choices, and the trace                     */
/* ------------------------------------------------------------------ */

/*
 * With a schedule seed (set only by the testing kit's coil_test_seed),
 * the loop also makes, from that seed, the choices its contract leaves
 * open besides the order of a batch of fds: whether the timers due in an
 * iteration run before or after what that iteration's I/O woke, and how
 * late the virtual clock lands past the deadline it jumps to (a real loop
 * never wakes exactly on time).
 */
static atomic_ulong sched_seed;
static _Thread_local uint64_t sched_state;

static uint64_t sched_next(void)
{
    if (!sched_state)
        sched_state = atomic_load(&sched_seed) * 0x9e3779b97f4a7c15ULL + 1;
    uint64_t z = (sched_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

bool coil__sched_flip(void)
{
    if (!atomic_load_explicit(&sched_seed, memory_order_relaxed))
        return false;
    bool flip = sched_next() & 1;
    coil__trace(COIL__TRACE_FLIP, flip);
    return flip;
}

int64_t coil__sched_late(int64_t max_ns)
{
    if (max_ns <= 0 || !atomic_load_explicit(&sched_seed, memory_order_relaxed))
        return 0;
    return (int64_t)(sched_next() % (uint64_t)max_ns);
}

/*
 * The trace: a hash of the schedule as the loop thread lived it (every
 * task step by the task's id, every I/O event dispatched by its watch's
 * registration tag, the clock's jumps and the seeded choices). Ids and
 * tags are counted per loop, so equal schedules hash equal across runs
 * and processes.
 */
static _Thread_local uint64_t trace_hash = 0xcbf29ce484222325ULL;
static _Thread_local uint64_t trace_events;

void coil__trace(enum coil__trace_kind kind, uint64_t value)
{
    uint64_t h = trace_hash ^ ((uint64_t)kind << 56 ^ value);
    h *= 0x100000001b3ULL;
    trace_hash = h ^ (h >> 29);
    trace_events++;
}

uint64_t coil__trace_hash(uint64_t *events)
{
    if (events)
        *events = trace_events;
    return trace_hash;
}

void coil__trace_reset(void)
{
    trace_hash = 0xcbf29ce484222325ULL;
    trace_events = 0;
}

void coil__seeds_set(unsigned long shuffle, unsigned long chaos,
                     unsigned long sched)
{
    atomic_store(&shuffle_seed_cache, shuffle == ~0UL ? 1 : shuffle);
    atomic_store(&chaos_seed_cache, chaos == ~0UL ? 1 : chaos);
    atomic_store(&sched_seed, sched);
    coil__chaos_restart();
}

unsigned long coil__sched_seed(void)
{
    return atomic_load(&sched_seed);
}

void coil__chaos_restart(void)
{
    chaos_state = 0;
    chaos_eagain_last = 0;
    shuffle_state = 0;
    sched_state = 0;
}
