/* Test helper: the tiny transformers fixtures (tests/fixtures/qwen35/NAME) converted to GGUF
 * with `dflash convert`, once per build tree. */
#ifndef DF_TEST_FIXTURE_MODELS_H
#define DF_TEST_FIXTURE_MODELS_H

#include <stddef.h>

/* Writes the fixture's directory into dir. */
void test_fixture_dir(const char *name, char *dir, size_t cap);
/* Converts (if not done yet) and writes the GGUF's path into path; returns 0, or -1 when
 * the conversion failed (the test then fails with the command in its message). */
int test_fixture_gguf(const char *name, const char *type, char *path, size_t cap);

/* A fixture's f32 GGUF loaded on a 2-thread CPU backend (asserts on failure). */
struct df_gguf;
struct df_backend;
struct df_qwen35;
typedef struct test_model {
    struct df_gguf *g;
    struct df_backend *be;
    struct df_qwen35 *m;
} test_model;
void test_model_load(test_model *mo, const char *name);
void test_model_free(test_model *mo);

#endif
