/* SPDX-License-Identifier: MIT */
/*
 * log.c - the process-wide log hook every report goes through (debug
 * mode's reports, the stacks' diagnostics), its level, and the misuse
 * report that aborts.
 *
 * A report may come from any thread (a misuse on a foreign thread, the
 * stacks' allocation on a loop thread, another thread's loop). The hook
 * and its argument are a pair: a report holds a read lock on them for
 * the whole call, and coil_set_log_hook the write lock, so a hook is
 * never called with another's argument, nor after it was replaced (the
 * testing kit puts its own in and takes it out around every run). The
 * minimum level is an atomic, read before anything is formatted. A
 * report is formatted into a buffer on the caller's stack and handed over
 * in one call; the default hook writes it with one write(2), so
 * concurrent reports do not interleave within a line.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "internal.h"

#define LEVEL_UNSET 0

static pthread_rwlock_t hook_lock = PTHREAD_RWLOCK_INITIALIZER;
static coil_log_fn hook_fn;   /* under hook_lock */
static void *hook_arg;
static atomic_int min_level = LEVEL_UNSET;

const char *coil_log_level_name(coil_log_level_t level)
{
    switch (level) {
    case COIL_LOG_DEBUG:
        return "debug";
    case COIL_LOG_INFO:
        return "info";
    case COIL_LOG_WARNING:
        return "warning";
    case COIL_LOG_ERROR:
        return "error";
    case COIL_LOG_FATAL:
        return "fatal";
    }
    return NULL;
}

static int level_from_env(void)
{
    const char *v = getenv("COIL_LOG_LEVEL");
    static const coil_log_level_t all[] = {COIL_LOG_DEBUG, COIL_LOG_INFO,
                                           COIL_LOG_WARNING, COIL_LOG_ERROR,
                                           COIL_LOG_FATAL};
    if (v)
        for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++)
            if (strcasecmp(v, coil_log_level_name(all[i])) == 0)
                return (int)all[i];
    return COIL_LOG_INFO;
}

bool coil__log_enabled(coil_log_level_t level)
{
    int min = atomic_load_explicit(&min_level, memory_order_relaxed);
    if (coil__unlikely(min == LEVEL_UNSET)) {
        int want = level_from_env();
        /* Whoever comes first sets it; a coil_set_log_hook wins. */
        atomic_compare_exchange_strong(&min_level, &min, want);
        min = atomic_load(&min_level);
    }
    return (int)level >= min;
}

int coil_set_log_hook(coil_log_fn fn, void *arg, coil_log_level_t level)
{
    if (!coil_log_level_name(level))
        return -EINVAL;
    pthread_rwlock_wrlock(&hook_lock);
    hook_arg = arg;
    hook_fn = fn;
    atomic_store(&min_level, (int)level);
    pthread_rwlock_unlock(&hook_lock);
    return 0;
}

void coil__log_hook_get(coil_log_fn *fn, void **arg, coil_log_level_t *level)
{
    pthread_rwlock_rdlock(&hook_lock);
    *fn = hook_fn;
    *arg = hook_arg;
    pthread_rwlock_unlock(&hook_lock);
    int min = atomic_load(&min_level);
    *level = min == LEVEL_UNSET ? (coil_log_level_t)level_from_env()
                                : (coil_log_level_t)min;
}

void coil_log_default(coil_log_level_t level, coil_loop_t *loop,
                      const char *message, void *arg)
{
    (void)loop;
    (void)arg;
    const char *name = coil_log_level_name(level);
    char line[1100];
    int n = snprintf(line, sizeof(line), "coil[%s]: %s\n",
                     name ? name : "?", message ? message : "");
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    for (size_t off = 0; off < (size_t)n;) {
        ssize_t w = write(STDERR_FILENO, line + off, (size_t)n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

/* Hand msg to the hook, holding the pair for the call. */
static void deliver(coil_log_level_t level, coil_loop_t *loop,
                    const char *msg)
{
    pthread_rwlock_rdlock(&hook_lock);
    if (hook_fn)
        hook_fn(level, loop, msg, hook_arg);
    else
        coil_log_default(level, loop, msg, NULL);
    pthread_rwlock_unlock(&hook_lock);
}

void coil__vlog(struct coil_loop *loop, coil_log_level_t level,
                const char *fmt, va_list ap)
{
    if (!coil__log_enabled(level))
        return;
    int saved = errno;
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    deliver(level, loop, msg);
    errno = saved;
}

void coil__log(struct coil_loop *loop, coil_log_level_t level,
               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    coil__vlog(loop, level, fmt, ap);
    va_end(ap);
}

_Noreturn void coil__misuse(struct coil_loop *loop, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    /* Always delivered: the process is about to abort. */
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    deliver(COIL_LOG_FATAL, loop, msg);
    abort();
}

bool coil__debug_env(void)
{
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("COIL_DEBUG");
        v = e && *e && strcmp(e, "0") != 0;
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
