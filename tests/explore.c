/* SPDX-License-Identifier: MIT */
/*
 * explore.c - explore_assert: coil_explore (coil/testing.h) as a cmocka
 * assertion.
 */
#include "explore.h"
#include "helpers.h"

void explore_assert(const char *name, coil_explore_fn fn, void *arg)
{
    coil_explore_result_t r;
    coil_explore(name, fn, arg, &r);
    if (r.failures)
        fail_msg("explore %s: %d of %d runs failed; first: %s at suspension "
                 "%d: %s",
                 name, r.failures, r.runs,
                 coil_explore_mode_name(r.first_mode), r.first_k,
                 r.first_message);
    if (r.suspensions == 0)
        fail_msg("explore %s: the target never suspended", name);
}
