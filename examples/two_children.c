/* SPDX-License-Identifier: MIT */
/*
 * two_children.c - a shell pipeline, producer | consumer, with the loop
 * in the middle (coil/process.h): `seq 1 100000` writes numbers, a task
 * copies them from its stdout pipe into the stdin pipe of `wc -l`, with
 * drain as the back-pressure, and closes that pipe at the producer's end
 * so that wc sees the end of its input; then wc's answer is read, and
 * both children are waited for.
 *
 * Usage: two_children
 */
#include <coil.h>

#include <stdio.h>
#include <stdlib.h>

static int copy(coil_stream_t *from, coil_stream_t *to)
{
    char buf[16384];
    for (;;) {
        ssize_t n = coil_stream_read(from, buf, sizeof(buf));
        if (n <= 0)
            return (int)n;
        int err = coil_stream_write(to, buf, (size_t)n);
        if (!err)
            err = coil_stream_drain(to);
        if (err)
            return err;
    }
}

static int run(void *arg)
{
    (void)arg;
    char seq[] = "seq", one[] = "1", last[] = "100000", wc[] = "wc",
         l[] = "-l"; /* exec's char *const[] wants writable strings */
    char *const seq_argv[] = {seq, one, last, NULL};
    char *const wc_argv[] = {wc, l, NULL};
    coil_process_options_t po = {.stdout_mode = COIL_STDIO_PIPE};
    coil_process_options_t co = {.stdin_mode = COIL_STDIO_PIPE,
                                 .stdout_mode = COIL_STDIO_PIPE};
    coil_process_t *producer, *consumer;
    int err = coil_process_spawn("seq", seq_argv, &po, &producer);
    if (err)
        return err;
    err = coil_process_spawn("wc", wc_argv, &co, &consumer);
    if (err) {
        coil_process_kill(producer);
        coil_process_wait(producer, NULL);
        coil_process_unref(producer);
        return err;
    }
    err = copy(coil_process_stdout(producer), coil_process_stdin(consumer));
    /* The end of the producer's output is the end of wc's input. */
    coil_stream_close(coil_process_stdin(consumer));
    char answer[64];
    size_t n = 0;
    int rerr = coil_stream_readline(coil_process_stdout(consumer), answer,
                                    sizeof(answer) - 1, &n);
    answer[n] = '\0';
    int prc = -1, crc = -1;
    coil_process_wait(producer, &prc);
    coil_process_wait(consumer, &crc);
    coil_process_unref(producer);
    coil_process_unref(consumer);
    if (err || rerr)
        return err ? err : rerr;
    printf("seq 1 100000 | wc -l = %ld (exit codes %d and %d)\n",
           strtol(answer, NULL, 10), prc, crc);
    return prc || crc;
}

int main(void)
{
    return coil_run(run, NULL) != 0;
}
