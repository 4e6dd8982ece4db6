/* SPDX-License-Identifier: MIT */
/*
 * A program built against an installed coil (.ci/consumers): coil_run
 * makes a loop and runs a task that sleeps 1 ms and returns 42. Exits 0
 * only if coil_run returned 42.
 */
#include <coil.h>
#include <stdio.h>

static int main_task(void *arg)
{
    (void)arg;
    int err = coil_sleep(1 * COIL_MSEC);
    if (err)
        return err;
    return 42;
}

int main(void)
{
    int result = coil_run(main_task, NULL);
    printf("coil_run returned %d\n", result);
    if (result != 42) {
        fprintf(stderr, "consumer: expected 42 (%s)\n",
                result < 0 ? coil_strerror(result) : "wrong result");
        return 1;
    }
    return 0;
}
