/* SPDX-License-Identifier: MIT */
/*
 * pick.c - choosing among implementations of one interface (pollers,
 * context switches): an explicit name, else an environment variable, else
 * the best one built here.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int coil__pick(const char *name, const char *env, const void *const *built,
               size_t nbuilt, const char *const *known, size_t nknown,
               const void **out)
{
    *out = NULL;
    if (!name) {
        name = getenv(env);
        if (name && !*name)
            name = NULL;
    }
    if (!name) {
        *out = built[0];
        return 0;
    }
    for (size_t i = 0; i < nbuilt; i++) {
        /* Every ops table begins with its name. */
        if (strcmp(*(const char *const *)built[i], name) == 0) {
            *out = built[i];
            return 0;
        }
    }
    for (size_t i = 0; i < nknown; i++)
        if (strcmp(known[i], name) == 0)
            return -ENOSYS;
    return -EINVAL;
}
