/* The Unicode data behind NFC (generated into unicode_tables.c by
 * scripts/gen_unicode_tables.py). Only nfc.c reads these arrays directly. */
#ifndef DF_TEXT_UNICODE_TABLES_H
#define DF_TEXT_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

/* Per-code-point properties: stage1[cp >> 8] picks a 256-entry block of stage2. */
#define DF_UNI_CCC_MASK 0x00ffu    /* canonical combining class */
#define DF_UNI_QC_SHIFT 8          /* NFC_Quick_Check: 0 yes, 1 maybe, 2 no */
#define DF_UNI_QC_MASK 0x0300u
#define DF_UNI_HAS_DECOMP 0x0400u  /* has a canonical (one-level) decomposition */

extern const char df_uni_version[];
extern const uint8_t df_uni_stage1[0x110000 >> 8];
extern const uint16_t df_uni_stage2[];

/* Canonical decompositions, sorted by code point: index = (pool offset << 2) | length. */
extern const uint32_t df_uni_decomp_cp[];
extern const uint16_t df_uni_decomp_index[];
extern const uint32_t df_uni_decomp_pool[];
extern const size_t df_uni_decomp_count;

/* Primary composites, sorted by key = (first << 21) | second. */
extern const uint64_t df_uni_comp_key[];
extern const uint32_t df_uni_comp_value[];
extern const size_t df_uni_comp_count;

#endif
