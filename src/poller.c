/* SPDX-License-Identifier: MIT */
/*
 * poller.c - the table of backends built into this library, and the
 * choice among them: an explicit name, else COIL_BACKEND, else the first
 * (best) entry.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "poller.h"

#ifdef COIL_HAVE_EPOLL
extern const struct coil__poller_ops coil__poller_epoll;
#endif
#ifdef COIL_HAVE_KQUEUE
extern const struct coil__poller_ops coil__poller_kqueue;
#endif
extern const struct coil__poller_ops coil__poller_poll;

static const struct coil__poller_ops *const backends[] = {
#ifdef COIL_HAVE_EPOLL
    &coil__poller_epoll,
#endif
#ifdef COIL_HAVE_KQUEUE
    &coil__poller_kqueue,
#endif
    &coil__poller_poll,
};

static const char *const known[] = {"epoll", "kqueue", "poll"};

int coil__poller_find(const char *name, const struct coil__poller_ops **out)
{
    return coil__pick(name, "COIL_BACKEND", (const void *const *)backends,
                      sizeof(backends) / sizeof(*backends), known,
                      sizeof(known) / sizeof(*known), (const void **)out);
}

bool coil_backend_available(const char *backend)
{
    const struct coil__poller_ops *ops;
    return backend && coil__poller_find(backend, &ops) == 0;
}

_Static_assert(offsetof(struct coil__poller_ops, name) == 0,
               "coil__pick reads an ops table's name as its first member");
