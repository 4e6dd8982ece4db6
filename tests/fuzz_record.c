/* SPDX-License-Identifier: MIT */
/*
 * fuzz_record.c - a libFuzzer target for replaying records (record.c,
 * coil_test_replay_begin): any bytes, taken as the record of a small
 * fixed program, must replay without a crash, a read past their end, a
 * leak or a hang. The run ends with the program's own outcome, -EILSEQ
 * (the record was damaged, or the program went another way than it
 * says), or -ETIMEDOUT (its clock readings made the fixture's limit
 * pass); coil allocations and fds left over abort.
 *
 * The program: two coil streams over a Unix socket pair, a line each
 * way, a 1 ms sleep, a half-close and the rest read to the end. Its
 * recorded runs (under a few chaos seeds, for short reads and spurious
 * EAGAINs) are the seed corpus: with COIL_FUZZ_RECORD_SEEDS=DIR set, the
 * replay program writes them into DIR instead of replaying anything.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coil/testing.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int program(void *arg)
{
    (void)arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    coil_stream_t *a = NULL, *b = NULL;
    int err = coil_stream_open_fd(sv[0], &a);
    if (err) {
        close(sv[0]);
        close(sv[1]);
        return err;
    }
    if ((err = coil_stream_open_fd(sv[1], &b)) != 0) {
        close(sv[1]);
        coil_stream_unref(a);
        return err;
    }
    char line[64], rest[256];
    size_t len = 0;
    if (!(err = coil_stream_write(a, "ping\n", 5)) &&
        !(err = coil_stream_readline(b, line, sizeof(line), &len)) &&
        !(err = coil_stream_write(b, "pong, and some more bytes\n", 26)) &&
        !(err = coil_stream_readline(a, line, sizeof(line), &len)) &&
        !(err = coil_sleep(COIL_MSEC)) &&
        !(err = coil_stream_write(a, "the rest", 8)) &&
        !(err = coil_stream_write_eof(a)))
        err = coil_stream_read_all(b, rest, sizeof(rest), &len);
    (void)coil_stream_at_eof(a);
    coil_stream_unref(a);
    coil_stream_unref(b);
    return err;
}

static const char *record_path(void)
{
    static char path[64];
    if (!path[0])
        snprintf(path, sizeof(path), "/tmp/coil-fuzz-record-%d.rr",
                 (int)getpid());
    return path;
}

/* COIL_FUZZ_RECORD_SEEDS=DIR: record the program under a few chaos
 * seeds into DIR/seed-N, then exit. */
static void make_seeds(const char *dir)
{
    for (unsigned long seed = 0; seed < 4; seed++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/seed-%lu", dir, seed);
        coil_test_options_t o = {.seed = seed, .chaos_io = seed != 0,
                                 .record_path = path};
        coil_test_result_t r;
        int err = coil_test_run(program, NULL, &o, &r);
        if (err) {
            fprintf(stderr, "fuzz_record: seed %lu: %s: %s\n", seed,
                    coil_err_name(err), r.message);
            exit(1);
        }
    }
    exit(0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *seeds = getenv("COIL_FUZZ_RECORD_SEEDS");
    if (seeds && *seeds)
        make_seeds(seeds);
    const char *path = record_path();
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size)) {
        perror(path);
        abort();
    }
    fclose(f);
    coil_test_options_t o = {.replay_path = path,
                             .timeout_ns = 200 * COIL_MSEC};
    coil_test_result_t r;
    int err = coil_test_run(program, NULL, &o, &r);
    unlink(path);
    if (r.allocations_left || r.fds_left || r.tasks_left) {
        fprintf(stderr, "fuzz_record: %s: %s\n", coil_err_name(err),
                r.message);
        abort();
    }
    return 0;
}
