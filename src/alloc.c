/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the replaceable allocator. Every allocation in coil comes
 * through coil__malloc/realloc/free, so users can plug in their own
 * allocator and tests can count allocations and make the Nth one fail.
 *
 * The count of live blocks lets coil_set_allocator refuse to switch while
 * memory from the old allocator is still out. It is atomic because
 * call_soon_threadsafe allocates on other threads; allocations are pooled
 * on every hot path, so the atomic costs nothing measurable.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *libc_malloc(size_t size, void *ctx)
{
    (void)ctx;
    return malloc(size);
}

static void *libc_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    return realloc(ptr, size);
}

static void libc_free(void *ptr, void *ctx)
{
    (void)ctx;
    free(ptr);
}

static coil_allocator_t current = {libc_malloc, libc_realloc, libc_free, NULL};
static atomic_long live_blocks;

#ifdef COIL_TESTING
/* The testing build's allocation faults (coil/testing.h): the Nth
 * allocation from the arming fails, whatever allocator is installed. */
static atomic_long alloc_total, alloc_fail_at;
static atomic_bool alloc_failed;
/* Random failures: per million allocations, and the seed. */
static atomic_uint alloc_fail_ppm;
static atomic_ulong alloc_fail_seed;

/* Whether the nth allocation fails at random: a hash of (seed, n), so
 * that the same allocations fail again under the same seed. */
static bool random_fail(long n)
{
    unsigned ppm = atomic_load_explicit(&alloc_fail_ppm,
                                        memory_order_relaxed);
    if (coil__likely(ppm == 0))
        return false;
    uint64_t z = atomic_load_explicit(&alloc_fail_seed,
                                      memory_order_relaxed) +
                 (uint64_t)n * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z % 1000000 < ppm;
}

static bool alloc_should_fail(void)
{
    long n = atomic_fetch_add_explicit(&alloc_total, 1,
                                       memory_order_relaxed) + 1;
    long at = atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
    if ((coil__likely(at == 0) || n != at) && !random_fail(n))
        return false;
    atomic_store(&alloc_failed, true);
    return true;
}

void coil__alloc_fail_random(unsigned per_million, unsigned long seed)
{
    if (per_million)
        atomic_store(&alloc_failed, false);
    atomic_store(&alloc_fail_seed, seed);
    /* counted from here, so that a seed picks the same allocations */
    atomic_store(&alloc_total, 0);
    atomic_store(&alloc_fail_at, 0);
    atomic_store(&alloc_fail_ppm, per_million);
}

void coil__alloc_fail_after(long nth)
{
    if (nth > 0) /* turning it off keeps the answer */
        atomic_store(&alloc_failed, false);
    atomic_store(&alloc_fail_at,
                 nth > 0 ? atomic_load(&alloc_total) + nth : 0);
}

bool coil__alloc_failed(void)
{
    return atomic_load(&alloc_failed);
}
#define ALLOC_FAILS() alloc_should_fail()
#else
#define ALLOC_FAILS() false
#endif

long coil__alloc_live(void)
{
    return atomic_load(&live_blocks);
}

int coil_set_allocator(const coil_allocator_t *allocator)
{
    if (allocator &&
        (!allocator->malloc || !allocator->realloc || !allocator->free))
        return -EINVAL;
    if (atomic_load(&live_blocks) != 0)
        return -EBUSY;
    if (allocator)
        current = *allocator;
    else
        current = (coil_allocator_t){libc_malloc, libc_realloc, libc_free,
                                     NULL};
    return 0;
}

void *coil__malloc(size_t size)
{
    if (ALLOC_FAILS())
        return NULL;
    void *p = current.malloc(size ? size : 1, current.ctx);
    if (p)
        atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
    return p;
}

void *coil__calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return NULL;
    void *p = coil__malloc(total);
    if (p)
        memset(p, 0, total);
    return p;
}

void *coil__realloc(void *ptr, size_t size)
{
    if (!ptr)
        return coil__malloc(size);
    if (ALLOC_FAILS())
        return NULL;
    return current.realloc(ptr, size ? size : 1, current.ctx);
}

void coil__free(void *ptr)
{
    if (!ptr)
        return;
    atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    current.free(ptr, current.ctx);
}

_Noreturn void coil__panic(const char *what, const char *file, int line)
{
    int err = errno;
    fprintf(stderr, "coil: fatal: %s failed at %s:%d (errno %d: %s)\n", what,
            file, line, err, strerror(err));
    fflush(stderr);
    abort();
}
