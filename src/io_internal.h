/* SPDX-License-Identifier: MIT */
/*
 * io_internal.h - raw fds: the watches the loop makes for fds its user
 * hands it (coil/io.h's readers and writers, and the coil_sock_* calls of
 * net.c), as opposed to the watches embedded in coil's own objects.
 *
 * A raw watch (watch.h, COIL__WATCH_RAW) is made the first time its fd
 * number is used and stays bound to the number until coil_sock_close
 * forgets it, a coil object takes the number (coil__watch_init), or the
 * loop closes. Since the user may close(2) the fd and the kernel reuse
 * the number, a raw watch never trusts its armed interest: every start
 * registers again (watch.h).
 */
#ifndef COIL_IO_INTERNAL_H
#define COIL_IO_INTERNAL_H

#include "watch.h"

/*
 * The watch of raw fd on loop, made if needed, in *out. Errors: -EBADF
 * (fd negative or not open, loop closed), -EBUSY (fd belongs to a coil
 * object: a stream, an endpoint, a server), -ENOMEM.
 */
int coil__io_watch(struct coil_loop *loop, int fd, struct coil__watch **out);

/*
 * fd is about to be closed by its user (coil_sock_close): forget what
 * loop knows of it (tasks waiting on it wake with -EBADF, callback
 * watchers go without being called). -EBUSY if fd belongs to a coil
 * object (then nothing changes): close that object instead.
 */
int coil__io_forget(struct coil_loop *loop, int fd);

#endif /* COIL_IO_INTERNAL_H */
