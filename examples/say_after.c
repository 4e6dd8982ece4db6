/* SPDX-License-Identifier: MIT */
/*
 * say_after.c - asyncio's classic: awaiting two delays one after the
 * other takes their sum; running them as two tasks takes the longer one.
 * Usage: say_after
 */
#include <coil.h>

#include <stdio.h>

struct say {
    int64_t delay;
    const char *what;
};

static double elapsed_ms(int64_t start)
{
    coil_loop_t *loop = coil_running_loop();
    return (double)(coil_loop_update_time(loop) - start) / COIL_MSEC;
}

static int say_after(void *arg)
{
    struct say *s = arg;
    int err = coil_sleep(s->delay);
    if (err)
        return err;
    printf("  %s\n", s->what);
    return 0;
}

static int main_task(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    struct say hello = {100 * COIL_MSEC, "hello"};
    struct say world = {200 * COIL_MSEC, "world"};

    printf("one after the other:\n");
    int64_t start = coil_loop_update_time(loop);
    say_after(&hello);
    say_after(&world);
    printf("  took %.0f ms (the sum)\n", elapsed_ms(start));

    printf("as two tasks:\n");
    start = coil_loop_update_time(loop);
    coil_task_t *a, *b;
    int err = coil_task_spawn(loop, say_after, &hello, &a);
    if (!err)
        err = coil_task_spawn(loop, say_after, &world, &b);
    if (err)
        return err;
    coil_task_join(a);
    coil_task_join(b);
    printf("  took %.0f ms (the longer one)\n", elapsed_ms(start));
    coil_task_unref(a);
    coil_task_unref(b);
    return 0;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: say_after\n");
        return 2;
    }
    int err = coil_run(main_task, NULL);
    if (err < 0)
        fprintf(stderr, "say_after: %s\n", coil_strerror(err));
    return err < 0;
}
