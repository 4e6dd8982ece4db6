/* SPDX-License-Identifier: MIT */
/*
 * loop.c - the loop's lifecycle: composing it from the parts the modules
 * own (loop_internal.h), closing it, references, and the exception
 * handler. Running it is run.c's.
 *
 * The parts are initialised in order and unwound in reverse through
 * named labels; closing releases resources in the order that lets each
 * part's discards see the parts they touch still there: pending calls and
 * timers first (they never run), then the tasks (abandoned), then the
 * close hooks (whatever still holds an fd of the loop's), then the
 * watchers and the poller. The memory stays until the last reference
 * (the user's, a handle's, a future's, an object's) is dropped.
 */
#include <stdarg.h>
#include <stdio.h>

#include "loop_internal.h"

int coil_loop_new(coil_loop_t **loop_out)
{
    return coil_loop_new_opts(NULL, loop_out);
}

int coil_loop_new_opts(const coil_loop_options_t *opts, coil_loop_t **loop_out)
{
    if (!loop_out)
        return -EINVAL;
    *loop_out = NULL;
    coil_loop_options_t defaults = {0};
    if (!opts)
        opts = &defaults;
    if (opts->stack_size && coil__tasks_check_stack_size(opts->stack_size))
        return -EINVAL;
    /* Handles keep flags in the low 4 bits of their loop pointer: align
     * the loop to 16 whatever the allocator's alignment. */
    void *mem = coil__calloc(1, sizeof(struct coil_loop) + 15);
    if (!mem)
        return -ENOMEM;
    struct coil_loop *loop =
        (struct coil_loop *)(((uintptr_t)mem + 15) & ~(uintptr_t)15);
    loop->mem = mem;
    loop->refs = 1;
    loop->user_refs = 1;
    loop->state = COIL__LOOP_IDLE;
    loop->now = coil__clock_now();
    coil__list_init(&loop->close_hooks);
    coil__debug_init(loop);
    coil__ready_init(loop);
    coil__timers_init(loop);
    coil__futures_init(loop);
    int err = coil__watch_part_init(loop, opts->backend);
    if (err)
        goto fail_watch;
    err = coil__threadsafe_init(loop);
    if (err)
        goto fail_watch;
    err = coil__tasks_init(loop, opts->context, opts->stack_size);
    if (err)
        goto fail_tasks;
    *loop_out = loop;
    return 0;

fail_tasks:
    coil__tasks_term(loop);
    coil__threadsafe_close(loop);
    coil__threadsafe_term(loop);
fail_watch:
    coil__watch_part_close(loop);
    coil__futures_term(loop);
    coil__timers_term(loop);
    coil__ready_term(loop);
    coil__debug_term(loop);
    coil__free(loop->mem);
    return err;
}

const char *coil_loop_backend(const coil_loop_t *loop)
{
    return loop ? coil__watch_backend(loop) : NULL;
}

bool coil_loop_is_running(const coil_loop_t *loop)
{
    return loop && loop->state == COIL__LOOP_RUNNING;
}

bool coil_loop_is_closed(const coil_loop_t *loop)
{
    return loop && coil__loop_closed(loop);
}

void coil__loop_on_close(struct coil_loop *loop, struct coil__close_hook *h)
{
    coil__list_push_back(&loop->close_hooks, &h->link);
}

void coil__loop_on_close_cancel(struct coil__close_hook *h)
{
    coil__list_remove(&h->link);
}

int coil_loop_close(coil_loop_t *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->state == COIL__LOOP_RUNNING)
        return -EBUSY;
    if (coil__loop_closed(loop))
        return 0;
    /* Keep the loop alive while discards release what they hold. */
    coil__loop_ref(loop);
    if (loop->debug_on)
        coil__dump_close(loop); /* what is left pending, before it goes */
    loop->state = COIL__LOOP_CLOSED;
    coil__debug_close(loop);
    coil__threadsafe_close(loop);
    coil__ready_discard_all(loop);
    coil__timers_term(loop);
    coil__tasks_close(loop);
    coil__ready_discard_all(loop); /* anything the abandoned tasks queued */
    struct coil__list *l;
    while ((l = coil__list_first(&loop->close_hooks))) {
        struct coil__close_hook *h =
            coil__container_of(l, struct coil__close_hook, link);
        coil__list_remove(l);
        h->on_close(h);
    }
    coil__watch_part_close(loop);
    coil__loop_unref(loop);
    return 0;
}

void coil__loop_destroy(struct coil_loop *loop)
{
    coil__debug_term(loop); /* the quarantine, back to the pools */
    coil__tasks_term(loop);
    coil__threadsafe_term(loop);
    coil__futures_term(loop);
    coil__ready_term(loop);
    coil__free(loop->mem);
}

coil_loop_t *coil_loop_ref(coil_loop_t *loop)
{
    if (!loop)
        return NULL;
    if (loop->user_refs == 0) {
        /* Reachable through an object of the loop (coil_future_loop),
         * but closed and let go: there is nothing left to take. */
        coil__loop_report(loop, 0,
                          "coil_loop_ref on a loop whose last reference was "
                          "dropped");
        return NULL;
    }
    loop->user_refs++;
    return loop;
}

void coil_loop_unref(coil_loop_t *loop)
{
    if (!loop)
        return;
    if (loop->user_refs == 0) {
        coil__loop_report(loop, 0,
                          "coil_loop_unref on a loop with no reference left "
                          "(unref'd once too often)");
        return;
    }
    if (loop->user_refs == 1 && loop->state == COIL__LOOP_RUNNING) {
        coil__loop_report(loop, -EBUSY,
                          "coil_loop_unref of the last reference to a "
                          "running loop ignored");
        return;
    }
    if (--loop->user_refs > 0)
        return;
    coil_loop_close(loop);
    coil__loop_unref(loop);
}

/* ------------------------------------------------------------------ */
/* The exception handler                                                */
/* ------------------------------------------------------------------ */

int coil_loop_set_exception_handler(coil_loop_t *loop,
                                    coil_exception_handler_fn fn, void *arg)
{
    if (!loop)
        return -EINVAL;
    loop->exc_fn = fn;
    loop->exc_arg = arg;
    return 0;
}

coil_exception_handler_fn coil_loop_exception_handler(const coil_loop_t *loop,
                                                     void **arg_out)
{
    if (arg_out)
        *arg_out = loop ? loop->exc_arg : NULL;
    return loop ? loop->exc_fn : NULL;
}

void coil_loop_default_exception_handler(coil_loop_t *loop, int error,
                                         const char *message, void *arg)
{
    (void)loop;
    (void)arg;
    if (!message)
        message = "error";
    if (error)
        fprintf(stderr, "coil: %s: %s (%s)\n", message, coil_strerror(error),
                coil_err_name(error));
    else
        fprintf(stderr, "coil: %s\n", message);
}

int coil_loop_call_exception_handler(coil_loop_t *loop, int error,
                                     const char *message)
{
    if (!loop || !message)
        return -EINVAL;
    if (loop->exc_fn)
        loop->exc_fn(loop, error, message, loop->exc_arg);
    else
        coil_loop_default_exception_handler(loop, error, message, NULL);
    return 0;
}

void coil__loop_report(struct coil_loop *loop, int error, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    coil_loop_call_exception_handler(loop, error, msg);
}
