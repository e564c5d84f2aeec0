// Renders chat conversations with @huggingface/jinja, an implementation of Jinja written
// independently of ours, as the oracle for tests/cli/chat_oracle.sh.
//
//   node chat_oracle.mjs OUTDIR TEMPLATE... -- CONVERSATION...
//
// For each template T and conversation C it writes OUTDIR/<T base name>/<C base name>.txt
// with the rendered prompt, or .err with the error when the template fails.
//
// The context is built the way src/text/chat.h documents (and vLLM / llama.cpp do): a null
// or missing `content` becomes "", and tool-call `arguments` given as a JSON string holding
// an object are parsed into that object. The template is rendered exactly as the library
// renders it for transformers (lstrip_blocks and trim_blocks on).
import fs from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";

function prepareMessages(messages) {
  return messages.map((m) => {
    const msg = structuredClone(m);
    if (msg.content === null || msg.content === undefined) msg.content = "";
    for (const call of Array.isArray(msg.tool_calls) ? msg.tool_calls : []) {
      const fn = call && call.function;
      if (!fn || typeof fn.arguments !== "string") continue;
      try {
        const parsed = JSON.parse(fn.arguments);
        if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) fn.arguments = parsed;
      } catch {
        // not JSON: left as the string it is
      }
    }
    return msg;
  });
}

function contextOf(conv) {
  const ctx = {
    messages: prepareMessages(conv.messages),
    add_generation_prompt: typeof conv.add_generation_prompt === "boolean" ? conv.add_generation_prompt : true,
  };
  if (Array.isArray(conv.tools)) ctx.tools = conv.tools;
  if (typeof conv.enable_thinking === "boolean") ctx.enable_thinking = conv.enable_thinking;
  return ctx;
}

const args = process.argv.slice(2);
const sep = args.indexOf("--");
if (args.length < 3 || sep < 2) {
  process.stderr.write("usage: node chat_oracle.mjs OUTDIR TEMPLATE... -- CONVERSATION...\n");
  process.exit(2);
}
const outdir = args[0];
const templates = args.slice(1, sep);
const conversations = args.slice(sep + 1);

for (const tplPath of templates) {
  const tname = path.basename(tplPath).replace(/\.jinja$/, "");
  const dir = path.join(outdir, tname);
  fs.mkdirSync(dir, { recursive: true });
  const template = new Template(fs.readFileSync(tplPath, "utf8"));
  for (const convPath of conversations) {
    const cname = path.basename(convPath).replace(/\.json$/, "");
    const conv = JSON.parse(fs.readFileSync(convPath, "utf8"));
    try {
      fs.writeFileSync(path.join(dir, `${cname}.txt`), template.render(contextOf(conv)));
    } catch (e) {
      fs.writeFileSync(path.join(dir, `${cname}.err`), String(e && e.message ? e.message : e) + "\n");
    }
  }
}
