/* GGUF writer, streaming: metadata and tensor declarations are held in memory (small), tensor
 * data goes straight to the file, so a converter can write a many-GB model without holding it.
 *
 * Layout follows llama.cpp's writer, so llama.cpp loads what we write: version 3, tensors laid
 * out in declaration order at offsets that are running sums of each tensor's size rounded up
 * to the alignment (`general.alignment` if added as a u32, else 32), zero padding after the
 * tensor infos and after every tensor, the last one included.
 *
 *     df_gguf_writer *w;
 *     DF_TRY(df_gguf_writer_create("out.gguf", &w));
 *     df_gguf_writer_add_str(w, "general.architecture", "qwen35");
 *     df_gguf_writer_add_u32(w, "qwen35.block_count", 24);
 *     int64_t ne[2] = {1024, 4096};                         // ne[0] contiguous
 *     df_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", DF_TYPE_Q8_0, 2, ne);
 *     df_gguf_writer_write_header(w);
 *     df_gguf_writer_write(w, bytes, n);                     // any chunking, in order
 *     st = df_gguf_writer_finish(w);                         // checks every byte came
 *     df_gguf_writer_free(w);
 *
 * The file is written as "<path>.partial" and renamed to path by a successful finish;
 * freeing a writer that did not finish removes the partial file. Every call after the first
 * failure returns that failure again (sticky errors), so a converter may check only finish. */
#ifndef DF_FORMAT_GGUF_WRITE_H
#define DF_FORMAT_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "format/gguf.h"

typedef struct df_gguf_writer df_gguf_writer;

df_status df_gguf_writer_create(const char *path, df_gguf_writer **out);
void df_gguf_writer_free(df_gguf_writer *w);  /* NULL is fine */

/* ---- metadata (before write_header) -------------------------------------------------------
 * Keys must be non-empty and unique. "general.alignment" must be a u32 power of two; it sets
 * the alignment of this file. */
df_status df_gguf_writer_add_u8(df_gguf_writer *w, const char *key, uint8_t v);
df_status df_gguf_writer_add_i8(df_gguf_writer *w, const char *key, int8_t v);
df_status df_gguf_writer_add_u16(df_gguf_writer *w, const char *key, uint16_t v);
df_status df_gguf_writer_add_i16(df_gguf_writer *w, const char *key, int16_t v);
df_status df_gguf_writer_add_u32(df_gguf_writer *w, const char *key, uint32_t v);
df_status df_gguf_writer_add_i32(df_gguf_writer *w, const char *key, int32_t v);
df_status df_gguf_writer_add_f32(df_gguf_writer *w, const char *key, float v);
df_status df_gguf_writer_add_bool(df_gguf_writer *w, const char *key, bool v);
df_status df_gguf_writer_add_u64(df_gguf_writer *w, const char *key, uint64_t v);
df_status df_gguf_writer_add_i64(df_gguf_writer *w, const char *key, int64_t v);
df_status df_gguf_writer_add_f64(df_gguf_writer *w, const char *key, double v);
df_status df_gguf_writer_add_str(df_gguf_writer *w, const char *key, const char *s);
df_status df_gguf_writer_add_strn(df_gguf_writer *w, const char *key, const char *s, size_t len);

/* An array of a fixed-size scalar type, elems given as the matching C type (uint8_t for U8,
 * float for F32, bool for BOOL, ...), in host order. */
df_status df_gguf_writer_add_arr(df_gguf_writer *w, const char *key, df_gguf_type elem_type,
                                 const void *elems, size_t count);
/* An array of NUL-terminated strings; with lens (may be NULL) for strings with any bytes. */
df_status df_gguf_writer_add_arr_str(df_gguf_writer *w, const char *key,
                                     const char *const *strs, const size_t *lens, size_t count);

/* Arrays of arrays: open a KV whose value is an array of `count` arrays, append exactly
 * `count` elements with the elem_* calls (an elem_begin opens a deeper level that its own
 * elem_end closes), then close it with end. Depth is limited to DF_GGUF_MAX_NESTING, like the
 * reader. Nested arrays are GGUF-legal but llama.cpp's C reader refuses them: use them only
 * for files read by us or by gguf-py. */
df_status df_gguf_writer_begin_arr_of_arr(df_gguf_writer *w, const char *key, size_t count);
df_status df_gguf_writer_elem_arr(df_gguf_writer *w, df_gguf_type elem_type, const void *elems, size_t count);
df_status df_gguf_writer_elem_arr_str(df_gguf_writer *w, const char *const *strs, const size_t *lens, size_t count);
df_status df_gguf_writer_elem_begin(df_gguf_writer *w, size_t count);  /* an element that is an array of arrays */
df_status df_gguf_writer_elem_end(df_gguf_writer *w);
df_status df_gguf_writer_end_arr_of_arr(df_gguf_writer *w);

/* ---- tensors ------------------------------------------------------------------------------ */

/* Declares a tensor (before write_header). ne[0] is the contiguous dimension; n_dims 1..4;
 * every ne > 0 and ne[0] a multiple of the type's block size; names unique, shorter than
 * DF_GGUF_MAX_NAME bytes. */
df_status df_gguf_writer_add_tensor(df_gguf_writer *w, const char *name, uint32_t type,
                                    int n_dims, const int64_t *ne);

/* Writes magic, counts, metadata, tensor infos and the padding. No more adds after this. */
df_status df_gguf_writer_write_header(df_gguf_writer *w);

/* Appends n bytes of tensor data: the tensors in declaration order, each in any number of
 * chunks; a chunk must not run past the end of the current tensor. The padding after a
 * tensor is written when its last byte arrives. */
df_status df_gguf_writer_write(df_gguf_writer *w, const void *data, size_t n);
/* All of one tensor's data at once; checks that name is the tensor due next and size its size. */
df_status df_gguf_writer_write_tensor(df_gguf_writer *w, const char *name, const void *data, size_t size);
/* The tensor whose bytes are due next (NULL when all are written or before write_header). */
const char *df_gguf_writer_next_tensor(const df_gguf_writer *w);

/* Checks every declared byte was written, flushes, closes and renames into place. */
df_status df_gguf_writer_finish(df_gguf_writer *w);

#endif
