/* SPDX-License-Identifier: MIT */
/*
 * test_record.c - recording a run and replaying it (coil/testing.h):
 *
 *  - a conversation over real TCP loopback sockets under chaos I/O
 *    (short reads and writes, spurious EAGAIN), recorded, replays with
 *    the same bytes, the same trace hash and the same number of results,
 *    with no seed, no chaos and not one recv or send made;
 *  - a failure that only the network's timing shows (a handler that
 *    takes one read for one message) is found under some chaos seed,
 *    recorded once, and fails the same way in every replay;
 *  - the real clock's readings come back: the times a replayed run sees
 *    are the recorded ones, to the nanosecond;
 *  - a replay that diverges (the program changed) or ends early fails
 *    with -EILSEQ saying where; sendfile refuses to be recorded;
 *  - argument checks, missing and foreign files.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "coil/testing.h"
#include "helpers.h"

static char path[64];

static int setup(void **state)
{
    snprintf(path, sizeof(path), "/tmp/coil-record-%d.rr", (int)getpid());
    return test_setup_noloop(state);
}

static int teardown(void **state)
{
    unlink(path);
    return test_teardown_noloop(state);
}

/* ------------------------------------------------------------------ */
/* A conversation over TCP loopback                                     */
/* ------------------------------------------------------------------ */

#define LINES 20

struct talk {
    char transcript[8192]; /* what the client received */
    size_t len;
    unsigned recv_calls;   /* the recv operations made (coil_test_calls) */
    bool one_read_per_message; /* the handler's bug (see below) */
    bool extra;            /* one more line: another program */
    int lines;
};

/* Echo each line back in capitals. */
static int upper(coil_stream_t *s, void *arg)
{
    struct talk *t = arg;
    char line[256];
    for (;;) {
        size_t len = 0;
        int err;
        if (t->one_read_per_message) {
            /* The bug: one read taken for one whole message. */
            ssize_t n = coil_stream_read(s, line, sizeof(line));
            if (n <= 0)
                return n < 0 ? (int)n : 0;
            len = (size_t)n;
            if (line[len - 1] != '\n')
                return -EPROTO; /* a message split by the network */
        } else if ((err = coil_stream_readline(s, line, sizeof(line),
                                               &len)) != 0) {
            return err == -EPIPE ? 0 : err;
        }
        if (len == 0)
            return 0;
        for (size_t i = 0; i < len; i++)
            if (line[i] >= 'a' && line[i] <= 'z')
                line[i] = (char)(line[i] - 'a' + 'A');
        if ((err = coil_stream_write(s, line, len)) != 0 ||
            (err = coil_stream_drain(s)) != 0)
            return err;
    }
}

static int converse(void *arg)
{
    struct talk *t = arg;
    t->len = 0;
    t->lines = 0;
    coil_server_t *srv;
    int err = coil_server_open("127.0.0.1", "0", upper, t, NULL, &srv);
    if (err)
        return err;
    char port[16];
    snprintf(port, sizeof(port), "%d", coil_server_port(srv));
    coil_stream_t *c = NULL;
    err = coil_stream_open("127.0.0.1", port, &c);
    int n = LINES + (t->extra ? 1 : 0);
    for (int i = 0; i < n && !err; i++) {
        char line[128];
        int len = snprintf(line, sizeof(line), "line %d: %.*s\n", i, i * 3,
                           "the quick brown fox jumps over the lazy dog, "
                           "again and again");
        size_t got = 0;
        if (!(err = coil_stream_write(c, line, (size_t)len)) &&
            !(err = coil_stream_readline(c, t->transcript + t->len,
                                         sizeof(t->transcript) - t->len,
                                         &got))) {
            t->len += got;
            t->lines++;
        }
    }
    coil_stream_unref(c);
    coil_server_close(srv);
    int e = coil_server_wait_closed(srv);
    coil_server_unref(srv);
    t->recv_calls = coil_test_calls(COIL_TEST_RECV);
    return err ? err : e;
}

