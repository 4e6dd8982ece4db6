/* SPDX-License-Identifier: MIT */
/*
 * test_alloc.c - the replaceable allocator: validation, refusal to switch
 * while coil memory is live, that coil really allocates through it, and
 * restoring the default.
 */
#include <stdlib.h>

#include "helpers.h"

static long my_mallocs, my_reallocs, my_frees;

static void *my_malloc(size_t n, void *ctx)
{
    (*(long *)ctx)++;
    my_mallocs++;
    return malloc(n);
}

static void *my_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    my_reallocs++;
    return realloc(p, n);
}

static void my_free(void *p, void *ctx)
{
    (void)ctx;
    if (p)
        my_frees++;
    free(p);
}

static void test_validation(void **state)
{
    (void)state;
    coil_allocator_t a = {my_malloc, my_realloc, my_free, NULL};
    a.malloc = NULL;
    assert_int_equal(coil_set_allocator(&a), -EINVAL);
    a = (coil_allocator_t){my_malloc, NULL, my_free, NULL};
    assert_int_equal(coil_set_allocator(&a), -EINVAL);
    a = (coil_allocator_t){my_malloc, my_realloc, NULL, NULL};
    assert_int_equal(coil_set_allocator(&a), -EINVAL);
}

static void test_busy_while_live(void **state)
{
    (void)state;
    coil_loop_t *loop;
    long ctx = 0;
    coil_allocator_t a = {my_malloc, my_realloc, my_free, &ctx};
    assert_int_equal(coil_loop_new(&loop), 0);
    assert_int_equal(coil_set_allocator(&a), -EBUSY);
    assert_int_equal(coil_set_allocator(NULL), -EBUSY);
    coil_loop_unref(loop);
    assert_int_equal(ctx, 0); /* never used */
}

static void cb(void *arg)
{
    coil_loop_stop(arg);
}

static void test_used_for_everything(void **state)
{
    (void)state;
    long ctx = 0;
    coil_allocator_t a = {my_malloc, my_realloc, my_free, &ctx};
    my_mallocs = my_reallocs = my_frees = 0;
    assert_int_equal(coil_set_allocator(&a), 0);
    coil_loop_t *loop;
    coil_future_t *fut;
    coil_handle_t *h;
    assert_int_equal(coil_loop_new(&loop), 0);
    assert_int_equal(coil_future_new(loop, &fut), 0);
    assert_int_equal(coil_loop_call_later(loop, 0, cb, loop, &h), 0);
    assert_int_equal(coil_loop_run_forever(loop), 0);
    coil_handle_unref(h);
    coil_future_unref(fut);
    coil_loop_unref(loop);
    assert_true(ctx > 0); /* the context pointer is passed through */
    assert_int_equal(ctx, my_mallocs);
    assert_int_equal(my_mallocs, my_frees); /* every block went back */
    /* Back to the C library's, then to the test allocator. */
    assert_int_equal(coil_set_allocator(NULL), 0);
    assert_int_equal(coil_loop_new(&loop), 0);
    coil_loop_unref(loop);
    assert_int_equal(my_mallocs, ctx);
    assert_int_equal(coil_set_allocator(test_allocator()), 0);
}

int main(void)
{
    test_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_busy_while_live),
        cmocka_unit_test(test_used_for_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
