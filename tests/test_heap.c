/* SPDX-License-Identifier: MIT */
/*
 * test_heap.c - the 4-ary timer heap against a sorted reference: ordering
 * by (key, insertion order), removal from anywhere, growth and shrinking.
 */
#include <stdlib.h>

#include "heap.h"
#include "helpers.h"

struct item {
    struct coil__heap_node node;
    int64_t key;
    int id;
    bool in;
};

/* Every parent is not after any of its children, and every entry knows
 * its own index. */
static void check_heap(const struct coil__heap *h)
{
    for (uint32_t i = 0; i < h->len; i++) {
        assert_int_equal(h->v[i].node->index, i);
        if (i == 0)
            continue;
        const struct coil__heap_entry *p = &h->v[(i - 1) / 4];
        const struct coil__heap_entry *c = &h->v[i];
        assert_true(p->key < c->key ||
                    (p->key == c->key &&
                     (int32_t)(p->node->seq - c->node->seq) < 0));
    }
}

/* Pop everything and check the order is (key, insertion) ascending. */
static void drain_check(struct coil__heap *h, int *popped)
{
    int64_t last_key = INT64_MIN;
    int last_id = -1;
    *popped = 0;
    while (h->len) {
        struct item *it =
            coil__container_of(coil__heap_pop(h), struct item, node);
        assert_false(coil__heap_contains(&it->node));
        assert_true(it->key >= last_key);
        if (it->key == last_key)
            assert_true(it->id > last_id); /* ties in insertion order */
        last_key = it->key;
        last_id = it->id;
        it->in = false;
        (*popped)++;
    }
}

static void test_order_and_ties(void **state)
{
    (void)state;
    enum { N = 5000 };
    struct item *items = calloc(N, sizeof(*items));
    struct coil__heap h;
    coil__heap_init(&h);
    srand(1234);
    for (int i = 0; i < N; i++) {
        items[i].node.index = COIL__HEAP_NONE;
        items[i].key = rand() % 50; /* many equal keys */
        items[i].id = i;
        assert_int_equal(coil__heap_insert(&h, &items[i].node, items[i].key),
                         0);
        items[i].in = true;
    }
    assert_int_equal(h.len, N);
    int popped;
    drain_check(&h, &popped);
    assert_int_equal(popped, N);
    coil__heap_term(&h);
    free(items);
}

static void test_remove_anywhere(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct item *items = calloc(N, sizeof(*items));
    struct coil__heap h;
    coil__heap_init(&h);
    srand(99);
    for (int i = 0; i < N; i++) {
        items[i].node.index = COIL__HEAP_NONE;
        items[i].key = (int64_t)(rand() % 1000) - 500; /* negatives too */
        items[i].id = i;
        assert_int_equal(coil__heap_insert(&h, &items[i].node, items[i].key),
                         0);
        items[i].in = true;
    }
    /* Remove a random two thirds, including the minimum now and then. */
    int removed = 0;
    for (int k = 0; k < 2 * N; k++) {
        int i = rand() % N;
        if (!items[i].in)
            continue;
        coil__heap_remove(&h, &items[i].node);
        assert_false(coil__heap_contains(&items[i].node));
        items[i].in = false;
        removed++;
        if (k % 7 == 0)
            check_heap(&h);
        if (k % 100 == 0) {
            const struct coil__heap_entry *m = coil__heap_min(&h);
            if (m) {
                struct item *it =
                    coil__container_of(m->node, struct item, node);
                coil__heap_remove(&h, m->node);
                it->in = false;
                removed++;
            }
        }
        coil__heap_shrink(&h);
    }
    /* Every entry still knows its own index. */
    for (uint32_t i = 0; i < h.len; i++)
        assert_int_equal(h.v[i].node->index, i);
    int popped;
    drain_check(&h, &popped);
    assert_int_equal(popped + removed, N);
    coil__heap_shrink(&h);
    assert_int_equal(h.cap, 0); /* an empty heap gives its array back */
    coil__heap_term(&h);
    free(items);
}

static void test_extreme_keys(void **state)
{
    (void)state;
    struct item a = {.node.index = COIL__HEAP_NONE, .key = INT64_MAX, .id = 0};
    struct item b = {.node.index = COIL__HEAP_NONE, .key = INT64_MIN, .id = 1};
    struct item c = {.node.index = COIL__HEAP_NONE, .key = INT64_MAX, .id = 2};
    struct coil__heap h;
    coil__heap_init(&h);
    assert_int_equal(coil__heap_insert(&h, &a.node, a.key), 0);
    assert_int_equal(coil__heap_insert(&h, &b.node, b.key), 0);
    assert_int_equal(coil__heap_insert(&h, &c.node, c.key), 0);
    assert_ptr_equal(coil__heap_pop(&h), &b.node);
    assert_ptr_equal(coil__heap_pop(&h), &a.node);
    assert_ptr_equal(coil__heap_pop(&h), &c.node);
    assert_null(coil__heap_min(&h));
    coil__heap_term(&h);
}

static void test_insert_oom(void **state)
{
    (void)state;
    struct item a = {.node.index = COIL__HEAP_NONE, .key = 5};
    struct coil__heap h;
    coil__heap_init(&h);
    test_alloc_fail_after(1);
    assert_int_equal(coil__heap_insert(&h, &a.node, a.key), -ENOMEM);
    assert_true(test_alloc_failed());
    assert_false(coil__heap_contains(&a.node));
    assert_int_equal(h.len, 0);
    test_alloc_fail_after(0);
    assert_int_equal(coil__heap_insert(&h, &a.node, a.key), 0);
    coil__heap_term(&h);
    assert_false(coil__heap_contains(&a.node));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_ties,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_remove_anywhere,
                                        test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_extreme_keys, test_setup_noloop,
                                        test_teardown_noloop),
        cmocka_unit_test_setup_teardown(test_insert_oom, test_setup_noloop,
                                        test_teardown_noloop),
    };
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
