/* SPDX-License-Identifier: MIT */
/*
 * cat.c - a filter from stdin to stdout, like cat(1), with streams over
 * the two pipes (asyncio's connect_read_pipe / connect_write_pipe).
 *
 * stdin and stdout may be pipes or terminals, which the loop can wait on.
 * A regular file (cat < file > copy) is always "ready", so a stream
 * refuses it (-EINVAL), and it is read or written with blocking calls on
 * the loop's executor instead (coil_to_thread). A stream's write buffer
 * is sent as stdout takes it, and drain waits whenever more than the
 * high-water mark is waiting. The streams work on dup'ed fds, so the
 * process's own 0 and 1 stay open; the close puts back the blocking mode
 * the shell expects.
 *
 * Usage: cat < input > output      (prints nothing else; exit 1 on error)
 */
#include <coil.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define CHUNK 65536

/* One side: a stream, or (a regular file) an fd for the executor. */
struct side {
    coil_stream_t *s;
    int fd;
};

/* A blocking read(2) or write(2) on an executor thread. */
struct io_job {
    int fd;
    size_t n;
    char *buf;
};

static int read_job(void *arg)
{
    struct io_job *j = arg;
    ssize_t r;
    do
        r = read(j->fd, j->buf, j->n);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : (int)r;
}

static int write_job(void *arg)
{
    struct io_job *j = arg;
    for (size_t off = 0; off < j->n;) {
        ssize_t r = write(j->fd, j->buf + off, j->n - off);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r > 0)
            off += (size_t)r;
    }
    return 0;
}

/* The job's buffer must outlive a cancelled wait: the job keeps it until
 * it returns (coil/executor.h), so it is static here, not on the stack. */
static char buf[CHUNK];
static struct io_job job;

static int get(struct side *in)
{
    if (in->s)
        return (int)coil_stream_read(in->s, buf, sizeof(buf));
    job = (struct io_job){in->fd, sizeof(buf), buf};
    return coil_to_thread(read_job, &job, NULL);
}

static int put(struct side *out, size_t n)
{
    if (!out->s) {
        job = (struct io_job){out->fd, n, buf};
        return coil_to_thread(write_job, &job, NULL);
    }
    int err = coil_stream_write(out->s, buf, n);
    return err ? err : coil_stream_drain(out->s);
}

/* A stream over a copy of fd, or the copy alone if it is a regular file. */
static int open_side(int fd, struct side *side)
{
    side->s = NULL;
    side->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (side->fd < 0)
        return -errno;
    int err = coil_stream_open_fd(side->fd, &side->s);
    if (err == -EINVAL)
        return 0; /* a regular file: the executor's */
    if (err)
        close(side->fd);
    return err;
}

/* Let go of a side: a stream sends what it holds, then closes. */
static int close_side(struct side *side)
{
    if (!side->s)
        return close(side->fd) < 0 ? -errno : 0;
    coil_stream_close(side->s);
    int err = coil_stream_wait_closed(side->s);
    coil_stream_unref(side->s);
    return err;
}

static int cat(void *arg)
{
    (void)arg;
    struct side in, out;
    int err = open_side(0, &in);
    if (err)
        return err;
    err = open_side(1, &out);
    if (err) {
        close_side(&in);
        return err;
    }
    int n;
    while ((n = get(&in)) > 0 && !(err = put(&out, (size_t)n)))
        ;
    if (n < 0)
        err = n;
    close_side(&in);
    int cerr = close_side(&out); /* everything written is out */
    return err ? err : cerr;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: cat < input > output\n");
        return 2;
    }
    int err = coil_run(cat, NULL);
    if (err < 0) {
        fprintf(stderr, "cat: %s\n", coil_strerror(err));
        return 1;
    }
    return 0;
}