static void test_conversation_replays(void **state)
{
    (void)state;
    struct talk rec = {0}, rep = {0};
    coil_test_result_t r1, r2;
    coil_test_options_t o = {.seed = 11, .chaos_io = true,
                             .record_path = path};
    coil_test_reset_faults(); /* the call counts from zero */
    int err = coil_test_run(converse, &rec, &o, &r1);
    if (err)
        fail_msg("recording: %s: %s", coil_err_name(err), r1.message);
    assert_int_equal(rec.lines, LINES);
    assert_true(rec.recv_calls > 0);
    assert_true(r1.record_entries > 100);

    /* No seed, no chaos: everything comes from the file. */
    coil_test_options_t p = {.replay_path = path};
    coil_test_reset_faults();
    err = coil_test_run(converse, &rep, &p, &r2);
    if (err)
        fail_msg("replaying: %s: %s", coil_err_name(err), r2.message);
    assert_int_equal(rep.lines, LINES);
    assert_int_equal(rep.len, rec.len);
    assert_memory_equal(rep.transcript, rec.transcript, rec.len);
    assert_int_equal(rep.recv_calls, 0); /* nothing received for real */
    assert_true(r2.trace_hash == r1.trace_hash);
    assert_true(r2.trace_events == r1.trace_events);
    assert_int_equal(r2.record_entries, r1.record_entries);

    /* The same run without the record is another schedule (chaos made
     * this one): the hash is no constant. */
    coil_test_options_t plain = {0};
    struct talk other = {0};
    assert_int_equal(coil_test_run(converse, &other, &plain, &r2), 0);
    assert_true(r2.trace_hash != r1.trace_hash);
}

/* ------------------------------------------------------------------ */
/* A failure seen once                                                  */
/* ------------------------------------------------------------------ */

static void test_failure_replays(void **state)
{
    (void)state;
    struct talk t = {.one_read_per_message = true};
    coil_test_result_t r;
    /* Over a quiet loopback the bug hides: every line comes whole. */
    assert_int_equal(coil_test_run(converse, &t, NULL, &r), 0);

    /* The network's worst, every run recorded: some seed splits a
     * message, and its run's record is the one left in the file. */
    coil_test_options_t o = {.chaos_io = true, .record_path = path};
    coil_test_result_t rec;
    int rec_err = coil_test_run_seeds(converse, &t, &o, 1, 50, &rec);
    assert_int_not_equal(rec_err, 0);
    assert_true(rec.seed != 0);
    assert_non_null(strstr(rec.message, path));
    int rec_lines = t.lines;

    /* ... it fails the same way in every replay, seed or none. */
    coil_test_options_t p = {.replay_path = path};
    for (int i = 0; i < 20; i++) {
        coil_test_result_t again;
        assert_int_equal(coil_test_run(converse, &t, &p, &again), rec_err);
        assert_int_equal(t.lines, rec_lines);
        assert_true(again.trace_hash == rec.trace_hash);
        assert_int_equal(again.outcome, rec.outcome);
    }
}

/* ------------------------------------------------------------------ */
/* The clock                                                            */
/* ------------------------------------------------------------------ */

struct times {
    int64_t at[8];
};

static int sleepy(void *arg)
{
    struct times *t = arg;
    coil_loop_t *loop = coil_running_loop();
    for (int i = 0; i < 8; i++) {
        int err = coil_sleep(COIL_MSEC);
        if (err)
            return err;
        t->at[i] = coil_loop_time(loop);
    }
    return 0;
}

/* One more sleep than the record holds: the replay stops there, and the
 * clock goes on from its last replayed reading, not from this machine's
 * (recorded on the virtual clock, replayed on the real one: a second
 * against the machine's uptime). */
static int sleepier(void *arg)
{
    struct times *t = arg;
    int err = sleepy(t);
    if (err)
        return err;
    coil_loop_t *loop = coil_running_loop();
    err = coil_sleep(COIL_MSEC);
    t->at[7] = coil_loop_time(loop) - t->at[7]; /* the ninth's length */
    return err;
}

static void test_clock_after_divergence(void **state)
{
    (void)state;
    struct times rec = {0}, rep = {0};
    coil_test_options_t o = {.virtual_clock = true, .record_path = path};
    assert_int_equal(coil_test_run(sleepy, &rec, &o, NULL), 0);
    assert_true(rec.at[0] < 10 * COIL_SEC); /* virtual: from 1 s */
    coil_test_options_t p = {.replay_path = path};
    coil_test_result_t r;
    assert_int_equal(coil_test_run(sleepier, &rep, &p, &r), -EILSEQ);
    assert_memory_equal(rep.at, rec.at, 7 * sizeof(rec.at[0]));
    /* The ninth sleep took about its millisecond of real time: not a
     * jump to this machine's clock, nor a deadline long past. */
    assert_true(rep.at[7] >= COIL_MSEC);
    assert_true(rep.at[7] < 5 * COIL_SEC);
}

static void test_clock_replays(void **state)
{
    (void)state;
    struct times rec = {0}, rep = {0};
    coil_test_options_t o = {.record_path = path};
    assert_int_equal(coil_test_run(sleepy, &rec, &o, NULL), 0);
    coil_test_options_t p = {.replay_path = path};
    coil_test_result_t r;
    int err = coil_test_run(sleepy, &rep, &p, &r);
    if (err)
        fail_msg("%s: %s", coil_err_name(err), r.message);
    /* The real clock's readings, to the nanosecond. */
    assert_memory_equal(rep.at, rec.at, sizeof(rec.at));
    assert_true(rec.at[7] - rec.at[0] >= 7 * COIL_MSEC);
}

