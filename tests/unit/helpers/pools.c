#include "helpers/pools.h"

#include <criterion/criterion.h>

#include "base/status.h"

df_pool *g_pool1, *g_pool2;

void test_pools_create(void) {
    cr_assert_eq(df_pool_create(1, &g_pool1), DF_OK);
    cr_assert_eq(df_pool_create(2, &g_pool2), DF_OK);
}

void test_pools_destroy(void) {
    df_pool_destroy(g_pool1);
    df_pool_destroy(g_pool2);
    g_pool1 = g_pool2 = NULL;
}
