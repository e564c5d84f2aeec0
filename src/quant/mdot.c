/* Which multi-token dot serves which weight type at which ISA, and whether the CPU runs the
 * ISA. The kernels themselves are in mdot_avx2.c and mdot_avx512.c, compiled per function
 * with target attributes, so this file (and the rest of the library) stays baseline x86-64
 * and a binary built here still runs on a CPU without AVX-512 or AVX2. */
#include "quant/mdot.h"

#include "quant/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* AVX-512 F, BW, VL and VNNI in the CPU, and the OS saving the opmask and all 512-bit
 * registers (XCR0 bits 5..7 besides SSE and AVX state). Read from cpuid directly, like
 * cpu_simd.c does: compilers disagree on the names __builtin_cpu_supports knows. */
bool df_cpu_has_avx512_vnni(void) {
    if (!df_cpu_has_avx2_fma()) return false;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; /* OSXSAVE */
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xe6u) != 0xe6u) return false;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    const bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31), vnni = c & (1u << 11);
    return f && bw && vl && vnni;
}
#else
bool df_cpu_has_avx512_vnni(void) { return false; }
#endif

static const df_mdot k_q8_0[DF_MDOT_ISA_COUNT] = {
    {.dot = df_mdot_q8_0_avx2, .quantize = df_mdot_quant_q8s_avx2, .act_bytes = df_mdot_act_bytes_q8s},
    {.dot = df_mdot_q8_0_avx512, .quantize = df_mdot_quant_q8m_avx512, .act_bytes = df_mdot_act_bytes_q8m,
     .packed_bytes = df_mdot_q8_0_packed_bytes, .pack = df_mdot_q8_0_pack, .dot_packed = df_mdot_q8_0_packed_avx512},
};
static const df_mdot k_q4_0[DF_MDOT_ISA_COUNT] = {
    {.dot = df_mdot_q4_0_avx2, .quantize = df_mdot_quant_q8s_avx2, .act_bytes = df_mdot_act_bytes_q8s},
    {.dot = df_mdot_q4_0_avx512, .quantize = df_mdot_quant_q4m_avx2, .act_bytes = df_mdot_act_bytes_q4m},
};
static const df_mdot k_q4_K[DF_MDOT_ISA_COUNT] = {
    {.dot = df_mdot_q4_K_avx2, .quantize = df_mdot_quant_q8ks_avx2, .act_bytes = df_mdot_act_bytes_q8ks},
    {.dot = df_mdot_q4_K_avx512, .quantize = df_mdot_quant_q8ks_avx2, .act_bytes = df_mdot_act_bytes_q8ks,
     .packed_bytes = df_mdot_q4_K_packed_bytes, .pack = df_mdot_q4_K_pack, .dot_packed = df_mdot_q4_K_packed_avx512},
};
static const df_mdot k_q5_K[DF_MDOT_ISA_COUNT] = {
    {.dot = df_mdot_q5_K_avx2, .quantize = df_mdot_quant_q8ks_avx2, .act_bytes = df_mdot_act_bytes_q8ks},
    {.dot = df_mdot_q5_K_avx512, .quantize = df_mdot_quant_q8ks_avx2, .act_bytes = df_mdot_act_bytes_q8ks,
     .packed_bytes = df_mdot_q5_K_packed_bytes, .pack = df_mdot_q5_K_pack, .dot_packed = df_mdot_q5_K_packed_avx512},
};
static const df_mdot k_q6_K[DF_MDOT_ISA_COUNT] = {
    {.dot = df_mdot_q6_K_avx2, .quantize = df_mdot_quant_q8ks_avx2, .act_bytes = df_mdot_act_bytes_q8ks},
    {.dot = df_mdot_q6_K_avx512, .quantize = df_mdot_quant_q8ks_avx2, .act_bytes = df_mdot_act_bytes_q8ks,
     .packed_bytes = df_mdot_q6_K_packed_bytes, .pack = df_mdot_q6_K_pack, .dot_packed = df_mdot_q6_K_packed_avx512},
};

static const df_mdot *kernels_of(df_type t) {
    switch (t) {
    case DF_TYPE_Q8_0: return k_q8_0;
    case DF_TYPE_Q4_0: return k_q4_0;
    case DF_TYPE_Q4_K: return k_q4_K;
    case DF_TYPE_Q5_K: return k_q5_K;
    case DF_TYPE_Q6_K: return k_q6_K;
    default: return NULL;
    }
}

bool df_mdot_isa_supported(df_mdot_isa isa) {
    /* cpuid is slow under some hypervisors; ask once (a benign race: every thread computes
     * the same answer) */
    static int cached[DF_MDOT_ISA_COUNT] = {-1, -1};
    if ((unsigned)isa >= DF_MDOT_ISA_COUNT) return false;
    int v = __atomic_load_n(&cached[isa], __ATOMIC_RELAXED);
    if (v < 0) {
        v = isa == DF_MDOT_AVX2 ? df_cpu_has_avx2_fma() : df_cpu_has_avx512_vnni();
        __atomic_store_n(&cached[isa], v, __ATOMIC_RELAXED);
    }
    return v != 0;
}

const df_mdot *df_mdot_get(df_type t, df_mdot_isa isa) {
    const df_mdot *k = kernels_of(t);
    if (!k || !df_mdot_isa_supported(isa)) return NULL;
    return &k[isa];
}

bool df_mdot_act_bytes_max(df_type t, int64_t n, size_t *out) {
    const df_mdot *k = kernels_of(t);
    *out = 0;
    if (!k) return true;
    for (int i = 0; i < DF_MDOT_ISA_COUNT; i++) {
        size_t b;
        if (!k[i].act_bytes(n, &b)) return false;
        if (b > *out) *out = b;
    }
    return true;
}
