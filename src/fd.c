/* SPDX-License-Identifier: MIT */
/*
 * fd.c - small fd helpers every layer may use (declared in internal.h).
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#define HAVE_EVENTFD 1
#endif

#include "internal.h"
#include "sys.h"

void *coil__fd_table_grow(void *table, int *len, int fd, size_t size)
{
    if (fd < *len)
        return table;
    int n = *len ? *len : 64;
    while (n <= fd) {
        if (n > INT32_MAX / 2)
            return NULL;
        n *= 2;
    }
    char *v = coil__realloc(table, (size_t)n * size);
    if (!v)
        return NULL;
    memset(v + (size_t)*len * size, 0, (size_t)(n - *len) * size);
    *len = n;
    return v;
}

int coil__fd_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

int coil__pipe_cloexec(int fds[2])
{
#if defined(__linux__) || defined(__FreeBSD__)
    if (COIL__SYS(COIL__SYS_PIPE, pipe2(fds, O_CLOEXEC)) < 0)
        return -errno;
    return 0;
#else
    if (COIL__SYS(COIL__SYS_PIPE, pipe(fds)) < 0)
        return -errno;
    if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl(fds[1], F_SETFD, FD_CLOEXEC) < 0) {
        int err = -errno;
        close(fds[0]);
        close(fds[1]);
        return err;
    }
    return 0;
#endif
}

int coil__wake_channel_open(int *rfd, int *wfd)
{
#ifdef HAVE_EVENTFD
    int fd = COIL__SYS(COIL__SYS_EVENTFD,
                       eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (fd >= 0) {
        *rfd = *wfd = fd;
        return 0;
    }
    /* No eventfd here (old kernel, no anonymous inodes): use a pipe. */
    if (errno != ENOSYS && errno != EINVAL && errno != ENODEV)
        return -errno;
#endif
    int p[2];
    int err = coil__pipe_cloexec(p);
    if (err)
        return err;
    err = coil__fd_nonblock_cloexec(p[0]);
    if (!err)
        err = coil__fd_nonblock_cloexec(p[1]);
    if (err) {
        close(p[0]);
        close(p[1]);
        return err;
    }
    *rfd = p[0];
    *wfd = p[1];
    return 0;
}

void coil__wake_channel_close(int *rfd, int *wfd)
{
    if (*rfd >= 0)
        close(*rfd);
    if (*wfd >= 0 && *wfd != *rfd)
        close(*wfd);
    *rfd = *wfd = -1;
}

long coil__fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;
    if (!d) {
        for (int fd = 0; fd < 4096; fd++)
            n += fcntl(fd, F_GETFD) >= 0;
        return n;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}
