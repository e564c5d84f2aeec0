/* dflash inspect: shared between the GGUF and safetensors views. Output is either text for
 * people or one JSON object (built with Jansson) for scripts. */
#ifndef DF_TOOLS_INSPECT_H
#define DF_TOOLS_INSPECT_H

#include <jansson.h>
#include <stdbool.h>

typedef struct inspect_opts {
    bool tensors;  /* list every tensor */
    bool json;
} inspect_opts;

/* Each fills `out` (a JSON object describing the file) and returns 0, or prints the error
 * and returns 1. */
int inspect_gguf(const char *path, const inspect_opts *o, json_t *out);
int inspect_safetensors(const char *path, const inspect_opts *o, json_t *out);

/* Text rendering of what the functions above built. */
void inspect_print_text(const json_t *info, const inspect_opts *o);

/* "12.3 MiB" */
void inspect_human_bytes(double bytes, char *buf, size_t cap);

#endif
