/* SPDX-License-Identifier: MIT */
/*
 * fault.c - syscall fault injection for the test build (see sys.h). Not
 * compiled into the installed library.
 */
#include <stdatomic.h>

#include "sys.h"

struct fault {
    atomic_uint skip;  /* uses still to let through before failing */
    atomic_uint count; /* failures still to inject */
    atomic_int err;
    atomic_uint calls; /* uses since the last arm */
};

static struct fault faults[COIL__SYS_COUNT];

int coil__fault_hit(enum coil__sys_call call)
{
    struct fault *f = &faults[call];
    atomic_fetch_add_explicit(&f->calls, 1, memory_order_relaxed);
    if (atomic_load_explicit(&f->count, memory_order_relaxed) == 0)
        return 0;
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
