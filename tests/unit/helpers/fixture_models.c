#include "helpers/fixture_models.h"

#include <criterion/criterion.h>

#include "backend/backend.h"
#include "base/status.h"
#include "format/gguf.h"
#include "model/qwen35.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void test_fixture_dir(const char *name, char *dir, size_t cap) {
    snprintf(dir, cap, "%s/tests/fixtures/qwen35/%s", DFLASH_SOURCE_DIR, name);
}

int test_fixture_gguf(const char *name, const char *type, char *path, size_t cap) {
    char dir[1024];
    test_fixture_dir(name, dir, sizeof dir);
    snprintf(path, cap, "%s/test-models/%s-%s.gguf", DFLASH_BINARY_DIR, name, type);
    /* Reuse a conversion that is newer than the checkpoint it came from. */
    char src[1200];
    snprintf(src, sizeof src, "%s/model.safetensors", dir);
    struct stat s_src, s_out;
    if (stat(path, &s_out) == 0 && stat(src, &s_src) == 0 && s_out.st_mtime >= s_src.st_mtime) return 0;
    /* Written under a temporary name, then renamed: an interrupted run leaves no half file,
     * and tests running at the same time never read one. */
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/test-models' && '%s' convert '%s' '%s.%d.tmp' --type %s >/dev/null && "
             "mv '%s.%d.tmp' '%s'",
             DFLASH_BINARY_DIR, DFLASH_CLI, dir, path, (int)getpid(), type, path, (int)getpid(), path);
    return system(cmd) == 0 ? 0 : -1;
}

void test_model_load(test_model *mo, const char *name) {
    char gguf[1024];
    cr_assert_eq(test_fixture_gguf(name, "f32", gguf, sizeof gguf), 0, "dflash convert failed for %s", name);
    cr_assert_eq(df_gguf_open(gguf, &mo->g), DF_OK, "%s", df_last_error());
    cr_assert_eq(df_backend_cpu_create(2, &mo->be), DF_OK);
    cr_assert_eq(df_qwen35_load(mo->g, mo->be, &mo->m), DF_OK, "%s", df_last_error());
}

void test_model_free(test_model *mo) {
    df_qwen35_free(mo->m);
    df_backend_destroy(mo->be);
    df_gguf_close(mo->g);
}
