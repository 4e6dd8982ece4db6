/* SPDX-License-Identifier: MIT */
/*
 * kv.c - the key-value protocol of kv.h: a store kept as a sorted array
 * (binary search; capacity fixed at creation), and kv_serve, which reads
 * one line at a time under an idle timeout and answers it.
 *
 * kv_serve reads with coil_stream_readline, so it never sees part of a
 * line: however the bytes arrive (one per receive, or many lines in one),
 * a request is parsed only once its "\n" is there.
 */
#include "kv.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* The store                                                            */
/* ------------------------------------------------------------------ */

struct entry {
    char *key;
    char *value;
};

struct kv_store {
    struct entry *entries; /* sorted by key */
    size_t count, capacity;
};

int kv_store_new(size_t capacity, kv_store_t **out)
{
    if (out)
        *out = NULL;
    if (!out || capacity == 0)
        return -EINVAL;
    kv_store_t *store = malloc(sizeof(*store));
    if (!store)
        return -ENOMEM;
    store->entries = calloc(capacity, sizeof(*store->entries));
    if (!store->entries) {
        free(store);
        return -ENOMEM;
    }
    store->count = 0;
    store->capacity = capacity;
    *out = store;
    return 0;
}

void kv_store_free(kv_store_t *store)
{
    if (!store)
        return;
    for (size_t i = 0; i < store->count; i++) {
        free(store->entries[i].key);
        free(store->entries[i].value);
    }
    free(store->entries);
    free(store);
}

