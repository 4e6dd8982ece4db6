/* SPDX-License-Identifier: MIT */
/*
 * fd.c - small fd helpers every layer may use (declared in internal.h).
 */
#include <fcntl.h>

#include "internal.h"

int coil__fd_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}
