/* Hugging Face checkpoint -> GGUF conversion, the way llama.cpp's convert_hf_to_gguf.py
 * (and, for q4_k_m, llama-quantize) would write the file, so that our files and theirs load
 * the same in either runtime.
 *
 *     df_convert_opts o;
 *     df_convert_opts_init(&o);
 *     o.type = DF_CONVERT_Q4_K_M;
 *     st = df_convert("path/to/Qwen3.5-9B", "qwen35-9b-q4_k_m.gguf", &o);
 *
 * The conversion streams: metadata and every tensor's name, type and shape are declared
 * first, then tensors are converted and written one at a time, in row chunks, so memory stays
 * at a few chunk buffers whatever the model size. Notices (skipped tensors, type fallbacks,
 * progress) go to opts->log.
 *
 * Architectures (config.json "architectures"):
 *   Qwen3_5ForCausalLM, Qwen3_5ForConditionalGeneration   -> "qwen35" (docs/QWEN35_FORMAT.md)
 *   DFlashDraftModel (z-lab DFlash drafters)             -> "qwen35-dflash-draft"
 *                                                            (docs/DFLASH_DRAFTER.md §3)
 * Each architecture lives in its own convert_<arch>.c and is listed in convert.c's table. */
#ifndef DF_CONVERT_CONVERT_H
#define DF_CONVERT_CONVERT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"

/* The --type choices: what the matrices become. 1-D tensors, norms and the GDN conv kernel
 * stay f32 whatever the choice (as in llama.cpp). */
typedef enum df_convert_type {
    DF_CONVERT_F32 = 0,
    DF_CONVERT_F16,
    DF_CONVERT_BF16,
    DF_CONVERT_Q8_0,
    DF_CONVERT_Q4_K_M, /* llama-quantize's Q4_K_M mix: Q4_K, Q6_K where it matters */
    DF_CONVERT_TYPE_COUNT,
} df_convert_type;

typedef struct df_convert_opts {
    df_convert_type type;
    int n_threads;  /* for converting rows; 0 = every online CPU */
    FILE *log;      /* notices and progress; NULL = stderr */
    bool quiet;     /* no progress bar / progress lines (notices are still written) */
} df_convert_opts;

void df_convert_opts_init(df_convert_opts *o); /* f32, all CPUs, stderr, progress on */

/* "f32", "f16", "bf16", "q8_0", "q4_k_m" (case-insensitive); -1 for anything else. */
int df_convert_type_from_name(const char *name);
const char *df_convert_type_name(df_convert_type t);
/* The general.file_type value llama.cpp writes for the choice (LLAMA_FTYPE_*):
 * 0 all f32, 1 mostly f16, 32 mostly bf16, 7 mostly q8_0, 15 mostly q4_k_m. */
uint32_t df_convert_file_type(df_convert_type t);

/* Converts the model in hf_dir (config.json + safetensors, sharded or not; tokenizer.json,
 * tokenizer_config.json and chat_template.jinja when present) to out_path, picking the
 * converter by config.json's "architectures". An architecture no converter knows is an error
 * naming it. opts may be NULL (defaults). */
df_status df_convert(const char *hf_dir, const char *out_path, const df_convert_opts *opts);

/* The qwen35 converter itself (Qwen3_5ForCausalLM / Qwen3_5ForConditionalGeneration);
 * refuses any other architecture. */
df_status df_convert_qwen35(const char *hf_dir, const char *out_path, const df_convert_opts *opts);

/* The DFlash drafter converter (DFlashDraftModel): a drafter directory to a lucebox-style
 * "qwen35-dflash-draft" GGUF (convert_dflash.c); refuses configs that the drafter loader
 * refuses, and rope_theta is never defaulted. Matrices take opts->type (q4_k_m: Q4_K for all,
 * as lucebox writes drafters); norms stay f32. */
df_status df_convert_dflash(const char *hf_dir, const char *out_path, const df_convert_opts *opts);

#endif