/* ------------------------------------------------------------------ */
/* Divergence                                                           */
/* ------------------------------------------------------------------ */

static void test_divergence(void **state)
{
    (void)state;
    struct talk t = {0};
    coil_test_options_t o = {.record_path = path};
    assert_int_equal(coil_test_run(converse, &t, &o, NULL), 0);

    /* Another program (one more line): it says where it went its own
     * way. */
    coil_test_options_t p = {.replay_path = path};
    coil_test_result_t r;
    t.extra = true;
    assert_int_equal(coil_test_run(converse, &t, &p, &r), -EILSEQ);
    assert_non_null(strstr(r.message, "the replay of"));
    assert_non_null(strstr(r.message, "entry"));

    /* A program that stops early: the record has more. */
    assert_int_equal(coil_test_run(sleepy, &(struct times){{0}}, &p, &r),
                     -EILSEQ);
    assert_non_null(strstr(r.message, "the replay of"));
}

/* An address longer than the caller's buffer (recvfrom cuts it; its
 * length says how long it was): recorded as cut, replayed the same. */
struct dgram {
    char dir[64];
    socklen_t len;
    unsigned char head[4];
    char data[8];
};

static int cut_address(void *arg)
{
    struct dgram *d = arg;
    struct sockaddr_un a = {.sun_family = AF_UNIX}, b = a;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s-a", d->dir);
    snprintf(b.sun_path, sizeof(b.sun_path), "%s-b-with-a-longer-name",
             d->dir);
    unlink(a.sun_path);
    unlink(b.sun_path);
    int ra = coil_sock_open(AF_UNIX, SOCK_DGRAM, 0);
    int rb = coil_sock_open(AF_UNIX, SOCK_DGRAM, 0);
    int err = ra < 0 ? ra : rb < 0 ? rb : 0;
    if (!err && (bind(ra, (struct sockaddr *)&a, sizeof(a)) < 0 ||
                 bind(rb, (struct sockaddr *)&b, sizeof(b)) < 0))
        err = -errno;
    if (!err && coil_sock_sendto(rb, "hello", 5, (struct sockaddr *)&a,
                                 sizeof(a)) != 5)
        err = -EIO;
    /* Room for the family and two bytes of the name, no more: reading
     * past it is the sanitizers' to catch. */
    _Alignas(struct sockaddr) unsigned char from[4];
    d->len = sizeof(from);
    ssize_t n = err ? err
                    : coil_sock_recvfrom(ra, d->data, sizeof(d->data),
                                         (struct sockaddr *)&from, &d->len);
    if (n < 0)
        err = (int)n;
    else
        memcpy(d->head, from, 4);
    coil_sock_close(ra);
    coil_sock_close(rb);
    unlink(a.sun_path);
    unlink(b.sun_path);
    return err;
}

static void test_cut_address(void **state)
{
    (void)state;
    struct dgram rec = {0}, rep = {0};
    snprintf(rec.dir, sizeof(rec.dir), "/tmp/coil-rr-%d", (int)getpid());
    memcpy(rep.dir, rec.dir, sizeof(rec.dir));
    coil_test_options_t o = {.record_path = path};
    assert_int_equal(coil_test_run(cut_address, &rec, &o, NULL), 0);
    assert_true(rec.len > 4); /* the whole length, beyond the room */
    coil_test_options_t p = {.replay_path = path};
    coil_test_result_t r;
    int err = coil_test_run(cut_address, &rep, &p, &r);
    if (err)
        fail_msg("%s: %s", coil_err_name(err), r.message);
    assert_int_equal(rep.len, rec.len);
    assert_memory_equal(rep.head, rec.head, 4);
    assert_memory_equal(rep.data, "hello", 5);
}

static int sends_file(void *arg)
{
    (void)arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return -errno;
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    off_t off = 0;
    ssize_t n = fd < 0 ? -errno : coil_sock_sendfile(sv[0], fd, &off, 16);
    if (fd >= 0)
        close(fd);
    close(sv[0]);
    close(sv[1]);
    return n < 0 ? (int)n : 0;
}

static void test_sendfile_not_recorded(void **state)
{
    (void)state;
    coil_test_options_t o = {.record_path = path};
    coil_test_result_t r;
    assert_int_equal(coil_test_run(sends_file, NULL, &o, &r), -ENOTSUP);
    assert_non_null(strstr(r.message, "coil_sock_sendfile"));
}

