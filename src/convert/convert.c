/* Options and the dispatch from config.json's "architectures" to a converter. A new
 * architecture (the DFlash drafter next) adds its class names and function to the table. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "convert/convert_internal.h"

static const struct {
    const char *name;
    uint32_t file_type; /* LLAMA_FTYPE_* as llama.cpp writes general.file_type */
} g_types[DF_CONVERT_TYPE_COUNT] = {
    [DF_CONVERT_F32] = {"f32", 0},
    [DF_CONVERT_F16] = {"f16", 1},
    [DF_CONVERT_BF16] = {"bf16", 32},
    [DF_CONVERT_Q8_0] = {"q8_0", 7},
    [DF_CONVERT_Q4_K_M] = {"q4_k_m", 15},
};

typedef df_status (*converter_fn)(const char *hf_dir, const char *out_path, const df_convert_opts *opts);

static const struct {
    const char *architecture; /* a class name as config.json lists it */
    converter_fn convert;
} g_converters[] = {
    {"Qwen3_5ForCausalLM", df_convert_qwen35},
    {"Qwen3_5ForConditionalGeneration", df_convert_qwen35},
    {"DFlashDraftModel", df_convert_dflash},
};

void df_convert_opts_init(df_convert_opts *o) {
    memset(o, 0, sizeof *o);
    o->type = DF_CONVERT_F32;
}

int df_convert_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < DF_CONVERT_TYPE_COUNT; i++)
        if (!strcasecmp(name, g_types[i].name)) return i;
    return -1;
}

const char *df_convert_type_name(df_convert_type t) {
    return (int)t >= 0 && t < DF_CONVERT_TYPE_COUNT ? g_types[t].name : "unknown";
}

uint32_t df_convert_file_type(df_convert_type t) {
    return (int)t >= 0 && t < DF_CONVERT_TYPE_COUNT ? g_types[t].file_type : 0;
}

df_status df_convert(const char *hf_dir, const char *out_path, const df_convert_opts *opts) {
    if (!hf_dir || !out_path) return df_fail(DF_ERR_INVALID, "convert: no input directory or output path");
    df_conv_cfg c;
    DF_TRY(df_conv_cfg_open(hf_dir, &c));
    const char **archs = NULL;
    size_t n = 0;
    df_status st = df_conv_architectures(&c, &archs, &n);
    converter_fn fn = NULL;
    for (size_t i = 0; st == DF_OK && i < n && !fn; i++)
        for (size_t k = 0; k < sizeof g_converters / sizeof g_converters[0]; k++)
            if (!strcmp(archs[i], g_converters[k].architecture)) fn = g_converters[k].convert;
    if (st == DF_OK && !fn) {
        char known[256] = "";
        for (size_t k = 0; k < sizeof g_converters / sizeof g_converters[0]; k++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k ? ", " : "",
                     g_converters[k].architecture);
        st = df_fail(DF_ERR_UNSUPPORTED, "%s: architecture '%s' is not one dflash converts (known: %s)", c.path,
                     archs[0], known);
    }
    free(archs);
    df_conv_cfg_close(&c);
    if (st != DF_OK) return st;
    return fn(hf_dir, out_path, opts);
}
