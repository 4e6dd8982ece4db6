/* SPDX-License-Identifier: MIT */
/*
 * child_lines.c - a task streaming a child's output line by line as it
 * comes (coil/process.h): the child is a shell loop that prints a line,
 * then sleeps; each line is read from the child's stdout pipe (a coil
 * stream) the moment it is written, while the loop stays free for other
 * tasks. At the end the child is waited for and its exit code printed.
 *
 * Usage: child_lines
 */
#include <coil.h>

#include <stdio.h>

static int run(void *arg)
{
    (void)arg;
    /* exec's argument type is char *const[]: the strings live in arrays
     * (string literals are const under -Wwrite-strings). */
    char sh[] = "sh", c[] = "-c",
         script[] = "for i in 1 2 3 4 5; do echo \"line $i\"; "
                    "sleep 0.02; done; exit 7";
    char *const argv[] = {sh, c, script, NULL};
    coil_process_options_t opts = {.stdout_mode = COIL_STDIO_PIPE};
    coil_process_t *p;
    int err = coil_process_spawn("sh", argv, &opts, &p);
    if (err) {
        fprintf(stderr, "child_lines: spawn: %s\n", coil_strerror(err));
        return err;
    }
    coil_stream_t *out = coil_process_stdout(p);
    char line[256];
    size_t n;
    while ((err = coil_stream_readline(out, line, sizeof(line) - 1, &n)) ==
               0 &&
           n > 0) {
        line[n] = '\0';
        printf("from the child: %s", line);
        fflush(stdout);
    }
    int rc = 0;
    int werr = coil_process_wait(p, &rc);
    coil_process_unref(p);
    if (err || werr) {
        fprintf(stderr, "child_lines: %s\n", coil_strerror(err ? err : werr));
        return err ? err : werr;
    }
    printf("the child exited with %d\n", rc);
    return 0;
}

int main(void)
{
    return coil_run(run, NULL) != 0;
}
