/* SPDX-License-Identifier: MIT */
/*
 * fuzz_common.h - what the libFuzzer targets (tests/fuzz_*.c) share:
 *
 *  - a counting allocator installed for the whole process, which counts
 *    coil's live blocks and can be armed to fail a run of allocations
 *    (all of them, or only those made by one task);
 *  - the safety timer that turns a run which stops making progress into
 *    an abort with a message (scaled by COIL_TEST_TIMEOUT_MULTIPLIER);
 *  - reading the input past its end as zeros, and counting open fds.
 *
 * Each target is one translation unit, so everything here is static.
 */
#ifndef COIL_FUZZ_COMMON_H
#define COIL_FUZZ_COMMON_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "coil.h"

/* ------------------------------------------------------------------ */
/* The counting allocator                                               */
/* ------------------------------------------------------------------ */

static struct {
    long live;          /* blocks coil holds */
    bool armed;         /* failures may be injected now */
    coil_task_t *only;  /* if set, only this task's allocations fail */
    unsigned skip;      /* allocations to let through first */
    unsigned failures;  /* allocations still to fail */
    bool hit;           /* one failed since fuzz_mem_arm */
} fuzz_mem;

static inline bool fuzz_mem_should_fail(void)
{
    if (!fuzz_mem.armed || !fuzz_mem.failures ||
        (fuzz_mem.only && coil_current_task() != fuzz_mem.only))
        return false;
    if (fuzz_mem.skip) {
        fuzz_mem.skip--;
        return false;
    }
    fuzz_mem.failures--;
    fuzz_mem.hit = true;
    return true;
}

static inline void *fuzz_mem_malloc(size_t size, void *ctx)
{
    (void)ctx;
    if (fuzz_mem_should_fail())
        return NULL;
    void *p = malloc(size);
    if (p)
        fuzz_mem.live++;
    return p;
}

static inline void *fuzz_mem_realloc(void *ptr, size_t size, void *ctx)
{
    (void)ctx;
    return fuzz_mem_should_fail() ? NULL : realloc(ptr, size);
}

static inline void fuzz_mem_free(void *ptr, void *ctx)
{
    (void)ctx;
    if (ptr)
        fuzz_mem.live--;
    free(ptr);
}

/* Install the allocator, once per process. Returns 0 or coil's error. */
static inline int fuzz_mem_install(void)
{
    static const coil_allocator_t counting = {
        fuzz_mem_malloc, fuzz_mem_realloc, fuzz_mem_free, NULL};
    static bool installed;
    if (installed)
        return 0;
    installed = true;
    return coil_set_allocator(&counting);
}

/* Fail count allocations after letting skip through (of task only, if
 * not NULL); they fail while fuzz_mem.armed is set. */
static inline void fuzz_mem_arm(coil_task_t *only, unsigned skip, unsigned count)
{
    fuzz_mem.only = only;
    fuzz_mem.skip = skip;
    fuzz_mem.failures = count;
    fuzz_mem.hit = false;
}

static inline void fuzz_mem_disarm(void)
{
    fuzz_mem.armed = false;
    fuzz_mem_arm(NULL, 0, 0);
}

/* ------------------------------------------------------------------ */
/* The rest                                                             */
/* ------------------------------------------------------------------ */

/* Byte i of the input, 0 past its end. */
static inline uint8_t fuzz_byte(const uint8_t *data, size_t size, size_t i)
{
    return i < size ? data[i] : 0;
}

/* Arm a timer that calls on_hang(arg) if the loop still runs seconds
 * (times COIL_TEST_TIMEOUT_MULTIPLIER) from now. Returns 0 or -errno. */
static inline int fuzz_hang_timer(coil_loop_t *loop, int seconds,
                           void (*on_hang)(void *), void *arg)
{
    const char *mult = getenv("COIL_TEST_TIMEOUT_MULTIPLIER");
    int scale = mult ? atoi(mult) : 1;
    int64_t delay = (int64_t)seconds * COIL_SEC * (scale > 1 ? scale : 1);
    return coil_loop_call_later(loop, delay, on_hang, arg, NULL);
}

/* Open fds of this process (/proc/self/fd; -1 without /proc). */
static inline long fuzz_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

#endif /* COIL_FUZZ_COMMON_H */
