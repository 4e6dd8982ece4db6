/* SPDX-License-Identifier: MIT */
/*
 * explore.h - the cancellation explorer of the testing kit
 * (coil/testing.h, coil_explore) as a cmocka assertion for coil's suite.
 */
#ifndef COIL_TEST_EXPLORE_H
#define COIL_TEST_EXPLORE_H

#include "coil/testing.h"

/* Explore, and fail the test (with the first failure's mode, suspension
 * and message) if any run failed or the target never suspended. */
void explore_assert(const char *name, coil_explore_fn fn, void *arg);

#endif /* COIL_TEST_EXPLORE_H */
