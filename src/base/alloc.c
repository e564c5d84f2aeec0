#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>

void *df_alloc_aligned(size_t size) {
    size_t rounded = (size + DF_ALIGN - 1) / DF_ALIGN * DF_ALIGN;
    if (rounded < size) return NULL;
    if (rounded == 0) rounded = DF_ALIGN;
    return aligned_alloc(DF_ALIGN, rounded);
}

void *df_calloc_aligned(size_t size) {
    void *p = df_alloc_aligned(size);
    if (p) memset(p, 0, size);
    return p;
}

void df_free_aligned(void *p) { free(p); }
