#include <stdio.h>

#include "tools/commands.h"

int cmd_inspect(int argc, char **argv) {
    fprintf(stderr, "dflash inspect: not built yet\n");
    return 1;
}
