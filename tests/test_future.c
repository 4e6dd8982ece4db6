/* placeholder: being written */
#include "helpers.h"
static void test_placeholder(void **state) { (void)state; }
int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_placeholder)};
    test_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
