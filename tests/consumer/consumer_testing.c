/* SPDX-License-Identifier: MIT */
/*
 * consumer_testing.c - a program's test using the installed testing kit
 * (libcoil-testing, coil/testing.h): a clean body passes, one that leaves
 * a timer behind is caught (.ci/consumers).
 */
#include <coil.h>
#include <coil/testing.h>

#include <errno.h>
#include <stdio.h>

static void noop(void *arg)
{
    (void)arg;
}

static int clean(void *arg)
{
    (void)arg;
    return coil_sleep(COIL_MSEC);
}

static int leaves_timer(void *arg)
{
    (void)arg;
    return coil_loop_call_later(coil_running_loop(), COIL_SEC, noop, NULL,
                                NULL);
}

int main(void)
{
    coil_test_result_t r;
    int a = coil_test_run(clean, NULL, NULL, &r);
    int b = coil_test_run(leaves_timer, NULL, NULL, &r);
    if (a != 0 || b != -ENOTEMPTY || r.timers_left != 1) {
        printf("coil_test_run: %d, %d (%s)\n", a, b, r.message);
        return 1;
    }
    printf("coil_test_run ok: %s\n", r.message);
    return 0;
}
