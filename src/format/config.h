/* A JSON configuration file (a Hugging Face config.json and the like) with typed getters.
 *
 * Fields are named by dotted paths: "text_config.hidden_size" walks into the object
 * "text_config"; a segment made of digits indexes an array ("layer_types.3"). The module is
 * generic: which prefix or fallback a model uses is the model code's business.
 *
 * A JSON null counts as absent (transformers writes `"rope_scaling": null` for "not set"):
 * df_config_has() is false for it, the _or getters return their default, and the strict
 * getters report it as "missing (null)". Failed getters leave *out untouched and record a
 * message naming the file, the full field path and, for a wrong type, what was expected and
 * what was found. */
#ifndef DF_FORMAT_CONFIG_H
#define DF_FORMAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* Config files are small; this refuses a runaway file before reading it whole. */
#define DF_CONFIG_MAX_BYTES (64u << 20)

typedef struct df_config df_config;

/* Reads and parses a JSON object from path; syntax errors give line and column. */
df_status df_config_open(const char *path, df_config **out);
/* Parses len bytes of text (need not be NUL-terminated); name is used in messages. */
df_status df_config_parse(const char *text, size_t len, const char *name, df_config **out);
void df_config_close(df_config *cfg); /* NULL is fine */

const char *df_config_name(const df_config *cfg);

/* True when the path leads to a value that is not null. */
bool df_config_has(const df_config *cfg, const char *path);

/* Integers: a JSON integer, or a real with an integral value that fits (1024.0). */
df_status df_config_get_int(const df_config *cfg, const char *path, int64_t *out);
/* Reals: a JSON real or integer. */
df_status df_config_get_float(const df_config *cfg, const char *path, double *out);
df_status df_config_get_bool(const df_config *cfg, const char *path, bool *out);
/* The string is owned by the config and lives until df_config_close. */
df_status df_config_get_str(const df_config *cfg, const char *path, const char **out);

/* Arrays. *out is malloc'ed (free() it; NULL for an empty array) and *n is the length. The
 * strings of a string array are owned by the config; only the pointer array is the caller's. */
df_status df_config_get_int_array(const df_config *cfg, const char *path, int64_t **out, size_t *n);
df_status df_config_get_float_array(const df_config *cfg, const char *path, double **out, size_t *n);
df_status df_config_get_str_array(const df_config *cfg, const char *path, const char ***out, size_t *n);
/* Length of an array field. */
df_status df_config_array_len(const df_config *cfg, const char *path, size_t *n);

/* Optional fields: absent (or null) gives the default and DF_OK; present with the wrong type
 * is still an error, so that a typo in a value is not silently replaced. */
df_status df_config_get_int_or(const df_config *cfg, const char *path, int64_t def, int64_t *out);
df_status df_config_get_float_or(const df_config *cfg, const char *path, double def, double *out);
df_status df_config_get_bool_or(const df_config *cfg, const char *path, bool def, bool *out);
df_status df_config_get_str_or(const df_config *cfg, const char *path, const char *def, const char **out);

#endif
