/* Test helper: a 1-thread and a 2-thread pool for the CPU kernel tests, made by a suite's
 * .init and freed by its .fini (TestSuite(name, .init = test_pools_create, .fini =
 * test_pools_destroy)), so every kernel is checked split over one thread and over two. */
#ifndef DF_TEST_POOLS_H
#define DF_TEST_POOLS_H

#include "base/threadpool.h"

extern df_pool *g_pool1, *g_pool2;

void test_pools_create(void);
void test_pools_destroy(void);

#endif
