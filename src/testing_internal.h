/* SPDX-License-Identifier: MIT */
/*
 * testing_internal.h - what the testing kit's files (testing.c,
 * testing_explore.c) share.
 */
#ifndef COIL_TESTING_INTERNAL_H
#define COIL_TESTING_INTERNAL_H

/* An executor's last worker frees it as it exits, just after the
 * shutdown that waited for it returned: wait until every executor
 * thread of the process is gone (10 s at most), before counting
 * allocations. */
void coil__test_wait_executor_threads(void);

#endif /* COIL_TESTING_INTERNAL_H */
