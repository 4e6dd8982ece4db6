/* SPDX-License-Identifier: MIT */
/*
 * kv.h - a small line-based key-value protocol over any coil stream, and
 * the store it serves. The worked example of docs/testing-your-code.md:
 * examples/kv_server.c serves it over TCP, tests/test_tutorial_kv.c tests
 * it with the testing kit (coil/testing.h).
 *
 * The protocol. Each request is one line, ended by "\n" (a "\r" before it
 * is ignored); each gets one line back:
 *
 *     SET <key> <value>   ->  OK                 the value is the rest of
 *                                                the line (spaces and all)
 *     GET <key>           ->  VALUE <value>  or  NOT_FOUND
 *     DEL <key>           ->  DELETED        or  NOT_FOUND
 *     QUIT                ->  (the server closes the connection)
 *     anything else       ->  ERROR <reason>     (the connection goes on)
 *
 * A key is one word: at least one byte, no space. Requests may be sent
 * without waiting for the replies (pipelined); the replies come in order,
 * and the next request is read once the last reply is sent. The server
 * closes the connection after one more line in two cases:
 *
 *     a line longer than KV_MAX_LINE bytes  ->  ERROR line too long
 *     no full line for KV_IDLE_TIMEOUT      ->  ERROR idle
 *
 * and without one when a reply could not be sent for KV_IDLE_TIMEOUT
 * (the client does not read).
 *
 * A request counts only once its "\n" has arrived: a client that closes
 * or resets the connection in the middle of a line changes nothing.
 */
#ifndef KV_H
#define KV_H

#include <coil.h>

#include <stddef.h>

/* The longest line a client may send, its "\n" not counted. */
#define KV_MAX_LINE 1024

/* How long a client may take to send a full line. */
#define KV_IDLE_TIMEOUT (30 * COIL_SEC)

/* ------------------------------------------------------------------ */
/* The store                                                            */
/* ------------------------------------------------------------------ */

/* Keys and their values (NUL-terminated strings), kept in memory from
 * malloc. Used from one loop's thread, like every coil object; no call
 * suspends, so a request is applied whole or not at all. */
typedef struct kv_store kv_store_t;

/* A store for at most capacity keys. Errors: -EINVAL (capacity 0, out
 * NULL), -ENOMEM. */
int kv_store_new(size_t capacity, kv_store_t **out);

/* Free the store and everything in it. Accepts NULL. */
void kv_store_free(kv_store_t *store);

/* Set key to value (both copied). Errors: -EINVAL (NULL, or an empty
 * key), -ENOSPC (a new key and the store is full), -ENOMEM. On error the
 * store is unchanged. */
int kv_store_set(kv_store_t *store, const char *key, const char *value);

/* The value of key, or NULL. Valid until the key is set, deleted or the
 * store freed. */
const char *kv_store_get(const kv_store_t *store, const char *key);

/* Delete key. Errors: -EINVAL (NULL), -ENOENT (no such key). */
int kv_store_del(kv_store_t *store, const char *key);

/* How many keys the store holds. 0 for NULL. */
size_t kv_store_count(const kv_store_t *store);

/* ------------------------------------------------------------------ */
/* Serving                                                              */
/* ------------------------------------------------------------------ */

/*
 * Serve one connection: read requests from s and answer them, applying
 * them to store, until the client quits or closes, or the connection
 * fails. s is closed before the call returns (the caller still drops its
 * reference); data still queued is flushed in the background.
 *
 * Returns 0 when the conversation ended normally: QUIT, the client closed
 * its side (a last line without its "\n" is dropped, not applied), or the
 * server ended it with "ERROR line too long" or "ERROR idle". Otherwise a
 * negative errno: the stream's (-ECONNRESET, -EPIPE: the client went
 * away; -ENOMEM), -ETIMEDOUT (a reply not taken for KV_IDLE_TIMEOUT),
 * -ECANCELED (the calling task was cancelled), -EINVAL (s or store
 * NULL). Must run in a task; may suspend.
 */
int kv_serve(coil_stream_t *s, kv_store_t *store);

/* kv_serve as a server's connection handler (coil/server.h): arg is the
 * kv_store_t. */
int kv_handler(coil_stream_t *s, void *arg);

#endif /* KV_H */
