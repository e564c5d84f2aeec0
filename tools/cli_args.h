/* Small helpers shared by the subcommands for parsing options. */
#ifndef DF_TOOLS_CLI_ARGS_H
#define DF_TOOLS_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* Parses an integer / float option value; prints "dflash CMD: OPTION: ..." and returns false
 * on a malformed or out-of-range value. */
bool cli_int(const char *cmd, const char *opt, const char *s, long long lo, long long hi, long long *out);
bool cli_float(const char *cmd, const char *opt, const char *s, double *out);
/* The value after argv[*i], advancing *i; NULL (with a message) when missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
/* Parses "1,2,3" into a malloc'd array. */
bool cli_int_list(const char *cmd, const char *opt, const char *s, int32_t **out, int *n);

#endif
