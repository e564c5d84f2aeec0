#!/usr/bin/env python3
"""Generates src/text/unicode_tables.c, the data behind our NFC normaliser (src/text/nfc.c).

Reads the Unicode Character Database files shipped by Debian's `unicode-data` package
(/usr/share/unicode by default, or the directory given as the first argument):

  UnicodeData.txt            canonical combining class (field 3), decomposition (field 5)
  CompositionExclusions.txt  script-specific and post-composition-version exclusions
  DerivedNormalizationProps.txt (optional) NFC_QC, used only to cross-check what we derive

The generated file is committed, so building dflash never needs the package. Re-run this
script after a Unicode upgrade:  python3 scripts/gen_unicode_tables.py > src/text/unicode_tables.c

What is derived, following UAX #15 (Unicode Normalization Forms):
  * one-level canonical decompositions (mappings without a <tag>); nfc.c applies them
    recursively, and decomposes Hangul syllables algorithmically (they are not listed);
  * "full composition exclusions": the listed exclusions, singletons (a one-code-point
    mapping) and non-starter decompositions (the character or the first code point of its
    mapping has a non-zero combining class);
  * primary composites: two-code-point mappings that are not fully excluded; only these
    pairs recompose;
  * NFC_Quick_Check: No for characters with a canonical mapping that are fully excluded
    (they can never survive NFC), Maybe for characters that can be the second code point of
    a primary composite (and Hangul medial vowels / trailing consonants), Yes otherwise.
"""
import os
import sys

UCD = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode"
MAX_CP = 0x110000
S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28
S_COUNT = L_COUNT * V_COUNT * T_COUNT


def read_lines(name):
    with open(os.path.join(UCD, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                yield line


def parse_range(field):
    if ".." in field:
        lo, hi = field.split("..")
        return int(lo, 16), int(hi, 16)
    cp = int(field, 16)
    return cp, cp


ccc = {}
decomp = {}
version = "?"
with open(os.path.join(UCD, "CompositionExclusions.txt"), encoding="utf-8") as f:
    first = f.readline()
    version = first.strip("# \n").replace("CompositionExclusions-", "").replace(".txt", "")

for line in read_lines("UnicodeData.txt"):
    fields = line.split(";")
    cp = int(fields[0], 16)
    c = int(fields[3])
    if c:
        ccc[cp] = c
    d = fields[5]
    if d and not d.startswith("<"):
        decomp[cp] = [int(x, 16) for x in d.split()]

exclusions = set()
for line in read_lines("CompositionExclusions.txt"):
    lo, hi = parse_range(line.split(";")[0].strip())
    exclusions.update(range(lo, hi + 1))


def fully_excluded(cp):
    m = decomp[cp]
    return (cp in exclusions or len(m) == 1 or ccc.get(cp, 0) != 0 or ccc.get(m[0], 0) != 0)


compositions = {}
for cp, m in decomp.items():
    if len(m) == 2 and not fully_excluded(cp):
        compositions[(m[0], m[1])] = cp

QC_YES, QC_MAYBE, QC_NO = 0, 1, 2
qc = {}
for cp in decomp:
    if fully_excluded(cp):
        qc[cp] = QC_NO
for (_, second) in compositions:
    qc.setdefault(second, QC_MAYBE)
for cp in list(range(V_BASE, V_BASE + V_COUNT)) + list(range(T_BASE + 1, T_BASE + T_COUNT)):
    qc.setdefault(cp, QC_MAYBE)

# Cross-check the derived quick-check property against the one the UCD publishes.
derived = os.path.join(UCD, "DerivedNormalizationProps.txt")
if os.path.exists(derived):
    published = {}
    for line in read_lines("DerivedNormalizationProps.txt"):
        parts = [p.strip() for p in line.split(";")]
        if len(parts) == 3 and parts[1] == "NFC_QC":
            lo, hi = parse_range(parts[0])
            for cp in range(lo, hi + 1):
                published[cp] = QC_NO if parts[2] == "N" else QC_MAYBE
    if published != qc:
        diff = sorted(set(published.items()) ^ set(qc.items()))[:10]
        sys.exit(f"derived NFC_QC disagrees with DerivedNormalizationProps.txt: {diff}")

# Per-code-point properties in a two-stage table: bits 0-7 combining class, bits 8-9
# NFC quick check, bit 10 "has a canonical one-level decomposition".
def props(cp):
    return ccc.get(cp, 0) | (qc.get(cp, QC_YES) << 8) | ((1 << 10) if cp in decomp else 0)

blocks = {}
block_list = []
stage1 = []
for hi in range(MAX_CP >> 8):
    blk = tuple(props((hi << 8) | lo) for lo in range(256))
    if blk not in blocks:
        blocks[blk] = len(block_list)
        block_list.append(blk)
    stage1.append(blocks[blk])
assert len(block_list) < 256, "stage 1 is stored as uint8_t"

decomp_cps = sorted(decomp)
pool = []
index = []
for cp in decomp_cps:
    index.append((len(pool) << 2) | len(decomp[cp]))
    pool.extend(decomp[cp])
assert max(len(m) for m in decomp.values()) <= 3

comp_keys = sorted(compositions)

out = sys.stdout
w = out.write
w("/* GENERATED by scripts/gen_unicode_tables.py from the Unicode Character Database %s\n" % version)
w(" * (UnicodeData.txt, CompositionExclusions.txt). Do not edit; re-run the script instead.\n")
w(" * Unicode data (c) Unicode, Inc., distributed under the Unicode License (unicode.org/license). */\n")
w('#include "text/unicode_tables.h"\n\n')
w("const char df_uni_version[] = \"%s\";\n\n" % version)


def emit_array(ctype, name, values, per_line=16, fmt="%d"):
    w("const %s %s[%d] = {\n" % (ctype, name, len(values)))
    for i in range(0, len(values), per_line):
        w("    " + ", ".join(fmt % v for v in values[i:i + per_line]) + ",\n")
    w("};\n\n")


emit_array("uint8_t", "df_uni_stage1", stage1, 24)
flat = [v for blk in block_list for v in blk]
emit_array("uint16_t", "df_uni_stage2", flat, 16, "0x%03x")
emit_array("uint32_t", "df_uni_decomp_cp", decomp_cps, 10, "0x%05x")
emit_array("uint16_t", "df_uni_decomp_index", index, 12, "0x%04x")
emit_array("uint32_t", "df_uni_decomp_pool", pool, 10, "0x%05x")
emit_array("uint64_t", "df_uni_comp_key", [(a << 21) | b for a, b in comp_keys], 6, "0x%011xull")
emit_array("uint32_t", "df_uni_comp_value", [compositions[k] for k in comp_keys], 10, "0x%05x")
w("const size_t df_uni_decomp_count = %d;\n" % len(decomp_cps))
w("const size_t df_uni_comp_count = %d;\n" % len(comp_keys))
