/* Aligned allocation and overflow-checked size arithmetic. Every size computed from file
 * contents goes through df_mul_size/df_add_size so that hostile counts cannot wrap. */
#ifndef DF_BASE_ALLOC_H
#define DF_BASE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 64-byte alignment: a cache line, and enough for AVX-512 loads. */
#define DF_ALIGN 64

void *df_alloc_aligned(size_t size);   /* NULL on failure; size 0 gives a valid pointer */
void *df_calloc_aligned(size_t size);  /* zero-filled */
void df_free_aligned(void *p);

static inline bool df_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool df_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool df_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool df_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline uint64_t df_align_up(uint64_t x, uint64_t align) {
    return (x + align - 1) / align * align;
}

#endif
