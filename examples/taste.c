/* SPDX-License-Identifier: MIT */
/* taste.c - the snippet shown in README.md, kept compiling by CI. */
#include <coil.h>
#include <stdio.h>

static int64_t start;

static void tick(void *loop)
{
    printf("tick after %lld ms\n",
           (long long)((coil_loop_time(loop) - start) / COIL_MSEC));
}

static void finish(void *fut)
{
    static char msg[] = "done";
    coil_future_set_result(fut, msg);
}

int main(void)
{
    coil_loop_t *loop;
    coil_future_t *fut;
    if (coil_loop_new(&loop) || coil_future_new(loop, &fut))
        return 1;
    start = coil_loop_time(loop);
    coil_call_later(loop, 10 * COIL_MSEC, tick, loop, NULL);
    coil_call_later(loop, 20 * COIL_MSEC, finish, fut, NULL);
    void *result;
    if (coil_loop_run_until_complete(loop, fut) == 0 &&
        coil_future_result(fut, &result) == 0)
        printf("%s\n", (char *)result);
    coil_future_unref(fut);
    coil_loop_free(loop);
}
