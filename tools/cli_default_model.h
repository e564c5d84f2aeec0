/* The embedded model pair (models/, see models/README.md): what every command uses when it
 * is given no -m. */
#ifndef DF_TOOLS_CLI_DEFAULT_MODEL_H
#define DF_TOOLS_CLI_DEFAULT_MODEL_H

#include <stdbool.h>

/* When *model is NULL: points it at the embedded target and, when draft is not NULL and *draft
 * is NULL, *draft at the embedded drafter. The folder is $DFLASH_MODELS when set, else the
 * models/ folder of the source tree dflash was built from. Returns false (with a message that
 * names the missing file) when the target is not there. */
bool cli_default_pair(const char *cmd, const char **model, const char **draft);

#endif
