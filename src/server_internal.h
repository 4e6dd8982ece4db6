/* SPDX-License-Identifier: MIT */
/*
 * server_internal.h - what layers above the servers (TLS) need of them.
 */
#ifndef COIL_SERVER_INTERNAL_H
#define COIL_SERVER_INTERNAL_H

#include "coil/server.h"

/* Call fn(arg) with the server's handler argument when the server's
 * memory goes (its last reference): for a handler argument the server
 * owns (a wrapping layer's). */
void coil__server_set_arg_free(coil_server_t *srv, void (*fn)(void *arg));

#endif /* COIL_SERVER_INTERNAL_H */
