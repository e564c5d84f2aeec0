/* Whole-row dequantization: get_rows (the token embedding lookup) into f32, and weight rows
 * into f32 for the cuBLAS path of large matmuls. Both decode 8 elements per thread with the
 * decoders of cuda_quant.cuh; rows whose length is not a multiple of 8 (possible only for
 * the float types) take a one-element-per-thread path. */
#include "backend/cuda/cuda_quant.cuh"

bool cu_type_supported(df_type t) {
    switch (t) {
    case DF_TYPE_F32: case DF_TYPE_F16: case DF_TYPE_BF16: case DF_TYPE_Q4_0: case DF_TYPE_Q4_1:
    case DF_TYPE_Q5_0: case DF_TYPE_Q5_1: case DF_TYPE_Q8_0: case DF_TYPE_Q2_K: case DF_TYPE_Q3_K:
    case DF_TYPE_Q4_K: case DF_TYPE_Q5_K: case DF_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

static bool is_float_type(df_type t) {
    return t == DF_TYPE_F32 || t == DF_TYPE_F16 || t == DF_TYPE_BF16;
}

/* ---- get_rows ---- */

/* grid (chunks of 8 * 128 elements, n rows). An id outside the table gives a row of NaN:
 * the ids live on the device, so the op cannot refuse them without waiting for the device;
 * the model checks ids on the host before uploading them, and a NaN row makes the damage
 * visible (argmax_rows then answers -1) instead of reading outside the table. */
template <int T>
__global__ void get_rows_kernel(const uint8_t *table, size_t row_bytes, int64_t n_rows, int ne0,
                                const int32_t *ids, float *out) {
    const int r = blockIdx.y;
    const int e = (blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (e >= ne0) return;
    const int32_t id = ids[r];
    float *o = out + (int64_t)r * ne0 + e;
    if (id < 0 || id >= n_rows) {
        for (int i = 0; i < 8; i++) o[i] = __int_as_float(0x7fc00000);
        return;
    }
    float v[8];
    cu_dq<T>::dec8(table + (size_t)id * row_bytes, e, v);
#pragma unroll
    for (int i = 0; i < 8; i++) o[i] = v[i];
}

template <int T>
__global__ void get_rows_kernel_1(const uint8_t *table, size_t row_bytes, int64_t n_rows, int ne0,
                                  const int32_t *ids, float *out) {
    const int r = blockIdx.y;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= ne0) return;
    const int32_t id = ids[r];
    out[(int64_t)r * ne0 + e] =
        id < 0 || id >= n_rows ? __int_as_float(0x7fc00000) : cu_dq<T>::dec1(table + (size_t)id * row_bytes, e);
}

df_status cu_get_rows(df_backend *be, const df_weight *table, const int32_t *ids, int64_t n, float *out) {
    cu_backend *cb = cu_impl(be);
    const char *name = table && table->name ? table->name : "table";
    if (!table || !table->data || !ids || !out) return df_fail(DF_ERR_INVALID, "get_rows: NULL argument");
    size_t row_bytes;
    if (!cu_type_supported(table->type) || !df_type_row_size(table->type, table->ne[0], &row_bytes))
        return df_fail(DF_ERR_UNSUPPORTED, "get_rows: %s: cannot dequantize type %s", name,
                       df_type_name(table->type));
    if (n <= 0 || n > 65535 || table->ne[0] <= 0 || table->ne[0] > ((int64_t)1 << 30))
        return df_fail(DF_ERR_INVALID, "get_rows: %s: %lld rows of %lld is not a valid request", name,
                       (long long)n, (long long)table->ne[0]);
    DF_TRY(cu_enter(cb, "get_rows"));
    const int ne0 = (int)table->ne[0];
    const uint8_t *t = (const uint8_t *)table->data;
    if (ne0 % 8 == 0) {
        dim3 grid(cu_blocks(ne0 / 8, 128), (unsigned)n);
#define LAUNCH(T) get_rows_kernel<T><<<grid, 128, 0, cb->stream>>>(t, row_bytes, table->ne[1], ne0, ids, out)
        CU_DISPATCH_TYPE(table->type, LAUNCH)
#undef LAUNCH
    } else if (is_float_type(table->type)) {
        dim3 grid(cu_blocks(ne0, 128), (unsigned)n);
        const df_type ty = table->type;
        if (ty == DF_TYPE_F32) get_rows_kernel_1<DF_TYPE_F32><<<grid, 128, 0, cb->stream>>>(t, row_bytes, table->ne[1], ne0, ids, out);
        else if (ty == DF_TYPE_F16) get_rows_kernel_1<DF_TYPE_F16><<<grid, 128, 0, cb->stream>>>(t, row_bytes, table->ne[1], ne0, ids, out);
        else get_rows_kernel_1<DF_TYPE_BF16><<<grid, 128, 0, cb->stream>>>(t, row_bytes, table->ne[1], ne0, ids, out);
    } else {
        return df_fail(DF_ERR_INVALID, "get_rows: %s: rows of %d elements are not whole blocks", name, ne0);
    }
    return cu_check_launch(cb, "get_rows");
}

/* ---- weight rows to f32 ---- */

template <int T>
__global__ void dequant_rows_kernel(const uint8_t *w, size_t row_bytes, int ne0, int n_rows, float *dst) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* unit of 8 elements */
    const int per_row = ne0 / 8;
    if (i >= (int64_t)per_row * n_rows) return;
    const int r = (int)(i / per_row), e = (int)(i % per_row) * 8;
    float v[8];
    cu_dq<T>::dec8(w + (size_t)r * row_bytes, e, v);
    float4 *o = (float4 *)(dst + (int64_t)r * ne0 + e);
    o[0] = make_float4(v[0], v[1], v[2], v[3]);
    o[1] = make_float4(v[4], v[5], v[6], v[7]);
}

df_status cu_dequant_rows(cu_backend *cb, const df_weight *w, int64_t row0, int64_t n_rows, float *dst) {
    size_t row_bytes;
    if (!df_type_row_size(w->type, w->ne[0], &row_bytes) || w->ne[0] % 8)
        return df_fail(DF_ERR_INVALID, "matmul: %s: rows of %lld %s elements cannot be dequantized",
                       w->name ? w->name : "weight", (long long)w->ne[0], df_type_name(w->type));
    const uint8_t *base = (const uint8_t *)w->data + (size_t)row0 * row_bytes;
    const int64_t units = n_rows * (w->ne[0] / 8);
    const unsigned grid = cu_blocks(units, 256);
#define LAUNCH(T) dequant_rows_kernel<T><<<grid, 256, 0, cb->stream>>>(base, row_bytes, (int)w->ne[0], (int)n_rows, dst)
    CU_DISPATCH_TYPE(w->type, LAUNCH)
#undef LAUNCH
    return cu_check_launch(cb, "matmul (dequantize)");
}
