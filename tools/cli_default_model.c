#include "tools/cli_default_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef DFLASH_MODELS_DIR
#define DFLASH_MODELS_DIR "models"
#endif

#define TARGET_FILE "dflash-code-25m-q8_0.gguf"
#define DRAFTER_FILE "dflash-code-25m-drafter-q8_0.gguf"

bool cli_default_pair(const char *cmd, const char **model, const char **draft) {
    static char target_path[4096], drafter_path[4096];
    if (*model) return true;
    const char *dir = getenv("DFLASH_MODELS");
    if (!dir || !*dir) dir = DFLASH_MODELS_DIR;
    snprintf(target_path, sizeof target_path, "%s/%s", dir, TARGET_FILE);
    snprintf(drafter_path, sizeof drafter_path, "%s/%s", dir, DRAFTER_FILE);
    if (access(target_path, R_OK) != 0) {
        fprintf(stderr,
                "dflash %s: no -m given, and the embedded model %s is not there "
                "(pass -m MODEL.gguf, or set DFLASH_MODELS to the folder that holds it)\n",
                cmd, target_path);
        return false;
    }
    *model = target_path;
    if (draft && !*draft && access(drafter_path, R_OK) == 0) *draft = drafter_path;
    return true;
}
