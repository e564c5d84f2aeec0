/* Read-only memory mapping of a whole file: model files are never copied into the heap. */
#ifndef DF_BASE_MAPFILE_H
#define DF_BASE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct df_mapfile {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
} df_mapfile;

df_status df_mapfile_open(const char *path, df_mapfile *out);
void df_mapfile_close(df_mapfile *m);

/* Reads a whole (small) file into a NUL-terminated heap buffer; free() it. */
df_status df_read_file(const char *path, size_t max_size, char **out, size_t *out_size);

#endif