/* ------------------------------------------------------------------ */
/* Arguments and files                                                  */
/* ------------------------------------------------------------------ */

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

static void test_arguments(void **state)
{
    (void)state;
    coil_test_options_t both = {.record_path = path, .replay_path = path};
    assert_int_equal(coil_test_run(nothing, NULL, &both, NULL), -EINVAL);

    assert_int_equal(coil_test_record_begin(NULL), -EINVAL);
    assert_int_equal(coil_test_record_begin(""), -EINVAL);
    assert_int_equal(coil_test_replay_begin(NULL), -EINVAL);
    assert_int_equal(coil_test_record_end(NULL, NULL, 0), -EINVAL);
    assert_int_equal(coil_test_record_begin("/nonexistent-dir/x.rr"),
                     -ENOENT);
    assert_int_equal(coil_test_replay_begin("/nonexistent-dir/x.rr"),
                     -ENOENT);

    /* Not a record. */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("not a record of anything\n", f);
    fclose(f);
    assert_int_equal(coil_test_replay_begin(path), -EILSEQ);
    coil_test_options_t p = {.replay_path = path};
    assert_int_equal(coil_test_run(nothing, NULL, &p, NULL), -EILSEQ);

    /* A record cut short, or with a length beyond its end: damaged, said
     * so, never read past. */
    assert_int_equal(coil_test_record_begin(path), 0);
    (void)coil_now();
    assert_int_equal(coil_test_record_end(NULL, NULL, 0), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 8), 0);
    char why[128];
    assert_int_equal(coil_test_replay_begin(path), 0);
    (void)coil_now();
    assert_int_equal(coil_test_record_end(NULL, why, sizeof(why)),
                     -EILSEQ);
    assert_non_null(strstr(why, "damaged"));
    FILE *g = fopen(path, "r+b");
    assert_non_null(g);
    assert_int_equal(fseek(g, 24 + 16, SEEK_SET), 0); /* the len field */
    uint32_t huge = 0x7fffffff;
    assert_int_equal(fwrite(&huge, sizeof(huge), 1, g), 1);
    fclose(g);
    assert_int_equal(coil_test_replay_begin(path), 0);
    (void)coil_now();
    assert_int_equal(coil_test_record_end(NULL, why, sizeof(why)),
                     -EILSEQ);
    assert_non_null(strstr(why, "damaged"));

    /* A replay's seeds are the record's only while it lasts. */
    unsigned long shuffle0 = coil__shuffle_seed(), chaos0 = coil__chaos_seed(),
                  sched0 = coil__sched_seed();
    coil_test_seed(77, true);
    assert_int_equal(coil_test_record_begin(path), 0);
    assert_int_equal(coil_test_record_end(NULL, NULL, 0), 0);
    coil_test_seed(5, false);
    assert_int_equal(coil_test_replay_begin(path), 0);
    assert_int_equal(coil__sched_seed(), 77);
    assert_int_equal(coil_test_record_end(NULL, NULL, 0), 0);
    assert_int_equal(coil__sched_seed(), 5);
    assert_int_equal(coil__shuffle_seed(), 5);
    coil__seeds_set(shuffle0, chaos0, sched0);

    /* One at a time; the outside calls work as the fixture's do. */
    assert_int_equal(coil_test_record_begin(path), 0);
    assert_int_equal(coil_test_record_begin(path), -EBUSY);
    assert_int_equal(coil_test_replay_begin(path), -EBUSY);
    assert_int_equal(coil_loop_time(NULL), 0);
    int64_t t1 = coil_now();
    uint64_t entries = 0;
    assert_int_equal(coil_test_record_end(&entries, why, sizeof(why)), 0);
    assert_int_equal(entries, 1);
    assert_string_equal(why, "");
    assert_int_equal(coil_test_replay_begin(path), 0);
    assert_true(coil_now() == t1);
    assert_int_equal(coil_test_record_end(&entries, why, sizeof(why)), 0);
    assert_int_equal(entries, 1);
    /* A replay run past its record's end says so. */
    assert_int_equal(coil_test_replay_begin(path), 0);
    (void)coil_now();
    (void)coil_now();
    assert_int_equal(coil_test_record_end(&entries, why, sizeof(why)),
                     -EILSEQ);
    assert_non_null(strstr(why, "past the record's end"));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        T(test_conversation_replays), T(test_failure_replays),
        T(test_clock_replays),        T(test_clock_after_divergence),
        T(test_cut_address),          T(test_divergence),
        T(test_sendfile_not_recorded), T(test_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
