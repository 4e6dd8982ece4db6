/* SPDX-License-Identifier: MIT */
/*
 * clock.c - the monotonic clock, in int64_t nanoseconds. On Linux the
 * vDSO makes this ~20-30 ns, which is why the loop caches it rather than
 * reading it every iteration.
 */
#include <time.h>

#include "internal.h"
#include "sys.h"

#ifdef COIL_TESTING
/*
 * The test build's virtual clock (T8 in docs/testing.md): when on, time
 * moves only when a test advances it or, with autojump, when the loop
 * would otherwise sleep until its next timer.
 */
static int64_t fake_now = -1;
bool coil__clock_autojump;

void coil__clock_fake(bool on, bool autojump)
{
    fake_now = on ? COIL_SEC : -1;
    coil__clock_autojump = on && autojump;
}

void coil__clock_advance(int64_t ns)
{
    if (fake_now >= 0)
        fake_now = coil__add_sat(fake_now, ns);
}
#endif

int64_t coil__clock_real(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * COIL_SEC + ts.tv_nsec;
}

int64_t coil__clock_now(void)
{
#ifdef COIL_TESTING
    /* The virtual clock, and the record of a run (record.c). */
    int64_t now = fake_now >= 0 ? fake_now : coil__clock_real();
    if (coil__rr_mode)
        return coil__rr_clock(now);
    if (coil__unlikely(coil__rr_rebase)) {
        /* A replay stopped: on from its last reading. */
        coil__rr_clock_offset = coil__rr_last_clock - now;
        coil__rr_rebase = false;
    }
    return now + coil__rr_clock_offset;
#else
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * COIL_SEC + ts.tv_nsec;
#endif
}

int64_t coil_now(void)
{
    return coil__clock_now();
}
