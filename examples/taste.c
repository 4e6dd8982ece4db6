/* SPDX-License-Identifier: MIT */
/* taste.c - the snippet shown in README.md, kept compiling by CI. */
#include <coil.h>
#include <stdio.h>

static int fetch(void *arg)
{
    int err = coil_sleep(100 * COIL_MSEC); /* suspends this task only */
    if (err)
        return err; /* -ECANCELED if cancelled while asleep */
    printf("%s done\n", (char *)arg);
    return 21;
}

static int main_task(void *arg)
{
    (void)arg;
    coil_loop_t *loop = coil_running_loop();
    char name_a[] = "a", name_b[] = "b";
    coil_task_t *a, *b;
    coil_task_spawn(loop, fetch, name_a, &a);
    coil_task_spawn(loop, fetch, name_b, &b); /* both sleep at once */
    int sum = coil_task_join(a) + coil_task_join(b);
    coil_task_unref(a);
    coil_task_unref(b);
    return sum;
}

int main(void)
{
    printf("result %d\n", coil_run(main_task, NULL)); /* 42, after 100 ms */
}