/* Where key is, or where it would go; *found says which. */
static size_t find(const kv_store_t *store, const char *key, bool *found)
{
    size_t lo = 0, hi = store->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(store->entries[mid].key, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

int kv_store_set(kv_store_t *store, const char *key, const char *value)
{
    if (!store || !key || !*key || !value)
        return -EINVAL;
    bool found;
    size_t i = find(store, key, &found);
    if (!found && store->count == store->capacity)
        return -ENOSPC;
    /* Everything that can fail first: the store changes only after. */
    char *v = strdup(value);
    char *k = found ? NULL : strdup(key);
    if (!v || (!found && !k)) {
        free(v);
        free(k);
        return -ENOMEM;
    }
    if (found) {
        free(store->entries[i].value);
        store->entries[i].value = v;
        return 0;
    }
    memmove(&store->entries[i + 1], &store->entries[i],
            (store->count - i) * sizeof(*store->entries));
    store->entries[i] = (struct entry){k, v};
    store->count++;
    return 0;
}

const char *kv_store_get(const kv_store_t *store, const char *key)
{
    if (!store || !key)
        return NULL;
    bool found;
    size_t i = find(store, key, &found);
    return found ? store->entries[i].value : NULL;
}

int kv_store_del(kv_store_t *store, const char *key)
{
    if (!store || !key)
        return -EINVAL;
    bool found;
    size_t i = find(store, key, &found);
    if (!found)
        return -ENOENT;
    free(store->entries[i].key);
    free(store->entries[i].value);
    memmove(&store->entries[i], &store->entries[i + 1],
            (store->count - i - 1) * sizeof(*store->entries));
    store->count--;
    return 0;
}

size_t kv_store_count(const kv_store_t *store)
{
    return store ? store->count : 0;
}

/* ------------------------------------------------------------------ */
/* Serving                                                              */
/* ------------------------------------------------------------------ */

/* Send one reply line: what, then value if not NULL, then "\n", and wait
 * until it is out (the flow control: a client that sends requests
 * without reading the replies is made to wait, not buffered for), at
 * most KV_IDLE_TIMEOUT: -ETIMEDOUT then. */
static int reply(coil_stream_t *s, const char *what, const char *value)
{
    char out[KV_MAX_LINE + 16];
    int n = snprintf(out, sizeof(out), "%s%s%s\n", what, value ? " " : "",
                     value ? value : "");
    if (n < 0 || (size_t)n >= sizeof(out))
        return -EOVERFLOW; /* cannot happen: a value fits in a line */
    int err = coil_stream_write(s, out, (size_t)n);
    coil_timeout_t *idle;
    if (err || (err = coil_timeout_begin(KV_IDLE_TIMEOUT, &idle)))
        return err;
    return coil_timeout_end(idle, coil_stream_drain(s));
}

/* Read one line into line (KV_MAX_LINE + 1 bytes), waiting at most
 * KV_IDLE_TIMEOUT for it: -ETIMEDOUT then. */
static int read_line(coil_stream_t *s, char *line, size_t *len)
{
    coil_timeout_t *idle;
    int err = coil_timeout_begin(KV_IDLE_TIMEOUT, &idle);
    if (err)
        return err;
    err = coil_stream_readline(s, line, KV_MAX_LINE + 1, len);
    return coil_timeout_end(idle, err);
}

/* The key in arg: one word, not empty. */
static bool is_key(const char *arg)
{
    return arg && *arg && !strchr(arg, ' ');
}

/* Apply one request (line: NUL-terminated, its "\r\n" removed) and
 * answer it. *quit is set by QUIT. */
static int execute(coil_stream_t *s, kv_store_t *store, char *line,
                   bool *quit)
{
    char *arg = strchr(line, ' ');
    if (arg)
        *arg++ = '\0';
    if (strcmp(line, "SET") == 0) {
        char *value = arg ? strchr(arg, ' ') : NULL;
        if (!value || value == arg || !value[1])
            return reply(s, "ERROR usage: SET <key> <value>", NULL);
        *value++ = '\0';
        int err = kv_store_set(store, arg, value);
        return reply(s, err == 0          ? "OK"
                        : err == -ENOSPC ? "ERROR store full"
                                         : "ERROR out of memory",
                     NULL);
    }
    if (strcmp(line, "GET") == 0) {
        if (!is_key(arg))
            return reply(s, "ERROR usage: GET <key>", NULL);
        const char *value = kv_store_get(store, arg);
        return value ? reply(s, "VALUE", value) : reply(s, "NOT_FOUND", NULL);
    }
    if (strcmp(line, "DEL") == 0) {
        if (!is_key(arg))
            return reply(s, "ERROR usage: DEL <key>", NULL);
        return reply(s, kv_store_del(store, arg) == 0 ? "DELETED" : "NOT_FOUND",
                     NULL);
    }
    if (strcmp(line, "QUIT") == 0) {
        if (arg)
            return reply(s, "ERROR usage: QUIT", NULL);
        *quit = true;
        return 0;
    }
    return reply(s, *line ? "ERROR unknown command" : "ERROR empty line",
                 NULL);
}

int kv_serve(coil_stream_t *s, kv_store_t *store)
{
    if (!s || !store)
        return -EINVAL;
    /* readline's limit: a longer line is -EMSGSIZE, and never buffered
     * whole. Write limits of 0: each drain waits until the reply is out,
     * so the next request is read only then, and a failed send is the
     * error of the drain after it, not of some later call. */
    int err = coil_stream_set_limit(s, KV_MAX_LINE);
    if (!err)
        err = coil_stream_set_write_limits(s, 0, 0);
    bool quit = false;
    char line[KV_MAX_LINE + 1];
    while (!err && !quit) {
        size_t len;
        err = read_line(s, line, &len);
        if (err == -ETIMEDOUT) {
            err = reply(s, "ERROR idle", NULL);
            break;
        }
        if (err == -EMSGSIZE) {
            err = reply(s, "ERROR line too long", NULL);
            break;
        }
        if (err || len == 0 || line[len - 1] != '\n')
            break; /* failed, or the client closed (maybe mid-line) */
        len--;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        line[len] = '\0';
        if (memchr(line, '\0', len))
            err = reply(s, "ERROR NUL byte in line", NULL);
        else
            err = execute(s, store, line, &quit);
    }
    int closed = coil_stream_close(s);
    return err ? err : closed;
}

int kv_handler(coil_stream_t *s, void *arg)
{
    return kv_serve(s, arg);
}
